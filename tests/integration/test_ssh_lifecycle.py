# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The SSH key lifecycle playbooks (rotate, revoke, regenerate, download_key, rotate_all) end to end.

Every test runs the collection's playbooks with ansible-playbook against lab hosts (real sshd in a
network namespace) and the lab's OpenBao. Logins are tried with the OpenSSH client from the
controller, so sshd itself decides which key works (including ``expiry-time``).
"""
from __future__ import annotations

import datetime
import os
import re
import threading
import uuid

import pytest

from ansible_collections.penguinmails.vps.plugins.module_utils import keypair_store, ssh_keys
from ansible_collections.penguinmails.vps.plugins.module_utils import vault_client as vc
from tests.support.ssh_env import OUTPUTS, Env, new_tenant, tenant_user

UTC = datetime.timezone.utc


def _parse(line):
    """(expiry-time or None, key blob) of an authorized_keys line written by authorized_key_rotate."""
    match = re.match(r'^(?:expiry-time="(\d{12}Z)" )?(\S+) (\S+)', line)
    assert match, line
    return match.group(1) or "", match.group(3)


@pytest.fixture(scope="module")
def hosts(lab):
    """Lab hosts made on demand, one per test, destroyed at the end of the module."""
    made = []

    def make(name):
        made.append(name)
        return lab.create_host(name)

    yield make
    for name in made:
        lab.destroy_host(name)


@pytest.fixture()
def tenant_env(lab, hosts, tmp_path, request):
    name = re.sub(r"[^a-z0-9]", "", request.node.name.replace("test_", ""))[:8] or "host"
    host = hosts(name + uuid.uuid4().hex[:3])
    env = Env(lab, host, new_tenant(name[:4]), tmp_path)
    env.client.write("vps", "%s/record" % env.tenant_id, {"vps_ip": host["ip"]}, cas=0)
    return env


def test_rotate_keeps_the_old_key_for_its_grace_and_sshd_enforces_the_expiry(tenant_env):
    t = tenant_env
    t.play("rotate", tenant_id=t.tenant_id, key_type="ed25519")
    first = {role: t.secret(role).data for role in ("admin", "tenant")}
    for role in ("admin", "tenant"):
        assert t.can_login(first[role]["private_key"], role), role
    assert not t.can_login(first["tenant"]["private_key"], "admin")

    rotated = t.play("rotate", tenant_id=t.tenant_id, key_type="ed25519", force=True)
    second = {role: t.secret(role).data for role in ("admin", "tenant")}
    for role in ("admin", "tenant"):
        # The specification's answer: the new fingerprint, and the old key valid for the grace (24 hours).
        assert "rotated %s %s key: new fingerprint %s; Old key valid for 24 hours (until %s)" % (
            t.tenant_id, role, second[role]["fingerprint"], second[role]["grace_until"]) in rotated.stdout, rotated.stdout[-3000:]
        assert second[role]["public_key"] != first[role]["public_key"]
        assert second[role]["grace_public_key"] == first[role]["public_key"]
        assert t.can_login(second[role]["private_key"], role), role   # the new key
        assert t.can_login(first[role]["private_key"], role), role    # the old key, during its grace
        expiry = keypair_store.ssh_expiry_time(keypair_store.parse_time(second[role]["grace_until"]))
        lines = t.authorized_keys(role).splitlines()
        old_line = [line for line in lines if first[role]["public_key"].split()[1] in line]
        assert old_line and old_line[0].startswith('expiry-time="%s"' % expiry), lines
        new_line = [line for line in lines if second[role]["public_key"].split()[1] in line]
        assert new_line and "expiry-time" not in new_line[0]

    # The grace period ends with no job running: sshd refuses the old key by itself.
    past = (datetime.datetime.now(UTC) - datetime.timedelta(minutes=2)).strftime("%Y%m%d%H%MZ")
    path = "/home/%s/.ssh/authorized_keys" % tenant_user(t.tenant_id)
    t.lab.host_exec(t.host["name"], ["sed", "-i", 's/expiry-time="[0-9]*Z"/expiry-time="%s"/' % past, path], check=True)
    assert not t.can_login(first["tenant"]["private_key"], "tenant")
    assert t.can_login(second["tenant"]["private_key"], "tenant")

    events = [e for e in t.audit_events() if e["action"] == "ssh_key_rotated" and e["tenantId"] == t.tenant_id]
    assert {(e["details"]["role"], e["status"]) for e in events} == {("admin", "success"), ("tenant", "success")}
    assert len(events) == 4  # created, then rotated: two roles each time


def test_every_superseded_key_keeps_its_own_grace_however_many_rotations_follow(tenant_env):
    """Issue 20: a second rotation within 24 hours used to drop the key the tenant held before the first one."""
    t = tenant_env
    t.play("rotate", tenant_id=t.tenant_id, key_type="ed25519")
    held = [t.secret("tenant").data]
    for _round in range(2):
        t.play("rotate", tenant_id=t.tenant_id, ssh_role="tenant", force=True)
        held.append(t.secret("tenant").data)
    assert len(set(record["fingerprint"] for record in held)) == 3
    for record in held:  # every key handed out in the last 24 hours still logs in
        assert t.can_login(record["private_key"], "tenant"), record["fingerprint"]
    lines = t.authorized_keys("tenant").splitlines()
    for record in held[:-1]:  # each superseded key with its own expiry-time: 24 hours after it was superseded
        (line,) = [line for line in lines if record["public_key"].split()[1] in line]
        assert line.startswith('expiry-time="'), line
    expiries = sorted(line.split('"')[1] for line in lines if line.startswith('expiry-time="'))
    assert len(expiries) == 2


def test_two_forced_rotations_at_once_keep_the_key_held_before_and_say_who_lost(tenant_env):
    t = tenant_env
    t.play("rotate", tenant_id=t.tenant_id, key_type="ed25519")
    before = t.secret("tenant").data
    results = [None, None]

    def rotate(index):
        results[index] = t.play("rotate", expect_rc=None, tenant_id=t.tenant_id, ssh_role="tenant", force=True)

    threads = [threading.Thread(target=rotate, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=900)
    assert [r.returncode for r in results] == [0, 0], [r.stdout[-3000:] for r in results]
    after = t.secret("tenant").data
    assert t.can_login(before["private_key"], "tenant")  # the key held before the race keeps its grace
    assert t.can_login(after["private_key"], "tenant")
    # A run whose rotation another run overtook says so in one line, naming the key that stands.
    notes = [line for r in results for line in r.stdout.splitlines() if "another run" in line]
    rotated = [r for r in results if "rotated in Vault: tenant" in r.stdout]
    assert len(rotated) in (1, 2) and (len(rotated) == 2 or notes), [r.stdout[-3000:] for r in results]


def test_revoke_removes_the_tenant_key_at_once_and_keeps_admin_access(tenant_env):
    t = tenant_env
    t.play("rotate", tenant_id=t.tenant_id, key_type="ed25519")
    t.play("rotate", tenant_id=t.tenant_id, key_type="ed25519", force=True, ssh_role="tenant")
    tenant = t.secret("tenant").data
    grace_private = t.private_key_of("tenant", tenant["grace_public_key"])
    admin = t.secret("admin").data
    assert t.can_login(tenant["private_key"], "tenant") and t.can_login(grace_private, "tenant")

    # Revoking the admin key replaces it: the old one stops working, root is never left without a key.
    t.play("revoke", tenant_id=t.tenant_id, ssh_role="admin")
    new_admin = t.secret("admin").data
    assert new_admin["state"] == "active" and new_admin["public_key"] != admin["public_key"]
    assert new_admin["installed_fingerprint"] == new_admin["fingerprint"] and "fallback_private_key" not in new_admin
    assert not t.can_login(admin["private_key"], "admin") and t.can_login(new_admin["private_key"], "admin")
    admin = new_admin

    t.play("revoke", tenant_id=t.tenant_id)
    assert not t.can_login(tenant["private_key"], "tenant")   # at once, no grace
    assert not t.can_login(grace_private, "tenant")           # the grace key goes too
    assert t.can_login(admin["private_key"], "admin")
    after = t.secret("tenant")
    assert after.data["state"] == "revoked" and "private_key" not in after.data
    assert t.secret("tenant", after.version - 1).data["private_key"] == tenant["private_key"]  # history kept
    assert tenant["public_key"].split()[1] not in t.authorized_keys("tenant")

    # A rotation does not bring a revoked key back; download refuses it.
    t.play("rotate", tenant_id=t.tenant_id, key_type="ed25519", force=True)
    assert t.secret("tenant").data["state"] == "revoked"
    assert not t.can_login(tenant["private_key"], "tenant")
    refused = t.play("download_key", expect_rc=2, tenant_id=t.tenant_id, output="file", dest=str(t.tmp / "k"))
    assert "is revoked: regenerate it before a download" in refused.stdout
    events = [e for e in t.audit_events() if e["action"] == "ssh_key_revoked"]
    assert [(e["tenantId"], e["details"]["role"], e["status"]) for e in events] == [(t.tenant_id, "tenant", "success")]
    regenerated = [e for e in t.audit_events() if e["action"] == "ssh_key_regenerated"]
    assert [(e["details"]["role"], e["status"]) for e in regenerated] == [("admin", "success")]


def test_regenerate_replaces_the_key_without_grace(tenant_env):
    t = tenant_env
    t.play("rotate", tenant_id=t.tenant_id, key_type="ed25519")
    old = t.secret("tenant").data
    admin = t.secret("admin").data
    t.play("regenerate", tenant_id=t.tenant_id, key_type="ed25519")
    new = t.secret("tenant").data
    assert new["public_key"] != old["public_key"] and "grace_public_key" not in new
    assert t.can_login(new["private_key"], "tenant")
    assert not t.can_login(old["private_key"], "tenant")     # removed at once
    assert old["public_key"].split()[1] not in t.authorized_keys("tenant")
    assert t.secret("admin").data["public_key"] == admin["public_key"] and t.can_login(admin["private_key"], "admin")
    events = [e for e in t.audit_events() if e["action"] == "ssh_key_regenerated"]
    assert [(e["details"]["role"], e["status"]) for e in events] == [("tenant", "success")]


def test_download_once_then_refused_until_regenerate(tenant_env):
    t = tenant_env
    t.play("rotate", tenant_id=t.tenant_id, key_type="ed25519")
    dest = t.tmp / "handover.key"
    result = t.play("download_key", tenant_id=t.tenant_id, output="file", dest=str(dest))
    expected = "ssh -i %s %s@%s -p 22" % (dest, tenant_user(t.tenant_id), t.host["ip"])
    assert expected in result.stdout
    assert "Store this key securely; it will not be shown again." in result.stdout
    assert "chmod 600 %s" % dest in result.stdout
    assert oct(os.stat(dest).st_mode & 0o777) == "0o600"
    assert t.can_login(dest.read_text(), "tenant")
    assert t.secret("tenant").data["downloaded_at"]

    again = t.play("download_key", expect_rc=2, tenant_id=t.tenant_id, output="file", dest=str(t.tmp / "second.key"))
    assert "already downloaded" in again.stdout and "regenerate it to download again" in again.stdout
    assert not (t.tmp / "second.key").exists()
    wrap = t.play("download_key", expect_rc=2, tenant_id=t.tenant_id)
    assert "already downloaded" in wrap.stdout

    t.play("regenerate", tenant_id=t.tenant_id, key_type="ed25519")
    token_file = t.tmp / "token"
    result = t.play("download_key", tenant_id=t.tenant_id, dest=str(token_file))
    assert "ssh -i %s.key %s@%s -p 22" % (tenant_user(t.tenant_id), tenant_user(t.tenant_id), t.host["ip"]) in result.stdout
    token = token_file.read_text().strip()
    assert token and token not in result.stdout
    # The token is a wrapped read of the tenant's secret (the recipient can check where it comes from),
    # valid at most one hour, and it unwraps once.
    lookup = t.client.api("POST", "sys/wrapping/lookup", {"token": token})["data"]
    assert lookup["creation_path"] == "vps/data/%s/tenant_ssh" % t.tenant_id and lookup["creation_ttl"] <= 3600
    unwrapped = t.client.unwrap(token)["data"]
    with pytest.raises(vc.VaultError):
        t.client.unwrap(token)  # single use
    assert t.can_login(unwrapped["private_key"], "tenant")
    assert not t.can_login(dest.read_text(), "tenant")  # the first download's key is gone
    events = [e for e in t.audit_events() if e["action"] == "ssh_key_download"]
    assert [(e["tenantId"], e["details"]["output"], e["status"]) for e in events] == [
        (t.tenant_id, "file", "success"), (t.tenant_id, "file", "failure"), (t.tenant_id, "wrap", "failure"),
        (t.tenant_id, "wrap", "success")]
    assert all("already downloaded" in e["details"]["error"] for e in events if e["status"] == "failure")
    # The file download names the read that handed the key out, as Vault's own audit log has it; a wrapped one has none.
    assert re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", events[0]["details"]["vault_request_id"])
    assert events[3]["details"]["vault_request_id"] is None


def test_two_concurrent_rotations_exactly_one_wins(tenant_env):
    t = tenant_env
    t.play("rotate", tenant_id=t.tenant_id, key_type="ed25519", ssh_role="admin")
    before = t.secret("admin")
    barrier = threading.Barrier(2)
    outcomes = [None, None]

    def rotate(index):
        store = keypair_store.KeypairStore(t.client, t.tenant_id, "admin", mount="vps")
        plan = store.plan("rotated", key_type="ed25519", force=True)
        mine = plan.after["public_key"]
        barrier.wait(timeout=60)  # both planned from the same version before either writes
        store.commit(plan)
        outcomes[index] = (plan.action, mine, plan.message)

    threads = [threading.Thread(target=rotate, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    # One wins; the other adopts the winner's key instead of failing (its own never reaches Vault).
    assert sorted(outcome[0] for outcome in outcomes) == ["none", "rotated"], outcomes
    winner = next(o for o in outcomes if o[0] == "rotated")
    loser = next(o for o in outcomes if o[0] == "none")
    assert "replaced concurrently" in loser[2]
    after = t.secret("admin")
    assert after.version == before.version + 1
    assert after.data["public_key"] == winner[1] != loser[1]
    assert after.data["grace_public_key"] == before.data["public_key"]
    assert after.data["fallback_private_key"] == before.data["private_key"]

    # The playbook then installs what Vault holds: the winner's key, the previous key in its grace.
    t.play("rotate", tenant_id=t.tenant_id, ssh_role="admin")
    assert t.can_login(after.data["private_key"], "admin")
    assert t.can_login(before.data["private_key"], "admin")


def test_rotate_all_rotates_due_tenants_reports_counts_and_resumes(lab, hosts, tmp_path):
    mount = "vpsbulk%s" % uuid.uuid4().hex[:6]
    tenants = []
    for index in range(2):
        host = hosts("bulk%d%s" % (index, uuid.uuid4().hex[:3]))
        tenants.append(Env(lab, host, new_tenant("bk%d" % index), tmp_path, mount=mount))
    client = tenants[0].client
    client.hvac.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
    old = "2020-01-01T00:00:00Z"
    seeded = {}
    for t in tenants:
        client.write(mount, "%s/record" % t.tenant_id, {"vps_ip": t.host["ip"]}, cas=0)
        for role in ("admin", "tenant"):
            pair = ssh_keys.generate_keypair("ed25519", comment="seed")
            record = keypair_store.record_created(pair, keypair_store.utcnow(), 90)
            record.update(created_at=old, last_rotated=old)
            client.write(mount, "%s/%s_ssh" % (t.tenant_id, role), record, cas=0)
            seeded[(t.tenant_id, role)] = pair
    runner = Env(lab, tenants[0].host, tenants[0].tenant_id, tmp_path, mount=mount)
    runner.inventory = lab.inventory(tmp_path, [t.host for t in tenants])

    refused = runner.play("rotate_all", expect_rc=2, secret_type="nope")
    assert "secret_type must be ssh, smtp or dkim" in refused.stdout

    result = runner.play("rotate_all", key_type="ed25519")
    assert '"rotated=4"' in result.stdout and '"failed=0"' in result.stdout and '"hosts_updated=2"' in result.stdout
    for t in tenants:
        for role in ("admin", "tenant"):
            data = t.secret(role).data
            assert data["grace_public_key"] == seeded[(t.tenant_id, role)].public_key
            assert t.can_login(data["private_key"], role)
            assert t.can_login(seeded[(t.tenant_id, role)].private_key, role)  # grace
    again = runner.play("rotate_all", key_type="ed25519")
    assert '"rotated=0"' in again.stdout and '"failed=0"' in again.stdout

    # Rotated in Vault only (no host contact): the fallback key of the current version still logs in, and
    # the next daily run installs and confirms the new keys.
    runner.play("rotate_all", key_type="ed25519", force=True, ssh_role="admin", rotate_vault_only=True)
    for t in tenants:
        data = t.secret("admin").data
        assert not t.can_login(data["private_key"], "admin")
        assert t.can_login(data["fallback_private_key"], "admin")
    resumed = runner.play("rotate_all", key_type="ed25519")
    assert '"rotated=0"' in resumed.stdout and '"hosts_updated=2"' in resumed.stdout
    for t in tenants:
        data = t.secret("admin").data
        assert t.can_login(data["private_key"], "admin") and "fallback_private_key" not in data
        assert t.can_login(t.private_key_of("admin", data["grace_public_key"]), "admin")
    bulk_events = [e for e in runner.audit_events() if e["action"] == "bulk_rotation_completed"]
    assert [e["details"]["rotated_count"] for e in bulk_events] == [4, 0, 2, 0]
    assert all(e["details"]["mode"] == "auto" for e in bulk_events)


def test_no_private_key_in_any_output():
    assert OUTPUTS, "the lifecycle tests ran no playbook"
    for output in OUTPUTS:
        assert "PRIVATE KEY" not in output
