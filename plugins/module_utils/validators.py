# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Input validators and Vault path builders.

Every Vault path in this collection is built here, from validated parts, so that a
tenant id such as ``../x`` can never address another secret.  The validators raise
:class:`ValidationError` (a ``ValueError``) with a one-line message that names the
offending value and the rule it broke; callers turn that into ``fail_json`` or an
``AnsibleError`` without a traceback.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import re

TENANT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z"
_TENANT_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# A generic path segment below a mount: no traversal, no whitespace, no control chars.
_SEGMENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}")
_MOUNT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

# The secret names below a tenant (README.md, "Vault layout"): vps/<tenant>/admin_ssh, vps/<tenant>/tenant_ssh.
SSH_KEY_ROLES = ("admin", "tenant")

DEFAULT_MOUNTS = {"vps": "vps", "smtp": "smtp", "dkim": "dkim"}


class ValidationError(ValueError):
    """Raised for malformed input; the message is safe to show (it never holds a secret)."""


def _show(value, limit=80):
    """Render a rejected value for an error message: repr, truncated, never multi-line."""
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def validate_tenant_id(tenant_id):
    """Return ``tenant_id`` if it matches ``^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\\Z`` (no trailing newline)."""
    if not isinstance(tenant_id, str):
        raise ValidationError("invalid tenant id %s: must be a string" % _show(tenant_id))
    if _TENANT_ID_RE.fullmatch(tenant_id):
        return tenant_id
    if ".." in tenant_id or "/" in tenant_id:
        reason = "path traversal or '/' is not allowed"
    elif not tenant_id:
        reason = "it is empty"
    elif len(tenant_id) > 64:
        reason = "longer than 64 characters"
    elif any(ch in tenant_id for ch in "\r\n\t ") or not tenant_id.isprintable():
        reason = "whitespace or control characters are not allowed"
    else:
        reason = "must match %s" % TENANT_ID_PATTERN
    raise ValidationError("invalid tenant id %s: %s" % (_show(tenant_id), reason))


def check_tenant_unique(tenant_id, existing_ids):
    """Refuse ``tenant_id`` when an existing id differs from it only by case.

    Ids that differ only by case are one tenant (Vault userpass logins, e-mail addresses and host
    accounts are case-insensitive): creating the second one is refused, never merged.
    """
    tenant_id = validate_tenant_id(tenant_id)
    for other in existing_ids:
        if other != tenant_id and other.lower() == tenant_id.lower():
            raise ValidationError(
                "tenant id %s collides with the existing tenant %s: ids that differ only by case are one tenant"
                % (_show(tenant_id), _show(other))
            )
    return tenant_id


# The longest Linux user name useradd accepts without complaint.
MAX_ACCOUNT_LENGTH = 32
ACCOUNT_PREFIX = "tenant-"


def tenant_account(tenant_id):
    """The tenant's Unix account on its VPS, unique per tenant and at most 32 characters.

    ``tenant-<id in lower case>`` when that fits; a longer id keeps its first 14 characters and
    gets 10 hex digits of the SHA-256 of the lower-case id: ``tenant-<14>-<10 hex>``. Ids are
    unique regardless of case (:func:`check_tenant_unique`), so two tenants never share an
    account; the account also carries its tenant in its GECOS field, and the module that creates
    it refuses an account that belongs to another tenant.
    """
    name = validate_tenant_id(tenant_id).lower()
    account = ACCOUNT_PREFIX + name
    if len(account) <= MAX_ACCOUNT_LENGTH:
        return account
    digest = hashlib.sha256(name.encode("ascii")).hexdigest()[:10]
    return "%s%s-%s" % (ACCOUNT_PREFIX, name[: MAX_ACCOUNT_LENGTH - len(ACCOUNT_PREFIX) - 11], digest)


def validate_dns_label(label, what="DNS label"):
    """Return ``label`` if it is a letters-digits-hyphen label of 1 to 63 characters."""
    if not isinstance(label, str) or not _LABEL_RE.fullmatch(label):
        raise ValidationError(
            "invalid %s %s: must be 1-63 letters, digits or '-', not starting or ending with '-'"
            % (what, _show(label))
        )
    return label


