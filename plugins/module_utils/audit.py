# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Audit events of penguinmails.vps: model, redaction, hash chain, sinks and the verify command.

An event has the seed's fields ``timestamp, action, tenantId, userId, ipAddress, status,
details`` plus ``severity`` and, once written by :class:`AuditLog`, ``context``, ``seq``,
``prev_hash`` and ``hash``.  ``hash`` is SHA-256 (or HMAC-SHA256 with a chain key) over the
canonical JSON of the event without ``hash``; since that includes ``prev_hash``, editing,
removing or reordering any event breaks every later link, which :func:`verify_file` reports.

This file only uses the Python standard library, so the verify command runs anywhere::

    python plugins/module_utils/audit.py verify /var/log/penguinmails/audit.jsonl
    python -m ansible_collections.penguinmails.vps.plugins.module_utils.audit verify FILE
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
import sys
import time

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

# The events the collection's playbooks emit; other names matching ACTION_PATTERN are allowed.
KNOWN_ACTIONS = (
    "ssh_key_downloaded",
    "ssh_key_rotated",
    "ssh_key_revoked",
    "ssh_key_regenerated",
    "vps_migration_completed",
    "vps_migration_failed",
    "smtp_credentials_recovered",
    "bulk_rotation_completed",
    "ssh_login_failed",
)
# Severity by action when the caller does not set one; otherwise failure -> critical, success -> info.
ACTION_SEVERITY = {
    "vps_migration_failed": "critical",
    "ssh_login_failed": "warning",
}
EVENT_FIELDS = ("timestamp", "action", "tenantId", "userId", "ipAddress", "status", "severity", "details")


class AuditError(Exception):
    """A one-line, secret-free error about an event, a sink or a log file."""


# ---------------------------------------------------------------------------------------
# Redaction
# ---------------------------------------------------------------------------------------
# Keys whose values are secrets whatever they look like.
_SECRET_KEY_RE = re.compile(
    r"(pass(word|wd|phrase)?|pwd|secret|token|private[_-]?key|api[_-]?key|credential|jwt|cookie|"
    r"authorization|bearer|otp|unseal|wrap(ped|ping)?[_-]?(info|response))",
    re.IGNORECASE,
)
# Keys that match the pattern above but only ever hold public or descriptive values.
_PUBLIC_KEYS = frozenset(("token_type", "token_policies", "tokenless", "secret_path", "password_set"))
_PEM_RE = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)", re.DOTALL
)
_VALUE_PATTERNS = (
    # PuTTY private keys
    (re.compile(r"PuTTY-User-Key-File-\d:.*?(?:Private-MAC: \S+|\Z)", re.DOTALL), REDACTED),
    # Vault / OpenBao tokens (service, batch, recovery; legacy s./b./r. tokens)
    (re.compile(r"\bhv[sbr]\.[A-Za-z0-9_-]{20,}|\b[sbr]\.[A-Za-z0-9]{24}\b"), REDACTED),
    # JSON Web Tokens
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), REDACTED),
    # well-known API token shapes (GitHub, GitLab, Slack, AWS access key ids)
    (re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|glpat-[A-Za-z0-9_-]{20,}|xox[abprs]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16})\b"), REDACTED),
    # HTTP authorization values
    (re.compile(r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE), r"\1 " + REDACTED),
    # user:password@ in URLs
    (re.compile(r"([a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s/]+@", re.IGNORECASE), r"\1" + REDACTED + "@"),
    # password=..., token: ..., "secret" = ... inside free text
    (
        re.compile(
            r"((?:pass(?:word|wd|phrase)?|pwd|secret(?:_id)?|token|api[_-]?key|private[_-]?key)\"?\s*[=:]\s*\"?)"
            r"(?!\*{8})[^\s\",;&]+",
            re.IGNORECASE,
        ),
        r"\1" + REDACTED,
    ),
)


# Random-looking words (20+ characters mixing lower case, upper case and digits) are treated as
# generated passwords or tokens. Public material is kept: SSH public keys, SHA256: fingerprints,
# hex digests and UUIDs have no mixed case or come after a known prefix.
_WORD_RE = re.compile(r"(?<![A-Za-z0-9+/=_.~-])([A-Za-z0-9+/=_.~-]{20,})")
_PUBLIC_PREFIX_RE = re.compile(r"(?:SHA256:|MD5:|(?:ssh|ecdsa|sk)-[a-z0-9@.-]+ )$")


