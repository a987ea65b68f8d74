# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/migrate.yml in the lab (tests/lab), tried as an incident team would.

Everything is real: OpenBao holds the keys and the tenant record, the Hostwinds simulator builds network
namespace hosts with sshd (and refuses what Hostwinds refuses: raw public keys in add_instance), BIND9 takes
the DNS updates, Debian's Postfix, Dovecot and Rspamd serve the tenant's mail on the hosts from the files the
roles render. Faults are injected from outside: SIGKILL of the run at chosen tasks, the simulator's fault API,
a sealed OpenBao, a frozen BIND, an sshd that dies, a host key that changes.
"""

from __future__ import annotations

import email
import email.policy
import os
import signal
import subprocess
import time

import pytest

from ansible_collections.penguinmails.vps.plugins.module_utils import ssh_keys
from ansible_collections.penguinmails.vps.plugins.module_utils.mail_check import MailCheck
from ansible_collections.penguinmails.vps.plugins.module_utils.tenant_record import STEPS
from ansible_collections.penguinmails.vps.plugins.module_utils.validators import tenant_account
from tests.lab import mail as lab_mail
from tests.lab import seed
from tests.support.agents import wait_agents_gone

SWITCH = STEPS.index("dns_switched")


@pytest.fixture()
def workdir(tmp_path):
    os.chmod(str(tmp_path), 0o700)
    return str(tmp_path)


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------
def secrets_of(lab, tenant):
    """Every secret that must never appear in the output or the audit file (every version of each)."""
    client = seed.vault(lab)
    values = [lab["vault"]["token"], lab["dns"]["tsig_secret"], lab["hostwinds"]["api_key"]]
    for mount, path, field in [("smtp", "%s/admin" % tenant.tenant_id, "password"),
                               ("vps", "%s/admin_ssh" % tenant.tenant_id, "private_key"),
                               ("vps", "%s/tenant_ssh" % tenant.tenant_id, "private_key")]:
        for version in range(1, int(client.metadata(mount, path)["current_version"]) + 1):
            value = (client.read_or_none(mount, path, version=version) or seed_none()).data.get(field)
            if value:
                values.append(value.splitlines()[1] if "PRIVATE KEY" in value else value)
    for selector in client.list("dkim", tenant["domain"]):
        values.append(client.read("dkim", "%s/%s" % (tenant["domain"], selector)).data["private_key"].splitlines()[1])
    return values


def seed_none():
    class _Empty:
        data = {}
    return _Empty()


def assert_no_secrets(lab, tenant, *texts):
    for value in secrets_of(lab, tenant):
        for text in texts:
            assert value not in text


def host_fs(lab, lab_host, inside):
    return os.path.join(lab.state_dir, "hosts", lab_host, "fs", inside.lstrip("/"))


def actions(events, tenant, *names):
    return [(event["action"], event["status"], event["severity"]) for event in events
            if event.get("tenantId") == tenant.tenant_id and (not names or event["action"] in names)]


def failures(audit_file, tenant):
    return actions(seed.read_events(audit_file), tenant, "vps_migration_failed")


def mail_login(ip, user, password):
    return MailCheck(ip, user, password, validate_certs=False, send_probe=False).run()["failed_stage"]


def assert_untouched(lab, tenant, txt=None):
    """The state before the DNS switch: DNS on the old VPS, the old VPS alive and serving, the record on it."""
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
    assert mail_login(old["ip"], tenant["admin_user"], tenant["seed_password"]) is None


def live_new_servers(lab, tenant):
    prefix = "pm-%s-" % tenant.tenant_id
    return [item for item in seed.instances(lab) if item["srvrname"].startswith(prefix) and item["srvrname"] != tenant["old_vps"]["name"]]


def notices(lab, lab_host, tenant):
    found = []
    for path in lab_mail.mailbox_messages(host_fs(lab, lab_host, "/mailu"), tenant["admin_user"]):
        with open(path, "rb") as handle:
            message = email.message_from_binary_file(handle, policy=email.policy.default)
        if "moved to a new VPS" in str(message["Subject"]):
            found.append(message)
    return found


def assert_migrated(lab, tenant, workdir, destroyed=None):
    """Every promise of a completed migration; returns (the new instance, its lab host).

    The old VPS is destroyed by default only after a compromise (the specification); otherwise it is kept, wiped."""
    tid, old = tenant.tenant_id, tenant["old_vps"]
    record = seed.read_record(lab, tid)
    if destroyed is None:
        destroyed = record.get("migration_reason") == "compromise"
    new_name = record["vps_name"]
    found = seed.instances_named(lab, new_name)
    assert len(found) == 1, found
    new = found[0]
    new_ip = new["main_ip"]
    assert seed.hostwinds_lab(lab, "/lab/calls")["add_instance"].get(new_name) == 1
    assert [item["srvrname"] for item in live_new_servers(lab, tenant)] == [new_name]  # never two live new VPSes
    assert not [key for key in seed.hostwinds(lab, "get_ssh_keys")["success"] if key["name"].startswith("pm-%s-" % tid)]

    # DNS points to the new VPS (queried on the lab BIND).
    assert seed.dns_query(lab, tenant["mail_host"] + ".", "A") == [new_ip]
    assert seed.dns_query(lab, tenant["domain"] + ".", "MX") == ["10 %s." % tenant["mail_host"]]

    # Both SSH keys from Vault, confirmed; the Vault admin key logs in, checked host keys recorded.
    client = seed.vault(lab)
    admin = client.read("vps", "%s/admin_ssh" % tid).data
    tenant_key = client.read("vps", "%s/tenant_ssh" % tid).data
    assert admin["installed_fingerprint"] == admin["fingerprint"] and "fallback_private_key" not in admin
    new_host = seed.lab_host_name(lab, new["serviceid"])
    with open(host_fs(lab, new_host, "/root/.ssh/authorized_keys")) as handle:
        assert admin["public_key"].split()[1] in handle.read()
    with open(host_fs(lab, new_host, "/home/%s/.ssh/authorized_keys" % tenant_account(tid))) as handle:
        assert tenant_key["public_key"].split()[1] in handle.read()
    login = seed.ssh_admin(lab, tid, new_ip, "id -u", workdir)
    assert login.returncode == 0 and login.stdout.strip() == "0", login.stderr
    assert record["host_keys"][new_ip] and record["host_key_fingerprints"][new_ip]

    # The DKIM key Mailu signs with is on the new VPS byte for byte, and mail works end to end.
    selector = record.get("dkim_selector") or "dkim"
    pem = client.read("dkim", "%s/%s" % (tenant["domain"], selector)).data["private_key"]
    with open(host_fs(lab, new_host, "/mailu/dkim/%s.%s.key" % (tenant["domain"], selector)), "rb") as handle:
        assert handle.read() == pem.encode()
    password = client.read("smtp", "%s/admin" % tid).data["password"]
    check = MailCheck(new_ip, tenant["admin_user"], password, validate_certs=False, dns_server=lab["dns"]["address"],
                      dns_port=lab["dns"]["port"], dkim_selector=selector, fetch_timeout=20).run()
    assert check["failed_stage"] is None, check
    assert check["dkim"]["verified"] is True

    # The old VPS: gone, or (kept) wiped so it can neither serve nor be entered.
    if destroyed:
        assert seed.instances_named(lab, old["name"]) == []
        assert old["lab_host"] not in [host["name"] for host in lab.hosts()]
        assert lab["network"]["netns_prefix"] + old["lab_host"] not in seed.netns_names()  # this lab's name only
    else:
        assert len(seed.instances_named(lab, old["name"])) == 1
    record_last = record["last_migration"]
    assert record["vps_id"] == str(new["serviceid"]) and record["vps_ip"] == new_ip
    assert record["previous_vps_ip"] == old["ip"] and record["previous_vps_name"] == old["name"]
    assert "migration" not in record and record_last["step"] == "old_vps_destroyed"
    assert set(record_last["steps"]) >= set(STEPS) - {"secrets_rotated"}
    return new, new_host


def store_dkim_selector(client, domain, selector):
    """Store (and publish nowhere yet) a second DKIM key of the domain, as rotate_dkim does mid-rotation; its PEM."""
    pem = lab_mail.generate_dkim_key(None).decode()
    client.write("dkim", "%s/%s" % (domain, selector), {"private_key": pem, "created_at": "2026-12-01T00:00:00Z"})
    return pem


def kill_at(proc, marker):
    """Read the run's output until a line contains ``marker``, then SIGKILL its process group; the output so far."""
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=120)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, "the run ended before %r:\n%s" % (marker, "".join(seen)[-3000:])
    return "".join(seen)


