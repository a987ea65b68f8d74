# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's Mailu host: Debian's Postfix, Dovecot and Rspamd, configured from the files Mailu reads.

    mailu_host.py start [--root /mailu]     # prints Started, Recreated or Running; returns once they answer
    mailu_host.py stop [--root /mailu]      # prints Stopped or Not running
    mailu_host.py status [--root /mailu]    # JSON: the daemons and their pids
    mailu_host.py refresh [--root /mailu]   # Postfix sees the accounts' domains and mailboxes (after admin)
    mailu_host.py admin LOCALPART DOMAIN PASSWORD [--mode M] [--root /mailu]   # mailu_admin.py

It runs inside a lab host (tests/lab/hosts.py: its own network namespace, PID namespace, /run, /mailu and
/var/log), as root, with the system python and nothing but the standard library. What it reads is what
roles/mailu and roles/dkim render, where Mailu's containers read it:

* ``ROOT/mailu.env``: DOMAIN, HOSTNAMES (the first is the host name), POSTMASTER, PORTS, BIND_ADDRESS4,
  MESSAGE_SIZE_LIMIT, SUBNET, RELAYNETS, RECIPIENT_DELIMITER, DKIM_SELECTOR, DKIM_PATH and
  INITIAL_ADMIN_ACCOUNT/DOMAIN/PW/MODE (applied at every (re)start with mailu_admin.py, as Mailu's admin
  container does at its start);