def _looks_random(word):
    if not (re.search(r"[a-z]", word) and re.search(r"[A-Z]", word) and re.search(r"[0-9]", word)):
        return False
    if word.startswith("AAAA"):  # base64 body of an SSH public key
        return False
    # Random strings switch between lower case, upper case and digits at most characters
    # (about 2 in 3); identifiers such as Provision_the_vps_t1 or ISO dates rarely do.
    classes = [0 if c.islower() else 1 if c.isupper() else 2 for c in word if c.isalnum()]
    switches = sum(1 for a, b in zip(classes, classes[1:]) if a != b)
    return switches * 10 >= len(classes) * 3


def _mask_random_words(text):
    def replace(match):
        word = match.group(1)
        if _PUBLIC_PREFIX_RE.search(text[max(0, match.start() - 40):match.start()]):
            return word
        return REDACTED if _looks_random(word) else word

    return _WORD_RE.sub(replace, text)


def is_secret_key(name):
    """True when a mapping key names a secret (password, token, private_key, api_key, ...)."""
    if not isinstance(name, str):
        return False
    if name.lower() in _PUBLIC_KEYS:
        return False
    return bool(_SECRET_KEY_RE.search(name))


def redact_text(text, heuristics=True):
    """Mask private keys, tokens and passwords inside a string.

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

    * values under secret-looking keys become ``********`` (booleans and ``None`` stay);
    * strings are scanned for private keys, tokens, ``user:password@`` and ``password=...``;
    * every occurrence of a string in ``no_log_values`` is masked as well.
    """
    hidden = sorted((v for v in no_log_values if isinstance(v, str) and len(v) >= 4), key=len, reverse=True)
    return _redact(value, hidden, 0)


