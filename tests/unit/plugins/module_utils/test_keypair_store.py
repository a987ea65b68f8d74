# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lifecycle rules of SSH keys in Vault: pure rules, then the store against a real OpenBao."""
from __future__ import annotations

import datetime
import itertools

import pytest

from ansible_collections.penguinmails.vps.plugins.module_utils import keypair_store as ks
from ansible_collections.penguinmails.vps.plugins.module_utils import ssh_keys
from ansible_collections.penguinmails.vps.plugins.module_utils import vault_client as vc
from ansible_collections.penguinmails.vps.plugins.module_utils.validators import ValidationError

NOW = datetime.datetime(2026, 11, 23, 12, 0, 0, tzinfo=datetime.timezone.utc)
_counter = itertools.count()


def fast_keygen(key_type, bits=None, comment=""):
    # Ed25519 regardless of the request: the lifecycle, not RSA, is under test here.
    return ssh_keys.generate_keypair("ed25519", comment=comment)


def tenant():
    return "ks%04d" % next(_counter)


class Clock:
    def __init__(self, now=NOW):
        self.now = now

    def __call__(self):
        return self.now


def store_for(server, tenant_id, role="tenant", clock=None):
    client = vc.get_client({"url": server.addr, "token": server.token})
    return ks.KeypairStore(client, tenant_id, role, keygen=fast_keygen, clock=clock or Clock())


# -- pure rules ---------------------------------------------------------------------------
def test_times_round_trip_and_expiry_format():
    assert ks.format_time(NOW) == "2026-11-23T12:00:00Z"
    assert ks.parse_time("2026-11-23T12:00:00Z") == NOW
    assert ks.parse_time("2026-11-23T12:00:00") == NOW
    assert ks.parse_time("garbage") is None and ks.parse_time(None) is None
    assert ks.ssh_expiry_time(NOW) == "202611231200Z"
    assert ks.ssh_expiry_time(NOW + datetime.timedelta(seconds=1)) == "202611231201Z"


@pytest.mark.parametrize(
    "fields,days,due",
    [
        ({"last_rotated": "2026-08-25T12:00:00Z"}, 90, True),  # exactly 90 days
        ({"last_rotated": "2026-08-25T12:00:01Z"}, 90, False),
        ({"created_at": "2026-11-01T00:00:00Z"}, 30, False),
        ({"created_at": "2026-10-01T00:00:00Z"}, 30, True),
        ({}, 90, True),
        ({"last_rotated": "not a time"}, 90, True),
    ],
)
def test_is_due(fields, days, due):
    assert ks.is_due(fields, days, NOW) is due


def test_record_rules():
    first = ssh_keys.generate_keypair("ed25519")
    second = ssh_keys.generate_keypair("ed25519")
    created = ks.record_created(first, NOW, 90)
    assert created == {
        "private_key": first.private_key, "public_key": first.public_key, "fingerprint": first.fingerprint,
        "key_type": "ed25519", "created_at": "2026-11-23T12:00:00Z", "last_rotated": "2026-11-23T12:00:00Z",
        "rotation_policy": "90_days", "state": "active",
    }
    later = NOW + datetime.timedelta(days=91)
    rotated = ks.record_rotated(dict(created, downloaded_at="x"), second, later, 90, 24)
    assert rotated["public_key"] == second.public_key and rotated["created_at"] == created["created_at"]
    assert rotated["grace_public_key"] == first.public_key and rotated["grace_fingerprint"] == first.fingerprint
    assert ks.parse_time(rotated["grace_until"]) == later + datetime.timedelta(hours=24)
    assert "downloaded_at" not in rotated
    assert ks.grace_active(rotated, later) and not ks.grace_active(rotated, later + datetime.timedelta(hours=24))
    assert "grace_public_key" not in ks.record_rotated(created, second, later, 90, 0)
    revoked = ks.record_revoked(rotated, later)
    assert revoked["state"] == "revoked" and revoked["public_key"] == second.public_key
    assert not set(revoked) & {"private_key", "grace_public_key", "grace_until"}
    assert ks.revoked_public_keys(rotated) == [second.public_key, first.public_key]
    regen = ks.record_regenerated(rotated, first, later, 30)
    assert "grace_public_key" not in regen and regen["rotation_policy"] == "30_days"
    view = ks.public_view(rotated)
    assert "private_key" not in view and view["fingerprint"] == second.fingerprint
    assert ks.tenant_user("0123456789abcdef") == "tenant-01234567"