* ``ROOT/dkim/<domain>.<selector>.key``: read by Rspamd's dkim_signing when it signs;
* ``ROOT/certs/cert.pem`` and ``key.pem`` (TLS_FLAVOR=cert's files): made self-signed for HOSTNAMES when
  missing (the lab has no ACME);
* ``ROOT/data/users.passwd``: the accounts, written by mailu_admin.py (the stand-in for Mailu's admin CLI).

and it keeps Mailu's data where Mailu keeps it: mail in ``ROOT/mail/<address>/`` (Maildir, Mailu's
Dovecot layout), the queue in ``ROOT/mailqueue``, Rspamd's data in ``ROOT/filter``. Every daemon has its own
configuration, runtime directory, pid file and sockets under ``/run/mailu-lab`` (the host's private /run)
and logs to ``/var/log/mailu/{postfix,dovecot,rspamd}.log``:

* Postfix (``master -c /run/mailu-lab/postfix``): 25, 465 (TLS) and 587 (STARTTLS required before AUTH),
  SMTP AUTH through Dovecot's SASL socket, mail for the domains to Dovecot over LMTP, every message through
  Rspamd's milter;
* Dovecot: IMAPS on 993, LMTP and SASL on unix sockets;
* Rspamd: Debian's stock configuration plus Mailu's dkim_signing settings; it signs the mail of authenticated
  users with the key of the sender's domain and DKIM_SELECTOR.

``start`` waits on the real sockets (SMTP and IMAP greetings, Dovecot's auth handshake, the milter's option
negotiation) and fails with the logs' last lines when a daemon does not come up. The daemons carry the lab's
process tag (PM_LAB_MEMBER, taken from the host's init when the caller has none) and live in the host's PID
namespace: destroying the host ends them.

Rspamd compiles Hyperscan databases at its first start (about 20 s of CPU for the URL suffix list). They are
kept in ``<repo>/.build/rspamd-cache`` (``--cache-dir``) and copied into the host's ``ROOT/filter`` before the
start, so every later host starts in about a second; ``make clean`` removes them.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import glob
import grp
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CONF = os.path.join(HERE, "conf")
ADMIN = os.path.join(HERE, "mailu_admin.py")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
DEFAULT_CACHE = os.path.join(REPO, ".build", "rspamd-cache")
RUN = "/run/mailu-lab"
LOG = "/var/log/mailu"
MEMBER_ENV = "PM_LAB_MEMBER"
POSTFIX_MASTER = "/usr/lib/postfix/sbin/master"
SMTP_PORTS = (25, 465, 587)
IMAPS_PORT = 993
DEFAULTS = {
    "POSTMASTER": "admin",
    "PORTS": "25,465,587,993",
    "BIND_ADDRESS4": "0.0.0.0",
    "MESSAGE_SIZE_LIMIT": "50000000",
    "SUBNET": "",
    "RELAYNETS": "",
    "RECIPIENT_DELIMITER": "+",
    "DKIM_SELECTOR": "dkim",
    "DKIM_PATH": "/dkim/{domain}.{selector}.key",
}
# The Postfix queue as `postfix set-permissions` leaves it (owner, group, mode).
QUEUE_DIRS = dict(
    {name: ("postfix", "root", 0o700) for name in (
        "active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming", "private", "saved", "trace")},
    maildrop=("postfix", "postdrop", 0o730), public=("postfix", "postdrop", 0o710), pid=("root", "root", 0o755))
DAEMONS = ("rspamd", "dovecot", "postfix")
START_TIMEOUT = 120  # a first start compiles Rspamd's Hyperscan databases


class HostError(Exception):
    """The mail host cannot start or stop (one line; the caller prints it)."""


# -- mailu.env and the rendered configuration ----------------------------------------------------------
def read_env(root):
    """KEY=VALUE lines of ROOT/mailu.env, as docker compose reads an env_file (comments, optional quotes)."""
    env = {}
    try:
        with open(os.path.join(root, "mailu.env")) as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        raise HostError("%s/mailu.env is missing (roles/mailu renders it)" % root) from None
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key.strip()] = value
    return env


def settings(root, env):
    """The values the templates need, checked; HostError names the first setting that is wrong."""
    values = dict(DEFAULTS)
    values.update({key: value for key, value in env.items() if value != "" or key in ("SUBNET", "RELAYNETS")})
    domain = values.get("DOMAIN", "").lower()
    if not re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?\.[a-z0-9-]+", domain):
        raise HostError("mailu.env: DOMAIN must be a domain name, not %r" % domain)
    hostnames = [name.strip().lower() for name in values.get("HOSTNAMES", "").split(",") if name.strip()]
    if not hostnames or not all(re.fullmatch(r"[a-z0-9.-]+", name) for name in hostnames):
        raise HostError("mailu.env: HOSTNAMES must list the host's names (the first is its SMTP name)")
    try:
        ports = sorted({int(port) for port in values["PORTS"].split(",") if port.strip()})
        size = int(values["MESSAGE_SIZE_LIMIT"])
    except ValueError:
        raise HostError("mailu.env: PORTS and MESSAGE_SIZE_LIMIT must be numbers") from None
    selector = values["DKIM_SELECTOR"]
    if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", selector):
        raise HostError("mailu.env: DKIM_SELECTOR must be a DNS label, not %r" % selector)
    dkim_path = values["DKIM_PATH"]
    if not dkim_path.startswith("/dkim/") or "{domain}" not in dkim_path or "{selector}" not in dkim_path:
        raise HostError("mailu.env: DKIM_PATH must be /dkim/...{domain}...{selector}... (Mailu mounts ROOT/dkim at /dkim)")
    bind = values["BIND_ADDRESS4"]
    if bind not in ("0.0.0.0", "*") and not re.fullmatch(r"\d+\.\d+\.\d+\.\d+", bind):
        raise HostError("mailu.env: BIND_ADDRESS4 must be an IPv4 address, not %r" % bind)
    everywhere = bind in ("0.0.0.0", "*")
    return {
        "MANAGED": "rendered by tests/lab/mail/mailu_host.py; do not edit",
        "ROOT": root,
        "RUN": RUN,
        "LOG": LOG,
        "MEMBER_ENV": MEMBER_ENV,
        "DOMAIN": domain,
        "HOSTNAME": hostnames[0],
        "HOSTNAMES": hostnames,
        "POSTMASTER": values["POSTMASTER"],
        "PORTS": ports,
        "BIND": "127.0.0.1" if everywhere else bind,
        "INET_INTERFACES": "all" if everywhere else bind,
        "LISTEN": "*" if everywhere else bind,
        "MESSAGE_SIZE_LIMIT": str(size),
        "SUBNET": values["SUBNET"],
        "RELAYNETS": " ".join(values["RELAYNETS"].replace(",", " ").split()),
        "RECIPIENT_DELIMITER": values["RECIPIENT_DELIMITER"],
        "DKIM_SELECTOR": selector,
        "DKIM_PATH_ENV": dkim_path,
        "DKIM_PATH": root + dkim_path.replace("{domain}", "$domain").replace("{selector}", "$selector"),
        "TLS_CERT": os.path.join(root, "certs", "cert.pem"),
        "TLS_KEY": os.path.join(root, "certs", "key.pem"),
        "IMAPS_PORT": str(IMAPS_PORT if IMAPS_PORT in ports else 0),
        "SERVICES": postfix_services(ports),
    }


def postfix_services(ports):
    """master.cf lines of the published SMTP ports."""
    submission = [
        "  -o smtpd_tls_security_level=encrypt",
        "  -o smtpd_sasl_auth_enable=yes",
        "  -o smtpd_client_restrictions=permit_sasl_authenticated,reject",
        "  -o smtpd_sender_restrictions=reject_unlisted_sender,reject_authenticated_sender_login_mismatch",
    ]
    blocks = {
        25: ["25        inet  n       -       n       -       -       smtpd", "  -o syslog_name=postfix/smtp"],
        465: ["465       inet  n       -       n       -       -       smtpd", "  -o syslog_name=postfix/smtps",
              "  -o smtpd_tls_wrappermode=yes"] + submission,
        587: ["587       inet  n       -       n       -       -       smtpd", "  -o syslog_name=postfix/submission",
              "  -o smtpd_tls_auth_only=yes"] + submission,
    }
    return "\n".join(line for port in ports if port in blocks for line in blocks[port])


def render(values):
    """{path under RUN: text} of every configuration file (the templates in conf/ with {{ NAME }} filled in)."""
    files = {}
    for path in sorted(glob.glob(os.path.join(CONF, "**", "*"), recursive=True)):
        if not os.path.isfile(path):
            continue
        relative = os.path.relpath(path, CONF)
        with open(path) as handle:
            text = handle.read()
        files[os.path.join("etc", relative)] = re.sub(
            r"\{\{ ([A-Z0-9_]+) \}\}", lambda match: str(values[match.group(1)]), text)
    files["etc/postfix/sender_login"] = "# {{ MANAGED }}\n/^(.+)$/ ${1}\n".replace("{{ MANAGED }}", values["MANAGED"])
    # postmap's own main.cf: Postfix's names a log service that is not up yet before the first start
    files["etc/postmap/main.cf"] = "# %s\ncompatibility_level = 3.6\n" % values["MANAGED"]
    return files


def fingerprint(root, files):
    digest = hashlib.sha256()
    with open(os.path.join(root, "mailu.env"), "rb") as handle:
        digest.update(handle.read())
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    return digest.hexdigest()


def accounts(root):
    """The addresses of ROOT/data/users.passwd."""
    found = []
    try:
        with open(os.path.join(root, "data", "users.passwd")) as handle:
            for line in handle:
                if ":" in line and not line.startswith("#"):
                    found.append(line.split(":", 1)[0].strip().lower())
    except FileNotFoundError:
        pass
    return sorted(set(found))


def postfix_maps(values, addresses):
    """{path under RUN: text} of Postfix's domain and mailbox lists (Mailu's Postfix asks the admin container)."""
    domains = sorted({values["DOMAIN"]} | {address.rpartition("@")[2] for address in addresses})
    return {
        "etc/postfix/virtual_domains": "".join("%s OK\n" % domain for domain in domains),
        "etc/postfix/virtual_mailboxes": "".join("%s OK\n" % address for address in addresses),
    }


# -- files ------------------------------------------------------------------------------------------
def write_file(path, text, mode=0o644):
    """Write atomically; True when the content changed.

    The file's mtime is set 10 s back: Postfix reads a configuration file only once its mtime is a second or
    two old (it waits for an editor to finish), which would cost every start and every postmap that long.
    """
    try:
        with open(path) as handle:
            if handle.read() == text:
                return False
    except FileNotFoundError:
        pass
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        settled = time.time() - 10
        os.utime(tmp, (settled, settled))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return True


def make_dir(path, owner="root", group="root", mode=0o755):
    os.makedirs(path, exist_ok=True)
    os.chown(path, pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid)
    os.chmod(path, mode)


def prepare_dirs(root):
    for name in ("", "dkim", "certs", "data", "filter"):
        os.makedirs(os.path.join(root, name), exist_ok=True)
    make_dir(os.path.join(root, "mail"), "mail", "mail", 0o750)
    make_dir(os.path.join(root, "mailqueue"))
    for name, (owner, group, mode) in QUEUE_DIRS.items():
        make_dir(os.path.join(root, "mailqueue", name), owner, group, mode)
    make_dir(RUN)
    make_dir(os.path.join(RUN, "postfix-data"), "postfix", "postfix", 0o700)
    make_dir(os.path.join(RUN, "dovecot-state"), "root", "root", 0o750)
    make_dir(os.path.join(RUN, "rspamd"))
    make_dir(LOG)


def ensure_certificate(values):
    """Mailu's TLS_FLAVOR=cert files; a self-signed pair for HOSTNAMES when they are missing."""
    cert, key = values["TLS_CERT"], values["TLS_KEY"]
    if os.path.exists(cert) and os.path.exists(key):
        return
    directory = os.path.dirname(cert)
    tmp = tempfile.mkdtemp(prefix=".cert-", dir=directory)
    try:
        names = ",".join("DNS:%s" % name for name in values["HOSTNAMES"])
        proc = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-days", "365", "-subj",
             "/CN=%s" % values["HOSTNAME"], "-addext", "subjectAltName=%s" % names,
             "-keyout", os.path.join(tmp, "key.pem"), "-out", os.path.join(tmp, "cert.pem")],
            capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise HostError("openssl could not make the TLS certificate: %s" % proc.stderr.strip()[-300:])
        os.chmod(os.path.join(tmp, "key.pem"), 0o600)
        os.chmod(os.path.join(tmp, "cert.pem"), 0o644)
        os.replace(os.path.join(tmp, "key.pem"), key)
        os.replace(os.path.join(tmp, "cert.pem"), cert)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- processes --------------------------------------------------------------------------------------
def lab_tag():
    """The lab's process tag: ours, else the one of the host's init (a login over SSH has none)."""
    if os.environ.get(MEMBER_ENV):
        return os.environ[MEMBER_ENV]
    with contextlib.suppress(OSError):
        with open("/proc/1/environ", "rb") as handle:
            for item in handle.read().split(b"\0"):
                if item.startswith(MEMBER_ENV.encode() + b"="):
                    return item.split(b"=", 1)[1].decode()
    return None


def daemon_env():
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8", "TZ": "Etc/UTC"}
    tag = lab_tag()
    if tag:
        env[MEMBER_ENV] = tag
    return env


def pid_state(pid):
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError, ValueError):
        return None