def seed_faults(lab, **faults):
    lab.hostwinds_lab("POST", "/lab/faults", faults)


@pytest.fixture()
def tenant_of(lab):
    """Seed tenants; their old VPSes and any VPS of theirs still listed are terminated afterwards."""
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


# ---------------------------------------------------------------------------------------
# Whole migrations
# ---------------------------------------------------------------------------------------
def test_upgrade_moves_everything_once_even_with_two_runs_started_together(lab, workdir, tenant_of):
    tenant = tenant_of()
    client = seed.vault(lab)
    before = {role: client.read("vps", "%s/%s_ssh" % (tenant.tenant_id, role)).data["public_key"] for role in ("admin", "tenant")}
    # Mid-way through a DKIM rotation: a second selector is stored (and published) beside the one Mailu signs with.
    second_pem = store_dkim_selector(client, tenant["domain"], "d2")
    audit_file = os.path.join(workdir, "audit.jsonl")
    runs = [seed.run_migrate(lab, tenant, os.path.join(workdir, "run%d" % n), reason="upgrade", audit_file=audit_file,
                             popen="pipe") for n in (1, 2)]
    outputs = [run.communicate(timeout=900)[0] for run in runs]
    codes = sorted(run.returncode for run in runs)
    assert codes == [0, 2], outputs
    refused = outputs[[run.returncode for run in runs].index(2)]
    assert "a migration run of %s is in progress" % tenant.tenant_id in refused

    new, new_host = assert_migrated(lab, tenant, workdir)
    # Every stored selector migrated, byte for byte, and is published: not only the one Mailu signs with.
    with open(host_fs(lab, new_host, "/mailu/dkim/%s.d2.key" % tenant["domain"])) as handle:
        assert handle.read() == second_pem
    assert seed.dns_query(lab, "d2._domainkey.%s." % tenant["domain"], "TXT")
    # Nothing was rotated for an upgrade: the same keys and password, now on the new VPS.
    for role in ("admin", "tenant"):
        assert client.read("vps", "%s/%s_ssh" % (tenant.tenant_id, role)).data["public_key"] == before[role]
    assert mail_login(new["main_ip"], tenant["admin_user"], tenant["seed_password"]) is None
    events = seed.read_events(audit_file)
    assert actions(events, tenant, "vps_migration_completed") == [("vps_migration_completed", "success", "info")]
    assert actions(events, tenant, "vps_migration_failed") == []  # the refused run held nothing, changed nothing
    assert actions(events, tenant, "vps_migration_refused") == [("vps_migration_refused", "failure", "warning")]
    completed = [e for e in events if e["action"] == "vps_migration_completed"][0]["details"]
    assert completed["old_vps_wiped"] is True and completed["old_vps_destroyed"] is False and completed["rotated"] == []
    assert [e["action"] for e in events if e["action"].startswith("provider_ssh_key")] == ["provider_ssh_key_added",
                                                                                           "provider_ssh_key_removed"]
    # The tenant was told, once, that its credentials did not change.
    (note,) = notices(lab, new_host, tenant)
    assert "did not change" in note.get_content()

    # recover_smtp: the server lost the admin password; Vault's is set again and verified.
    lost = lab.host_exec(new_host, lab_mail.ADMIN_COMMAND + ["admin", tenant["domain"], "Lost-" + os.urandom(8).hex(),
                                                             "--mode", "update"])
    assert lost.returncode == 0, lost.stderr
    assert mail_login(new["main_ip"], tenant["admin_user"], tenant["seed_password"]) == "auth"
    recover = seed.run_lab_playbook(lab, tenant, workdir, seed.RECOVER_PLAYBOOK, audit_file=audit_file)
    assert recover.returncode == 0, (recover.stdout + recover.stderr)[-4000:]
    assert mail_login(new["main_ip"], tenant["admin_user"], tenant["seed_password"]) is None
    with open(audit_file) as handle:
        assert_no_secrets(lab, tenant, handle.read(), recover.stdout + recover.stderr, *outputs)

    # The same job run again right after it completed is refused before anything is ordered.
    record_before = seed.read_record(lab, tenant.tenant_id)
    count_before = len(seed.instances(lab))
    again = seed.run_migrate(lab, tenant, os.path.join(workdir, "again"), reason="upgrade", audit_file=audit_file)
    assert again.returncode == 2 and "migrate_again=true" in again.stdout, (again.stdout + again.stderr)[-3000:]
    assert seed.read_record(lab, tenant.tenant_id) == record_before and len(seed.instances(lab)) == count_before


