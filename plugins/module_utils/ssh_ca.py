# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""SSH certificate mode on the Vault side: the SSH secrets engine as user CA and host CA, the
revocation list, and the per-tenant mode (see docs/ssh-certificates.md).

* :class:`CertificateAuthority` speaks to one SSH secrets engine mount (OpenBao/Vault ``ssh``): its
  issuers (CA keys; several during a rotation, the *default* one signs), its roles, and signing.
  :meth:`CertificateAuthority.plan` / :meth:`~CertificateAuthority.commit` carry out the
  lifecycle: ``present`` (mount, a first issuer, the roles), ``rotated`` (a second issuer that hosts
  learn to trust before it signs), ``switched`` (the newest issuer signs), ``retired`` (issuers
  other than the default are deleted).
* :class:`RevocationStore` keeps what the KRL of the hosts revokes (certificate serials, key ids,
  public keys) in ``<vps mount>/_ssh_ca/<user CA mount>``: a path no tenant id can take. Writes are
  check-and-set, entries are only ever added.
* :func:`tenant_mode` / :class:`ModeStore` read and write ``ssh_auth`` (``keys`` or ``certificates``)
  in the tenant record with check-and-set.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import time

from ansible_collections.penguinmails.vps.plugins.module_utils import ssh_certificates as sc
from ansible_collections.penguinmails.vps.plugins.module_utils.timeutil import format_time, utcnow
from ansible_collections.penguinmails.vps.plugins.module_utils.validators import (
    ValidationError,
    tenant_record_path,
    validate_mount,
    validate_tenant_id,
)
from ansible_collections.penguinmails.vps.plugins.module_utils.vault_client import VaultNotFound

DEFAULT_USER_CA_MOUNT = "ssh-user-ca"
DEFAULT_HOST_CA_MOUNT = "ssh-host-ca"
DEFAULT_ADMIN_ROLE = "admin"
DEFAULT_HOST_ROLE = "host"
DEFAULT_ADMIN_PRINCIPAL = "penguinmails-admin"
MODES = ("keys", "certificates")
CA_STATES = ("present", "rotated", "switched", "retired")
REVOCATIONS_FOLDER = "_ssh_ca"
ISSUER_PREFIX = "pm-"
_PRINCIPAL_RE = re.compile(r"[A-Za-z0-9._@:+-]{1,255}")
_ROLE_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.@-]{0,126}[A-Za-z0-9])?")
# Role fields compared with what Vault returns (Vault reports durations in seconds).
_DURATIONS = ("ttl", "max_ttl", "not_before_duration")


class CAError(Exception):
    """A CA operation that cannot be done (one line, no key material)."""


def validate_principal(principal):
    if not isinstance(principal, str) or not _PRINCIPAL_RE.fullmatch(principal):
        raise ValidationError("invalid principal %r: 1-255 of letters, digits and . _ @ : + -" % (str(principal)[:60],))
    return principal


def validate_role_name(name):
    if not isinstance(name, str) or not _ROLE_RE.fullmatch(name):
        raise ValidationError("invalid SSH role name %r" % (str(name)[:60],))
    return name


def duration_seconds(value):
    """Seconds of ``value``: an int, or a Vault duration string (``90``, ``10m``, ``1h``, ``8760h``)."""
    if value is None or value == "":
        return 0
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", str(value))
    if not match:
        raise ValidationError("invalid duration %r: a number of seconds or <n>s, <n>m, <n>h, <n>d" % (str(value)[:40],))
    return int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


# ---------------------------------------------------------------------------------------
# The SSH secrets engine
# ---------------------------------------------------------------------------------------
class Plan(object):
    """What a CA request will do (``actions``: a list of one-line descriptions) and the calls that do it."""

    __slots__ = ("actions", "calls", "issuers")

    def __init__(self):
        self.actions, self.calls, self.issuers = [], [], []

    @property
    def changed(self):
        return bool(self.actions)

    def add(self, action, method, path, payload=None):
        self.actions.append(action)
        self.calls.append((method, path, payload))


