# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""roles/vault_setup's SSH CAs on a real OpenBao: the engine mounts, roles and CA keys, idempotence and check mode,
and who may have what signed (automation: admin and host certificates only; a tenant: its own account only)."""
from __future__ import annotations

import re
import subprocess

import pytest

from ansible_collections.penguinmails.vps.plugins.module_utils import ssh_certificates as sc
from tests.support.ansible_run import run_playbook

PASSWORDS = {"tenantA": "pw-tenant-a-0123456789", "tenantB": "pw-tenant-b-0123456789", "nometa": "pw-nometa-0123456789"}
PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  roles:
    - role: penguinmails.vps.vault_setup
      vars:
        vault_setup_tenants:
          - {tenant_id: tenantA, password: %(tenantA)s}
          - {tenant_id: tenantB, password: %(tenantB)s}
""" % PASSWORDS


def recap(stdout):
    match = re.search(r"localhost\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", stdout)
    assert match, stdout[-3000:]
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups())))


@pytest.fixture()
def configured(fresh_openbao, tmp_path):
    server = fresh_openbao
    check = run_playbook(PLAYBOOK, env=server.env(), args=("--check",), tmp_path=tmp_path)
    assert check.returncode == 0 and recap(check.stdout)["failed"] == 0, check.stdout[-4000:]
    assert "ssh-user-ca/" not in server.api("GET", "/v1/sys/mounts")["data"]  # check mode changed nothing
    first = run_playbook(PLAYBOOK, env=server.env(), tmp_path=tmp_path)
    assert first.returncode == 0, first.stdout[-4000:]
    second = run_playbook(PLAYBOOK, env=server.env(), tmp_path=tmp_path)
    assert second.returncode == 0 and recap(second.stdout)["changed"] == 0, second.stdout[-4000:]
    return server


def public_key(tmp_path, name="k"):
    path = str(tmp_path / name)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path], check=True)
    with open(path + ".pub") as handle:
        return handle.read().strip()


def sign(server, token, path, public, principals, cert_type="user"):
    status, body = server.request("POST", "/v1/%s" % path,
                                  {"public_key": public, "valid_principals": principals, "cert_type": cert_type}, token=token)
    return status, body


def login(server, user):
    return server.api("POST", "/v1/auth/userpass/login/%s" % user.lower(), {"password": PASSWORDS[user]})["auth"]["client_token"]


def test_the_cas_and_their_roles(configured):
    server = configured
    mounts = server.api("GET", "/v1/sys/mounts")["data"]
    assert mounts["ssh-user-ca/"]["type"] == "ssh" and mounts["ssh-host-ca/"]["type"] == "ssh"
    for mount in ("ssh-user-ca", "ssh-host-ca"):
        issuers = server.api("LIST", "/v1/%s/issuers" % mount)["data"]["key_info"]
        assert len(issuers) == 1 and next(iter(issuers.values()))["public_key"].startswith("ssh-ed25519 ")
    admin = server.api("GET", "/v1/ssh-user-ca/roles/admin")["data"]
    assert admin["allowed_users"] == "penguinmails-admin" and admin["ttl"] == 600 and admin["max_ttl"] == 3600
    assert admin["allow_host_certificates"] is False and admin["allow_user_key_ids"] is False
    assert admin["key_id_format"] == "{{role_name}}-{{token_display_name}}"
    tenant = server.api("GET", "/v1/ssh-user-ca/roles/tenant-tenantA")["data"]
    assert tenant["allowed_users"] == "tenant-tenanta" and tenant["default_user"] == "tenant-tenanta"
    host = server.api("GET", "/v1/ssh-host-ca/roles/host")["data"]
    assert host["allow_host_certificates"] is True and host["allow_user_certificates"] is False