def test_compromise_rotates_every_exposed_secret_before_the_new_vps_gets_anything(lab, workdir, tenant_of):
    """Seen: reason=compromise reinstalled the SMTP password, DKIM key and SECRET_KEY the attacker had."""
    tenant = tenant_of()
    tid, domain, old = tenant.tenant_id, tenant["domain"], tenant["old_vps"]
    client = seed.vault(lab)
    before = {role: client.read("vps", "%s/%s_ssh" % (tid, role)).data for role in ("admin", "tenant")}
    old_env = open(host_fs(lab, old["lab_host"], "/mailu/mailu.env")).read()
    old_secret_key = [line for line in old_env.splitlines() if line.startswith("SECRET_KEY=")][0]
    old_dkim_pem = client.read("dkim", "%s/dkim" % domain).data["private_key"]
    store_dkim_selector(client, domain, "d2")  # a second selector the old VPS held: exposed too
    audit_file = os.path.join(workdir, "audit.jsonl")
    proc = seed.run_migrate(lab, tenant, workdir, reason="compromise", audit_file=audit_file,
                            extra_vars={"migrate_destroy_old": False})
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]
    new, new_host = assert_migrated(lab, tenant, workdir, destroyed=False)
    new_ip = new["main_ip"]
    record = seed.read_record(lab, tid)

    # Every secret differs, and the old ones do not work on the new VPS.
    smtp = client.read("smtp", "%s/admin" % tid).data
    assert smtp["password"] != tenant["seed_password"]
    assert mail_login(new_ip, tenant["admin_user"], tenant["seed_password"]) == "auth"
    new_env = open(host_fs(lab, new_host, "/mailu/mailu.env")).read()
    assert old_secret_key not in new_env and "SECRET_KEY=%s" % smtp["secret_key"] in new_env
    assert record["dkim_selector"] != "dkim"
    assert not os.path.exists(host_fs(lab, new_host, "/mailu/dkim/%s.dkim.key" % domain))  # the exposed key stays off
    assert not os.path.exists(host_fs(lab, new_host, "/mailu/dkim/%s.d2.key" % domain))
    for exposed in ("dkim", "d2"):  # marked revoked in Vault (never installed again) and revoked in DNS
        assert client.read("dkim", "%s/%s" % (domain, exposed)).data["revoked_at"]
        assert seed.dns_query(lab, "%s._domainkey.%s." % (exposed, domain), "TXT") == ["v=DKIM1; k=rsa; p="]
    assert old_dkim_pem.splitlines()[1] not in open(host_fs(lab, new_host, "/mailu/dkim/%s.%s.key" % (domain, record["dkim_selector"]))).read()
    for role, user in (("admin", "root"), ("tenant", tenant_account(tid))):
        now = client.read("vps", "%s/%s_ssh" % (tid, role)).data
        assert now["public_key"] != before[role]["public_key"]
        assert seed.ssh_with_key(before[role]["private_key"], new_ip, "true", workdir, user=user).returncode != 0
        assert seed.ssh_with_key(now["private_key"], new_ip, "true", workdir, user=user).returncode == 0
    # The old selector is revoked in DNS (an empty key), the new one published and verified by the checks above.
    assert seed.dns_query(lab, "dkim._domainkey.%s." % domain, "TXT") == ["v=DKIM1; k=rsa; p="]
    assert seed.dns_query(lab, "%s._domainkey.%s." % (record["dkim_selector"], domain), "TXT")

    # The old VPS was kept (migrate_destroy_old=false) but wiped: it can neither serve nor be entered.
    assert lab.host(old["lab_host"])["running"]
    assert os.listdir(host_fs(lab, old["lab_host"], "/mailu")) == []
    assert subprocess.run(["bash", "-c", "exec 3<>/dev/tcp/%s/587" % old["ip"]], capture_output=True, check=False).returncode != 0
    for role, user in (("admin", "root"), ("tenant", tenant_account(tid))):
        for key in (before[role]["private_key"], client.read("vps", "%s/%s_ssh" % (tid, role)).data["private_key"]):
            assert seed.ssh_with_key(key, old["ip"], "true", workdir, user=user).returncode != 0

    events = seed.read_events(audit_file)
    assert [e["action"] for e in events if e.get("tenantId") == tid and e["action"] in
            ("smtp_password_rotated", "dkim_key_rotated", "ssh_key_regenerated")] == [
        "smtp_password_rotated", "dkim_key_rotated", "ssh_key_regenerated", "ssh_key_regenerated"]
    completed = [e for e in events if e["action"] == "vps_migration_completed"][0]["details"]
    assert completed["rotated"] == ["smtp_admin_password", "mailu_secret_key", "dkim_key", "admin_ssh_key", "tenant_ssh_key"]
    assert completed["old_vps_wiped"] is True and completed["old_vps_destroyed"] is False
    # The notification says exactly what changed.
    (note,) = notices(lab, new_host, tenant)
    body = note.get_content()
    assert "did not change" not in body and "download your new key" in body and record["dkim_selector"] in body
    assert "ansible-playbook penguinmails.vps.tenant_download_key -e tenant_id=%s" % tid in body  # the tenant does it alone
    with open(audit_file) as handle:
        assert_no_secrets(lab, tenant, output, handle.read())


