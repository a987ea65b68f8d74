# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Audit events of penguinmails.vps: model, allow-lists, redaction, hash chain, sinks, anchors and
the verify command.

An event has the seed's fields ``timestamp, action, tenantId, userId, ipAddress, status,
details`` plus ``severity`` and, once written by :class:`AuditLog`, ``context``, ``chain_id``,
``seq``, ``prev_hash``, ``hash_alg`` and ``hash``.  ``hash`` is SHA-256 (or HMAC-SHA256 with a
chain key) over the canonical JSON of the event without ``hash``; since that includes
``prev_hash``, editing, removing or reordering any event breaks every later link.  What the file
alone cannot show (its end cut off, or the whole file replaced) is found against *anchors*: the
copies of the events and the end-of-run checkpoints that syslog and webhooks received.

The verify command needs only the Python standard library::

    python3 -m ansible_collections.penguinmails.vps.plugins.module_utils.audit verify FILE [--anchor ...]

(with the collections directory on ``PYTHONPATH``), or the playbook ``penguinmails.vps.audit_verify``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import datetime
import hashlib
import hmac
import json
import os
import re
import socket
import ssl
import sys
import time
import uuid

try:  # POSIX only; the file sink degrades to unlocked appends elsewhere.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

GENESIS_HASH = "0" * 64
REDACTED = "********"
STATUSES = ("success", "failure")
SEVERITIES = ("info", "warning", "critical")
ACTION_PATTERN = r"^[a-z][a-z0-9_]{2,63}$"
_ACTION_RE = re.compile(ACTION_PATTERN)
EVENT_FIELDS = ("timestamp", "action", "tenantId", "userId", "ipAddress", "status", "severity", "details")
CHAIN_FIELDS = ("chain_id", "seq", "prev_hash", "hash_alg", "hash")
CHECKPOINT_ACTION = "audit_checkpoint"
CHAIN_BREAK_ACTION = "chain_break"

# ---------------------------------------------------------------------------------------
# Actions and their detail fields: THE place to add an action.
# ---------------------------------------------------------------------------------------
# Fields any action may carry in ``details`` (an unknown action keeps only these).
GENERIC_FIELDS = ("role", "mode", "trigger", "host", "reason", "source", "error", "failedTask", "failed_task",
                  "count", "forced", "secretType")
_SSH_KEY_FIELDS = ("roles", "vaultChanged", "hostChanged", "vaultOnly", "stage", "supersededBy", "fingerprint",
                   "keyType", "graceUntil", "grace_until", "output")
_SMTP_APPLIED_FIELDS = ("username", "passwordReset", "verified")
_MIGRATION_FIELDS = ("serverName", "newVpsId", "newVpsIp", "oldVpsId", "oldVpsIp", "oldVpsName", "step", "stage",
                     "abandonedRun")
_MAIL_FIELDS = ("messages", "bytes", "seconds", "flagUpdates", "snapshotId", "snapshotTime", "rpoSeconds", "serverName")
_DKIM_FIELDS = ("domain", "oldSelector", "newSelector", "selector", "verified")
_CERT_FIELDS = ("serial", "keyId", "principals", "ttl", "validBefore", "issuerFingerprint", "fingerprint", "certType",
                "keyType", "mount", "tenants")

# action -> (default severity, or None for "critical on failure, info on success"; detail fields besides GENERIC_FIELDS)
ACTIONS = {
    "ssh_key_rotated": (None, _SSH_KEY_FIELDS),
    "ssh_key_regenerated": (None, _SSH_KEY_FIELDS),
    "ssh_key_revoked": (None, ("roles", "vaultChanged", "hostChanged", "removedKeys", "fingerprint")),
    "ssh_key_downloaded": (None, ("output", "fingerprint", "downloadedAt", "wrapCreationPath")),
    "host_key_recorded": (None, ("fingerprints", "serverName")),
    "tenant_notified": (None, ("event",)),
    "bulk_rotation_completed": (None, ("rotatedCount", "failedCount", "skippedCount", "failedTenants",
                                       "tenantsWithoutHost", "hostsUpdated")),
    "vps_migration_completed": (None, _MIGRATION_FIELDS + ("oldVpsWiped", "oldVpsDestroyed", "resumed", "steps", "dkim",
                                                           "rotated", "failedBuilds", "mailSource", "mailMessages",
                                                           "mailDeltaMessages", "rpoSeconds", "mailLossAccepted")),
    "vps_migration_failed": ("critical", _MIGRATION_FIELDS),
    "vps_migration_aborted": ("warning", _MIGRATION_FIELDS + ("destroyed",)),
    "vps_migration_refused": ("warning", _MIGRATION_FIELDS),
    "vps_build_failed": ("warning", ("serverName", "failedServiceid", "replacedBy")),
    "mail_copied": (None, _MAIL_FIELDS),
    "mail_delta_copied": (None, _MAIL_FIELDS + ("oldQueue",)),
    "mail_loss_accepted": ("critical", ("step", "serverName", "oldVpsIp")),
    "mail_backup_completed": (None, _MAIL_FIELDS + ("dataAdded", "removed", "snapshots", "initialised")),
    "mail_backup_failed": ("critical", ("stage",)),
    "provider_ssh_key_added": (None, ("keyName", "fingerprint", "serverName")),
    "provider_ssh_key_removed": (None, ("keyName", "serverName")),
    "smtp_credentials_recovered": (None, _SMTP_APPLIED_FIELDS),
    "smtp_password_applied": (None, _SMTP_APPLIED_FIELDS),
    "smtp_password_rotated": (None, ("secretKeyRotated",)),
    "dkim_key_rotated": (None, _DKIM_FIELDS),
    "dkim_rotated": (None, _DKIM_FIELDS),
    "ssh_login_failed": ("warning", ("sources", "users")),
    "ssh_certificate_signed": (None, _CERT_FIELDS),
    "ssh_host_certificate_signed": (None, _CERT_FIELDS),
    "ssh_certificate_revoked": (None, ("serials", "keyIds", "publicKeys", "mount", "hostCount", "failedTenants")),
    "ssh_auth_changed": (None, ("previousMode", "newMode", "stage", "vaultChanged", "hostChanged")),
    "ssh_ca_rotated": (None, ("mount", "step", "issuerFingerprints", "hostCount", "failedTenants")),
    "vault_write_burst": ("critical", ("mount", "path", "newVersions", "windowHours", "threshold", "currentVersion",
                                       "oldestVersion", "historyTruncated")),
    # written by the callback and the file sink themselves
    "audit_event_hidden": ("warning", ()),
    "audit_event_invalid": ("warning", ()),
    CHAIN_BREAK_ACTION: ("critical", ("skippedBytes", "skippedLines", "afterSeq")),
}
KNOWN_ACTIONS = tuple(ACTIONS)
ACTION_SEVERITY = dict((name, spec[0]) for name, spec in ACTIONS.items() if spec[0])


def detail_fields(action):
    """The ``details`` keys an event of ``action`` keeps (GENERIC_FIELDS for an unknown action)."""
    spec = ACTIONS.get(action)
    return frozenset(GENERIC_FIELDS + (spec[1] if spec else ()))


def filter_details(action, details):
    """Keep the allowed fields of ``details``; ``droppedFields`` counts the others (their names may be secrets)."""
    allowed = detail_fields(action)
    kept = dict((key, value) for key, value in details.items() if isinstance(key, str) and key in allowed)
    dropped = len(details) - len(kept)
    if dropped:
        kept["droppedFields"] = dropped
    return kept


class AuditError(Exception):
    """A one-line, secret-free error about an event, a sink or a log file."""


