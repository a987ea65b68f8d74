# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""penguinmails.vps.backup in the lab: restic (Debian's) snapshots of a tenant's mail to the SFTP backup host.

The tenant's VPS runs Debian's Postfix and Dovecot (tests/lab/mail); its mail arrives over IMAP and SMTP; the
repository lives on the lab's backup host (tests/lab/backup.py), reached over SFTP with checked host keys.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile

import pytest

from tests.lab import seed
from tests.lab.backup import backup_host
from tests.support import mailboxes

PLAYBOOK = "penguinmails.vps.backup"


@pytest.fixture()
def workdir(tmp_path):
    os.chmod(str(tmp_path), 0o700)
    return str(tmp_path)


@pytest.fixture()
def tenant_of(lab):
    made = []

    def make():
        tenant = seed.seed_tenant(lab)
        tenant["seed_password"] = seed.vault(lab).read("smtp", "%s/admin" % tenant.tenant_id).data["password"]
        made.append(tenant)
        return tenant

    yield make
    for tenant in made:
        for item in seed.instances(lab):
            if item["srvrname"].startswith("pm-%s-" % tenant.tenant_id):
                seed.hostwinds(lab, "terminate", serviceid=item["serviceid"])


def restic(backup, password, *args):
    env = dict(os.environ, RESTIC_PASSWORD=password)
    return subprocess.run(["restic", "--repo", backup["repository"].split("{")[0] + args[0],
                           "--option", "sftp.command=%s" % backup["sftp_command"]] + list(args[1:]),
                          capture_output=True, env=env, timeout=300, check=True).stdout


def files_under(root):
    for base, _dirs, names in os.walk(root):
        for name in names:
            yield os.path.join(base, name)


def contains(root, needle):
    for path in files_under(root):
        try:
            with open(path, "rb") as handle:
                if needle in handle.read():
                    return path
        except OSError:
            continue
    return None


def events(audit_file, tenant, action):
    return [e for e in seed.read_events(audit_file) if e.get("tenantId") == tenant.tenant_id and e["action"] == action]


def test_backup_snapshots_the_mail_with_the_password_only_in_vault_and_keeps_the_retention(lab, workdir, tenant_of):
    tenant = tenant_of()
    tid, old = tenant.tenant_id, tenant["old_vps"]
    user, password = tenant["admin_user"], tenant["seed_password"]
    mailboxes.put(old["ip"], user, password, "INBOX", [("<bk1@test>", r"\Seen"), ("<bk2@test>", r"\Flagged")])
    mailboxes.put(old["ip"], user, password, "Archive", [("<bk3@test>", r"\Seen \Answered")])
    backup = backup_host(lab)
    audit_file = os.path.join(workdir, "audit.jsonl")
    first = seed.run_lab_playbook(lab, tenant, os.path.join(workdir, "one"), PLAYBOOK, extra_vars=backup["vars"],
                                  audit_file=audit_file)
    assert first.returncode == 0, (first.stdout + first.stderr)[-4000:]
    (taken,) = events(audit_file, tenant, "mail_backup_completed")
    details = taken["details"]
    assert details["messages"] == 3 and details["initialised"] is True and details["snapshots"] == 1
    assert "snapshot %s of 3 messages" % details["snapshot_id"] in first.stdout

    # The password: in Vault only (vps/<tenant>/backup), never on the VPS, the backup host, the output or the audit.
    stored = seed.vault(lab).read("vps", "%s/backup" % tid).data
    secret = stored["restic_password"]
    assert len(secret) >= 32 and stored["repository"] == backup["repository"].replace("{tenant}", tid)
    with open(audit_file) as handle:
        assert secret not in handle.read()
    assert secret not in first.stdout + first.stderr
    for root in (os.path.join(lab.state_dir, "hosts", old["lab_host"], "fs"),
                 os.path.join(lab.state_dir, "hosts", backup["name"], "fs")):
        assert contains(root, secret.encode()) is None

    # The snapshot: one per tenant host name, holding mail data only (no index, no configuration).
    listing = restic(backup, secret, tid, "snapshots", "--json")
    assert b'"hostname":"%s"' % tid.encode() in listing
    dump = restic(backup, secret, tid, "dump", "latest", "/mail.tar")
    with tarfile.open(fileobj=io.BytesIO(dump)) as archive:
        names = archive.getnames()
    assert len([n for n in names if "/cur/" in n or "/new/" in n]) == 3
    assert any(n.endswith("/.Archive/cur/" + n.rsplit("/", 1)[-1]) for n in names)
    assert not [n for n in names if "dovecot.index" in n or n.startswith("mailu.env") or "/tmp/" in n]
    assert "%s/dovecot-uidlist" % user in names

    # A second run with a retention of one snapshot forgets the first.
    mailboxes.send(old["ip"], user, "<bk4@test>")
    mailboxes.wait_for(old["ip"], user, password, ["<bk4@test>"])
    keep_one = dict(backup["vars"], backup_keep_last=1, backup_keep_hourly=0, backup_keep_daily=0, backup_keep_weekly=0,
                    backup_keep_monthly=0)
    second = seed.run_lab_playbook(lab, tenant, os.path.join(workdir, "two"), PLAYBOOK, extra_vars=keep_one,
                                   audit_file=audit_file)
    assert second.returncode == 0, (second.stdout + second.stderr)[-4000:]
    latest = events(audit_file, tenant, "mail_backup_completed")[-1]["details"]
    assert latest["messages"] == 4 and latest["removed"] == [details["snapshot_id"]] and latest["snapshots"] == 1
    assert latest["initialised"] is False
    assert seed.vault(lab).read("vps", "%s/backup" % tid).data["restic_password"] == secret


