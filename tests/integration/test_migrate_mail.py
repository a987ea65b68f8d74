# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tenant's mail survives a migration (issue 13): RPO 0 when the old VPS answers, the backup's age when not.

Real parts only: the lab's Mailu hosts run Debian's Postfix and Dovecot, the tests talk IMAP and SMTP to them as a
mail client and a sending server would; backups are restic repositories on the lab's SFTP backup host; faults come
from outside (the run paused at a task while mail arrives, the old VPS's sshd killed).
"""

from __future__ import annotations

import email
import email.policy
import os
import re
import signal
import socket
import subprocess

import pytest

from tests.lab import mail as lab_mail
from tests.lab import seed
from tests.lab.backup import backup_host
from tests.support import mailboxes
from tests.support.wait import wait_until


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


def fill(tenant, tag, inbox=4, archive=3, smtp=2):
    """Mail in the tenant's old VPS: INBOX and an Archive folder with flags (IMAP), and mail from outside (SMTP)."""
    ip, user, password = tenant["old_vps"]["ip"], tenant["admin_user"], tenant["seed_password"]
    flag_sets = [r"\Seen", r"\Seen \Flagged", "", r"\Answered \Seen", r"\Draft"]
    mailboxes.put(ip, user, password, "INBOX",
                  [("<%s-in%d@test>" % (tag, n), flag_sets[n % len(flag_sets)]) for n in range(inbox)])
    mailboxes.put(ip, user, password, "Archive",
                  [("<%s-ar%d@test>" % (tag, n), flag_sets[(n + 1) % len(flag_sets)]) for n in range(archive)])
    sent = ["<%s-smtp%d@test>" % (tag, n) for n in range(smtp)]
    for message_id in sent:
        mailboxes.send(ip, user, message_id)
    mailboxes.wait_for(ip, user, password, sent)
    return mailboxes.view(ip, user, password)


def events_of(audit_file, tenant, action):
    return [e for e in seed.read_events(audit_file) if e.get("tenantId") == tenant.tenant_id and e["action"] == action]


def new_ip_of(lab, tenant):
    return seed.read_record(lab, tenant.tenant_id)["vps_ip"]


def run_until(proc, marker):
    """Read the run's output up to a line containing ``marker``; the lines so far."""
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            return seen
    raise AssertionError("the run ended before %r:\n%s" % (marker, "".join(seen)[-4000:]))


def kill_sshd(lab, tenant):
    assert lab.host_exec(tenant["old_vps"]["lab_host"], ["pkill", "-KILL", "sshd"]).returncode == 0


def notice(lab, tenant):
    host = seed.lab_host_name(lab, seed.read_record(lab, tenant.tenant_id)["vps_id"])
    root = os.path.join(lab.state_dir, "hosts", host, "fs", "mailu")
    for path in lab_mail.mailbox_messages(root, tenant["admin_user"]):
        with open(path, "rb") as handle:
            message = email.message_from_binary_file(handle, policy=email.policy.default)
        if "moved to a new VPS" in str(message["Subject"]):
            return message.get_content()
    raise AssertionError("no notice in the new mailbox")


def test_upgrade_moves_every_message_with_flags_uids_and_the_mail_sent_during_the_move(lab, workdir, tenant_of):
    tenant = tenant_of()
    user, password, old = tenant["admin_user"], tenant["seed_password"], tenant["old_vps"]
    before, before_uids = fill(tenant, "n")
    assert sum(len(box) for box in before.values()) == 9 and before["Archive"]
    audit_file = os.path.join(workdir, "audit.jsonl")
    # An RTO of a minute at a copy rate of 10 bytes/s: the preflight warns (advisory), and the run goes on.
    proc = seed.run_migrate(lab, tenant, workdir, reason="upgrade", audit_file=audit_file, popen="pipe",
                            extra_vars={"migrate_rto": 60, "migrate_copy_rate_mbps": "0.00001"})
    output = run_until(proc, "TASK [Point the mail host's A record")
    # Verified, the DNS switch under way: the run is held while three more messages reach the old VPS.
    os.killpg(proc.pid, signal.SIGSTOP)
    during = ["<m-during%d@test>" % n for n in range(3)]
    try:
        for message_id in during:
            mailboxes.send(old["ip"], user, message_id)
        mailboxes.wait_for(old["ip"], user, password, during)
    finally:
        os.killpg(proc.pid, signal.SIGCONT)
    output.append(proc.communicate(timeout=900)[0])
    output = "".join(output)
    assert proc.returncode == 0, output[-5000:]

    new_ip = new_ip_of(lab, tenant)
    after, after_uids = mailboxes.view(new_ip, user, password)
    for folder, messages in before.items():
        for message_id, flags in messages.items():
            assert after[folder].get(message_id) == flags, (folder, message_id, flags, after[folder].get(message_id))
        # The copy kept the UIDs and UIDVALIDITY the tenant's IMAP clients know.
        validity, uids = before_uids[folder]
        assert after_uids[folder][0] == validity
        assert {mid: after_uids[folder][1][mid] for mid in uids} == uids
    assert set(during) <= set(after["INBOX"])  # the mail that reached the old VPS during the move
    # The old VPS is kept (an upgrade), but wiped, and only after the final delta.
    assert len(seed.instances_named(lab, old["name"])) == 1
    assert os.listdir(os.path.join(lab.state_dir, "hosts", old["lab_host"], "fs", "mailu")) == []
    copied = events_of(audit_file, tenant, "mail_copied")
    assert [(e["details"]["source"], e["details"]["messages"]) for e in copied] == [("old_vps", 9)]
    delta = events_of(audit_file, tenant, "mail_delta_copied")
    assert [e["details"]["messages"] for e in delta] == [3]
    (completed,) = events_of(audit_file, tenant, "vps_migration_completed")
    assert completed["details"]["rpo_seconds"] == 0 and completed["details"]["mail_loss_accepted"] is False
    assert events_of(audit_file, tenant, "mail_loss_accepted") == []
    assert "9 messages" in output and "final delta 3 messages" in output
    (rto,) = events_of(audit_file, tenant, "vps_migration_rto_exceeded")
    assert rto["severity"] == "warning" and rto["details"]["size_source"] == "old_vps"
    assert rto["details"]["mailbox_bytes"] > 0 and rto["details"]["rto_seconds"] == 60
    assert rto["details"]["estimated_seconds"] == -(-rto["details"]["mailbox_bytes"] // 10) > 60
    assert "the migration would exceed its RTO" in output
    record = seed.read_record(lab, tenant.tenant_id)["last_migration"]
    at = record["steps"]  # step -> when it was done (ms)
    assert at["dkim"] < at["mail_copied"] < at["verified"] < at["dns_switched"]
    assert at["dns_switched"] < at["final_delta"] < at["old_vps_wiped"] < at["old_vps_destroyed"]
    assert "No mail was lost" in notice(lab, tenant)


def test_failure_restores_the_latest_backup_and_reports_its_rpo(lab, workdir, tenant_of):
    tenant = tenant_of()
    user, password, old = tenant["admin_user"], tenant["seed_password"], tenant["old_vps"]
    backup = backup_host(lab)
    audit_file = os.path.join(workdir, "audit.jsonl")
    before, _uids = fill(tenant, "b")
    taken = seed.run_lab_playbook(lab, tenant, os.path.join(workdir, "backup"), "penguinmails.vps.backup",
                                  extra_vars=backup["vars"], audit_file=audit_file)
    assert taken.returncode == 0, (taken.stdout + taken.stderr)[-4000:]
    (snapshot,) = events_of(audit_file, tenant, "mail_backup_completed")
    # K more messages after the backup, then the old VPS dies.
    later = ["<k-after%d@test>" % n for n in range(2)]
    for message_id in later:
        mailboxes.send(old["ip"], user, message_id)
    mailboxes.wait_for(old["ip"], user, password, later)
    kill_sshd(lab, tenant)

    proc = seed.run_migrate(lab, tenant, os.path.join(workdir, "migrate"), reason="failure", audit_file=audit_file,
                            extra_vars=dict(backup["vars"], migrate_accept_mail_loss=True))
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]
    after, _uids = mailboxes.view(new_ip_of(lab, tenant), user, password)
    for folder, messages in before.items():
        for message_id, flags in messages.items():
            assert after[folder].get(message_id) == flags
    seen = set().union(*[set(box) for box in after.values()])
    assert not set(later) & seen  # the K are not pretended recovered
    (copied,) = events_of(audit_file, tenant, "mail_copied")
    assert copied["details"]["source"] == "backup" and copied["details"]["messages"] == 9
    assert copied["details"]["snapshot_id"] == snapshot["details"]["snapshot_id"]
    rpo = copied["details"]["rpo_seconds"]
    assert isinstance(rpo, int) and rpo >= 0
    (completed,) = events_of(audit_file, tenant, "vps_migration_completed")
    assert completed["details"]["mail_source"] == "backup" and completed["details"]["rpo_seconds"] == rpo
    assert completed["details"]["mail_loss_accepted"] is True
    assert [(e["severity"], e["details"]["step"]) for e in events_of(audit_file, tenant, "mail_loss_accepted")] == [
        ("critical", "final_delta")]
    assert "RPO %d s" % rpo in output
    # The restore showed its progress while it ran (the action plugin relays the module's lines).
    assert re.search(r"\[localhost\] mail restore: 9/9 messages, [0-9.]+/[0-9.]+ MB, [0-9.]+ MB/s, done", output), output[-5000:]
    body = notice(lab, tenant)
    assert "restored from the backup of %s" % snapshot["details"]["snapshot_time"] in body
    assert "could not be recovered" in body and "No mail was lost" not in body


def test_a_failed_final_delta_keeps_the_old_vps_until_the_loss_is_accepted(lab, workdir, tenant_of):
    tenant = tenant_of()
    user, password, old = tenant["admin_user"], tenant["seed_password"], tenant["old_vps"]
    before, _uids = fill(tenant, "d", inbox=2, archive=1, smtp=1)
    audit_file = os.path.join(workdir, "audit.jsonl")
    proc = seed.run_migrate(lab, tenant, os.path.join(workdir, "first"), reason="upgrade", audit_file=audit_file,
                            popen="pipe")
    output = run_until(proc, "TASK [Record step dns_switched]")
    kill_sshd(lab, tenant)  # the old VPS dies right after the switch
    output.append(proc.communicate(timeout=900)[0])
    output = "".join(output)
    assert proc.returncode == 2 and "the final mail delta from the old VPS failed" in output, output[-5000:]
    failed = events_of(audit_file, tenant, "vps_migration_failed")
    assert [(e["severity"], e["details"]["step"]) for e in failed] == [("critical", "final_delta")]

    def old_kept():
        assert len(seed.instances_named(lab, old["name"])) == 1 and lab.host(old["lab_host"])["running"]
        assert os.listdir(os.path.join(lab.state_dir, "hosts", old["lab_host"], "fs", "mailu", "mail"))
        assert seed.read_record(lab, tenant.tenant_id)["migration"]["step"] == "record_updated"

    old_kept()
    again = seed.run_migrate(lab, tenant, os.path.join(workdir, "again"), reason="upgrade", audit_file=audit_file)
    assert again.returncode == 2, (again.stdout + again.stderr)[-4000:]
    old_kept()
    assert len(events_of(audit_file, tenant, "vps_migration_failed")) == 2
    assert events_of(audit_file, tenant, "mail_loss_accepted") == []

    accepted = seed.run_migrate(lab, tenant, os.path.join(workdir, "accept"), reason="upgrade", audit_file=audit_file,
                                extra_vars={"migrate_accept_mail_loss": "true"})
    assert accepted.returncode == 0, (accepted.stdout + accepted.stderr)[-4000:]
    assert len(seed.instances_named(lab, old["name"])) == 1  # an upgrade keeps the old VPS; unreachable, it was not wiped
    assert [e["severity"] for e in events_of(audit_file, tenant, "mail_loss_accepted")] == ["critical"]
    (completed,) = events_of(audit_file, tenant, "vps_migration_completed")
    assert completed["details"]["mail_loss_accepted"] is True
    after, _uids = mailboxes.view(new_ip_of(lab, tenant), user, password)
    for folder, messages in before.items():  # the copy made before the switch is there
        assert set(messages) <= set(after[folder])


def test_accept_mail_loss_is_validated_like_the_other_inputs(lab, workdir):
    tenant = seed.Tenant(tenant_id="tvalid1")
    audit_file = os.path.join(workdir, "audit.jsonl")
    proc = seed.run_migrate(lab, tenant, workdir, reason="upgrade", audit_file=audit_file,
                            extra_vars={"migrate_accept_mail_loss": "maybe"})
    assert proc.returncode == 2
    assert "migrate: migrate_accept_mail_loss must be one of true, false, yes, no, not 'maybe'" in proc.stdout
    assert seed.read_record(lab, tenant.tenant_id) is None and seed.read_events(audit_file) == []


def revive_sshd(lab, tenant):
    """The old VPS answers again: its sshd is started anew (its host keys and authorized_keys are those it had)."""
    host, ip = tenant["old_vps"]["lab_host"], tenant["old_vps"]["ip"]
    lab.host_popen(host, ["/usr/sbin/sshd", "-D", "-E", "/var/log/sshd.log"],
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: ssh_banner(ip), 30, "the old VPS's sshd on %s" % ip)


def ssh_banner(ip):
    try:
        with socket.create_connection((ip, 22), timeout=1) as sock:
            sock.settimeout(2)
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def counts(ip, user, password):
    """Messages per folder as IMAP counts them (a duplicate Message-ID counts twice)."""
    imap = mailboxes.connect(ip, user, password)
    try:
        found = {}
        for folder in mailboxes.view(ip, user, password)[0]:
            typ, data = imap.select('"%s"' % folder, readonly=True)
            assert typ == "OK", data
            found[folder] = int(data[0])
        return found
    finally:
        imap.logout()


def old_intact(lab, tenant, before):
    """The old VPS is neither wiped nor destroyed: listed, running, its mail all there (seen over IMAP)."""
    old = tenant["old_vps"]
    assert len(seed.instances_named(lab, old["name"])) == 1 and lab.host(old["lab_host"])["running"]
    now, _uids = mailboxes.view(old["ip"], tenant["admin_user"], tenant["seed_password"])
    for folder, messages in before.items():
        assert set(messages) <= set(now[folder]), folder


def assert_merged(lab, tenant, before, meanwhile):
    """Every message the old VPS had is in the live mailbox with its flags, next to the mail that arrived meanwhile,
    each message once."""
    user, password = tenant["admin_user"], tenant["seed_password"]
    new_ip = new_ip_of(lab, tenant)
    after, _uids = mailboxes.view(new_ip, user, password)
    for folder, messages in before.items():
        for message_id, flags in messages.items():
            assert after[folder].get(message_id) == flags, (folder, message_id, flags, after[folder].get(message_id))
    for message_id, flags in meanwhile.items():
        assert after["INBOX"].get(message_id) == flags, (message_id, flags, after["INBOX"].get(message_id))
    assert counts(new_ip, user, password) == {folder: len(messages) for folder, messages in after.items()}  # no duplicate


@pytest.mark.parametrize("name,value,rule", [
    ("migrate_rto", "1h", "migrate_rto must be a whole number, not '1h'"),
    ("migrate_rto", 30, "migrate_rto must be at least 60, not 30"),
    ("migrate_copy_rate_mbps", "fast", "migrate_copy_rate_mbps must be a number, not 'fast'"),
    ("migrate_copy_rate_mbps", 0, "migrate_copy_rate_mbps must be more than 0, not 0"),
])
def test_the_rto_inputs_are_validated_like_the_other_inputs(lab, workdir, name, value, rule):
    tenant = seed.Tenant(tenant_id="tvalid2")
    audit_file = os.path.join(workdir, "audit.jsonl")
    proc = seed.run_migrate(lab, tenant, workdir, reason="upgrade", audit_file=audit_file, extra_vars={name: value})
    assert proc.returncode == 2
    assert "migrate: %s" % rule in proc.stdout, proc.stdout[-3000:]
    assert seed.read_record(lab, tenant.tenant_id) is None and seed.read_events(audit_file) == []


def test_a_dead_old_vps_without_a_backup_gets_service_first_and_its_mail_merged_when_it_answers(lab, workdir, tenant_of):
    """Issue 23: old VPS dead, no backup. Before, the run stopped before the DNS switch and the tenant had no mail
    service until someone brought the old VPS back. Now the new VPS serves at once; the old VPS is kept untouched; the
    rerun after it answers again merges its mail into the live mailbox, then wipes it."""
    tenant = tenant_of()
    user, password, old = tenant["admin_user"], tenant["seed_password"], tenant["old_vps"]
    before, _uids = fill(tenant, "z", inbox=3, archive=2, smtp=1)
    kill_sshd(lab, tenant)
    audit_file = os.path.join(workdir, "audit.jsonl")
    first = seed.run_migrate(lab, tenant, os.path.join(workdir, "first"), reason="failure", audit_file=audit_file)
    output = first.stdout + first.stderr
    assert first.returncode == 0, output[-5000:]
    assert "has no attribute" not in output and "with mail pending" in output
    assert "the mailbox size is unknown" in output and events_of(audit_file, tenant, "vps_migration_rto_exceeded") == []

    # Service first: DNS names the new VPS, which took SMTP AUTH and signed with DKIM (step verified) and delivers.
    new_ip = new_ip_of(lab, tenant)
    assert new_ip != old["ip"] and seed.dns_query(lab, tenant["mail_host"] + ".", "A") == [new_ip]
    (completed,) = events_of(audit_file, tenant, "vps_migration_completed")
    details = completed["details"]
    assert completed["severity"] == "warning" and completed["status"] == "success"
    assert details["mail_pending"] is True and details["rpo"] == "unknown_until_merged" and details["rpo_seconds"] is None
    assert details["mail_source"] == "none" and details["mail_loss_accepted"] is False
    assert details["old_vps_wiped"] is False and details["old_vps_destroyed"] is False
    record = seed.read_record(lab, tenant.tenant_id)
    assert record["migration"]["step"] == "record_updated" and "run" not in record["migration"]
    assert record["migration"]["notes"]["mail_pending"] is True and record["migration"]["notes"]["dkim_verified"] is True
    assert events_of(audit_file, tenant, "mail_loss_accepted") == [] and events_of(audit_file, tenant, "vps_migration_failed") == []
    meanwhile = {"<z-new%d@test>" % n: frozenset() for n in range(2)}
    for message_id in meanwhile:
        mailboxes.send(new_ip, user, message_id)
    mailboxes.wait_for(new_ip, user, password, list(meanwhile))
    body = notice(lab, tenant)
    assert "still to come" in body and "No mail was lost" not in body and "could not be recovered" not in body
    # Nothing of the old VPS was wiped or destroyed while its mail may still be on it.
    old_intact(lab, tenant, before)

    # A message reaches the old VPS while it is cut off (a sender with a stale DNS answer).
    mailboxes.send(old["ip"], user, "<z-late@test>")
    mailboxes.wait_for(old["ip"], user, password, ["<z-late@test>"])
    before, _uids = mailboxes.view(old["ip"], user, password)

    revive_sshd(lab, tenant)
    again = seed.run_migrate(lab, tenant, os.path.join(workdir, "again"), reason="failure", audit_file=audit_file)
    assert again.returncode == 0, (again.stdout + again.stderr)[-5000:]
    assert_merged(lab, tenant, before, meanwhile)
    (delta,) = events_of(audit_file, tenant, "mail_delta_copied")
    assert delta["details"]["messages"] == sum(len(box) for box in before.values()) == 7
    assert delta["details"]["pending_since"] == record["migration"]["notes"]["service_restored_at"]
    (merged,) = events_of(audit_file, tenant, "vps_migration_mail_merged")
    assert merged["details"]["rpo_seconds"] == 0 and merged["details"]["mail_loss_accepted"] is False
    assert merged["details"]["old_vps_wiped"] is True and merged["details"]["old_vps_destroyed"] is False
    assert len(events_of(audit_file, tenant, "vps_migration_completed")) == 1  # completed once, merged later
    # Then the old VPS is wiped (reason=failure keeps it, wiped).
    assert len(seed.instances_named(lab, old["name"])) == 1
    assert os.listdir(os.path.join(lab.state_dir, "hosts", old["lab_host"], "fs", "mailu")) == []
    record = seed.read_record(lab, tenant.tenant_id)
    assert "migration" not in record and record["last_migration"]["notes"]["mail_pending"] is False


MERGE = "penguinmails.vps.mail_merge"


def add_flag(ip, user, password, folder, message_id, flag):
    """Set ``flag`` on one message over IMAP, as the tenant's mail client does."""
    imap = mailboxes.connect(ip, user, password)
    try:
        typ, data = imap.select('"%s"' % folder)
        assert typ == "OK", data
        typ, found = imap.uid("SEARCH", "HEADER", "Message-ID", message_id)
        assert typ == "OK" and len(found[0].split()) == 1, found
        typ, data = imap.uid("STORE", found[0].split()[0].decode(), "+FLAGS", "(%s)" % flag)
        assert typ == "OK", data
    finally:
        imap.logout()


def test_a_dead_old_vps_with_an_older_backup_is_restored_first_and_the_later_mail_merged_when_it_answers(lab, workdir, tenant_of):
    """Issue 23: after a restore from the latest snapshot, the mail that reached the old VPS after it was never
    brought over. Now the service is restored from the snapshot, and penguinmails.vps.mail_merge, once the old VPS
    answers again, merges the later mail (and flags set there since) into the live mailbox: nothing twice, the new
    mail untouched; then the old VPS is wiped."""
    tenant = tenant_of()
    user, password, old = tenant["admin_user"], tenant["seed_password"], tenant["old_vps"]
    backup = backup_host(lab)
    audit_file = os.path.join(workdir, "audit.jsonl")
    snapshot_view, _uids = fill(tenant, "h", inbox=3, archive=2, smtp=1)
    taken = seed.run_lab_playbook(lab, tenant, os.path.join(workdir, "backup"), "penguinmails.vps.backup",
                                  extra_vars=backup["vars"], audit_file=audit_file)
    assert taken.returncode == 0, (taken.stdout + taken.stderr)[-4000:]
    (snapshot,) = events_of(audit_file, tenant, "mail_backup_completed")
    # The hour after the backup: new mail on the old VPS, a message flagged there; then it dies.
    later = ["<h-later%d@test>" % n for n in range(2)]
    for message_id in later:
        mailboxes.send(old["ip"], user, message_id)
    mailboxes.wait_for(old["ip"], user, password, later)
    add_flag(old["ip"], user, password, "Archive", "<h-ar1@test>", r"\Flagged")
    before, _uids = mailboxes.view(old["ip"], user, password)
    assert before["Archive"]["<h-ar1@test>"] == snapshot_view["Archive"]["<h-ar1@test>"] | {r"\Flagged"}
    kill_sshd(lab, tenant)

    first = seed.run_migrate(lab, tenant, os.path.join(workdir, "first"), reason="failure", audit_file=audit_file,
                             extra_vars=dict(backup["vars"], migrate_rto=60, migrate_copy_rate_mbps=0.000001))
    output = first.stdout + first.stderr
    assert first.returncode == 0, output[-5000:]
    new_ip = new_ip_of(lab, tenant)
    restored, _uids = mailboxes.view(new_ip, user, password)
    for folder, messages in snapshot_view.items():  # service restored from the snapshot
        for message_id, flags in messages.items():
            assert restored[folder].get(message_id) == flags
    assert not set(later) & set(restored["INBOX"])  # not yet: still on the old VPS
    (copied,) = events_of(audit_file, tenant, "mail_copied")
    assert copied["details"]["source"] == "backup" and copied["details"]["snapshot_id"] == snapshot["details"]["snapshot_id"]
    # The RTO estimate took the snapshot's size (the old VPS did not answer).
    rto_events = events_of(audit_file, tenant, "vps_migration_rto_exceeded")
    assert len(rto_events) == 1, [line for line in output.splitlines() if "RTO" in line]
    (rto,) = rto_events
    assert rto["details"]["size_source"] == "backup" and rto["details"]["mailbox_bytes"] == snapshot["details"]["bytes"]
    (completed,) = events_of(audit_file, tenant, "vps_migration_completed")
    assert completed["details"]["mail_source"] == "backup" and completed["details"]["mail_pending"] is True
    assert completed["details"]["rpo_seconds"] is None and completed["details"]["rpo"] == "unknown_until_merged"
    assert events_of(audit_file, tenant, "mail_loss_accepted") == []
    body = notice(lab, tenant)
    assert "restored from the backup of %s" % snapshot["details"]["snapshot_time"] in body and "still to come" in body
    old_intact(lab, tenant, before)
    meanwhile = {"<h-new0@test>": frozenset()}
    mailboxes.send(new_ip, user, "<h-new0@test>")
    mailboxes.wait_for(new_ip, user, password, list(meanwhile))

    # penguinmails.vps.mail_merge while the old VPS is still dead: nothing changes, the mail stays pending.
    waiting = seed.run_lab_playbook(lab, tenant, os.path.join(workdir, "waiting"), MERGE, audit_file=audit_file)
    assert waiting.returncode == 0, (waiting.stdout + waiting.stderr)[-5000:]
    assert "still does not answer" in waiting.stdout
    old_intact(lab, tenant, before)
    assert seed.read_record(lab, tenant.tenant_id)["migration"]["notes"]["mail_pending"] is True
    assert events_of(audit_file, tenant, "vps_migration_mail_merged") == []
    assert len(events_of(audit_file, tenant, "vps_migration_completed")) == 1

    revive_sshd(lab, tenant)
    again = seed.run_lab_playbook(lab, tenant, os.path.join(workdir, "again"), MERGE, audit_file=audit_file)
    assert again.returncode == 0, (again.stdout + again.stderr)[-5000:]
    assert_merged(lab, tenant, before, meanwhile)
    (delta,) = events_of(audit_file, tenant, "mail_delta_copied")
    assert delta["details"]["messages"] == len(later) and delta["details"]["flag_updates"] >= 1
    (merged,) = events_of(audit_file, tenant, "vps_migration_mail_merged")
    assert merged["details"]["mail_source"] == "backup" and merged["details"]["rpo_seconds"] == 0
    assert merged["details"]["old_vps_wiped"] is True
    assert "migration" not in seed.read_record(lab, tenant.tenant_id)
    assert os.listdir(os.path.join(lab.state_dir, "hosts", old["lab_host"], "fs", "mailu")) == []


def test_mail_merge_refuses_a_tenant_without_mail_pending(lab, workdir, tenant_of):
    tenant = tenant_of()
    audit_file = os.path.join(workdir, "audit.jsonl")
    proc = seed.run_lab_playbook(lab, tenant, workdir, MERGE, audit_file=audit_file)
    assert proc.returncode == 2, (proc.stdout + proc.stderr)[-4000:]
    assert "%s has no migration with mail pending" % tenant.tenant_id in proc.stdout
    assert "Nothing was ordered or changed" in proc.stdout
    (failed,) = events_of(audit_file, tenant, "vps_migration_failed")
    assert failed["severity"] == "warning" and failed["details"]["step"] == "preflight"
    assert "migration" not in seed.read_record(lab, tenant.tenant_id)
    assert lab.host(tenant["old_vps"]["lab_host"])["running"]
