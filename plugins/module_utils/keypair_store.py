# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Vault side of the SSH key lifecycle (docs/ssh-key-lifecycle.md: the Vault layout and rotation without lockout).

A key lives at ``<mount>/<tenant>/<role>_ssh`` (built by ``validators.ssh_key_path``) with the fields
``private_key``, ``public_key``, ``fingerprint``, ``key_type``, ``created_at``, ``last_rotated``,
``rotation_policy``, ``state`` (active, revoked), ``grace_keys`` (every superseded key still in its
grace period, newest first, each ``{public_key, fingerprint, until}`` with its own end), the most recent
of them again as ``grace_public_key``, ``grace_fingerprint`` and ``grace_until`` (what older releases
read) and, for a downloaded key, ``downloaded_at``.

The reachability invariant (docs/ssh-key-lifecycle.md): at every moment a private key held in the
*current* version of the admin record logs in to the tenant's host.  So a record also says which key
the host confirmed (``installed_fingerprint``, ``installed_at``: set by :meth:`KeypairStore.plan`
``state=confirmed`` after a login with that key succeeded) and, while the current admin key is not
confirmed yet, keeps the last confirmed one: ``fallback_private_key``, ``fallback_public_key``,
``fallback_fingerprint``.  A rotation (or regeneration) of an unconfirmed admin key keeps that
fallback instead of replacing it, so any number of rotations without host contact, killed runs or
refused writes can never leave the record without a key the host accepts.  The confirmation drops
the fallback; the host then removes it (or keeps it as a grace key until its own ``until``).

Every change is planned from one read (:meth:`KeypairStore.plan`) and written with check-and-set on
the version that was read (:meth:`KeypairStore.commit`): ``cas=0`` when the secret never existed,
``cas=<version read>`` otherwise.  Of two concurrent writers exactly one wins; the other gets
``VaultCASConflict`` and nothing of it is stored.  Replaced versions stay in the KV history.

The record builders (``record_*``) and :func:`is_due` are pure functions of the stored fields and
the current time, so the lifecycle rules can be tested without a server.

Due dates are spread (:func:`due_offset_days`): a key is due ``rotation_days`` minus a stable per
tenant and role offset of at most 10% of the period after its last rotation, never later.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import hashlib
import re

from ansible_collections.penguinmails.vps.plugins.module_utils import key_metadata, ssh_keys
from ansible_collections.penguinmails.vps.plugins.module_utils.validators import (
    ValidationError,
    check_tenant_unique,
    ssh_key_path,
    tenant_account,
    tenant_record_path,
    validate_role,
    validate_tenant_id,
)
from ansible_collections.penguinmails.vps.plugins.module_utils.timeutil import (  # noqa: F401 - re-exported
    format_time,
    parse_time,
    utcnow,
)
from ansible_collections.penguinmails.vps.plugins.module_utils.vault_client import VaultCASConflict, VaultError, VaultNotFound

STATES = ("present", "rotated", "revoked", "absent", "regenerated", "confirmed")
ACTIVE = "active"
REVOKED = "revoked"
# The fields a caller may see: everything but the private key.
PUBLIC_FIELDS = (
    "public_key",
    "fingerprint",
    "key_type",
    "created_at",
    "last_rotated",
    "rotation_policy",
    "state",
    "grace_keys",
    "grace_public_key",
    "grace_fingerprint",
    "grace_until",
    "downloaded_at",
    "revoked_at",
    "installed_fingerprint",
    "installed_at",
    "fallback_public_key",
    "fallback_fingerprint",
)
# Fields that hold private key material.
PRIVATE_FIELDS = ("private_key", "fallback_private_key")
FALLBACK_FIELDS = ("fallback_private_key", "fallback_public_key", "fallback_fingerprint")
# The grace period of superseded keys: the list and, for older releases, its newest entry.
GRACE_FIELDS = ("grace_keys", "grace_public_key", "grace_fingerprint", "grace_until")
# At most this many grace keys in a record (the newest): a runaway loop of rotations cannot grow it without bound.
GRACE_KEYS_MAX = 20
# Due dates are spread over this share of the rotation period (whole days, rounded down).
DUE_SPREAD_PERCENT = 10
# The role whose key the reachability invariant protects (root on the tenant's VPS).
ADMIN = "admin"
_POLICY_RE = re.compile(r"^([0-9]{1,5})_days$")


class KeypairError(Exception):
    """A lifecycle rule refused the request; the message is one line and holds no secret."""