# ---------------------------------------------------------------------------------------
# Redaction
# ---------------------------------------------------------------------------------------
# Mapping keys whose values are secrets whatever they look like.
_SECRET_KEY_RE = re.compile(
    r"(pass(word|wd|phrase)?|pwd|(^|[^a-z])pw([^a-z]|$)|secret|token|private[_-]?key|api[_-]?key|apikey|"
    r"(access|signing|encryption|master|root|session|shared|tsig|hmac|recovery|unseal)[_-]?keys?|"
    r"credential|jwt|cookie|authorization|bearer|otp|unseal|wrap(ped|ping)?[_-]?(info|response)|^values?$|^val$)",
    re.IGNORECASE,
)
# Keys that match the pattern above but only ever hold public or descriptive values.
_PUBLIC_KEYS = frozenset(("token_type", "token_policies", "tokenless", "secret_path", "password_set", "secrettype",
                          "secret_type", "passwordreset", "password_reset"))
# In a name/value pair ({"name": "SMTP_PASSWORD", "value": ...}) the value is a secret when the name is.
_PAIR_NAME_KEYS = ("name", "key", "id", "field", "param", "parameter", "variable", "var", "env")
_PAIR_VALUE_KEYS = frozenset(("value", "val", "data", "content", "default"))
_PEM_RE = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY( BLOCK)?-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----|\Z)",
    re.DOTALL,
)
_SECRET_WORDS = r"pass(?:word|wd|phrase)?|pwd|pw|secret|token|api[_-]?key|apikey|api|private[_-]?key|credential"
_VALUE_PATTERNS = (
    # PuTTY private keys
    (re.compile(r"PuTTY-User-Key-File-\d:.*?(?:Private-MAC: \S+|\Z)", re.DOTALL), REDACTED),
    # Vault / OpenBao tokens (service, batch, recovery; legacy s./b./r. tokens)
    (re.compile(r"\bhv[sbr]\.[A-Za-z0-9_-]{20,}|(?<![A-Za-z0-9.])[sbr]\.[A-Za-z0-9]{20,}\b"), REDACTED),
    # JSON Web Tokens
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), REDACTED),
    # well-known API token shapes (GitHub, GitLab, Slack, AWS access key ids)
    (re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|glpat-[A-Za-z0-9_-]{20,}|xox[abprs]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16})\b"),
     REDACTED),
    # HTTP authorization values
    (re.compile(r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE), r"\1 " + REDACTED),
    # user:password@ in URLs
    (re.compile(r"([a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s/]+@", re.IGNORECASE), r"\1" + REDACTED + "@"),
    # password=..., pw: ..., API=..., "secret" = "..." inside free text: the value runs to the next blank
    # (or the closing quote), punctuation included
    (
        re.compile(
            r"((?<![A-Za-z0-9])[A-Za-z0-9_.-]*?(?:" + _SECRET_WORDS + r")[A-Za-z0-9_-]*[\"']?\s*[=:]\s*)"
            r"(?:\"[^\"]*\"|'[^']*'|(?!\*{8})\S+)",
            re.IGNORECASE,
        ),
        r"\1" + REDACTED,
    ),
    # hex keys (API keys, HMAC keys, secret ids) of 128 bits and more; digests after sha256: etc. are kept
    (re.compile(r"(?<![A-Za-z0-9])(?<!sha256:)(?<!sha512:)(?<!sha1:)(?<!md5:)[0-9a-fA-F]{32,}(?![A-Za-z0-9])",
                re.IGNORECASE), REDACTED),
)

# Random-looking words are treated as generated passwords, keys or tokens (see _looks_random).
_WORD_RE = re.compile(r"(?<![A-Za-z0-9+/=_.~-])([A-Za-z0-9+/=_.~-]{12,})")
_TOKEN_RE = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_PUBLIC_PREFIX_RE = re.compile(r"(?:SHA256:|MD5:|(?:ssh|ecdsa|sk)-[a-z0-9@.-]+ )$")
_SEPARATORS = "/._~=+-"
_BASE64_RE = re.compile(r"^[A-Za-z0-9+/]+={0,2}\Z")
_URLSAFE_RE = re.compile(r"^[A-Za-z0-9_-]+\Z")
_VOWELS = frozenset("aeiouy")
# Short words and abbreviations identifiers are made of (lower case), and upper-case acronyms.
_SHORT_WORDS = frozenset("""
ssh smtp dkim dns vps tls ssl ttl tcp udp http https kv db id ip cmd cfg src dst msg pkg mx txt crl csr md js py sql
xml www ts pm ok hmac rsa ecdsa ed pkcs tmp rpm xz bz pwd ctx fn kw nfs gpg pgp jwt sftp ftp imap lmtp sshd hvac url uri
utc cwd rc nx cn to of by at in on is up if or no do go my we me he be as an am us so it ms km kb mb gb tb hz px api awx
aap ee vm os io fs gid uid pid tty sys usr var etc opt lib bin dev run srv mnt""".split())
_ACRONYMS = frozenset("""
API JSON URL URI HTTP HTTPS SSH SSL TLS DNS DKIM SMTP IMAP LMTP TCP UDP IP ID UUID UTC ISO RSA AES SHA MD KV OK IO OS
VM VPS AWS GCP CPU RAM DB SQL XML HTML CSV PDF MX TXT TTL NX SOA CNAME AAAA PTR SRV CA CRL CSR PEM DER EC ED PKCS TSIG
HMAC JWT OTP MFA SSO LDAP AD GUI CLI SDK EE AWX AAP SIG RR TTY PID UID GID ENV CFG TMP LOG ERR IPV ACL MAC PUT GET POST
HEAD""".split())
# Consonant pairs common inside English words; a run of letters with another pair is not a word.
_CONSONANT_PAIRS = frozenset("""
bb bl br bs by cc ch ck cl cr ct cy dd dg dl dn dr ds dy ff fl fr ft fy gg gh gl gn gr gs gy hl hm hn hr ht hy kn ks
ky lb lc ld lf lg lk ll lm ln lp ls lt lv ly mb mm mn mp ms my nc nd ng nk nn ns nt nv nx ny nz ph pl pp pr ps pt py
rb rc rd rf rg rk rl rm rn rp rr rs rt rv ry sc sh sk sl sm sn sp ss st sw sy th tl tm tn tr ts tt tw ty vy wh wl wn
wr ws xt yl ym yn yr ys zz cs gm lw rw bt dm gt mt nf nl nr pn sq tz wk wd wt xp xc""".split())
# Letter runs that may precede digits inside an identifier (ipv4, sha256, base64, ed25519, utf8, x509, ...).
_DIGIT_PREFIXES = frozenset("ipv sha md base utf x iso rfc v ed rsa pkcs aes des ec p h http tls ssl s t".split())


def _natural_token(token):
    """A digit run, a known acronym or short word, or a letter run that reads like a word."""
    if token.isdigit():
        return True
    if token.isupper() and len(token) >= 2:
        if token in _ACRONYMS:
            return True
        if len(token) < 5:
            return False
    low = token.lower()
    if low in _SHORT_WORDS:
        return True
    if len(low) < 3 or not any(c in _VOWELS for c in low):
        return False
    return all(a in _VOWELS or b in _VOWELS or a + b in _CONSONANT_PAIRS for a, b in zip(low, low[1:]))


