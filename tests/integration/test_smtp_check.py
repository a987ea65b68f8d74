# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""smtp_check through ansible-playbook against a lab Mailu host and a real BIND9.

Real parts only: a lab host (tests/lab/mail) runs Debian's Postfix, Dovecot and Rspamd from mailu.env,
with a self-signed certificate; Rspamd signs with the DKIM keys on disk, and the keys are published as TXT
in a real named (tests/lab/bind.py) through a TSIG-signed dynamic update.
"""

from __future__ import annotations

import json
import secrets

import pytest

from tests.lab.bind import Bind9
from tests.lab.mail import MailLab, dkim_txt, generate_dkim_key, publish_txt
from tests.support.ansible_run import run_playbook

PASSWORD = "Pw-" + secrets.token_hex(12)
OTHER_PASSWORD = "Other-" + secrets.token_hex(12)


@pytest.fixture(scope="module")
def dns(tmp_path_factory):
    server = Bind9(str(tmp_path_factory.mktemp("bind")), zones=("mailcheck.test", "wrongkey.test", "nokey.test"))
    info = server.start()
    yield info
    server.stop()


@pytest.fixture(scope="module")
def mail(dns):
    """One lab Mailu host: its domain mailcheck.test, and the accounts of two more domains (Mailu's admin adds them)."""
    with MailLab() as mail_lab:
        host = mail_lab.host("mailcheck")
        host.write_env("mailcheck.test")
        signing = host.add_dkim_key("mailcheck.test")
        host.add_dkim_key("wrongkey.test")  # wrongkey.test signs with one key while DNS publishes another one
        host.add_dkim_key("nokey.test")  # nothing in DNS for it
        publish_txt(dns, "mailcheck.test", "dkim._domainkey", dkim_txt(signing))
        publish_txt(dns, "wrongkey.test", "dkim._domainkey", dkim_txt(generate_dkim_key(None)))
        for domain, password in (("mailcheck.test", PASSWORD), ("wrongkey.test", OTHER_PASSWORD),
                                 ("nokey.test", OTHER_PASSWORD)):
            assert host.admin("admin", domain, password, "create").returncode == 0
        assert host.start() == "Started"
        yield host


def check(mail, dns, tmp_path, password=PASSWORD, user="admin@mailcheck.test", check_mode=False, **options):
    args = dict(host=mail.ip, username=user, password=password, validate_certs=False,
                dns_server=dns["address"], dns_port=dns["port"], fetch_timeout=20)
    args.update(options)
    playbook = """
    - hosts: localhost
      gather_facts: false
      tasks:
        - name: check the mail server
          penguinmails.vps.smtp_check: %s
          register: result
          ignore_errors: true
        - name: keep the result for the test
          ansible.builtin.copy:
            content: "{{ result | to_json }}"
            dest: %s
          check_mode: false
    """ % (json.dumps(args), json.dumps(str(tmp_path / "result.json")))
    proc = run_playbook(playbook, tmp_path=tmp_path, args=["--check"] if check_mode else [])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(str(tmp_path / "result.json")) as handle:
        result = json.load(handle)
    return result, proc.stdout + proc.stderr


def stage_status(result):
    return dict((name, stage["status"]) for name, stage in result["stages"].items())


def test_submission_587_starttls_all_stages_ok(mail, dns, tmp_path):
    result, output = check(mail, dns, tmp_path, port=587)
    assert not result.get("failed"), result
    assert stage_status(result) == dict.fromkeys(("connect", "tls", "auth", "send", "fetch", "dkim"), "ok")
    assert result["security"] == "starttls"
    assert result["stages"]["tls"]["msg"].endswith(
        "; AUTH before STARTTLS refused (530 5.7.0 Must issue a STARTTLS command first)")
    assert result["dkim"] == {"domain": "mailcheck.test", "selector": "dkim",
                              "dns_name": "dkim._domainkey.mailcheck.test", "verified": True}
    assert "STARTTLS" in result["stages"]["tls"]["msg"]
    # The probe really sits in the mailbox, signed.
    assert mail.mailbox_has(result["message_id"])
    assert PASSWORD not in output


def test_smtps_465_implicit_tls_all_stages_ok(mail, dns, tmp_path):
    result, output = check(mail, dns, tmp_path, port=465)
    assert not result.get("failed"), result
    assert result["security"] == "tls"
    assert "implicit TLS" in result["stages"]["tls"]["msg"]
    assert set(stage_status(result).values()) == {"ok"}
    assert PASSWORD not in output


def test_wrong_password_fails_at_auth_without_leaking_it(mail, dns, tmp_path):
    wrong = "Wrong-" + secrets.token_hex(12)
    result, output = check(mail, dns, tmp_path, password=wrong, port=587)
    assert result["failed"] is True
    assert result["failed_stage"] == "auth"
    assert result["msg"].startswith("mail check failed at stage auth:")
    assert "refused the credentials of admin@mailcheck.test" in result["msg"]
    assert "\n" not in result["msg"]
    assert stage_status(result) == {"connect": "ok", "tls": "ok", "auth": "error",
                                    "send": "skipped", "fetch": "skipped", "dkim": "skipped"}
    assert wrong not in output and PASSWORD not in output
    assert wrong not in json.dumps(result)


def test_key_in_dns_that_does_not_match_fails_at_dkim(mail, dns, tmp_path):
    result, output = check(mail, dns, tmp_path, user="admin@wrongkey.test", password=OTHER_PASSWORD)
    assert result["failed"] is True
    assert result["failed_stage"] == "dkim"
    assert "does not verify against the key published at dkim._domainkey.wrongkey.test" in result["msg"]
    assert stage_status(result)["fetch"] == "ok"
    assert result["dkim"]["verified"] is False
    assert OTHER_PASSWORD not in output


def test_no_key_in_dns_fails_at_dkim(mail, dns, tmp_path):
    result, _unused = check(mail, dns, tmp_path, user="admin@nokey.test", password=OTHER_PASSWORD)
    assert result["failed_stage"] == "dkim"
    assert "no DKIM key is published at dkim._domainkey.nokey.test (NXDOMAIN from 127.0.0.1:%d)" % dns["port"] \
        in result["msg"]


def test_signature_for_another_domain_fails_at_dkim(mail, dns, tmp_path):
    result, _unused = check(mail, dns, tmp_path, dkim_selector="dkim", dkim_domain="mailcheck.test",
                            user="admin@wrongkey.test", password=OTHER_PASSWORD)
    assert result["failed_stage"] == "dkim"
    assert "signed for d=wrongkey.test, expected d=mailcheck.test" in result["msg"]


def test_check_mode_logs_in_but_sends_nothing(mail, dns, tmp_path):
    before = mail.mailbox_count("admin@mailcheck.test")
    result, _unused = check(mail, dns, tmp_path, check_mode=True)
    assert not result.get("failed"), result
    assert stage_status(result) == {"connect": "ok", "tls": "ok", "auth": "ok",
                                    "send": "skipped", "fetch": "skipped", "dkim": "skipped"}
    assert result["message_id"] is None
    assert mail.mailbox_count("admin@mailcheck.test") == before


def test_check_mode_wrong_password_fails(mail, dns, tmp_path):
    result, _unused = check(mail, dns, tmp_path, password="nope-" + secrets.token_hex(4), check_mode=True)
    assert result["failed_stage"] == "auth"


def test_validate_certs_refuses_the_self_signed_certificate(mail, dns, tmp_path):
    result, _unused = check(mail, dns, tmp_path, validate_certs=True)
    assert result["failed_stage"] == "tls"
    assert "does not verify" in result["msg"] and "validate_certs=false" in result["msg"]


def test_ca_cert_makes_the_certificate_verify(mail, dns, tmp_path):
    result, _unused = check(mail, dns, tmp_path, validate_certs=True, ca_cert=mail.cert_path,
                            tls_server_name="mail.mailcheck.test", port=465)
    assert not result.get("failed"), result["msg"]
    assert "not verified" not in result["stages"]["tls"]["msg"]


def test_nothing_listening_fails_at_connect(dns, tmp_path):
    class Nowhere:
        ip = "127.0.0.1"

    result, _unused = check(Nowhere, dns, tmp_path, port=9, timeout=3)
    assert result["failed_stage"] == "connect"
    assert "connection refused" in result["msg"]
