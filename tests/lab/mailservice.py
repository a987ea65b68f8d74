# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's stand-in for Mailu's containers (no docker engine in the lab).

It reads the files roles/mailu and roles/dkim render, exactly where Mailu reads them:

* ``ROOT/mailu.env``: DOMAIN, HOSTNAMES, PORTS, DKIM_SELECTOR, INITIAL_ADMIN_ACCOUNT/DOMAIN/PW/MODE;
* ``ROOT/dkim/<domain>.<selector>.key``: the DKIM private keys (PKCS#8 or PKCS#1 PEM), read per message;
* ``ROOT/data/users.json`` (0600): accounts, holding only PBKDF2 password hashes, written by
  ``admin`` (the mirror of ``flask mailu admin LOCALPART DOMAIN PASSWORD --mode update``).

and serves, on each ``--listen`` address:

* 25: SMTP (STARTTLS offered), mail for local recipients only;
* 587: submission, STARTTLS required, then AUTH PLAIN/LOGIN;
* 465: submission over implicit TLS, AUTH PLAIN/LOGIN;
* 993: a minimal IMAP4rev1 over TLS (CAPABILITY, LOGIN, SELECT/EXAMINE, SEARCH, FETCH, UID, NOOP, LOGOUT).

Mail from authenticated users is DKIM-signed (dkimpy) with the key of the sender's domain and
delivered to local mailboxes under ``ROOT/mail/<address>/`` (0600 files); mail for other domains is
kept under ``ROOT/mail/.outbound/``.  The TLS certificate is self-signed, made at the first start
under ``ROOT/certs/`` (Mailu's ``TLS_FLAVOR=cert`` location) and reused afterwards.

Usage::

    python tests/lab/mailservice.py --root /mailu --listen 198.18.0.2 [--ports 25,465,587,993]
    python tests/lab/mailservice.py --root /mailu --listen IP --daemon      # prints Started / Running
    python tests/lab/mailservice.py stop --root /mailu                     # prints Stopped / Not running
    python tests/lab/mailservice.py admin LOCALPART DOMAIN PASSWORD --mode update --root /mailu

The foreground server exits 0 on SIGTERM or SIGINT after closing every socket; it leaves only its
data (certificate, mailboxes) under ROOT.  The file is self-contained (standard library, aiosmtpd,
dkimpy, cryptography) so it runs as a script inside a lab host as well as ``python -m``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import email.utils
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import re
import secrets
import select
import signal
import ssl
import sys
import tempfile
import time

LOG = logging.getLogger("mailservice")
DEFAULT_PORTS = (25, 465, 587, 993)
PBKDF2_ITERATIONS = 120000
PIDFILE = "run/mailservice.pid"
LOGFILE = "run/mailservice.log"


# ---------------------------------------------------------------------------------------
# Files under ROOT
# ---------------------------------------------------------------------------------------
def read_env(root):
    """Parse ROOT/mailu.env (KEY=VALUE lines, # comments, optional quotes)."""
    env = {}
    path = os.path.join(root, "mailu.env")
    with open(path) as handle:
        for line in handle:
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, value = line.split("=", 1)
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            env[key.strip()] = value
    return env


def write_atomic(path, data, mode=0o600):
    """Write bytes to ``path`` through a temporary file in the same directory, then rename."""
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def users_path(root):
    return os.path.join(root, "data", "users.json")


def load_users(root):
    try:
        with open(users_path(root)) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return {}


def hash_password(password, salt=None, iterations=PBKDF2_ITERATIONS):
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return "$pbkdf2-sha256$%d$%s$%s" % (
        iterations, base64.b64encode(salt).decode(), base64.b64encode(digest).decode())


def check_password(stored, password):
    try:
        _unused, scheme, iterations, salt, digest = stored.split("$")
        if scheme != "pbkdf2-sha256":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), base64.b64decode(salt), int(iterations))
    except (ValueError, TypeError, AttributeError):
        return False
    return hmac.compare_digest(expected, actual)


