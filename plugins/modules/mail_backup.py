#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: mail_backup
short_description: Snapshot a tenant's mailboxes with restic, or restore the latest snapshot onto a VPS
version_added: 0.3.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - Runs on the controller with Debian's C(restic). The tenant's restic repository password lives in Vault at
    C(<mount>/<tenant>/backup) (field C(restic_password), made once with check-and-set, beside the repository
    URL); it goes to restic in its environment only, and never to the VPS.
  - O(state=present) takes a snapshot - the mail data under O(mail_root) on O(host) (messages with their flags and
    dates, Dovecot's UID lists; never indexes, configuration or executables) is read over SSH as a C(tar) stream
    and fed to C(restic backup --stdin), tagged with the message count. The repository is initialised at the first
    backup. With O(retention), older snapshots are then forgotten and pruned.
  - O(state=restored) streams a snapshot (O(snapshot), by default the latest) with C(restic dump) into the
    receiver of M(penguinmails.vps.mailbox_sync) on O(host), in its V(copy) mode - the restored mailboxes keep
    their UIDs, and mail already on the host is kept. RV(rpo_seconds) is the snapshot's age - the mail that
    reached the tenant after it is not in the snapshot.
  - O(state=query) reports the latest snapshot and how many there are; it changes nothing.
extends_documentation_fragment:
  - penguinmails.vps.vault
  - penguinmails.vps.attributes
  - penguinmails.vps.attributes.action_group
  - penguinmails.vps.attributes.action
attributes:
  check_mode:
    support: partial
    details: O(state=present) and O(state=restored) report the snapshot they would take or restore and change nothing.
  diff_mode:
    support: none
    details: No diff is returned.
  action:
    details: The module runs on the controller; its action plugin shows a restore's progress while it runs.
options:
  tenant_id:
    description:
      - The tenant. Its snapshots carry its id as restic's host name.
    type: str
    required: true
  state:
    description:
      - V(present) takes a snapshot, V(restored) restores one, V(query) reads.
    type: str
    choices: [present, restored, query]
    default: present
  host:
    description:
      - Address of the VPS to read the mail from (V(present)) or to restore it onto (V(restored)).
      - Required unless O(state=query).
    type: str
  ssh_args:
    description:
      - Options for C(ssh) to O(host), for example the C(ssh_args) that M(penguinmails.vps.ssh_agent) returns.
    type: str
    default: ""
  user:
    description:
      - The SSH user on O(host).
    type: str
    default: root
  mail_root:
    description:
      - The directory holding one Maildir per account on O(host).
    type: path
    default: /mailu/mail
  repository:
    description:
      - The restic repository of this tenant, C({tenant}) replaced by its id, for example
        V(sftp:backup@backup.example.net:/srv/restic/{tenant}) or V(s3:https://s3.example.net/mail-backups/{tenant}).
      - Required for the first backup of a tenant; it is then kept in Vault beside the password, and used when
        this option is not given.
    type: str
  sftp_command:
    description:
      - The command restic runs to reach an C(sftp:) repository (its C(sftp.command) option), for example
        V(ssh -i /etc/penguinmails/backup_key -o UserKnownHostsFile=/etc/penguinmails/backup_known_hosts
        -o StrictHostKeyChecking=yes backup@backup.example.net -s sftp).
    type: str
  env:
    description:
      - Environment for restic, for example the credentials of an S3 repository (C(AWS_ACCESS_KEY_ID),
        C(AWS_SECRET_ACCESS_KEY)). The C(RESTIC_PASSWORD*) and C(RESTIC_REPOSITORY*) variables are refused.
    type: dict
    default: {}
  retention:
    description:
      - After a backup, keep this many snapshots per period and forget (and prune) the others, as restic's
        C(--keep-last), C(--keep-hourly), C(--keep-daily), C(--keep-weekly), C(--keep-monthly), C(--keep-yearly).
      - Empty keeps every snapshot.
    type: dict
    default: {}
  snapshot:
    description:
      - The snapshot to restore (an id) with O(state=restored); V(latest) is the newest of the tenant.
    type: str
    default: latest
  restic_binary:
    description:
      - The restic executable on the controller.
    type: path
    default: restic
  mount:
    description:
      - The KV v2 mount holding C(<tenant>/backup).
    type: str
    default: vps
  backup_timeout:
    description:
      - Seconds the backup or restore may take. When it runs out, the run stops and the module fails.
    type: int
    default: 3600
  connect_timeout:
    description:
      - Seconds to wait for the SSH connection to O(host).
    type: int
    default: 15
  progress_interval:
    description:
      - A restore (O(state=restored)) shows its progress (messages and bytes done of the snapshot's, MB/s, the time
        left) at most every this many seconds while it runs, and so in an AWX job's output; the result keeps it
        (RV(progress)).
    type: int
    default: 5
  progress_file:
    description:
      - Where the module appends its progress lines. Set by the module's action plugin, which shows them while the
        restore runs; leave it unset.
    type: path
requirements:
  - hvac >= 1.2 (Python library)
  - restic >= 0.14 on the controller (Debian's C(restic) package)
  - GNU C(find) and C(tar) on the VPS (backup); C(python3) on the VPS (restore)
"""

EXAMPLES = r"""
- name: Snapshot the mail of acme, keep 24 hourly and 14 daily snapshots
  penguinmails.vps.mail_backup:
    tenant_id: acme
    host: 203.0.113.10
    ssh_args: "{{ agent.hosts['203.0.113.10'].ssh_args }}"
    repository: "sftp:backup@backup.example.net:/srv/restic/{tenant}"
    sftp_command: ssh -i /etc/penguinmails/backup_key backup@backup.example.net -s sftp
    retention: {hourly: 24, daily: 14}
  register: backup

- name: Restore the latest snapshot onto the new VPS
  penguinmails.vps.mail_backup:
    tenant_id: acme
    state: restored
    host: 203.0.113.20
    ssh_args: "{{ agent.hosts['203.0.113.20'].ssh_args }}"
    sftp_command: ssh -i /etc/penguinmails/backup_key backup@backup.example.net -s sftp
  register: restored
"""

RETURN = r"""
repository:
  description: The tenant's repository.
  returned: always
  type: str
  sample: sftp:backup@backup.example.net:/srv/restic/acme
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
    messages:
      description: Messages in the snapshot.
      type: int
    bytes:
      description: Bytes of those messages.
      type: int
snapshots:
  description: How many snapshots of the tenant the repository holds now.
  returned: always
  type: int
messages:
  description: Messages backed up or restored (in check mode, that would be).
  returned: when O(state) is V(present) or V(restored)
  type: int
bytes:
  description: Bytes of those messages.
  returned: when O(state) is V(present) or V(restored)
  type: int
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
  description: Whether this run initialised the repository (and, for a new tenant, made its password in Vault).
  returned: when O(state=present)
  type: bool
rpo_seconds:
  description: The age of the restored snapshot when the restore began - how much recent mail it cannot hold.
  returned: when O(state=restored)
  type: int
progress:
  description:
    - The restore's progress - the snapshot's messages and bytes, what arrived, the seconds, the rates and the lines
      shown while it ran.
  returned: when O(state=restored), not in check mode
  type: dict
  sample: {total_messages: 2000, total_bytes: 14500000, messages: 2000, bytes: 14500000, seconds: 2.4,
           messages_per_second: 833.3, bytes_per_second: 6041666, lines: ["mail restore: 2000/2000 messages, 14.5/14.5 MB, 6.0 MB/s, done"]}
"""

import datetime

from ansible_collections.penguinmails.vps.plugins.module_utils import maildir_sync
from ansible_collections.penguinmails.vps.plugins.module_utils import restic_backup
from ansible_collections.penguinmails.vps.plugins.module_utils.maildir_sync import Deadline, Endpoint, SyncError
from ansible_collections.penguinmails.vps.plugins.module_utils.validators import ValidationError
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
            tenant_id=dict(type="str", required=True),
            state=dict(type="str", default="present", choices=["present", "restored", "query"]),
            host=dict(type="str"),
            ssh_args=dict(type="str", default=""),
            user=dict(type="str", default="root"),
            mail_root=dict(type="path", default="/mailu/mail"),
            repository=dict(type="str"),
            sftp_command=dict(type="str"),
            env=dict(type="dict", default={}, no_log=True),
            retention=dict(type="dict", default={}),
            snapshot=dict(type="str", default="latest"),
            restic_binary=dict(type="path", default="restic"),
            mount=dict(type="str", default="vps"),
            backup_timeout=dict(type="int", default=3600),
            connect_timeout=dict(type="int", default=15),
            progress_interval=dict(type="int", default=5),
            progress_file=dict(type="path"),
        ),
        required_if=[("state", "present", ["host"]), ("state", "restored", ["host"])],
    )
    p = module.params
    try:
        result = run(module, p)
    except (SyncError, ValidationError, VaultError) as exc:
        module.fail_json(msg="mail backup of %s: %s" % (p["tenant_id"], exc))
    module.exit_json(**result)


def run(module, p):
    retention = restic_backup.check_retention(p["retention"])
    bad_env = [key for key in p["env"] if key.startswith("RESTIC_PASSWORD") or key.startswith("RESTIC_REPOSITORY")]
    if bad_env:
        raise SyncError("env must not set %s: the password comes from Vault, the repository from the options" % bad_env[0])
    if p["backup_timeout"] < 1:
        raise SyncError("backup_timeout must be at least 1 second")
    if p["progress_interval"] < 1:
        raise SyncError("progress_interval must be at least 1 second")
    client = get_client(dict((name, p.get(name)) for name in OPTION_SOURCES))
    secret = restic_backup.BackupSecret(client, p["tenant_id"], p["mount"])
    tenant = secret.tenant_id
    stored = secret.read() or {}
    template = p["repository"] or stored.get("repository")
    if not template:
        raise SyncError("no repository: set repository (backup_repository) for the first backup of %s" % tenant)
    repository = restic_backup.repository_for(template, tenant)
    result = {"repository": repository, "snapshot": {}, "snapshots": 0}
    if p["state"] != "present" and not stored.get("restic_password"):
        raise SyncError("%s/%s holds no restic password: %s was never backed up" % (secret.mount, secret.path, tenant))
    if p["state"] == "present" and module.check_mode and not stored.get("restic_password"):
        return dict(result, messages=0, bytes=0, seconds=0.0, data_added=0, removed=[], initialised=True, changed=True)
    data, made = (stored, False) if p["state"] != "present" or module.check_mode else secret.ensure(repository)
    restic = restic_backup.Restic(repository, data["restic_password"], p["restic_binary"], p["sftp_command"], p["env"])
    endpoint = Endpoint(p["host"], p["ssh_args"], p["user"], connect_timeout=p["connect_timeout"]) if p["host"] else None
    if p["state"] == "present":
        return backup(module, p, restic, endpoint, tenant, retention, made, result)
    exists = restic.exists()
    snapshots = restic.snapshots(tenant) if exists else []
    result["snapshots"] = len(snapshots)
    if p["state"] == "query":
        if snapshots:
            result["snapshot"] = restic_backup.snapshot_view(snapshots[-1], now())
        return dict(result, changed=False)
    return restore(module, p, restic, endpoint, snapshots, result)


def backup(module, p, restic, endpoint, tenant, retention, made, result):
    deadline = Deadline(p["backup_timeout"])
    files = maildir_sync.listing(endpoint, p["mail_root"], timeout=max(1, int(deadline.left())))
    seen = maildir_sync.summary(files)
    if module.check_mode:
        return dict(result, messages=seen["messages"], bytes=seen["bytes"], seconds=0.0, data_added=0, removed=[],
                    initialised=False, changed=True)
    initialised = made
    if not restic.exists():
        restic.init()
        initialised = True
    if not files:
        raise SyncError("%s holds no mail data under %s: nothing to back up" % (p["host"], p["mail_root"]))
    feed = b"".join(rel.encode("utf-8") + b"\0" for rel in sorted(files))
    report = restic.backup(endpoint.command(maildir_sync.tar_command(p["mail_root"])), feed, tenant,
                           ["tenant=%s" % tenant, "messages=%d" % seen["messages"], "bytes=%d" % seen["bytes"]],
                           deadline)
    removed = restic.forget(tenant, retention) if retention else []
    snapshots = restic.snapshots(tenant)
    taken = [item for item in snapshots if item.get("id") == report.get("snapshot_id")
             or item.get("short_id") == (report.get("snapshot_id") or "")[:8]]
    return dict(result, snapshot=restic_backup.snapshot_view(taken[-1] if taken else snapshots[-1], now()),
                snapshots=len(snapshots), messages=seen["messages"], bytes=seen["bytes"],
                seconds=round(deadline.elapsed(), 3), data_added=int(report.get("data_added") or 0), removed=removed,
                initialised=initialised, changed=True)


def restore(module, p, restic, endpoint, snapshots, result):
    if not snapshots:
        raise SyncError("the repository %s holds no snapshot of %s" % (result["repository"], p["tenant_id"]))
    if p["snapshot"] == "latest":
        chosen = snapshots[-1]
    else:
        chosen = ([item for item in snapshots if p["snapshot"] in (item.get("id"), item.get("short_id"))] or [None])[-1]
        if chosen is None:
            raise SyncError("no snapshot %s of %s in %s" % (p["snapshot"], p["tenant_id"], result["repository"]))
    view = restic_backup.snapshot_view(chosen, now())
    result.update(snapshot=view, rpo_seconds=view["age_seconds"])
    if module.check_mode:
        return dict(result, messages=view["messages"] or 0, bytes=view["bytes"] or 0, seconds=0.0, changed=True)
    report = maildir_sync.receive_stream(restic.dump_argv(chosen["id"]), endpoint, p["mail_root"], "copy",
                                         p["backup_timeout"], env=restic.env(), show=progress_writer(p["progress_file"]),
                                         total_messages=view["messages"] or 0, total_bytes=view["bytes"] or 0,
                                         progress_every=p["progress_interval"])
    return dict(result, messages=report["messages"], bytes=report["bytes"], seconds=report["seconds"],
                progress=report["progress"], changed=bool(report["messages"] or report["meta_files"]))


def progress_writer(path):
    """Append each progress line to ``path`` (the action plugin shows them while the restore runs)."""
    if not path:
        return None

    def show(line):
        try:
            with open(path, "a") as handle:
                handle.write(line + "\n")
        except OSError:
            pass  # only the live display is lost; the result keeps the figures
    return show


if __name__ == "__main__":
    main()