def test_a_failed_build_is_replaced_and_a_failed_notice_is_audited(lab, workdir, tenant_of):
    """Seen: a failed Hostwinds build was found by name and failed again on every rerun."""
    tenant = tenant_of()
    audit_file = os.path.join(workdir, "audit.jsonl")
    seed_faults(lab, fail_build=1)
    proc = seed.run_migrate(lab, tenant, workdir, reason="failure", audit_file=audit_file,
                            extra_vars={"penguinmails_notify_smtp_host": "127.0.0.1", "penguinmails_notify_smtp_port": 9})
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    new, _host = assert_migrated(lab, tenant, workdir)
    assert new["srvrname"] == "pm-%s-3" % tenant.tenant_id  # pm-<t>-2 failed, was terminated, replaced
    assert seed.instances_named(lab, "pm-%s-2" % tenant.tenant_id) == []
    events = seed.read_events(audit_file)
    assert actions(events, tenant, "vps_build_failed") == [("vps_build_failed", "failure", "warning")]
    assert actions(events, tenant, "tenant_notified") == [("tenant_notified", "failure", "warning")]
    assert actions(events, tenant, "vps_migration_failed") == []


@pytest.mark.parametrize("fault,rule", [
    ("empty_password", "the password is empty"),
    ("short_password", "fewer than 12 characters"),
    ("missing_dkim", "dkim"),
    ("bind_down", "DNS"),
])
def test_preflight_refuses_before_anything_is_ordered(lab, workdir, tenant_of, fault, rule):
    """Seen: an empty SMTP password was installed and verified; a missing DKIM key was found after ordering."""
    tenant = tenant_of()
    client = seed.vault(lab)
    smtp_path = "%s/admin" % tenant.tenant_id
    stopped = None
    if fault in ("empty_password", "short_password"):
        data = dict(client.read("smtp", smtp_path).data, password="" if fault == "empty_password" else "short-pw")
        client.write("smtp", smtp_path, data)
    elif fault == "missing_dkim":
        client.hvac.secrets.kv.v2.delete_metadata_and_all_versions(path="%s/dkim" % tenant["domain"], mount_point="dkim")
    else:
        stopped = lab["dns"]["pid"]
        os.kill(stopped, signal.SIGSTOP)  # BIND stops answering
    calls = dict(seed.hostwinds_lab(lab, "/lab/calls")["actions"])
    audit_file = os.path.join(workdir, "audit.jsonl")
    try:
        proc = seed.run_migrate(lab, tenant, workdir, reason="failure", audit_file=audit_file)
    finally:
        if stopped:
            os.kill(stopped, signal.SIGCONT)
    assert proc.returncode == 2, (proc.stdout + proc.stderr)[-4000:]
    assert rule in proc.stdout and "Nothing was ordered or changed" in proc.stdout
    after = seed.hostwinds_lab(lab, "/lab/calls")["actions"]
    for action in ("add_instance", "add_ssh_key", "terminate"):
        assert after.get(action, 0) == calls.get(action, 0)
    assert "migration" not in seed.read_record(lab, tenant.tenant_id)
    assert failures(audit_file, tenant) == [("vps_migration_failed", "failure", "warning")]
    if fault != "missing_dkim":
        assert_untouched(lab, tenant)


