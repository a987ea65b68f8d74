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
    # Rotated again before any host contact: the fallback is still the key the host has; the superseded
    # unconfirmed key joins the grace keys (newest first), the confirmed one keeps its own grace entry.
    again = ks.record_rotated(rotated, third, NOW, 90, 24, role="admin")
    assert again["fallback_private_key"] == first.private_key and again["grace_public_key"] == second.public_key
    assert [entry["public_key"] for entry in again["grace_keys"]] == [second.public_key, first.public_key]
    regen = ks.record_regenerated(again, second, NOW, 90, role="admin")
    assert regen["fallback_private_key"] == first.private_key and "grace_public_key" not in regen
    # Confirmation drops the fallback; a tenant key never keeps one.
    done = ks.record_confirmed(regen, NOW)
    assert not set(ks.FALLBACK_FIELDS) & set(done) and ks.host_keys(done) == [second.public_key]
    assert "fallback_private_key" not in ks.record_rotated(confirmed, second, NOW, 90, 24, role="tenant")
    # A revocation drops every private key from the latest version.
    revoked = ks.record_revoked(again, NOW)
    assert not set(ks.PRIVATE_FIELDS) & set(revoked) and ks.host_keys(revoked) == []
    assert ks.revoked_public_keys(again) == [third.public_key, second.public_key, first.public_key]


# -- every handed-out key keeps its full grace ---------------------------------------------------
HOUR = datetime.timedelta(hours=1)


def _pairs(count):
    return [ssh_keys.KeyPair("ed25519", "priv-%d" % n, "pub-%d" % n, "fp-%d" % n) for n in range(count)]


def _grace(record):
    return [(entry["public_key"], entry["until"]) for entry in record.get("grace_keys", [])]


def test_every_superseded_key_keeps_its_own_grace_through_many_rotations():
    a, b, c, d = _pairs(4)
    record = ks.record_created(a, NOW, 90)
    # Three forced rotations within the grace period (tenant key: no fallback).
    record = ks.record_rotated(record, b, NOW, 90, 24, role="tenant")
    record = ks.record_rotated(record, c, NOW + HOUR, 90, 24, role="tenant")
    record = ks.record_rotated(record, d, NOW + 2 * HOUR, 90, 24, role="tenant")
    assert _grace(record) == [("pub-2", "2026-11-24T14:00:00Z"), ("pub-1", "2026-11-24T13:00:00Z"),
                              ("pub-0", "2026-11-24T12:00:00Z")]
    assert [entry["fingerprint"] for entry in record["grace_keys"]] == ["fp-2", "fp-1", "fp-0"]
    # The fields older releases read hold the most recently superseded key.
    assert (record["grace_public_key"], record["grace_fingerprint"], record["grace_until"]) == (
        "pub-2", "fp-2", "2026-11-24T14:00:00Z")
    view = ks.host_view(record, 4, NOW + 2 * HOUR)
    assert view["host_keys"] == ["pub-3"]
    assert view["grace_keys"] == [{"key": "pub-2", "expires": "2026-11-24T14:00:00Z"},
                                  {"key": "pub-1", "expires": "2026-11-24T13:00:00Z"},
                                  {"key": "pub-0", "expires": "2026-11-24T12:00:00Z"}]
    assert ks.public_view(record)["grace_keys"] == record["grace_keys"]  # public material only
    # Each ends on its own: after 24 h 30 min only the two later ones are left.
    later = NOW + datetime.timedelta(hours=24, minutes=30)
    assert [g["key"] for g in ks.host_view(record, 4, later)["grace_keys"]] == ["pub-2", "pub-1"]
    assert ks.grace_active(record, later) and not ks.grace_active(record, NOW + 26 * HOUR)
    # The next write prunes the ended ones.
    e = _pairs(5)[4]
    pruned = ks.record_rotated(record, e, later, 90, 24, role="tenant")
    assert _grace(pruned) == [("pub-3", "2026-11-25T12:30:00Z"), ("pub-2", "2026-11-24T14:00:00Z"),
                              ("pub-1", "2026-11-24T13:00:00Z")]
    assert not any(entry["public_key"] == pruned["public_key"] for entry in pruned["grace_keys"])


