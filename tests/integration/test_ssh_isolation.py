# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tenants on a shared lab host never share an account, never block each other, and bad input changes nothing.

Each test reproduces a problem that was seen (issue "SSH keys that cannot lock anyone out or cross tenants")
through the public playbooks, with sshd deciding which key logs in where.
"""
from __future__ import annotations

import json
import uuid

import pytest

from ansible_collections.penguinmails.vps.plugins.module_utils import keypair_store, ssh_keys
from ansible_collections.penguinmails.vps.plugins.module_utils import vault_client as vc
from tests.support.agents import wait_agents_gone
from tests.support.ssh_env import Env, tenant_user


@pytest.fixture()
def shared_host(lab):
    host = lab.create_host("shr%s" % uuid.uuid4().hex[:6])
    yield host
    lab.destroy_host(host["name"])


def tenants_on(lab, host, tmp_path, names, mount="vps"):
    envs = []
    for name in names:
        env = Env(lab, host, name, tmp_path, mount=mount)
        env.client.write(mount, "%s/record" % name, {"vps_ip": host["ip"]}, cas=0)
        envs.append(env)
    return envs


def private_mount(lab):
    """A KV mount of the test's own, so that rotate_all sees only the test's tenants."""
    mount = "vpsiso%s" % uuid.uuid4().hex[:6]
    client = vc.get_client({"url": lab["vault"]["addr"], "token": lab["vault"]["token"]})
    client.hvac.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
    return mount


def snapshot(env, host_files):
    """Vault versions of the tenant's secrets and the contents of ``host_files`` on its host."""
    versions = {}
    for path in ("admin_ssh", "tenant_ssh", "record"):
        secret = env.client.read_or_none("vps", "%s/%s" % (env.tenant_id, path))
        versions[path] = secret.version if secret else None
    files = {}
    for path in host_files:
        result = env.lab.host_exec(env.host["name"], ["cat", path])
        files[path] = result.stdout if result.returncode == 0 else None
    return versions, files


def test_tenants_sharing_an_8_character_prefix_get_their_own_accounts(lab, shared_host, tmp_path):
    """Seen: the account was tenant-<first 8 characters>, shared by two tenants whose ids share them."""
    prefix = "shared%s" % uuid.uuid4().hex[:2]
    first, second = tenants_on(lab, shared_host, tmp_path, ["%s-alpha" % prefix, "%s-beta-%s" % (prefix, "x" * 30)])
    for env in (first, second):
        env.play("rotate", tenant_id=env.tenant_id, key_type="ed25519")
    assert tenant_user(first.tenant_id) != tenant_user(second.tenant_id)
    assert len(tenant_user(second.tenant_id)) <= 32
    keys = {env.tenant_id: env.secret("tenant").data["private_key"] for env in (first, second)}
    for env in (first, second):
        other = second if env is first else first
        assert env.can_login(keys[env.tenant_id], "tenant")
        assert not env.can_login(keys[other.tenant_id], "tenant")  # the neighbour's key does not open this account
        gecos = lab.host_exec(shared_host["name"], ["getent", "passwd", tenant_user(env.tenant_id)]).stdout.split(":")[4]
        assert gecos == "penguinmails tenant %s" % env.tenant_id
    # Both admin keys open root (it is the same VPS), each from its own record.
    for env in (first, second):
        assert env.can_login(env.secret("admin").data["private_key"], "admin")


def test_an_account_of_another_tenant_is_refused_and_the_neighbour_is_still_done(lab, shared_host, tmp_path):
    """Seen: one bad tenant stopped the other tenants of its host ("Stop this host"), on every rerun."""
    mount = private_mount(lab)
    good, bad = tenants_on(lab, shared_host, tmp_path, ["good%s" % uuid.uuid4().hex[:6], "bad%s" % uuid.uuid4().hex[:6]], mount)
    # The bad tenant's account name is taken by an account of somebody else.
    lab.host_exec(shared_host["name"], ["useradd", "-m", "-c", "penguinmails tenant intruder", tenant_user(bad.tenant_id)], check=True)
    runner = Env(lab, shared_host, good.tenant_id, tmp_path, mount=mount)
    for env in (good, bad):
        for role in ("admin", "tenant"):
            pair = ssh_keys.generate_keypair("ed25519", comment="seed")
            env.client.write(mount, "%s/%s_ssh" % (env.tenant_id, role), keypair_store.record_created(pair, keypair_store.utcnow(), 90),
                             cas=0)
    result = runner.play("rotate_all", expect_rc=2)
    assert "account %s belongs to 'penguinmails tenant intruder', not to tenant %s" % (tenant_user(bad.tenant_id), bad.tenant_id) \
        in result.stdout
    assert '"failed=1"' in result.stdout
    # The neighbour on the same host was installed, verified and confirmed.
    good_tenant = good.secret("tenant").data
    assert keypair_store.is_confirmed(good_tenant) and good.can_login(good_tenant["private_key"], "tenant")
    assert good.can_login(good.secret("admin").data["private_key"], "admin")
    # The same on a rerun: the bad record never blocks its neighbour.
    before = good.secret("tenant").data["fingerprint"]
    runner.play("rotate_all", expect_rc=2, force=True, ssh_role="tenant")
    after = good.secret("tenant").data
    assert after["fingerprint"] != before and keypair_store.is_confirmed(after) and good.can_login(after["private_key"], "tenant")
    failures = [e for e in runner.audit_events() if e["status"] == "failure" and e["tenantId"] == bad.tenant_id]
    assert failures and failures[0]["details"]["stage"] == "host"