def set_admin(root, localpart, domain, password, mode="update"):
    """Mirror of ``flask mailu admin``: returns 'created', 'updated' or 'unchanged'."""
    if not re.fullmatch(r"[A-Za-z0-9._%+-]+", localpart or ""):
        raise ValueError("invalid localpart %r" % localpart)
    if not re.fullmatch(r"[A-Za-z0-9.-]+\.[A-Za-z0-9-]+", domain or ""):
        raise ValueError("invalid domain %r" % domain)
    address = ("%s@%s" % (localpart, domain)).lower()
    users = load_users(root)
    if address in users and mode == "ifmissing":
        return "unchanged"
    result = "updated" if address in users else "created"
    users[address] = {"password": hash_password(password), "global_admin": True}
    write_atomic(users_path(root), json.dumps(users, indent=2, sort_keys=True).encode())
    return result


def authenticate(root, login, password):
    user = load_users(root).get((login or "").lower())
    return bool(user) and check_password(user.get("password", ""), password)


def apply_initial_admin(root, env):
    """What Mailu's admin container does at start with INITIAL_ADMIN_*."""
    account, domain, password = (env.get("INITIAL_ADMIN_" + k) for k in ("ACCOUNT", "DOMAIN", "PW"))
    if account and domain and password:
        mode = (env.get("INITIAL_ADMIN_MODE") or "ifmissing").lower()
        LOG.info("initial admin %s@%s: %s", account, domain, set_admin(root, account, domain, password, mode))