def alive(pid):
    state = pid_state(pid) if pid else None
    return bool(state) and state[0] not in ("Z", "X")


def comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as handle:
            return handle.read().strip()
    except OSError:
        return ""


def read_pid(path):
    try:
        with open(path) as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def daemon_pids(root):
    """{daemon: pid} of the running masters (checked by name, so a reused pid does not count)."""
    candidates = {
        "postfix": (os.path.join(root, "mailqueue", "pid", "master.pid"), ("master",)),
        "dovecot": (os.path.join(RUN, "dovecot", "master.pid"), ("dovecot",)),
        "rspamd": (os.path.join(RUN, "rspamd", "rspamd.pid"), ("rspamd",)),
    }
    found = {}
    for name, (path, names) in candidates.items():
        pid = read_pid(path)
        if alive(pid) and comm(pid) in names:
            found[name] = pid
    return found


def descendants(pids):
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            state = pid_state(int(entry))
            if state:
                children.setdefault(int(state[1]), []).append(int(entry))
    found, todo = set(), list(pids)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, ()))
    return found


def wait_until(predicate, timeout, what, interval=0.05):
    """Poll ``predicate`` until it is true; HostError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise HostError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(interval)


def stop_daemons(root, timeout=20):
    """SIGTERM the masters, wait for them and their children; SIGKILL what is left. Returns the names stopped."""
    masters = daemon_pids(root)
    everyone = descendants(masters.values())
    for pid in masters.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    with contextlib.suppress(HostError):
        wait_until(lambda: not any(alive(pid) for pid in everyone), timeout, "the mail daemons to stop")
    for pid in everyone:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not any(alive(pid) for pid in everyone), timeout, "the mail daemons to die")
    return sorted(masters)


def log_tail(name, lines=8):
    text = ""
    for path in (os.path.join(LOG, "%s.log" % name), os.path.join(LOG, "%s.out" % name)):
        with contextlib.suppress(OSError):
            with open(path, errors="replace") as handle:
                text += handle.read()[-4000:]
    return " | ".join(text.strip().splitlines()[-lines:]) or "no log"


def launch(name, argv):
    """Run a daemon's start command detached from the caller (own session, output to LOG/<name>.out)."""
    with open(os.path.join(LOG, "%s.out" % name), "ab") as out:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=daemon_env(), cwd="/", start_new_session=True)


