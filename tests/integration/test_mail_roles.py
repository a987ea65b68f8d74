# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""roles/mailu and roles/dkim through ansible-playbook against lab hosts (SSH as root, Mailu's root /mailu).

Real parts: OpenBao (tests/support/openbao.py) holds smtp/<tenant>/admin and dkim/<domain>/<selector>;
each site is a lab host (tests/lab/mail) where the role starts Debian's Postfix, Dovecot and Rspamd with the
lab's mailu_start_command and sets the admin password with the stand-in for Mailu's admin CLI; BIND9
(tests/lab/bind.py) receives the DKIM TXT records through penguinmails.vps.dns_record; smtp_check verifies
the result end to end.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat

import dns.message
import dns.query
import dns.rdatatype
import pytest

from ansible_collections.penguinmails.vps.plugins.module_utils.mail_check import MailCheck
from tests.lab import mail as lab_mail
from tests.lab.bind import Bind9
from tests.lab.mail import dkim_txt, generate_dkim_key
from tests.support.ansible_run import run_playbook


@pytest.fixture(scope="module")
def dns_server(tmp_path_factory):
    server = Bind9(str(tmp_path_factory.mktemp("bind")), zones=("roles-a.test", "roles-b.test", "roles-c.test"))
    info = server.start()
    yield info
    server.stop()


@pytest.fixture(scope="module")
def mail_lab():
    with lab_mail.MailLab() as lab:
        yield lab


class Site:
    """One tenant: a lab host (its /mailu is Mailu's root), Vault data."""

    def __init__(self, openbao, tmp_path, mail_lab, domain):
        self.openbao = openbao
        self.tmp_path = tmp_path
        self.mail_lab = mail_lab
        self.tenant = "t-" + secrets.token_hex(4)
        self.host = mail_lab.host(self.tenant)
        self.root = self.host.root
        self.domain = domain
        self.address = self.host.ip
        self.password = "Pw-" + secrets.token_hex(12)
        self.username = "admin@" + domain

    def seed_admin(self, password=None, **extra):
        data = {"username": self.username, "password": self.password if password is None else password,
                "webmail_url": "https://mail.%s/webmail" % self.domain}
        data.update(extra)
        self.openbao.kv_put("smtp", "%s/admin" % self.tenant, data)

    def vars(self, **extra):
        values = {
            "mailu_tenant_id": self.tenant,
            "mailu_domain": self.domain,
            "mailu_install_docker": False,
            "mailu_start_command": lab_mail.START_COMMAND,
            "mailu_admin_command": lab_mail.ADMIN_COMMAND,
            "mailu_check_validate_certs": False,
            "mailu_start_timeout": 30,
            "mailu_admin_delay": 1,
        }
        values.update(extra)
        return values

    def play(self, roles, check=False):
        playbook = "- hosts: %s\n  gather_facts: false\n  roles:\n" % self.tenant
        for name, values in roles:
            playbook += "    - role: penguinmails.vps.%s\n      vars: %s\n" % (name, json.dumps(values))
        proc = run_playbook(playbook, env=self.openbao.env(), tmp_path=self.tmp_path,
                            inventory=self.mail_lab.inventory(self.tmp_path, [self.host]),
                            args=["--check"] if check else [])
        return proc, proc.stdout + proc.stderr

    def env(self):
        values = {}
        with open(os.path.join(self.root, "mailu.env")) as handle:
            for line in handle:
                if "=" in line and not line.startswith("#"):
                    key, value = line.rstrip("\n").split("=", 1)
                    values[key] = value
        return values

    def login(self, password):
        return MailCheck(self.address, self.username, password, validate_certs=False, send_probe=False).run()


@pytest.fixture()
def site_factory(openbao, tmp_path, mail_lab):
    sites = []

    def make(domain):
        site = Site(openbao, tmp_path, mail_lab, domain)
        sites.append(site)
        return site

    yield make
    for site in sites:
        mail_lab.destroy(site.tenant)


def recap(output):
    match = re.search(r"\nt-[0-9a-f]{8}\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", output)
    assert match, output
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups())))


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def txt_records(dns_info, name):
    query = dns.message.make_query(name, dns.rdatatype.TXT)
    response = dns.query.tcp(query, dns_info["address"], port=dns_info["port"], timeout=5)
    return sorted(b"".join(rdata.strings).decode() for rrset in response.answer for rdata in rrset)