# ---------------------------------------------------------------------------------------
# TLS
# ---------------------------------------------------------------------------------------
def ensure_certificate(root, names, addresses):
    """Return (cert, key) paths under ROOT/certs, creating a self-signed pair when missing."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    cert_path = os.path.join(root, "certs", "cert.pem")
    key_path = os.path.join(root, "certs", "key.pem")
    if os.path.exists(cert_path) and os.path.exists(key_path):
        return cert_path, key_path
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    common = names[0] if names else "localhost"
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])
    alt = [x509.DNSName(name) for name in names or ["localhost"]]
    for address in addresses:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(address)))
        except ValueError:
            pass
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    write_atomic(key_path, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return cert_path, key_path


def server_context(cert_path, key_path):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context


# ---------------------------------------------------------------------------------------
# DKIM and delivery
# ---------------------------------------------------------------------------------------
def dkim_key_for(root, domain, preferred):
    """Return (selector, pem bytes) for ``domain``: the preferred selector, else the first one."""
    directory = os.path.join(root, "dkim")
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return None, None
    prefix = domain.lower() + "."
    selectors = [n[len(prefix):-4] for n in names if n.lower().startswith(prefix) and n.endswith(".key")]
    selectors = [s for s in selectors if s and "." not in s]
    if not selectors:
        return None, None
    selector = preferred if preferred in selectors else selectors[0]
    with open(os.path.join(directory, "%s%s.key" % (prefix, selector)), "rb") as handle:
        return selector, handle.read()


def dkim_sign(root, env, message):
    import dkim

    parsed = email.message_from_bytes(message)
    _unused, sender = email.utils.parseaddr(parsed.get("From", ""))
    domain = sender.rpartition("@")[2].lower()
    if not domain:
        return message
    selector, key = dkim_key_for(root, domain, env.get("DKIM_SELECTOR") or "dkim")
    if not key:
        LOG.info("no DKIM key for %s: message not signed", domain)
        return message
    headers = [h.encode() for h in ("From", "To", "Subject", "Date", "Message-ID") if parsed.get(h)]
    signature = dkim.sign(message, selector.encode(), domain.encode(), key, include_headers=headers)
    LOG.info("DKIM-signed for d=%s s=%s", domain, selector)
    return signature + message


def local_domains(env):
    domains = {env.get("DOMAIN", "").lower()}
    domains.update(d.strip().lower() for d in env.get("LAB_EXTRA_DOMAINS", "").split(",") if d.strip())
    return {d for d in domains if d}


def mailbox_dir(root, address):
    return os.path.join(root, "mail", address.lower())


def deliver(root, address, message):
    directory = mailbox_dir(root, address)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    name = "%020d-%s.eml" % (time.time_ns(), secrets.token_hex(4))
    write_atomic(os.path.join(directory, name), message)


def mailbox_messages(root, address):
    directory = mailbox_dir(root, address)
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".eml"))
    except FileNotFoundError:
        return []
    return [os.path.join(directory, n) for n in names]


# ---------------------------------------------------------------------------------------
# SMTP
# ---------------------------------------------------------------------------------------
class MailHandler:
    def __init__(self, root, hostname):
        self.root = root
        self.hostname = hostname

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if session.authenticated:
            login = getattr(session.auth_data, "login", b"") or b""
            login = login.decode("utf-8", "replace").lower()
            if address.lower() != login:
                return "553 5.7.1 Sender address rejected: not owned by user %s" % login
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        domain = address.rpartition("@")[2].lower()
        if not session.authenticated and domain not in local_domains(read_env(self.root)):
            return "554 5.7.1 Relay access denied"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        env = read_env(self.root)
        message = envelope.original_content or envelope.content
        if isinstance(message, str):
            message = message.encode("utf-8")
        message = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        received = "Received: from %s by %s with ESMTP%s; %s\r\n" % (
            session.host_name or "unknown", self.hostname, "SA" if session.authenticated else "",
            email.utils.formatdate(localtime=False))
        if session.authenticated:
            try:
                message = dkim_sign(self.root, env, message)
            except Exception as exc:  # keep the service up; the check will see an unsigned message
                LOG.error("DKIM signing failed: %s", exc)
        message = received.encode() + message
        locals_ = local_domains(env)
        for rcpt in envelope.rcpt_tos:
            if rcpt.rpartition("@")[2].lower() in locals_:
                deliver(self.root, rcpt, message)
            else:
                deliver(self.root, ".outbound", message)
        LOG.info("accepted message from %s for %s", envelope.mail_from, ", ".join(envelope.rcpt_tos))
        return "250 2.0.0 Ok: queued"


def make_authenticator(root):
    from aiosmtpd.smtp import AuthResult, LoginPassword

    def authenticator(server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        ok = authenticate(root, login, auth_data.password.decode("utf-8", "replace"))
        LOG.info("AUTH %s for %s: %s", mechanism, login, "ok" if ok else "refused")
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    return authenticator


def smtp_factory(root, hostname, port, context):
    from aiosmtpd.smtp import SMTP

    handler = MailHandler(root, hostname)
    options = dict(hostname=hostname, authenticator=make_authenticator(root), auth_exclude_mechanism=None)
    if port == 465:
        options.update(auth_required=True, auth_require_tls=False)
    elif port == 25:
        options.update(tls_context=context, auth_required=False, auth_require_tls=True)
    else:
        options.update(tls_context=context, require_starttls=True, auth_required=True, auth_require_tls=True)
    return lambda: SMTP(handler, **options)


# ---------------------------------------------------------------------------------------
# IMAP (enough of RFC 3501 for imaplib and for the mail check)
# ---------------------------------------------------------------------------------------
_TOKEN_RE = re.compile(rb'\s*(?:"((?:[^"\\]|\\.)*)"|(\(|\))|([^\s()"]+))')


def imap_tokens(data):
    """Split an IMAP command line (literals already inlined) into strings and nested lists."""
    stack = [[]]
    pos = 0
    while pos < len(data):
        match = _TOKEN_RE.match(data, pos)
        if not match or match.end() == pos:
            break
        pos = match.end()
        quoted, paren, atom = match.groups()
        if quoted is not None:
            stack[-1].append(re.sub(rb"\\(.)", rb"\1", quoted).decode("utf-8", "replace"))
        elif paren == b"(":
            stack.append([])
        elif paren == b")" and len(stack) > 1:
            inner = stack.pop()
            stack[-1].append(inner)
        elif atom is not None:
            stack[-1].append(atom.decode("utf-8", "replace"))
    while len(stack) > 1:
        inner = stack.pop()
        stack[-1].append(inner)
    return stack[0]


def parse_set(spec, count):
    numbers = []
    for part in spec.split(","):
        low, _sep, high = part.partition(":")
        low = count if low == "*" else int(low)
        high = low if not high else (count if high == "*" else int(high))
        low, high = min(low, high), max(low, high)
        numbers.extend(n for n in range(low, high + 1) if 1 <= n <= count)
    return sorted(set(numbers))


def header_matches(message, name, value):
    parsed = email.message_from_bytes(message)
    return any(value.lower() in str(v).lower() for v in parsed.get_all(name, []))


class ImapSession:
    def __init__(self, root, reader, writer):
        self.root = root
        self.reader = reader
        self.writer = writer
        self.user = None
        self.selected = None

    async def send(self, data):
        self.writer.write(data if isinstance(data, bytes) else data.encode())
        await self.writer.drain()

    async def read_command(self):
        line = await self.reader.readline()
        if not line:
            return None
        # Synchronising literals {n}: answer "+", read n octets, inline them as a quoted string.
        while True:
            match = re.search(rb"\{(\d+)\+?\}\r?\n$", line)
            if not match:
                return line.rstrip(b"\r\n")
            if not match.group(0).startswith(b"{%s+" % match.group(1)):
                await self.send("+ Ready\r\n")
            literal = await self.reader.readexactly(int(match.group(1)))
            quoted = b'"' + literal.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
            line = line[: match.start()] + quoted + await self.reader.readline()

    async def run(self):
        await self.send("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] penguinmails lab IMAP ready\r\n")
        while True:
            line = await self.read_command()
            if line is None:
                return
            tag, _sep, rest = line.partition(b" ")
            tag = tag.decode("ascii", "replace")
            words = imap_tokens(rest)
            if not words or not isinstance(words[0], str):
                await self.send("%s BAD empty command\r\n" % tag)
                continue
            command, args = words[0].upper(), words[1:]
            uid = False
            if command == "UID" and args and isinstance(args[0], str):
                uid, command, args = True, args[0].upper(), args[1:]
            handler = getattr(self, "cmd_" + command.replace(".", "_"), None)
            if handler is None:
                await self.send("%s BAD unknown command %s\r\n" % (tag, command))
                continue
            if command not in ("CAPABILITY", "LOGIN", "LOGOUT", "NOOP") and self.user is None:
                await self.send("%s NO not authenticated\r\n" % tag)
                continue
            try:
                if await handler(tag, args, uid) == "logout":
                    return
            except (ValueError, IndexError, TypeError) as exc:
                await self.send("%s BAD %s\r\n" % (tag, str(exc).replace("\r", " ").replace("\n", " ")))

    async def cmd_CAPABILITY(self, tag, args, uid):
        await self.send("* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n%s OK CAPABILITY completed\r\n" % tag)

    async def cmd_NOOP(self, tag, args, uid):
        await self.send("%s OK NOOP completed\r\n" % tag)

    async def cmd_LOGOUT(self, tag, args, uid):
        await self.send("* BYE logging out\r\n%s OK LOGOUT completed\r\n" % tag)
        return "logout"

    async def cmd_LOGIN(self, tag, args, uid):
        login, password = args[0], args[1]
        if authenticate(self.root, login, password):
            self.user = login.lower()
            LOG.info("IMAP LOGIN %s: ok", login)
            await self.send("%s OK LOGIN completed\r\n" % tag)
        else:
            LOG.info("IMAP LOGIN %s: refused", login)
            await self.send("%s NO [AUTHENTICATIONFAILED] Invalid credentials\r\n" % tag)

    def messages(self):
        return mailbox_messages(self.root, self.user)

    async def cmd_SELECT(self, tag, args, uid, command="SELECT"):
        if str(args[0]).upper() != "INBOX":
            await self.send("%s NO [NONEXISTENT] only INBOX exists\r\n" % tag)
            return
        self.selected = "INBOX"
        count = len(self.messages())
        await self.send(
            "* FLAGS (\\Seen)\r\n* %d EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 1] UIDs valid\r\n"
            "* OK [UIDNEXT %d] next UID\r\n%s OK [%s] %s completed\r\n"
            % (count, count + 1, tag, "READ-ONLY" if command == "EXAMINE" else "READ-WRITE", command))

    async def cmd_EXAMINE(self, tag, args, uid):
        await self.cmd_SELECT(tag, args, uid, command="EXAMINE")

    async def cmd_CLOSE(self, tag, args, uid):
        self.selected = None
        await self.send("%s OK CLOSE completed\r\n" % tag)

    async def cmd_SEARCH(self, tag, args, uid):
        if self.selected is None:
            await self.send("%s NO no mailbox selected\r\n" % tag)
            return
        if args and str(args[0]).upper() == "CHARSET":
            args = args[2:]
        paths = self.messages()
        found = []
        for number, path in enumerate(paths, 1):
            with open(path, "rb") as handle:
                message = handle.read()
            if self.matches(message, list(args), number, len(paths)):
                found.append(number)
        await self.send("* SEARCH%s\r\n%s OK SEARCH completed\r\n" % (
            "".join(" %d" % n for n in found), tag))

    def matches(self, message, criteria, number, count):
        while criteria:
            key = criteria.pop(0)
            if isinstance(key, list):
                if not self.matches(message, list(key), number, count):
                    return False
                continue
            key = key.upper()
            if key == "ALL":
                continue
            if key == "HEADER":
                name, value = criteria.pop(0), criteria.pop(0)
                if not header_matches(message, name, value):
                    return False
            elif key in ("SUBJECT", "FROM", "TO"):
                if not header_matches(message, key.capitalize(), criteria.pop(0)):
                    return False
            elif re.fullmatch(r"[0-9*:,]+", key):
                if number not in parse_set(key, count):
                    return False
            else:
                raise ValueError("unsupported search key %s" % key)
        return True

    async def cmd_FETCH(self, tag, args, uid):
        if self.selected is None:
            await self.send("%s NO no mailbox selected\r\n" % tag)
            return
        paths = self.messages()
        spec, items = args[0], args[1]
        items = [i.upper() for i in (items if isinstance(items, list) else [items])]
        for number in parse_set(spec, len(paths)):
            with open(paths[number - 1], "rb") as handle:
                message = handle.read()
            parts = [b"UID %d" % number] if uid else []
            for item in items:
                if item in ("RFC822", "BODY[]", "BODY.PEEK[]"):
                    name = b"RFC822" if item == "RFC822" else b"BODY[]"
                    parts.append(name + b" {%d}\r\n" % len(message) + message)
                elif item == "RFC822.SIZE":
                    parts.append(b"RFC822.SIZE %d" % len(message))
                elif item == "FLAGS":
                    parts.append(b"FLAGS ()")
                elif item == "UID":
                    if not uid:
                        parts.append(b"UID %d" % number)
                else:
                    raise ValueError("unsupported fetch item %s" % item)
            await self.send(b"* %d FETCH (" % number + b" ".join(parts) + b")\r\n")
        await self.send("%s OK FETCH completed\r\n" % tag)


def imap_factory(root):
    async def serve(reader, writer):
        try:
            await ImapSession(root, reader, writer).run()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
            LOG.info("IMAP session ended: %s", type(exc).__name__)
        finally:
            writer.close()

    return serve


# ---------------------------------------------------------------------------------------
# Server
# ---------------------------------------------------------------------------------------
async def serve(root, addresses, ports, ready=None):
    env = read_env(root)
    apply_initial_admin(root, env)
    hostnames = [h.strip() for h in env.get("HOSTNAMES", "").split(",") if h.strip()]
    hostname = hostnames[0] if hostnames else "mail.%s" % env.get("DOMAIN", "localhost")
    cert, key = ensure_certificate(root, hostnames or [hostname], addresses)
    context = server_context(cert, key)
    loop = asyncio.get_running_loop()
    servers = []
    try:
        for address in addresses:
            for port in ports:
                if port == 993:
                    server = await asyncio.start_server(imap_factory(root), address, port, ssl=context)
                else:
                    server = await loop.create_server(
                        smtp_factory(root, hostname, port, context), address, port,
                        ssl=context if port == 465 else None)
                servers.append(server)
                LOG.info("listening on %s:%d", address, port)
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        if ready:
            ready()
        await stop.wait()
        LOG.info("stopping")
    finally:
        for server in servers:
            server.close()
        for server in servers:
            await server.wait_closed()


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_pid(root):
    try:
        with open(os.path.join(root, PIDFILE)) as handle:
            return int(handle.read().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def run_foreground(root, addresses, ports, ready=None):
    pidfile = os.path.join(root, PIDFILE)

    def mark_ready():
        write_atomic(pidfile, b"%d\n" % os.getpid(), mode=0o644)
        if ready:
            ready()

    try:
        asyncio.run(serve(root, addresses, ports, mark_ready))
    finally:
        if read_pid(root) == os.getpid():
            os.unlink(pidfile)
    return 0


def run_daemon(root, addresses, ports, timeout=30):
    """Start in the background (own session, stdio to ROOT/run/mailservice.log); print Started/Running."""
    pid = read_pid(root)
    if pid and pid_alive(pid):
        print("Running (pid %d)" % pid)
        return 0
    os.makedirs(os.path.join(root, "run"), mode=0o700, exist_ok=True)
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # first child: new session, fork again so the daemon is not a session leader
        os.close(read_end)
        os.setsid()
        if os.fork():
            os._exit(0)
        log = os.open(os.path.join(root, LOGFILE), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        setup_logging()
        code = 1
        try:
            code = run_foreground(root, addresses, ports, ready=lambda: os.write(write_end, b"ok"))
        except BaseException as exc:  # reported to the parent through the log
            LOG.error("mail service failed: %s", exc)
        finally:
            os._exit(code)
    os.close(write_end)
    os.waitpid(child, 0)
    deadline = time.monotonic() + timeout
    answer = b""
    while answer != b"ok":
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([read_end], [], [], remaining)[0]:
            break
        chunk = os.read(read_end, 16)  # "ok" when ready, EOF when the daemon died
        if not chunk:
            break
        answer += chunk
    os.close(read_end)
    if answer != b"ok":
        tail = ""
        try:
            with open(os.path.join(root, LOGFILE)) as handle:
                tail = handle.read()[-1500:]
        except OSError:
            pass
        print("mail service failed to start:\n%s" % tail, file=sys.stderr)
        return 1
    print("Started (pid %d)" % read_pid(root))
    return 0


def stop_daemon(root, timeout=30):
    pid = read_pid(root)
    if not pid or not pid_alive(pid):
        print("Not running")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            print("mail service pid %d did not stop within %ss" % (pid, timeout), file=sys.stderr)
            return 1
        time.sleep(0.05)
    print("Stopped")
    return 0


def setup_logging():
    logging.basicConfig(level=logging.INFO, format="%(asctime)s mailservice %(levelname)s %(message)s")
    logging.getLogger("mail.log").setLevel(logging.WARNING)


# ---------------------------------------------------------------------------------------
# Helpers for tests and the lab (run the service as a child, make and publish DKIM keys)
# ---------------------------------------------------------------------------------------
def free_loopback_address(ports=DEFAULT_PORTS, attempts=50):
    """A random 127.x.y.z on which every port in ``ports`` is free for TCP right now."""
    import socket

    for _unused in range(attempts):
        address = "127.%d.%d.%d" % (secrets.randbelow(100) + 100, secrets.randbelow(256), secrets.randbelow(253) + 1)
        sockets = []
        try:
            for port in ports:
                sock = socket.socket()
                sockets.append(sock)
                sock.bind((address, port))
            return address
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no loopback address with ports %s free" % (ports,))


class MailService:
    """The service as a child process (foreground mode), for tests: start() waits until it listens."""

    def __init__(self, root, address=None, ports=DEFAULT_PORTS):
        self.root = os.path.abspath(root)
        self.ports = tuple(ports)
        self.address = address or free_loopback_address(self.ports)
        self.proc = None
        self.log_path = os.path.join(self.root, "mailservice-test.log")

    @property
    def cert_path(self):
        return os.path.join(self.root, "certs", "cert.pem")

    def command(self, *args):
        return [sys.executable, os.path.abspath(__file__)] + list(args)

    def admin(self, localpart, domain, password, mode="update"):
        import subprocess

        proc = subprocess.run(self.command("admin", localpart, domain, password, "--mode", mode, "--root", self.root),
                              capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0:
            raise RuntimeError("mailservice admin failed: %s" % proc.stderr.strip())
        return proc.stdout.strip()

    def start(self, timeout=30):
        import subprocess

        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                self.command("--root", self.root, "--listen", self.address,
                             "--ports", ",".join(str(p) for p in self.ports)),
                stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.proc.stdout], [], [], remaining)[0]:
                self.stop()
                raise RuntimeError("the mail service did not become ready within %ss: %s" % (timeout, self.log()))
            chunk = os.read(self.proc.stdout.fileno(), 1)
            if not chunk:
                self.stop()
                raise RuntimeError("the mail service exited before it was ready: %s" % self.log())
            line += chunk
        if line.strip() != b"ready":
            self.stop()
            raise RuntimeError("unexpected output from the mail service: %r" % line)
        return self

    def log(self):
        try:
            with open(self.log_path) as handle:
                return handle.read()[-3000:]
        except OSError:
            return ""

    def stop(self, timeout=30):
        """SIGTERM, wait; returns the exit code (SIGKILL and an error if it does not stop)."""
        import subprocess

        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout)
                raise RuntimeError("the mail service ignored SIGTERM")
        proc.stdout.close()
        return proc.returncode

    def mailbox(self, address):
        messages = []
        for path in mailbox_messages(self.root, address):
            with open(path, "rb") as handle:
                messages.append(handle.read())
        return messages

    def mailbox_count(self, address):
        return len(mailbox_messages(self.root, address))

    def mailbox_has(self, message_id):
        directory = os.path.join(self.root, "mail")
        for address in os.listdir(directory) if os.path.isdir(directory) else []:
            for message in self.mailbox(address):
                if message_id.encode() in message:
                    return True
        return False


def generate_dkim_key(path=None, bits=2048):
    """A new RSA key as PKCS#8 PEM bytes (what Mailu writes); written 0600 to ``path`` when given."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    if path:
        write_atomic(path, pem)
    return pem