def test_a_second_rotation_after_a_confirmation_keeps_the_original_keys_grace():
    """The race of issue 20: rotate (confirmed), rotate again within 24 h - the original key keeps its grace."""
    a, b, c = _pairs(3)
    record = ks.record_confirmed(ks.record_created(a, NOW, 90), NOW)
    record = ks.record_confirmed(ks.record_rotated(record, b, NOW, 90, 24, role="admin"), NOW + HOUR)
    assert _grace(record) == [("pub-0", "2026-11-24T12:00:00Z")] and ks.host_keys(record) == ["pub-1"]
    record = ks.record_rotated(record, c, NOW + 2 * HOUR, 90, 24, role="admin")
    assert record["fallback_public_key"] == "pub-1" and ks.host_keys(record) == ["pub-2", "pub-1"]
    assert _grace(record) == [("pub-1", "2026-11-24T14:00:00Z"), ("pub-0", "2026-11-24T12:00:00Z")]
    # While pending, the fallback is a host key without expiry, never also a grace key on the host.
    view = ks.host_view(record, 4, NOW + 2 * HOUR)
    assert view["grace_keys"] == [{"key": "pub-0", "expires": "2026-11-24T12:00:00Z"}]
    # Once confirmed, the superseded confirmed key is a grace key with its own expiry.
    done = ks.record_confirmed(record, NOW + 3 * HOUR)
    assert "fallback_public_key" not in done
    assert ks.host_view(done, 5, NOW + 3 * HOUR)["grace_keys"] == [
        {"key": "pub-1", "expires": "2026-11-24T14:00:00Z"}, {"key": "pub-0", "expires": "2026-11-24T12:00:00Z"}]


def test_pending_admin_rotations_keep_the_fallback_and_every_grace():
    a, b, c, d = _pairs(4)
    record = ks.record_confirmed(ks.record_created(a, NOW, 90), NOW)
    for number, pair in enumerate((b, c, d), 1):
        record = ks.record_rotated(record, pair, NOW + number * HOUR, 90, 24, role="admin")
    # _fallback_of unchanged: the last confirmed key is the fallback through every unconfirmed rotation.
    assert record["fallback_private_key"] == "priv-0" and ks.host_keys(record) == ["pub-3", "pub-0"]
    assert _grace(record) == [("pub-2", "2026-11-24T15:00:00Z"), ("pub-1", "2026-11-24T14:00:00Z"),
                              ("pub-0", "2026-11-24T13:00:00Z")]
    assert [g["key"] for g in ks.host_view(record, 4, NOW + 3 * HOUR)["grace_keys"]] == ["pub-2", "pub-1"]
    # Pending for days: the fallback's grace has ended, it stays a host key; confirmed, it goes at once.
    days = NOW + datetime.timedelta(days=3)
    assert ks.host_keys(record) == ["pub-3", "pub-0"] and ks.host_view(record, 4, days)["grace_keys"] == []
    done = ks.record_confirmed(record, days)
    assert ks.host_view(done, 5, days)["host_keys"] == ["pub-3"] and ks.host_view(done, 5, days)["grace_keys"] == []
    assert not set(ks.GRACE_FIELDS) & set(done)  # pruned on the confirmation write


def test_grace_keys_are_capped_newest_first():
    pairs = _pairs(ks.GRACE_KEYS_MAX + 11)
    record = ks.record_created(pairs[0], NOW, 90)
    for number, pair in enumerate(pairs[1:], 1):
        record = ks.record_rotated(record, pair, NOW + datetime.timedelta(minutes=number), 90, 24, role="tenant")
    assert len(record["grace_keys"]) == ks.GRACE_KEYS_MAX == 20
    newest = len(pairs) - 2
    assert [entry["public_key"] for entry in record["grace_keys"]] == ["pub-%d" % n for n in range(newest, newest - 20, -1)]
    assert record["grace_public_key"] == "pub-%d" % newest