# ---------------------------------------------------------------------------------------
# roles/mailu
# ---------------------------------------------------------------------------------------
def test_mailu_renders_starts_sets_admin_and_is_idempotent(site_factory):
    site = site_factory("roles-a.test")
    site.seed_admin()
    proc, output = site.play([("mailu", site.vars())])
    assert proc.returncode == 0, output
    assert site.password not in output

    env = site.env()
    assert mode(os.path.join(site.root, "mailu.env")) == 0o600
    assert env["DOMAIN"] == "roles-a.test"
    assert env["HOSTNAMES"] == "mail.roles-a.test"
    assert env["POSTMASTER"] == "admin"
    assert env["TLS_FLAVOR"] == "letsencrypt"
    assert "587" in env["PORTS"].split(",")
    assert env["INITIAL_ADMIN_ACCOUNT"] == "admin" and env["INITIAL_ADMIN_DOMAIN"] == "roles-a.test"
    assert env["INITIAL_ADMIN_PW"] == site.password and env["INITIAL_ADMIN_MODE"] == "update"
    assert re.fullmatch(r"[A-Z0-9]{16}", env["SECRET_KEY"])
    with open(os.path.join(site.root, "docker-compose.yml")) as handle:
        compose = handle.read()
    assert "0.0.0.0:587:587" in compose and "ghcr.io/mailu/admin:2024.06" in compose
    # The daemons the role started accept the Vault password and nothing else.
    assert site.host.status()["running"] is True
    assert site.login(site.password)["failed_stage"] is None
    assert site.login("wrong-" + site.password)["failed_stage"] == "auth"
    users = os.path.join(site.root, "data", "users.passwd")
    assert mode(users) == 0o640
    with open(users) as handle:
        accounts = handle.read()
    assert site.password not in accounts and accounts.startswith("admin@roles-a.test:{SHA512-CRYPT}$6$")

    proc, output = site.play([("mailu", site.vars())])
    assert proc.returncode == 0, output
    assert recap(output)["changed"] == 0, output
    assert site.env()["SECRET_KEY"] == env["SECRET_KEY"]


def test_mailu_resets_the_password_only_when_the_login_fails(site_factory):
    site = site_factory("roles-a.test")
    site.seed_admin()
    proc, output = site.play([("mailu", site.vars(mailu_initial_admin_mode="ifmissing"))])
    assert proc.returncode == 0, output
    assert "Set the admin password from Vault" in output
    secret_key = site.env()["SECRET_KEY"]

    new_password = "New-" + secrets.token_hex(12)
    site.seed_admin(password=new_password)
    proc, output = site.play([("mailu", site.vars(mailu_initial_admin_mode="ifmissing"))])
    assert proc.returncode == 0, output
    assert new_password not in output and site.password not in output
    assert re.search(r"changed: \[%s\]" % site.tenant,
                     output.split("Set the admin password from Vault")[1].split("TASK")[0])
    assert site.login(new_password)["failed_stage"] is None
    assert site.login(site.password)["failed_stage"] == "auth"
    assert site.env()["SECRET_KEY"] == secret_key

    proc, output = site.play([("mailu", site.vars(mailu_initial_admin_mode="ifmissing"))])
    assert proc.returncode == 0, output
    assert recap(output)["changed"] == 0, output


def test_mailu_takes_secret_key_from_vault_for_a_new_host(site_factory):
    site = site_factory("roles-b.test")
    site.seed_admin(secret_key="VAULTKEY12345678")
    proc, output = site.play([("mailu", site.vars())])
    assert proc.returncode == 0, output
    assert site.env()["SECRET_KEY"] == "VAULTKEY12345678"


def test_mailu_never_sets_an_empty_password_from_vault(site_factory):
    """The lab host refuses an empty admin password (Mailu's admin would not take it): the role fails."""
    site = site_factory("roles-b.test")
    site.seed_admin(password="")
    proc, output = site.play([("mailu", site.vars(mailu_admin_retries=1, mailu_admin_delay=0))])
    assert proc.returncode != 0, output[-6000:]
    assert recap(output)["failed"] == 1
    assert "Set the admin password from Vault" in output.split("fatal:")[0].rsplit("TASK", 1)[1]
    assert not os.path.exists(os.path.join(site.root, "data", "users.passwd"))
    assert site.host.status()["running"] is True  # the daemons run, nobody can log in
    assert site.login("")["failed_stage"] == "auth"


