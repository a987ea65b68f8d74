# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tenant self-service download of the tenant SSH key (docs/ssh-key-lifecycle.md, "Tenant self-service download").

When a tenant key is created, rotated or regenerated, the operator side (the automation's token) makes an
**offer**: a single-use response-wrapped read of exactly the new version of ``<mount>/data/<tenant>/tenant_ssh``
(TTL ``max(24 h, grace)``), stored with its accessor, the key's fingerprint and its expiry at
``<mount>/<tenant>/tenant_ssh_download``. Nothing new is stored in plaintext: the private key stays where it was
and only Vault's wrapping token, usable once, refers to it.

The tenant's own login (policy ``tenant``) may read that one path of its own tenant and update it (to record
``downloaded_at``); it still cannot read ``tenant_ssh`` itself. It checks the token's creation path with
``sys/wrapping/lookup`` and unwraps it: Vault hands the response out **once**. A second attempt finds the offer
marked downloaded, or a token Vault no longer knows (someone unwrapped it: the key may be intercepted), and is
refused; another tenant's login cannot even read the offer.

The operator's one-time download (``vault_ssh_key_download``) withdraws a waiting offer by using it up itself
(:func:`withdraw`), and refuses a key the tenant already took, so a key goes out once whichever path is used.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

from ansible_collections.penguinmails.vps.plugins.module_utils import ssh_keys
from ansible_collections.penguinmails.vps.plugins.module_utils.timeutil import format_time, parse_time, utcnow
from ansible_collections.penguinmails.vps.plugins.module_utils.validators import ssh_key_path
from ansible_collections.penguinmails.vps.plugins.module_utils.vault_client import (
    VaultCASConflict,
    VaultError,
    VaultNotFound,
    VaultPermissionDenied,
)

OFFER_SUFFIX = "_download"
# An offer lasts at least this long (the grace period of a rotation, when longer).
DEFAULT_OFFER_HOURS = 24
OFFERED = "offered"
DOWNLOADED = "downloaded"
WITHDRAWN = "withdrawn"
REVOKED = "revoked"
# Why a self-service download failed (the playbook audits every one of them as critical, except ``input``).
REASONS = ("already_downloaded", "token_used", "expired", "no_offer", "revoked", "denied", "login", "wrong_origin", "input",
           "error")


class DownloadError(Exception):
    """A self-service download failed; ``reason`` is one of :data:`REASONS`; the message holds no secret."""

    def __init__(self, message, reason="error"):
        super(DownloadError, self).__init__(message)
        self.reason = reason


def offer_path(tenant_id, mount="vps"):
    """``(mount, "<tenant>/tenant_ssh_download")``."""
    mount, path = ssh_key_path(tenant_id, "tenant", mount)
    return mount, path + OFFER_SUFFIX


def offer_hours(grace_hours):
    """How long an offer lasts: the grace period, and never less than :data:`DEFAULT_OFFER_HOURS`."""
    return max(DEFAULT_OFFER_HOURS, int(grace_hours or 0))


def _read_offer(client, mount, path):
    """``(data or None, cas)`` of the offer record (``cas`` 0 when it never existed)."""
    secret = client.read_or_none(mount, path)
    if secret is not None and secret.data:
        return secret.data, secret.version
    try:
        meta = client.metadata(mount, path)
    except VaultNotFound:
        return None, 0
    return None, int(meta.get("current_version") or 0)