def test_grace_hours_zero_gives_the_superseded_key_no_grace_but_keeps_earlier_ones():
    a, b, c = _pairs(3)
    record = ks.record_rotated(ks.record_created(a, NOW, 90), b, NOW, 90, 24, role="tenant")
    record = ks.record_rotated(record, c, NOW + HOUR, 90, 0, role="tenant")
    assert _grace(record) == [("pub-0", "2026-11-24T12:00:00Z")] and record["grace_public_key"] == "pub-0"


def test_a_legacy_record_with_one_grace_key_is_read_as_a_one_element_list():
    a, b, c = _pairs(3)
    legacy = dict(ks.record_created(b, NOW, 90), grace_public_key="pub-0", grace_until="2026-11-24T12:00:00Z")
    assert ks.grace_keys(legacy) == [{"public_key": "pub-0", "fingerprint": None, "until": "2026-11-24T12:00:00Z"}]
    real = ssh_keys.generate_keypair("ed25519")
    legacy_real = dict(legacy, grace_public_key=real.public_key)  # no grace_fingerprint: computed
    assert ks.grace_keys(legacy_real)[0]["fingerprint"] == real.fingerprint
    assert ks.host_view(legacy, 2, NOW)["grace_keys"] == [{"key": "pub-0", "expires": "2026-11-24T12:00:00Z"}]
    assert ks.host_view(legacy, 2, NOW + 25 * HOUR)["grace_keys"] == []
    assert ks.revoked_public_keys(legacy) == ["pub-1", "pub-0"]
    rotated = ks.record_rotated(legacy, c, NOW + HOUR, 90, 24, role="tenant")
    assert _grace(rotated) == [("pub-1", "2026-11-24T13:00:00Z"), ("pub-0", "2026-11-24T12:00:00Z")]
    # The list and the legacy fields naming the same key: one entry, no duplicates.
    both = dict(rotated, grace_public_key="pub-0", grace_until="2026-11-24T12:00:00Z")
    assert [entry["public_key"] for entry in ks.grace_keys(both)] == ["pub-1", "pub-0"]
    # Unreadable entries are ignored; the current key is never a grace key.
    odd = dict(rotated, grace_keys=rotated["grace_keys"] + ["x", {"public_key": "pub-9"}, {"public_key": "pub-2", "until": "2030-01-01"}])
    assert [entry["public_key"] for entry in ks.grace_keys(odd)] == ["pub-1", "pub-0"]
    # An ended legacy grace key is pruned by the next rotation.
    assert "grace_keys" not in ks.record_rotated(legacy, c, NOW + 25 * HOUR, 90, 0, role="tenant")


def test_revoke_drops_every_grace_key_and_lists_them_all():
    a, b, c, d = _pairs(4)
    record = ks.record_confirmed(ks.record_created(a, NOW, 90), NOW)
    for number, pair in enumerate((b, c, d), 1):
        record = ks.record_rotated(record, pair, NOW + number * HOUR, 90, 24, role="admin")
    # Every key a host may hold leaves it: current, each grace key (ended or not), the fallback.
    assert ks.revoked_public_keys(record) == ["pub-3", "pub-2", "pub-1", "pub-0"]
    revoked = ks.record_revoked(record, NOW + 4 * HOUR)
    assert not set(ks.GRACE_FIELDS) & set(revoked) and not set(ks.PRIVATE_FIELDS) & set(revoked)
    view = ks.host_view(revoked, 5, NOW + 4 * HOUR)
    assert view["grace_keys"] == [] and view["host_keys"] == [] and view["revoked_keys"] == ["pub-3"]


