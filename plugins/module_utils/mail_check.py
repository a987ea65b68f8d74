# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""End-to-end mail check: SMTP AUTH, a probe message, IMAP fetch and DKIM verification.

:class:`MailCheck` runs the stages ``connect``, ``tls``, ``auth``, ``send``, ``fetch`` and ``dkim``
in order and stops at the first failure.  Each stage is reported as ``{"status": "ok" | "error" |
"skipped", "msg": ...}``; a failure raises nothing to the caller: :meth:`MailCheck.run` returns the
result dict with ``failed_stage`` and a one-line ``msg`` naming the stage.  Messages never contain
the password (it is masked even if a server echoes it).

The DKIM key is read from DNS (TXT ``<selector>._domainkey.<domain>``, split strings joined) with a
resolver that can be pointed at a given server and port, so a lab's authoritative server is used.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import email.utils
import imaplib
import smtplib
import socket
import ssl
import time
import uuid

try:
    import dkim

    HAS_DKIM = True
    DKIM_IMPORT_ERROR = None
except ImportError as _exc:  # pragma: no cover - exercised by the sanity import test
    HAS_DKIM = False
    DKIM_IMPORT_ERROR = _exc

try:
    import dns.exception
    import dns.rdatatype
    import dns.resolver

    HAS_DNSPYTHON = True
    DNSPYTHON_IMPORT_ERROR = None
except ImportError as _exc:  # pragma: no cover - exercised by the sanity import test
    HAS_DNSPYTHON = False
    DNSPYTHON_IMPORT_ERROR = _exc

STAGES = ("connect", "tls", "auth", "send", "fetch", "dkim")
SECURITY_MODES = ("starttls", "tls")


class StageError(Exception):
    """A stage failed; the message is one line and holds no secret."""

    def __init__(self, stage, message):
        super(StageError, self).__init__(message)
        self.stage = stage


def default_security(port):
    """Implicit TLS on 465, STARTTLS otherwise (587, 25)."""
    return "tls" if int(port) == 465 else "starttls"


def _one_line(text, limit=300):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _reply(exc):
    """'535 5.7.8 ...' from an smtplib exception, without anything the client sent."""
    code = getattr(exc, "smtp_code", None)
    text = getattr(exc, "smtp_error", b"")
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return _one_line("%s %s" % (code, text)) if code else type(exc).__name__


def _socket_cause(exc):
    if isinstance(exc, socket.timeout):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "name resolution failed (%s)" % _one_line(exc)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return "server closed the connection"
    return _one_line("%s: %s" % (type(exc).__name__, exc))


def dkim_txt_name(selector, domain):
    return "%s._domainkey.%s" % (selector, domain)


def parse_tag_list(value):
    """Parse a DKIM tag=value list (signature header or key record) into a dict."""
    tags = {}
    for part in value.split(";"):
        if "=" in part:
            key, _sep, val = part.partition("=")
            tags[key.strip()] = "".join(val.split())
    return tags


class _IMAP4TLS(imaplib.IMAP4_SSL):
    """IMAP over TLS whose certificate is checked against ``server_name`` (the host may be an IP address)."""

    def __init__(self, server_name, *args, **kwargs):
        self._server_name = server_name
        imaplib.IMAP4_SSL.__init__(self, *args, **kwargs)

    def _create_socket(self, *args):
        sock = imaplib.IMAP4._create_socket(self, *args)  # pylint: disable=protected-access
        return self.ssl_context.wrap_socket(sock, server_hostname=self._server_name)


