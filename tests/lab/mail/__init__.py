# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's Mailu host, seen from the controller (tests, seed, demo).

Inside a lab host, ``mailu_host.py`` runs Debian's Postfix, Dovecot and Rspamd from the files roles/mailu and
roles/dkim render, and ``mailu_admin.py`` stands in for Mailu's admin CLI (see their docstrings). This module
gives the commands the roles and playbooks run on a lab host, and helpers for the tests::

    START_COMMAND, STOP_COMMAND, ADMIN_COMMAND     # mailu_start_command, the stop command, mailu_admin_command
    pem = generate_dkim_key(path)                  # PKCS#8, as Mailu writes it; dkim_txt(pem) -> "v=DKIM1; ..."
    mailbox_messages(fs_root, "admin@x.test")      # Maildir files of an INBOX, oldest first

    with MailLab() as mail_lab:                    # a private lab network for mail tests (no simulator)
        host = mail_lab.host("mx1")                # a lab host (netns, private mounts, sshd)
        host.write_env(domain="x.test")            # ROOT/mailu.env as roles/mailu renders it
        host.add_dkim_key("x.test")                # ROOT/dkim/x.test.dkim.key (0600)
        host.admin("admin", "x.test", password)    # the admin stand-in
        host.start()                               # -> "Started"; the daemons answer on 25/465/587/993
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
HOST_SCRIPT = os.path.join(HERE, "mailu_host.py")
ADMIN_SCRIPT = os.path.join(HERE, "mailu_admin.py")
# The lab hosts' own interpreter runs the scripts (standard library only).
HOST_PYTHON = "/usr/bin/python3"
ROOT = "/mailu"
START_COMMAND = " ".join(shlex.quote(part) for part in (HOST_PYTHON, HOST_SCRIPT, "start", "--root", ROOT))
STOP_COMMAND = " ".join(shlex.quote(part) for part in (HOST_PYTHON, HOST_SCRIPT, "stop", "--root", ROOT))
# roles/mailu appends LOCALPART DOMAIN PASSWORD --mode update
ADMIN_COMMAND = [HOST_PYTHON, ADMIN_SCRIPT, "--root", ROOT]
DAEMON_EXECUTABLES = {
    "postfix": ("/usr/lib/postfix/",),
    "dovecot": ("/usr/sbin/dovecot", "/usr/lib/dovecot/"),
    "rspamd": ("/usr/bin/rspamd",),
}


# ---------------------------------------------------------------------------------------
# Files and keys
# ---------------------------------------------------------------------------------------
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


def mailbox_messages(root, address):
    """Paths of the messages in the INBOX of ``address`` under a Mailu root (Dovecot's Maildir), oldest first.

    ``root`` is the host's /mailu as the controller sees it (``<host dir>/fs/mailu``).
    """
    maildir = os.path.join(root, "mail", address.lower())
    found = []
    for sub in ("new", "cur"):
        directory = os.path.join(maildir, sub)
        with contextlib.suppress(FileNotFoundError):
            found += [os.path.join(directory, name) for name in os.listdir(directory) if not name.startswith(".")]
    return sorted(found, key=os.path.basename)


def mailu_env(domain, hostname=None, selector="dkim", ports=(25, 465, 587, 993), **extra):
    """mailu.env text with the settings roles/mailu renders that the lab's daemons read."""
    lines = {
        "DOMAIN": domain,
        "HOSTNAMES": hostname or "mail.%s" % domain,
        "POSTMASTER": "admin",
        "TLS_FLAVOR": "cert",
        "PORTS": ",".join(str(port) for port in ports),
        "BIND_ADDRESS4": "0.0.0.0",
        "DKIM_SELECTOR": selector,
        "DKIM_PATH": "/dkim/{domain}.{selector}.key",
        "MESSAGE_SIZE_LIMIT": "50000000",
    }
    lines.update({key.upper(): value for key, value in extra.items()})
    return "".join("%s=%s\n" % item for item in lines.items())