def test_regenerate_keeps_no_grace():
    a, b, c, d = _pairs(4)
    record = ks.record_rotated(ks.record_created(a, NOW, 90), b, NOW, 90, 24, role="tenant")
    record = ks.record_rotated(record, c, NOW + HOUR, 90, 24, role="tenant")
    regen = ks.record_regenerated(record, d, NOW + 2 * HOUR, 90, role="tenant")
    assert not set(ks.GRACE_FIELDS) & set(regen) and ks.host_view(regen, 4, NOW + 2 * HOUR)["grace_keys"] == []
    assert ks.revoked_public_keys(record) == ["pub-2", "pub-1", "pub-0"]  # what a regeneration takes away


# -- spread due dates ------------------------------------------------------------------------------
TENANTS = ["t%03d" % n for n in range(200)]


@pytest.mark.parametrize("days,spread", [(1, 0), (9, 0), (19, 1), (20, 2), (30, 3), (90, 9), (365, 36), (3650, 365)])
def test_due_spread_is_a_tenth_of_the_period(days, spread):
    assert ks.due_spread_days(days) == spread
    offsets = [ks.due_offset_days(t, role, days) for t in TENANTS for role in ("admin", "tenant")]
    assert all(0 <= offset < max(spread, 1) for offset in offsets)
    if 2 <= spread <= 40:
        assert len(set(offsets)) == spread  # 400 keys use every day of the spread
    elif spread > 40:
        assert len(set(offsets)) > spread // 2
    else:
        assert set(offsets) == {0}


def test_due_offset_is_deterministic_and_differs_between_tenants_and_roles():
    assert [ks.due_offset_days(t, "admin", 90) for t in TENANTS] == [ks.due_offset_days(t, "admin", 90) for t in TENANTS]
    assert len(set(ks.due_offset_days(t, "admin", 90) for t in TENANTS[:20])) > 3
    assert any(ks.due_offset_days(t, "admin", 90) != ks.due_offset_days(t, "tenant", 90) for t in TENANTS[:20])
    # The documented rule: the first 8 bytes of SHA-256 of "<tenant>/<role>", big-endian, modulo the spread.
    import hashlib
    assert ks.due_offset_days("acme", "admin", 90) == int(hashlib.sha256(b"acme/admin").hexdigest()[:16], 16) % 9
    assert (ks.due_offset_days("acme", "admin", 90), ks.due_offset_days("acme", "tenant", 90)) == (2, 6)  # docs example
    assert ks.due_offset_days(None, "admin", 90) == 0 and ks.due_offset_days("", "admin", 90) == 0


@pytest.mark.parametrize("days", [1, 7, 19, 20, 30, 90, 365])
def test_spread_due_date_is_never_later_than_the_period_and_never_before_the_last_rotation(days):
    last = NOW - datetime.timedelta(days=400)
    record = {"last_rotated": ks.format_time(last)}
    spread = ks.due_spread_days(days)
    for tenant_id in TENANTS[:50]:
        for role in ("admin", "tenant"):
            due = ks.due_at(record, days, tenant_id, role)
            assert last + datetime.timedelta(days=days) - datetime.timedelta(days=max(spread - 1, 0)) <= due
            assert due <= last + datetime.timedelta(days=days) and due > last
            assert ks.is_due(record, days, due, tenant_id=tenant_id, role=role)
            assert ks.is_due(record, days, last + datetime.timedelta(days=days), tenant_id=tenant_id, role=role)
            assert not ks.is_due(record, days, due - datetime.timedelta(seconds=1), tenant_id=tenant_id, role=role)
            if days == 1:
                assert due == last + datetime.timedelta(days=1)  # no spread


def test_without_a_tenant_is_due_keeps_the_exact_period():
    record = {"last_rotated": "2026-08-25T12:00:00Z"}  # exactly 90 days before NOW
    assert ks.is_due(record, 90, NOW) and not ks.is_due(record, 90, NOW - datetime.timedelta(seconds=1))
    assert ks.due_at(record, 90) == NOW and ks.due_at({}, 90, "acme", "admin") is None


