#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vault_snapshot
short_description: Back up Vault itself - a Raft snapshot streamed into restic, its retention, and its restore
version_added: 0.4.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - Runs on the controller with Debian's C(restic), against a Vault / OpenBao cluster on integrated (Raft)
    storage. The runbook is docs/vault-recovery.md.
  - O(state=present) reads C(sys/storage/raft/snapshot) and streams it chunk by chunk into
    C(restic backup --stdin) - the snapshot never touches the controller's disk unencrypted. The stream is checked
    as it passes (one whole gzip stream); a stream that breaks kills restic before it commits, so no partial
    snapshot is ever stored. The repository is initialised at the first backup; with O(retention), older Vault
    snapshots are then forgotten and pruned. The snapshot carries the Raft index and Vault version as tags.
  - O(state=restored) streams a snapshot (O(snapshot), by default the latest) with C(restic dump) into
    C(sys/storage/raft/snapshot), or with O(force=true) into C(sys/storage/raft/snapshot-force) - what a fresh
    cluster, initialised with other keys, needs. The cluster then holds the snapshot's data, keys and tokens - it
    is unsealed with the unseal keys of the cluster the snapshot came from, and the token used here no longer works.
  - O(state=query) reports the latest Vault snapshot and how many there are; it changes nothing.
  - The repository's O(password) is not kept in Vault (a lost Vault could not give it back); keep it with the
    unseal keys.
extends_documentation_fragment:
  - penguinmails.vps.vault
  - penguinmails.vps.attributes
  - penguinmails.vps.attributes.action_group
attributes:
  check_mode:
    support: partial
    details: O(state=present) and O(state=restored) report what they would do and change nothing.
  diff_mode:
    support: none
    details: No diff is returned.
