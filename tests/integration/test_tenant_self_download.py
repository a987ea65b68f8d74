# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tenant self-service download (issue 21): after a rotation the tenant takes its key ALONE, with its own Vault login.

The lab's OpenBao gets the role's own tenant policy (roles/vault_setup/templates/tenant.hcl.j2, rendered under a name
of this test's own) and userpass logins made by vault_tenant_login's code; the tenant then runs the shipped playbook
penguinmails.vps.tenant_download_key with no operator token in its environment, and sshd on a lab host decides
whether the key it got logs in. Vault, not the playbook, makes the download single-use: a second attempt, an attempt
after someone else unwrapped the token, and another tenant's login are all refused, audited and alerted.
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import uuid

import jinja2
import pytest

from ansible_collections.penguinmails.vps.plugins.module_utils import ssh_keys, tenant_download, tenant_login
from ansible_collections.penguinmails.vps.plugins.module_utils import vault_client as vc
from tests.support.ansible_run import REPO, VENV_BIN, ansible_env, ensure_collection_link
from tests.support.receivers import Webhook
from tests.support.ssh_env import Env, new_tenant, tenant_user

TEMPLATE = os.path.join(REPO, "roles", "vault_setup", "templates", "tenant.hcl.j2")


def tenant_policy():
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["bool"] = bool
    with open(TEMPLATE) as handle:
        return env.from_string(handle.read()).render(vault_setup_mounts={"vps": "vps", "smtp": "smtp", "dkim": "dkim"},
                                                     vault_setup_ssh_ca_enabled=False)


@pytest.fixture()
def world(lab, tmp_path):
    """Tenants A (on a lab host) and B, each with its own userpass login bound to the tenant policy."""
    os.chmod(str(tmp_path), 0o700)
    host = lab.create_host("tsd%s" % uuid.uuid4().hex[:6])
    root = vc.get_client({"url": lab["vault"]["addr"], "token": lab["vault"]["token"]})
    suffix = uuid.uuid4().hex[:8]
    policy, mount = "tenant-selfdl-%s" % suffix, "up%s" % suffix
    root.api("PUT", "sys/policies/acl/%s" % policy, {"policy": tenant_policy()})
    root.api("POST", "sys/auth/%s" % mount, {"type": "userpass"})
    a = Env(lab, host, new_tenant("sda"), tmp_path)
    a.client.write("vps", "%s/record" % a.tenant_id, {"vps_ip": host["ip"]}, cas=0)
    b_id = new_tenant("sdb")
    passwords = {}
    logins = tenant_login.TenantLogins(root, mount, "vps")
    for tenant in (a.tenant_id, b_id):
        passwords[tenant] = "pw-" + secrets.token_urlsafe(18)
        plan = logins.plan(tenant, passwords[tenant], policies=(policy,))
        logins.commit(tenant, passwords[tenant], plan)
    with Webhook() as hook:
        yield dict(a=a, b=b_id, host=host, mount=mount, passwords=passwords, hook=hook, root=root, tmp=tmp_path)
    lab.destroy_host(host["name"])


def self_download(world, tenant_id, login_as, dest, expect_rc=0):
    """Run penguinmails.vps.tenant_download_key as the tenant ``login_as``: its password, no operator token."""
    ensure_collection_link()
    a = world["a"]
    inventory = world["tmp"] / "tenant-inventory.ini"
    inventory.write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n" % os.path.join(VENV_BIN, "python"))
    extra = {"tenant_id": tenant_id, "dest": str(dest), "vps_host": world["host"]["ip"], "tenant_login": login_as,
             "tenant_userpass_mount": world["mount"]}
    env = ansible_env(dict(VAULT_ADDR=a.lab["vault"]["addr"], PENGUINMAILS_TENANT_PASSWORD=world["passwords"][login_as],
                           ANSIBLE_CALLBACKS_ENABLED="penguinmails.vps.audit", PENGUINMAILS_AUDIT_FILE=str(a.audit_file),
                           PENGUINMAILS_AUDIT_ALERT_WEBHOOK_URL=world["hook"].url + "/alert"))
    assert "VAULT_TOKEN" not in env
    proc = subprocess.run([os.path.join(VENV_BIN, "ansible-playbook"), "-i", str(inventory), "penguinmails.vps.tenant_download_key",
                           "-e", json.dumps(extra)], env=env, cwd=str(world["tmp"]), capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == expect_rc, out[-6000:]
    assert "Traceback" not in out, out[-6000:]
    assert world["passwords"][login_as] not in out
    return out


def offer_of(world):
    a = world["a"]
    return a.client.read("vps", "%s/tenant_ssh_download" % a.tenant_id).data


def downloads(world):
    return [(e["status"], e["severity"], e["details"].get("reason")) for e in world["a"].audit_events()
            if e["action"] == "ssh_key_download" and e["details"].get("source") == "self_service"]


def alerts(world):
    return [(e["action"], e["status"], e["details"].get("reason")) for e in world["hook"].events("/alert")
            if e["action"] == "ssh_key_download" and e["details"].get("source") == "self_service"]


def test_the_tenant_downloads_its_rotated_key_alone_once(world):
    a = world["a"]
    a.play("rotate", tenant_id=a.tenant_id, key_type="ed25519")
    a.play("rotate", tenant_id=a.tenant_id, key_type="ed25519", ssh_role="tenant", force=True)
    key = a.secret("tenant").data
    offer = offer_of(world)
    assert offer["state"] == "offered" and offer["fingerprint"] == key["fingerprint"] and offer["token"]
    assert a.client.read("vps", "%s/tenant_ssh" % a.tenant_id, version=offer["key_version"]).data["private_key"] == key["private_key"]
    # Valid for the grace period (24 h), as Vault itself says of the token.
    looked = a.client.api("POST", "sys/wrapping/lookup", {"token": offer["token"]})["data"]
    assert looked["creation_path"] == "vps/data/%s/tenant_ssh" % a.tenant_id and looked["creation_ttl"] == 24 * 3600

    # Another tenant's own login cannot take it (its policy does not even let it read the offer) ...
    stolen = world["tmp"] / "stolen.key"
    out = self_download(world, a.tenant_id, world["b"], stolen, expect_rc=2)
    assert "may not read the key download of tenant %s" % a.tenant_id in out and not stolen.exists()
    b_token = a.client.api("POST", "auth/%s/login/%s" % (world["mount"], world["b"].lower()),
                           {"password": world["passwords"][world["b"]]})["auth"]["client_token"]
    b_client = vc.VaultClient(dict(a.client.settings, auth_method="token", token=b_token))
    b_client.login()
    with pytest.raises(vc.VaultPermissionDenied):
        b_client.read("vps", "%s/tenant_ssh_download" % a.tenant_id)
    with pytest.raises(vc.VaultPermissionDenied):
        b_client.read("vps", "%s/tenant_ssh" % a.tenant_id)
    assert offer_of(world)["state"] == "offered"  # ... and its attempt used nothing up

    # The tenant, with its own login and nothing else: the key is written 0600, logs in, and is never printed.
    dest = world["tmp"] / "mine" / ("%s.key" % tenant_user(a.tenant_id))
    dest.parent.mkdir(mode=0o700)
    out = self_download(world, a.tenant_id, a.tenant_id, dest)
    assert oct(os.stat(dest).st_mode & 0o777) == "0o600"
    private = dest.read_text()
    assert ssh_keys.fingerprint(ssh_keys.public_key_from_private(private)) == key["fingerprint"]
    assert a.can_login(private, "tenant")
    assert private.splitlines()[1] not in out and offer["token"] not in out
    assert "ssh -i %s %s@%s -p 22" % (dest, tenant_user(a.tenant_id), world["host"]["ip"]) in out
    recorded = offer_of(world)
    assert recorded["state"] == "downloaded" and recorded["downloaded_at"] and recorded["downloaded_by"] == "tenant"
    assert "token" not in recorded
    # The tenant still cannot read its key directly, in any version.
    a_token = a.client.api("POST", "auth/%s/login/%s" % (world["mount"], a.tenant_id.lower()),
                           {"password": world["passwords"][a.tenant_id]})["auth"]["client_token"]
    a_client = vc.VaultClient(dict(a.client.settings, auth_method="token", token=a_token))
    a_client.login()
    for version in (None, offer["key_version"]):
        with pytest.raises(vc.VaultPermissionDenied):
            a_client.read("vps", "%s/tenant_ssh" % a.tenant_id, version=version)

    # A second attempt is refused by the record, and the token itself is spent in Vault: unwrapping it again fails.
    again = world["tmp"] / "again.key"
    out = self_download(world, a.tenant_id, a.tenant_id, again, expect_rc=2)
    assert "was already downloaded at %s" % recorded["downloaded_at"] in out and "regenerate" in out
    assert not again.exists()
    with pytest.raises(vc.VaultError):
        a_client.unwrap(offer["token"])
    # Nor can the operator hand the same key out again.
    refused = a.play("download_key", expect_rc=2, tenant_id=a.tenant_id, output="file", dest=str(world["tmp"] / "op.key"))
    assert "already downloaded this key itself" in refused.stdout

    assert downloads(world) == [("failure", "critical", "denied"), ("success", "info", None),
                                ("failure", "critical", "already_downloaded")]
    assert alerts(world) == [("ssh_key_download", "failure", "denied"), ("ssh_key_download", "failure", "already_downloaded")]
    success = [e for e in a.audit_events() if e["action"] == "ssh_key_download" and e["status"] == "success"
               and e["details"].get("source") == "self_service"]
    assert success[0]["tenantId"] == a.tenant_id and success[0]["userId"] == "%s-%s" % (world["mount"], a.tenant_id.lower())


def test_a_token_someone_else_unwrapped_is_refused_and_alerted(world):
    a = world["a"]
    a.play("rotate", tenant_id=a.tenant_id, key_type="ed25519")
    a.play("regenerate", tenant_id=a.tenant_id, key_type="ed25519")
    offer = offer_of(world)
    assert offer["state"] == "offered" and offer["fingerprint"] == a.secret("tenant").data["fingerprint"]
    # Someone who could read the offer (here: the operator's root token) unwraps it first.
    intercepted = world["root"].unwrap(offer["token"])["data"]
    assert intercepted["fingerprint"] == offer["fingerprint"]

    dest = world["tmp"] / "late.key"
    out = self_download(world, a.tenant_id, a.tenant_id, dest, expect_rc=2)
    assert "no longer valid: someone already used it" in out and "regenerate" in out
    assert not dest.exists()
    assert downloads(world) == [("failure", "critical", "token_used")]
    assert alerts(world) == [("ssh_key_download", "failure", "token_used")]

    # What the operator does then: regenerate. The new key is offered again, and the tenant takes it.
    a.play("regenerate", tenant_id=a.tenant_id, key_type="ed25519", ssh_role="tenant")
    out = self_download(world, a.tenant_id, a.tenant_id, dest)
    assert a.can_login(dest.read_text(), "tenant")
    assert not a.can_login(intercepted["private_key"], "tenant")
    assert downloads(world)[-1] == ("success", "info", None)


def test_the_operator_download_withdraws_the_offer(world):
    a = world["a"]
    a.play("rotate", tenant_id=a.tenant_id, key_type="ed25519")
    assert offer_of(world)["state"] == "offered"
    a.play("download_key", tenant_id=a.tenant_id, output="file", dest=str(world["tmp"] / "op.key"))
    withdrawn = offer_of(world)
    assert withdrawn["state"] == "withdrawn" and withdrawn["downloaded_by"] == "operator" and "token" not in withdrawn
    dest = world["tmp"] / "mine.key"
    out = self_download(world, a.tenant_id, a.tenant_id, dest, expect_rc=2)
    assert "already downloaded" in out and "by the operator" in out and not dest.exists()
    assert downloads(world) == [("failure", "critical", "already_downloaded")]
    assert tenant_download.offer_hours(72) == 72 and tenant_download.offer_hours(0) == 24


def test_a_revocation_withdraws_the_offer(world):
    a = world["a"]
    a.play("rotate", tenant_id=a.tenant_id, key_type="ed25519")
    token = offer_of(world)["token"]
    a.play("revoke", tenant_id=a.tenant_id)
    revoked = offer_of(world)
    assert revoked["state"] == "revoked" and revoked["revoked_at"] and "token" not in revoked
    with pytest.raises(vc.VaultError):
        world["root"].unwrap(token)  # used up by the revocation: the revoked key cannot be taken any more
    dest = world["tmp"] / "revoked.key"
    out = self_download(world, a.tenant_id, a.tenant_id, dest, expect_rc=2)
    assert "was revoked at %s before it was downloaded" % revoked["revoked_at"] in out and not dest.exists()
    assert downloads(world) == [("failure", "critical", "revoked")]
