# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lifecycle rules of SSH keys in Vault: pure rules, then the store against a real OpenBao."""
from __future__ import annotations

import datetime
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    assert ks.tenant_user("0123456789abcdef") == "tenant-0123456789abcdef"


def test_admin_fallback_is_the_last_confirmed_key():
    first, second, third = (ssh_keys.generate_keypair("ed25519") for number in range(3))
    created = ks.record_created(first, NOW, 90)
    assert not ks.is_confirmed(created) and ks.host_keys(created) == [first.public_key]
    confirmed = ks.record_confirmed(created, NOW)
    assert ks.is_confirmed(confirmed) and confirmed["installed_fingerprint"] == first.fingerprint
    # Rotation of a confirmed admin key: the confirmed key is the fallback and the grace key.
    rotated = ks.record_rotated(confirmed, second, NOW, 90, 24, role="admin")
    assert rotated["fallback_private_key"] == first.private_key and rotated["grace_public_key"] == first.public_key
    assert ks.host_keys(rotated) == [second.public_key, first.public_key]
    # Rotated again before any host contact: the fallback is still the key the host has.
    again = ks.record_rotated(rotated, third, NOW, 90, 24, role="admin")
    assert again["fallback_private_key"] == first.private_key and again["grace_public_key"] == first.public_key
    regen = ks.record_regenerated(again, second, NOW, 90, role="admin")
    assert regen["fallback_private_key"] == first.private_key and "grace_public_key" not in regen
    # Confirmation drops the fallback; a tenant key never keeps one.
    done = ks.record_confirmed(regen, NOW)
    assert not set(ks.FALLBACK_FIELDS) & set(done) and ks.host_keys(done) == [second.public_key]
    assert "fallback_private_key" not in ks.record_rotated(confirmed, second, NOW, 90, 24, role="tenant")
    # A revocation drops every private key from the latest version.
    revoked = ks.record_revoked(again, NOW)
    assert not set(ks.PRIVATE_FIELDS) & set(revoked) and ks.host_keys(revoked) == []
    assert ks.revoked_public_keys(again) == [third.public_key, first.public_key]


class _Host(object):
    """A host's authorized_keys for one account, as authorized_key_rotate keeps it: the keys of the
    highest record version it was given (older versions are refused), grace keys included."""

    def __init__(self, keys):
        self.keys, self.serial = set(keys), 0

    def install(self, record, version, cleanup=False):
        if version < self.serial:
            return False
        self.serial = version
        keys = set(ks.host_keys(record))
        if record.get("grace_public_key"):
            keys.add(record["grace_public_key"])
        self.keys = keys
        return True


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["rotate", "regenerate", "install", "confirm", "stale_install", "refused_write"]),
                max_size=25))
def test_reachability_invariant_holds_for_every_interleaving(operations):
    """Model check of the state machine: whatever runs, in whatever order, with whatever left
    undone, the current version of the admin record holds a private key the host accepts."""
    pairs = iter([ssh_keys.KeyPair("ed25519", "priv-%d" % n, "pub-%d" % n, "fp-%d" % n) for n in range(100)])
    history = [ks.record_confirmed(ks.record_created(next(pairs), NOW, 90), NOW)]
    host = _Host([history[0]["public_key"]])
    private_to_public = {history[0]["private_key"]: history[0]["public_key"]}

    def holds():
        record = history[-1]
        publics = [private_to_public[record[f]] for f in ks.PRIVATE_FIELDS if record.get(f)]
        return any(public in host.keys for public in publics)

    assert holds()
    for op in operations:
        current = history[-1]
        if op in ("rotate", "regenerate"):
            pair = next(pairs)
            private_to_public[pair.private_key] = pair.public_key
            new = (ks.record_rotated(current, pair, NOW, 90, 24, role="admin") if op == "rotate"
                   else ks.record_regenerated(current, pair, NOW, 90, role="admin"))
            history.append(new)
        elif op == "install":
            host.install(current, len(history))
        elif op == "stale_install" and len(history) > 1:
            host.install(history[-2], len(history) - 1)
        elif op == "confirm" and current["public_key"] in host.keys and not ks.is_confirmed(current):
            history.append(ks.record_confirmed(current, NOW))
            host.install(history[-1], len(history))  # the cleanup write of the same run
        # refused_write: a Vault write that was refused changes nothing.
        assert holds(), (op, operations)


def test_tenant_account_names_are_unique_and_short():
    from ansible_collections.penguinmails.vps.plugins.module_utils.validators import tenant_account

    assert tenant_account("acme") == "tenant-acme" and tenant_account("Acme") == "tenant-acme"
    long_a, long_b = "alpha-tenant-number-one-0001", "alpha-tenant-number-one-0002"
    names = {tenant_account(t) for t in (long_a, long_b, "alpha-te", "alpha-tenant")}
    assert len(names) == 4 and all(len(name) <= 32 for name in names)
    assert tenant_account("x" * 64) == tenant_account("X" * 64)


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
    # The loser of a creation or rotation race adopts the winner's key instead of failing.
    loser_key = plan_b.after["private_key"]
    assert second.commit(plan_b) == 1
    assert plan_b.action == "none" and "replaced concurrently" in plan_b.message
    assert plan_b.after["public_key"] == plan_a.after["public_key"] and loser_key in second.discarded
    plan_a, plan_b = first.plan("rotated", force=True), second.plan("rotated", force=True)
    first.commit(plan_a)
    assert second.commit(plan_b) == 2 and plan_b.action == "none"
    stored = openbao.kv_get("vps", "%s/admin_ssh" % tid)
    assert stored["metadata"]["version"] == 2
    assert stored["data"]["public_key"] == plan_a.after["public_key"]
    # Any other conflict (the key did not change, e.g. a download mark) still fails, without a secret.
    data, version = first.read()
    plan_c = first.plan("rotated", force=True)
    first.client.write("vps", "%s/admin_ssh" % tid, dict(data, downloaded_at="x"), cas=version)
    with pytest.raises(vc.VaultCASConflict) as err:
        first.commit(plan_c)
    assert plan_c.after["private_key"] not in str(err.value)


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