def test_the_legacy_shared_account_loses_the_tenant_key(lab, shared_host, tmp_path):
    (env,) = tenants_on(lab, shared_host, tmp_path, ["legacy%s" % uuid.uuid4().hex[:10]])
    legacy = "tenant-%s" % env.tenant_id[:8]
    env.play("rotate", tenant_id=env.tenant_id, key_type="ed25519")
    old = env.secret("tenant").data["public_key"]
    lab.host_exec(shared_host["name"], ["useradd", "-m", legacy], check=True)
    lab.host_exec(shared_host["name"], ["sh", "-c", "mkdir -p /home/%s/.ssh && echo '%s penguinmails:%s:tenant' > /home/%s/.ssh/authorized_keys"
                                        % (legacy, " ".join(old.split()[:2]), env.tenant_id, legacy)], check=True)
    env.play("rotate", tenant_id=env.tenant_id, force=True, ssh_role="tenant")
    left = lab.host_exec(shared_host["name"], ["cat", "/home/%s/.ssh/authorized_keys" % legacy]).stdout
    assert old.split()[1] not in left and "penguinmails:%s:tenant" % env.tenant_id not in left


@pytest.mark.parametrize("extra,rule", [
    ({"grace_hours": "abc"}, "grace_hours must be a whole number, not 'abc'"),
    ({"grace_hours": "-1"}, "grace_hours must be at least 0"),
    ({"rotation_days": "ninety"}, "rotation_days must be a whole number"),
    ({"ssh_role": "root"}, "ssh_role must be one of admin, tenant, both"),
    ({"tenant_id": "{tenant}\n"}, "whitespace or control characters are not allowed"),
    ({"tenant_id": "../{tenant}"}, "path traversal"),
    ({"tenant_id": ""}, "set -e tenant_id=<id>, or -e all_tenants=true"),
])
def test_bad_input_gets_one_line_and_changes_nothing(lab, shared_host, tmp_path, extra, rule):
    """Seen: grace_hours=abc became 0 (old keys removed at once); ids with a trailing newline passed."""
    (env,) = tenants_on(lab, shared_host, tmp_path, ["input%s" % uuid.uuid4().hex[:6]])
    env.play("rotate", tenant_id=env.tenant_id, key_type="ed25519")
    files = ["/root/.ssh/authorized_keys", "/home/%s/.ssh/authorized_keys" % tenant_user(env.tenant_id)]
    before = snapshot(env, files)
    values = dict(tenant_id=env.tenant_id, force=True)
    values.update({k: v.format(tenant=env.tenant_id) for k, v in extra.items()})
    result = env.play("rotate", expect_rc=2, **values)
    errors = [line for line in result.stdout.splitlines() if '"msg":' in line]
    assert len(errors) == 1 and rule in errors[0], result.stdout[-3000:]
    assert "One or more" not in result.stdout and "must match" not in errors[0].split(rule)[0]
    assert snapshot(env, files) == before


def test_download_of_the_admin_key_is_refused_unless_allowed_and_audited_critical(lab, shared_host, tmp_path):
    """Seen: download_key -e ssh_role=admin handed out the root key."""
    (env,) = tenants_on(lab, shared_host, tmp_path, ["dladm%s" % uuid.uuid4().hex[:6]])
    env.play("rotate", tenant_id=env.tenant_id, key_type="ed25519")
    before = env.secret("admin").version
    refused = env.play("download_key", expect_rc=2, tenant_id=env.tenant_id, ssh_role="admin", output="file",
                       dest=str(tmp_path / "root.key"))
    assert "not handed out unless -e allow_admin_key_download=true" in refused.stdout
    assert not (tmp_path / "root.key").exists() and env.secret("admin").version == before
    allowed = env.play("download_key", tenant_id=env.tenant_id, ssh_role="admin", allow_admin_key_download=True,
                       dest=str(tmp_path / "root.token"))
    assert "ssh -i root.key root@%s -p 22" % shared_host["ip"] in allowed.stdout
    token = (tmp_path / "root.token").read_text().strip()
    assert env.can_login(env.client.unwrap(token)["private_key"], "admin")
    events = [e for e in env.audit_events() if e["action"] == "ssh_key_download" and e["details"]["role"] == "admin"]
    assert [(e["status"], e["severity"]) for e in events] == [("success", "critical")]


def test_an_unreachable_host_fails_its_tenant_and_leaves_no_key_behind(lab, tmp_path):
    """Seen: a run stopped by an unreachable host left the tenant's root key in pm-verify-*/admin."""
    host = lab.create_host("gone%s" % uuid.uuid4().hex[:5])
    (env,) = tenants_on(lab, host, tmp_path, ["gone%s" % uuid.uuid4().hex[:6]])
    env.play("rotate", tenant_id=env.tenant_id, key_type="ed25519")
    confirmed = env.secret("admin").data
    lab.destroy_host(host["name"])
    result = env.play("rotate", expect_rc=2, tenant_id=env.tenant_id, force=True)
    assert env.tenant_id in result.stdout and "tenant(s) failed" in result.stdout
    data = env.secret("admin").data
    assert data["fallback_private_key"] == confirmed["private_key"]  # the key the host has stays in the record
    # The run's ssh-agent (the only place its keys were) goes with the run; no key file was ever written.
    wait_agents_gone(env.last_pid)
    events = [e for e in env.audit_events() if e["status"] == "failure" and e["tenantId"] == env.tenant_id]
    assert events, json.dumps(env.audit_events())[-2000:]
