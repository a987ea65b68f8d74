#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vault_history_info
short_description: Bursts of writes to one secret, and truncated histories, in the KV v2 mounts
version_added: 0.2.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - Reads the KV v2 metadata of every secret in the C(vps), C(smtp) and C(dkim) mounts (or below
    O(path_prefix)) and reports each secret that got more than O(burst_threshold) new versions
    since O(since) (default - the last O(window_hours) hours), and each secret whose oldest versions
    are gone (KV dropped them beyond the mount's C(max_versions)).
  - The mounts keep C(max_versions) versions per secret (role C(penguinmails.vps.vault_setup) - 500) and
    the C(automation) policy can neither delete, destroy nor lower that; writing one secret over and
    over is the only way left to push versions out of its history, and this module finds it. The
    playbook C(penguinmails.vps.vault_history) audits each burst as C(vault_write_burst) (critical).
  - Never returns a secret value - only paths, version numbers and counts.
options:
  window_hours:
    description:
      - Count the versions created in the last this many hours.
    type: int
    default: 24
  since:
    description:
      - Count the versions created at or after this ISO 8601 time instead of O(window_hours).
    type: str
  burst_threshold:
    description:
      - More new versions of one secret than this is a burst.
    type: int
    default: 20
  path_prefix:
    description:
      - Only the secrets below this path in each mount (for example a tenant id). Default - all.
    type: str
    default: ""
  vps_mount:
    description:
      - KV v2 mount of the SSH keys and tenant records (its first path segment is the tenant id).
    type: str
    default: vps
  smtp_mount:
    description:
      - KV v2 mount of the SMTP credentials (its first path segment is the tenant id).
    type: str
    default: smtp
  dkim_mount:
    description:
      - KV v2 mount of the DKIM keys.
    type: str
    default: dkim
extends_documentation_fragment:
  - penguinmails.vps.vault
  - penguinmails.vps.attributes
  - penguinmails.vps.attributes.info_module
  - penguinmails.vps.attributes.action_group
notes:
  - The token needs C(list) and C(read) on the mounts' C(metadata/) paths (policies C(automation) and C(admin) have them).
seealso:
  - module: penguinmails.vps.audit_event
  - module: penguinmails.vps.tenant_secrets_info
"""

EXAMPLES = r"""
- name: Find bursts of writes in the last day
  penguinmails.vps.vault_history_info:
    window_hours: 24
    burst_threshold: 20
  register: history

- name: Audit them
  penguinmails.vps.audit_event:
    action: vault_write_burst
    status: failure
    tenant_id: "{{ item.tenant_id | default(omit, true) }}"
    details:
      mount: "{{ item.mount }}"
      path: "{{ item.path }}"
      newVersions: "{{ item.new_versions }}"
  loop: "{{ history.vault_history.bursts }}"
"""

RETURN = r"""
vault_history:
  description: What the metadata showed.
  returned: success
  type: dict
  contains:
    checked:
      description: Secrets checked.
      type: int
      sample: 412
    since:
      description: Start of the window, ISO 8601 UTC.
      type: str
      sample: "2026-11-29T06:00:00Z"
    threshold:
      description: The burst threshold.
      type: int
      sample: 20
    bursts:
      description: Secrets with more new versions than the threshold since RV(vault_history.since).
      type: list
      elements: dict
      contains:
        mount:
          description: The mount.
          type: str
          sample: vps
        path:
          description: The secret's path in the mount.
          type: str
          sample: acme/admin_ssh
        tenant_id:
          description: The tenant (first path segment in the vps and smtp mounts), else null.
          type: str
          sample: acme
        new_versions:
          description: Versions created since RV(vault_history.since).
          type: int
          sample: 25
        current_version:
          description: The newest version.
          type: int
          sample: 31
        oldest_version:
          description: The oldest version still kept.
          type: int
          sample: 1
        kept_versions:
          description: Versions kept.
          type: int
          sample: 31
        history_truncated:
          description: Versions older than RV(vault_history.bursts[].oldest_version) are gone.
          type: bool
          sample: false
    truncated:
      description: Secrets whose oldest versions are gone (the same fields as RV(vault_history.bursts)).
      type: list
      elements: dict
"""

import datetime

from ansible_collections.penguinmails.vps.plugins.module_utils.timeutil import parse_time
from ansible_collections.penguinmails.vps.plugins.module_utils.validators import ValidationError
from ansible_collections.penguinmails.vps.plugins.module_utils.vault_client import (
    VaultError,
    get_client,
    vault_module,
)
from ansible_collections.penguinmails.vps.plugins.module_utils.vault_history import history_report


def main():
    module = vault_module(
        dict(
            window_hours=dict(type="int", default=24),
            since=dict(type="str"),
            burst_threshold=dict(type="int", default=20),
            path_prefix=dict(type="str", default=""),
            vps_mount=dict(type="str", default="vps"),
            smtp_mount=dict(type="str", default="smtp"),
            dkim_mount=dict(type="str", default="dkim"),
        )
    )
    p = module.params
    if p["since"]:
        since = parse_time(p["since"])
        if since is None:
            module.fail_json(msg="invalid since %r: use an ISO 8601 time such as 2026-11-30T00:00:00Z" % p["since"][:40])
    elif p["window_hours"] < 1:
        module.fail_json(msg="window_hours must be 1 or more")
    else:
        since = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=p["window_hours"])
    if p["burst_threshold"] < 1:
        module.fail_json(msg="burst_threshold must be 1 or more")
    try:
        report = history_report(get_client(p), [p["vps_mount"], p["smtp_mount"], p["dkim_mount"]], since,
                                p["burst_threshold"], prefix=p["path_prefix"],
                                tenant_mounts=(p["vps_mount"], p["smtp_mount"]))
    except (ValidationError, VaultError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, vault_history=report)


if __name__ == "__main__":
    main()