def finished(name, proc, timeout):
    """Wait for a daemon's start command (it daemonizes); HostError with its log when it failed."""
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise HostError("%s did not start within %ss: %s" % (name, timeout, log_tail(name))) from None
    if code != 0:
        raise HostError("%s failed to start (exit %s): %s" % (name, code, log_tail(name)))


# -- readiness: the real sockets --------------------------------------------------------------------
def _connect(address, timeout=2):
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(address)
    except OSError:
        sock.close()
        return None
    return sock


def _greeting(sock, prefix):
    data = b""
    with contextlib.suppress(OSError):
        while b"\n" not in data and len(data) < 4096:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.startswith(prefix)


def _tls(sock):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context.wrap_socket(sock)


def smtp_answers(host, port):
    sock = _connect((host, port))
    if sock is None:
        return False
    try:
        if port == 465:
            sock = _tls(sock)
        ok = _greeting(sock, b"220 ")
        with contextlib.suppress(OSError):
            sock.sendall(b"QUIT\r\n")
        return ok
    except OSError:
        return False
    finally:
        sock.close()


def imaps_answers(host, port):
    sock = _connect((host, port))
    if sock is None:
        return False
    try:
        sock = _tls(sock)
        ok = _greeting(sock, b"* OK")
        with contextlib.suppress(OSError):
            sock.sendall(b"a LOGOUT\r\n")
        return ok
    except OSError:
        return False
    finally:
        sock.close()


