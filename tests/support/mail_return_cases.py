# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cases of mailbox_sync and mail_backup for tests/integration/test_module_returns.py (issue 13).

Two lab hosts with a real sshd (maildirs written under their /mailu/mail) and the lab's SFTP backup host: the modules
run from localhost as the playbooks run them, and every result is registered as ``r_<module>__<case>``.
"""

from __future__ import annotations

import glob
import os
import secrets
import shlex

from tests.lab.backup import backup_host

USER = "rt@returns.test"

CASES = """
- hosts: localhost
  gather_facts: false
  vars:
    src: {host: "@src_ip@", args: "@ssh_args@"}
    dst: {host: "@dst_ip@", args: "@ssh_args@"}
    backup: {tenant_id: "@tid@", repository: "@repository@", sftp_command: "@sftp_command@"}
  tasks:
    # --- mailbox_sync: check mode, a copy, a merge with nothing to do, the same host refused
    - {penguinmails.vps.mailbox_sync: {source_host: "{{ src.host }}", source_ssh_args: "{{ src.args }}",
       target_host: "{{ dst.host }}", target_ssh_args: "{{ dst.args }}"}, check_mode: true, register: r_mailbox_sync__check}
    - {penguinmails.vps.mailbox_sync: {source_host: "{{ src.host }}", source_ssh_args: "{{ src.args }}",
       target_host: "{{ dst.host }}", target_ssh_args: "{{ dst.args }}", timeout: 300}, register: r_mailbox_sync__copy}
    - {penguinmails.vps.mailbox_sync: {source_host: "{{ src.host }}", source_ssh_args: "{{ src.args }}",
       target_host: "{{ dst.host }}", target_ssh_args: "{{ dst.args }}", mode: merge}, register: r_mailbox_sync__merge}
    - {penguinmails.vps.mailbox_sync: {source_host: "{{ src.host }}", target_host: "{{ src.host }}"},
       ignore_errors: true, register: r_mailbox_sync__same_host}
    # --- mail_backup: nothing to restore yet, a first backup in check mode, a backup, the retention, a query,
    #     a restore in check mode and for real
    - {penguinmails.vps.mail_backup: {tenant_id: "{{ backup.tenant_id }}", state: restored, host: "{{ dst.host }}",
       ssh_args: "{{ dst.args }}", repository: "{{ backup.repository }}", sftp_command: "{{ backup.sftp_command }}"},
       ignore_errors: true, register: r_mail_backup__nothing}
    - {penguinmails.vps.mail_backup: {tenant_id: "{{ backup.tenant_id }}", host: "{{ src.host }}", ssh_args: "{{ src.args }}",
       repository: "{{ backup.repository }}", sftp_command: "{{ backup.sftp_command }}"},
       check_mode: true, register: r_mail_backup__first_check}
    - {penguinmails.vps.mail_backup: {tenant_id: "{{ backup.tenant_id }}", host: "{{ src.host }}", ssh_args: "{{ src.args }}",
       repository: "{{ backup.repository }}", sftp_command: "{{ backup.sftp_command }}"}, register: r_mail_backup__present}
    - {penguinmails.vps.mail_backup: {tenant_id: "{{ backup.tenant_id }}", host: "{{ src.host }}", ssh_args: "{{ src.args }}",
       sftp_command: "{{ backup.sftp_command }}", retention: {last: 1}}, register: r_mail_backup__retention}
    - {penguinmails.vps.mail_backup: {tenant_id: "{{ backup.tenant_id }}", state: query,
       sftp_command: "{{ backup.sftp_command }}"}, register: r_mail_backup__query}
    - {penguinmails.vps.mail_backup: {tenant_id: "{{ backup.tenant_id }}", state: restored, host: "{{ dst.host }}",
       ssh_args: "{{ dst.args }}", sftp_command: "{{ backup.sftp_command }}"}, check_mode: true,
       register: r_mail_backup__restore_check}
    - {penguinmails.vps.mail_backup: {tenant_id: "{{ backup.tenant_id }}", state: restored, host: "{{ dst.host }}",
       ssh_args: "{{ dst.args }}", sftp_command: "{{ backup.sftp_command }}", mail_root: /mailu/restored},
       register: r_mail_backup__restored}
"""


def _write(root, rel, data):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)


def mail_cases(lab, tmp, run_cases):
    """Run the cases; returns {module: [results]} as run_cases does."""
    name = "rm" + secrets.token_hex(2)
    hosts = [lab.create_host(name + "a"), lab.create_host(name + "b")]
    try:
        known = os.path.join(str(tmp), "mail_known_hosts")
        with open(known, "w") as handle:
            for host in hosts:
                for pub in sorted(glob.glob(os.path.join(host["root"], "fs", "etc", "ssh", "ssh_host_*_key.pub"))):
                    handle.write("%s %s\n" % (host["ip"], " ".join(open(pub).read().split()[:2])))
        mail = os.path.join(hosts[0]["root"], "fs", "mailu", "mail")
        _write(mail, "%s/cur/1.M1.rt:2,S" % USER, b"Subject: one\r\n\r\nbody\r\n")
        _write(mail, "%s/new/2.M2.rt" % USER, b"Subject: two\r\n\r\nbody\r\n")
        _write(mail, "%s/.Archive/cur/3.M3.rt:2,FS" % USER, b"Subject: three\r\n\r\nbody\r\n")
        _write(mail, "%s/dovecot-uidlist" % USER, b"3 V1 N3\n1 :1.M1.rt\n2 :2.M2.rt\n")
        ssh_args = " ".join(shlex.quote(part) for part in [
            "-i", lab.private_key, "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
            "-o", "UserKnownHostsFile=%s" % known, "-o", "StrictHostKeyChecking=yes"])
        backup = backup_host(lab)
        values = dict(src_ip=hosts[0]["ip"], dst_ip=hosts[1]["ip"], ssh_args=ssh_args.replace('"', '\\"'),
                      tid="rb" + secrets.token_hex(3), repository=backup["repository"],
                      sftp_command=backup["sftp_command"].replace('"', '\\"'))
        plays = CASES
        for key, value in values.items():
            plays = plays.replace("@%s@" % key, value)
        return run_cases(lab, tmp, plays, name="mail")
    finally:
        for host in hosts:
            lab.destroy_host(host["name"])
