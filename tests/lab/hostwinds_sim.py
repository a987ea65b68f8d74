# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's Hostwinds Cloud API simulator.

    python -m tests.lab.hostwinds_sim --state-dir D --port P --api-key K \
        [--authorized-keys-file F] [--hosts-state-dir H] [--hosts-module tests.lab.hosts]

serves on 127.0.0.1:P the contract of shared/DESIGN.md ("Hostwinds Cloud API"):

* ``POST /cloud/api.php``, form-encoded, fields ``action`` and ``API`` (the API key);
* errors come as HTTP 200 ``[{"result": "error", "action": ..., "message": ...}]``, a wrong
  API key included;
* reads (``get_instances``, ``get_instance``, ``get_instance_ips``) answer ``{"success": ...}``;
  other actions answer a list of ``{"result": "success", "action": ..., "message": ...}``;
* ``add_instance`` answers without a serviceid and builds asynchronously: the instance is
  listed at once with ``status: pending`` and becomes ``active`` (with its ``main_ip``) only
  when its real lab host (a network namespace with sshd, ``tests.lab.hosts.create_host``) is up;
  ``terminate`` destroys the host.

State (instances, counters, faults) is a JSON file in the state dir, so a restarted
simulator keeps its instances and resumes builds that were under way.

Lab-only hooks, outside the API path and without the API key (loopback only):

* ``GET /lab/health`` -> ``{"ok": true}``
* ``GET /lab/calls`` -> how often each action was called, and ``add_instance`` per srvrname
  (proof that a client never creates twice)
* ``GET /lab/state`` -> every instance with the lab-only fields (``lab_host``, ``build_error``)
* ``POST /lab/faults`` (JSON object, merged into the current faults; ``GET`` shows them):
  ``hold_builds`` (bool: builds wait until it is set false again), ``build_delay`` (seconds a
  build waits before its host is created), ``drop_add_instance_response`` (int: the next N
  ``add_instance`` calls create the instance, then close the connection without an answer),
  ``fail_reads`` (int: the next N read calls get HTTP 503), ``fail_build`` (int: the next N
  builds end with ``status: failed``), ``error_next`` (``{action: message}``: the next call of
  that action answers an API error and changes nothing).
* ``POST /lab/reset`` forgets the call counters and faults (instances stay).

SSH keys, as at Hostwinds: ``add_instance``'s ``keys`` (sent as the array ``keys[]``) name SSH keys stored in
the account, registered beforehand with ``add_ssh_key`` (``name``, ``ssh_key``); ``get_ssh_keys`` lists them and
``delete_ssh_key`` (``name``) removes one. A name that is not registered, or a raw public key given in ``keys``,
is refused with an API error and nothing is ordered. The named keys' public keys are put in root's
``authorized_keys`` of the new host, beside the lab's provisioning key (the image's own access, outside the
API). The assumptions about the parts of this contract the public documentation does not show are written
down in docs/hostwinds.md.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode

API_PATH = "/cloud/api.php"
READ_ACTIONS = ("get_instances", "get_instance", "get_instance_ips", "get_ssh_keys")
SSH_KEY_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SSH_KEY_RE = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+( [^\n]*)?$")
ACTION_TITLES = {
    "add_instance": "Add Instance",
    "get_instances": "Get Instances",
    "get_instance": "Get Instance",
    "get_instance_ips": "Get Instance IPs",
    "terminate": "Terminate",
    "reinstall_instance": "Reinstall Instance",
    "boot": "Boot",
    "shutdown": "Shutdown",
    "reboot": "Reboot",
    "add_ssh_key": "Add SSH Key",
    "get_ssh_keys": "Get SSH Keys",
    "delete_ssh_key": "Delete SSH Key",
}
FIRST_SERVICEID = 100001
HOST_NAME_RE = re.compile(r"^hw[0-9]+$")  # lab host names: "hw<serviceid>"
MAX_QTY = 5
DEFAULT_FAULTS = {
    "hold_builds": False,
    "build_delay": 0,
    "drop_add_instance_response": 0,
    "fail_reads": 0,
    "fail_build": 0,
    "error_next": {},
}


def _now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


