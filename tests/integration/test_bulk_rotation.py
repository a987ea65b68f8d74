# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""vault_ssh_bulk_rotate against a real OpenBao, and a real 3-node raft cluster losing its leader."""
from __future__ import annotations

import json
import re
import threading


from ansible_collections.penguinmails.vps.plugins.module_utils import bulk_rotation, keypair_store, ssh_keys
from ansible_collections.penguinmails.vps.plugins.module_utils import vault_client as vc
from tests.support.ansible_run import run_playbook
from tests.support.openbao_cluster import OpenBaoCluster

OLD = "2020-01-01T00:00:00Z"

PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Bulk rotation
      penguinmails.vps.vault_ssh_bulk_rotate: {args}
      register: bulk
      ignore_errors: true
    - name: Result
      ansible.builtin.debug:
        msg: "RESULT={{{{ bulk | to_json }}}}"
"""


def seed(client, tenants, last_rotated=OLD, roles=("admin", "tenant"), mount="vps"):
    """Give every tenant a key pair whose last rotation was long ago (due)."""
    for tenant in tenants:
        for role in roles:
            pair = ssh_keys.generate_keypair("ed25519", comment="seed")
            record = keypair_store.record_created(pair, keypair_store.utcnow(), 90)
            record["last_rotated"] = last_rotated
            path = "%s/%s_ssh" % (tenant, role)
            client.write(mount, path, record, cas=0)


def run_bulk(server, args, extra_args=()):
    result = run_playbook(PLAY.format(args=json.dumps(args)), env=server.env(), args=extra_args)
    assert "Traceback" not in result.stdout + result.stderr
    assert "PRIVATE KEY" not in result.stdout + result.stderr
    match = re.search(r"RESULT=(\{.*\})\"", result.stdout)
    assert match, result.stdout
    return json.loads(match.group(1).replace('\\"', '"'))


def test_rotates_only_due_keys_and_keeps_grace_and_history(private_vault):
    client = vc.get_client({"url": private_vault.addr, "token": private_vault.token})
    mount = private_vault.vps  # this test's own KV mount on the session OpenBao
    seed(client, ["b1", "b2", "b3"], mount=mount)
    seed(client, ["fresh"], last_rotated=keypair_store.format_time(keypair_store.utcnow()), mount=mount)
    before = {t: client.read(mount, "%s/admin_ssh" % t).data for t in ("b1", "b2", "b3", "fresh")}

    checked = run_bulk(private_vault, {"key_type": "ed25519", "mount": mount})
    assert checked["rotated_count"] == 6 and checked["failures_count"] == 0 and checked["changed"] is True
    assert {(s["tenant_id"], s["reason"]) for s in checked["skipped"]} == {("fresh", "not due")}
    for tenant in ("b1", "b2", "b3"):
        secret = client.read(mount, "%s/admin_ssh" % tenant)
        assert secret.version == 2
        assert secret.data["grace_public_key"] == before[tenant]["public_key"]
        assert secret.data["public_key"] != before[tenant]["public_key"]
        assert ssh_keys.fingerprint(secret.data["public_key"]) == secret.data["fingerprint"]
        # Nothing lost: the previous key is still in the KV history.
        assert client.read(mount, "%s/admin_ssh" % tenant, version=1).data["private_key"] == before[tenant]["private_key"]
    assert client.read(mount, "fresh/admin_ssh").version == 1

    again = run_bulk(private_vault, {"key_type": "ed25519", "mount": mount})
    assert again["rotated_count"] == 0 and again["changed"] is False


def test_check_mode_writes_nothing(private_vault):
    client = vc.get_client({"url": private_vault.addr, "token": private_vault.token})
    mount = private_vault.vps  # this test's own KV mount on the session OpenBao
    seed(client, ["c1", "c2"], roles=("admin",), mount=mount)
    result = run_bulk(private_vault, {"key_type": "ed25519", "roles": ["admin"], "mount": mount}, extra_args=["--check"])
    assert client.read(mount, "c1/admin_ssh").version == 1 and client.read(mount, "c2/admin_ssh").version == 1
    assert sorted(item["tenant_id"] for item in result["would_rotate"]) == ["c1", "c2"]
    assert result["changed"] is True and result["rotated_count"] == 0


def test_a_concurrent_writer_fails_one_tenant_only(private_vault):
    """The check-and-set write loses for the tenant changed behind our back; the others rotate."""
    client = vc.get_client({"url": private_vault.addr, "token": private_vault.token})
    mount = private_vault.vps  # this test's own KV mount on the session OpenBao
    seed(client, ["d1", "d2", "d3"], roles=("admin",), mount=mount)
    original_read = keypair_store.KeypairStore.read

    def read_then_race(store):
        data, version = original_read(store)
        if store.tenant_id == "d2":
            # Another rotation lands between our read and our write.
            client.write(mount, "d2/admin_ssh", dict(data, note="other writer"), cas=version)
        return data, version

    keypair_store.KeypairStore.read = read_then_race
    try:
        result = bulk_rotation.rotate_many(client, ["d1", "d2", "d3"], roles=["admin"], key_type="ed25519", workers=2,
                                           mount=mount)
    finally:
        keypair_store.KeypairStore.read = original_read
    assert [r["tenant_id"] for r in result["rotated"]] == ["d1", "d3"]
    assert len(result["failures"]) == 1 and result["failures"][0]["tenant_id"] == "d2"
    assert "check-and-set conflict on write of %s/d2/admin_ssh" % mount in result["failures"][0]["error"]
    assert client.read(mount, "d2/admin_ssh").data["note"] == "other writer"


def test_invalid_tenant_is_refused_before_anything(private_vault):
    client = vc.get_client({"url": private_vault.addr, "token": private_vault.token})
    mount = private_vault.vps  # this test's own KV mount on the session OpenBao
    seed(client, ["e1"], roles=("admin",), mount=mount)
    result = run_playbook(PLAY.format(args=json.dumps({"tenants": ["e1", "../x"], "mount": mount})), env=private_vault.env())
    assert "invalid tenant id '../x'" in result.stdout
    assert client.read(mount, "e1/admin_ssh").version == 1


def test_leader_killed_during_bulk_rotation_loses_no_key():
    """3-node raft cluster; the leader dies mid-run; the client follows the new leader."""
    with OpenBaoCluster() as cluster:
        cluster.enable_kv("vps")
        options = {"url": ",".join(cluster.addrs), "token": cluster.token, "retries": 10, "timeout": 5}
        client = vc.get_client(options)
        tenants = ["h%02d" % i for i in range(24)]
        seed(client, tenants, roles=("admin",))
        before = {t: client.read("vps", "%s/admin_ssh" % t).data for t in tenants}
        leader = cluster.leader_node()

        written = []
        original_write = client.write

        def write_and_count(*args, **kwargs):
            version = original_write(*args, **kwargs)
            written.append(version)
            if len(written) == 6:
                # Kill the leader while the rest of the rotation is still in flight.
                threading.Thread(target=leader.kill).start()
            return version

        client.write = write_and_count
        result = bulk_rotation.rotate_many(client, tenants, roles=["admin"], key_type="ed25519", workers=2)
        client.write = original_write
        assert not leader.alive()

        # Either rotated or failed clearly; never silently lost.
        assert len(result["rotated"]) + len(result["failures"]) == len(tenants)
        for failure in result["failures"]:
            assert failure["error"] and "PRIVATE KEY" not in failure["error"]
        survivor = vc.get_client(dict(options, url=",".join(n.addr for n in cluster.nodes if n.alive())))
        # A barrier: the new leader serves reads from its state machine, which may still be applying the
        # entries committed before the failover; a write of its own returns once everything before it applied.
        survivor.write("vps", "barrier/after-failover", {"at": "verification"})
        rotated = {r["tenant_id"]: r for r in result["rotated"]}
        for tenant in tenants:
            secret = survivor.read("vps", "%s/admin_ssh" % tenant)
            # The stored private key always matches the stored public key: a usable key.
            assert ssh_keys.public_key_from_private(secret.data["private_key"]).split()[:2] == secret.data["public_key"].split()[:2]
            if tenant in rotated:
                assert secret.data["fingerprint"] == rotated[tenant]["fingerprint"]
                assert secret.data["grace_public_key"] == before[tenant]["public_key"]
                # The key the host has (the old one) stays in the current version until the host confirms the new one.
                assert secret.data["fallback_private_key"] == before[tenant]["private_key"]
            else:
                assert secret.data["public_key"] == before[tenant]["public_key"]
            assert survivor.read("vps", "%s/admin_ssh" % tenant, version=1).data == before[tenant]
        assert len(result["rotated"]) >= 6
