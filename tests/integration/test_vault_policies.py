# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""roles/vault_setup on a real OpenBao: idempotence, check mode, and the tenant isolation matrix."""
from __future__ import annotations

import json
import re

import pytest

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


def login(server, user):
    body = server.api("POST", "/v1/auth/userpass/login/%s" % user.lower(), {"password": PASSWORDS[user]})
    return body["auth"]["client_token"]


def status(server, method, path, token, payload=None):
    return server.request(method, path, payload, token=token)[0]


@pytest.fixture()
def configured(fresh_openbao, tmp_path):
    server = fresh_openbao
    # A mount that must be created by the role, and settings that must be corrected by it.
    server.api("DELETE", "/v1/sys/mounts/dkim")
    # A policy drifted from the role's HCL is put back.
    server.api("PUT", "/v1/sys/policies/acl/tenant", {"policy": 'path "vps//tenant_ssh/*" { capabilities = ["read"] }'})
    check = run_playbook(PLAYBOOK, env=server.env(), args=("--check",), tmp_path=tmp_path)
    assert check.returncode == 0, check.stdout[-4000:]
    assert recap(check.stdout)["failed"] == 0
    assert "vps//tenant_ssh" in server.api("GET", "/v1/sys/policies/acl/tenant")["data"]["policy"]  # untouched
    assert server.request("GET", "/v1/dkim/config")[0] != 200
    first = run_playbook(PLAYBOOK, env=server.env(), tmp_path=tmp_path)
    assert first.returncode == 0, first.stdout[-4000:]
    assert recap(first.stdout)["changed"] > 0
    second = run_playbook(PLAYBOOK, env=server.env(), tmp_path=tmp_path)
    assert second.returncode == 0, second.stdout[-4000:]
    assert recap(second.stdout)["changed"] == 0, second.stdout[-4000:]
    for user, password in PASSWORDS.items():
        assert password not in first.stdout + first.stderr + check.stdout + second.stdout
    assert server.token not in first.stdout + first.stderr
    return server


def test_mounts_policies_and_auth(configured):
    server = configured
    mounts = server.api("GET", "/v1/sys/mounts")["data"]
    for mount in ("vps", "smtp", "dkim"):
        assert mounts[mount + "/"]["type"] == "kv" and mounts[mount + "/"]["options"]["version"] == "2"
        config = server.api("GET", "/v1/%s/config" % mount)["data"]
        assert config["cas_required"] is True and config["max_versions"] == 500
    # cas_required: a write without cas is refused, with cas=0 it goes through.
    assert status(server, "POST", "/v1/vps/data/x1/record", server.token, {"data": {"a": "b"}}) == 400
    assert status(server, "POST", "/v1/vps/data/x1/record", server.token, {"data": {"a": "b"}, "options": {"cas": 0}}) == 200
    tenant_policy = server.api("GET", "/v1/sys/policies/acl/tenant")["data"]["policy"]
    assert "vps/metadata/{{identity.entity.metadata.tenant_id}}/tenant_ssh" in tenant_policy
    # One data path only: the tenant's own download offer (read, update); its key itself is denied.
    data_paths = re.findall(r'path "([^"]*/data/[^"]*)" \{\s*capabilities = (\[[^\]]*\])', tenant_policy)
    assert data_paths == [("vps/data/{{identity.entity.metadata.tenant_id}}/tenant_ssh_download", '["read", "update"]'),
                          ("vps/data/{{identity.entity.metadata.tenant_id}}/tenant_ssh", '["deny"]')], data_paths
    assert 'path "vps//' not in tenant_policy
    assert "userpass/" in server.api("GET", "/v1/sys/auth")["data"]