# ---------------------------------------------------------------------------------------
# Time
# ---------------------------------------------------------------------------------------
def ssh_expiry_time(moment):
    """``YYYYMMDDHHMMZ`` for an ``authorized_keys`` ``expiry-time=`` option (rounded up to the minute)."""
    moment = moment.astimezone(datetime.timezone.utc)
    if moment.second or moment.microsecond:
        moment = moment.replace(second=0, microsecond=0) + datetime.timedelta(minutes=1)
    return moment.strftime("%Y%m%d%H%MZ")


# ---------------------------------------------------------------------------------------
# Pure lifecycle rules
# ---------------------------------------------------------------------------------------
def rotation_policy(rotation_days):
    return "%d_days" % rotation_days


def due_spread_days(rotation_days):
    """How many days due dates are spread over: 10% of the period, in whole days (0 under 20 days)."""
    return max(0, int(rotation_days) * DUE_SPREAD_PERCENT // 100)


def due_offset_days(tenant_id, role, rotation_days):
    """The days a key of ``tenant_id``/``role`` comes due early, in ``[0, due_spread_days(rotation_days))``.

    Stable (the first 8 bytes of SHA-256 of ``<tenant_id>/<role>``, big-endian, modulo the spread), so
    the same key is always due on the same day of its period and keys rotated together (a bulk
    onboarding, a forced rotation) come due over several days. No tenant id: no offset.
    """
    spread = due_spread_days(rotation_days)
    if not tenant_id or spread < 2:
        return 0
    digest = hashlib.sha256(("%s/%s" % (tenant_id, role or "")).encode("utf-8")).hexdigest()
    return int(digest[:16], 16) % spread


def due_at(data, rotation_days, tenant_id=None, role=None):
    """When the key is due: its last rotation (or creation) + ``rotation_days`` - the tenant's offset; None without a time."""
    last = parse_time((data or {}).get("last_rotated")) or parse_time((data or {}).get("created_at"))
    if last is None:
        return None
    return last + datetime.timedelta(days=int(rotation_days) - due_offset_days(tenant_id, role, rotation_days))


def is_due(data, rotation_days, now, tenant_id=None, role=None):
    """True when :func:`due_at` has come: never later than ``rotation_days`` after the last rotation.

    With ``tenant_id`` (and ``role``) the due date is spread (:func:`due_offset_days`); without, it is
    exactly ``rotation_days`` after. A record without a readable time is due: better one rotation too
    many than a key that never rotates.
    """
    due = due_at(data, rotation_days, tenant_id, role)
    return due is None or now >= due


def policy_days(data, default=90):
    """The rotation period of a record (its ``rotation_policy``, ``<n>_days``), else ``default``."""
    match = _POLICY_RE.match(str((data or {}).get("rotation_policy") or ""))
    return int(match.group(1)) if match and int(match.group(1)) >= 1 else default


def next_rotation(data, tenant_id=None, role=None, rotation_days=None):
    """The planned due moment of an active key (ISO 8601 UTC), or None: :func:`due_at` with the record's policy."""
    if not data or data.get("state", ACTIVE) != ACTIVE:
        return None
    due = due_at(data, rotation_days or policy_days(data), tenant_id, role)
    return format_time(due) if due else None


def grace_keys(data, now=None):
    """The record's grace keys, newest first: ``[{public_key, fingerprint, until}]``.

    Reads the list ``grace_keys`` and the single ``grace_public_key``/``grace_until`` of older
    releases (a one-element list). Leaves out entries without a key or a readable end, duplicates and
    the current key; with ``now``, also those whose grace has ended.
    """
    entries = []
    if not data:
        return entries
    items = list(data["grace_keys"]) if isinstance(data.get("grace_keys"), list) else []
    if data.get("grace_public_key"):
        items.append({"public_key": data["grace_public_key"], "fingerprint": data.get("grace_fingerprint"),
                      "until": data.get("grace_until")})
    seen = set([data.get("public_key")])
    for item in items:
        if not isinstance(item, dict):
            continue
        key, until = item.get("public_key"), parse_time(item.get("until"))
        if not key or not isinstance(key, str) or key in seen or until is None:
            continue
        if now is not None and now >= until:
            continue
        seen.add(key)
        entries.append({"public_key": key, "fingerprint": item.get("fingerprint") or _safe_fingerprint(key),
                        "until": format_time(until)})
    return entries


def _with_grace(record, entries):
    """``record`` with ``entries`` as its grace keys (capped), the newest also in the fields older releases read."""
    for name in GRACE_FIELDS:
        record.pop(name, None)
    entries = [entry for entry in entries if entry["public_key"] != record.get("public_key")][:GRACE_KEYS_MAX]
    if entries:
        record["grace_keys"] = entries
        record["grace_public_key"] = entries[0]["public_key"]
        if entries[0].get("fingerprint"):
            record["grace_fingerprint"] = entries[0]["fingerprint"]
        record["grace_until"] = entries[0]["until"]
    return record


def grace_active(data, now):
    """True while at least one grace key of the record is in its grace period."""
    return bool(grace_keys(data, now))


def is_confirmed(data):
    """True when the host confirmed (a login succeeded with) the record's current key."""
    return bool(data) and bool(data.get("fingerprint")) and data.get("installed_fingerprint") == data.get("fingerprint")


def host_keys(data):
    """The public keys that must be valid on the host now, without an expiry.

    The current key and, while it is not confirmed, the fallback key (the last one the host
    confirmed), which must stay until the current key is confirmed.
    """
    keys = []
    if not data or data.get("state", ACTIVE) != ACTIVE:
        return keys
    if data.get("public_key"):
        keys.append(data["public_key"])
    if not is_confirmed(data) and data.get("fallback_public_key") and data["fallback_public_key"] not in keys:
        keys.append(data["fallback_public_key"])
    return keys


def _fallback_of(role, old):
    """The fallback fields a new admin key must carry: the last key the host confirmed.

    ``old`` is the record being replaced. If its current key is confirmed (or the record predates
    confirmations and has no fallback), that key is the fallback; if it is not confirmed, its own
    fallback stays. Tenant keys keep no fallback (the invariant is about the admin account).
    """
    if role != ADMIN or not old or old.get("state", ACTIVE) != ACTIVE:
        return {}
    if not is_confirmed(old) and old.get("fallback_private_key") and old.get("fallback_public_key"):
        return dict((name, old[name]) for name in FALLBACK_FIELDS if old.get(name))
    if old.get("private_key") and old.get("public_key"):
        return {
            "fallback_private_key": old["private_key"],
            "fallback_public_key": old["public_key"],
            "fallback_fingerprint": old.get("fingerprint") or _safe_fingerprint(old["public_key"]),
        }
    return {}


def _key_fields(pair, now, rotation_days):
    return {
        "private_key": pair.private_key,
        "public_key": pair.public_key,
        "fingerprint": pair.fingerprint,
        "key_type": pair.key_type,
        "last_rotated": format_time(now),
        "rotation_policy": rotation_policy(rotation_days),
        "state": ACTIVE,
    }


def record_created(pair, now, rotation_days):
    record = _key_fields(pair, now, rotation_days)
    record["created_at"] = format_time(now)
    return record


def record_rotated(old, pair, now, rotation_days, grace_hours, role=None):
    """The new record after a rotation: the old public key becomes a grace key until now + ``grace_hours``.

    Every earlier grace key whose grace has not ended stays, with its own end (see :func:`grace_keys`):
    however many rotations follow within the grace period, every superseded key keeps its full grace.
    ``downloaded_at`` is dropped: the new private key has not been handed out yet. An admin key keeps
    the last key the host confirmed as its fallback (see :func:`_fallback_of`); the fallback stays a
    host key until the new key is confirmed, and keeps its own grace entry (from when it was superseded)
    for after that.
    """
    record = _key_fields(pair, now, rotation_days)
    record["created_at"] = old.get("created_at") or format_time(now)
    record.update(_fallback_of(role, old))
    entries = []
    if old.get("state", ACTIVE) == ACTIVE:
        entries = grace_keys(old, now)
        if grace_hours > 0 and old.get("public_key"):
            superseded = {"public_key": old["public_key"], "fingerprint": old.get("fingerprint") or _safe_fingerprint(old["public_key"]),
                          "until": format_time(now + datetime.timedelta(hours=grace_hours))}
            entries = [superseded] + [entry for entry in entries if entry["public_key"] != old["public_key"]]
    return _with_grace(record, entries)


def record_regenerated(old, pair, now, rotation_days, role=None):
    """A fresh key that replaces the old one at once (no grace key), downloadable again.

    An admin key still keeps the last confirmed key as its fallback until the host confirmed the
    new one (then it is removed from the host at once): the admin account is never left without
    a key from Vault.
    """
    record = _key_fields(pair, now, rotation_days)
    record["created_at"] = (old or {}).get("created_at") or format_time(now)
    record.update(_fallback_of(role, old))
    return record


def record_confirmed(old, now):
    """The record once the host accepted its current key: the fallback goes (it keeps its grace entry, if any).

    Grace keys whose grace has ended are pruned.
    """
    record = dict((k, v) for k, v in old.items() if k not in FALLBACK_FIELDS)
    record["installed_fingerprint"] = old["fingerprint"]
    record["installed_at"] = format_time(now)
    return _with_grace(record, grace_keys(old, now))


def record_revoked(old, now):
    """The revoked record: public key kept (hosts must drop it), private key and every grace key removed.

    The private key stays in the KV history (older versions), so nothing is lost.
    """
    dropped = ("private_key",) + GRACE_FIELDS + FALLBACK_FIELDS
    record = dict((k, v) for k, v in old.items() if k not in dropped)
    record["state"] = REVOKED
    record["revoked_at"] = format_time(now)
    return record


def record_downloaded(old, now):
    record = dict(old)
    record["downloaded_at"] = format_time(now)
    return record


def revoked_public_keys(old):
    """The public keys a revocation takes away: the current one, every grace key (ended or not) and a fallback key."""
    keys = []
    for key in [old.get("public_key")] + [entry["public_key"] for entry in grace_keys(old)] + [old.get("fallback_public_key")]:
        if key and key not in keys:
            keys.append(key)
    return keys


def host_view(data, version, now, tenant_id=None, role=None):
    """What a host must hold for this record (public material only), with the record's public fields.

    ``grace_keys`` is every grace key still in its grace, newest first, as ``{key, expires}`` (its own
    end), without the keys the host must hold without an expiry (``host_keys``: the current key and,
    while it is pending, the fallback key). With ``tenant_id`` and ``role``, ``next_rotation`` is the
    planned due moment of an active key (:func:`next_rotation`).
    """
    view = dict(public_view(data) or {})
    view.update(exists=data is not None, version=version, confirmed=is_confirmed(data), host_keys=host_keys(data),
                grace_keys=[], revoked_keys=[])
    if data is None:
        return view
    if data.get("state", ACTIVE) != ACTIVE:
        view["revoked_keys"] = revoked_public_keys(data)
        return view
    view["grace_keys"] = [{"key": entry["public_key"], "expires": entry["until"]}
                          for entry in grace_keys(data, now) if entry["public_key"] not in view["host_keys"]]
    if tenant_id:
        view["next_rotation"] = next_rotation(data, tenant_id, role)
    return view


def public_view(data):
    if data is None:
        return None
    return dict((k, data[k]) for k in PUBLIC_FIELDS if data.get(k) not in (None, ""))


def _safe_fingerprint(public_key):
    try:
        return ssh_keys.fingerprint(public_key)
    except ssh_keys.SSHKeyError:
        return None


def race_message(tenant_id, role, fingerprint):
    """One line for a run whose rotation lost its check-and-set to another run (no secret in it)."""
    return ("%s/%s key replaced concurrently by another run: that run's key %s stands and is the one installed on the host "
            "(this run's new key was discarded); no rerun needed" % (tenant_id, role, fingerprint or "(unknown)"))


def tenant_user(tenant_id):
    """The login of a tenant on its VPS (see :func:`validators.tenant_account`)."""
    return tenant_account(tenant_id)


def placeholder_keygen(key_type, bits=None, comment=""):
    """Check mode: what a plan needs of a new key, without generating one."""
    return ssh_keys.KeyPair(key_type, None, None, None)


# ---------------------------------------------------------------------------------------
# Plans and the store
# ---------------------------------------------------------------------------------------
class Plan(object):
    """What a lifecycle request will do; :meth:`KeypairStore.commit` carries it out."""

    __slots__ = ("action", "before", "after", "cas", "version", "message", "revoked_keys", "delete")

    def __init__(self, action, before, after=None, cas=None, version=None, message=None, revoked_keys=None, delete=False):
        self.action = action  # none, created, rotated, regenerated, revoked, deleted, confirmed
        self.before = before
        self.after = after
        self.cas = cas
        self.version = version
        self.message = message
        self.revoked_keys = revoked_keys or []
        self.delete = delete

    @property
    def changed(self):
        return self.action != "none"


class KeypairStore(object):
    """The lifecycle of one SSH key secret (``tenant_id``, ``role``) in Vault."""

    def __init__(self, client, tenant_id, role, mount="vps", keygen=None, clock=None):
        self.client = client
        self.tenant_id = validate_tenant_id(tenant_id)
        self.role = validate_role(role)
        self.mount, self.path = ssh_key_path(tenant_id, role, mount)
        self.vps_mount = mount
        self.keygen = keygen or ssh_keys.generate_keypair
        self.clock = clock or utcnow
        # Private keys of a plan that lost to a concurrent writer (for the caller's no_log set).
        self.discarded = []

    @property
    def where(self):
        return "%s/%s" % (self.mount, self.path)

    def comment(self):
        return "penguinmails-%s-%s" % (self.tenant_id, self.role)

    # -- reading -------------------------------------------------------------------------
    def read(self):
        """``(data, version)`` of the latest live version; ``(None, next_cas)`` when there is none.

        ``next_cas`` is 0 for a secret that never existed and the current version number when the
        latest version was soft-deleted (KV v2 then wants that number for a check-and-set write).
        """
        secret = self.client.read_or_none(self.mount, self.path)
        if secret is not None and secret.data:
            return secret.data, secret.version
        try:
            meta = self.client.metadata(self.mount, self.path)
        except VaultNotFound:
            return None, 0
        return None, int(meta.get("current_version") or 0)

    # -- planning ------------------------------------------------------------------------
    def check_unique(self):
        """Refuse a new tenant whose id differs from an existing one only by case (one tenant)."""
        check_tenant_unique(self.tenant_id, [name.rstrip("/") for name in self.client.list(self.vps_mount, "")])

    def plan(self, state, key_type=None, bits=None, rotation_days=90, grace_hours=24, force=False, fingerprint=None):
        """Plan ``state``. ``key_type`` None keeps the current key's type (RSA for a new key).

        ``state=confirmed`` records that a login with the key ``fingerprint`` succeeded on the host
        (it drops the fallback key); it changes nothing when the current key is another one.
        """
        if state not in STATES:
            raise ValidationError("invalid state %r: choose one of %s" % (state, ", ".join(STATES)))
        if int(rotation_days) < 1:
            raise ValidationError("rotation_days must be at least 1, not %s" % rotation_days)
        if int(grace_hours) < 0:
            raise ValidationError("grace_hours cannot be negative (%s)" % grace_hours)
        if key_type is not None and key_type not in ssh_keys.KEY_TYPES:
            raise ValidationError("invalid key_type %r: choose one of %s" % (key_type, ", ".join(ssh_keys.KEY_TYPES)))
        data, version = self.read()
        now = self.clock()
        live = data is not None
        if key_type is None:
            key_type = (data or {}).get("key_type") if (data or {}).get("key_type") in ssh_keys.KEY_TYPES else "rsa"

        def generate():
            return self.keygen(key_type, bits=bits, comment=self.comment())

        if state == "confirmed":
            if not live or data.get("state", ACTIVE) != ACTIVE:
                return Plan("none", data, data, version=version, message="no active key at %s" % self.where)
            if fingerprint and data.get("fingerprint") != fingerprint:
                return Plan("none", data, data, version=version,
                            message="the key changed since the host was updated: not confirmed")
            if is_confirmed(data) and not any(data.get(name) for name in FALLBACK_FIELDS):
                return Plan("none", data, data, version=version)
            return Plan("confirmed", data, record_confirmed(data, now), cas=version)
        if not live and version == 0 and state in ("present", "rotated", "regenerated"):
            self.check_unique()

        if state == "absent":
            if not live:
                return Plan("none", None, message="no key at %s" % self.where)
            return Plan("deleted", data, None, version=version, revoked_keys=revoked_public_keys(data), delete=True)
        if state == "revoked":
            if not live:
                return Plan("none", None, message="no key at %s: nothing to revoke" % self.where)
            if data.get("state") == REVOKED:
                return Plan("none", data, data, version=version, message="already revoked")
            return Plan("revoked", data, record_revoked(data, now), cas=version, revoked_keys=revoked_public_keys(data))
        if state == "regenerated":
            return Plan("regenerated", data, record_regenerated(data, generate(), now, rotation_days, role=self.role), cas=version,
                        revoked_keys=revoked_public_keys(data) if live else [])
        # present and rotated create a missing key
        if not live:
            return Plan("created", None, record_created(generate(), now, rotation_days), cas=version)
        if state == "present":
            return Plan("none", data, data, version=version)
        # rotated
        if data.get("state") == REVOKED:
            return Plan("none", data, data, version=version,
                        message="the key is revoked: not rotated (use state=regenerated to issue a new key)")
        if not (force or is_due(data, rotation_days, now, tenant_id=self.tenant_id, role=self.role)):
            return Plan("none", data, data, version=version, message="not due")
        return Plan("rotated", data, record_rotated(data, generate(), now, rotation_days, grace_hours, role=self.role), cas=version)

    def commit(self, plan):
        """Write the plan (check-and-set on the version it was planned from); returns the new version.

        When a rotation or regeneration loses its check-and-set to another run that replaced the
        key in the meantime, the other run's key stands: the plan becomes ``none`` with a one-line
        message (:func:`race_message`) instead of failing, so the caller goes on to install what
        Vault holds now. A write that landed although the client saw a conflict (a retry after a
        leader failover) is recognised by its own key and counts as written.
        """
        if plan.delete:
            self.client.delete_latest(self.mount, self.path)
            plan.version = None
            return None
        if not plan.changed:
            return plan.version
        try:
            plan.version = self.client.write(self.mount, self.path, plan.after, cas=plan.cas)
        except VaultCASConflict:
            if plan.action not in ("rotated", "regenerated", "created"):
                raise
            data, version = self.read()
            before, mine = (plan.before or {}).get("fingerprint"), (plan.after or {}).get("fingerprint")
            if data is not None and mine and data.get("fingerprint") == mine:
                plan.version = version
                return plan.version
            if data is None or data.get("fingerprint") in (None, before):
                raise
            for secret in (plan.after or {}).get("private_key"), (plan.after or {}).get("fallback_private_key"):
                self.discarded.append(secret)
            plan.action, plan.after, plan.version, plan.cas = "none", data, version, None
            plan.message = race_message(self.tenant_id, self.role, data.get("fingerprint"))
        self.publish(plan.after, plan.version, with_address=plan.action in ("created", "regenerated"))
        return plan.version

    def publish(self, data, version, with_address=False):
        """Publish the public fields of the tenant key in its custom metadata (module_utils.key_metadata).

        ``with_address`` also publishes the VPS address of the tenant record (a new key: the record
        publishes its later changes itself). Never fails: a view left behind is reported by its reader.
        """
        if self.role != key_metadata.PUBLISHED_ROLE:
            return None
        vps_ip = None
        if with_address:
            try:
                vps_ip = self.vps_ip()
            except VaultError:
                vps_ip = None
        return key_metadata.publish_key(self.client, self.vps_mount, self.tenant_id, self.role, data, version, vps_ip=vps_ip)

    def next_rotation(self, data, rotation_days=None):
        """The planned due moment of ``data`` (this store's key), see :func:`next_rotation`."""
        return next_rotation(data, self.tenant_id, self.role, rotation_days)

    # -- one-time download -------------------------------------------------------------------
    def plan_download(self):
        """Check that the key may be downloaded; returns ``(data, version)``."""
        data, version = self.read()
        if data is None:
            raise KeypairError("no key at %s: create it first" % self.where)
        if data.get("state", ACTIVE) != ACTIVE:
            raise KeypairError("the key at %s is %s: regenerate it before a download" % (self.where, data.get("state")))
        if not data.get("private_key"):
            raise KeypairError("the key at %s has no private key: regenerate it" % self.where)
        if data.get("downloaded_at"):
            raise KeypairError(
                "the key at %s was already downloaded at %s: regenerate it to download again"
                % (self.where, data["downloaded_at"])
            )
        return data, version

    def claim_download(self, data, version):
        """Mark ``downloaded_at`` with check-and-set; a concurrent download loses with VaultCASConflict.

        The mark is written before the key is handed out, so a key is delivered at most once.
        """
        record = record_downloaded(data, self.clock())
        new_version = self.client.write(self.mount, self.path, record, cas=version)
        self.publish(record, new_version)
        return record, new_version

    def vps_ip(self):
        """The tenant's VPS address from ``<mount>/<tenant>/record`` (``vps_ip``), or None."""
        mount, path = tenant_record_path(self.tenant_id, self.vps_mount)
        record = self.client.read_or_none(mount, path)
        if record is None:
            return None
        return record.data.get("vps_ip") or None
