# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A real BIND9 (Debian ``named``) for the lab: authoritative for test zones, RFC 2136 updates with TSIG.

    server = Bind9(workdir)           # or Bind9(workdir, zones=("example.test", "other.test"))
    info = server.start()             # {"address", "port", "zones", "tsig_name", "tsig_algorithm", "tsig_secret", "pid"}
    ...
    server.stop()                     # named is gone, its files are removed

``named`` runs in the foreground (``-g``) as root, in its own process group, with its configuration,
zone files and journals in a private directory below ``workdir``. It listens only on the given
loopback address and port (a free one when ``port`` is None), over UDP and TCP. Updates are allowed
only when signed with the lab's TSIG key; zone transfers too. No rndc, no recursion.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from tests.support.wait import wait_until as _wait_until

NAMED = "/usr/sbin/named"
DEFAULT_TTL = 300


def free_port(address="127.0.0.1", attempts=50):
    """A port that is free for both TCP and UDP on ``address`` right now."""
    for _attempt in range(attempts):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((address, 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((address, port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no port free for both TCP and UDP on %s" % address)


class Bind9:
    """One ``named`` process. Use start()/stop() or a ``with`` block."""

    def __init__(self, workdir, address="127.0.0.1", port=None, zones=("example.test",),
                 tsig_name="pm-lab-key", tsig_algorithm="hmac-sha256", tsig_secret=None):
        if not os.access(NAMED, os.X_OK):
            raise RuntimeError("%s is missing: apt-get install bind9 (make setup installs it)" % NAMED)
        if not address.startswith("127."):
            raise ValueError("the lab BIND9 listens on loopback only, not %r" % address)
        self.workdir = workdir
        self.address = address
        self.fixed_port = port
        self.port = port
        self.zones = tuple(zone.rstrip(".").lower() for zone in zones)
        self.tsig_name = tsig_name
        self.tsig_algorithm = tsig_algorithm
        self.tsig_secret = tsig_secret or base64.b64encode(secrets.token_bytes(32)).decode("ascii")
        self.dir = None
        self.proc = None
        self._log = None

    # -- files ---------------------------------------------------------------------------
    @property
    def conf_path(self):
        return os.path.join(self.dir, "named.conf")

    @property
    def log_path(self):
        return os.path.join(self.dir, "named.log")

    def zone_path(self, zone):
        return os.path.join(self.dir, "db.%s" % zone)

    def _write_files(self):
        conf = [
            'key "%s" {' % self.tsig_name,
            "    algorithm %s;" % self.tsig_algorithm,
            '    secret "%s";' % self.tsig_secret,
            "};",
            "controls { };",
            "options {",
            '    directory "%s";' % self.dir,
            '    pid-file "%s";' % os.path.join(self.dir, "named.pid"),
            '    session-keyfile "%s";' % os.path.join(self.dir, "session.key"),
            '    managed-keys-directory "%s";' % self.dir,
            '    dump-file "%s";' % os.path.join(self.dir, "cache_dump.db"),
            '    statistics-file "%s";' % os.path.join(self.dir, "named.stats"),
            "    listen-on port %d { %s; };" % (self.port, self.address),
            "    listen-on-v6 { none; };",
            "    recursion no;",
            "    dnssec-validation no;",
            "    notify no;",
            "    allow-query { any; };",
            '    allow-transfer { key "%s"; };' % self.tsig_name,
            "};",
        ]
        for zone in self.zones:
            conf += [
                'zone "%s" {' % zone,
                "    type primary;",
                '    file "%s";' % self.zone_path(zone),
                '    allow-update { key "%s"; };' % self.tsig_name,
                "};",
            ]
            records = [
                "$ORIGIN %s." % zone,
                "$TTL %d" % DEFAULT_TTL,
                "@ IN SOA ns.%s. hostmaster.%s. 1 3600 600 86400 %d" % (zone, zone, DEFAULT_TTL),
                "@ IN NS ns.%s." % zone,
                "ns IN A %s" % self.address,
            ]
            with open(self.zone_path(zone), "w") as handle:
                handle.write("\n".join(records) + "\n")
        with open(self.conf_path, "w") as handle:
            handle.write("\n".join(conf) + "\n")
        os.chmod(self.conf_path, 0o600)  # it holds the TSIG secret
        check = subprocess.run(["named-checkconf", "-z", self.conf_path], capture_output=True, text=True, check=False)
        if check.returncode != 0:
            raise RuntimeError("named-checkconf rejected the lab config: %s" % (check.stdout + check.stderr).strip())

    # -- lifecycle -----------------------------------------------------------------------
    def start(self, timeout=30):
        if self.proc is not None:
            raise RuntimeError("this Bind9 is already started")
        os.makedirs(self.workdir, exist_ok=True)
        self.dir = tempfile.mkdtemp(prefix="bind9-", dir=self.workdir)
        attempts = 1 if self.fixed_port else 5
        last_error = None
        try:
            for _attempt in range(attempts):
                self.port = self.fixed_port or free_port(self.address)
                self._write_files()
                try:
                    self._launch(timeout)
                    return self.info()
                except _PortTaken as exc:  # another process took the port in between: try another
                    last_error = exc
                    self._kill()
            raise RuntimeError("named could not bind a port on %s: %s" % (self.address, last_error))
        except BaseException:
            self.stop()
            raise

    def _launch(self, timeout):
        self._log = open(self.log_path, "w")
        # -g: foreground, log to stderr; -n 1/-U 1: one worker, the machine is shared.
        cmd = [NAMED, "-g", "-n", "1", "-U", "1", "-4", "-c", self.conf_path]
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=self.dir, start_new_session=True,
        )
        _wait_until(self._answers, timeout, "named on %s port %s" % (self.address, self.port))

    def _answers(self):
        if self.proc.poll() is not None:
            log = self.log()
            if "address in use" in log:
                raise _PortTaken("port %s in use" % self.port)
            raise RuntimeError("named exited with %s:\n%s" % (self.proc.returncode, log[-3000:]))
        for zone in self.zones:
            query = dns.message.make_query(zone + ".", dns.rdatatype.SOA)
            try:
                response = dns.query.udp(query, self.address, port=self.port, timeout=0.5)
            except (OSError, dns.exception.DNSException):
                return False
            if response.rcode() != dns.rcode.NOERROR or not response.answer:
                return False
        return True

    def log(self):
        try:
            with open(self.log_path) as handle:
                return handle.read()
        except OSError:
            return ""

    def info(self):
        return {
            "address": self.address,
            "port": self.port,
            "zones": list(self.zones),
            "tsig_name": self.tsig_name,
            "tsig_algorithm": self.tsig_algorithm,
            "tsig_secret": self.tsig_secret,
            "pid": self.proc.pid if self.proc else None,
        }

    def _kill(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(10)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self):
        self._kill()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


class _PortTaken(RuntimeError):
    pass