def make_offer(client, tenant_id, key, key_version, hours, mount="vps", now=None):
    """Operator side: offer ``key_version`` of the tenant key (``key``: its record) to the tenant, once.

    Returns the offer without its token. An offer of an older version never replaces one of a newer version
    (two rotations whose offers are written out of order).
    """
    now = now or utcnow()
    key_mount, key_path = ssh_key_path(tenant_id, "tenant", mount)
    mount, path = offer_path(tenant_id, mount)
    info = client.wrap_read(key_mount, key_path, ttl="%ds" % (int(hours) * 3600), version=key_version)
    if not info.get("token"):
        raise VaultError("Vault returned no wrapping token for %s/%s" % (key_mount, key_path))
    offer = dict(state=OFFERED, token=info["token"], accessor=info.get("accessor") or "",
                 creation_path=info.get("creation_path") or "%s/data/%s" % (key_mount, key_path),
                 fingerprint=key.get("fingerprint") or "", key_version=int(key_version), offered_at=format_time(now),
                 expires_at=format_time(now + datetime.timedelta(hours=int(hours))), downloaded_at=None, downloaded_by=None)
    for _attempt in range(3):
        current, cas = _read_offer(client, mount, path)
        if current and int(current.get("key_version") or 0) > int(key_version):
            return public_offer(current)
        try:
            client.write(mount, path, offer, cas=cas)
            return public_offer(offer)
        except VaultCASConflict:
            continue
    raise VaultError("the download offer at %s/%s kept changing while it was written" % (mount, path))


def public_offer(offer):
    """The offer without its token (what a result may show)."""
    return dict((key, value) for key, value in (offer or {}).items() if key != "token")


def withdraw(client, tenant_id, key, mount="vps", check_mode=False, now=None):
    """Operator side, before the operator hands out ``key`` (the current tenant record) itself.

    A waiting offer of this key is used up here (unwrapped and discarded), so the tenant cannot also take it;
    raises :class:`DownloadError` when the tenant already took it (``already_downloaded``) or when its token was
    used by someone (``token_used``). An offer of another key, an expired or withdrawn one, changes nothing.
    """
    now = now or utcnow()
    mount, path = offer_path(tenant_id, mount)
    offer, cas = _read_offer(client, mount, path)
    if not offer or offer.get("fingerprint") != key.get("fingerprint") or offer.get("state") == WITHDRAWN:
        return None
    where = "%s/%s" % (mount, path)
    if offer.get("state") == DOWNLOADED or offer.get("downloaded_at"):
        raise DownloadError("the tenant already downloaded this key itself at %s (%s): regenerate it to hand out a new one"
                            % (offer.get("downloaded_at") or "an unknown time", where), "already_downloaded")
    expires = parse_time(offer.get("expires_at"))
    if expires is not None and expires <= now:
        return None
    if check_mode:
        return public_offer(offer)
    try:
        client.unwrap(offer.get("token") or "")
    except VaultError:
        raise DownloadError("the tenant's single-use download of this key (%s) was already used by someone: "
                            "regenerate the key" % where, "token_used")
    record = dict(public_offer(offer), state=WITHDRAWN, downloaded_at=format_time(now), downloaded_by="operator")
    client.write(mount, path, record, cas=cas)
    return public_offer(record)


def revoke_offer(client, tenant_id, mount="vps", now=None):
    """Operator side, when the tenant key is revoked or deleted: a waiting offer is used up and marked ``revoked``.

    Returns True when an offer was waiting. Its token is unwrapped and discarded (a token someone already used
    changes nothing); the tenant is then told the key was revoked.
    """
    now = now or utcnow()
    mount, path = offer_path(tenant_id, mount)
    offer, cas = _read_offer(client, mount, path)
    if not offer or offer.get("state") != OFFERED:
        return False
    try:
        client.unwrap(offer.get("token") or "")
    except VaultError:
        pass  # used or expired: nothing left to take
    client.write(mount, path, dict(public_offer(offer), state=REVOKED, revoked_at=format_time(now)), cas=cas)
    return True


