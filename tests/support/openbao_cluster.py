# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A real 3-node OpenBao raft cluster on loopback, for HA/fail-over tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import urllib.error
import urllib.request

from tests.support.openbao import bao_binary, free_port, wait_until

CONFIG = """
storage "raft" {{
  path = "{data}"
  node_id = "{node_id}"
  performance_multiplier = 1
  # autopilot promotes a joined node to voter on its reconcile pass (default every 10 s) once the node has been
  # healthy for server_stabilization_time (set to 1 s through the API in start(); default 10 s)
  autopilot_reconcile_interval = "1s"
  autopilot_update_interval = "500ms"
}}
listener "tcp" {{
  address = "127.0.0.1:{port}"
  cluster_address = "127.0.0.1:{cport}"
  tls_disable = true
}}
api_addr = "http://127.0.0.1:{port}"
cluster_addr = "http://127.0.0.1:{cport}"
disable_mlock = true
# Vault's own audit device, declared as an operator would: the same declaration on every node (the audit table is the
# cluster's, and a snapshot carries it: a restored cluster whose config declares other options refuses to become
# active, "modifications to audit devices are not allowed")
audit "file" "file" {{
  options {{
    file_path = "{audit_log}"
  }}
}}
"""


class Node:
    def __init__(self, workdir, index, audit_log):
        self.index = index
        self.node_id = "node%d" % index
        self.port = free_port()
        self.cport = free_port()
        self.addr = "http://127.0.0.1:%d" % self.port
        self.dir = os.path.join(workdir, self.node_id)
        self.audit_log = audit_log
        self.proc = None

    def start(self):
        os.makedirs(os.path.join(self.dir, "data"), exist_ok=True)
        config = os.path.join(self.dir, "config.hcl")
        with open(config, "w") as handle:
            handle.write(CONFIG.format(data=os.path.join(self.dir, "data"), node_id=self.node_id,
                                       port=self.port, cport=self.cport, audit_log=self.audit_log))
        log = open(os.path.join(self.dir, "server.log"), "w")
        self.proc = subprocess.Popen([bao_binary(), "server", "-config=%s" % config], stdout=log, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, HOME=self.dir), start_new_session=True)
        log.close()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


class OpenBaoCluster:
    """Three raft nodes; ``addrs`` lists their API addresses; ``token`` is the root token. ``audit_log``: the file
    audit device's path, declared alike on every node (default ``<workdir>/audit.log``); a cluster restored from
    another's snapshot must declare the same."""

    def __init__(self, size=3, audit_log=None):
        self.workdir = tempfile.mkdtemp(prefix="pm-openbao-raft-")
        self.audit_log = audit_log or os.path.join(self.workdir, "audit.log")
        self.nodes = [Node(self.workdir, i + 1, self.audit_log) for i in range(size)]
        self.token = None
        self.unseal_key = None

    @property
    def addrs(self):
        return [node.addr for node in self.nodes]

    def request(self, addr, method, path, payload=None, token=None, timeout=5):
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(addr + path, data=data, method=method)
        if token or self.token:
            req.add_header("X-Vault-Token", token or self.token)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else {}
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw) if raw else {}
            except ValueError:
                return exc.code, {}
        except OSError:
            return None, {}

    def _health(self, node):
        status, body = self.request(node.addr, "GET", "/v1/sys/health?standbyok=true&sealedcode=200&uninitcode=200")
        return body if status == 200 else None

    def start(self):
        """Node 1 initialised and active, then the others joined (sys/storage/raft/join: a retry_join stanza
        retries only every 2 s, and not before the unseal key is there) and unsealed together, until every node
        is a voter (about 5 s; it was 21 s with autopilot's defaults and retry_join)."""
        first = self.nodes[0]
        first.start()
        wait_until(lambda: self._health(first), 30, "raft node 1 to listen")
        status, body = self.request(first.addr, "PUT", "/v1/sys/init", {"secret_shares": 1, "secret_threshold": 1}, timeout=60)
        if status != 200:
            raise RuntimeError("raft init failed: %s %s" % (status, body))
        self.token, self.unseal_key = body["root_token"], (body.get("keys_base64") or body["keys"])[0]
        self._unseal(first)
        wait_until(lambda: self.leader() == first.addr, 30, "node 1 to become the active node")
        self.api("POST", "/v1/sys/storage/raft/autopilot/configuration", {"server_stabilization_time": "1s"})
        for node in self.nodes[1:]:
            node.start()
        for node in self.nodes[1:]:
            wait_until(lambda n=node: self._health(n), 30, "%s to listen" % node.node_id)
            status, body = self.request(node.addr, "POST", "/v1/sys/storage/raft/join", {"leader_api_addr": first.addr},
                                        timeout=60)
            if status != 200 or not body.get("joined"):
                raise RuntimeError("%s could not join the raft cluster: %s %s" % (node.node_id, status, body))
        for node in self.nodes[1:]:
            self._unseal(node)
        wait_until(lambda: len(self.voters()) == len(self.nodes), 60, "all raft peers to join as voters")
        return self

    def _unseal(self, node):
        def unsealed():
            self.request(node.addr, "PUT", "/v1/sys/unseal", {"key": self.unseal_key})
            health = self._health(node)
            return health and not health.get("sealed")

        wait_until(unsealed, 60, "%s to unseal" % node.node_id, interval=0.3)

    def leader(self):
        """The API address of the active node, as the live nodes see it (None during an election)."""
        for node in self.nodes:
            if node.alive():
                status, body = self.request(node.addr, "GET", "/v1/sys/leader")
                if status == 200 and body.get("is_self") and body.get("ha_enabled"):
                    return node.addr
        return None

    def leader_node(self):
        address = self.leader()
        return next((node for node in self.nodes if node.addr == address), None)

    def voters(self):
        for node in self.nodes:
            if node.alive():
                status, body = self.request(node.addr, "GET", "/v1/sys/storage/raft/configuration")
                if status == 200:
                    servers = body.get("data", {}).get("config", {}).get("servers", [])
                    return [s["node_id"] for s in servers if s.get("voter")]
        return []

    def api(self, method, path, payload=None):
        for node in self.nodes:
            if node.alive():
                status, body = self.request(node.addr, method, path, payload)
                if status in (200, 204):
                    return body
        raise RuntimeError("no live node accepted %s %s" % (method, path))

    def enable_kv(self, *mounts):
        """Enable KV v2 mounts and wait until the leader finished upgrading them (reads answer 404, not 400)."""
        for mount in mounts:
            self.api("POST", "/v1/sys/mounts/%s" % mount, {"type": "kv", "options": {"version": "2"}})

            def ready(mount=mount):
                address = self.leader()
                return address and self.request(address, "GET", "/v1/%s/data/probe" % mount)[0] == 404

            wait_until(ready, 60, "the KV v2 mount %s to be ready" % mount)

    def stop(self):
        for node in self.nodes:
            node.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        try:
            return self.start()
        except Exception:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()