def test_isolation_matrix(configured):
    server = configured
    for tenant in ("tenantA", "tenantB"):
        for role in ("tenant", "admin"):
            server.api("POST", "/v1/vps/data/%s/%s_ssh" % (tenant, role),
                       {"data": {"public_key": "pk-%s-%s" % (tenant, role)}, "options": {"cas": 0}})
        server.api("POST", "/v1/vps/data/%s/record" % tenant, {"data": {"vps_ip": "192.0.2.1"}, "options": {"cas": 0}})
        server.api("POST", "/v1/smtp/data/%s/admin" % tenant, {"data": {"password": "p"}, "options": {"cas": 0}})
        server.api("POST", "/v1/vps/data/%s/tenant_ssh_download" % tenant, {"data": {"token": "t"}, "options": {"cas": 0}})
    server.api("POST", "/v1/dkim/data/example.com/dkim", {"data": {"private_key": "k"}, "options": {"cas": 0}})
    # An identity without tenant_id metadata (the seed's bug turned this into vps//tenant_ssh).
    server.api("POST", "/v1/auth/userpass/users/nometa", {"password": PASSWORDS["nometa"]})
    accessor = server.api("GET", "/v1/sys/auth")["data"]["userpass/"]["accessor"]
    entity = server.api("POST", "/v1/identity/entity", {"name": "nometa", "policies": ["tenant"]})["data"]["id"]
    server.api("POST", "/v1/identity/entity-alias", {"name": "nometa", "canonical_id": entity, "mount_accessor": accessor})

    a, b, nometa = login(server, "tenantA"), login(server, "tenantB"), login(server, "nometa")
    automation = server.create_token(["automation"])
    admin = server.create_token(["admin"])
    read = "GET"
    matrix = [
        # (token, method, path, expected status)
        # A tenant reads no secret data, not even its own private key, in no version: only the metadata.
        (a, read, "/v1/vps/data/tenantA/tenant_ssh", 403),
        (a, read, "/v1/vps/data/tenantA/tenant_ssh?version=1", 403),
        (b, read, "/v1/vps/data/tenantB/tenant_ssh", 403),
        (a, read, "/v1/vps/metadata/tenantA/tenant_ssh", 200),
        (b, read, "/v1/vps/metadata/tenantB/tenant_ssh", 200),
        (a, read, "/v1/vps/metadata/tenantB/tenant_ssh", 403),
        (a, read, "/v1/vps/data/tenantB/tenant_ssh", 403),
        (b, read, "/v1/vps/data/tenantA/tenant_ssh", 403),
        (a, read, "/v1/vps/data/tenantA/admin_ssh", 403),
        (a, read, "/v1/vps/data/tenantB/admin_ssh", 403),
        (a, read, "/v1/vps/data/tenantA/record", 403),
        # The self-service download offer: its own only, read and marked (update), never created.
        (a, read, "/v1/vps/data/tenantA/tenant_ssh_download", 200),
        (a, read, "/v1/vps/data/tenantA/tenant_ssh_download?version=1", 200),
        (b, read, "/v1/vps/data/tenantB/tenant_ssh_download", 200),
        (a, read, "/v1/vps/data/tenantB/tenant_ssh_download", 403),
        (b, read, "/v1/vps/data/tenantA/tenant_ssh_download", 403),
        (a, "POST", "/v1/vps/data/tenantB/tenant_ssh_download", 403),
        (a, "POST", "/v1/vps/data/tenantX/tenant_ssh_download", 403),
        (a, "DELETE", "/v1/vps/data/tenantA/tenant_ssh_download", 403),
        (nometa, read, "/v1/vps/data/tenantA/tenant_ssh_download", 403),
        (a, "POST", "/v1/vps/data/tenantA/tenant_ssh_download", 200),
        (a, "LIST", "/v1/vps/metadata", 403),
        (a, read, "/v1/smtp/data/tenantA/admin", 403),
        (a, read, "/v1/dkim/data/example.com/dkim", 403),
        (a, "POST", "/v1/vps/data/tenantA/tenant_ssh", 403),
        (a, "DELETE", "/v1/vps/data/tenantA/tenant_ssh", 403),
        (nometa, read, "/v1/vps/data/tenantA/tenant_ssh", 403),
        (nometa, read, "/v1/vps/data//tenant_ssh", 403),
        (automation, read, "/v1/vps/data/tenantA/admin_ssh", 200),
        (automation, read, "/v1/smtp/data/tenantB/admin", 200),
        (automation, "LIST", "/v1/vps/metadata", 200),
        (automation, "DELETE", "/v1/vps/data/tenantA/tenant_ssh", 403),
        (automation, "DELETE", "/v1/vps/metadata/tenantA/tenant_ssh", 403),
        (automation, "POST", "/v1/vps/delete/tenantA/tenant_ssh", 403),
        (automation, "POST", "/v1/vps/destroy/tenantA/tenant_ssh", 403),
        (automation, "POST", "/v1/dkim/destroy/example.com/dkim", 403),
        (admin, read, "/v1/dkim/data/example.com/dkim", 200),
        (admin, "LIST", "/v1/smtp/metadata", 200),
    ]
    payloads = {
        "POST": {"data": {"public_key": "x"}, "options": {"cas": 1}},
    }
    failures = []
    for token, method, path, expected in matrix:
        payload = payloads.get(method) if "/data/" in path else ({"versions": [1]} if method == "POST" else None)
        got = status(server, method, path, token, payload)
        if got != expected:
            failures.append("%s %s -> %s (expected %s)" % (method, path, got, expected))
    assert not failures, "\n".join(failures)
    assert server.api("GET", "/v1/vps/metadata/tenantA/tenant_ssh", token=a)["data"]["current_version"] == 1
    # automation writes with CAS (update) and creates, but the history survives its attempts to delete.
    assert status(server, "POST", "/v1/vps/data/tenantA/tenant_ssh", automation,
                  {"data": {"public_key": "pk2"}, "options": {"cas": 1}}) == 200
    assert status(server, "POST", "/v1/vps/data/tenantC/tenant_ssh", automation,
                  {"data": {"public_key": "pk"}, "options": {"cas": 0}}) == 200
    assert server.kv_get("vps", "tenantA/tenant_ssh", version=1)["data"] == {"public_key": "pk-tenantA-tenant"}
    # admin may soft-delete (state=absent).
    assert status(server, "DELETE", "/v1/vps/data/tenantB/tenant_ssh", admin) == 204