def test_next_rotation_uses_the_records_policy_and_the_offset():
    record = ks.record_created(_pairs(1)[0], NOW, 90)
    assert ks.next_rotation(record, "acme", "admin") == "2027-02-19T12:00:00Z"  # NOW + 90 - 2 days
    assert ks.next_rotation(record) == "2027-02-21T12:00:00Z"
    assert ks.next_rotation(dict(record, rotation_policy="30_days"), "acme", "admin") == ks.format_time(
        NOW + datetime.timedelta(days=30 - ks.due_offset_days("acme", "admin", 30)))
    assert ks.next_rotation(dict(record, state="revoked"), "acme", "admin") is None
    view = ks.host_view(record, 1, NOW, tenant_id="acme", role="admin")
    assert view["next_rotation"] == "2027-02-19T12:00:00Z" and "next_rotation" not in ks.host_view(record, 1, NOW)


# -- the store with an in-memory Vault: spread plans and the one-line race message -------------------
class _Memory(object):
    """Just enough of VaultClient for KeypairStore: KV v2 versions with check-and-set."""

    def __init__(self):
        self.versions = {}
        self.before_write = None

    def read_or_none(self, mount, path, version=None):
        history = self.versions.get((mount, path)) or []
        if not history:
            return None
        return vc.Secret(mount, path, dict(history[-1]), {"version": len(history)})

    def metadata(self, mount, path):
        if (mount, path) not in self.versions:
            raise vc.VaultNotFound("no metadata")
        return {"current_version": len(self.versions[(mount, path)])}

    def list(self, mount, path=""):
        return sorted(set(p.split("/")[0] + "/" for (m, p) in self.versions if m == mount))

    def write(self, mount, path, data, cas=None):
        if self.before_write:
            hook, self.before_write = self.before_write, None
            hook()
        history = self.versions.setdefault((mount, path), [])
        if cas is not None and cas != len(history):
            raise vc.VaultCASConflict("check-and-set conflict on write of %s/%s (cas=%s)" % (mount, path, cas))
        history.append(dict(data))
        return len(history)


def test_plan_spreads_due_dates_per_tenant():
    memory = _Memory()
    for tenant_id in ("acme", "beta"):
        pair = ssh_keys.KeyPair("ed25519", "priv-%s" % tenant_id, "pub-%s" % tenant_id, "fp-%s" % tenant_id)
        memory.write("vps", "%s/admin_ssh" % tenant_id, ks.record_created(pair, NOW, 90), cas=0)
    # acme/admin is due 2 days early, beta/admin 8 days early (see the docs' worked example).
    assert (ks.due_offset_days("acme", "admin", 90), ks.due_offset_days("beta", "admin", 90)) == (2, 8)
    day = datetime.timedelta(days=1)
    clock = Clock(NOW + 82 * day - datetime.timedelta(seconds=1))
    stores = dict((t, ks.KeypairStore(memory, t, "admin", keygen=fast_keygen, clock=clock)) for t in ("acme", "beta"))
    assert [stores[t].plan("rotated").action for t in ("acme", "beta")] == ["none", "none"]
    clock.now = NOW + 82 * day
    assert [stores[t].plan("rotated").action for t in ("acme", "beta")] == ["none", "rotated"]
    clock.now = NOW + 88 * day
    assert [stores[t].plan("rotated").action for t in ("acme", "beta")] == ["rotated", "rotated"]
    data, _version = stores["acme"].read()
    assert stores["acme"].next_rotation(data) == ks.format_time(NOW + 88 * day)