# ---------------------------------------------------------------------------------------
# Interrupted runs
# ---------------------------------------------------------------------------------------
# (task banner to kill at, whether DNS may have moved by then). Every point is after the run holds the migration,
# so the next run finds it abandoned; none is the completion itself (which a kill may or may not beat).
KILL_POINTS = [
    ("TASK [Register the admin public key in the Hostwinds account]", False),
    ("TASK [Provision pm-", False),
    ("TASK [Record the new VPS]", False),
    ("TASK [penguinmails.vps.ssh_access : Set the managed keys", False),
    ("TASK [Record step ssh_access]", False),
    ("TASK [penguinmails.vps.mailu : Write mailu.env]", False),
    ("TASK [Record step mailu]", False),
    ("TASK [penguinmails.vps.dkim : Install the DKIM private keys", False),
    ("TASK [Record step dkim]", False),
    ("TASK [Verify mail against the new address", False),
    ("TASK [Point the domain's MX record", True),
    ("TASK [Record step dns_switched]", True),
    ("TASK [Record step record_updated]", True),
    ("TASK [Overwrite and remove Mailu's files", True),
    ("TASK [Destroy the old VPS]", True),
]


def test_a_run_killed_at_any_step_is_audited_by_the_next_and_reruns_converge(lab, workdir, tenant_of):
    """SIGKILL at every recorded step and inside each role; each next run audits the abandoned one and resumes."""
    tenant = tenant_of()
    audit_file = os.path.join(workdir, "audit.jsonl")
    outputs = []
    for number, (marker, dns_may_have_moved) in enumerate(KILL_POINTS):
        proc = seed.run_migrate(lab, tenant, os.path.join(workdir, "kill%d" % number), reason="failure",
                                audit_file=audit_file, popen="pipe")
        outputs.append(kill_at(proc, marker))
        if number:
            assert "resuming the migration of %s" % tenant.tenant_id in outputs[-1]
        # The killed run's keys die with it; at most one new VPS lives; before the switch nothing moved.
        wait_agents_gone(proc.pid)
        assert len(live_new_servers(lab, tenant)) <= 1
        step = seed.read_record(lab, tenant.tenant_id).get("migration", {}).get("step", "recorded")
        if not dns_may_have_moved:
            assert STEPS.index(step) < SWITCH
            assert_untouched(lab, tenant)
        # Every run before this one was killed, and the runs that found it audited it: one failure per kill.
        assert len(failures(audit_file, tenant)) == number
    final = seed.run_migrate(lab, tenant, os.path.join(workdir, "final"), reason="failure", audit_file=audit_file)
    outputs.append(final.stdout + final.stderr)
    assert final.returncode == 0, outputs[-1][-5000:]
    assert_migrated(lab, tenant, workdir)
    events = seed.read_events(audit_file)
    assert failures(audit_file, tenant) == [("vps_migration_failed", "failure", "critical")] * len(KILL_POINTS)
    abandoned = [e["details"]["abandoned_run"] for e in events if e["action"] == "vps_migration_failed"]
    assert len(set(abandoned)) == len(KILL_POINTS)
    assert actions(events, tenant, "vps_migration_completed") == [("vps_migration_completed", "success", "info")]
    with open(audit_file) as handle:
        assert_no_secrets(lab, tenant, handle.read(), *outputs)