def test_automation_signs_admin_and_host_certificates_only(configured, tmp_path):
    server = configured
    automation = server.create_token(["automation"])
    public = public_key(tmp_path)
    status, body = sign(server, automation, "ssh-user-ca/sign/admin", public, "penguinmails-admin")
    assert status == 200, body
    cert = sc.parse_certificate(body["data"]["signed_key"])
    assert cert["principals"] == ["penguinmails-admin"] and cert["valid_before"] - cert["valid_after"] <= 600 + 30
    assert cert["key_id"] == "admin-token" and cert["extensions"] == ["permit-pty"]
    assert sign(server, automation, "ssh-host-ca/sign/host", public, "203.0.113.5", cert_type="host")[0] == 200
    # not another principal, not a tenant's role, not a host certificate from the user CA
    assert sign(server, automation, "ssh-user-ca/sign/admin", public, "root")[0] == 400
    assert sign(server, automation, "ssh-user-ca/sign/tenant-tenantA", public, "tenant-tenanta")[0] == 403
    assert sign(server, automation, "ssh-user-ca/sign/admin", public, "penguinmails-admin", cert_type="host")[0] == 400
    # it reads the CA keys, and changes neither a role, nor a CA key, nor which key signs
    assert server.request("LIST", "/v1/ssh-user-ca/issuers", token=automation)[0] == 200
    assert server.request("LIST", "/v1/ssh-host-ca/issuers", token=automation)[0] == 200
    assert server.request("POST", "/v1/ssh-user-ca/roles/admin", {"allowed_users": "*"}, token=automation)[0] == 403
    assert server.request("POST", "/v1/ssh-user-ca/issuers/import/x", {"generate_signing_key": True}, token=automation)[0] == 403
    assert server.request("POST", "/v1/ssh-user-ca/config/issuers", {"default": "x"}, token=automation)[0] == 403
    assert server.request("DELETE", "/v1/ssh-user-ca/config/ca", token=automation)[0] == 403


def test_a_tenant_signs_for_its_own_account_only(configured, tmp_path):
    server = configured
    a, b = login(server, "tenantA"), login(server, "tenantB")
    public = public_key(tmp_path)
    status, body = sign(server, a, "ssh-user-ca/sign/tenant-tenantA", public, "tenant-tenanta")
    assert status == 200, body
    assert sc.parse_certificate(body["data"]["signed_key"])["principals"] == ["tenant-tenanta"]
    assert sign(server, a, "ssh-user-ca/sign/tenant-tenantA", public, "tenant-tenantb")[0] == 400
    assert sign(server, a, "ssh-user-ca/sign/tenant-tenantA", public, "root")[0] == 400
    assert sign(server, a, "ssh-user-ca/sign/tenant-tenantB", public, "tenant-tenantb")[0] == 403
    assert sign(server, b, "ssh-user-ca/sign/tenant-tenantA", public, "tenant-tenanta")[0] == 403
    assert sign(server, a, "ssh-user-ca/sign/admin", public, "penguinmails-admin")[0] == 403
    assert sign(server, a, "ssh-host-ca/sign/host", public, "203.0.113.5", cert_type="host")[0] == 403
    # an identity without tenant_id metadata gets no signing path at all
    server.api("POST", "/v1/auth/userpass/users/nometa", {"password": PASSWORDS["nometa"]})
    accessor = server.api("GET", "/v1/sys/auth")["data"]["userpass/"]["accessor"]
    entity = server.api("POST", "/v1/identity/entity", {"name": "nometa", "policies": ["tenant"]})["data"]["id"]
    server.api("POST", "/v1/identity/entity-alias", {"name": "nometa", "canonical_id": entity, "mount_accessor": accessor})
    nometa = login(server, "nometa")
    assert sign(server, nometa, "ssh-user-ca/sign/tenant-", public, "tenant-")[0] == 403
    assert sign(server, nometa, "ssh-user-ca/sign/tenant-tenantA", public, "tenant-tenanta")[0] == 403


def test_a_role_changed_by_hand_is_put_back(configured, tmp_path):
    server = configured
    server.api("POST", "/v1/ssh-user-ca/roles/admin", {"key_type": "ca", "allow_user_certificates": True,
                                                       "allowed_users": "*", "ttl": "24h"})
    again = run_playbook(PLAYBOOK, env=server.env(), tmp_path=tmp_path)
    assert again.returncode == 0 and recap(again.stdout)["changed"] == 1, again.stdout[-3000:]
    admin = server.api("GET", "/v1/ssh-user-ca/roles/admin")["data"]
    assert admin["allowed_users"] == "penguinmails-admin" and admin["ttl"] == 600
    assert len(server.api("LIST", "/v1/ssh-user-ca/issuers")["data"]["keys"]) == 1  # the CA key stays