class SelfDownload(object):
    """The tenant side, run with the tenant's own Vault token."""

    def __init__(self, client, tenant_id, mount="vps", clock=None):
        self.client = client
        self.tenant_id = tenant_id
        self.mount, self.path = offer_path(tenant_id, mount)
        self.key_mount, self.key_path = ssh_key_path(tenant_id, "tenant", mount)
        self.clock = clock or utcnow

    @property
    def where(self):
        return "%s/%s" % (self.mount, self.path)

    def read(self):
        """``(offer, version)``; refuses a missing, used or expired offer (without touching its token)."""
        try:
            secret = self.client.read_or_none(self.mount, self.path)
        except VaultPermissionDenied:
            raise DownloadError("this Vault login may not read the key download of tenant %s (%s): a tenant downloads "
                                "its own key only" % (self.tenant_id, self.where), "denied")
        if secret is None or not secret.data:
            raise DownloadError("no key download is waiting for tenant %s (%s): ask your operator to regenerate the key"
                                % (self.tenant_id, self.where), "no_offer")
        offer = secret.data
        if offer.get("state") == REVOKED:
            raise DownloadError("the key %s of tenant %s was revoked at %s before it was downloaded: ask your operator to "
                                "regenerate it" % (offer.get("fingerprint") or "", self.tenant_id,
                                                   offer.get("revoked_at") or "an unknown time"), "revoked")
        if offer.get("state") in (DOWNLOADED, WITHDRAWN) or offer.get("downloaded_at"):
            raise DownloadError(
                "the key %s of tenant %s was already downloaded at %s (%s): it is handed out once; if that was not you, "
                "the key may be in other hands: ask your operator to regenerate it"
                % (offer.get("fingerprint") or "", self.tenant_id, offer.get("downloaded_at") or "an unknown time",
                   "by the operator" if offer.get("state") == WITHDRAWN else "self-service"), "already_downloaded")
        expires = parse_time(offer.get("expires_at"))
        if expires is not None and expires <= self.clock():
            raise DownloadError("the download of the key %s of tenant %s expired at %s: ask your operator to regenerate "
                                "the key" % (offer.get("fingerprint") or "", self.tenant_id, offer["expires_at"]), "expired")
        return offer, secret.version

    def current_version(self):
        """The current version of the tenant key (its metadata, which the tenant may read), or None."""
        try:
            return int(self.client.metadata(self.key_mount, self.key_path).get("current_version") or 0) or None
        except VaultError:
            return None

    def take(self, offer):
        """Check the token's origin, unwrap it (once, Vault-enforced) and return the key record it holds."""
        token = offer.get("token") or ""
        expected = "%s/data/%s" % (self.key_mount, self.key_path)
        try:
            looked = self.client.api("POST", "sys/wrapping/lookup", {"token": token}, where="lookup of the download token",
                                     retry=False).get("data") or {}
        except VaultError:
            looked = None
        if looked is None:
            raise DownloadError(
                "the single-use download token of tenant %s (key %s) is no longer valid: someone already used it, or it "
                "was revoked; the key may be in other hands: ask your operator to regenerate it"
                % (self.tenant_id, offer.get("fingerprint") or ""), "token_used")
        if looked.get("creation_path") != expected:
            raise DownloadError("the download token of tenant %s was not made by a read of %s (it comes from %s): refused"
                                % (self.tenant_id, expected, looked.get("creation_path") or "nowhere known"), "wrong_origin")
        try:
            wrapped = self.client.unwrap(token)
        except VaultError:
            raise DownloadError(
                "the single-use download token of tenant %s (key %s) was used by someone else a moment ago: the key may be "
                "in other hands: ask your operator to regenerate it" % (self.tenant_id, offer.get("fingerprint") or ""),
                "token_used")
        record = (wrapped or {}).get("data") or {}
        private_key = record.get("private_key") or ""
        try:
            derived = ssh_keys.fingerprint(ssh_keys.public_key_from_private(private_key)) if private_key else None
        except ssh_keys.SSHKeyError:
            derived = None
        if not derived or derived != (offer.get("fingerprint") or record.get("fingerprint")):
            raise DownloadError("the download of tenant %s did not hold the key %s it announced: ask your operator to "
                                "regenerate the key" % (self.tenant_id, offer.get("fingerprint") or ""), "error")
        return record, derived

    def record(self, offer, version):
        """Mark the offer downloaded (check-and-set); returns ``(downloaded_at, error or None)``.

        The key is already in the tenant's hands here: a mark that fails is reported, never undone.
        """
        moment = format_time(self.clock())
        marked = dict(public_offer(offer), state=DOWNLOADED, downloaded_at=moment, downloaded_by="tenant")
        try:
            self.client.write(self.mount, self.path, marked, cas=version)
        except VaultError as exc:
            return moment, str(exc)
        return moment, None
