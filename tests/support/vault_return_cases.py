# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cases of vault_snapshot, vault_restore_serials and vault_health_info's Raft and backup fields for
tests/integration/test_module_returns.py (issue 22).

A one-node OpenBao Raft cluster (tests/support/openbao_cluster.py), the lab's SFTP backup host and a lab host with a
real sshd whose authorized_keys holds serials: the modules run from localhost as the playbooks run them, and every
result is registered as ``r_<module>__<case>``. The restore is the last case (it seals the cluster).
"""

from __future__ import annotations

import glob
import os
import secrets
import shlex

from tests.lab.backup import backup_host
from tests.support.openbao_cluster import OpenBaoCluster

CASES = """
- hosts: localhost
  gather_facts: false
  vars:
    backup: {repository: "@repository@", sftp_command: "@sftp_command@"}
    vps: {host: "@host_ip@", args: "@ssh_args@"}
  tasks:
    - {penguinmails.vps.vault_ssh_keypair: {tenant_id: "@tid@", role: admin, key_type: ed25519}}
    - {penguinmails.vps.vault_ssh_keypair: {tenant_id: "@tid@", role: tenant, key_type: ed25519}}
    # --- vault_snapshot: nothing yet, check mode, a snapshot, the retention, a query, a bad repository
    - {penguinmails.vps.vault_snapshot: {state: query, repository: "{{ backup.repository }}", sftp_command: "{{ backup.sftp_command }}"},
       register: r_vault_snapshot__query_none}
    - {penguinmails.vps.vault_snapshot: {repository: "{{ backup.repository }}", sftp_command: "{{ backup.sftp_command }}"},
       check_mode: true, register: r_vault_snapshot__check}
    - {penguinmails.vps.vault_snapshot: {repository: "{{ backup.repository }}", sftp_command: "{{ backup.sftp_command }}"},
       register: r_vault_snapshot__present}
    - {penguinmails.vps.vault_snapshot: {repository: "{{ backup.repository }}", sftp_command: "{{ backup.sftp_command }}",
       retention: {last: 1}}, register: r_vault_snapshot__retention}
    - {penguinmails.vps.vault_snapshot: {state: query, repository: "{{ backup.repository }}", sftp_command: "{{ backup.sftp_command }}"},
       register: r_vault_snapshot__query}
    - {penguinmails.vps.vault_snapshot: {repository: "bad{tenant}"}, ignore_errors: true, register: r_vault_snapshot__bad}
    # --- vault_health_info: Raft, last backup ok, not checked
    - {penguinmails.vps.vault_health_info: {backup_repository: "{{ backup.repository }}", backup_sftp_command: "{{ backup.sftp_command }}"},
       register: r_vault_health_info__raft_backup}
    - {penguinmails.vps.vault_health_info: {}, register: r_vault_health_info__raft}
    # --- vault_restore_serials: check mode, the writes, nothing left to do
    - {penguinmails.vps.vault_restore_serials: {tenant_id: "@tid@", host: "{{ vps.host }}", ssh_args: "{{ vps.args }}"},
       check_mode: true, register: r_vault_restore_serials__check}
    - {penguinmails.vps.vault_restore_serials: {tenant_id: "@tid@", host: "{{ vps.host }}", ssh_args: "{{ vps.args }}"},
       register: r_vault_restore_serials__advance}
    - {penguinmails.vps.vault_restore_serials: {tenant_id: "@tid@", host: "{{ vps.host }}", ssh_args: "{{ vps.args }}"},
       register: r_vault_restore_serials__again}
    # --- vault_snapshot restore: check mode, then the restore (last: the cluster is sealed after it)
    - {penguinmails.vps.vault_snapshot: {state: restored, repository: "{{ backup.repository }}", sftp_command: "{{ backup.sftp_command }}"},
       check_mode: true, register: r_vault_snapshot__restore_check}
    - {penguinmails.vps.vault_snapshot: {state: restored, force: true, repository: "{{ backup.repository }}",
       sftp_command: "{{ backup.sftp_command }}"}, register: r_vault_snapshot__restored}
"""


def vault_cases(lab, tmp, run_cases):
    """Run the cases; returns {module: [results]} as run_cases does."""
    host = lab.create_host("rv" + secrets.token_hex(2))
    tid = "rv" + secrets.token_hex(3)
    try:
        known = os.path.join(str(tmp), "vault_known_hosts")
        with open(known, "w") as handle:
            for pub in sorted(glob.glob(os.path.join(host["root"], "fs", "etc", "ssh", "ssh_host_*_key.pub"))):
                handle.write("%s %s\n" % (host["ip"], " ".join(open(pub).read().split()[:2])))
        keys = os.path.join(host["root"], "fs", "root", ".ssh", "authorized_keys")
        with open(keys, "a") as handle:  # serials a lost Vault had written: the restore lost versions 2..5
            handle.write("# penguinmails-serial penguinmails:%s:admin 5\n" % tid)
        ssh_args = " ".join(shlex.quote(part) for part in [
            "-i", lab.private_key, "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
            "-o", "UserKnownHostsFile=%s" % known, "-o", "StrictHostKeyChecking=yes"])
        backup = backup_host(lab)
        values = dict(tid=tid, host_ip=host["ip"], ssh_args=ssh_args.replace('"', '\\"'),
                      repository=backup["repository"].replace("{tenant}", "_vault-returns-" + tid),
                      sftp_command=backup["sftp_command"].replace('"', '\\"'))
        plays = CASES
        for key, value in values.items():
            plays = plays.replace("@%s@" % key, value)
        with OpenBaoCluster(size=1) as cluster:
            cluster.enable_kv("vps")
            env = {"VAULT_ADDR": cluster.leader(), "VAULT_TOKEN": cluster.token,
                   "PENGUINMAILS_VAULT_BACKUP_PASSWORD": secrets.token_urlsafe(24)}
            return run_cases(lab, tmp, plays, env=env, name="vault")
    finally:
        lab.destroy_host(host["name"])