def _looks_random(word):
    """True for a generated secret (password, key, token) of 12 or more letters and digits.

    Identifiers, host names, ISO dates and SSH public key blobs (``AAAA...``) are kept: they are
    made of word-like runs (``Provision_the_vps_t1``, ``oldVpsDestroyed``, ``getHTTPResponse``).
    A mixed-case word, or a 16+ character run of letters, digits, ``-`` and ``_``, or base64, with one
    run that reads like no word (``Xk3``, ``mPq``, ``Bzj``), or digits between letters, is random.
    Measured on 300,000 random samples each (docs/audit.md): none missed of 20 and 32 letters and
    digits, base64 keys of 16 bytes and hex keys of 128 bits; 1 of 16 letters and digits; 20 of
    URL-safe tokens of 12 bytes (16 characters).
    """
    alnum = [c for c in word if c.isalnum() and c.isascii()]
    if len(alnum) < 12 or word.startswith("AAAA"):
        return False
    lower = any(c.islower() for c in alnum)
    upper = any(c.isupper() for c in alnum)
    digit = any(c.isdigit() for c in alnum)
    base64 = len(word) >= 16 and _BASE64_RE.match(word) and ("+" in word or "/" in word or word.endswith("="))
    if not (lower and upper) and not (digit and len(word) >= 16 and _URLSAFE_RE.match(word)) and not base64:
        return False
    previous = None
    for match in _TOKEN_RE.finditer(word):
        token, start, end = match.group(0), match.start(), match.end()
        if (token.isdigit() and 0 < start and end < len(word) and word[start - 1].isalpha() and word[end].isalpha()
                and not (previous and previous.lower() in _DIGIT_PREFIXES)):
            return True
        previous = token
        if _natural_token(token):
            continue
        if len(token) == 1:
            before = word[start - 1] if start else "/"
            after = word[end] if end < len(word) else "/"
            if before in _SEPARATORS and (after in _SEPARATORS or after.isdigit()):
                continue
        return True
    return False


def _mask_random_words(text):
    def replace(match):
        word = match.group(1)
        if _PUBLIC_PREFIX_RE.search(text[max(0, match.start() - 40):match.start()]):
            return word
        return REDACTED if _looks_random(word) else word

    return _WORD_RE.sub(replace, text)


def is_secret_key(name):
    """True when a mapping key names a secret (password, pw, token, private_key, api_key, value, ...)."""
    if not isinstance(name, str):
        return False
    if name.lower() in _PUBLIC_KEYS:
        return False
    return bool(_SECRET_KEY_RE.search(name))


def redact_text(text, heuristics=True):
    """Mask private keys, tokens, passwords and keys inside a string.

    With ``heuristics``, random-looking words (generated passwords, unknown token formats) too.
    """
    if not isinstance(text, str) or not text:
        return text
    text = _PEM_RE.sub(REDACTED, text)
    for pattern, replacement in _VALUE_PATTERNS:
        text = pattern.sub(replacement, text)
    return _mask_random_words(text) if heuristics else text


def redact(value, no_log_values=()):
    """Return a redacted deep copy of ``value`` (dicts, lists, tuples, strings, scalars).

    * mapping keys are redacted like strings (a private key used as a key is masked);
    * values under secret-looking keys become ``********`` (booleans and ``None`` stay), and so
      does the value of a name/value pair whose name is secret-looking;
    * strings are scanned for private keys, tokens, ``user:password@``, ``password=...``, hex keys
      and random-looking words;
    * every occurrence of a string in ``no_log_values`` is masked as well.
    """
    hidden = sorted((v for v in no_log_values if isinstance(v, str) and len(v) >= 4), key=len, reverse=True)
    return _redact(value, hidden, 0)


def _redact_string(value, hidden):
    for secret in hidden:
        value = value.replace(secret, REDACTED)
    return redact_text(value)


def _pair_names_a_secret(mapping):
    for name in _PAIR_NAME_KEYS:
        for key in (name, name.upper(), name.capitalize()):
            if isinstance(mapping.get(key), str) and is_secret_key(mapping[key]):
                return True
    return False


def _redact(value, hidden, depth):
    if depth > 64:
        return REDACTED
    if isinstance(value, dict):
        result = {}
        pair_secret = _pair_names_a_secret(value)
        for key, item in value.items():
            name = str(key)
            secret = is_secret_key(name) or (pair_secret and name.lower() in _PAIR_VALUE_KEYS)
            if secret and item is not None and not isinstance(item, bool) and item != "":
                shown = REDACTED
            else:
                shown = _redact(item, hidden, depth + 1)
            label = _redact_string(name, hidden)
            unique, number = label, 2
            while unique in result:
                unique, number = "%s#%d" % (label, number), number + 1
            result[unique] = shown
        return result
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_redact(item, hidden, depth + 1) for item in value]
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        return _redact_string(value, hidden)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return _redact_string(str(value), hidden)


# ---------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------
def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def iso_timestamp(moment=None):
    moment = moment or utc_now()
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def default_severity(action, status):
    if ACTION_SEVERITY.get(action):
        return ACTION_SEVERITY[action]
    return "critical" if status == "failure" else "info"


def build_event(action, status="success", tenant_id=None, user_id=None, ip_address=None, details=None,
                severity=None, timestamp=None, no_log_values=()):
    """Validate the parts of an event and return it as a dict (details allow-listed, then redacted).

    Raises :class:`AuditError` on an invalid action, status or severity.
    """
    if not isinstance(action, str) or not _ACTION_RE.match(action):
        raise AuditError("invalid audit action %r: must match %s" % (_short(action), ACTION_PATTERN))
    if status not in STATUSES:
        raise AuditError("invalid audit status %r: must be one of %s" % (_short(status), ", ".join(STATUSES)))
    if severity is None:
        severity = default_severity(action, status)
    if severity not in SEVERITIES:
        raise AuditError("invalid audit severity %r: must be one of %s" % (_short(severity), ", ".join(SEVERITIES)))
    if details is None:
        details = {}
    if not isinstance(details, dict):
        raise AuditError("audit details must be a mapping, not %s" % type(details).__name__)
    return {
        "timestamp": timestamp or iso_timestamp(),
        "action": action,
        "tenantId": _opt_str(tenant_id),
        "userId": _opt_str(user_id),
        "ipAddress": _opt_str(ip_address),
        "status": status,
        "severity": severity,
        "details": redact(filter_details(action, details), no_log_values),
    }


def _event_options():
    return dict(
        action=dict(type="str"),
        status=dict(type="str", default="success", choices=list(STATUSES)),
        tenant_id=dict(type="str"),
        user_id=dict(type="str"),
        ip_address=dict(type="str"),
        details=dict(type="dict", default={}),
        severity=dict(type="str", choices=list(SEVERITIES)),
        redact_values=dict(type="list", elements="str", default=[], no_log=True),
    )


def audit_event_argument_spec():
    """The options of the ``audit_event`` module and action (shared so they cannot drift): one event, or a list of
    events (``events``, one task for every tenant of a host)."""
    spec = _event_options()
    item = _event_options()
    item["action"]["required"] = True
    spec["events"] = dict(type="list", elements="dict", options=item)
    return spec


# ``action`` and ``events`` exclude each other; one of them is needed.
AUDIT_EVENT_MUTUALLY_EXCLUSIVE = [("action", "events")]
AUDIT_EVENT_REQUIRED_ONE_OF = [("action", "events")]


def normalize_event(candidate, no_log_values=()):
    """Turn an ``audit_event`` mapping found in a task result into a valid, redacted event.

    Accepts the seed's camelCase names and the module option names (``tenant_id``, ...).
    """
    if not isinstance(candidate, dict):
        raise AuditError("audit_event must be a mapping, not %s" % type(candidate).__name__)

    def pick(*names):
        for name in names:
            if candidate.get(name) not in (None, ""):
                return candidate[name]
        return None

    return build_event(
        action=pick("action"),
        status=pick("status") or "success",
        tenant_id=pick("tenantId", "tenant_id"),
        user_id=pick("userId", "user_id"),
        ip_address=pick("ipAddress", "ip_address"),
        details=pick("details") or {},
        severity=pick("severity"),
        timestamp=pick("timestamp"),
        no_log_values=no_log_values,
    )