def _redact(value, hidden, depth):
    if depth > 64:
        return REDACTED
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            name = str(key)
            if is_secret_key(name) and item is not None and not isinstance(item, bool) and item != "":
                result[name] = REDACTED
            else:
                result[name] = _redact(item, hidden, depth + 1)
        return result
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_redact(item, hidden, depth + 1) for item in value]
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        for secret in hidden:
            value = value.replace(secret, REDACTED)
        return redact_text(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return redact_text(str(value))


# ---------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------
def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def iso_timestamp(moment=None):
    moment = moment or utc_now()
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def default_severity(action, status):
    if action in ACTION_SEVERITY:
        return ACTION_SEVERITY[action]
    return "critical" if status == "failure" else "info"


def build_event(action, status="success", tenant_id=None, user_id=None, ip_address=None, details=None,
                severity=None, timestamp=None, no_log_values=()):
    """Validate the parts of an event and return it as a dict (details redacted).

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
        "details": redact(details, no_log_values),
    }


def audit_event_argument_spec():
    """The options of the ``audit_event`` module and action (shared so they cannot drift)."""
    return dict(
        action=dict(type="str", required=True),
        status=dict(type="str", default="success", choices=list(STATUSES)),
        tenant_id=dict(type="str"),
        user_id=dict(type="str"),
        ip_address=dict(type="str"),
        details=dict(type="dict", default={}),
        severity=dict(type="str", choices=list(SEVERITIES)),
        redact_values=dict(type="list", elements="str", default=[], no_log=True),
    )


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


def chain(event, prev_hash, seq, chain_key=None):
    """Return a copy of ``event`` linked after ``prev_hash`` with ``seq``, ``hash_alg`` and ``hash``."""
    linked = copy.deepcopy(event)
    linked.pop("hash", None)
    linked["seq"] = seq
    linked["prev_hash"] = prev_hash
    linked["hash_alg"] = "hmac-sha256" if chain_key else "sha256"
    linked["hash"] = event_hash(linked, chain_key)
    return linked


def _key_bytes(key):
    return key if isinstance(key, bytes) else str(key).encode("utf-8")


class VerifyResult(object):
    def __init__(self, ok, count, last_hash, problems):
        self.ok = ok
        self.count = count
        self.last_hash = last_hash
        self.problems = problems

    def summary(self):
        if self.ok:
            return "OK: %d events, chain intact, last hash %s" % (self.count, self.last_hash)
        return "FAILED: %s" % "; ".join(self.problems[:5]) + (" (+%d more)" % (len(self.problems) - 5) if len(self.problems) > 5 else "")


def verify_lines(lines, chain_key=None, first_prev_hash=GENESIS_HASH):
    """Check every link of a chain given as JSON lines; return a :class:`VerifyResult`.

    ``first_prev_hash`` is the hash the first event must follow (the genesis hash for a new log,
    or the last hash of the previous file after a rotation); ``None`` accepts any start.
    """
    problems = []
    prev_hash = first_prev_hash
    prev_seq = None
    count = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        count += 1
        try:
            event = json.loads(line)
        except ValueError:
            problems.append("line %d: not valid JSON" % number)
            prev_hash, prev_seq = "?", None
            continue
        if not isinstance(event, dict) or "hash" not in event or "prev_hash" not in event:
            problems.append("line %d: no hash chain fields" % number)
            prev_hash, prev_seq = "?", None
            continue
        if event.get("hash_alg") == "hmac-sha256" and not chain_key:
            problems.append("line %d: HMAC chain: a chain key is needed (PENGUINMAILS_AUDIT_CHAIN_KEY)" % number)
            break
        if event_hash(event, chain_key if event.get("hash_alg") == "hmac-sha256" else None) != event["hash"]:
            problems.append("line %d: hash mismatch (the event was modified)" % number)
        if prev_hash is not None and prev_hash != "?" and event["prev_hash"] != prev_hash:
            problems.append("line %d: prev_hash does not match the previous event (an event was removed, inserted or reordered)" % number)
        seq = event.get("seq")
        if prev_seq is not None and seq != prev_seq + 1:
            problems.append("line %d: sequence %s follows %s" % (number, seq, prev_seq))
        prev_seq = seq if isinstance(seq, int) else None
        prev_hash = event["hash"]
    last = prev_hash if prev_hash not in (None, "?") else ""
    return VerifyResult(not problems, count, last, problems)


def verify_file(path, chain_key=None, first_prev_hash=GENESIS_HASH):
    try:
        with open(path, "r", encoding="utf-8") as handle:
            return verify_lines(handle, chain_key, first_prev_hash)
    except (IOError, OSError) as exc:
        return VerifyResult(False, 0, "", ["cannot read %s: %s" % (path, exc.strerror or type(exc).__name__)])


def _last_line(handle):
    """The last non-empty line of a binary file handle (read backwards in blocks)."""
    handle.seek(0, os.SEEK_END)
    end = handle.tell()
    data = b""
    position = end
    while position > 0:
        step = min(4096, position)
        position -= step
        handle.seek(position)
        data = handle.read(step) + data
        stripped = data.rstrip(b"\n")
        if b"\n" in stripped:
            return stripped.rsplit(b"\n", 1)[1]
    return data.rstrip(b"\n") or None


# ---------------------------------------------------------------------------------------
# Sinks
# ---------------------------------------------------------------------------------------
class FileSink(object):
    """Append-only JSON lines file (0600); the chain continues across runs and processes."""

    def __init__(self, path, chain_key=None):
        self.path = os.path.abspath(os.path.expanduser(path))
        self.chain_key = chain_key

    def append(self, event):
        """Link ``event`` after the file's last event under an exclusive lock and append it."""
        directory = os.path.dirname(self.path)
        if directory and not os.path.isdir(directory):
            os.makedirs(directory, 0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "r+b") as handle:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                prev_hash, seq = GENESIS_HASH, 0
                last = _last_line(handle)
                if last:
                    try:
                        previous = json.loads(last.decode("utf-8"))
                        prev_hash, seq = previous["hash"], int(previous["seq"])
                    except (ValueError, KeyError, TypeError):
                        raise AuditError("audit file %s ends with a line that is not an audit event" % self.path)
                linked = chain(event, prev_hash, seq + 1, self.chain_key)
                handle.seek(0, os.SEEK_END)
                handle.write((json.dumps(linked, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
            finally:
                if fcntl is not None:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return linked


class MemoryChain(object):
    """The chain kept in memory when no file is configured (one chain per run)."""

    def __init__(self, chain_key=None):
        self.chain_key = chain_key
        self.prev_hash = GENESIS_HASH
        self.seq = 0

    def append(self, event):
        self.seq += 1
        linked = chain(event, self.prev_hash, self.seq, self.chain_key)
        self.prev_hash = linked["hash"]
        return linked


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
            return
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            sock = socket.socket(socket.AF_UNIX, kind)
            try:
                sock.settimeout(self.timeout)
                sock.connect(address)
                if kind == socket.SOCK_DGRAM:
                    sock.send(message)
                else:
                    sock.sendall(message + b"\0")
                return
            except socket.error as exc:
                if kind == socket.SOCK_STREAM or getattr(exc, "errno", None) not in (91, 107, 111):  # EPROTOTYPE...
                    raise
            finally:
                sock.close()


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


class WebhookSink(object):
    """POST each event as JSON; bounded attempts with exponential back-off.

    Retries on transport errors, HTTP 408, 429 and 5xx; other 4xx answers are final.
    With ``secret``, the body is signed: ``X-Penguinmails-Signature: sha256=<hmac hex>``.
    """

    def __init__(self, url, attempts=3, timeout=5, backoff=0.5, secret=None, headers=None, validate_certs=True):
        if not re.match(r"^https?://", url or ""):
            raise AuditError("webhook url must start with http:// or https://")
        self.url = url
        self.attempts = max(1, int(attempts))
        self.timeout = timeout
        self.backoff = backoff
        self.secret = secret
        self.headers = dict(headers or {})
        self.validate_certs = validate_certs

    def send(self, event):
        """Deliver ``event``; return the number of attempts made. Raises AuditError after the last."""
        import urllib.error
        import urllib.request
        import ssl

        body = json.dumps(event, sort_keys=True, ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json", "User-Agent": "penguinmails-vps-audit/1",
                   "X-Penguinmails-Event": str(event.get("action"))}
        headers.update(self.headers)
        if self.secret:
            headers["X-Penguinmails-Signature"] = "sha256=" + hmac.new(_key_bytes(self.secret), body, hashlib.sha256).hexdigest()
        context = None
        if self.url.startswith("https://") and not self.validate_certs:
            context = ssl._create_unverified_context()  # pylint: disable=protected-access
        last = "no attempt"
        for attempt in range(1, self.attempts + 1):
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))
                with opener.open(request, timeout=self.timeout) as response:
                    response.read()
                    return attempt
            except urllib.error.HTTPError as exc:
                last = "HTTP %s" % exc.code
                if exc.code not in (408, 429) and exc.code < 500:
                    raise AuditError("webhook %s refused the event: %s" % (_safe_url(self.url), last))
            except (urllib.error.URLError, socket.error, ValueError) as exc:
                reason = getattr(exc, "reason", exc)
                last = "%s" % (type(reason).__name__ if not isinstance(reason, str) else reason)
            if attempt < self.attempts:
                time.sleep(min(self.backoff * (2 ** (attempt - 1)), 10))
        raise AuditError("webhook %s: delivery failed after %d attempts (%s)" % (_safe_url(self.url), self.attempts, last))


def _safe_url(url):
    """The URL without user info and query string (which may carry tokens)."""
    match = re.match(r"^(https?://)(?:[^@/]*@)?([^/?#]*)([^?#]*)", url or "")
    return "".join(match.groups()) if match else "<webhook>"


class EmailSink(object):
    """Alert mails through an SMTP server (STARTTLS or implicit TLS optional, AUTH optional)."""

    def __init__(self, host, port=25, sender="penguinmails-audit@localhost", recipients=(), username=None,
                 password=None, security="none", timeout=10, attempts=2):
        if not recipients:
            raise AuditError("alert email needs at least one recipient")
        if security not in ("none", "starttls", "tls"):
            raise AuditError("invalid smtp security %r: none, starttls or tls" % _short(security))
        self.host, self.port, self.sender = host, int(port), sender
        self.recipients = list(recipients)
        self.username, self.password, self.security = username, password, security
        self.timeout = timeout
        self.attempts = max(1, int(attempts))

    def message(self, event):
        from email.message import EmailMessage

        msg = EmailMessage()
        msg["Subject"] = "[penguinmails audit] %s %s tenant %s: %s" % (
            event.get("severity", "").upper(), event.get("action"), event.get("tenantId") or "-", event.get("status"))
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        msg.set_content(json.dumps(event, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        return msg

    def send(self, event):
        import smtplib

        last = "no attempt"
        for attempt in range(1, self.attempts + 1):
            try:
                if self.security == "tls":
                    server = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout)
                else:
                    server = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
                try:
                    if self.security == "starttls":
                        server.starttls()
                    if self.username:
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
            except (smtplib.SMTPException, socket.error) as exc:
                last = type(exc).__name__
            if attempt < self.attempts:
                time.sleep(0.5 * attempt)
        raise AuditError("alert email via %s:%s failed after %d attempts (%s)" % (self.host, self.port, self.attempts, last))


# ---------------------------------------------------------------------------------------
# The audit log: chain + sinks
# ---------------------------------------------------------------------------------------
class AuditLog(object):
    """Writes events: chained in the file (or in memory), then copied to syslog and webhooks;
    critical events also go to the alert webhook and the alert mail.

    ``warn`` receives one-line, secret-free messages about sinks that failed; a failing sink
    never stops the others.
    """

    def __init__(self, file_path=None, chain_key=None, syslog=None, webhook=None, alert_webhook=None, email=None,
                 alert_severities=("critical",), warn=None):
        self.store = FileSink(file_path, chain_key) if file_path else MemoryChain(chain_key)
        self.syslog = syslog
        self.webhook = webhook
        self.alert_webhook = alert_webhook
        self.email = email
        self.alert_severities = tuple(alert_severities)
        self.warn = warn or (lambda message: None)
        self.written = []

    def emit(self, event, context=None):
        event = dict(event)
        if context:
            event["context"] = redact(context)
        try:
            linked = self.store.append(event)
        except (AuditError, IOError, OSError) as exc:
            self.warn("audit file: cannot write event %s: %s" % (event.get("action"), _describe(exc)))
            linked = MemoryChain(self.store.chain_key).append(event)
        self.written.append(linked)
        targets = [("syslog", self.syslog), ("webhook", self.webhook)]
        if linked.get("severity") in self.alert_severities:
            targets += [("alert webhook", self.alert_webhook), ("alert email", self.email)]
        for name, sink in targets:
            if sink is None:
                continue
            try:
                sink.send(linked)
            except (AuditError, IOError, OSError) as exc:
                self.warn("audit %s: event %s not delivered: %s" % (name, linked.get("action"), _describe(exc)))
        return linked


def _describe(exc):
    if isinstance(exc, AuditError):
        return str(exc)
    if isinstance(exc, (IOError, OSError)) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


# ---------------------------------------------------------------------------------------
# The verify command
# ---------------------------------------------------------------------------------------
USAGE = """usage: audit.py verify FILE [--chain-key-env NAME] [--first-prev-hash HASH | --any-start]

Checks the hash chain of a penguinmails.vps audit file. Exit status 0: intact; 1: tampered or
unreadable; 2: usage error. An HMAC chain needs its key in the environment variable NAME
(default PENGUINMAILS_AUDIT_CHAIN_KEY). After a log rotation, pass the last hash of the previous
file with --first-prev-hash (or --any-start to skip that check)."""


def main(argv=None, out=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    out = out or sys.stdout
    if len(argv) < 2 or argv[0] != "verify":
        out.write(USAGE + "\n")
        return 2
    path = argv[1]
    key_env = "PENGUINMAILS_AUDIT_CHAIN_KEY"
    first = GENESIS_HASH
    rest = argv[2:]
    while rest:
        option = rest.pop(0)
        if option == "--chain-key-env" and rest:
            key_env = rest.pop(0)
        elif option == "--first-prev-hash" and rest:
            first = rest.pop(0)
        elif option == "--any-start":
            first = None
        else:
            out.write(USAGE + "\n")
            return 2
    result = verify_file(path, os.environ.get(key_env) or None, first)
    out.write("%s: %s\n" % (path, result.summary()))
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
