# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/provision.yml in the lab (tests/lab): a tenant from nothing, as an operator onboards one.

Everything is real: OpenBao gets the tenant's secrets and record, the Hostwinds simulator builds the VPS (and refuses
raw public keys, as Hostwinds does: the admin key goes through the account), BIND9 takes the DNS updates, Debian's
Postfix, Dovecot and Rspamd serve the mail, restic writes the first snapshot to the lab's backup host over SFTP.
The provisioned tenant is then rotated and migrated by the collection's own playbooks. Faults come from outside:
SIGKILL of the run at a step boundary.
"""

from __future__ import annotations

import email
import email.policy
import os
import secrets
import signal
import uuid

import pytest

from ansible_collections.penguinmails.vps.plugins.module_utils.mail_check import MailCheck
from ansible_collections.penguinmails.vps.plugins.module_utils.validators import tenant_account
from tests.lab import mail as lab_mail
from tests.lab import seed
from tests.lab.backup import backup_host
from tests.support.ansible_run import run_playbook

PLAYBOOK = "penguinmails.vps.provision"


@pytest.fixture()
def workdir(tmp_path):
    os.chmod(str(tmp_path), 0o700)
    return str(tmp_path)


@pytest.fixture()
def new_tenant(lab):
    """A tenant id nobody has (a Tenant as seed makes it, without anything in Vault); its VPSes are terminated after."""
    made = []

    def make(tenant_id=None):
        tid = tenant_id or "p" + secrets.token_hex(3)
        domain = "%s.%s" % (tid.lower(), seed.dns_zone(lab))
        tenant = seed.Tenant(tenant_id=tid, domain=domain, mail_host="mail.%s" % domain, admin_user="admin@%s" % domain)
        made.append(tenant)
        return tenant

    yield make
    for tenant in made:
        for item in seed.instances(lab):
            if item["srvrname"].startswith("pm-%s-" % tenant.tenant_id):
                seed.hostwinds(lab, "terminate", serviceid=item["serviceid"])


def provision_vars(lab, tenant, **extra):
    values = {"domain": tenant["domain"], "contact_email": tenant["admin_user"]}
    values.update(backup_host(lab)["vars"])
    values.update(extra)
    return values


def run_provision(lab, tenant, workdir, audit_file, popen=False, **extra):
    return seed.run_lab_playbook(lab, tenant, workdir, PLAYBOOK, provision_vars(lab, tenant, **extra),
                                 audit_file=audit_file, popen=popen)


def actions(audit_file, tenant, *names):
    return [(event["action"], event["status"], event["severity"]) for event in seed.read_events(audit_file)
            if event.get("tenantId") == tenant.tenant_id and (not names or event["action"] in names)]


def host_fs(lab, lab_host, inside):
    return os.path.join(lab.state_dir, "hosts", lab_host, "fs", inside.lstrip("/"))


def secrets_of(lab, tenant):
    """Every secret of the tenant that must never appear in an output or the audit file."""
    client = seed.vault(lab)
    values = [lab["vault"]["token"], lab["dns"]["tsig_secret"], lab["hostwinds"]["api_key"]]
    for mount, path, field in [("smtp", "%s/admin" % tenant.tenant_id, "password"),
                               ("smtp", "%s/admin" % tenant.tenant_id, "secret_key"),
                               ("vps", "%s/admin_ssh" % tenant.tenant_id, "private_key"),
                               ("vps", "%s/tenant_ssh" % tenant.tenant_id, "private_key"),
                               ("vps", "%s/backup" % tenant.tenant_id, "restic_password")]:
        meta = client.read_or_none(mount, path) and client.metadata(mount, path)
        for version in range(1, int(meta["current_version"]) + 1 if meta else 1):
            secret = client.read_or_none(mount, path, version=version)
            value = secret.data.get(field) if secret else None
            if value:
                values.append(value.splitlines()[1] if "PRIVATE KEY" in value else value)
    for selector in client.list("dkim", tenant["domain"]):
        values.append(client.read("dkim", "%s/%s" % (tenant["domain"], selector)).data["private_key"].splitlines()[1])
    return values


def assert_no_secrets(lab, tenant, *texts):
    found = secrets_of(lab, tenant)
    assert len(found) >= 8
    for value in found:
        for text in texts:
            assert value not in text


def welcome_mails(lab, lab_host, tenant):
    found = []
    for path in lab_mail.mailbox_messages(host_fs(lab, lab_host, "/mailu"), tenant["admin_user"]):
        with open(path, "rb") as handle:
            message = email.message_from_binary_file(handle, policy=email.policy.default)
        if "Welcome" in str(message["Subject"]):
            found.append(message)
    return found


def assert_provisioned(lab, tenant, workdir, audit_file, certificates=False):
    """Every promise of a provisioned tenant; returns (its instance, its lab host).

    Certificate mode: root keeps no stored admin key (it was revoked in Vault once the VPS trusted the user CA)."""
    tid = tenant.tenant_id
    client = seed.vault(lab)
    record = seed.read_record(lab, tid)
    assert "migration" not in record and record["last_provision"]["step"] == "welcome_sent"
    assert record["vps_name"] == "pm-%s-1" % tid and record["domain"] == tenant["domain"]
    assert record["contact_email"] == tenant["admin_user"] and record["provisioned_at"]
    assert "migrated_at" not in record and "last_migration" not in record
    found = seed.instances_named(lab, record["vps_name"])
    assert len(found) == 1 and [item["srvrname"] for item in seed.instances(lab) if item["srvrname"].startswith("pm-%s-" % tid)] \
        == [record["vps_name"]]
    vps = found[0]
    ip = vps["main_ip"]
    assert record["vps_id"] == str(vps["serviceid"]) and record["vps_ip"] == ip
    assert seed.hostwinds_lab(lab, "/lab/calls")["add_instance"].get(record["vps_name"]) == 1  # ordered once
    # the account key of the build is gone from Hostwinds
    assert not [key for key in seed.hostwinds(lab, "get_ssh_keys")["success"] if key["name"].startswith("pm-%s-" % tid)]

    # DNS: A, MX and the DKIM TXT of the key in Vault.
    assert seed.dns_query(lab, tenant["mail_host"] + ".", "A") == [ip]
    assert seed.dns_query(lab, tenant["domain"] + ".", "MX") == ["10 %s." % tenant["mail_host"]]
    pem = client.read("dkim", "%s/dkim" % tenant["domain"]).data["private_key"]
    assert seed.dns_query(lab, "dkim._domainkey.%s." % tenant["domain"], "TXT") == [lab_mail.dkim_txt(pem.encode())]

    # SSH: both keys from Vault, confirmed; the admin key logs in as root, the host keys are recorded.
    admin = client.read("vps", "%s/admin_ssh" % tid).data
    tenant_key = client.read("vps", "%s/tenant_ssh" % tid).data
    assert tenant_key["installed_fingerprint"] == tenant_key["fingerprint"]
    lab_host = seed.lab_host_name(lab, vps["serviceid"])
    with open(host_fs(lab, lab_host, "/home/%s/.ssh/authorized_keys" % tenant_account(tid))) as handle:
        assert tenant_key["public_key"].split()[1] in handle.read()
    login = seed.ssh_with_key(tenant_key["private_key"], ip, "id -un", workdir, user=tenant_account(tid))
    assert login.returncode == 0 and login.stdout.strip() == tenant_account(tid), login.stderr
    if certificates:
        assert record["ssh_auth"] == "certificates" and admin["state"] == "revoked" and "private_key" not in admin
        with open(host_fs(lab, lab_host, "/root/.ssh/authorized_keys")) as handle:
            root_keys = handle.read()
        for version in range(1, int(client.metadata("vps", "%s/admin_ssh" % tid)["current_version"]) + 1):
            old = client.read_or_none("vps", "%s/admin_ssh" % tid, version=version)
            if old and old.data.get("public_key"):
                assert old.data["public_key"].split()[1] not in root_keys
    else:
        assert admin["installed_fingerprint"] == admin["fingerprint"]
        login = seed.ssh_admin(lab, tid, ip, "id -u", workdir)
        assert login.returncode == 0 and login.stdout.strip() == "0", login.stderr
    assert record["host_keys"][ip] and record["host_key_fingerprints"][ip]

    # Mail: the DKIM key on the VPS byte for byte; SMTP AUTH with the password in Vault, a probe signed and verified.
    with open(host_fs(lab, lab_host, "/mailu/dkim/%s.dkim.key" % tenant["domain"]), "rb") as handle:
        assert handle.read() == pem.encode()
    password = client.read("smtp", "%s/admin" % tid).data["password"]
    check = MailCheck(ip, tenant["admin_user"], password, validate_certs=False, dns_server=lab["dns"]["address"],
                      dns_port=lab["dns"]["port"], dkim_selector="dkim", fetch_timeout=20).run()
    assert check["failed_stage"] is None and check["dkim"]["verified"] is True, check

    # The first backup: a snapshot in the tenant's repository, its password in Vault.
    assert client.read("vps", "%s/backup" % tid).data["restic_password"]
    assert os.path.isdir(os.path.join(backup_host(lab)["root"], tid, "snapshots"))
    assert os.listdir(os.path.join(backup_host(lab)["root"], tid, "snapshots"))

    # The welcome mail, in the contact's mailbox, with the specification's connection instructions.
    welcome = welcome_mails(lab, lab_host, tenant)
    assert len(welcome) == 1
    body = welcome[0].get_body(preferencelist=("plain",)).get_content()
    account = tenant_account(tid)
    assert "ssh -i %s.key %s@%s" % (account, account, ip) in body
    assert "chmod 600 %s.key" % account in body and "port 22" in body
    assert "penguinmails.vps.tenant_download_key -e tenant_id=%s" % tid in body and "once" in body
    assert_no_secrets(lab, tenant, body)

    events = actions(audit_file, tenant)
    assert actions(audit_file, tenant, "vps_provisioned") == [("vps_provisioned", "success", "info")]
    (provisioned,) = [event for event in seed.read_events(audit_file)
                      if event["action"] == "vps_provisioned" and event.get("tenantId") == tid]
    assert provisioned["details"]["mode"] == ("certificates" if certificates else "keys")
    assert provisioned["details"]["new_vps_ip"] == ip and provisioned["details"]["domain"] == tenant["domain"]
    assert ("mail_backup_completed", "success", "info") in events
    assert ("host_key_recorded", "success", "info") in events
    assert ("provider_ssh_key_added", "success", "info") in events and ("provider_ssh_key_removed", "success", "info") in events
    assert ("tenant_notified", "success", "info") in events
    return vps, lab_host


# ---------------------------------------------------------------------------------------
# From nothing, then rotated and migrated
# ---------------------------------------------------------------------------------------
def test_a_tenant_from_nothing_is_provisioned_then_rotated_and_migrated(lab, workdir, new_tenant):
    tenant = new_tenant()
    audit_file = os.path.join(workdir, "audit.jsonl")
    assert seed.read_record(lab, tenant.tenant_id) is None
    proc = run_provision(lab, tenant, os.path.join(workdir, "provision"), audit_file)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    vps, _lab_host = assert_provisioned(lab, tenant, workdir, audit_file)
    with open(audit_file) as handle:
        assert_no_secrets(lab, tenant, output, handle.read())

    # A rerun changes nothing: no second VPS, no second audit or welcome mail.
    again = run_provision(lab, tenant, os.path.join(workdir, "again"), audit_file)
    assert again.returncode != 0 and "is provisioned already" in again.stdout, (again.stdout + again.stderr)[-4000:]
    assert len(seed.instances_named(lab, "pm-%s-1" % tenant.tenant_id)) == 1
    assert actions(audit_file, tenant, "vps_provisioned") == [("vps_provisioned", "success", "info")]

    # Rotation works on it: the SMTP password, then the SSH keys (the new tenant key logs in).
    client = seed.vault(lab)
    old_password = client.read("smtp", "%s/admin" % tenant.tenant_id).data["password"]
    rotated = seed.run_lab_playbook(lab, tenant, os.path.join(workdir, "rotate"), "penguinmails.vps.rotate",
                                    {"secret_type": "smtp", "force": True}, audit_file=audit_file)
    assert rotated.returncode == 0, (rotated.stdout + rotated.stderr)[-5000:]
    new_password = client.read("smtp", "%s/admin" % tenant.tenant_id).data["password"]
    assert new_password != old_password
    assert MailCheck(vps["main_ip"], tenant["admin_user"], new_password, validate_certs=False,
                     send_probe=False).run()["failed_stage"] is None
    old_tenant_key = client.read("vps", "%s/tenant_ssh" % tenant.tenant_id).data["fingerprint"]
    rotated = seed.run_lab_playbook(lab, tenant, os.path.join(workdir, "rotate-ssh"), "penguinmails.vps.rotate",
                                    {"secret_type": "ssh", "force": True}, audit_file=audit_file)
    assert rotated.returncode == 0, (rotated.stdout + rotated.stderr)[-5000:]
    tenant_key = client.read("vps", "%s/tenant_ssh" % tenant.tenant_id).data
    assert tenant_key["fingerprint"] != old_tenant_key
    login = seed.ssh_with_key(tenant_key["private_key"], vps["main_ip"], "id -un", workdir, user=tenant_account(tenant.tenant_id))
    assert login.returncode == 0 and login.stdout.strip() == tenant_account(tenant.tenant_id), login.stderr

    # Migration works on it, right away (a provisioning is not a move: no migrate_again needed).
    migrated = seed.run_migrate(lab, tenant, os.path.join(workdir, "migrate"), reason="upgrade", audit_file=audit_file)
    assert migrated.returncode == 0, (migrated.stdout + migrated.stderr)[-6000:]
    record = seed.read_record(lab, tenant.tenant_id)
    assert record["vps_name"] == "pm-%s-2" % tenant.tenant_id and record["previous_vps_ip"] == vps["main_ip"]
    assert record["last_migration"]["reason"] == "upgrade" and record["last_provision"]["step"] == "welcome_sent"
    assert seed.dns_query(lab, tenant["mail_host"] + ".", "A") == [record["vps_ip"]]
    assert MailCheck(record["vps_ip"], tenant["admin_user"], new_password, validate_certs=False, dns_server=lab["dns"]["address"],
                     dns_port=lab["dns"]["port"], dkim_selector="dkim", fetch_timeout=20).run()["failed_stage"] is None
    assert actions(audit_file, tenant, "vps_migration_completed") == [("vps_migration_completed", "success", "info")]


# ---------------------------------------------------------------------------------------
# Bad input changes nothing
# ---------------------------------------------------------------------------------------
def vault_listing(lab):
    client = seed.vault(lab)
    return {mount: sorted(client.list(mount, "")) for mount in ("vps", "smtp", "dkim")}


def test_bad_input_is_refused_with_its_rule_and_changes_nothing(lab, workdir, new_tenant):
    client = seed.vault(lab)
    existing = new_tenant("Q" + secrets.token_hex(3))
    client.write("vps", "%s/record" % existing.tenant_id, {"domain": existing["domain"]})
    duplicate = new_tenant(existing.tenant_id.lower())
    good = new_tenant()
    audit_file = os.path.join(workdir, "audit.jsonl")
    cases = [
        # hostile ids go in the vars file (a later -e wins), so they reach the playbook as they are
        (good, {"tenant_id": "../x"}, "invalid tenant id '../x'"),
        (good, {"tenant_id": "a b"}, "invalid tenant id"),
        (good, {"tenant_id": "$(id)"}, "invalid tenant id"),
        (good, {"tenant_id": "x" * 65}, "invalid tenant id"),
        (good, {"tenant_id": ""}, "invalid tenant id"),
        (duplicate, {}, "collides with the existing tenant '%s': ids that differ only by case are one tenant" % existing.tenant_id),
        (good, {"domain": "bad..domain"}, "invalid domain"),
        (good, {"domain": "-x.example.test"}, "invalid domain"),
        (good, {"domain": ""}, "set -e domain="),
        (good, {"contact_email": "nobody"}, "nobody"),
        (good, {"contact_email": "a@b@c.example"}, "a@b@c.example"),
        (good, {"contact_email": ""}, "set -e contact_email="),
        (good, {"migrate_vps_plan": ""}, "set migrate_vps_plan"),
        (good, {"penguinmails_backup_repository": ""}, "set penguinmails_backup_repository"),
        (good, {"provision_ssh_auth": "passwords"}, "provision_ssh_auth must be one of keys, certificates"),
    ]
    before = vault_listing(lab)
    calls = seed.hostwinds_lab(lab, "/lab/calls")
    for number, (tenant, extra, message) in enumerate(cases):
        values = provision_vars(lab, tenant)
        values.update(extra)
        proc = seed.run_lab_playbook(lab, tenant, os.path.join(workdir, "case%d" % number), PLAYBOOK, values, audit_file=audit_file)
        output = proc.stdout + proc.stderr
        assert proc.returncode != 0 and message in output, "\n".join([message] + [line[:600] for line in output.splitlines() if "fatal" in line])
        assert "Task failed: Conditional" not in output and "is undefined" not in output
    # Nothing was written to Vault or ordered at Hostwinds; a refusal after the input check is audited as a warning.
    assert vault_listing(lab) == before
    assert seed.hostwinds_lab(lab, "/lab/calls") == calls
    prefixes = ("pm-%s-" % good.tenant_id, "pm-%s-" % duplicate.tenant_id)
    assert not [item for item in seed.instances(lab) if item["srvrname"].startswith(prefixes)]
    refused = [(event["action"], event["severity"], event["details"]["stage"]) for event in seed.read_events(audit_file)
               if event["action"].startswith("vps_provision")]
    assert refused and set(refused) == {("vps_provisioning_failed", "warning", "preflight")}


# ---------------------------------------------------------------------------------------
# Killed, resumed; aborted
# ---------------------------------------------------------------------------------------
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


def test_a_killed_provisioning_resumes_and_converges_on_one_vps(lab, workdir, new_tenant):
    tenant = new_tenant()
    audit_file = os.path.join(workdir, "audit.jsonl")
    proc = run_provision(lab, tenant, os.path.join(workdir, "killed"), audit_file, popen="pipe")
    killed = kill_at(proc, "TASK [Record step mailu]")
    record = seed.read_record(lab, tenant.tenant_id)
    assert record["migration"]["reason"] == "provision" and record["migration"]["step"] == "ssh_access"
    assert len(seed.instances_named(lab, "pm-%s-1" % tenant.tenant_id)) == 1

    resumed = run_provision(lab, tenant, os.path.join(workdir, "resumed"), audit_file)
    output = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, output[-6000:]
    assert "resuming the provisioning of %s" % tenant.tenant_id in output
    assert "tasks/migrate/provisioned.yml for localhost" not in output  # a done step is skipped: nothing is ordered again
    assert "tasks/migrate/mailu.yml for localhost" in output  # the step the kill cut short is redone
    assert_provisioned(lab, tenant, workdir, audit_file)  # one VPS, ordered once
    # The killed run is audited by the run that found it, once; the completion once.
    assert actions(audit_file, tenant, "vps_provisioning_failed") == [("vps_provisioning_failed", "failure", "critical")]
    with open(audit_file) as handle:
        assert_no_secrets(lab, tenant, killed, output, handle.read())


def test_abort_destroys_the_vps_and_says_what_stays_in_vault(lab, workdir, new_tenant):
    tenant = new_tenant()
    tid = tenant.tenant_id
    audit_file = os.path.join(workdir, "audit.jsonl")
    proc = run_provision(lab, tenant, os.path.join(workdir, "killed"), audit_file, popen="pipe")
    kill_at(proc, "TASK [Record step ssh_access]")
    assert len(seed.instances_named(lab, "pm-%s-1" % tid)) == 1

    aborted = seed.run_lab_playbook(lab, seed.Tenant(tenant_id=tid), os.path.join(workdir, "abort"), PLAYBOOK,
                                    {"provision_abort": True}, audit_file=audit_file)
    output = aborted.stdout + aborted.stderr
    assert aborted.returncode == 0, output[-5000:]
    assert seed.instances_named(lab, "pm-%s-1" % tid) == []
    assert not [key for key in seed.hostwinds(lab, "get_ssh_keys")["success"] if key["name"].startswith("pm-%s-" % tid)]
    record = seed.read_record(lab, tid)
    assert "migration" not in record and "vps_ip" not in record and record["last_aborted_migration"]["reason"] == "provision"
    assert "kept in Vault: vps/%s/record, vps/%s/admin_ssh, vps/%s/tenant_ssh, smtp/%s/admin, dkim/%s/dkim" % (
        tid, tid, tid, tid, tenant["domain"]) in " ".join(output.split())
    events = [event for event in seed.read_events(audit_file) if event["action"] == "vps_provisioning_aborted"]
    assert len(events) == 1 and events[0]["severity"] == "warning"
    assert events[0]["details"]["destroyed"] == ["pm-%s-1" % tid]

    # Nothing to abort any more; a new run provisions the tenant from what Vault kept.
    again = seed.run_lab_playbook(lab, seed.Tenant(tenant_id=tid), os.path.join(workdir, "abort2"), PLAYBOOK,
                                  {"provision_abort": True}, audit_file=audit_file)
    assert again.returncode != 0 and "no provisioning of %s is in progress" % tid in again.stdout
    keys = seed.vault(lab).read("vps", "%s/admin_ssh" % tid).data["fingerprint"]
    rerun = run_provision(lab, tenant, os.path.join(workdir, "rerun"), audit_file)
    assert rerun.returncode == 0, (rerun.stdout + rerun.stderr)[-6000:]
    record = seed.read_record(lab, tid)
    assert record["last_provision"]["step"] == "welcome_sent" and len(seed.instances_named(lab, record["vps_name"])) == 1
    assert seed.vault(lab).read("vps", "%s/admin_ssh" % tid).data["fingerprint"] == keys


# ---------------------------------------------------------------------------------------
# Certificate mode
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ca_mounts(lab, tmp_path_factory):
    """User and host CA mounts of this module, as roles/vault_setup makes them."""
    work = str(tmp_path_factory.mktemp("provcerts-ca"))
    suffix = uuid.uuid4().hex[:6]
    mounts = {"penguinmails_ssh_user_ca_mount": "psshu%s" % suffix, "penguinmails_ssh_host_ca_mount": "psshh%s" % suffix}
    setup = run_playbook("""
        - hosts: localhost
          gather_facts: false
          tasks:
            - name: The SSH CAs
              ansible.builtin.include_role:
                name: penguinmails.vps.vault_setup
                tasks_from: ssh_ca
              vars:
                vault_setup_ssh_user_ca_mount: %(penguinmails_ssh_user_ca_mount)s
                vault_setup_ssh_host_ca_mount: %(penguinmails_ssh_host_ca_mount)s
        """ % mounts, env=lab.env(), tmp_path=work)
    assert setup.returncode == 0, (setup.stdout + setup.stderr)[-4000:]
    return mounts


def test_a_tenant_is_provisioned_in_certificate_mode_and_root_keeps_no_stored_key(lab, workdir, new_tenant, ca_mounts):
    tenant = new_tenant()
    audit_file = os.path.join(workdir, "audit.jsonl")
    # Without a user CA key it is refused before anything is written.
    refused = run_provision(lab, tenant, os.path.join(workdir, "noca"), audit_file, provision_ssh_auth="certificates",
                            penguinmails_ssh_user_ca_mount="nosuchca")
    assert refused.returncode != 0 and "certificate mode needs a user CA key in nosuchca" in refused.stdout
    assert seed.read_record(lab, tenant.tenant_id) is None

    proc = run_provision(lab, tenant, os.path.join(workdir, "provision"), audit_file, provision_ssh_auth="certificates",
                         **ca_mounts)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert_provisioned(lab, tenant, workdir, audit_file, certificates=True)
    assert ("ssh_certificate_signed", "success", "info") in actions(audit_file, tenant)
    with open(audit_file) as handle:
        assert_no_secrets(lab, tenant, output, handle.read())