def _opt_str(value):
    if value in (None, ""):
        return None
    return redact_text(str(value), heuristics=False)


def _short(value, limit=60):
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------
# Hash chain
# ---------------------------------------------------------------------------------------
def canonical(event):
    """The bytes that are hashed: the event without ``hash``, as sorted compact JSON."""
    body = dict((k, v) for k, v in event.items() if k != "hash")
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def event_hash(event, chain_key=None):
    data = canonical(event)
    if chain_key:
        return hmac.new(_key_bytes(chain_key), data, hashlib.sha256).hexdigest()
    return hashlib.sha256(data).hexdigest()


def chain(event, prev_hash, seq, chain_key=None, chain_id=None):
    """Return a copy of ``event`` linked after ``prev_hash`` with ``seq``, ``chain_id``, ``hash_alg`` and ``hash``."""
    linked = copy.deepcopy(event)
    linked.pop("hash", None)
    if chain_id:
        linked["chain_id"] = chain_id
    linked["seq"] = seq
    linked["prev_hash"] = prev_hash
    linked["hash_alg"] = "hmac-sha256" if chain_key else "sha256"
    linked["hash"] = event_hash(linked, chain_key)
    return linked


def new_chain_id():
    """A fresh chain id (a file's chain keeps it for life; a new or rotated file starts a new one)."""
    return "c" + uuid.uuid4().hex[:16]


def _key_bytes(key):
    return key if isinstance(key, bytes) else str(key).encode("utf-8")


def _as_event(text):
    """The linked event a line holds, or None (damaged, not JSON, no chain fields)."""
    try:
        event = json.loads(text)
    except ValueError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("hash"), str) or "prev_hash" not in event:
        return None
    if isinstance(event.get("seq"), bool) or not isinstance(event.get("seq"), int):
        return None
    return event


# ---------------------------------------------------------------------------------------
# Verify
# ---------------------------------------------------------------------------------------
class VerifyResult(object):
    """What :func:`verify_lines` found.

    ``ok``: intact, no chain break, every anchor matched. ``breaks``: chain breaks the file sink
    recorded (damaged bytes skipped, accounted for by a ``chain_break`` event). ``problems``:
    ``line N: ...`` findings of tampering or damage, sorted by line; ``first_bad_line`` is the
    first of them. ``exit_code``: 0 intact, 1 tampered or unreadable, 3 intact apart from breaks.
    """

    def __init__(self, count=0, last_hash="", last_seq=None, findings=None, breaks=None, chain_ids=(), anchors=0):
        self.count = count
        self.last_hash = last_hash
        self.last_seq = last_seq
        self.findings = sorted(findings or [], key=lambda item: item[0])
        self.breaks = list(breaks or [])
        self.chain_ids = sorted(chain_ids)
        self.anchors = anchors

    @property
    def problems(self):
        return [("line %d: %s" % (line, text)) if line else text for line, text in self.findings]

    @property
    def first_bad_line(self):
        lines = [line for line, _text in self.findings if line]
        return min(lines) if lines else None

    @property
    def ok(self):
        return not self.findings and not self.breaks

    @property
    def exit_code(self):
        if self.findings:
            return 1
        return 3 if self.breaks else 0

    def anchor(self):
        """``SEQ:HASH`` of the last event: give it to a later ``verify --anchor``."""
        return "%s:%s" % (self.last_seq, self.last_hash) if self.last_hash else ""

    def summary(self):
        anchored = " against %d anchor(s)" % self.anchors if self.anchors else ""
        if self.findings:
            shown = self.problems[:5]
            more = " (+%d more)" % (len(self.problems) - 5) if len(self.problems) > 5 else ""
            breaks = "; chain breaks: %s" % "; ".join(self.breaks) if self.breaks else ""
            return "FAILED%s: first bad line %s: %s%s%s" % (anchored, self.first_bad_line, "; ".join(shown), more, breaks)
        if self.breaks:
            return "INTACT EXCEPT %d CHAIN BREAK(S)%s: %s; %d events, last hash %s (anchor %s)" % (
                len(self.breaks), anchored, "; ".join(self.breaks), self.count, self.last_hash, self.anchor())
        return "OK: %d events, chain intact%s, last hash %s (anchor %s)" % (
            self.count, anchored, self.last_hash, self.anchor())

    def as_dict(self):
        return {"ok": self.ok, "exit_code": self.exit_code, "count": self.count, "last_hash": self.last_hash,
                "last_seq": self.last_seq, "anchor": self.anchor(), "first_bad_line": self.first_bad_line,
                "problems": self.problems, "breaks": self.breaks, "chain_ids": self.chain_ids,
                "anchors_checked": self.anchors, "summary": self.summary()}


def _raw_line(line):
    raw = line if isinstance(line, bytes) else str(line).encode("utf-8")
    return raw, len(raw) + (0 if raw.endswith(b"\n") else 1)


def verify_lines(lines, chain_key=None, first_prev_hash=GENESIS_HASH, anchors=None):
    """Check every link of a chain given as lines (bytes or str); return a :class:`VerifyResult`.

    ``first_prev_hash`` is the hash the first event must follow (the genesis hash for a new log,
    or the last hash of the previous file after a manual split); ``None`` accepts any start.
    With ``chain_key`` only HMAC-SHA256 lines verify (a line of another algorithm is a finding).
    ``anchors`` (see :func:`load_anchors`) are events and checkpoints a sink received: the file
    must hold each of them at its sequence number.
    """
    findings, breaks = [], []
    prev_hash, prev_seq = first_prev_hash, None
    count, last_line = 0, 0
    region_bytes, damaged = 0, []  # bytes and damaged lines since the last good event
    by_seq, by_hash, chain_ids = {}, {}, set()
    stop = False
    for number, line in enumerate(lines, 1):
        raw, size = _raw_line(line)
        text = raw.decode("utf-8", "replace").strip()
        if not text:
            region_bytes += size
            continue
        event = _as_event(text)
        if event is None:
            region_bytes += size
            damaged.append(number)
            continue
        count += 1
        if damaged:
            details = event.get("details") if isinstance(event.get("details"), dict) else {}
            if (event.get("action") == CHAIN_BREAK_ACTION and event.get("prev_hash") == prev_hash
                    and details.get("skippedBytes") == region_bytes):
                breaks.append("line %d: chain break after line %d: %d bytes skipped (lines %s)" % (
                    number, last_line, region_bytes, _span(damaged)))
            else:
                for bad in damaged:
                    findings.append((bad, "not an audit event (damaged, or inserted) and no chain_break accounts for it"))
                prev_hash, prev_seq = "?", None
        damaged, region_bytes = [], 0
        alg = event.get("hash_alg") or "sha256"
        if chain_key and alg != "hmac-sha256":
            findings.append((number, "hash algorithm %s in a keyed chain: only hmac-sha256 lines verify "
                                     "(downgraded or forged)" % _short(alg, 20)))
        elif alg == "hmac-sha256" and not chain_key:
            findings.append((number, "HMAC chain: a chain key is needed (PENGUINMAILS_AUDIT_CHAIN_KEY)"))
            stop = True
            break
        elif event_hash(event, chain_key if alg == "hmac-sha256" else None) != event["hash"]:
            findings.append((number, "hash mismatch (the event was modified)"))
        if prev_hash is not None and prev_hash != "?" and event["prev_hash"] != prev_hash:
            if number == 1 or prev_seq is None and prev_hash == first_prev_hash:
                findings.append((number, "the first event does not follow %s (the beginning was removed, or the "
                                         "file was replaced)" % ("the genesis" if prev_hash == GENESIS_HASH else prev_hash[:12])))
            else:
                findings.append((number, "prev_hash does not match the previous event (an event was removed, "
                                         "inserted or reordered)"))
        seq = event["seq"]
        if prev_seq is not None and seq != prev_seq + 1:
            findings.append((number, "sequence %s follows %s" % (seq, prev_seq)))
        by_seq.setdefault(seq, (number, event["hash"]))
        by_hash.setdefault(event["hash"], number)
        chain_ids.add(event.get("chain_id"))
        prev_seq, prev_hash, last_line = seq, event["hash"], number
    if damaged and not stop:
        for bad in damaged:
            findings.append((bad, "not an audit event (a damaged tail: the next event starts a new segment)"))
    last = prev_hash if prev_hash not in (None, "?") else ""
    anchors = list(anchors or [])
    findings.extend(_check_anchors(anchors, by_seq, by_hash, chain_ids, last_line, prev_seq))
    return VerifyResult(count, last, prev_seq, findings, breaks, [c for c in chain_ids if c], len(anchors))