def test_a_rerun_after_the_dns_switch_skips_the_setup(lab, workdir, tenant_of):
    """Seen: a rerun after a kill right after the DNS switch redid everything, re-applying Mailu on a live host."""
    tenant = tenant_of()
    audit_file = os.path.join(workdir, "audit.jsonl")
    started = time.monotonic()
    proc = seed.run_migrate(lab, tenant, os.path.join(workdir, "first"), reason="upgrade", audit_file=audit_file, popen="pipe")
    kill_at(proc, "TASK [Record step dns_switched]")
    first = time.monotonic() - started
    started = time.monotonic()
    rerun = seed.run_migrate(lab, tenant, os.path.join(workdir, "rerun"), reason="upgrade", audit_file=audit_file)
    second = time.monotonic() - started
    assert rerun.returncode == 0, (rerun.stdout + rerun.stderr)[-4000:]
    assert "penguinmails.vps.mailu" not in rerun.stdout and "penguinmails.vps.dkim" not in rerun.stdout
    assert "Provision pm-" not in rerun.stdout and "Verify mail against" not in rerun.stdout
    assert "TASK [Point the mail host's A record" in rerun.stdout  # the step the kill cut short is redone
    assert_migrated(lab, tenant, workdir)
    print("run until the kill: %.1f s, resumed run: %.1f s (%.0f %%)" % (first, second, 100 * second / first))