def unix_answers(path, prefix):
    """Dovecot's LMTP greeting / auth handshake."""
    sock = _connect(path)
    if sock is None:
        return False
    try:
        return _greeting(sock, prefix)
    finally:
        sock.close()


def milter_answers(path):
    """Rspamd answers the milter option negotiation (SMFIC_OPTNEG) with its own."""
    sock = _connect(path, timeout=5)
    if sock is None:
        return False
    try:
        sock.sendall(struct.pack(">Ic3I", 13, b"O", 6, 0x1FF, 0x1FFFFF))
        reply = b""
        while len(reply) < 5:
            chunk = sock.recv(5 - len(reply))
            if not chunk:
                return False
            reply += chunk
        return reply[4:5] == b"O"
    except OSError:
        return False
    finally:
        sock.close()


def checks(values):
    """(daemon, what, predicate) for every socket a started host must answer on, Postfix's last (it needs the milter)."""
    found = [
        ("dovecot", "Dovecot's auth socket", lambda: unix_answers(os.path.join(RUN, "dovecot", "auth-client"), b"VERSION\t")),
        ("dovecot", "Dovecot's LMTP socket", lambda: unix_answers(os.path.join(RUN, "dovecot", "lmtp"), b"220 ")),
        ("rspamd", "Rspamd's milter socket", lambda: milter_answers(os.path.join(RUN, "rspamd", "milter.sock"))),
    ]
    for port in values["PORTS"]:
        if port == IMAPS_PORT:
            found.append(("dovecot", "Dovecot on port %d" % port, lambda port=port: imaps_answers(values["BIND"], port)))
    for port in values["PORTS"]:
        if port in SMTP_PORTS:
            found.append(("postfix", "Postfix on port %d" % port, lambda port=port: smtp_answers(values["BIND"], port)))
    return found