def test_audit_device_refused_by_api_is_explained(tmp_path):
    from tests.support.openbao import OpenBao

    with OpenBao(audit=False) as server:  # no audit device declared in its config
        server.enable_kv()
        result = run_playbook(PLAYBOOK, env=server.env(), tmp_path=tmp_path)  # vault_setup_audit_enabled: true by default
        assert result.returncode != 0
        assert "Vault's audit device must be on (vault_setup_audit_enabled)" in result.stdout
        assert "refuses to create audit devices over the API" in result.stdout
        assert json.dumps(server.api("GET", "/v1/sys/audit")["data"]) == "{}"


def test_audit_device_created_when_the_server_allows_it(tmp_path):
    from tests.support.openbao import OpenBao

    with OpenBao(config_hcl="unsafe_allow_api_audit_creation = true\n", audit=False) as server:
        server.enable_kv()
        log = tmp_path / "audit.log"
        extra = {"vault_setup_audit_enabled": "true", "vault_setup_audit_file": str(log)}
        first = run_playbook(PLAYBOOK, env=server.env(), extra_vars=extra, tmp_path=tmp_path)
        assert first.returncode == 0, first.stdout[-3000:]
        assert server.api("GET", "/v1/sys/audit")["data"]["file/"]["options"]["file_path"] == str(log)
        second = run_playbook(PLAYBOOK, env=server.env(), extra_vars=extra, tmp_path=tmp_path)
        assert recap(second.stdout)["changed"] == 0


CASE_PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  roles:
    - role: penguinmails.vps.vault_setup
      vars:
        vault_setup_tenants: %s
