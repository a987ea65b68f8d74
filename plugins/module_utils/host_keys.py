# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host keys of tenant VPSes, kept in the tenant record (``host_keys``), so no connection of the
collection runs with host-key checking off.

The first contact with a VPS (a new VPS of a migration, or a tenant whose record predates host keys)
records the keys ``ssh-keyscan`` sees (:func:`scan`, :func:`record_first_use`, written with
check-and-set and audited by the caller); every later connection checks against the record
(``StrictHostKeyChecking=yes`` with a known_hosts file made from it). A host that presents another
key is refused by ssh itself.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import subprocess

from ansible_collections.penguinmails.vps.plugins.module_utils import ssh_keys
from ansible_collections.penguinmails.vps.plugins.module_utils.timeutil import format_time, utcnow

HOST_KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa")


class HostKeyError(Exception):
    """Host keys could not be read or recorded (one line)."""


def normalize(key):
    """``type base64`` of a host public key line (comment dropped); raises HostKeyError."""
    try:
        keytype, _blob, _comment = ssh_keys.parse_public_key(key)
    except ssh_keys.SSHKeyError as exc:
        raise HostKeyError("invalid host key: %s" % exc)
    if keytype not in HOST_KEY_TYPES:
        raise HostKeyError("unsupported host key type %s" % keytype)
    return " ".join(key.split()[:2])


def known_hosts_line(address, key, port=22):
    host = address if int(port) == 22 else "[%s]:%d" % (address, int(port))
    return "%s %s" % (host, normalize(key))


def fingerprints(keys):
    return [ssh_keys.fingerprint(key) for key in keys]


def scan(address, port=22, timeout=10):
    """The host keys ``address`` presents now (``type base64`` lines, sorted); raises HostKeyError."""
    argv = ["ssh-keyscan", "-T", str(int(timeout)), "-p", str(int(port)), "-t", "ed25519,ecdsa,rsa", address]
    try:
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=timeout * 4 + 5, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HostKeyError("cannot scan the host keys of %s: %s" % (address, exc))
    keys = set()
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and not line.startswith("#"):
            try:
                keys.add(normalize("%s %s" % (parts[1], parts[2])))
            except HostKeyError:
                continue
    if not keys:
        raise HostKeyError("%s:%s presented no host key (unreachable, or no sshd)" % (address, port))
    return sorted(keys)


def recorded(record, address):
    """The host keys the record holds for ``address`` ([] when it holds none for it).

    ``host_keys`` maps an address to its keys, so the keys of the old VPS stay known while a migration
    reaches the new one (and the wipe of the old one still checks them).
    """
    keys = (record or {}).get("host_keys") or {}
    if not isinstance(keys, dict):
        return []
    return [normalize(key) for key in keys.get(address) or []]


def with_keys(data, address, keys, source="ssh-keyscan"):
    """``data`` (a record) with ``keys`` recorded for ``address``."""
    data = dict(data or {})
    known = dict(data.get("host_keys") if isinstance(data.get("host_keys"), dict) else {})
    known[address] = sorted(normalize(key) for key in keys)
    data["host_keys"] = known
    prints = dict(data.get("host_key_fingerprints") if isinstance(data.get("host_key_fingerprints"), dict) else {})
    prints[address] = fingerprints(known[address])
    data["host_key_fingerprints"] = prints
    recorded_at = dict(data.get("host_keys_recorded") if isinstance(data.get("host_keys_recorded"), dict) else {})
    recorded_at[address] = {"at": format_time(utcnow()), "source": source}
    data["host_keys_recorded"] = recorded_at
    return data


def record_first_use(client, mount, path, secret, keys, address, source="ssh-keyscan"):
    """Store ``keys`` as the record's host keys of ``address`` (check-and-set on the version read)."""
    if secret is None:
        raise HostKeyError("no record at %s/%s to hold the host keys" % (mount, path))
    return client.write(mount, path, with_keys(secret.data, address, keys, source), cas=secret.version)