class MailCheck(object):
    """One end-to-end check; see the module ``smtp_check`` for the meaning of the options."""

    def __init__(self, host, username, password, port=587, security=None, validate_certs=True, ca_cert=None,
                 tls_server_name=None, timeout=10, imap_host=None, imap_port=993, fetch_timeout=30,
                 verify_dkim=True, dkim_domain=None, dkim_selector=None, dns_server=None, dns_port=53,
                 ehlo_name=None, send_probe=True):
        self.host = host
        self.port = int(port)
        self.security = security or default_security(self.port)
        self.username = username
        self.password = password
        self.validate_certs = validate_certs
        self.ca_cert = ca_cert
        self.tls_server_name = tls_server_name or host
        self.timeout = timeout
        self.imap_host = imap_host or host
        self.imap_port = int(imap_port)
        self.fetch_timeout = fetch_timeout
        self.verify_dkim = verify_dkim
        self.sender_domain = username.rpartition("@")[2].lower() if "@" in username else None
        self.dkim_domain = (dkim_domain or self.sender_domain or "").lower().rstrip(".") or None
        self.dkim_selector = dkim_selector
        self.dns_server = dns_server
        self.dns_port = int(dns_port)
        self.ehlo_name = ehlo_name
        self.send_probe = send_probe
        self.stages = dict((name, {"status": "skipped", "msg": "not run"}) for name in STAGES)
        self.result = {"server": "%s:%d" % (host, self.port), "security": self.security, "message_id": None,
                       "dkim": {}, "failed_stage": None}
        self.smtp = None

    # -- helpers -------------------------------------------------------------------------
    def mask(self, text):
        text = _one_line(text)
        if self.password and len(self.password) >= 3:
            text = text.replace(self.password, "********")
        return text

    def ok(self, stage, msg):
        self.stages[stage] = {"status": "ok", "msg": self.mask(msg)}

    def tls_context(self):
        if not self.validate_certs:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        return ssl.create_default_context(cafile=self.ca_cert)

    def tls_error(self, where, exc):
        if isinstance(exc, ssl.SSLCertVerificationError):
            return StageError("tls", "the certificate of %s does not verify (%s); give ca_cert, or set "
                                     "validate_certs=false for a self-signed lab certificate"
                              % (where, _one_line(getattr(exc, "verify_message", None) or exc)))
        return StageError("tls", "TLS handshake with %s failed: %s" % (where, _socket_cause(exc)))

    # -- stages --------------------------------------------------------------------------
    def run(self):
        """Run every stage; return the result dict (``failed`` and ``msg`` when a stage failed)."""
        try:
            self.connect_and_auth()
            if self.send_probe:
                message_id = self.send()
                raw = self.fetch(message_id)
                if self.verify_dkim:
                    self.check_dkim(raw)
                else:
                    self.stages["dkim"] = {"status": "skipped", "msg": "verify_dkim is false"}
            else:
                for stage in ("send", "fetch", "dkim"):
                    self.stages[stage] = {"status": "skipped", "msg": "check mode: no probe sent"}
            self.result["failed"] = False
            self.result["msg"] = "mail check passed at %s (%s)" % (
                self.result["server"], ", ".join(s for s in STAGES if self.stages[s]["status"] == "ok"))
        except StageError as exc:
            self.stages[exc.stage] = {"status": "error", "msg": self.mask(exc)}
            self.result["failed"] = True
            self.result["failed_stage"] = exc.stage
            self.result["msg"] = self.mask("mail check failed at stage %s: %s" % (exc.stage, exc))
        finally:
            self.close()
        self.result["stages"] = self.stages
        return self.result

    def close(self):
        if self.smtp is not None:
            try:
                self.smtp.quit()
            except (smtplib.SMTPException, OSError):
                try:
                    self.smtp.close()
                except OSError:
                    pass
            self.smtp = None

    def connect_and_auth(self):
        where = "%s:%d" % (self.host, self.port)
        smtp = smtplib.SMTP(local_hostname=self.ehlo_name, timeout=self.timeout)
        context = self.tls_context()
        try:
            raw = socket.create_connection((self.host, self.port), self.timeout)
        except (OSError, socket.timeout) as exc:
            raise StageError("connect", "cannot connect to %s: %s" % (where, _socket_cause(exc)))
        if self.security == "tls":
            try:
                sock = context.wrap_socket(raw, server_hostname=self.tls_server_name)
            except (ssl.SSLError, OSError) as exc:
                raw.close()
                raise self.tls_error(where, exc)
        else:
            sock = raw
        smtp.sock = sock
        smtp.file = None
        smtp._host = self.tls_server_name  # pylint: disable=protected-access  # name checked by starttls
        self.smtp = smtp
        try:
            code, greeting = smtp.getreply()
            if code != 220:
                raise StageError("connect", "%s greeted with %s instead of 220" % (where, _one_line(code)))
            smtp.ehlo()
        except (smtplib.SMTPException, OSError) as exc:
            raise StageError("connect", "%s: no SMTP greeting: %s" % (where, _socket_cause(exc)))
        self.ok("connect", "%s answered %s" % (where, _one_line(greeting.decode("utf-8", "replace"), 120)))
        refusal = None
        if self.security == "starttls":
            if not smtp.has_extn("starttls"):
                raise StageError("tls", "%s does not offer STARTTLS" % where)
            refusal = self.auth_before_tls(smtp, where)
            try:
                smtp.starttls(context=context)
            except smtplib.SMTPResponseException as exc:
                raise StageError("tls", "%s refused STARTTLS: %s" % (where, _reply(exc)))
            except (ssl.SSLError, OSError, smtplib.SMTPException) as exc:
                raise self.tls_error(where, exc)
            smtp.ehlo()
        version = smtp.sock.version() if hasattr(smtp.sock, "version") else None
        self.ok("tls", "%s with %s%s%s" % (
            "STARTTLS" if self.security == "starttls" else "implicit TLS", version or "TLS",
            "" if self.validate_certs else " (certificate not verified)",
            "; AUTH before STARTTLS refused (%s)" % refusal if refusal else ""))
        if not smtp.has_extn("auth"):
            raise StageError("auth", "%s does not offer SMTP AUTH after TLS" % where)
        try:
            smtp.login(self.username, self.password)
        except smtplib.SMTPAuthenticationError as exc:
            raise StageError("auth", "%s refused the credentials of %s (%s)" % (where, self.username, _reply(exc)))
        except smtplib.SMTPException as exc:
            raise StageError("auth", "SMTP AUTH as %s at %s failed: %s" % (self.username, where, _reply(exc)))
        except OSError as exc:
            raise StageError("auth", "SMTP AUTH at %s failed: %s" % (where, _socket_cause(exc)))
        self.ok("auth", "authenticated as %s" % self.username)

    def auth_before_tls(self, smtp, where):
        """The server must refuse SMTP AUTH on the plain connection; return its refusal ('503 5.5.1 ...').

        ``AUTH PLAIN`` is sent without an initial response, so no credential is ever sent in clear; a server
        that asks for one (334) gets the exchange cancelled (``*``, RFC 4954) and fails the ``tls`` stage.
        """
        if smtp.has_extn("auth"):
            raise StageError("tls", "%s offers SMTP AUTH before STARTTLS: credentials could cross the network in clear"
                             % where)
        try:
            code, reply = smtp.docmd("AUTH", "PLAIN")
            if code == 334:
                smtp.docmd("*")
        except (smtplib.SMTPException, OSError) as exc:
            raise StageError("tls", "%s: AUTH before STARTTLS failed: %s" % (where, _socket_cause(exc)))
        reply = _one_line("%s %s" % (code, reply.decode("utf-8", "replace")), 120)
        if not 500 <= code < 600:
            raise StageError("tls", "%s does not refuse SMTP AUTH before STARTTLS (%s)" % (where, reply))
        return reply

    def build_probe(self):
        token = uuid.uuid4().hex
        message_id = email.utils.make_msgid(idstring="smtp-check-" + token, domain=self.sender_domain or "localhost")
        lines = [
            "From: %s" % self.username,
            "To: %s" % self.username,
            "Subject: penguinmails smtp_check probe %s" % token,
            "Date: %s" % email.utils.formatdate(localtime=False),
            "Message-ID: %s" % message_id,
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=us-ascii",
            "",
            "This message was sent by penguinmails.vps.smtp_check to verify SMTP AUTH and DKIM.",
            "It can be deleted.",
            "",
        ]
        return message_id, "\r\n".join(lines)

    def send(self):
        message_id, message = self.build_probe()
        self.result["message_id"] = message_id
        try:
            refused = self.smtp.sendmail(self.username, [self.username], message)
        except smtplib.SMTPRecipientsRefused as exc:
            details = "; ".join("%s: %s %s" % (r, c, m.decode("utf-8", "replace") if isinstance(m, bytes) else m)
                                for r, (c, m) in exc.recipients.items())
            raise StageError("send", "the server refused the recipient (%s)" % _one_line(details))
        except smtplib.SMTPException as exc:
            raise StageError("send", "the server refused the probe message: %s" % _reply(exc))
        except OSError as exc:
            raise StageError("send", "sending the probe failed: %s" % _socket_cause(exc))
        if refused:
            raise StageError("send", "the server refused the recipient %s" % ", ".join(refused))
        self.ok("send", "probe %s accepted for %s" % (message_id, self.username))
        return message_id

    def imap_connect(self):
        """IMAPS to imap_host, checking the certificate against tls_server_name when imap_host is the SMTP host."""
        context = self.tls_context()
        name = self.tls_server_name if self.imap_host == self.host else self.imap_host
        try:
            return _IMAP4TLS(name, self.imap_host, self.imap_port, ssl_context=context, timeout=self.timeout)
        except TypeError:  # pragma: no cover - Python < 3.9 has no timeout argument
            return _IMAP4TLS(name, self.imap_host, self.imap_port, ssl_context=context)

    def fetch(self, message_id):
        where = "IMAPS %s:%d" % (self.imap_host, self.imap_port)
        try:
            imap = self.imap_connect()
        except ssl.SSLCertVerificationError as exc:
            raise StageError("fetch", "the certificate of %s does not verify (%s)"
                             % (where, _one_line(getattr(exc, "verify_message", None) or exc)))
        except (OSError, imaplib.IMAP4.error) as exc:
            raise StageError("fetch", "cannot connect to %s: %s" % (where, _socket_cause(exc)))
        try:
            try:
                imap.login(self.username, self.password)
            except imaplib.IMAP4.error:
                raise StageError("fetch", "%s refused the login of %s" % (where, self.username))
            deadline = time.monotonic() + self.fetch_timeout
            while True:
                typ, _unused = imap.select("INBOX", readonly=True)
                if typ != "OK":
                    raise StageError("fetch", "%s cannot open INBOX of %s" % (where, self.username))
                typ, data = imap.search(None, "HEADER", "Message-ID", '"%s"' % message_id)
                numbers = data[0].split() if typ == "OK" and data and data[0] else []
                if numbers:
                    break
                if time.monotonic() > deadline:
                    raise StageError("fetch", "the probe %s did not arrive in the INBOX of %s at %s within %ss"
                                     % (message_id, self.username, where, self.fetch_timeout))
                time.sleep(0.2)
            typ, data = imap.fetch(numbers[-1], "(BODY.PEEK[])")
            raw = None
            for item in data or []:
                if isinstance(item, tuple) and len(item) == 2:
                    raw = item[1]
            if typ != "OK" or not raw:
                raise StageError("fetch", "%s did not return the probe %s" % (where, message_id))
        except (OSError, imaplib.IMAP4.error) as exc:
            raise StageError("fetch", "reading the probe from %s failed: %s" % (where, _socket_cause(exc)))
        finally:
            try:
                imap.logout()
            except (OSError, imaplib.IMAP4.error):
                pass
        self.ok("fetch", "probe %s found in the INBOX of %s (%d bytes)" % (message_id, self.username, len(raw)))
        return raw

    # -- DKIM ----------------------------------------------------------------------------
    def resolver(self):
        if not self.dns_server:
            resolver = dns.resolver.Resolver()
        else:
            resolver = dns.resolver.Resolver(configure=False)
            try:
                address = socket.getaddrinfo(self.dns_server, self.dns_port)[0][4][0]
            except socket.gaierror:
                raise StageError("dkim", "cannot resolve the DNS server name %s" % self.dns_server)
            resolver.nameservers = [address]
            resolver.port = self.dns_port
        resolver.lifetime = self.timeout
        resolver.timeout = self.timeout
        return resolver

    def lookup_key(self, name):
        """Return the DKIM TXT record at ``name`` (bytes, split strings joined), or raise StageError."""
        where = "%s:%d" % (self.dns_server, self.dns_port) if self.dns_server else "the system resolver"
        try:
            answer = self.resolver().resolve(name, "TXT", raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            raise StageError("dkim", "no DKIM key is published at %s (NXDOMAIN from %s)" % (name, where))
        except dns.exception.Timeout:
            raise StageError("dkim", "DNS query for TXT %s timed out at %s" % (name, where))
        except dns.exception.DNSException as exc:
            raise StageError("dkim", "DNS query for TXT %s at %s failed: %s" % (name, where, type(exc).__name__))
        records = [b"".join(rdata.strings) for rdata in (answer.rrset or [])]
        keys = [r for r in records if b"p=" in r]
        if not keys:
            raise StageError("dkim", "no DKIM key is published at %s (%d TXT records, none with p=)"
                             % (name, len(records)))
        return keys[0]

    def check_dkim(self, raw):
        if not raw.startswith(b"DKIM-Signature") and b"\nDKIM-Signature:" not in raw.split(b"\r\n\r\n")[0]:
            raise StageError("dkim", "the probe arrived without a DKIM-Signature: the server did not sign it")
        message = email.message_from_bytes(raw)
        signatures = message.get_all("DKIM-Signature") or []
        tags = parse_tag_list(str(signatures[0]))
        domain, selector = tags.get("d", "").lower(), tags.get("s", "")
        name = dkim_txt_name(selector, domain)
        self.result["dkim"] = {"domain": domain, "selector": selector, "dns_name": name, "verified": False}
        if self.dkim_domain and domain != self.dkim_domain:
            raise StageError("dkim", "the probe is signed for d=%s, expected d=%s" % (domain, self.dkim_domain))
        if self.dkim_selector and selector != self.dkim_selector:
            raise StageError("dkim", "the probe is signed with selector %s, expected %s" % (selector, self.dkim_selector))
        record = self.lookup_key(name)

        def dnsfunc(qname, timeout=5):
            wanted = qname.decode("ascii", "replace") if isinstance(qname, bytes) else qname
            return record if wanted.rstrip(".").lower() == name.lower() else None

        verifier = dkim.DKIM(raw)
        try:
            verified = verifier.verify(idx=0, dnsfunc=dnsfunc)
        except dkim.DKIMException as exc:
            raise StageError("dkim", "DKIM verification of d=%s s=%s failed: %s" % (domain, selector, _one_line(exc)))
        if not verified:
            raise StageError("dkim", "the DKIM signature (d=%s, s=%s) does not verify against the key published at "
                                     "%s: the DNS key does not match the signing key" % (domain, selector, name))
        self.result["dkim"]["verified"] = True
        self.ok("dkim", "signature d=%s s=%s verified against TXT %s" % (domain, selector, name))