def test_faults_mid_migration_are_audited_once_each_and_reruns_converge(lab, workdir, tenant_of):
    """Unreachable new VPS mid-setup, sealed Vault, frozen BIND at the switch, a host-key mismatch: each fails its
    run with exactly one critical audit, leaves DNS and the old VPS as they were before the switch, and the rerun
    after the repair resumes."""
    tenant = tenant_of()
    tid = tenant.tenant_id
    audit_file = os.path.join(workdir, "audit.jsonl")
    client = seed.vault(lab)
    outputs = []

    def run(name, **extra):
        proc = seed.run_migrate(lab, tenant, os.path.join(workdir, name), reason="failure", audit_file=audit_file,
                                popen="pipe", extra_vars=extra)
        return proc

    def finish(proc):
        output = proc.communicate(timeout=900)[0]
        outputs.append(output)
        return proc.returncode, output

    # 1. The new VPS loses SSH while Mailu is set up: the unreachable host fails the step, audited.
    proc = run("unreachable")
    for line in proc.stdout:
        outputs.append(line)
        if line.startswith("TASK [penguinmails.vps.mailu : Create the Mailu directories]"):
            new_host = seed.lab_host_name(lab, seed.read_record(lab, tid)["migration"]["new_vps_id"])
            assert lab.host_exec(new_host, ["pkill", "-KILL", "sshd"]).returncode == 0
            break
    code, output = finish(proc)
    assert code == 2 and "unreachable" in output, output[-4000:]
    assert failures(audit_file, tenant) == [("vps_migration_failed", "failure", "critical")]
    assert_untouched(lab, tenant)
    assert lab.host_exec(new_host, ["/usr/sbin/sshd", "-E", "/var/log/sshd.log"]).returncode == 0

    # 2. OpenBao is sealed before DKIM: the run stops, audited; unsealed, the next run goes on.
    proc = run("sealed")
    for line in proc.stdout:
        outputs.append(line)
        if line.startswith("TASK [Step dkim]") or line.startswith("TASK [Do dkim]"):
            client.hvac.sys.seal()
            break
    try:
        code, output = finish(proc)
    finally:
        client.hvac.sys.submit_unseal_key(lab["vault"]["unseal_key"])
    assert code == 2 and "sealed" in output, output[-4000:]
    assert len(failures(audit_file, tenant)) == 2
    assert_untouched(lab, tenant)

    # 3. BIND freezes right before the switch: the update times out, audited; nothing switched.
    proc = run("bind")
    for line in proc.stdout:
        outputs.append(line)
        if line.startswith("TASK [Point the mail host's A record"):
            os.kill(lab["dns"]["pid"], signal.SIGSTOP)
            break
    try:
        code, output = finish(proc)
    finally:
        os.kill(lab["dns"]["pid"], signal.SIGCONT)
    assert code == 2, output[-4000:]
    assert len(failures(audit_file, tenant)) == 3
    assert_untouched(lab, tenant)

    # 4. The old VPS presents another host key than its record holds (a man in the middle, or another server at
    #    that address): the wipe refuses to connect; audited critical; the old VPS is not touched.
    record = seed.read_record(lab, tid)
    old_ip = tenant["old_vps"]["ip"]
    forged = " ".join(ssh_keys.generate_keypair("ed25519").public_key.split()[:2])
    record["host_keys"] = dict(record["host_keys"], **{old_ip: [forged]})
    client.write("vps", "%s/record" % tid, record)
    code, output = finish(run("hostkey"))
    assert code == 2 and "old_vps_wiped" in output, output[-4000:]
    events = failures(audit_file, tenant)
    assert events == [("vps_migration_failed", "failure", "critical")] * 4
    assert os.listdir(host_fs(lab, tenant["old_vps"]["lab_host"], "/mailu"))  # not wiped

    # Repaired (the operator checked the old VPS and forgot the wrong key): the rerun completes.
    record = seed.read_record(lab, tid)
    record["host_keys"] = {key: value for key, value in record["host_keys"].items() if key != old_ip}
    client.write("vps", "%s/record" % tid, record)
    code, output = finish(run("final"))
    assert code == 0, output[-5000:]
    assert_migrated(lab, tenant, workdir)
    assert len(failures(audit_file, tenant)) == 4
    with open(audit_file) as handle:
        assert_no_secrets(lab, tenant, handle.read(), "".join(outputs))


