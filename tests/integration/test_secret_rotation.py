# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""rotate with secret_type=smtp and secret_type=dkim on a seeded lab tenant (real sshd, mail service, BIND9, OpenBao)."""
from __future__ import annotations

import os
import secrets

import pytest

from ansible_collections.penguinmails.vps.plugins.module_utils.mail_check import MailCheck
from tests.lab import mail as lab_mail
from tests.lab import seed


@pytest.fixture()
def workdir(tmp_path):
    os.chmod(str(tmp_path), 0o700)
    return str(tmp_path)


def host_file(lab, tenant, inside):
    path = os.path.join(lab.state_dir, "hosts", tenant["old_vps"]["lab_host"], "fs", inside.lstrip("/"))
    with open(path, "rb") as handle:
        return handle.read()


def events_of(audit_file, tenant):
    """The tenant's events, but the host key recorded at the first contact (checked on its own)."""
    events = [(e["action"], e["status"]) for e in seed.read_events(audit_file) if e.get("tenantId") == tenant.tenant_id]
    assert events.count(("host_key_recorded", "success")) <= 1
    return [event for event in events if event[0] != "host_key_recorded"]


def test_smtp_rotation_changes_vault_then_the_server(lab, workdir):
    tenant = seed.seed_tenant(lab)
    client = seed.vault(lab)
    path = "%s/admin" % tenant.tenant_id
    old = client.read("smtp", path)
    audit_file = os.path.join(workdir, "audit.jsonl")

    def login(password):
        return MailCheck(tenant["old_vps"]["ip"], tenant["admin_user"], password, validate_certs=False,
                         send_probe=False).run()["failed_stage"]

    proc = seed.run_lab_playbook(lab, tenant, workdir, "penguinmails.vps.rotate", {"secret_type": "smtp", "force": True},
                                 audit_file=audit_file)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]
    new = client.read("smtp", path)
    assert new.version == old.version + 1 and new.data["password"] != old.data["password"]
    assert client.read("smtp", path, version=old.version).data["password"] == old.data["password"]  # history
    assert login(new.data["password"]) is None and login(old.data["password"]) == "auth"
    assert old.data["password"] not in output and new.data["password"] not in output
    assert events_of(audit_file, tenant) == [("smtp_password_rotated", "success"), ("smtp_password_applied", "success")]

    # Not due any more: Vault keeps its version, the server is checked and left alone.
    again = seed.run_lab_playbook(lab, tenant, workdir, "penguinmails.vps.rotate", {"secret_type": "smtp"},
                                  audit_file=audit_file)
    assert again.returncode == 0, (again.stdout + again.stderr)[-5000:]
    assert client.read("smtp", path).version == new.version and login(new.data["password"]) is None
    assert "rotated=0 failed=0 applied=1" in again.stdout


def test_dkim_rotation_moves_to_a_new_selector_without_breaking_signatures(lab, workdir):
    tenant = seed.seed_tenant(lab)
    client = seed.vault(lab)
    domain = tenant["domain"]
    audit_file = os.path.join(workdir, "audit.jsonl")
    selector = "d20991231"
    extra = {"secret_type": "dkim", "force": True, "dkim_new_selector": selector}

    proc = seed.run_lab_playbook(lab, tenant, workdir, "penguinmails.vps.rotate", extra, audit_file=audit_file)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]
    new_key = client.read("dkim", "%s/%s" % (domain, selector)).data["private_key"]
    old_key = client.read("dkim", "%s/dkim" % domain).data["private_key"]
    assert new_key != old_key and new_key not in output
    # Both keys on the host, byte for byte; Mailu signs with the new selector; both TXT records published.
    assert host_file(lab, tenant, "/mailu/dkim/%s.%s.key" % (domain, selector)) == new_key.encode()
    assert host_file(lab, tenant, "/mailu/dkim/%s.dkim.key" % domain) == old_key.encode()
    assert b"DKIM_SELECTOR=%s" % selector.encode() in host_file(lab, tenant, "/mailu/mailu.env")
    txt_new = "".join(seed.dns_query(lab, "%s._domainkey.%s." % (selector, domain), "TXT"))
    txt_old = "".join(seed.dns_query(lab, "dkim._domainkey.%s." % domain, "TXT"))
    assert lab_mail.dkim_txt(new_key.encode()).split("p=")[1] in txt_new.replace('"', "").replace(" ", "")
    assert lab_mail.dkim_txt(old_key.encode()).split("p=")[1] in txt_old.replace('"', "").replace(" ", "")
    assert seed.read_record(lab, tenant.tenant_id)["dkim_selector"] == selector
    assert events_of(audit_file, tenant) == [("dkim_key_rotated", "success")]

    # A rerun the same day resumes with the same key and changes nothing in Vault.
    versions = client.metadata("dkim", "%s/%s" % (domain, selector))["current_version"]
    again = seed.run_lab_playbook(lab, tenant, workdir, "penguinmails.vps.rotate", extra, audit_file=audit_file)
    assert again.returncode == 0, (again.stdout + again.stderr)[-5000:]
    assert client.metadata("dkim", "%s/%s" % (domain, selector))["current_version"] == versions
    assert client.list("dkim", domain) == ["d20991231", "dkim"]


def test_rotation_refuses_bad_input_and_changes_nothing(lab, workdir):
    tenant = seed.Tenant(tenant_id="../x", domain="x.example.test", admin_user="admin@x.example.test",
                         old_vps={"name": "none", "ip": "198.18.255.254"})
    for secret_type in ("smtp", "dkim", "nope"):
        proc = seed.run_lab_playbook(lab, tenant, workdir, "penguinmails.vps.rotate", {"secret_type": secret_type})
        assert proc.returncode != 0
        assert "invalid tenant id '../x': path traversal" in proc.stdout or "secret_type" in proc.stdout, proc.stdout[-3000:]


def test_dkim_rotation_of_a_tenant_that_lacks_something_names_what(lab, workdir):
    """One rule per error: the message names the one thing the tenant lacks, and nothing changes."""
    client = seed.vault(lab)
    tid = "dk" + secrets.token_hex(4)
    domain = "%s.example.test" % tid
    cases = [
        ({}, "rotate: %s has no domain in its record" % tid),
        ({"vps_ip": "198.18.255.254"}, "rotate: %s has no domain in its record" % tid),
        ({"domain": domain, "vps_ip": "198.18.255.254"}, "rotate: %s has no DKIM key in Vault for %s" % (tid, domain)),
    ]
    tenant = seed.Tenant(tenant_id=tid, domain=domain, admin_user="admin@" + domain,
                         old_vps={"name": "none", "ip": "198.18.255.254"})
    version = 0
    for record, message in cases:
        if record:
            client.write("vps", "%s/record" % tid, record, cas=version)
            version += 1
        proc = seed.run_lab_playbook(lab, tenant, workdir, "penguinmails.vps.rotate",
                                     {"secret_type": "dkim", "dkim_new_selector": "s2"})
        assert proc.returncode != 0
        assert '"msg": "%s"' % message in proc.stdout, proc.stdout[-3000:]
    client.write("dkim", "%s/dkim" % domain, {"private_key": "x", "public_key": "y"}, cas=0)
    client.write("vps", "%s/record" % tid, {"domain": domain}, cas=version)
    proc = seed.run_lab_playbook(lab, tenant, workdir, "penguinmails.vps.rotate", {"secret_type": "dkim", "dkim_new_selector": "s2"})
    assert '"msg": "rotate: %s has no vps_ip in its record"' % tid in proc.stdout, proc.stdout[-3000:]
    assert client.read_or_none("dkim", "%s/s2" % domain) is None