def _span(numbers):
    return "%d-%d" % (numbers[0], numbers[-1]) if len(numbers) > 1 else "%d" % numbers[0]


def _check_anchors(anchors, by_seq, by_hash, chain_ids, last_line, last_seq):
    if not anchors:
        return []
    findings = []
    unique, seen = [], set()
    for anchor in anchors:  # an event copy and a checkpoint of the same event are one anchor
        identity = (anchor.get("chain_id"), anchor.get("seq"), anchor["hash"])
        if identity not in seen:
            seen.add(identity)
            unique.append(anchor)
    mine = [a for a in unique if a.get("chain_id") is None or a.get("chain_id") in chain_ids]
    if not mine:
        ids = sorted(set(a["chain_id"] for a in anchors if a.get("chain_id")))
        return [(1, "no anchor belongs to this file's chain %s (anchored chains: %s): the file was replaced, "
                    "or the anchors are another controller's" % (
                        ",".join(sorted(c for c in chain_ids if c)) or "-", ", ".join(ids[:3]) or "-"))]
    first_seq = min(by_seq) if by_seq else None
    tail, head = None, None
    for anchor in mine:
        seq, wanted = anchor.get("seq"), anchor["hash"]
        where = anchor.get("source") or "anchor"
        if seq is None:
            if wanted not in by_hash:
                findings.append((last_line + 1, "the anchor hash %s... (%s) is not in the file: events were removed "
                                                "from the end, or rewritten" % (wanted[:12], where)))
            continue
        if seq in by_seq:
            line, found = by_seq[seq]
            if found != wanted:
                findings.append((line, "seq %d differs from the anchor (%s): the event was replaced or the chain "
                                       "rewritten" % (seq, where)))
        elif last_seq is None or seq > last_seq:
            if tail is None or seq > tail[0]:
                tail = (seq, where)
        elif first_seq is not None and seq < first_seq:
            if head is None or seq < head[0]:
                head = (seq, where)
        else:
            later = [s for s in by_seq if s > seq]
            findings.append((by_seq[min(later)][0] if later else last_line + 1,
                             "seq %d of the anchor (%s) is missing: an event was removed" % (seq, where)))
    if tail:
        findings.append((last_line + 1, "the file ends at seq %s (line %d) but the anchor (%s) has seq %d: events "
                                        "were removed from the end" % (last_seq, last_line, tail[1], tail[0])))
    if head:
        findings.append((1, "the anchor (%s) has seq %d, before the file's first event (seq %d): the beginning "
                            "was removed" % (head[1], head[0], first_seq)))
    return findings


def verify_file(path, chain_key=None, first_prev_hash=GENESIS_HASH, anchors=None):
    try:
        with open(path, "rb") as handle:
            return verify_lines(handle, chain_key, first_prev_hash, anchors)
    except (IOError, OSError) as exc:
        return VerifyResult(findings=[(0, "cannot read %s: %s" % (path, exc.strerror or type(exc).__name__))])


# ---------------------------------------------------------------------------------------
# Anchors: copies of events and checkpoints held by another sink, or a hash written down
# ---------------------------------------------------------------------------------------
_ANCHOR_HASH_RE = re.compile(r"^(?:(\d+):)?([0-9a-f]{64})\Z")


def checkpoint_record(tail, path, run_events=0, user=None):
    """The checkpoint sent to syslog and webhooks at the end of a run (not itself chained)."""
    event, _end = tail
    return {
        "timestamp": iso_timestamp(), "action": CHECKPOINT_ACTION, "tenantId": None, "userId": user,
        "ipAddress": None, "status": "success", "severity": "info",
        "details": {"chainId": event.get("chain_id"), "seq": event["seq"], "hash": event["hash"],
                    "hashAlg": event.get("hash_alg"), "file": path, "controller": socket.gethostname() or None,
                    "runEvents": run_events},
    }


def anchors_from_text(text, source="anchors"):
    """Anchors found in a sink's export: one event or checkpoint per line, as JSON lines, RFC 5424 or
    classic syslog lines (the JSON body after the header), or a webhook receiver's JSON bodies."""
    found = []
    decoder = json.JSONDecoder()
    for number, line in enumerate(text.splitlines(), 1):
        start = line.find("{")
        if start < 0:
            continue
        try:
            record, _end = decoder.raw_decode(line[start:])
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        where = "%s line %d" % (source, number)
        details = record.get("details") if isinstance(record.get("details"), dict) else {}
        if record.get("action") == CHECKPOINT_ACTION and isinstance(details.get("seq"), int) and details.get("hash"):
            found.append({"seq": details["seq"], "hash": str(details["hash"]), "chain_id": details.get("chainId"),
                          "source": where + " (checkpoint)"})
        elif isinstance(record.get("seq"), int) and isinstance(record.get("hash"), str) and "prev_hash" in record:
            found.append({"seq": record["seq"], "hash": record["hash"], "chain_id": record.get("chain_id"),
                          "source": where})
    return found