# -- Rspamd's Hyperscan cache -----------------------------------------------------------------------
CACHE_PATTERNS = ("*.hsmp", "*.hsmc", "*.hs")


def copy_missing(source, target, patterns):
    """Copy the cache files of ``source`` that ``target`` lacks (temp file + rename, so readers never see half)."""
    if not source or not os.path.isdir(source):
        return 0
    copied = 0
    for pattern in patterns:
        for path in glob.glob(os.path.join(source, pattern)):
            destination = os.path.join(target, os.path.basename(path))
            if os.path.exists(destination):
                continue
            with contextlib.suppress(OSError):
                fd, tmp = tempfile.mkstemp(prefix=".copy-", dir=target)
                os.close(fd)
                try:
                    shutil.copyfile(path, tmp)
                    os.chmod(tmp, 0o644)
                    os.replace(tmp, destination)
                    copied += 1
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(tmp)
    return copied


@contextlib.contextmanager
def cache_lock(cache):
    """Serialise a cold start (empty cache): a second host waits and then copies instead of compiling too."""
    if not cache or glob.glob(os.path.join(cache, "*.hsmp")):
        yield
        return
    with open(os.path.join(cache, ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def usable_cache(path):
    if not path:
        return None
    with contextlib.suppress(OSError):
        os.makedirs(path, exist_ok=True)
        if os.access(path, os.W_OK):
            return path
    return None


# -- commands ---------------------------------------------------------------------------------------
def state_path():
    return os.path.join(RUN, "state.json")


def load_state():
    try:
        with open(state_path()) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def initial_admin(root, env):
    """What Mailu's admin container does at start with INITIAL_ADMIN_*: its answer goes to stderr, a refusal
    (an empty password, say) does not stop the start, as in Mailu."""
    account, domain, password = (env.get("INITIAL_ADMIN_" + key) for key in ("ACCOUNT", "DOMAIN", "PW"))
    if account is None or domain is None or password is None:
        return
    mode = env.get("INITIAL_ADMIN_MODE") or "ifmissing"
    proc = subprocess.run([sys.executable, ADMIN, account, domain, password, "--mode", mode, "--root", root],
                          capture_output=True, text=True, check=False)
    answer = (proc.stdout + proc.stderr).strip().splitlines()
    print("initial admin %s@%s (mode %s): %s" % (account, domain, mode, answer[-1] if answer else "no answer"),
          file=sys.stderr)


def refresh(root, values=None):
    """Rewrite Postfix's domain and mailbox tables; reload a running Postfix when they changed."""
    values = values or settings(root, read_env(root))
    changed = False
    for name, text in postfix_maps(values, accounts(root)).items():
        path = os.path.join(RUN, name)
        if write_file(path, text) or not os.path.exists(path + ".db"):
            changed = True
            proc = subprocess.run(["postmap", "-c", os.path.join(RUN, "etc", "postmap"), "hash:%s" % path],
                                  capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise HostError("postmap %s failed: %s" % (path, proc.stderr.strip()[-300:]))
    pid = daemon_pids(root).get("postfix")
    if changed and pid:
        reload_postfix(root, pid)
    return changed


def reload_postfix(root, pid, timeout=10):
    """`postfix reload` (SIGHUP to master); return once master logged it and the old trivial-rewrite left.

    trivial-rewrite, which decides whether a domain is ours, keeps its tables open across clients: only a
    reload makes it read them again.
    """
    def reloads():
        with contextlib.suppress(OSError):
            with open(os.path.join(LOG, "postfix.log"), errors="replace") as handle:
                return handle.read().count("postfix/master[%d]: reload -- " % pid)
        return 0

    rewriters = [child for child in descendants([pid]) if comm(child) == "trivial-rewrite"]
    before = reloads()
    os.kill(pid, signal.SIGHUP)
    wait_until(lambda: reloads() > before, timeout, "Postfix to reload")
    with contextlib.suppress(HostError):  # an old one still serving a client ends after it
        wait_until(lambda: not any(alive(child) for child in rewriters), timeout, "the old trivial-rewrite to end")


def start(root, cache=DEFAULT_CACHE, timeout=START_TIMEOUT):
    env = read_env(root)
    values = settings(root, env)
    files = render(values)
    digest = fingerprint(root, files)
    running = daemon_pids(root)
    if set(running) == set(DAEMONS) and load_state().get("fingerprint") == digest:
        return "Running"
    verb = "Recreated" if running else "Started"
    if running:
        stop_daemons(root)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(state_path())
    prepare_dirs(root)
    ensure_certificate(values)
    for name, text in files.items():
        write_file(os.path.join(RUN, name), text)
    initial_admin(root, env)
    refresh(root, values)
    cache = usable_cache(cache)
    dbdir = os.path.join(root, "filter")
    with cache_lock(cache):
        copy_missing(cache, dbdir, CACHE_PATTERNS)
        procs = {
            "rspamd": launch("rspamd", [
                "rspamd", "-i", "-c", os.path.join(RUN, "etc", "rspamd", "rspamd.conf"),
                "--var=LOCAL_CONFDIR=%s" % os.path.join(RUN, "etc", "rspamd"),
                "--var=RUNDIR=%s" % os.path.join(RUN, "rspamd"), "--var=DBDIR=%s" % dbdir, "--var=LOGDIR=%s" % LOG]),
            "dovecot": launch("dovecot", ["dovecot", "-c", os.path.join(RUN, "etc", "dovecot", "dovecot.conf")]),
            "postfix": launch("postfix", [POSTFIX_MASTER, "-c", os.path.join(RUN, "etc", "postfix"), "-w"]),
        }
        try:
            for name in ("dovecot", "postfix", "rspamd"):
                finished(name, procs[name], timeout)
            for name, what, predicate in checks(values):
                try:
                    wait_until(predicate, timeout, what)
                except HostError as exc:
                    raise HostError("%s: %s" % (exc, log_tail(name))) from None
        except HostError:
            with contextlib.suppress(HostError):
                stop_daemons(root)
            raise
        copy_missing(dbdir, cache, ("*.hsmp", "*.hsmc"))  # complete once Rspamd answers
    write_file(state_path(), json.dumps({"fingerprint": digest, "pids": daemon_pids(root)}) + "\n", 0o600)
    return verb


def stop(root, cache=DEFAULT_CACHE):
    stopped = stop_daemons(root)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(state_path())
    cache = usable_cache(cache)
    if cache and os.path.isdir(os.path.join(root, "filter")):
        copy_missing(os.path.join(root, "filter"), cache, CACHE_PATTERNS)
    return "Stopped" if stopped else "Not running"


def status(root):
    pids = daemon_pids(root)
    return {"running": set(pids) == set(DAEMONS), "daemons": pids, "fingerprint": load_state().get("fingerprint")}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["admin"]:
        return subprocess.run([sys.executable, ADMIN] + argv[1:], check=False).returncode
    parser = argparse.ArgumentParser(prog="mailu_host.py", description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("command", choices=["start", "stop", "status", "refresh"])
    parser.add_argument("--root", default="/mailu", help="Mailu's root directory (default /mailu)")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE, help="Rspamd's Hyperscan cache shared by the lab hosts")
    parser.add_argument("--timeout", type=int, default=START_TIMEOUT, help="seconds to wait for the daemons")
    args = parser.parse_args(argv)
    root = os.path.abspath(args.root)
    if os.geteuid() != 0:
        print("mailu_host.py: run as root inside a lab host", file=sys.stderr)
        return 2
    try:
        if args.command == "start":
            print(start(root, args.cache_dir, args.timeout))
        elif args.command == "stop":
            print(stop(root, args.cache_dir))
        elif args.command == "refresh":
            if daemon_pids(root).get("postfix"):
                refresh(root)
        else:
            print(json.dumps(status(root), sort_keys=True))
    except HostError as exc:
        print("mailu_host.py %s: %s" % (args.command, exc), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