class CertificateAuthority(object):
    """One SSH secrets engine mount used as a CA."""

    def __init__(self, client, mount, clock=None):
        self.client = client
        self.mount = validate_mount(mount)
        self.clock = clock or time.time

    # -- reading -------------------------------------------------------------------------
    def issuers(self):
        """Every issuer: ``[{id, name, public_key, fingerprint, default}]``, the default first, then newest
        first ([] when the mount or its issuers do not exist)."""
        try:
            body = self.client.api("LIST", "%s/issuers" % self.mount, where="list of the issuers of %s" % self.mount)
        except VaultNotFound:
            return []
        info = (body.get("data") or {}).get("key_info") or {}
        found = []
        for issuer_id, item in info.items():
            public_key = (item.get("public_key") or "").strip()
            if not public_key:
                continue
            found.append({
                "id": issuer_id,
                "name": item.get("issuer_name") or "",
                "public_key": public_key,
                "fingerprint": sc.fingerprint_of_blob(sc.public_key_blob(public_key)),
                "default": bool(item.get("is_default")),
            })
        found.sort(key=lambda item: item["name"], reverse=True)  # pm-<UTC time>: newest first
        found.sort(key=lambda item: not item["default"])
        return found

    def public_keys(self):
        return [issuer["public_key"] for issuer in self.issuers()]

    def role(self, name):
        body = self.client.api_or_none("GET", "%s/roles/%s" % (self.mount, validate_role_name(name)))
        return (body or {}).get("data")

    def mount_type(self):
        """The type of the mount (``ssh``), None when it does not exist (needs read on sys/mounts)."""
        body = self.client.api("GET", "sys/mounts", where="the list of mounts")
        mounts = body.get("data") or body
        return (mounts.get(self.mount + "/") or {}).get("type")

    # -- signing -------------------------------------------------------------------------
    def sign(self, role, public_key, cert_type="user", principals=(), ttl=0, key_id=None):
        """Have Vault sign ``public_key``; returns the parsed certificate (see ssh_certificates.summary) plus
        ``certificate`` (the line) and ``issuer_id``."""
        payload = {"public_key": public_key.strip(), "cert_type": cert_type,
                   "valid_principals": ",".join(validate_principal(p) for p in principals)}
        if ttl:
            payload["ttl"] = "%ds" % int(ttl)
        if key_id:
            payload["key_id"] = key_id
        body = self.client.api("POST", "%s/sign/%s" % (self.mount, validate_role_name(role)), payload,
                               where="signing with %s/sign/%s" % (self.mount, role),
                               not_found="no SSH role %s on mount %s (set up the CA with penguinmails.vps.vault_setup)"
                               % (role, self.mount))
        data = body.get("data") or {}
        line = (data.get("signed_key") or "").strip()
        if not line:
            raise CAError("%s/sign/%s returned no certificate" % (self.mount, role))
        cert = sc.summary(sc.parse_certificate(line))
        cert.update(certificate=line, issuer_id=data.get("issuer_id") or "", ttl=cert["valid_before"] - int(self.clock()))
        return cert

    # -- lifecycle -----------------------------------------------------------------------
    def plan(self, state, key_type="ed25519", roles=None, description="penguinmails.vps SSH CA"):
        """Plan ``state`` (see the module docstring) from one read of the mount."""
        if state not in CA_STATES:
            raise ValidationError("invalid state %r: choose one of %s" % (state, ", ".join(CA_STATES)))
        plan = Plan()
        issuers = self.issuers()
        if state == "present":
            kind = self.mount_type()
            if kind is None:
                plan.add("enable the ssh secrets engine at %s/" % self.mount, "POST", "sys/mounts/%s" % self.mount,
                         {"type": "ssh", "description": description})
            elif kind != "ssh":
                raise CAError("mount %s/ exists but is a %s mount, not ssh" % (self.mount, kind))
            if not issuers:
                plan.add("generate the first CA key (%s) of %s" % (key_type, self.mount), "POST",
                         "%s/issuers/import/%s" % (self.mount, self.issuer_name()),
                         {"generate_signing_key": True, "key_type": key_type, "set_default": True})
            for name, wanted in sorted((roles or {}).items()):
                current = self.role(name) if kind == "ssh" else None
                payload = role_payload(wanted)
                if current is None or role_differs(current, payload):
                    plan.add("%s role %s of %s" % ("create" if current is None else "update", name, self.mount), "POST",
                             "%s/roles/%s" % (self.mount, validate_role_name(name)), payload)
        elif state == "rotated":
            if not issuers:
                raise CAError("%s has no CA key to rotate: set it up first (state=present)" % self.mount)
            if len(issuers) == 1:
                plan.add("add a second CA key (%s) to %s; it does not sign until switched" % (key_type, self.mount),
                         "POST", "%s/issuers/import/%s" % (self.mount, self.issuer_name()),
                         {"generate_signing_key": True, "key_type": key_type, "set_default": False})
        elif state == "switched":
            newest = max(issuers, key=lambda issuer: issuer["name"]) if issuers else None
            if newest and not newest["default"]:
                plan.add("sign with the newest CA key %s of %s" % (newest["fingerprint"], self.mount), "POST",
                         "%s/config/issuers" % self.mount, {"default": newest["id"]})
        elif state == "retired":
            if issuers and not any(issuer["default"] for issuer in issuers):
                raise CAError("%s has no default CA key: switch before retiring" % self.mount)
            for issuer in issuers:
                if not issuer["default"]:
                    plan.add("delete the CA key %s of %s" % (issuer["fingerprint"], self.mount), "DELETE",
                             "%s/issuer/%s" % (self.mount, issuer["id"]))
        plan.issuers = issuers
        return plan

    def commit(self, plan):
        for method, path, payload in plan.calls:
            self.client.api(method, path, payload, retry=False)
        plan.issuers = self.issuers()
        return plan

    def issuer_name(self):
        return ISSUER_PREFIX + time.strftime("%Y%m%dt%H%M%S", time.gmtime(self.clock()))