def validate_domain(domain):
    """Return the domain, lower-cased and without a trailing dot, if it is a valid host name.

    Internationalised names must be given in their IDNA (``xn--``) form.
    """
    if not isinstance(domain, str) or not domain:
        raise ValidationError("invalid domain %s: must be a non-empty string" % _show(domain))
    name = domain[:-1] if domain.endswith(".") else domain
    try:
        name.encode("ascii")
    except UnicodeEncodeError:
        raise ValidationError("invalid domain %s: use the IDNA (xn--) form" % _show(domain))
    if len(name) > 253:
        raise ValidationError("invalid domain %s: longer than 253 characters" % _show(domain))
    labels = name.split(".")
    if len(labels) < 2:
        raise ValidationError("invalid domain %s: needs at least two labels" % _show(domain))
    for label in labels:
        if not _LABEL_RE.fullmatch(label):
            raise ValidationError(
                "invalid domain %s: label %s must be 1-63 letters, digits or '-', "
                "not starting or ending with '-'" % (_show(domain), _show(label))
            )
    if labels[-1].isdigit():
        raise ValidationError("invalid domain %s: the top-level label cannot be numeric" % _show(domain))
    return name.lower()


def validate_selector(selector):
    """Return a DKIM selector if it is a single DNS label."""
    return validate_dns_label(selector, what="DKIM selector")


def validate_mount(mount):
    if not isinstance(mount, str) or not _MOUNT_RE.fullmatch(mount):
        raise ValidationError("invalid Vault mount %s" % _show(mount))
    return mount


def validate_role(role):
    if role not in SSH_KEY_ROLES:
        raise ValidationError("invalid key role %s: must be one of %s" % (_show(role), ", ".join(SSH_KEY_ROLES)))
    return role


# ---------------------------------------------------------------------------------------
# Path builders: the only places where Vault paths for tenant secrets are put together.
# They return (mount, path-below-mount).
# ---------------------------------------------------------------------------------------
def ssh_key_path(tenant_id, role, mount=DEFAULT_MOUNTS["vps"]):
    return validate_mount(mount), "%s/%s_ssh" % (validate_tenant_id(tenant_id), validate_role(role))


def tenant_record_path(tenant_id, mount=DEFAULT_MOUNTS["vps"]):
    return validate_mount(mount), "%s/record" % validate_tenant_id(tenant_id)


def smtp_admin_path(tenant_id, mount=DEFAULT_MOUNTS["smtp"]):
    return validate_mount(mount), "%s/admin" % validate_tenant_id(tenant_id)


def dkim_key_path(domain, selector, mount=DEFAULT_MOUNTS["dkim"]):
    return validate_mount(mount), "%s/%s" % (validate_domain(domain), validate_selector(selector))


def dkim_domain_path(domain, mount=DEFAULT_MOUNTS["dkim"]):
    return validate_mount(mount), validate_domain(domain)


def split_secret_path(path, mounts=None):
    """Split ``mount/rest`` and validate every part.

    ``mounts`` maps the roles ``vps``, ``smtp`` and ``dkim`` to mount names.  Below a
    tenant mount (``vps``, ``smtp``) the first segment must be a tenant id; below the
    ``dkim`` mount come a domain and a selector.  Any other segment must be a plain
    name: no ``.``/``..``, no empty segment, no whitespace.

    Returns ``(mount, rest)``; ``rest`` may be empty (the mount's root, for listing).
    """
    mounts = dict(DEFAULT_MOUNTS, **(mounts or {}))
    if not isinstance(path, str) or not path.strip("/"):
        raise ValidationError("invalid Vault path %s: must be 'mount/path'" % _show(path))
    segments = path.strip("/").split("/")
    mount, rest = segments[0], segments[1:]
    try:
        validate_mount(mount)
        if mount in (mounts["vps"], mounts["smtp"]) and rest:
            if rest[0] in ("", ".", ".."):
                raise ValidationError("invalid tenant id: path traversal is not allowed")
            validate_tenant_id(rest[0])
            others = rest[1:]
        elif mount == mounts["dkim"] and rest:
            validate_domain(rest[0])
            if len(rest) > 1:
                validate_selector(rest[1])
            if len(rest) > 2:
                raise ValidationError("a DKIM path is dkim/<domain>/<selector>")
            others = []
        else:
            others = rest
        for segment in others:
            if not _SEGMENT_RE.fullmatch(segment):
                raise ValidationError("segment %s is not allowed" % _show(segment))
    except ValidationError as exc:
        raise ValidationError("invalid Vault path %s: %s" % (_show(path), exc))
    return mount, "/".join(rest)