def load_anchors(spec):
    """Anchors from ``SEQ:HASH``, a bare ``HASH`` or the path of a sink export (see :func:`anchors_from_text`)."""
    spec = str(spec).strip()
    match = _ANCHOR_HASH_RE.match(spec)
    if match:
        return [{"seq": int(match.group(1)) if match.group(1) else None, "hash": match.group(2), "chain_id": None,
                 "source": "given %s" % (spec if len(spec) < 24 else spec[:20] + "...")}]
    try:
        with open(spec, "r", encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except (IOError, OSError) as exc:
        raise AuditError("cannot read the anchor source %s: %s" % (spec, exc.strerror or type(exc).__name__))
    found = anchors_from_text(text, os.path.basename(spec))
    if not found:
        raise AuditError("the anchor source %s holds no audit event or checkpoint" % spec)
    return found


# ---------------------------------------------------------------------------------------
# Sinks
# ---------------------------------------------------------------------------------------
def _scan_tail(handle):
    """Find the last intact event of a binary file handle, reading backwards.

    Returns ``(event or None, end of its line, end of file, whether the file ends with a newline)``.
    """
    handle.seek(0, os.SEEK_END)
    end = handle.tell()
    if end == 0:
        return None, 0, 0, True
    handle.seek(end - 1)
    newline_at_end = handle.read(1) == b"\n"
    step = 8192
    while True:
        start = max(0, end - step)
        handle.seek(start)
        data = handle.read(end - start)
        pieces = data.split(b"\n")
        offset = end
        # the last piece is what follows the final newline (empty when the file ends with one)
        for index in range(len(pieces) - 1, -1, -1):
            piece = pieces[index]
            piece_start = offset - len(piece)
            if index == 0 and start > 0:
                break  # a partial line: read further back
            if piece.strip():
                event = _as_event(piece.decode("utf-8", "replace"))
                if event is not None:
                    line_end = piece_start + len(piece) + (1 if index < len(pieces) - 1 else 0)
                    return event, line_end, end, newline_at_end
            offset = piece_start - 1
        if start == 0:
            return None, 0, end, newline_at_end
        step *= 4


class FileSink(object):
    """Append-only JSON lines file (0600); the chain continues across runs and processes.

    A damaged tail (a half-written line, anything that is not an event) is never rewritten and never
    stops an event: the next append closes it with a newline and writes a ``chain_break`` event that
    links to the last intact event and records how many bytes it skipped, then the event itself.
    """

    def __init__(self, path, chain_key=None):
        self.path = os.path.abspath(os.path.expanduser(path))
        self.chain_key = chain_key

    def _open(self, mode=os.O_RDWR | os.O_APPEND | os.O_CREAT):
        directory = os.path.dirname(self.path)
        if directory and not os.path.isdir(directory):
            os.makedirs(directory, 0o700)
        return os.fdopen(os.open(self.path, mode, 0o600), "r+b" if mode & os.O_RDWR else "rb")

    def append(self, event):
        """Link ``event`` after the file's last intact event under an exclusive lock and append it.

        Returns the linked event; :attr:`written` holds every event written (a chain_break first).
        """
        with self._open() as handle:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                last, good_end, end, newline = _scan_tail(handle)
                prev_hash, seq = (last["hash"], last["seq"]) if last else (GENESIS_HASH, 0)
                chain_id = (last or {}).get("chain_id") or new_chain_id()
                prefix = b"" if newline else b"\n"
                written = []
                if end > good_end and _has_content(handle, good_end, end):
                    skipped_lines = _count_lines(handle, good_end, end)
                    brk = build_event(CHAIN_BREAK_ACTION, status="failure", details={
                        "skippedBytes": end - good_end + len(prefix), "skippedLines": skipped_lines, "afterSeq": seq})
                    written.append(chain(brk, prev_hash, seq + 1, self.chain_key, chain_id))
                    prev_hash, seq = written[-1]["hash"], seq + 1
                written.append(chain(event, prev_hash, seq + 1, self.chain_key, chain_id))
                data = prefix + b"".join((json.dumps(e, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
                                         for e in written)
                handle.seek(0, os.SEEK_END)
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            finally:
                if fcntl is not None:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        self.written = written
        return written[-1]

    def tail(self):
        """``(last intact event, end offset)`` under a shared lock, or None for a missing or empty file."""
        try:
            handle = self._open(os.O_RDONLY)
        except (IOError, OSError):
            return None
        with handle:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
            try:
                last, good_end, _end, _newline = _scan_tail(handle)
            finally:
                if fcntl is not None:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return (last, good_end) if last else None


def _has_content(handle, start, end):
    handle.seek(start)
    return bool(handle.read(end - start).strip())


def _count_lines(handle, start, end):
    handle.seek(start)
    data = handle.read(end - start)
    return len([line for line in data.split(b"\n") if line.strip()])


_FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "authpriv": 10,
    "local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}
_SYSLOG_SEVERITY = {"info": 6, "warning": 4, "critical": 2}


class SyslogSink(object):
    """RFC 5424 messages to ``/path/of/socket``, ``udp://host:port`` or ``tcp://host:port``."""

    def __init__(self, address, facility="authpriv", app_name="penguinmails-audit", timeout=5):
        if facility not in _FACILITIES:
            raise AuditError("invalid syslog facility %r" % _short(facility))
        self.address = address
        self.facility = _FACILITIES[facility]
        self.app_name = app_name
        self.timeout = timeout

    def format(self, event):
        pri = self.facility * 8 + _SYSLOG_SEVERITY.get(event.get("severity"), 6)
        host = socket.gethostname() or "-"
        body = json.dumps(event, sort_keys=True, ensure_ascii=False)
        fields = (pri, event.get("timestamp") or iso_timestamp(), host, self.app_name, os.getpid(),
                  event.get("action", "-"), body)
        return "<%d>1 %s %s %s %d %s - %s" % fields

    def send(self, event):
        message = self.format(event).encode("utf-8")
        address = self.address
        if address.startswith("udp://") or address.startswith("tcp://"):
            host, port = _host_port(address[6:], 514)
            kind = socket.SOCK_DGRAM if address.startswith("udp://") else socket.SOCK_STREAM
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, kind)
            try:
                sock.settimeout(self.timeout)
                if kind == socket.SOCK_DGRAM:
                    sock.sendto(message, (host, port))
                else:
                    sock.connect((host, port))
                    sock.sendall(message + b"\n")
            finally:
                sock.close()
            return 1
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            sock = socket.socket(socket.AF_UNIX, kind)
            try:
                sock.settimeout(self.timeout)
                sock.connect(address)
                if kind == socket.SOCK_DGRAM:
                    sock.send(message)
                else:
                    sock.sendall(message + b"\0")
                return 1
            except socket.error as exc:
                if kind == socket.SOCK_STREAM or getattr(exc, "errno", None) not in (91, 107, 111):  # EPROTOTYPE...
                    raise
            finally:
                sock.close()
        return 1


def _host_port(text, default_port):
    text = text.strip("/")
    if text.startswith("["):
        host, _sep, rest = text[1:].partition("]")
        port = rest.lstrip(":")
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    try:
        return host, int(port) if port else default_port
    except ValueError:
        raise AuditError("invalid port in syslog address %r" % _short(text))


def tls_context(validate_certs=True, ca_path=None):
    """The client TLS context of the alert mail: verified against the system CAs (or ``ca_path``)."""
    if not validate_certs:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        return ssl.create_default_context(cafile=ca_path) if ca_path else ssl.create_default_context()
    except (IOError, OSError, ssl.SSLError) as exc:
        raise AuditError("cannot load the CA file %s: %s" % (ca_path, getattr(exc, "strerror", None) or type(exc).__name__))


def _transport_reason(exc):
    """A short, secret-free reason for a failed connection (never the URL: it may carry a token)."""
    reason = getattr(exc, "reason", None) or exc
    for candidate in (reason, exc):
        if isinstance(candidate, ssl.SSLCertVerificationError):
            return "CERTIFICATE_VERIFY_FAILED: %s" % (candidate.verify_message or "certificate not trusted")
        if isinstance(candidate, ssl.SSLError):
            return "TLS error %s" % (getattr(candidate, "reason", None) or type(candidate).__name__)
    if "CERTIFICATE_VERIFY_FAILED" in str(reason):
        return "CERTIFICATE_VERIFY_FAILED"
    if isinstance(reason, str):
        return reason if "://" not in reason else "connection failed"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return type(reason).__name__


class WebhookSink(object):
    """POST each event as JSON through ``ansible.module_utils.urls.open_url``; bounded attempts with back-off.

    TLS is verified by default (``validate_certs``; ``ca_path`` adds a CA bundle). Retries on transport
    errors, HTTP 408, 429 and 5xx; other 4xx answers and redirects are final. With ``secret``, the
    body is signed: ``X-Penguinmails-Signature: sha256=<hmac hex>``.
    """

    def __init__(self, url, attempts=3, timeout=5, backoff=0.5, secret=None, headers=None, validate_certs=True,
                 ca_path=None):
        if not re.match(r"^https?://", url or ""):
            raise AuditError("webhook url must start with http:// or https://")
        if url.startswith("http://") and re.match(r"^http://[^/?#]*@", url):
            raise AuditError("webhook %s carries credentials: use https:// (credentials never go over plain HTTP)"
                             % _safe_url(url))
        self.url = url
        self.attempts = max(1, int(attempts))
        self.timeout = timeout
        self.backoff = backoff
        self.secret = secret
        self.headers = dict(headers or {})
        self.validate_certs = validate_certs
        self.ca_path = ca_path or None

    def send(self, event):
        """Deliver ``event``; return the number of attempts made. Raises AuditError after the last."""
        from ansible.module_utils.urls import open_url  # pylint: disable=import-outside-toplevel
        from urllib.error import HTTPError, URLError  # pylint: disable=import-outside-toplevel

        body = json.dumps(event, sort_keys=True, ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json", "User-Agent": "penguinmails-vps-audit/1",
                   "X-Penguinmails-Event": str(event.get("action"))}
        headers.update(self.headers)
        if self.secret:
            headers["X-Penguinmails-Signature"] = "sha256=" + hmac.new(_key_bytes(self.secret), body, hashlib.sha256).hexdigest()
        last = "no attempt"
        for attempt in range(1, self.attempts + 1):
            try:
                response = open_url(self.url, data=body, headers=headers, method="POST", timeout=self.timeout,
                                    validate_certs=self.validate_certs, ca_path=self.ca_path, follow_redirects="none",
                                    use_netrc=False)
                try:
                    response.read()
                finally:
                    response.close()
                return attempt
            except HTTPError as exc:
                last = "HTTP %s" % exc.code
                if exc.code not in (408, 429) and exc.code < 500:
                    raise AuditError("webhook %s refused the event: %s" % (_safe_url(self.url), last))
            except (URLError, socket.error, ssl.SSLError, ValueError) as exc:
                last = _transport_reason(exc)
            except Exception as exc:  # pylint: disable=broad-except
                # ansible.module_utils.urls raises its own ConnectionError / SSLValidationError
                last = _transport_reason(exc)
            if attempt < self.attempts:
                time.sleep(min(self.backoff * (2 ** (attempt - 1)), 10))
        raise AuditError("webhook %s: delivery failed after %d attempts (%s)" % (_safe_url(self.url), self.attempts, last))


def _safe_url(url):
    """The URL without user info and query string (which may carry tokens)."""
    match = re.match(r"^(https?://)(?:[^@/]*@)?([^/?#]*)([^?#]*)", url or "")
    return "".join(match.groups()) if match else "<webhook>"


class EmailSink(object):
    """Alert mails through an SMTP server.

    ``security``: ``starttls`` or ``tls`` (implicit TLS) verify the server's certificate by default
    (``ssl.create_default_context()``, ``ca_path`` adds a CA bundle); ``none`` sends in clear and
    therefore refuses credentials - a password is never sent over a connection that is not encrypted.
    """

    def __init__(self, host, port=25, sender="penguinmails-audit@localhost", recipients=(), username=None,
                 password=None, security="none", timeout=10, attempts=2, validate_certs=True, ca_path=None):
        if not recipients:
            raise AuditError("alert email needs at least one recipient")
        if security not in ("none", "starttls", "tls"):
            raise AuditError("invalid smtp security %r: none, starttls or tls" % _short(security))
        if username and security == "none":
            raise AuditError("smtp_username needs smtp_security starttls or tls: the password is never sent over "
                             "a connection that is not encrypted")
        self.host, self.port, self.sender = host, int(port), sender
        self.recipients = list(recipients)
        self.username, self.password, self.security = username, password, security
        self.timeout = timeout
        self.attempts = max(1, int(attempts))
        self.context = tls_context(validate_certs, ca_path) if security != "none" else None

    def message(self, event):
        from email.message import EmailMessage  # pylint: disable=import-outside-toplevel

        msg = EmailMessage()
        msg["Subject"] = "[penguinmails audit] %s %s tenant %s: %s" % (
            event.get("severity", "").upper(), event.get("action"), event.get("tenantId") or "-", event.get("status"))
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        msg.set_content(json.dumps(event, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        return msg

    def send(self, event):
        import smtplib  # pylint: disable=import-outside-toplevel

        last = "no attempt"
        for attempt in range(1, self.attempts + 1):
            try:
                if self.security == "tls":
                    server = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self.context)
                else:
                    server = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
                try:
                    if self.security == "starttls":
                        server.starttls(context=self.context)
                    if self.username and self.security in ("starttls", "tls"):
                        server.login(self.username, self.password or "")
                    server.send_message(self.message(event))
                finally:
                    try:
                        server.quit()
                    except Exception:  # pylint: disable=broad-except
                        pass
                return attempt
            except smtplib.SMTPAuthenticationError:
                raise AuditError("alert email via %s:%s: SMTP authentication failed" % (self.host, self.port))
            except ssl.SSLError as exc:
                raise AuditError("alert email via %s:%s: %s" % (self.host, self.port, _transport_reason(exc)))
            except smtplib.SMTPNotSupportedError:
                raise AuditError("alert email via %s:%s: the server offers no %s" % (
                    self.host, self.port, "STARTTLS" if self.security == "starttls" else "AUTH"))
            except (smtplib.SMTPException, socket.error) as exc:
                last = type(exc).__name__
            if attempt < self.attempts:
                time.sleep(0.5 * attempt)
        raise AuditError("alert email via %s:%s failed after %d attempts (%s)" % (self.host, self.port, self.attempts, last))


# ---------------------------------------------------------------------------------------
# The audit log: chain + sinks + delivery policy
# ---------------------------------------------------------------------------------------
SINK_FAILURE_POLICIES = ("warn", "fail")


class Delivery(object):
    """Where one event went: ``accepted`` and ``failed`` sink names (``failed``: (name, one-line reason))."""

    def __init__(self, event, written, accepted, failed):
        self.event = event
        self.written = written
        self.accepted = accepted
        self.failed = failed

    @property
    def lost(self):
        return not self.accepted

    def warnings(self):
        messages = []
        for name, reason in self.failed:
            if name == "file":
                messages.append("audit file: event %s not written: %s" % (self.event.get("action"), reason))
            else:
                messages.append("audit %s: event %s not delivered: %s" % (name, self.event.get("action"), reason))
        return messages

    def verdict(self, on_sink_failure="warn", on_event_lost="fail"):
        """The one-line reason to fail the audit point under the policy, or None."""
        reasons = "; ".join("%s: %s" % (name, reason) for name, reason in self.failed) or "no sink is configured"
        if self.lost and on_event_lost == "fail":
            return "audit event %s reached no sink (%s); on_event_lost=fail stops here" % (self.event.get("action"), reasons)
        if self.failed and on_sink_failure == "fail":
            return "audit event %s was refused by a sink (%s); on_sink_failure=fail stops here" % (
                self.event.get("action"), reasons)
        return None

    def summary(self):
        return {"accepted": list(self.accepted), "failed": [name for name, _reason in self.failed]}


class AuditLog(object):
    """Writes events: chained in the file, then copied to syslog and webhooks; alert events also go
    to the alert webhook and the alert mail.

    ``file_path`` is the chain file; with ``ephemeral`` it is a private per-run file (the callback's
    ``file`` option set empty) that chains the run but is not a sink. ``broken`` maps sink names to
    configuration errors (they count as failed sinks). A failing sink never stops the others.
    """

    def __init__(self, file_path=None, chain_key=None, syslog=None, webhook=None, alert_webhook=None, email=None,
                 alert_severities=("critical",), warn=None, broken=None, ephemeral=False):
        self.store = FileSink(file_path, chain_key) if file_path else None
        self.chain_key = chain_key
        self.ephemeral = ephemeral
        self.syslog = syslog
        self.webhook = webhook
        self.alert_webhook = alert_webhook
        self.email = email
        self.alert_severities = tuple(alert_severities)
        self.broken = dict(broken or {})
        self.warn = warn or (lambda message: None)
        self.written = []

    def _targets(self, event):
        targets = [("syslog", self.syslog), ("webhook", self.webhook)]
        if event.get("severity") in self.alert_severities:
            targets += [("alert webhook", self.alert_webhook), ("alert email", self.email)]
        return targets

    def deliver(self, event, context=None):
        """Write ``event`` everywhere it belongs; return a :class:`Delivery` (nothing raised)."""
        event = dict(event)
        if context:
            event["context"] = redact(context)
        accepted, failed, written = [], [], []
        if self.store is not None:
            try:
                linked = self.store.append(event)
                written = list(self.store.written)
                if not self.ephemeral:
                    accepted.append("file")
            except (AuditError, IOError, OSError) as exc:
                linked = event  # the other sinks still get it, unchained
                failed.append(("run chain" if self.ephemeral else "file", _describe(exc)))
        else:
            linked = event
        self.written.extend(written or [linked])
        for extra in written[:-1]:  # a chain_break written before the event: the other sinks get it too
            self._send(extra, [], [])
        for name, sink in self._targets(linked):
            if sink is None:
                if name in self.broken:
                    failed.append((name, self.broken[name]))
                continue
            self._send(linked, accepted, failed, name, sink)
        return Delivery(linked, written, accepted, failed)

    def _send(self, event, accepted, failed, name=None, sink=None):
        targets = [(name, sink)] if name else self._targets(event)
        for target, target_sink in targets:
            if target_sink is None:
                continue
            try:
                target_sink.send(event)
                accepted.append(target)
            except (AuditError, IOError, OSError) as exc:
                failed.append((target, _describe(exc)))

    def emit(self, event, context=None):
        """Deliver ``event``, pass the warnings to ``warn``; return the linked event."""
        delivery = self.deliver(event, context)
        for message in delivery.warnings():
            self.warn(message)
        return delivery.event

    def checkpoint(self, run_events=0, user=None):
        """Send the file's last ``seq`` and ``hash`` to syslog and the webhook (the anchors of ``verify``).

        Returns (record or None, accepted names, failed (name, reason) pairs).
        """
        if self.store is None or self.ephemeral or (self.syslog is None and self.webhook is None):
            return None, [], []
        tail = self.store.tail()
        if tail is None:
            return None, [], []
        record = checkpoint_record(tail, self.store.path, run_events, user)
        accepted, failed = [], []
        for name, sink in (("syslog", self.syslog), ("webhook", self.webhook)):
            if sink is not None:
                self._send(record, accepted, failed, name, sink)
        return record, accepted, failed


def _describe(exc):
    if isinstance(exc, AuditError):
        return str(exc)
    if isinstance(exc, (IOError, OSError)) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


# ---------------------------------------------------------------------------------------
# The callback's configuration, shared with the audit_event action
# ---------------------------------------------------------------------------------------
# Set by the callback (penguinmails.vps.audit) in the controller's main process: its resolved
# options, the private per-run chain file when ``file`` is empty, and the playbook and play.
# Ansible forks its workers from that process (ansible.utils.multiprocessing uses "fork"), so the
# audit_event action sees this state and writes its event itself, before its task completes: an
# event that reached no sink can then fail the task. Empty when the callback is not enabled.
RUN_STATE = {}


def audit_log_from_options(options, warn=None, run_file=None):
    """An :class:`AuditLog` from the callback's options (a dict of option name -> value).

    Sink configuration errors become warnings and failed sinks (``broken``), never exceptions.
    """
    opt = options.get
    broken = {}
    syslog = webhook = alert_webhook = email = None
    if opt("syslog_address"):
        try:
            syslog = SyslogSink(opt("syslog_address"), facility=opt("syslog_facility") or "authpriv")
        except AuditError as exc:
            broken["syslog"] = str(exc)
    hook = dict(attempts=opt("webhook_attempts") or 3, timeout=opt("webhook_timeout") or 5,
                backoff=opt("webhook_backoff") if opt("webhook_backoff") is not None else 0.5,
                secret=opt("webhook_secret"), validate_certs=opt("webhook_validate_certs") is not False,
                ca_path=opt("webhook_ca_path"))
    for name, key in (("webhook", "webhook_url"), ("alert webhook", "alert_webhook_url")):
        if opt(key):
            try:
                sink = WebhookSink(opt(key), **hook)
            except AuditError as exc:
                broken[name] = str(exc)
                continue
            if name == "webhook":
                webhook = sink
            else:
                alert_webhook = sink
    recipients = [r.strip() for r in (opt("alert_email_to") or []) if r and r.strip()]
    if recipients:
        try:
            email = EmailSink(opt("smtp_host") or "localhost", port=opt("smtp_port") or 25,
                              sender=opt("alert_email_from") or "penguinmails-audit@localhost", recipients=recipients,
                              username=opt("smtp_username") or None, password=opt("smtp_password"),
                              security=opt("smtp_security") or "none",
                              validate_certs=opt("smtp_validate_certs") is not False, ca_path=opt("smtp_ca_path"))
        except AuditError as exc:
            broken["alert email"] = str(exc)
    path = opt("file")
    for name, message in sorted(broken.items()):
        (warn or (lambda _m: None))("configuration of the %s: %s" % (name, message))
    return AuditLog(
        file_path=os.path.expanduser(path) if path else run_file,
        chain_key=opt("chain_key") or None,
        syslog=syslog, webhook=webhook, alert_webhook=alert_webhook, email=email,
        alert_severities=opt("alert_severities") or ("critical",),
        warn=warn, broken=broken, ephemeral=not path,
    )


# ---------------------------------------------------------------------------------------
# The verify command
# ---------------------------------------------------------------------------------------
USAGE = """usage: python3 -m ansible_collections.penguinmails.vps.plugins.module_utils.audit verify FILE
           [--anchor SEQ:HASH | --anchor HASH | --anchor EXPORT]... [--chain-key-env NAME]
           [--first-prev-hash HASH | --any-start] [--json]

Checks the hash chain of a penguinmails.vps audit file and names the first bad line.
--anchor     what another sink holds: SEQ:HASH or HASH written down from an earlier verify, or a file
             exported from syslog or the webhook receiver (events and end-of-run checkpoints, one per
             line): finds a cut-off end, a replaced file and a rewritten chain. Repeatable.
--chain-key-env NAME   the variable holding the chain key (default PENGUINMAILS_AUDIT_CHAIN_KEY); with a
             key only HMAC-SHA256 lines verify.
--first-prev-hash HASH the hash the first event must follow (a file split by hand); --any-start skips it.
Exit status 0: intact; 1: tampered, damaged or unreadable; 2: usage error; 3: intact apart from
chain breaks the file sink recorded (damaged bytes it skipped)."""


def main(argv=None, out=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    out = out or sys.stdout
    if len(argv) < 2 or argv[0] != "verify":
        out.write(USAGE + "\n")
        return 2
    path = argv[1]
    key_env = "PENGUINMAILS_AUDIT_CHAIN_KEY"
    first = GENESIS_HASH
    as_json = False
    anchors = []
    rest = argv[2:]
    try:
        while rest:
            option = rest.pop(0)
            if option == "--chain-key-env" and rest:
                key_env = rest.pop(0)
            elif option == "--first-prev-hash" and rest:
                first = rest.pop(0)
            elif option == "--any-start":
                first = None
            elif option == "--anchor" and rest:
                anchors.extend(load_anchors(rest.pop(0)))
            elif option == "--json":
                as_json = True
            else:
                out.write(USAGE + "\n")
                return 2
    except AuditError as exc:
        out.write("%s: %s\n" % (path, exc))
        return 2
    result = verify_file(path, os.environ.get(key_env) or None, first, anchors)
    if as_json:
        out.write(json.dumps(dict(result.as_dict(), file=path), sort_keys=True) + "\n")
    else:
        out.write("%s: %s\n" % (path, result.summary()))
    return result.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