# Vault's key_id_format variables, written <name> in playbooks (braces would be Jinja there).
KEY_ID_VARIABLES = ("role_name", "token_display_name", "public_key_hash")


def key_id_format(text):
    """``<role_name>-<token_display_name>`` -> Vault's ``{{role_name}}-{{token_display_name}}``."""
    for name in KEY_ID_VARIABLES:
        text = text.replace("<%s>" % name, "{{%s}}" % name)
    return text


def role_payload(wanted):
    """The body of a role write: ``key_type: ca`` plus the wanted fields (durations as given)."""
    payload = {"key_type": "ca"}
    payload.update(dict((key, value) for key, value in (wanted or {}).items() if value is not None))
    if isinstance(payload.get("key_id_format"), str):
        payload["key_id_format"] = key_id_format(payload["key_id_format"])
    return payload


def _normal(key, value):
    if key in _DURATIONS:
        return duration_seconds(value)
    if isinstance(value, (list, tuple)):
        return ",".join(str(item) for item in value)
    if isinstance(value, dict):
        return dict((k, "" if v is None else str(v)) for k, v in value.items()) or ""
    if value is None:
        return ""
    return value


def role_differs(current, wanted):
    """True when a field of ``wanted`` differs from the role Vault returned."""
    for key, value in wanted.items():
        if key == "key_type":
            continue
        if _normal(key, current.get(key)) != _normal(key, value):
            return True
    return False


# ---------------------------------------------------------------------------------------
# Revocations (the KRL's content)
# ---------------------------------------------------------------------------------------
class RevocationStore(object):
    """What the hosts' KRL revokes for one user CA mount, kept in the vps KV mount."""

    KINDS = ("serials", "key_ids", "public_keys")

    def __init__(self, client, vps_mount, ca_mount, clock=None):
        self.client = client
        self.mount = validate_mount(vps_mount)
        self.path = "%s/%s" % (REVOCATIONS_FOLDER, validate_mount(ca_mount))
        self.clock = clock or utcnow

    @property
    def where(self):
        return "%s/%s" % (self.mount, self.path)

    def read(self):
        """``(data, version)``; ``({}, 0)`` when nothing was ever revoked."""
        secret = self.client.read_or_none(self.mount, self.path)
        if secret is None:
            return {}, 0
        return dict(secret.data or {}), secret.version

    def lists(self, data=None):
        """``{serials: [int], key_ids: [str], public_keys: [str]}`` of ``data`` (or of Vault now)."""
        data = self.read()[0] if data is None else data
        return {
            "serials": sorted(sc.parse_serial(entry["serial"]) for entry in data.get("serials") or []),
            "key_ids": sorted(entry["key_id"] for entry in data.get("key_ids") or []),
            "public_keys": sorted(entry["public_key"] for entry in data.get("public_keys") or []),
        }

    def plan(self, serials=(), key_ids=(), public_keys=(), reason=""):
        """``(new data or None when nothing is new, version read, the entries added)``."""
        data, version = self.read()
        now = format_time(self.clock())
        added = {"serials": [], "key_ids": [], "public_keys": []}
        have = self.lists(data)
        new = dict(data)
        for serial in serials or []:
            value = sc.parse_serial(serial)
            if value not in have["serials"] and str(value) not in [e["serial"] for e in added["serials"]]:
                added["serials"].append({"serial": str(value), "reason": reason, "revoked_at": now})
        for key_id in key_ids or []:
            key_id = str(key_id).strip()
            if not key_id or "\n" in key_id:
                raise ValidationError("invalid key id to revoke")
            if key_id not in have["key_ids"] and key_id not in [e["key_id"] for e in added["key_ids"]]:
                added["key_ids"].append({"key_id": key_id, "reason": reason, "revoked_at": now})
        for key in public_keys or []:
            line = sc.key_line(sc.public_key_blob(key))
            if line not in have["public_keys"] and line not in [e["public_key"] for e in added["public_keys"]]:
                added["public_keys"].append({"public_key": line, "reason": reason, "revoked_at": now})
        if not any(added.values()):
            return None, version, added
        for kind in self.KINDS:
            new[kind] = list(data.get(kind) or []) + added[kind]
        new["updated_at"] = now
        return new, version, added

    def commit(self, new, version):
        return self.client.write(self.mount, self.path, new, cas=version)


