# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where audit events go: the file (chained, locked), syslog, webhooks and mail, and one delivery's verdict."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import hmac
import json
import os
import re
import socket
import ssl
import time

from ansible_collections.penguinmails.vps.plugins.module_utils.audit_chain import GENESIS_HASH, _as_event, _key_bytes, chain, new_chain_id
from ansible_collections.penguinmails.vps.plugins.module_utils.audit_format import (
    CHAIN_BREAK_ACTION,
    AuditError,
    _short,
    build_event,
    iso_timestamp,
)
from ansible_collections.penguinmails.vps.plugins.module_utils.mailer import tls_context as mailer_tls_context
try:  # POSIX only; the file sink degrades to unlocked appends elsewhere.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None


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
                        "skipped_bytes": end - good_end + len(prefix), "skipped_lines": skipped_lines, "after_seq": seq})
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
    try:
        return mailer_tls_context(validate_certs, ca_path)
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