"""


def _setup(server, tmp_path, tenants, check=False):
    playbook = CASE_PLAYBOOK % json.dumps([{"tenant_id": t, "password": p} for t, p in tenants])
    return run_playbook(playbook, env=server.env(), tmp_path=tmp_path, args=("--check",) if check else ())


def _state(server):
    """Mounts, policies, auth methods, entities and logins: what a refused run must leave as it was."""
    entities = server.request("LIST", "/v1/identity/entity/name")[1] or {}
    users = server.request("LIST", "/v1/auth/userpass/users")[1] or {}
    return json.dumps([
        sorted(server.api("GET", "/v1/sys/mounts")["data"]),
        {name: server.api("GET", "/v1/sys/policies/acl/%s" % name)["data"]["policy"]
         for name in server.api("LIST", "/v1/sys/policies/acl")["data"]["keys"]},
        sorted(server.api("GET", "/v1/sys/auth")["data"]),
        sorted((entities.get("data") or {}).get("keys") or []),
        sorted((users.get("data") or {}).get("keys") or []),
    ], sort_keys=True)


def test_ids_that_differ_only_by_case_are_one_tenant(fresh_openbao, tmp_path):
    """Seen: with Acme and acme both set up, acme logged in as Acme (the alias was rebound)."""
    server = fresh_openbao
    first = _setup(server, tmp_path, [("Acme", "pw-Acme-0123456789")])
    assert first.returncode == 0, first.stdout[-3000:]
    acme_entity = server.api("GET", "/v1/identity/entity/name/tenant-Acme")["data"]
    server.api("POST", "/v1/vps/data/Acme/tenant_ssh",
               {"data": {"private_key": "-----BEGIN OPENSSH PRIVATE KEY-----x"}, "options": {"cas": 0}})
    before = _state(server)
    second = _setup(server, tmp_path, [("acme", "pw-acme-other-0123456789")])
    assert second.returncode == 2
    assert "tenant id 'acme' collides with the existing tenant 'Acme'" in second.stdout
    assert "pw-acme-other" not in second.stdout + second.stderr
    assert _state(server) == before  # nothing changed, the alias still belongs to Acme
    aliases = server.api("GET", "/v1/identity/entity/name/tenant-Acme")["data"]["aliases"]
    assert [a["name"] for a in aliases] == ["acme"] and aliases[0]["canonical_id"] == acme_entity["id"]
    # The real Acme still logs in (as "acme" or "ACME": userpass is case-insensitive); the intruder does not.
    token = server.api("POST", "/v1/auth/userpass/login/ACME", {"password": "pw-Acme-0123456789"})["auth"]["client_token"]
    assert server.request("GET", "/v1/vps/metadata/Acme/tenant_ssh", token=token)[0] == 200
    assert server.request("POST", "/v1/auth/userpass/login/acme", {"password": "pw-acme-other-0123456789"})[0] == 400
    # Both in one list: refused before anything is touched.
    both = _setup(server, tmp_path, [("Globex", "pw-Globex-0123456789"), ("GLOBEX", "pw-GLOBEX-0123456789")])
    assert both.returncode == 2 and "differ only by case" in both.stdout
    assert _state(server) == before


def test_a_login_bound_to_another_entity_is_never_rebound(fresh_openbao, tmp_path):
    server = fresh_openbao
    assert _setup(server, tmp_path, [("tenantA", "pw-tenant-a-0123456789")]).returncode == 0
    # An intruder's entity takes over the alias name "tenantb" before tenantB is set up, and a bare login exists.
    accessor = server.api("GET", "/v1/sys/auth")["data"]["userpass/"]["accessor"]
    intruder = server.api("POST", "/v1/identity/entity", {"name": "intruder", "policies": ["tenant"],
                                                          "metadata": {"tenant_id": "tenantA"}})["data"]["id"]
    server.api("POST", "/v1/identity/entity-alias", {"name": "tenantb", "canonical_id": intruder, "mount_accessor": accessor})
    server.api("POST", "/v1/auth/userpass/users/tenantc", {"password": "someone-elses-0123456789"})
    before = _state(server)
    bound = _setup(server, tmp_path, [("tenantB", "pw-tenant-b-0123456789")])
    assert bound.returncode == 2 and "the login tenantb belongs to tenantA, not to tenant tenantB" in bound.stdout
    bare = _setup(server, tmp_path, [("tenantC", "pw-tenant-c-0123456789")])
    assert bare.returncode == 2 and "a login tenantc exists that is not bound to tenant tenantC" in bare.stdout
    assert _state(server) == before


@pytest.mark.parametrize("tenants,rule", [
    ([("../x", "pw-0123456789-x")], "path traversal"),
    ([("x\n", "pw-0123456789-x")], "whitespace or control characters"),
    ([("good", "short")], "password of 12 or more characters"),
])
def test_a_bad_tenant_list_changes_nothing(fresh_openbao, tmp_path, tenants, rule):
    """Seen: vault_setup rewrote mounts and policies before it validated its tenant list."""
    server = fresh_openbao
    server.api("PUT", "/v1/sys/policies/acl/tenant", {"policy": 'path "vps//tenant_ssh/*" { capabilities = ["read"] }'})
    before = _state(server)
    result = _setup(server, tmp_path, tenants)
    assert result.returncode == 2 and rule in result.stdout, result.stdout[-3000:]
    assert "pw-0123456789" not in result.stdout
    assert _state(server) == before