def test_a_run_that_loses_the_race_says_so_in_one_line():
    memory = _Memory()
    store = ks.KeypairStore(memory, "acme", "tenant", keygen=fast_keygen, clock=Clock())
    store.commit(store.plan("present"))
    other = ks.KeypairStore(memory, "acme", "tenant", keygen=fast_keygen, clock=Clock())
    plan = store.plan("rotated", force=True)
    mine = plan.after["private_key"]
    winner = other.plan("rotated", force=True)
    memory.before_write = lambda: other.commit(winner)  # the other run writes between our read and our write
    assert store.commit(plan) == 2
    assert plan.action == "none" and not plan.changed and plan.after["fingerprint"] == winner.after["fingerprint"]
    assert "\n" not in plan.message and mine in store.discarded and mine not in plan.message
    assert plan.message == (
        "acme/tenant key replaced concurrently by another run: that run's key %s stands and is the one installed "
        "on the host (this run's new key was discarded); no rerun needed" % winner.after["fingerprint"])
    assert "PRIVATE KEY" not in plan.message
    # A write that landed although the client saw a conflict (retried after a failover) counts as written.
    plan = store.plan("rotated", force=True)
    memory.before_write = lambda: memory.versions[("vps", "acme/tenant_ssh")].append(dict(plan.after))
    assert store.commit(plan) == 3 and plan.action == "rotated" and plan.message is None


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
        keys.update(entry["key"] for entry in ks.host_view(record, version, NOW)["grace_keys"])
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


def test_bulk_rotation_spreads_due_dates_and_reports_a_lost_race_per_tenant():
    from ansible_collections.penguinmails.vps.plugins.module_utils import bulk_rotation

    memory = _Memory()
    for tenant_id in ("acme", "beta", "gamma"):
        pair = ssh_keys.generate_keypair("ed25519", comment="seed")
        memory.write("vps", "%s/admin_ssh" % tenant_id, ks.record_created(pair, NOW, 90), cas=0)
    offsets = dict((t, ks.due_offset_days(t, "admin", 90)) for t in ("acme", "beta", "gamma"))
    assert offsets == {"acme": 2, "beta": 8, "gamma": 8}
    day = datetime.timedelta(days=1)
    # 82 days after: beta and gamma are due, acme (2 days early: at 88 days) is not.
    other = ks.KeypairStore(memory, "gamma", "admin", keygen=fast_keygen, clock=Clock(NOW + 82 * day))
    winner = other.plan("rotated", force=True)
    memory.before_write = lambda: other.commit(winner)  # another run rotates gamma first
    result = bulk_rotation.rotate_many(memory, ["acme", "beta", "gamma"], roles=["admin"], key_type="ed25519", workers=1,
                                       clock=Clock(NOW + 82 * day))
    assert result["failures"] == []
    rotated = dict((item["tenant_id"], item) for item in result["rotated"])
    skipped = dict((item["tenant_id"], item) for item in result["skipped"])
    assert skipped["acme"] == {"tenant_id": "acme", "role": "admin", "reason": "not due"}
    lost = [t for t in ("beta", "gamma") if t in skipped]
    assert lost == ["gamma"] and sorted(rotated) == ["beta"]  # the other run wrote gamma before our first write
    race = skipped[lost[0]]
    standing = memory.read_or_none("vps", "%s/admin_ssh" % lost[0]).data["fingerprint"]
    assert race["reason"] == "rotated concurrently" and race["fingerprint"] == standing
    assert race["message"] == ks.race_message(lost[0], "admin", standing) and "\n" not in race["message"]
    assert "no rerun needed" in race["message"] and "PRIVATE KEY" not in race["message"]
    (tenant_id, entry), = rotated.items()
    assert entry["next_rotation"] == ks.format_time(NOW + 82 * day + (90 - offsets[tenant_id]) * day)
    stored = memory.read_or_none("vps", "%s/admin_ssh" % tenant_id).data
    assert stored["fingerprint"] == entry["fingerprint"] and [g["until"] for g in stored["grace_keys"]] == [
        ks.format_time(NOW + 82 * day + 24 * HOUR)]
    assert sorted(item["tenant_id"] for item in result["unconfirmed"]) == ["acme", "beta", "gamma"]