class ApiError(Exception):
    """An API error answered as HTTP 200 ``[{"result": "error", ...}]``."""


class DropConnection(Exception):
    """Close the connection without an answer (fault injection)."""


class Simulator:
    """The simulated account: instances, their builds and the lab hosts behind them."""

    def __init__(self, state_dir, api_key, authorized_keys, hosts, hosts_state_dir=None):
        self.state_dir = state_dir
        self.hosts_state_dir = hosts_state_dir or state_dir
        self.api_key = api_key
        self.authorized_keys = authorized_keys
        self.hosts = hosts
        self.path = os.path.join(state_dir, "hostwinds.json")
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.threads = []
        self.stopping = False
        self.state = self._load()

    # -- persistence ---------------------------------------------------------------------
    def _load(self):
        try:
            with open(self.path) as handle:
                state = json.load(handle)
        except FileNotFoundError:
            state = {}
        state.setdefault("next_serviceid", FIRST_SERVICEID)
        state.setdefault("instances", {})
        state.setdefault("ssh_keys", {})
        state.setdefault("calls", {"actions": {}, "add_instance": {}})
        faults = dict(DEFAULT_FAULTS)
        faults.update(state.get("faults") or {})
        state["faults"] = faults
        return state

    def save(self):
        with self.lock:
            tmp = self.path + ".tmp"
            with open(tmp, "w") as handle:
                json.dump(self.state, handle, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
            self.changed.notify_all()

    def resume_builds(self):
        """Builds that were under way when the simulator stopped go on."""
        with self.lock:
            pending = [sid for sid, inst in self.state["instances"].items() if inst["status"] == "pending"]
        for sid in pending:
            self._start_build(sid)

    # -- the API -------------------------------------------------------------------------
    def handle(self, form):
        action = form.get("action", "")
        title = ACTION_TITLES.get(action, action)
        if form.get("API", "") != self.api_key:
            raise ApiError("Not Authorized!")
        if action not in ACTION_TITLES:
            raise ApiError("Invalid action")
        with self.lock:
            calls = self.state["calls"]
            calls["actions"][action] = calls["actions"].get(action, 0) + 1
            faults = self.state["faults"]
            injected = faults["error_next"].pop(action, None)
            self.save()
        if injected:
            raise ApiError(injected)
        if action in READ_ACTIONS:
            with self.lock:
                if faults["fail_reads"] > 0:
                    faults["fail_reads"] -= 1
                    self.save()
                    return 503, {"error": "Service Unavailable"}
        return 200, getattr(self, "_do_" + action)(form, title)

    def _instance(self, form):
        sid = str(form.get("serviceid", "")).strip()
        inst = self.state["instances"].get(sid)
        if not sid or inst is None:
            raise ApiError("A valid serviceid is required.")
        return inst

    @staticmethod
    def _public(inst):
        return {key: value for key, value in inst.items() if not key.startswith("lab_")}

    def _do_get_instances(self, form, title):
        with self.lock:
            items = sorted(self.state["instances"].values(), key=lambda inst: inst["serviceid"])
            return {"success": [self._public(inst) for inst in items]}

    def _do_get_instance(self, form, title):
        with self.lock:
            return {"success": self._public(self._instance(form))}

    def _do_get_instance_ips(self, form, title):
        with self.lock:
            inst = self._instance(form)
            ips = []
            if inst["main_ip"]:
                ips.append({"ip": inst["main_ip"], "main": True, "type": "ipv4", "serviceid": inst["serviceid"]})
            return {"success": ips}

    def _do_add_instance(self, form, title):
        missing = [name for name in ("template", "rid", "location_id") if not form.get(name)]
        if missing:
            raise ApiError("Missing required field(s): %s" % ", ".join(missing))
        try:
            qty = int(form.get("qty") or 1)
        except ValueError:
            raise ApiError("qty must be a number")
        if not 1 <= qty <= MAX_QTY:
            raise ApiError("qty must be between 1 and %d" % MAX_QTY)
        names = [name.strip() for name in form.get("keys[]") or [] if name.strip()]
        if form.get("keys"):
            names += [name.strip() for name in form["keys"].split(",") if name.strip()]
        created = []
        with self.lock:
            keys = []
            for name in names:
                if name not in self.state["ssh_keys"]:
                    raise ApiError("Invalid SSH key: %s is not an SSH key of this account" % name[:40])
                keys.append(self.state["ssh_keys"][name]["key"])
            for _index in range(qty):
                sid = self.state["next_serviceid"]
                self.state["next_serviceid"] = sid + 1
                name = form.get("srvrname") or "Server#%d" % sid
                self.state["instances"][str(sid)] = {
                    "serviceid": sid,
                    "srvrname": name,
                    "hostname": "hwsrv-%d.hostwindsdns.com" % sid,
                    "main_ip": "",
                    "ips": [],
                    "status": "pending",
                    "disp_status": "Building",
                    "vm_state": "building",
                    "task_state": "spawning",
                    "power_state": 0,
                    "location_id": form["location_id"],
                    "template_uuid": form["template"],
                    "product_id": form["rid"],
                    "billingcycle": form.get("billingcycle") or "monthly",
                    "ssh_keys": names,
                    "lab_ssh_public_keys": keys,
                    "created_at": _now(),
                    "updated_at": _now(),
                    "lab_host": "hw%d" % sid,
                    "lab_build_error": None,
                }
                per_name = self.state["calls"]["add_instance"]
                per_name[name] = per_name.get(name, 0) + 1
                created.append(str(sid))
            drop = self.state["faults"]["drop_add_instance_response"] > 0
            if drop:
                self.state["faults"]["drop_add_instance_response"] -= 1
            self.save()
        for sid in created:
            self._start_build(sid)
        if drop:
            raise DropConnection()
        return [
            {"result": "success", "action": "Invoice Paid", "message": "Invoice has been paid."},
            {"result": "success", "action": title, "message": "Server is being Created!"},
        ]

    def _do_terminate(self, form, title):
        with self.lock:
            inst = self._instance(form)
            inst["status"] = "terminating"
            inst["task_state"] = "deleting"
            self.save()
        self.hosts.destroy_host(self.hosts_state_dir, inst["lab_host"])
        with self.lock:
            self.state["instances"].pop(str(inst["serviceid"]), None)
            self.save()
        return [{"result": "success", "action": title, "message": "Instance deleted"}]

    def _do_reinstall_instance(self, form, title):
        if not form.get("template"):
            raise ApiError("A valid template is required.")
        with self.lock:
            inst = self._instance(form)
            if inst["status"] == "pending":
                raise ApiError("Instance Server#%d is busy." % inst["serviceid"])
            self.save()
        self.hosts.destroy_host(self.hosts_state_dir, inst["lab_host"])
        with self.lock:
            inst.update(
                template_uuid=form["template"], main_ip="", ips=[], status="pending", disp_status="Building",
                vm_state="building", task_state="rebuilding", updated_at=_now(),
            )
            self.save()
        self._start_build(str(inst["serviceid"]))
        return [{"result": "success", "action": title, "message": "Instance Server#%d is being rebuilt!" % inst["serviceid"]}]

    def _do_add_ssh_key(self, form, title):
        name, key = (form.get("name") or "").strip(), (form.get("ssh_key") or "").strip()
        if not SSH_KEY_NAME_RE.match(name):
            raise ApiError("A valid name is required.")
        if not SSH_KEY_RE.match(key):
            raise ApiError("A valid ssh_key is required.")
        with self.lock:
            if name in self.state["ssh_keys"]:
                raise ApiError("An SSH key named %s already exists." % name)
            self.state["ssh_keys"][name] = {"name": name, "key": key, "created_at": _now()}
            self.save()
        return [{"result": "success", "action": title, "message": "SSH key %s added" % name}]

    def _do_get_ssh_keys(self, form, title):
        with self.lock:
            return {"success": [dict(entry) for _name, entry in sorted(self.state["ssh_keys"].items())]}

    def _do_delete_ssh_key(self, form, title):
        name = (form.get("name") or "").strip()
        with self.lock:
            if name not in self.state["ssh_keys"]:
                raise ApiError("A valid SSH key name is required.")
            del self.state["ssh_keys"][name]
            self.save()
        return [{"result": "success", "action": title, "message": "SSH key %s deleted" % name}]

    def _power(self, form, title, vm_state, power_state, message):
        with self.lock:
            inst = self._instance(form)
            if inst["status"] != "active":
                raise ApiError("Instance Server#%d is not active." % inst["serviceid"])
            inst.update(vm_state=vm_state, power_state=power_state, task_state=None, updated_at=_now())
            self.save()
        return [{"result": "success", "action": title, "message": message % inst["serviceid"]}]

    def _do_boot(self, form, title):
        return self._power(form, title, "active", 1, "Instance Server#%d has been started!")

    def _do_shutdown(self, form, title):
        return self._power(form, title, "stopped", 4, "Instance Server#%d has been shut down!")

    def _do_reboot(self, form, title):
        return self._power(form, title, "active", 1, "Instance Server#%d rebooted")

    # -- asynchronous builds -------------------------------------------------------------
    def _start_build(self, sid):
        thread = threading.Thread(target=self._build, args=(sid,), name="build-%s" % sid, daemon=True)
        self.threads.append(thread)
        thread.start()

    def _build(self, sid):
        with self.lock:
            started = time.monotonic()
            while not self.stopping:
                faults = self.state["faults"]
                remaining = float(faults.get("build_delay") or 0) - (time.monotonic() - started)
                if not faults.get("hold_builds") and remaining <= 0:
                    break
                self.changed.wait(0.2 if remaining <= 0 else min(remaining, 0.2))
            inst = self.state["instances"].get(sid)
            if self.stopping or inst is None or inst["status"] != "pending":
                return
            fail = self.state["faults"]["fail_build"] > 0
            if fail:
                self.state["faults"]["fail_build"] -= 1
                self.save()
            name = inst["lab_host"]
            extra_keys = list(inst.get("lab_ssh_public_keys") or [])
        error = None
        ip = None
        if fail:
            error = "build failed (injected fault)"
        else:
            try:
                # a build cut short by a restart of the simulator may have left half a host
                self.hosts.destroy_host(self.hosts_state_dir, name)
                host = self.hosts.create_host(self.hosts_state_dir, name, list(self.authorized_keys) + extra_keys)
                ip = host["ip"]
            except Exception as exc:  # the build fails, the simulator goes on
                error = "build failed: %s" % exc
        with self.lock:
            inst = self.state["instances"].get(sid)
            if inst is None or inst["status"] != "pending":
                if ip:  # terminated while building: nothing may outlive the instance
                    self.hosts.destroy_host(self.hosts_state_dir, name)
                return
            if error:
                inst.update(status="failed", disp_status="Failed", vm_state="error", task_state=None, lab_build_error=error)
            else:
                inst.update(
                    status="active", disp_status="Active", vm_state="active", task_state=None, power_state=1,
                    main_ip=ip, ips=[ip], updated_at=_now(),
                )
            self.save()

    def stop(self):
        with self.lock:
            self.stopping = True
            self.changed.notify_all()
        for thread in self.threads:
            thread.join(30)

    # -- lab hooks -----------------------------------------------------------------------
    def lab_get(self, path):
        with self.lock:
            if path == "/lab/health":
                return {"ok": True}
            if path == "/lab/calls":
                return self.state["calls"]
            if path == "/lab/state":
                return {"instances": sorted(self.state["instances"].values(), key=lambda inst: inst["serviceid"])}
            if path == "/lab/faults":
                return self.state["faults"]
        return None

    def lab_post(self, path, body):
        with self.lock:
            if path == "/lab/faults":
                if not isinstance(body, dict) or set(body) - set(DEFAULT_FAULTS):
                    raise ValueError("faults are an object with keys %s" % ", ".join(sorted(DEFAULT_FAULTS)))
                self.state["faults"].update(body)
                self.save()
                return self.state["faults"]
            if path == "/lab/reset":
                self.state["calls"] = {"actions": {}, "add_instance": {}}
                self.state["faults"] = json.loads(json.dumps(DEFAULT_FAULTS))
                self.save()
                return {"ok": True}
        return None


class Handler(BaseHTTPRequestHandler):
    server_version = "hostwinds-sim/1"
    sim = None  # set by serve()

    def log_message(self, fmt, *args):  # the API key travels in the body, never in a log line
        sys.stderr.write("%s %s\n" % (self.command, self.path))

    def _send(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self):
        payload = self.sim.lab_get(self.path)
        if payload is None:
            self._send(404, {"error": "not found"})
        else:
            self._send(200, payload)

    def do_POST(self):
        raw = self._body()
        if self.path.startswith("/lab/"):
            try:
                payload = self.sim.lab_post(self.path, json.loads(raw or b"{}"))
            except ValueError as exc:
                self._send(400, {"error": str(exc)})
                return
            if payload is None:
                self._send(404, {"error": "not found"})
            else:
                self._send(200, payload)
            return
        if self.path.split("?")[0] != API_PATH:
            self._send(404, {"error": "not found"})
            return
        parsed = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
        form = {key: values[-1] for key, values in parsed.items()}
        form["keys[]"] = parsed.get("keys[]", [])  # an array, as PHP reads keys[]=a&keys[]=b
        action = form.get("action", "")
        try:
            status, payload = self.sim.handle(form)
        except ApiError as exc:
            status, payload = 200, [{"result": "error", "action": ACTION_TITLES.get(action, action), "message": str(exc)}]
        except DropConnection:
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self._send(status, payload)


def _load_authorized_keys(path):
    if not path:
        return []
    with open(path) as handle:
        return [line.strip() for line in handle if line.strip() and not line.startswith("#")]


def serve(state_dir, port, api_key, authorized_keys_file=None, hosts_module="tests.lab.hosts", hosts_state_dir=None, ready=None):
    os.makedirs(state_dir, exist_ok=True)
    hosts = importlib.import_module(hosts_module)
    sim = Simulator(state_dir, api_key, _load_authorized_keys(authorized_keys_file), hosts, hosts_state_dir)
    handler = type("BoundHandler", (Handler,), {"sim": sim})
    httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
    httpd.daemon_threads = True

    def _stop(_signum, _frame):
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with open(os.path.join(state_dir, "hostwinds.pid"), "w") as handle:
        handle.write("%d\n" % os.getpid())
    sim.resume_builds()
    if ready:
        ready()
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        sim.stop()
        httpd.server_close()


def main(argv=None):
    parser = argparse.ArgumentParser(description="Hostwinds Cloud API simulator for the lab (127.0.0.1 only)")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api-key", help="the API key clients must send (or env PM_LAB_HOSTWINDS_API_KEY)")
    parser.add_argument("--api-key-file", help="read the API key from this file")
    parser.add_argument(
        "--authorized-keys-file", default=os.environ.get("PM_LAB_AUTHORIZED_KEYS"),
        help="public keys for root on every new host (default: env PM_LAB_AUTHORIZED_KEYS)",
    )
    parser.add_argument("--hosts-state-dir", help="state dir passed to create_host/destroy_host (default: --state-dir)")
    parser.add_argument("--hosts-module", default=os.environ.get("PM_LAB_HOSTS_MODULE", "tests.lab.hosts"))
    args = parser.parse_args(argv)
    api_key = args.api_key or os.environ.get("PM_LAB_HOSTWINDS_API_KEY")
    if args.api_key_file:
        with open(args.api_key_file) as handle:
            api_key = handle.read().strip()
    if not api_key:
        parser.error("an API key is required (--api-key, --api-key-file or PM_LAB_HOSTWINDS_API_KEY)")
    serve(args.state_dir, args.port, api_key, args.authorized_keys_file, args.hosts_module, args.hosts_state_dir)


# ---------------------------------------------------------------------------------------
# For tests and the lab: run the simulator as a child process and drive its lab hooks.
# ---------------------------------------------------------------------------------------
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SimulatorProcess:
    """``python -m tests.lab.hostwinds_sim`` in its own session; a context manager.

    ``stop()`` terminates every instance (so every lab host is destroyed), stops the process
    and destroys any lab host of its hosts state dir that is still listed.
    """

    def __init__(self, state_dir, api_key, authorized_keys_file, hosts_module=None, hosts_state_dir=None, port=None):
        self.state_dir = state_dir
        self.api_key = api_key
        self.authorized_keys_file = authorized_keys_file
        self.hosts_module = hosts_module or os.environ.get("PM_LAB_HOSTS_MODULE", "tests.lab.hosts")
        self.hosts_state_dir = hosts_state_dir or state_dir
        self.port = port or _free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        self.api_url = self.base + API_PATH
        self.proc = None
        self.log_path = os.path.join(state_dir, "hostwinds-sim.log")

    def start(self, timeout=30):
        os.makedirs(self.state_dir, exist_ok=True)
        key_file = os.path.join(self.state_dir, "api-key")
        with open(os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
            handle.write(self.api_key)
        cmd = [
            sys.executable, "-m", "tests.lab.hostwinds_sim", "--state-dir", self.state_dir, "--port", str(self.port),
            "--api-key-file", key_file, "--authorized-keys-file", self.authorized_keys_file,
            "--hosts-module", self.hosts_module, "--hosts-state-dir", self.hosts_state_dir,
        ]
        self._log = open(self.log_path, "a")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p)
        # a lab sweep finds every process tagged with its state dir (see tests.lab.hosts)
        env.setdefault("PM_LAB_MEMBER", os.path.realpath(self.hosts_state_dir))
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                with open(self.log_path) as handle:
                    raise RuntimeError("the Hostwinds simulator exited with %s: %s" % (self.proc.returncode, handle.read()[-2000:]))
            try:
                if self.lab("GET", "/lab/health").get("ok"):
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the Hostwinds simulator did not answer on %s within %ss" % (self.base, timeout))
            time.sleep(0.05)

    def lab(self, method, path, payload=None):
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def api(self, action, api_key=None, **fields):
        """One raw API call, independent of the client under test."""
        fields.update(action=action, API=self.api_key if api_key is None else api_key)
        request = urllib.request.Request(self.api_url, data=urlencode(fields).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def faults(self, **faults):
        return self.lab("POST", "/lab/faults", faults)

    def calls(self):
        return self.lab("GET", "/lab/calls")

    def creates(self, name):
        return self.calls()["add_instance"].get(name, 0)

    def instances(self):
        return self.lab("GET", "/lab/state")["instances"]

    def instances_named(self, name):
        return [inst for inst in self.instances() if inst["srvrname"] == name]

    def reset(self):
        return self.lab("POST", "/lab/reset", {})

    def terminate_all(self):
        for inst in self.instances():
            self.api("terminate", serviceid=inst["serviceid"])

    def clean_slate(self):
        """No instances, no faults, no counted calls: where every test starts."""
        self.faults(hold_builds=False, build_delay=0)
        self.terminate_all()
        self.reset()

    def hosts(self):
        return importlib.import_module(self.hosts_module)

    def stop(self, terminate=True):
        try:
            if terminate and self.proc and self.proc.poll() is None:
                self.faults(hold_builds=False, build_delay=0)
                self.terminate_all()
        except (OSError, ValueError) as exc:  # the hosts are destroyed below all the same
            sys.stderr.write("hostwinds simulator: terminating the instances failed: %s\n" % exc)
        finally:
            if self.proc and self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(10)
            if getattr(self, "_log", None):
                self._log.close()
            if terminate:
                hosts = self.hosts()
                for host in hosts.list_hosts(self.hosts_state_dir):
                    if HOST_NAME_RE.match(host["name"]):  # only the hosts this simulator builds
                        hosts.destroy_host(self.hosts_state_dir, host["name"])

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


@contextlib.contextmanager
def private_simulator(base, api_key, public_key_path):
    """A simulator with its own lab network under ``base`` (a pytest tmp dir), stopped and swept afterwards."""
    sim_process = SimulatorProcess(os.path.join(str(base), "sim"), api_key, public_key_path,
                                   hosts_state_dir=os.path.join(str(base), "lab"))
    try:
        yield sim_process.start()
    finally:
        sim_process.stop()
        sim_process.hosts().destroy_network(sim_process.hosts_state_dir)


if __name__ == "__main__":
    main()