# ---------------------------------------------------------------------------------------
# The per-tenant mode
# ---------------------------------------------------------------------------------------
def tenant_mode(record):
    """``keys`` or ``certificates``: the ``ssh_auth`` of a tenant record (``keys`` when unset)."""
    mode = (record or {}).get("ssh_auth") or "keys"
    return mode if mode in MODES else "keys"


class ModeStore(object):
    """``ssh_auth`` of ``<vps mount>/<tenant>/record`` (check-and-set; the rest of the record untouched)."""

    def __init__(self, client, tenant_id, mount="vps", clock=None):
        self.client = client
        self.tenant_id = validate_tenant_id(tenant_id)
        self.mount, self.path = tenant_record_path(self.tenant_id, mount)
        self.clock = clock or utcnow

    @property
    def where(self):
        return "%s/%s" % (self.mount, self.path)

    def read(self):
        secret = self.client.read_or_none(self.mount, self.path)
        if secret is None or not secret.data:
            return None, 0
        return dict(secret.data), secret.version

    def plan(self, mode):
        """``(record, version, new record or None)``; refuses a tenant without a record."""
        if mode not in MODES:
            raise ValidationError("ssh_auth must be one of %s, not %r" % (", ".join(MODES), str(mode)[:40]))
        record, version = self.read()
        if record is None:
            raise CAError("no tenant record at %s: the mode is kept there" % self.where)
        if tenant_mode(record) == mode and record.get("ssh_auth") == mode:
            return record, version, None
        new = dict(record)
        new["ssh_auth"] = mode
        new["ssh_auth_changed_at"] = format_time(self.clock())
        return record, version, new

    def commit(self, new, version):
        return self.client.write(self.mount, self.path, new, cas=version)


# ---------------------------------------------------------------------------------------
# Signing keys that may already hold a certificate (host keys)
# ---------------------------------------------------------------------------------------
def signing_plan(keys, signing_key, cert_type, principals, renew_before, now):
    """For each ``{name, public_key, certificate}`` of ``keys``: keep its certificate, or sign (and why).

    A certificate is kept when it certifies that public key, was signed by ``signing_key`` (the CA key that
    signs now), is of ``cert_type``, names exactly ``principals`` and stays valid longer than
    ``renew_before`` seconds. Returns a list of ``{name, public_key, certificate, sign, reason}``.
    """
    wanted = sorted(set(principals))
    plan = []
    for item in keys:
        name, public_key = item.get("name") or "", (item.get("public_key") or "").strip()
        if not public_key:
            raise ValidationError("keys: %s has no public_key" % (name or "an entry"))
        key = sc.key_line(sc.public_key_blob(public_key))
        current = (item.get("certificate") or "").strip()
        reason = ""
        if not current:
            reason = "no certificate"
        else:
            try:
                cert = sc.parse_certificate(current)
            except sc.CertificateError:
                cert, reason = None, "the certificate cannot be read"
            if cert is not None:
                if cert["public_key"] != key:
                    reason = "the certificate is for another key"
                elif signing_key is None or cert["ca_public_key"] != sc.key_line(sc.public_key_blob(signing_key)):
                    reason = "signed by another CA key"
                elif cert["cert_type"] != cert_type:
                    reason = "a %s certificate" % cert["cert_type"]
                elif sorted(cert["principals"]) != wanted:
                    reason = "other principals"
                elif cert["valid_before"] - now <= renew_before:
                    reason = "expires soon"
        plan.append({"name": name, "public_key": key, "certificate": current if not reason else "",
                     "sign": bool(reason), "reason": reason or "valid"})
    return plan
