# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The KV v2 history of the collection's secrets: bursts of writes to one secret, and truncated histories.

The KV mounts keep ``max_versions`` versions of each secret (``vault_setup`` sets 500) and the automation
policy can neither delete, destroy nor change that. The one way left to push old versions out of a
secret's history is to write it over and over; :func:`history_report` finds each secret that got more than
``threshold`` new versions since a moment (from the ``created_time`` of its versions in the KV metadata),
and each secret whose oldest versions are already gone.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.penguinmails.vps.plugins.module_utils.timeutil import format_time, parse_time


def secret_paths(client, mount, prefix=""):
    """Every secret below ``prefix`` in ``mount`` (depth first, sorted)."""
    found = []
    pending = [prefix.strip("/") + "/" if prefix.strip("/") else ""]
    while pending:
        folder = pending.pop(0)
        for key in client.list(mount, folder):
            if key.endswith("/"):
                pending.append(folder + key)
            else:
                found.append(folder + key)
    return sorted(found)


def secret_history(metadata, since):
    """What the metadata of one secret says: versions kept, versions created since ``since``, truncation."""
    versions = metadata.get("versions") or {}
    numbers = sorted(int(number) for number in versions)
    recent = [number for number in numbers
              if (parse_time(versions[str(number)].get("created_time")) or since) >= since]
    oldest = numbers[0] if numbers else 0
    return {
        "current_version": int(metadata.get("current_version") or 0),
        "oldest_version": oldest,
        "kept_versions": len(numbers),
        "new_versions": len(recent),
        "history_truncated": oldest > 1,
    }


def history_report(client, mounts, since, threshold, prefix="", tenant_mounts=()):
    """Check every secret of ``mounts``; return ``checked``, ``bursts`` and ``truncated`` (lists of dicts).

    A burst: more than ``threshold`` versions created at or after ``since``. ``tenant_mounts`` are the
    mounts whose first path segment is a tenant id (``vps/<tenant>/...``, ``smtp/<tenant>/...``).
    """
    checked, bursts, truncated = 0, [], []
    for mount in mounts:
        for path in secret_paths(client, mount, prefix):
            checked += 1
            entry = dict(mount=mount, path=path, tenant_id=path.split("/", 1)[0] if mount in tenant_mounts else None)
            entry.update(secret_history(client.metadata(mount, path), since))
            if entry["new_versions"] > threshold:
                bursts.append(entry)
            if entry["history_truncated"]:
                truncated.append(entry)
    return {"checked": checked, "since": format_time(since), "threshold": threshold, "bursts": bursts,
            "truncated": truncated}