options:
  state:
    description:
      - V(present) takes a snapshot, V(restored) restores one, V(query) reads.
    type: str
    choices: [present, restored, query]
    default: present
  repository:
    description:
      - The restic repository of the Vault snapshots, for example V(sftp:backup@backup.example.net:/srv/restic/_vault)
        or V(s3:https://s3.example.net/backups/_vault). Keep it apart from every tenant's repository.
    type: str
    required: true
  password:
    description:
      - The repository's password, 16 characters or more. Defaults to E(PENGUINMAILS_VAULT_BACKUP_PASSWORD).
      - Kept outside Vault, beside the unseal keys.
    type: str
    required: true
  name:
    description:
      - restic's host name of the snapshots (one per Vault cluster in a shared repository).
    type: str
    default: vault
  sftp_command:
    description:
      - The command restic runs to reach an C(sftp:) repository (its C(sftp.command) option), with the key and a
        known_hosts file, for example V(ssh -i /etc/penguinmails/backup_key -o StrictHostKeyChecking=yes
        backup@backup.example.net -s sftp).
    type: str
  env:
    description:
      - Environment for restic, for example the credentials of an S3 repository (C(AWS_ACCESS_KEY_ID),
        C(AWS_SECRET_ACCESS_KEY)). The C(RESTIC_PASSWORD*) and C(RESTIC_REPOSITORY*) variables are refused.
    type: dict
    default: {}
  retention:
    description:
      - After a backup, keep this many Vault snapshots per period and forget (and prune) the others, as restic's
        C(--keep-last), C(--keep-hourly), C(--keep-daily), C(--keep-weekly), C(--keep-monthly), C(--keep-yearly).
      - Empty keeps every snapshot.
    type: dict
    default: {}
  snapshot:
    description:
      - The snapshot to restore (an id) with O(state=restored); V(latest) is the newest.
    type: str
    default: latest
  force:
    description:
      - With O(state=restored), use C(snapshot-force) - needed to restore into another cluster (a fresh one) than
        the snapshot's.
    type: bool
    default: false
  restic_binary:
    description:
      - The restic executable on the controller.
    type: path
    default: restic
  backup_timeout:
    description:
      - Seconds the backup or restore may take. When it runs out, the run stops and the module fails.
    type: int
    default: 1800
requirements:
  - hvac >= 1.2 (Python library)
  - restic >= 0.14 on the controller (Debian's C(restic) package)
  - Vault / OpenBao on integrated (Raft) storage; a token with C(read) and C(sudo) on C(sys/storage/raft/snapshot)
    (backup), C(update) and C(sudo) on C(sys/storage/raft/snapshot-force) (restore)
seealso:
  - module: penguinmails.vps.vault_health_info
  - module: penguinmails.vps.mail_backup
"""

EXAMPLES = r"""
- name: Snapshot Vault, keep 24 hourly and 30 daily snapshots
  penguinmails.vps.vault_snapshot:
    repository: "sftp:backup@backup.example.net:/srv/restic/_vault"
    password: "{{ vault_backup_password }}"
    sftp_command: ssh -i /etc/penguinmails/backup_key backup@backup.example.net -s sftp
    retention: {hourly: 24, daily: 30}
  register: snap

- name: Restore the latest snapshot into a fresh cluster (then unseal it with the old cluster's keys)
  penguinmails.vps.vault_snapshot:
    state: restored
    force: true
    url: https://vault-new.example.com:8200
    token: "{{ fresh_cluster_root_token }}"
    repository: "sftp:backup@backup.example.net:/srv/restic/_vault"
    password: "{{ vault_backup_password }}"
"""

RETURN = r"""
repository:
  description: The repository.
  returned: always
  type: str
snapshot:
  description: The snapshot taken (V(present)), restored (V(restored)) or the latest (V(query)); empty when there is none.
  returned: always
  type: dict
  contains:
    id:
      description: restic's short id.
      type: str
    time:
      description: When the snapshot was taken (ISO 8601 UTC).
      type: str
    age_seconds:
      description: Its age now, in seconds.
      type: int
    raft_index:
      description: The leader's Raft index when the snapshot was taken (null when the server did not say).
      type: int
    vault_version:
      description: The server version the snapshot came from.
      type: str
snapshots:
  description: How many Vault snapshots of O(name) the repository holds now.
  returned: always
  type: int
bytes:
  description: Size of the snapshot streamed (backup) or restored.
  returned: when O(state) is V(present) or V(restored) and not in check mode
  type: int
sha256:
  description: SHA-256 of the snapshot as Vault sent it, C(SHA256:<hex>).
  returned: when O(state=present) and not in check mode
  type: str
seconds:
  description: Time the backup or restore took.
  returned: when O(state) is V(present) or V(restored)
  type: float
data_added:
  description: Bytes the snapshot added to the repository (after deduplication and compression).
  returned: when O(state=present)
  type: int
removed:
  description: Short ids of the snapshots O(retention) forgot.
  returned: when O(state=present)
  type: list
  elements: str
initialised:
  description: Whether this run initialised the repository.
  returned: when O(state=present)
  type: bool
rpo_seconds:
  description: The age of the restored snapshot when the restore began - the writes to Vault it cannot hold.
  returned: when O(state=restored)
  type: int
"""

import datetime

from ansible.module_utils.basic import env_fallback

from ansible_collections.penguinmails.vps.plugins.module_utils import restic_backup
from ansible_collections.penguinmails.vps.plugins.module_utils import vault_snapshot
from ansible_collections.penguinmails.vps.plugins.module_utils.maildir_sync import Deadline, SyncError
from ansible_collections.penguinmails.vps.plugins.module_utils.vault_client import (
    OPTION_SOURCES,
    VaultError,
    get_client,
    vault_module,
)


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def main():
    module = vault_module(
        dict(
            state=dict(type="str", default="present", choices=["present", "restored", "query"]),
            repository=dict(type="str", required=True),
            password=dict(type="str", required=True, no_log=True, fallback=(env_fallback, ["PENGUINMAILS_VAULT_BACKUP_PASSWORD"])),
            name=dict(type="str", default=vault_snapshot.DEFAULT_NAME),
            sftp_command=dict(type="str"),
            env=dict(type="dict", default={}, no_log=True),
            retention=dict(type="dict", default={}),
            snapshot=dict(type="str", default="latest"),
            force=dict(type="bool", default=False),
            restic_binary=dict(type="path", default="restic"),
            backup_timeout=dict(type="int", default=1800),
        ),
    )
    p = module.params
    try:
        result = run(module, p)
    except (SyncError, VaultError, vault_snapshot.SnapshotError) as exc:
        module.fail_json(msg="vault snapshot (%s): %s" % (p["state"], exc))
    module.exit_json(**result)


def check(p):
    retention = restic_backup.check_retention(p["retention"])
    bad_env = [key for key in p["env"] if key.startswith("RESTIC_PASSWORD") or key.startswith("RESTIC_REPOSITORY")]
    if bad_env:
        raise SyncError("env must not set %s: the password and the repository are options" % bad_env[0])
    if not p["repository"] or "\n" in p["repository"] or "{tenant}" in p["repository"]:
        raise SyncError("repository must be one restic repository (sftp:..., s3:..., a path), without {tenant}")
    if len(p["password"] or "") < 16:
        raise SyncError("password must be 16 characters or more (the repository's key, kept beside the unseal keys)")
    if p["backup_timeout"] < 1:
        raise SyncError("backup_timeout must be at least 1 second")
    if not p["name"] or not p["name"].replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise SyncError("name must be letters, digits, '-', '_' or '.'")
    return retention


def run(module, p):
    retention = check(p)
    restic = restic_backup.Restic(p["repository"], p["password"], p["restic_binary"], p["sftp_command"], p["env"])
    client = get_client(dict((name, p.get(name)) for name in OPTION_SOURCES))
    result = {"repository": p["repository"], "snapshot": {}, "snapshots": 0}
    if p["state"] == "present":
        return backup(module, p, client, restic, retention, result)
    exists = restic.exists()
    found = vault_snapshot.snapshots(restic, p["name"]) if exists else []
    result["snapshots"] = len(found)
    if p["state"] == "query":
        if found:
            result["snapshot"] = vault_snapshot.snapshot_view(found[-1], now())
        return dict(result, changed=False)
    return restore(module, p, client, restic, found, result)


def backup(module, p, client, restic, retention, result):
    deadline = Deadline(p["backup_timeout"])
    health = client.health()
    if health.get("sealed"):
        raise VaultError("Vault at %s is sealed: unseal it before a snapshot" % client.url)
    raft = vault_snapshot.raft_health(client)
    if raft is None:
        raise VaultError("Vault at %s is not on integrated (Raft) storage, or the token may not read "
                         "sys/storage/raft/configuration: only Raft storage has snapshots" % client.url)
    if module.check_mode:
        return dict(result, seconds=0.0, data_added=0, removed=[], initialised=False, changed=True)
    initialised = False
    if not restic.exists():
        restic.init()
        initialised = True
    tags = ["vault_version=%s" % health.get("version")]
    if raft.get("last_index") is not None:
        tags.append("raft_index=%d" % int(raft["last_index"]))
    facts, summary = vault_snapshot.backup(client, restic, p["name"], deadline, tags)
    removed = restic.forget(p["name"], retention, tag=vault_snapshot.TAG) if retention else []
    found = vault_snapshot.snapshots(restic, p["name"])
    taken = [item for item in found if item.get("id") == summary.get("snapshot_id")]
    return dict(result, snapshot=vault_snapshot.snapshot_view(taken[-1] if taken else found[-1], now()),
                snapshots=len(found), bytes=facts["bytes"], sha256=facts["sha256"],
                seconds=round(deadline.elapsed(), 3), data_added=int(summary.get("data_added") or 0),
                removed=removed, initialised=initialised, changed=True)


def restore(module, p, client, restic, found, result):
    if not found:
        raise SyncError("the repository %s holds no Vault snapshot of %s" % (result["repository"], p["name"]))
    if p["snapshot"] == "latest":
        chosen = found[-1]
    else:
        chosen = ([item for item in found if p["snapshot"] in (item.get("id"), item.get("short_id"))] or [None])[-1]
        if chosen is None:
            raise SyncError("no Vault snapshot %s of %s in %s" % (p["snapshot"], p["name"], result["repository"]))
    view = vault_snapshot.snapshot_view(chosen, now())
    result.update(snapshot=view, rpo_seconds=view["age_seconds"])
    if module.check_mode:
        return dict(result, seconds=0.0, changed=True)
    deadline = Deadline(p["backup_timeout"])
    sent = vault_snapshot.restore(client, restic, chosen["id"], p["force"], deadline)
    return dict(result, bytes=sent, seconds=round(deadline.elapsed(), 3), changed=True)


if __name__ == "__main__":
    main()