def test_a_tenant_that_cannot_be_backed_up_is_audited_and_fails_the_run(lab, workdir, tenant_of):
    tenant = tenant_of()
    backup = backup_host(lab)
    assert lab.host_exec(tenant["old_vps"]["lab_host"], ["pkill", "-KILL", "sshd"]).returncode == 0
    audit_file = os.path.join(workdir, "audit.jsonl")
    proc = seed.run_lab_playbook(lab, tenant, workdir, PLAYBOOK, extra_vars=backup["vars"], audit_file=audit_file)
    assert proc.returncode == 2, (proc.stdout + proc.stderr)[-4000:]
    assert "1 of 1 tenants not backed up: %s" % tenant.tenant_id in proc.stdout
    assert [(e["status"], e["severity"]) for e in events(audit_file, tenant, "mail_backup_failed")] == [
        ("failure", "critical")]
    assert events(audit_file, tenant, "mail_backup_completed") == []


@pytest.mark.parametrize("extra,rule", [
    ({}, "backup: set -e tenant_id=<id>, or -e all_tenants=true to back up every tenant"),
    ({"tenant_id": "bad/id"}, "backup: tenant_id:"),
    ({"tenant_id": "tok", "backup_keep_daily": -1}, "backup: backup_keep_daily must be at least 0, not -1"),
    ({"tenant_id": "tok", "backup_timeout": "soon"}, "backup: backup_timeout must be a whole number, not 'soon'"),
])
def test_bad_input_is_refused_with_the_one_rule_and_nothing_done(lab, workdir, extra, rule):
    audit_file = os.path.join(workdir, "audit.jsonl")
    tenant = seed.Tenant(tenant_id="tok")
    values = dict(extra)
    cmd_tenant = values.pop("tenant_id", "")
    proc = seed.run_lab_playbook(lab, seed.Tenant(tenant_id=cmd_tenant), workdir, PLAYBOOK, extra_vars=values,
                                 audit_file=audit_file)
    assert proc.returncode == 2
    assert rule in proc.stdout, proc.stdout[-3000:]
    assert seed.read_events(audit_file) == [] and seed.vault(lab).read_or_none("vps", "%s/backup" % tenant.tenant_id) is None
