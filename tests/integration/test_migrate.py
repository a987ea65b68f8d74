# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/migrate.yml in the lab (tests/lab): a whole tenant migration, interrupted runs, a failing mail check.

Everything is real: OpenBao holds the keys and the tenant record, the Hostwinds simulator builds network
namespace hosts with sshd, BIND9 takes the DNS updates, the lab mail service (the stand-in for Mailu)
runs on the hosts from the files the roles render. The tenant is seeded by tests/lab/seed.py (shared
with `make demo`).
"""

from __future__ import annotations

import email
import email.policy
import os
import signal
import time

import pytest

from ansible_collections.penguinmails.vps.plugins.module_utils.mail_check import MailCheck
from ansible_collections.penguinmails.vps.plugins.module_utils.tenant_record import STEPS
from tests.lab import mail as lab_mail
from tests.lab import seed

SWITCH = STEPS.index("dns_switched")


@pytest.fixture()
def workdir(tmp_path):
    os.chmod(str(tmp_path), 0o700)
    return str(tmp_path)


def secrets_of(lab, tenant):
    """Every secret that must never appear in the output or the audit file."""
    client = seed.vault(lab)
    values = [lab["vault"]["token"], lab["dns"]["tsig_secret"], lab["hostwinds"]["api_key"],
              client.read("smtp", "%s/admin" % tenant.tenant_id).data["password"]]
    for role in ("admin", "tenant"):
        pem = client.read("vps", "%s/%s_ssh" % (tenant.tenant_id, role)).data["private_key"]
        values.append(pem.splitlines()[1])
    values.append(client.read("dkim", "%s/dkim" % tenant["domain"]).data["private_key"].splitlines()[1])
    return values


def assert_no_secrets(lab, tenant, *texts):
    for value in secrets_of(lab, tenant):
        for text in texts:
            assert value not in text


def host_fs(lab, lab_host, inside):
    return os.path.join(lab.state_dir, "hosts", lab_host, "fs", inside.lstrip("/"))


def actions(events, tenant):
    return [(event["action"], event["status"], event["severity"]) for event in events
            if event.get("tenantId") == tenant.tenant_id]


def assert_untouched(lab, tenant, txt=None):
    """The state before the DNS switch: DNS on the old VPS, the old VPS alive, the record on the old VPS."""
    old = tenant["old_vps"]
    assert seed.dns_query(lab, tenant["mail_host"] + ".", "A") == [old["ip"]]
    assert seed.dns_query(lab, tenant["domain"] + ".", "MX") == ["10 %s." % tenant["mail_host"]]
    if txt is None:
        pem = seed.vault(lab).read("dkim", "%s/dkim" % tenant["domain"]).data["private_key"]
        txt = lab_mail.dkim_txt(pem.encode())
    assert seed.dns_query(lab, "dkim._domainkey.%s." % tenant["domain"], "TXT") == [txt]
    assert len(seed.instances_named(lab, old["name"])) == 1
    assert lab.host(old["lab_host"])["running"]
    record = seed.read_record(lab, tenant.tenant_id)
    assert record["vps_ip"] == old["ip"] and record["vps_name"] == old["name"]
    # The old VPS still serves the tenant's mail with the Vault password.
    password = seed.vault(lab).read("smtp", "%s/admin" % tenant.tenant_id).data["password"]
    check = MailCheck(old["ip"], tenant["admin_user"], password, validate_certs=False, send_probe=False).run()
    assert check["failed_stage"] is None, check


def assert_migrated(lab, tenant, workdir):
    """Every promise of a completed migration; returns the new instance."""
    tid, old = tenant.tenant_id, tenant["old_vps"]
    new_name = "pm-%s-2" % tid
    found = seed.instances_named(lab, new_name)
    assert len(found) == 1, found
    new = found[0]
    new_ip = new["main_ip"]
    assert seed.hostwinds_lab(lab, "/lab/calls")["add_instance"].get(new_name) == 1

    # DNS points to the new VPS (queried on the lab BIND).
    assert seed.dns_query(lab, tenant["mail_host"] + ".", "A") == [new_ip]
    assert seed.dns_query(lab, tenant["domain"] + ".", "MX") == ["10 %s." % tenant["mail_host"]]

    # Both SSH keys from Vault, and the Vault admin key logs in.
    client = seed.vault(lab)
    admin = client.read("vps", "%s/admin_ssh" % tid).data
    tenant_key = client.read("vps", "%s/tenant_ssh" % tid).data
    new_host = seed.lab_host_name(lab, new["serviceid"])
    with open(host_fs(lab, new_host, "/root/.ssh/authorized_keys")) as handle:
        assert admin["public_key"].split()[1] in handle.read()
    with open(host_fs(lab, new_host, "/home/tenant-%s/.ssh/authorized_keys" % tid[:8])) as handle:
        assert tenant_key["public_key"].split()[1] in handle.read()
    login = seed.ssh_admin(lab, tid, new_ip, "id -u", workdir)
    assert login.returncode == 0 and login.stdout.strip() == "0", login.stderr

    # The DKIM key on the new VPS is byte-identical to Vault.
    pem = client.read("dkim", "%s/dkim" % tenant["domain"]).data["private_key"]
    with open(host_fs(lab, new_host, "/mailu/dkim/%s.dkim.key" % tenant["domain"]), "rb") as handle:
        assert handle.read() == pem.encode()

    # Mail works end to end on the new address: SMTP AUTH, probe, DKIM signature verified against BIND.
    password = client.read("smtp", "%s/admin" % tid).data["password"]
    check = MailCheck(new_ip, tenant["admin_user"], password, validate_certs=False, dns_server=lab["dns"]["address"],
                      dns_port=lab["dns"]["port"], dkim_selector="dkim", fetch_timeout=20).run()
    assert check["failed_stage"] is None, check
    assert check["dkim"]["verified"] is True

    # The old VPS is gone: not in the simulator, no host, no network namespace.
    assert seed.instances_named(lab, old["name"]) == []
    assert old["lab_host"] not in [host["name"] for host in lab.hosts()]
    assert lab["network"]["netns_prefix"] + old["lab_host"] not in seed.netns_names()  # this lab's name only

    # The tenant record is on the new VPS and remembers the old one and the migration.
    record = seed.read_record(lab, tid)
    assert record["vps_id"] == str(new["serviceid"]) and record["vps_ip"] == new_ip and record["vps_name"] == new_name
    assert record["previous_vps_ip"] == old["ip"] and record["previous_vps_name"] == old["name"]
    assert record["migration_reason"] == "compromise" and record["migrated_at"]
    assert "migration" not in record
    assert record["last_migration"]["step"] == "old_vps_destroyed"
    assert set(record["last_migration"]["steps"]) == set(STEPS)

    # The tenant was told, by mail to the new VPS.
    mailbox = lab_mail.mailbox_messages(host_fs(lab, new_host, "/mailu"), tenant["admin_user"])
    notes = []
    for path in mailbox:
        with open(path, "rb") as handle:
            message = email.message_from_binary_file(handle, policy=email.policy.default)
        if "moved to a new VPS" in str(message["Subject"]):
            notes.append(message)
    assert len(notes) == 1
    return new


# ---------------------------------------------------------------------------------------
def test_migration_moves_everything_and_destroys_the_old_vps(lab, workdir):
    tenant = seed.seed_tenant(lab)
    audit_file = os.path.join(workdir, "audit.jsonl")
    proc = seed.run_migrate(lab, tenant, workdir, audit_file=audit_file)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]

    new = assert_migrated(lab, tenant, workdir)
    events = seed.read_events(audit_file)
    assert actions(events, tenant) == [("vps_migration_completed", "success", "info"),
                                       ("smtp_credentials_recovered", "success", "info")]
    completed = events[0]["details"]
    assert completed["oldVpsWiped"] is True and completed["oldVpsDestroyed"] is True
    assert completed["reason"] == "compromise" and completed["newVpsIp"] == events[0]["ipAddress"]

    # recover_smtp.yml: the server lost the admin password; Vault's is set again and verified.
    new_host = seed.lab_host_name(lab, new["serviceid"])
    lost = lab.host_exec(new_host, seed.host_python() + [seed.SERVICE, "admin", "admin", tenant["domain"],
                                                         "Lost-" + os.urandom(8).hex(), "--mode", "update", "--root", "/mailu"])
    assert lost.returncode == 0, lost.stderr
    password = seed.vault(lab).read("smtp", "%s/admin" % tenant.tenant_id).data["password"]

    def login():
        return MailCheck(new["main_ip"], tenant["admin_user"], password, validate_certs=False, send_probe=False).run()

    assert login()["failed_stage"] == "auth"
    recover = seed.run_lab_playbook(lab, tenant, workdir, seed.RECOVER_PLAYBOOK, audit_file=audit_file)
    recover_output = recover.stdout + recover.stderr
    assert recover.returncode == 0, recover_output[-4000:]
    assert login()["failed_stage"] is None
    events = seed.read_events(audit_file)
    assert actions(events, tenant)[2:] == [("smtp_credentials_recovered", "success", "info")]
    assert events[-1]["details"]["passwordReset"] is True and events[-1]["details"]["verified"] is True
    with open(audit_file) as handle:
        assert_no_secrets(lab, tenant, output, recover_output, handle.read())

    # The same job run again right after it completed is refused and changes nothing.
    record_before = seed.read_record(lab, tenant.tenant_id)
    count_before = len(seed.instances(lab))
    again = seed.run_migrate(lab, tenant, workdir, audit_file=audit_file)
    assert again.returncode != 0 and "migrate_again=true" in again.stdout, (again.stdout + again.stderr)[-3000:]
    assert seed.read_record(lab, tenant.tenant_id) == record_before and len(seed.instances(lab)) == count_before


def test_interrupted_runs_resume_with_exactly_one_new_vps(lab, workdir):
    """Kill the run while the VPS builds, then fail it after every step; each rerun resumes."""
    tenant = seed.seed_tenant(lab)
    tid = tenant.tenant_id
    new_name = "pm-%s-2" % tid
    audit_file = os.path.join(workdir, "audit.jsonl")
    outputs = []

    # 1. Stop after the first step: the migration is recorded, nothing else happened.
    proc = seed.run_migrate(lab, tenant, workdir, audit_file=audit_file, extra_vars={"migrate_fail_after": "recorded"})
    outputs.append(proc.stdout + proc.stderr)
    assert proc.returncode != 0
    assert seed.read_record(lab, tid)["migration"]["server_name"] == new_name
    assert seed.instances_named(lab, new_name) == []

    # 2. Kill ansible-playbook while the simulator builds the new VPS (held until the process is dead).
    seed_faults(lab, hold_builds=True)
    try:
        proc = seed.run_migrate(lab, tenant, workdir, audit_file=audit_file, popen=True)
        try:
            wait_for(lambda: seed.instances_named(lab, new_name) or proc.poll() is not None, 120)
            assert proc.poll() is None, "the playbook ended before the build"
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(60)
    finally:
        seed_faults(lab, hold_builds=False)
    assert seed.read_record(lab, tid)["migration"]["step"] == "recorded"

    # 3. Fail after every later step; a rerun never provisions again, DNS and the old VPS stay until the switch.
    for step in STEPS[1:]:
        proc = seed.run_migrate(lab, tenant, workdir, audit_file=audit_file, extra_vars={"migrate_fail_after": step})
        output = proc.stdout + proc.stderr
        outputs.append(output)
        assert proc.returncode != 0, output[-3000:]
        assert "migrate_fail_after=%s" % step in output
        migration = seed.read_record(lab, tid)["migration"]
        assert migration["step"] == step
        assert len(seed.instances_named(lab, new_name)) == 1
        assert seed.hostwinds_lab(lab, "/lab/calls")["add_instance"].get(new_name) == 1
        if STEPS.index(step) < SWITCH:
            assert_untouched(lab, tenant)

    # 4. The last rerun completes.
    proc = seed.run_migrate(lab, tenant, workdir, audit_file=audit_file)
    outputs.append(proc.stdout + proc.stderr)
    assert proc.returncode == 0, outputs[-1][-4000:]
    assert_migrated(lab, tenant, workdir)
    events = actions(seed.read_events(audit_file), tenant)
    # One failure per failed run (the killed run audits nothing), then the completion.
    assert events.count(("vps_migration_failed", "failure", "critical")) == len(STEPS)
    assert events[-2:] == [("vps_migration_completed", "success", "info"), ("smtp_credentials_recovered", "success", "info")]
    with open(audit_file) as handle:
        assert_no_secrets(lab, tenant, handle.read(), *outputs)


def test_failing_mail_check_leaves_dns_and_the_old_vps_untouched(lab, workdir):
    """DNS publishes another DKIM key than the one in Vault: the verification fails before the switch.

    Then a rerun (DNS repaired, the old VPS no longer reachable) resumes and completes.
    """
    tenant = seed.seed_tenant(lab)
    wrong = lab_mail.dkim_txt(lab_mail.generate_dkim_key(None))
    seed.publish_dkim_txt(lab, tenant["domain"], wrong)
    audit_file = os.path.join(workdir, "audit.jsonl")
    proc = seed.run_migrate(lab, tenant, workdir, audit_file=audit_file, extra_vars={"migrate_dkim_publish": False})
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Verify mail against the new address" in output and "dkim" in output

    assert_untouched(lab, tenant, txt=wrong)
    migration = seed.read_record(lab, tenant.tenant_id)["migration"]
    assert migration["step"] == "dkim"  # everything up to the check ran, nothing after it
    events = seed.read_events(audit_file)
    assert actions(events, tenant) == [("vps_migration_failed", "failure", "critical")]
    assert events[0]["details"]["failedTask"].startswith("Verify mail against the new address")
    assert events[0]["details"]["oldVpsIp"] == tenant["old_vps"]["ip"]

    # The operator repairs DNS and reruns; meanwhile the old VPS stopped answering SSH. The migration
    # resumes on the same new VPS, and the old one is destroyed without the wipe.
    pem = seed.vault(lab).read("dkim", "%s/dkim" % tenant["domain"]).data["private_key"]
    seed.publish_dkim_txt(lab, tenant["domain"], lab_mail.dkim_txt(pem.encode()))
    os.kill(lab.host(tenant["old_vps"]["lab_host"])["sshd_pid"], signal.SIGKILL)
    rerun = seed.run_migrate(lab, tenant, workdir, audit_file=audit_file, extra_vars={"migrate_old_connect_timeout": 3})
    rerun_output = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, rerun_output[-4000:]
    assert_migrated(lab, tenant, workdir)
    events = seed.read_events(audit_file)
    assert actions(events, tenant)[1:] == [("vps_migration_completed", "success", "info"),
                                           ("smtp_credentials_recovered", "success", "info")]
    assert events[1]["details"]["oldVpsWiped"] is False and events[1]["details"]["oldVpsDestroyed"] is True
    assert events[1]["details"]["resumed"] is True
    with open(audit_file) as handle:
        assert_no_secrets(lab, tenant, output, rerun_output, handle.read())


# ---------------------------------------------------------------------------------------
def seed_faults(lab, **faults):
    lab.hostwinds_lab("POST", "/lab/faults", faults)


def wait_for(predicate, timeout):
    """Poll a condition of the lab (not a timed wait): the simulator's state or a process."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