# ---------------------------------------------------------------------------------------
# Mail hosts for tests: lab hosts made directly with tests.lab.hosts
# ---------------------------------------------------------------------------------------
class MailHost(dict):
    """A lab host (the dict of tests.lab.hosts.create_host) that runs the lab's Mailu daemons."""

    def __init__(self, host, state_dir):
        super().__init__(host)
        self.state_dir = state_dir

    @property
    def ip(self):
        return self["ip"]

    @property
    def root(self):
        """The host's /mailu as the controller sees it."""
        return self.path(ROOT)

    def path(self, inside):
        return os.path.join(self["root"], "fs", inside.lstrip("/"))

    def exec(self, argv, check=False, **kwargs):
        from tests.lab import hosts

        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        kwargs.setdefault("timeout", 180)
        proc = hosts.host_exec(self.state_dir, self["name"], argv, **kwargs)
        if check and proc.returncode != 0:
            raise RuntimeError("%s on %s failed (exit %s): %s" % (
                os.path.basename(argv[1]) if len(argv) > 1 else argv[0], self["name"], proc.returncode,
                (proc.stderr or proc.stdout).strip()[-800:]))
        return proc

    def write_env(self, domain, **settings):
        write_atomic(self.path("/mailu/mailu.env"), mailu_env(domain, **settings).encode(), 0o600)

    def add_dkim_key(self, domain, selector="dkim", pem=None):
        """Install a DKIM key as roles/dkim does (0600); returns the PEM."""
        pem = pem or generate_dkim_key(None)
        write_atomic(self.path("/mailu/dkim/%s.%s.key" % (domain, selector)), pem, 0o600)
        return pem

    def admin(self, localpart, domain, password, mode="update"):
        return self.exec(ADMIN_COMMAND + [localpart, domain, password, "--mode", mode])

    def start(self):
        return self.exec(shlex.split(START_COMMAND), check=True).stdout.strip()

    def stop(self):
        return self.exec(shlex.split(STOP_COMMAND), check=True).stdout.strip()

    def status(self):
        return json.loads(self.exec([HOST_PYTHON, HOST_SCRIPT, "status", "--root", ROOT], check=True).stdout)

    def log(self, daemon):
        """The daemon's log (postfix, dovecot, rspamd) in the host's /var/log/mailu."""
        try:
            with open(self.path("/var/log/mailu/%s.log" % daemon), errors="replace") as handle:
                return handle.read()
        except FileNotFoundError:
            return ""

    @property
    def cert_path(self):
        return self.path("/mailu/certs/cert.pem")

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
        for address in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
            for message in self.mailbox(address):
                if message_id.encode() in message:
                    return True
        return False

    def daemon_processes(self):
        """[(controller pid, daemon)] of the mail daemons in the host's network namespace (by executable)."""
        from tests.lab import hosts

        found = []
        for pid in hosts.netns_pids(self["netns"]):
            try:
                exe = os.readlink("/proc/%d/exe" % pid)
            except OSError:
                continue
            for daemon, prefixes in DAEMON_EXECUTABLES.items():
                if exe.startswith(prefixes):
                    found.append((pid, daemon))
        return found

    def memory(self):
        """{daemon: {"rss_kb", "pss_kb", "processes"}} of the host's mail daemons right now."""
        usage = {}
        for pid, daemon in self.daemon_processes():
            entry = usage.setdefault(daemon, {"rss_kb": 0, "pss_kb": 0, "processes": 0})
            rollup = _read("/proc/%d/smaps_rollup" % pid)
            for line in rollup.splitlines():
                key, _sep, value = line.partition(":")
                if key in ("Rss", "Pss"):
                    entry["%s_kb" % key.lower()] += int(value.split()[0])
            entry["processes"] += 1
        return usage


def _read(path):
    try:
        with open(path, errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


class MailLab:
    """A private lab network (state dir, bridge, controller key) holding mail hosts; close() removes everything."""

    def __init__(self):
        from tests.lab import hosts, lab

        self.state_dir = tempfile.mkdtemp(prefix="pm-lab-mail-")
        self.key = os.path.join(self.state_dir, "ssh", "id_ed25519")
        lab.controller_key(self.key)
        hosts.ensure_network(self.state_dir, owner_pid=os.getpid())
        with open(self.key + ".pub") as handle:
            self.public_key = handle.read().strip()

    def host(self, name):
        from tests.lab import hosts

        return MailHost(hosts.create_host(self.state_dir, name, [self.public_key]), self.state_dir)

    def destroy(self, name):
        from tests.lab import hosts

        hosts.destroy_host(self.state_dir, name)

    def inventory(self, directory, host_list):
        """An INI inventory: localhost (this venv's python) and the hosts as root with the lab key."""
        import sys

        from tests.lab.lab import SSH_OPTIONS

        path = os.path.join(str(directory), "inventory.ini")
        lines = ["localhost ansible_connection=local ansible_python_interpreter=%s" % sys.executable]
        for host in host_list:
            lines.append("%s ansible_host=%s ansible_user=root ansible_ssh_private_key_file=%s "
                         "ansible_python_interpreter=%s ansible_ssh_common_args='%s'"
                         % (host["name"], host["ip"], self.key, HOST_PYTHON, " ".join(SSH_OPTIONS[:4])))
        with open(path, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        return path

    def close(self):
        from tests.lab import hosts

        try:
            hosts.destroy_network(self.state_dir)
            hosts.sweep_processes(self.state_dir)
        finally:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def measure(rounds=3):
    """Start one lab mail host ``rounds`` times (after a first start that fills Rspamd's cache); time and memory."""
    password = "Measure-" + os.urandom(6).hex()
    results = {"start_seconds": [], "memory": None}
    with MailLab() as mail_lab:
        host = mail_lab.host("measure")
        host.write_env("measure.test")
        host.add_dkim_key("measure.test")
        host.admin("admin", "measure.test", password, "create")
        started = time.monotonic()
        host.start()
        results["first_start_seconds"] = round(time.monotonic() - started, 2)
        host.stop()
        for _unused in range(rounds):
            started = time.monotonic()
            host.start()
            results["start_seconds"].append(round(time.monotonic() - started, 2))
            results["memory"] = host.memory()
            host.stop()
    return results