def test_abort_destroys_the_half_built_vps_and_a_new_migration_starts_clean(lab, workdir, tenant_of):
    tenant = tenant_of()
    audit_file = os.path.join(workdir, "audit.jsonl")
    proc = seed.run_migrate(lab, tenant, os.path.join(workdir, "first"), reason="upgrade", audit_file=audit_file, popen="pipe")
    kill_at(proc, "TASK [Record step mailu]")
    assert len(live_new_servers(lab, tenant)) == 1
    aborted = seed.run_migrate(lab, tenant, os.path.join(workdir, "abort"), audit_file=audit_file,
                               extra_vars={"migrate_abort": True})
    assert aborted.returncode == 0, (aborted.stdout + aborted.stderr)[-4000:]
    assert live_new_servers(lab, tenant) == []
    record = seed.read_record(lab, tenant.tenant_id)
    assert "migration" not in record and record["last_aborted_migration"]["step"] in ("ssh_access", "mailu")
    assert_untouched(lab, tenant)
    events = seed.read_events(audit_file)
    assert actions(events, tenant, "vps_migration_aborted") == [("vps_migration_aborted", "success", "warning")]
    assert not [key for key in seed.hostwinds(lab, "get_ssh_keys")["success"] if key["name"].startswith("pm-%s-" % tenant.tenant_id)]


def test_the_simulator_refuses_raw_public_keys_as_hostwinds_does(lab):
    pair = ssh_keys.generate_keypair("ed25519")
    answer = lab.hostwinds("add_instance", srvrname="pm-rawkey-1", template="debian-12", rid="lab-1", location_id="lab-dc",
                           **{"keys[]": pair.public_key})
    assert answer[0]["result"] == "error" and "not an SSH key of this account" in answer[0]["message"]
    assert seed.instances_named(lab, "pm-rawkey-1") == []