def test_bad_input_is_refused_before_any_vault_call():
    with pytest.raises(ValidationError, match="invalid tenant id '../x'"):
        ks.KeypairStore(None, "../x", "tenant")
    with pytest.raises(ValidationError, match="invalid key role 'root'"):
        ks.KeypairStore(None, "t1", "root")
    store = ks.KeypairStore(None, "t1", "admin")  # no client: a Vault call would crash
    for kwargs, message in [
        (dict(state="gone"), "invalid state"),
        (dict(state="rotated", rotation_days=0), "at least 1"),
        (dict(state="rotated", grace_hours=-1), "negative"),
        (dict(state="present", key_type="dsa"), "invalid key_type"),
    ]:
        with pytest.raises(ValidationError, match=message):
            store.plan(**kwargs)


# -- the store against OpenBao -----------------------------------------------------------------
def test_lifecycle_against_openbao(openbao):
    tid = tenant()
    clock = Clock()
    store = store_for(openbao, tid, clock=clock)
    plan = store.plan("present")
    assert plan.action == "created" and plan.cas == 0
    assert store.commit(plan) == 1
    stored = openbao.kv_get("vps", "%s/tenant_ssh" % tid)["data"]
    assert stored["fingerprint"] == ssh_keys.fingerprint(stored["public_key"])
    assert stored["private_key"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert store.plan("present").action == "none"
    # Not due yet, then due, then forced.
    assert store.plan("rotated").message == "not due"
    clock.now = NOW + datetime.timedelta(days=90)
    plan = store.plan("rotated")
    assert plan.action == "rotated" and plan.cas == 1
    assert store.commit(plan) == 2
    current = openbao.kv_get("vps", "%s/tenant_ssh" % tid)["data"]
    assert current["grace_public_key"] == stored["public_key"]
    assert store.plan("rotated").action == "none"
    assert store.plan("rotated", force=True).action == "rotated"
    # Revoke: idempotent, a revoked key is not rotated.
    plan = store.plan("revoked")
    assert plan.revoked_keys == [current["public_key"], stored["public_key"]]
    store.commit(plan)
    assert store.plan("revoked").action == "none"
    assert "revoked" in store.plan("rotated", force=True).message
    assert store.plan("present").action == "none"
    # History keeps every private key.
    assert openbao.kv_get("vps", "%s/tenant_ssh" % tid, version=1)["data"]["private_key"] == stored["private_key"]
    # Regenerate makes it active again without grace.
    store.commit(store.plan("regenerated"))
    regen = openbao.kv_get("vps", "%s/tenant_ssh" % tid)["data"]
    assert regen["state"] == "active" and "grace_public_key" not in regen
    # absent soft-deletes (history kept), present re-creates on top with cas=current_version.
    store.commit(store.plan("absent"))
    assert store.plan("absent").action == "none"
    assert store.read() == (None, 4)
    plan = store.plan("present")
    assert plan.action == "created" and plan.cas == 4
    assert store.commit(plan) == 5


def test_concurrent_writers_exactly_one_wins(openbao):
    tid = tenant()
    first, second = store_for(openbao, tid, "admin"), store_for(openbao, tid, "admin")
    plan_a, plan_b = first.plan("present"), second.plan("present")
    assert first.commit(plan_a) == 1
    with pytest.raises(vc.VaultCASConflict, match="check-and-set conflict on write of vps/%s/admin_ssh" % tid):
        second.commit(plan_b)
    plan_a, plan_b = first.plan("rotated", force=True), second.plan("rotated", force=True)
    first.commit(plan_a)
    with pytest.raises(vc.VaultCASConflict) as err:
        second.commit(plan_b)
    assert plan_b.after["private_key"] not in str(err.value)
    stored = openbao.kv_get("vps", "%s/admin_ssh" % tid)
    assert stored["metadata"]["version"] == 2
    assert stored["data"]["public_key"] == plan_a.after["public_key"]


def test_download_once(openbao):
    tid = tenant()
    store = store_for(openbao, tid)
    with pytest.raises(ks.KeypairError, match="no key at vps/%s/tenant_ssh" % tid):
        store.plan_download()
    store.commit(store.plan("present"))
    data, version = store.plan_download()
    record, new_version = store.claim_download(data, version)
    assert record["downloaded_at"] == "2026-11-23T12:00:00Z" and new_version == 2
    with pytest.raises(ks.KeypairError, match="already downloaded at 2026-11-23T12:00:00Z: regenerate"):
        store.plan_download()
    # A claim on a stale version loses.
    with pytest.raises(vc.VaultCASConflict):
        store.claim_download(data, version)
    store.commit(store.plan("regenerated"))
    store.plan_download()
    store.commit(store.plan("revoked"))
    with pytest.raises(ks.KeypairError, match="is revoked"):
        store.plan_download()


def test_vps_ip_from_record(openbao):
    tid = tenant()
    store = store_for(openbao, tid)
    assert store.vps_ip() is None
    openbao.kv_put("vps", "%s/record" % tid, {"vps_ip": "192.0.2.7"})
    assert store.vps_ip() == "192.0.2.7"