def test_mailu_fails_clearly_when_vault_has_no_credentials(site_factory):
    site = site_factory("roles-b.test")
    proc, output = site.play([("mailu", site.vars())])
    assert proc.returncode != 0
    assert "secret not found: smtp/%s/admin" % site.tenant in output
    assert not os.path.exists(os.path.join(site.root, "mailu.env"))


# ---------------------------------------------------------------------------------------
# roles/dkim (+ mailu, then the end-to-end check)
# ---------------------------------------------------------------------------------------
def dkim_vars(site, dns_info, **extra):
    values = {
        "dkim_domain": site.domain,
        "dkim_dns_server": dns_info["address"],
        "dkim_dns_port": dns_info["port"],
        "dkim_dns_key_name": dns_info["tsig_name"],
        "dkim_dns_key_secret": dns_info["tsig_secret"],
    }
    values.update(extra)
    return values


def test_dkim_installs_every_selector_publishes_and_mail_verifies(site_factory, openbao, dns_server):
    site = site_factory("roles-c.test")
    site.seed_admin()
    keys = {}
    for selector in ("dkim", "s2026"):
        keys[selector] = generate_dkim_key(None).decode()
        openbao.kv_put("dkim", "%s/%s" % (site.domain, selector),
                       {"private_key": keys[selector], "public_key": "", "created_at": "2026-01-01T00:00:00Z"})
    roles = [("mailu", site.vars()), ("dkim", dkim_vars(site, dns_server))]
    proc, output = site.play(roles)
    assert proc.returncode == 0, output
    for selector, pem in keys.items():
        path = os.path.join(site.root, "dkim", "%s.%s.key" % (site.domain, selector))
        with open(path, "rb") as handle:
            assert handle.read() == pem.encode()  # byte-identical to Vault
        assert mode(path) == 0o600
        assert pem.splitlines()[1] not in output
        assert txt_records(dns_server, "%s._domainkey.%s" % (selector, site.domain)) == [dkim_txt(pem.encode())]

    # The whole chain: SMTP AUTH, a probe signed by the installed key, verified against BIND.
    result = MailCheck(site.address, site.username, site.password, validate_certs=False,
                       dns_server=dns_server["address"], dns_port=dns_server["port"], fetch_timeout=20).run()
    assert result["failed_stage"] is None, result
    assert result["dkim"]["selector"] == "dkim" and result["dkim"]["verified"] is True

    proc, output = site.play(roles)
    assert proc.returncode == 0, output
    assert recap(output)["changed"] == 0, output


def test_dkim_generates_a_missing_key_once_when_asked(site_factory, openbao, dns_server):
    domain = "gen-%s.test" % secrets.token_hex(4)
    site = site_factory(domain)
    vars_ = dkim_vars(site, dns_server, dkim_publish=False)

    proc, output = site.play([("dkim", vars_)])
    assert proc.returncode != 0
    assert "no DKIM key stored under dkim/%s" % domain in output and "dkim_generate_missing" in output

    vars_["dkim_generate_missing"] = True
    proc, output = site.play([("dkim", vars_)], check=True)
    assert proc.returncode == 0, output
    assert openbao.request("GET", "/v1/dkim/data/%s/dkim" % domain)[0] == 404

    proc, output = site.play([("dkim", vars_)])
    assert proc.returncode == 0, output
    stored = openbao.kv_get("dkim", "%s/dkim" % domain)
    pem = stored["data"]["private_key"]
    assert pem.startswith("-----BEGIN PRIVATE KEY-----\n")  # PKCS#8, as Mailu writes
    assert stored["data"]["public_key"].startswith("-----BEGIN PUBLIC KEY-----")
    assert stored["metadata"]["version"] == 1
    path = os.path.join(site.root, "dkim", "%s.dkim.key" % domain)
    with open(path, "rb") as handle:
        assert handle.read() == pem.encode()
    assert mode(path) == 0o600
    assert pem.splitlines()[1] not in output

    proc, output = site.play([("dkim", vars_)])
    assert proc.returncode == 0, output
    assert recap(output)["changed"] == 0, output
    assert openbao.kv_get("dkim", "%s/dkim" % domain)["metadata"]["version"] == 1
