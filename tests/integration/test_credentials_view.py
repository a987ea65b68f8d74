# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tenant's read-only SSH credentials view (issue 21): penguinmails.vps.tenant_credentials_info and the playbook
penguinmails.vps.credentials on a real OpenBao set up by roles/vault_setup (policies tenant, automation, admin and
the tenants' userpass logins).

A tenant's login sees its six fields (the public fields its key's writers publish in the key's metadata), another
tenant's login is refused, viewing leaves the one-time download untouched, and nothing secret is in any output."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request

import pytest

from ansible_collections.penguinmails.vps.plugins.module_utils import keypair_store, ssh_keys, tenant_record
from ansible_collections.penguinmails.vps.plugins.module_utils import vault_client as vc
from ansible_collections.penguinmails.vps.plugins.module_utils.validators import tenant_account
from tests.support.ansible_run import REPO, VENV_BIN, ansible_env, ensure_collection_link, run_playbook

PASSWORDS = {"tenantA": "pw-tenant-a-0123456789", "tenantB": "pw-tenant-b-0123456789"}
SETUP = """
- hosts: localhost
  gather_facts: false
  roles:
    - role: penguinmails.vps.vault_setup
      vars:
        vault_setup_tenants:
          - {tenant_id: tenantA, password: %(tenantA)s}
          - {tenant_id: tenantB, password: %(tenantB)s}
""" % PASSWORDS
SIX = ("vpsIp", "sshUsername", "sshPort", "keyFingerprint", "lastRotated", "nextRotation")


def login(server, user):
    return server.api("POST", "/v1/auth/userpass/login/%s" % user.lower(), {"password": PASSWORDS[user]})["auth"]["client_token"]


def view(server, token, tenant_id, tmp_path, **extra):
    """Run tenant_credentials_info with ``token``; return (result, stdout + stderr)."""
    args = dict({"tenant_id": tenant_id}, **extra)
    play = "- hosts: localhost\n  gather_facts: false\n  tasks:\n    - penguinmails.vps.tenant_credentials_info: %s\n" % json.dumps(args)
    proc = run_playbook(play, env=dict(server.env(token), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json"), tmp_path=tmp_path)
    result = json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    return result, proc.stdout + proc.stderr


def stored(server, tenant_id):
    """(data, version) of the tenant key, read with the root token."""
    body = server.api("GET", "/v1/vps/data/%s/tenant_ssh" % tenant_id)["data"]
    return body["data"], body["metadata"]["version"]


def patch_metadata(server, path, payload, token):
    """PATCH ``path`` as a JSON merge patch (what KV v2 metadata wants); returns the HTTP status."""
    request = urllib.request.Request(server.addr + path, data=json.dumps(payload).encode(), method="PATCH")
    request.add_header("X-Vault-Token", token)
    request.add_header("Content-Type", "application/merge-patch+json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def no_secret(text, *private_keys):
    assert "PRIVATE KEY" not in text
    assert "b3BlbnNzaC1rZXktdjE" not in text  # the base64 of "openssh-key-v1", the body of an OpenSSH private key
    for key in private_keys:
        body = "".join(line for line in key.splitlines() if "-----" not in line)
        assert body[20:80] not in text


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """An OpenBao with the role's policies and logins; tenantA and tenantB with a record and keys written by the automation."""
    from tests.support.openbao import OpenBao

    tmp = tmp_path_factory.mktemp("credentials")
    with OpenBao() as server:
        server.enable_kv()
        proc = run_playbook(SETUP, env=server.env(), tmp_path=tmp)
        assert proc.returncode == 0, proc.stdout[-4000:]
        automation_token = server.create_token(["automation"])
        automation = vc.get_client({"url": server.addr, "token": automation_token})
        for tenant, address in (("tenantA", "192.0.2.10"), ("tenantB", "192.0.2.20")):
            records = tenant_record.RecordStore(automation, tenant)
            records.commit(records.plan("present", {"vps_ip": address, "domain": "%s.example.com" % tenant.lower()}))
            for role in ("admin", "tenant"):
                store = keypair_store.KeypairStore(automation, tenant, role)
                store.commit(store.plan("present", key_type="ed25519"))
        yield server, automation_token, automation


def test_a_tenant_sees_its_six_fields_and_nothing_secret(setup, tmp_path):
    server, _unused, _client = setup
    data, version = stored(server, "tenantA")
    result, output = view(server, login(server, "tenantA"), "tenantA", tmp_path)
    assert not result.get("failed"), result
    credentials = result["credentials"]
    assert sorted(credentials) == sorted(SIX)
    assert credentials["keyFingerprint"] == data["fingerprint"] == ssh_keys.fingerprint(data["public_key"])
    assert credentials["vpsIp"] == "192.0.2.10"
    assert credentials["sshUsername"] == tenant_account("tenantA") == "tenant-tenanta"
    assert credentials["sshPort"] == 22
    assert credentials["lastRotated"] == data["last_rotated"]
    assert credentials["nextRotation"] == keypair_store.next_rotation(data, "tenantA", "tenant")
    assert (result["source"], result["stale"], result["key_version"], result["state"]) == ("metadata", False, version, "active")
    assert result["viewer"] == "tenant"
    no_secret(output, data["private_key"])
    # The operator's view is the same.
    admin, output = view(server, server.token, "tenantA", tmp_path, ssh_port=2222)
    assert dict(admin["credentials"], sshPort=22) == credentials and admin["credentials"]["sshPort"] == 2222
    assert (admin["source"], admin["viewer"]) == ("metadata", "operator")
    no_secret(output, data["private_key"])


def test_another_tenants_login_is_refused(setup, tmp_path):
    server, _unused, _client = setup
    for token, other in ((login(server, "tenantA"), "tenantB"), (login(server, "tenantB"), "tenantA"), (login(server, "tenantB"), "TenantA")):
        result, output = view(server, token, other, tmp_path)
        assert result.get("failed") and "credentials" not in result, result
        assert "permission denied" in result["msg"].lower() or "refused" in result["msg"].lower(), result["msg"]
        assert "192.0.2." not in output and stored(server, other.replace("TenantA", "tenantA"))[0]["fingerprint"] not in output


def test_viewing_leaves_the_one_time_download_untouched(setup, tmp_path):
    server, _unused, automation = setup
    before, before_version = stored(server, "tenantB")
    assert "downloaded_at" not in before
    for token in (login(server, "tenantB"), server.token):
        result, _output = view(server, token, "tenantB", tmp_path)
        assert not result.get("failed"), result
    after, after_version = stored(server, "tenantB")
    assert (after, after_version) == (before, before_version)
    # The download itself marks the key (a new version), and the view follows it without becoming stale.
    store = keypair_store.KeypairStore(automation, "tenantB", "tenant")
    data, version = store.plan_download()
    store.claim_download(data, version)
    downloaded, downloaded_version = stored(server, "tenantB")
    result, _output = view(server, login(server, "tenantB"), "tenantB", tmp_path)
    assert (result["stale"], result["key_version"]) == (False, downloaded_version)
    assert stored(server, "tenantB") == (downloaded, downloaded_version)


def test_rotation_revocation_and_a_new_address_are_published(setup, tmp_path):
    server, _unused, automation = setup
    store = keypair_store.KeypairStore(automation, "tenantA", "tenant")
    store.commit(store.plan("rotated", force=True))
    records = tenant_record.RecordStore(automation, "tenantA")
    records.commit(records.plan("present", {"vps_ip": "192.0.2.11"}))
    data, version = stored(server, "tenantA")
    result, _output = view(server, login(server, "tenantA"), "tenantA", tmp_path)
    assert result["credentials"]["keyFingerprint"] == data["fingerprint"] and result["key_version"] == version
    assert result["credentials"]["vpsIp"] == "192.0.2.11" and result["stale"] is False
    store.commit(store.plan("revoked"))
    result, _output = view(server, login(server, "tenantA"), "tenantA", tmp_path)
    assert result["state"] == "revoked" and result["credentials"]["nextRotation"] is None
    store.commit(store.plan("regenerated"))
    data, version = stored(server, "tenantA")
    result, _output = view(server, login(server, "tenantA"), "tenantA", tmp_path)
    assert (result["state"], result["credentials"]["keyFingerprint"], result["key_version"]) == ("active", data["fingerprint"], version)


def test_a_view_behind_the_secret_is_stale_for_the_tenant_and_read_from_the_secret_by_an_operator(setup, tmp_path):
    server, _unused, automation = setup
    data, version = stored(server, "tenantB")
    pair = ssh_keys.generate_keypair("ed25519")
    newer = dict(data, public_key=pair.public_key, fingerprint=pair.fingerprint, private_key=pair.private_key)
    # Written straight to Vault, as a release before the view would: nothing is published.
    server.api("POST", "/v1/vps/data/tenantB/tenant_ssh", {"data": newer, "options": {"cas": version}})
    tenant, output = view(server, login(server, "tenantB"), "tenantB", tmp_path)
    assert tenant["stale"] is True and tenant["credentials"]["keyFingerprint"] == data["fingerprint"]
    assert "older key version" in output
    operator, output = view(server, server.token, "tenantB", tmp_path)
    assert (operator["source"], operator["stale"], operator["credentials"]["keyFingerprint"]) == ("secret", False, pair.fingerprint)
    no_secret(output, pair.private_key, data["private_key"])
    # The next write of the key publishes it again.
    store = keypair_store.KeypairStore(automation, "tenantB", "tenant")
    store.commit(store.plan("rotated", force=True))
    tenant, _output = view(server, login(server, "tenantB"), "tenantB", tmp_path)
    assert (tenant["stale"], tenant["credentials"]["keyFingerprint"]) == (False, stored(server, "tenantB")[0]["fingerprint"])


def test_the_automation_may_patch_custom_metadata_and_nothing_else(setup):
    server, automation_token, _client = setup
    for payload in ({"max_versions": 1}, {"delete_version_after": "1s"}, {"custom_metadata": {"a": "b"}, "max_versions": 1}):
        assert patch_metadata(server, "/v1/vps/metadata/tenantA/tenant_ssh", payload, automation_token) == 403, payload
    assert patch_metadata(server, "/v1/vps/metadata/tenantA/tenant_ssh", {"custom_metadata": {"probe": "1"}}, automation_token) == 204
    assert server.request("POST", "/v1/vps/metadata/tenantA/tenant_ssh", {"max_versions": 1}, token=automation_token)[0] == 403
    assert patch_metadata(server, "/v1/smtp/metadata/tenantA/admin", {"custom_metadata": {"a": "b"}}, automation_token) == 403
    # A tenant patches nothing, not even its own key's metadata.
    assert patch_metadata(server, "/v1/vps/metadata/tenantA/tenant_ssh", {"custom_metadata": {"fingerprint": "x"}},
                          login(server, "tenantA")) == 403
    assert server.api("GET", "/v1/vps/metadata/tenantA/tenant_ssh")["data"]["max_versions"] != 1


def test_the_playbook_prints_the_six_fields_and_audits_the_view(setup, tmp_path):
    server, _unused, _client = setup
    ensure_collection_link()
    data, _version = stored(server, "tenantB")
    audit_file = str(tmp_path / "audit.jsonl")
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n" % os.path.join(VENV_BIN, "python"))

    def run(token, tenant_id):
        env = dict(server.env(token), PENGUINMAILS_AUDIT_FILE=audit_file, ANSIBLE_CALLBACKS_ENABLED="penguinmails.vps.audit")
        cmd = [os.path.join(VENV_BIN, "ansible-playbook"), "-i", str(inventory), "penguinmails.vps.credentials", "-e", "tenant_id=%s" % tenant_id]
        return subprocess.run(cmd, env=ansible_env(env), capture_output=True, text=True, timeout=300, cwd=REPO, check=False)

    proc = run(login(server, "tenantB"), "tenantB")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    for field in SIX:
        assert "%s: " % field in proc.stdout
    assert "keyFingerprint: %s" % data["fingerprint"] in proc.stdout and "sshUsername: tenant-tenantb" in proc.stdout
    no_secret(proc.stdout + proc.stderr, data["private_key"])
    refused = run(login(server, "tenantA"), "tenantB")
    assert refused.returncode != 0 and data["fingerprint"] not in refused.stdout
    with open(audit_file) as handle:
        events = [json.loads(line) for line in handle if line.strip()]
    views = [event for event in events if event.get("action") == "ssh_credentials_viewed"]
    assert [event.get("status") for event in views] == ["success", "failure"], views
    assert all(event.get("tenantId", event.get("tenant_id")) == "tenantB" for event in views)
    assert views[0]["details"].get("fingerprint", data["fingerprint"]) == data["fingerprint"]
