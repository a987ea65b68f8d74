# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Vault side of the SSH key lifecycle (DESIGN.md, "Vault layout" and "Rotation without lockout").

A key lives at ``<mount>/<tenant>/<role>_ssh`` (built by ``validators.ssh_key_path``) with the fields
``private_key``, ``public_key``, ``fingerprint``, ``key_type``, ``created_at``, ``last_rotated``,
``rotation_policy``, ``state`` (active, revoked), ``grace_public_key``, ``grace_until`` and, for a
downloaded key, ``downloaded_at``.

Every change is planned from one read (:meth:`KeypairStore.plan`) and written with check-and-set on
the version that was read (:meth:`KeypairStore.commit`): ``cas=0`` when the secret never existed,
``cas=<version read>`` otherwise.  Of two concurrent writers exactly one wins; the other gets
``VaultCASConflict`` and nothing of it is stored.  Replaced versions stay in the KV history.

The record builders (``record_*``) and :func:`is_due` are pure functions of the stored fields and
the current time, so the lifecycle rules can be tested without a server.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

from ansible_collections.penguinmails.vps.plugins.module_utils import ssh_keys
from ansible_collections.penguinmails.vps.plugins.module_utils.validators import (
    ValidationError,
    ssh_key_path,
    tenant_record_path,
    validate_role,
    validate_tenant_id,
)
from ansible_collections.penguinmails.vps.plugins.module_utils.timeutil import (  # noqa: F401 - re-exported
    format_time,
    parse_time,
    utcnow,
)
from ansible_collections.penguinmails.vps.plugins.module_utils.vault_client import VaultNotFound

STATES = ("present", "rotated", "revoked", "absent", "regenerated")
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
    "grace_public_key",
    "grace_fingerprint",
    "grace_until",
    "downloaded_at",
    "revoked_at",
)


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


def is_due(data, rotation_days, now):
    """True when the key's last rotation (or creation) is ``rotation_days`` or more ago.

    A record without a readable time is due: better one rotation too many than a key that never
    rotates.
    """
    last = parse_time(data.get("last_rotated")) or parse_time(data.get("created_at"))
    if last is None:
        return True
    return now >= last + datetime.timedelta(days=rotation_days)


def grace_active(data, now):
    until = parse_time(data.get("grace_until"))
    return bool(data.get("grace_public_key")) and until is not None and now < until


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


def record_rotated(old, pair, now, rotation_days, grace_hours):
    """The new record after a rotation: the old public key becomes the grace key.

    ``downloaded_at`` is dropped: the new private key has not been handed out yet.
    """
    record = _key_fields(pair, now, rotation_days)
    record["created_at"] = old.get("created_at") or format_time(now)
    if grace_hours > 0 and old.get("public_key") and old.get("state", ACTIVE) == ACTIVE:
        record["grace_public_key"] = old["public_key"]
        record["grace_fingerprint"] = old.get("fingerprint") or _safe_fingerprint(old["public_key"])
        record["grace_until"] = format_time(now + datetime.timedelta(hours=grace_hours))
    return record


def record_regenerated(old, pair, now, rotation_days):
    """A fresh key that replaces the old one at once (no grace key), downloadable again."""
    record = _key_fields(pair, now, rotation_days)
    record["created_at"] = (old or {}).get("created_at") or format_time(now)
    return record


def record_revoked(old, now):
    """The revoked record: public key kept (hosts must drop it), private key and grace key removed.

    The private key stays in the KV history (older versions), so nothing is lost.
    """
    record = dict((k, v) for k, v in old.items() if k not in ("private_key", "grace_public_key", "grace_fingerprint", "grace_until"))
    record["state"] = REVOKED
    record["revoked_at"] = format_time(now)
    return record


def record_downloaded(old, now):
    record = dict(old)
    record["downloaded_at"] = format_time(now)
    return record


def revoked_public_keys(old):
    """The public keys a revocation takes away: the current one and a grace key, if any."""
    keys = []
    for name in ("public_key", "grace_public_key"):
        if old.get(name):
            keys.append(old[name])
    return keys


def public_view(data):
    if data is None:
        return None
    return dict((k, data[k]) for k in PUBLIC_FIELDS if data.get(k) not in (None, ""))


def _safe_fingerprint(public_key):
    try:
        return ssh_keys.fingerprint(public_key)
    except ssh_keys.SSHKeyError:
        return None


def id8(tenant_id):
    return validate_tenant_id(tenant_id)[:8]


def tenant_user(tenant_id):
    """The login of a tenant on its VPS: ``tenant-<first 8 characters of the tenant id>``."""
    return "tenant-%s" % id8(tenant_id)


# ---------------------------------------------------------------------------------------
# Plans and the store
# ---------------------------------------------------------------------------------------
class Plan(object):
    """What a lifecycle request will do; :meth:`KeypairStore.commit` carries it out."""

    __slots__ = ("action", "before", "after", "cas", "version", "message", "revoked_keys", "delete")

    def __init__(self, action, before, after=None, cas=None, version=None, message=None, revoked_keys=None, delete=False):
        self.action = action  # none, created, rotated, regenerated, revoked, deleted
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
    def plan(self, state, key_type="rsa", bits=None, rotation_days=90, grace_hours=24, force=False):
        if state not in STATES:
            raise ValidationError("invalid state %r: choose one of %s" % (state, ", ".join(STATES)))
        if int(rotation_days) < 1:
            raise ValidationError("rotation_days must be at least 1, not %s" % rotation_days)
        if int(grace_hours) < 0:
            raise ValidationError("grace_hours cannot be negative (%s)" % grace_hours)
        if key_type not in ssh_keys.KEY_TYPES:
            raise ValidationError("invalid key_type %r: choose one of %s" % (key_type, ", ".join(ssh_keys.KEY_TYPES)))
        data, version = self.read()
        now = self.clock()
        live = data is not None

        def generate():
            return self.keygen(key_type, bits=bits, comment=self.comment())

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
            return Plan("regenerated", data, record_regenerated(data, generate(), now, rotation_days), cas=version,
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
        if not (force or is_due(data, rotation_days, now)):
            return Plan("none", data, data, version=version, message="not due")
        return Plan("rotated", data, record_rotated(data, generate(), now, rotation_days, grace_hours), cas=version)

    def commit(self, plan):
        """Write the plan (check-and-set on the version it was planned from); returns the new version."""
        if plan.delete:
            self.client.delete_latest(self.mount, self.path)
            plan.version = None
            return None
        if plan.changed:
            plan.version = self.client.write(self.mount, self.path, plan.after, cas=plan.cas)
        return plan.version

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
        return record, new_version

    def vps_ip(self):
        """The tenant's VPS address from ``<mount>/<tenant>/record`` (``vps_ip``), or None."""
        mount, path = tenant_record_path(self.tenant_id, self.vps_mount)
        record = self.client.read_or_none(mount, path)
        if record is None:
            return None
        return record.data.get("vps_ip") or None