def dkim_txt(private_pem):
    """The DKIM TXT value for a private key: ``v=DKIM1; k=rsa; p=<base64 DER SubjectPublicKeyInfo>``."""
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(private_pem, password=None)
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode("ascii")


def publish_txt(dns_info, zone, name, value):
    """Replace the TXT RRset ``name`` in ``zone`` on a lab BIND (tests/lab/bind.py info dict), TSIG-signed."""
    import dns.query
    import dns.rcode
    import dns.tsigkeyring
    import dns.update

    keyring = dns.tsigkeyring.from_text({dns_info["tsig_name"]: dns_info["tsig_secret"]})
    update = dns.update.UpdateMessage(zone, keyring=keyring, keyalgorithm=dns_info["tsig_algorithm"])
    chunks = [value[i:i + 255] for i in range(0, len(value), 255)]
    update.replace(name, 300, "TXT", " ".join('"%s"' % c for c in chunks))
    response = dns.query.tcp(update, dns_info["address"], port=dns_info["port"], timeout=10)
    if response.rcode() != dns.rcode.NOERROR:
        raise RuntimeError("DNS update of %s.%s failed: %s" % (name, zone, dns.rcode.to_text(response.rcode())))


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "admin":
        parser = argparse.ArgumentParser(prog="mailservice admin", description="set a Mailu account password")
        parser.add_argument("localpart")
        parser.add_argument("domain")
        parser.add_argument("password")
        parser.add_argument("--mode", choices=["ifmissing", "update"], default="ifmissing")
        parser.add_argument("--root", default="/mailu")
        args = parser.parse_args(argv[1:])
        try:
            result = set_admin(args.root, args.localpart, args.domain.lower(), args.password, args.mode)
        except ValueError as exc:
            print("error: %s" % exc, file=sys.stderr)
            return 2
        print("admin %s@%s %s" % (args.localpart, args.domain.lower(), result))
        return 0
    if argv and argv[0] == "stop":
        parser = argparse.ArgumentParser(prog="mailservice stop")
        parser.add_argument("--root", default="/mailu")
        return stop_daemon(parser.parse_args(argv[1:]).root)
    parser = argparse.ArgumentParser(prog="mailservice", description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--root", default="/mailu")
    parser.add_argument("--listen", action="append", required=True, help="address to bind (repeatable)")
    parser.add_argument("--ports", help="comma-separated ports (default: PORTS in mailu.env, else 25,465,587,993)")
    parser.add_argument("--daemon", action="store_true", help="run in the background; print Started or Running")
    args = parser.parse_args(argv)
    root = os.path.abspath(args.root)
    env = read_env(root)
    spec = args.ports or env.get("PORTS") or ",".join(str(p) for p in DEFAULT_PORTS)
    ports = [int(p) for p in spec.split(",") if p.strip()]
    unknown = sorted(set(ports) - set(DEFAULT_PORTS))
    if unknown:
        parser.error("unsupported ports %s (supported: 25, 465, 587, 993)" % unknown)
    if args.daemon:
        return run_daemon(root, args.listen, ports)
    setup_logging()
    return run_foreground(root, args.listen, ports, ready=lambda: print("ready", flush=True))


if __name__ == "__main__":
    sys.exit(main())
