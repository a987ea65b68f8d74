# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab in one command: ``tests/lab/labctl up|down|status|env [--json] [--state-dir D]``.

``up`` starts, for one state dir (default ``/run/pm-lab``, or env ``PM_LAB_STATE``):

* OpenBao (``bao server -dev`` plus a config file declaring the file audit device
  ``<state>/openbao/audit.log``), KV v2 mounts ``vps``, ``smtp``, ``dkim``, a random root token;
* BIND9 (tests.lab.bind.Bind9) authoritative for ``example.test``, RFC 2136 updates with TSIG;
* the Hostwinds simulator (tests.lab.hostwinds_sim) on 127.0.0.1, installing the lab's
  controller key (``<state>/ssh/id_ed25519``, made at ``up``) for root on every host it builds;
* the lab network (tests.lab.hosts: bridge ``pmlab<K>``, ``198.18.K.0/24``) for the hosts.

The parts are children of one supervisor process (``python -m tests.lab.lab _serve``), which stops
them on SIGTERM. ``down`` stops the supervisor, then kills whatever is left (every process tagged
``PM_LAB_MEMBER=<state>``, every host namespace and link of the lab), and removes the state dir;
it also works after a crash and without a state file. The description (``<state>/lab.json``,
0600: it holds the lab's tokens) is what ``up --json`` and ``status --json`` print.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

if __package__ in (None, ""):  # run as a script: make `tests.lab` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tests.lab import hosts  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_STATE = "/run/pm-lab"
STATE_ENV = "PM_LAB_STATE"
MARKER = ".pm-lab-state"
KV_MOUNTS = ("vps", "smtp", "dkim")
ZONES = ("example.test",)
SSH_OPTIONS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
               "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"]


class LabError(RuntimeError):
    """The lab could not be brought up or down (one line)."""


def resolve_state_dir(state_dir=None):
    return os.path.realpath(os.path.abspath(state_dir or os.environ.get(STATE_ENV) or DEFAULT_STATE))


def _paths(state_dir):
    return {
        "lab": os.path.join(state_dir, "lab.json"),
        "lock": os.path.join(state_dir, ".lab.lock"),
        "error": os.path.join(state_dir, "logs", "supervisor.error"),
        "log": os.path.join(state_dir, "logs", "supervisor.log"),
        "key": os.path.join(state_dir, "ssh", "id_ed25519"),
        "audit": os.path.join(state_dir, "openbao", "audit.log"),
    }


def read_description(state_dir=None):
    """lab.json of ``state_dir`` with the current hosts, or None when there is none."""
    state_dir = resolve_state_dir(state_dir)
    desc = hosts._read_json(_paths(state_dir)["lab"])
    if desc:
        desc["hosts"] = hosts.list_hosts(state_dir)
    return desc


# -- up ------------------------------------------------------------------------------------------
def controller_key(path):
    """The lab's provisioning key pair (ed25519, private key 0600), made once per state dir."""
    if os.path.exists(path) and os.path.exists(path + ".pub"):
        return path
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix=".keygen-", dir=directory)
    try:
        tmp = os.path.join(tmp_dir, "key")
        hosts._run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "pm-lab-controller", "-f", tmp])
        os.chmod(tmp, 0o600)
        os.replace(tmp + ".pub", path + ".pub")
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return path


def _alive(desc):
    pid = (desc or {}).get("supervisor_pid")
    return bool(pid) and hosts.pid_alive(pid) and hosts.process_tag(pid) == desc.get("state_dir")


def sweep_orphans(keep=None):
    """Bring down labs whose owner process (a test session) died without tearing them down."""
    swept = []
    for info in hosts.lab_bridges().values():
        if info["state_dir"] == keep or not info["state_dir"]:
            continue
        if info["owner_pid"] and not hosts.pid_alive(info["owner_pid"]):
            down(info["state_dir"])
            swept.append(info["state_dir"])
    return swept


def up(state_dir=None, owner_pid=0, timeout=180):
    """Bring the lab up (idempotent) and return its description."""
    state_dir = resolve_state_dir(state_dir)
    paths = _paths(state_dir)
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    os.chmod(state_dir, 0o700)
    with open(os.path.join(state_dir, MARKER), "a"):
        pass
    with hosts._locked(paths["lock"]):
        desc = read_description(state_dir)
        if desc and _alive(desc):
            return desc
        sweep_orphans(keep=state_dir)
        if desc or hosts.tagged_pids(state_dir) or hosts.network_info(state_dir):
            _down_parts(state_dir)  # a crashed lab: clear it before starting again
        for path in (paths["error"], paths["lab"]):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        os.makedirs(os.path.dirname(paths["log"]), mode=0o700, exist_ok=True)
        controller_key(paths["key"])
        hosts.ensure_network(state_dir, owner_pid=owner_pid)
        env = dict(os.environ)
        env[hosts.MEMBER_ENV] = state_dir
        env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p)
        with open(paths["log"], "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.lab.lab", "_serve", "--state-dir", state_dir, "--owner-pid", str(owner_pid)],
                cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def ready():
            desc = hosts._read_json(paths["lab"])
            if desc and desc.get("supervisor_pid") == proc.pid:
                return desc
            if proc.poll() is not None:
                try:
                    with open(paths["error"]) as handle:
                        reason = handle.read().strip()
                except OSError:
                    reason = "exit status %s, see %s" % (proc.returncode, paths["log"])
                raise LabError("the lab did not come up: %s" % reason)
            return None

        try:
            hosts._wait_until(ready, timeout, "the lab to come up (see %s)" % paths["log"], interval=0.1)
        except BaseException:
            _down_parts(state_dir)
            raise
        return read_description(state_dir)


def _start_openbao(state_dir):
    from tests.support.openbao import OpenBao

    directory = os.path.join(state_dir, "openbao")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    audit_log = os.path.join(directory, "audit.log")
    server = OpenBao(audit_log=audit_log)
    server.token = secrets.token_urlsafe(24)
    server.start()
    server.enable_kv(*KV_MOUNTS)
    devices = server.api("GET", "/v1/sys/audit")
    if "file/" not in devices.get("data", devices):
        raise LabError("OpenBao started without the file audit device")
    return server, {
        "addr": server.addr,
        "token": server.token,
        "kv_mounts": list(KV_MOUNTS),
        "audit_log": audit_log,
        "log": server.log_path,
        "pid": server.proc.pid,
        # lab.json is 0600: fault tests seal OpenBao and unseal it again.
        "unseal_key": server.unseal_key,
    }


def serve(state_dir, owner_pid=0):
    """The supervisor: start every part, write lab.json, wait for SIGTERM, stop every part."""
    from tests.lab.bind import Bind9
    from tests.lab.hostwinds_sim import SimulatorProcess

    state_dir = resolve_state_dir(state_dir)
    paths = _paths(state_dir)
    tmp = os.path.join(state_dir, "tmp")
    os.makedirs(tmp, mode=0o700, exist_ok=True)
    os.environ["TMPDIR"] = tmp  # every temp dir of the lab lives (and dies) in the state dir
    tempfile.tempdir = tmp
    stopping = threading.Event()  # handlers, not a blocked mask: children would inherit the mask
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *_args: stopping.set())
    stops = []
    part = "the lab"
    try:
        part = "OpenBao"
        vault_server, vault = _start_openbao(state_dir)
        stops.append(vault_server.stop)
        part = "BIND9"
        bind = Bind9(os.path.join(state_dir, "bind"), zones=ZONES)
        stops.append(bind.stop)
        dns = bind.start()
        dns["server"] = dns["address"]
        part = "the Hostwinds simulator"
        key = paths["key"]
        sim = SimulatorProcess(os.path.join(state_dir, "hostwinds"), secrets.token_urlsafe(24), key + ".pub",
                               hosts_state_dir=state_dir)
        stops.append(sim.stop)
        sim.start()
        net = hosts.network_info(state_dir)
        desc = {
            "version": 1,
            "state_dir": state_dir,
            "supervisor_pid": os.getpid(),
            "owner_pid": owner_pid,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "python": sys.executable,
            "repo": REPO,
            "network": {key_: net[key_] for key_ in ("lab_id", "bridge", "gateway", "subnet", "netns_prefix")},
            "vault": vault,
            "dns": dns,
            "hostwinds": {
                "url": sim.api_url,
                "base_url": sim.base,
                "api_key": sim.api_key,
                "pid": sim.proc.pid,
                "state_dir": sim.state_dir,
                "log": sim.log_path,
            },
            "ssh": {
                "user": "root",
                "private_key": key,
                "public_key": key + ".pub",
                "public_key_text": open(key + ".pub").read().strip(),
                "options": SSH_OPTIONS,
            },
            "env": {
                "VAULT_ADDR": vault["addr"],
                "VAULT_TOKEN": vault["token"],
                "HOSTWINDS_API_URL": sim.api_url,
                "HOSTWINDS_API_KEY": sim.api_key,
                STATE_ENV: state_dir,
            },
        }
        part = "the lab description"
        hosts.write_file(paths["lab"], json.dumps(desc, indent=2) + "\n", 0o600)
        print("lab up: %s" % state_dir, flush=True)
        while not stopping.wait(3600):
            pass
        print("lab stopping", flush=True)
        return 0
    except Exception as exc:  # report one line for `up`, the whole story in the log
        message = "%s could not start: %s" % (part, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        print(message, flush=True)
        import traceback

        traceback.print_exc()
        hosts.write_file(paths["error"], message + "\n", 0o600)
        return 1
    finally:
        for stop in reversed(stops):
            try:
                stop()
            except Exception as exc:  # keep stopping the other parts
                print("while stopping: %s" % exc, flush=True)


# -- down ----------------------------------------------------------------------------------------
def _down_parts(state_dir):
    """Stop the supervisor, kill every lab process and host, remove the lab network."""
    desc = hosts._read_json(_paths(state_dir)["lab"]) or {}
    if _alive(desc):
        pid = desc["supervisor_pid"]
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            hosts._wait_until(lambda: not hosts.pid_alive(pid), 60, "the lab supervisor to stop", interval=0.1)
    hosts.sweep_processes(state_dir)  # supervisor, bao, named, simulator, host inits: whatever is left
    hosts.destroy_network(state_dir)
    left = hosts.tagged_pids(state_dir)
    if left:
        hosts.kill_and_wait(left, term_first=False)
        left = hosts.tagged_pids(state_dir)
        if left:
            raise LabError("lab processes %s do not die" % left)


def down(state_dir=None):
    """Take the lab at ``state_dir`` down completely (idempotent) and remove its state dir."""
    state_dir = resolve_state_dir(state_dir)
    if os.path.isdir(state_dir):
        with hosts._locked(_paths(state_dir)["lock"]):  # waits for an `up` under way
            _down_parts(state_dir)
    else:
        _down_parts(state_dir)
    if os.path.exists(os.path.join(state_dir, MARKER)):
        shutil.rmtree(state_dir, ignore_errors=True)
    elif os.path.isdir(state_dir):  # not made by `up`: remove only what the lab writes
        for name in ("lab.json", "network.json", ".lab.lock", ".network.lock", ".hosts.lock", "hosts", "openbao",
                     "bind", "hostwinds", "ssh", "logs", "tmp"):
            path = os.path.join(state_dir, name)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)


def down_all():
    """Sweep every lab of this machine by prefix: bridges ``pmlab*``, namespaces ``pm-lab*``, tagged processes."""
    for info in hosts.lab_bridges().values():
        if info["state_dir"]:
            down(info["state_dir"])
    hosts.sweep_processes(None)
    for info in hosts.lab_bridges().values():
        hosts.sweep_network(info["lab_id"])
    if os.path.isdir("/run/netns"):
        for netns in os.listdir("/run/netns"):
            if netns.startswith(hosts.NETNS_PREFIX):
                hosts._teardown_netns(netns)
    for ifname in os.listdir("/sys/class/net"):
        if ifname.startswith(hosts.BRIDGE_PREFIX):
            hosts._run(["ip", "link", "del", ifname], check=False)


# -- status --------------------------------------------------------------------------------------
def _http_json(url, timeout=3):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        with contextlib.suppress(ValueError):
            return json.loads(exc.read() or b"{}")
        return None
    except (OSError, ValueError):
        return None


def status(state_dir=None):
    """The description plus ``state`` (up, degraded, down) and the health of every part."""
    state_dir = resolve_state_dir(state_dir)
    desc = read_description(state_dir)
    if not desc:
        leftovers = bool(hosts.tagged_pids(state_dir) or hosts.network_info(state_dir))
        return {"state": "degraded" if leftovers else "down", "state_dir": state_dir, "parts": {}, "hosts": []}
    health = _http_json(desc["vault"]["addr"] + "/v1/sys/health") or {}
    parts = {
        "supervisor": _alive(desc),
        "vault": bool(health.get("initialized")) and health.get("sealed") is False,
        "dns": _soa_answers(desc["dns"]),
        "hostwinds": bool((_http_json(desc["hostwinds"]["base_url"] + "/lab/health") or {}).get("ok")),
        "network": os.path.isdir("/sys/class/net/%s" % desc["network"]["bridge"]),
    }
    desc["parts"] = parts
    desc["state"] = "up" if all(parts.values()) else "degraded"
    return desc


def _soa_answers(dns_info):
    import dns.exception
    import dns.message
    import dns.query
    import dns.rcode
    import dns.rdatatype

    query = dns.message.make_query(dns_info["zones"][0] + ".", dns.rdatatype.SOA)
    try:
        response = dns.query.udp(query, dns_info["address"], port=dns_info["port"], timeout=2)
    except (OSError, dns.exception.DNSException):
        return False
    return response.rcode() == dns.rcode.NOERROR and bool(response.answer)


# -- command line ----------------------------------------------------------------------------------
def _summary(desc):
    lines = ["lab %s: %s" % (desc.get("state", "up"), desc["state_dir"])]
    if "vault" not in desc:
        return "\n".join(lines)
    dns = desc["dns"]
    lines += [
        "  vault      %s  (KV v2: %s; root token in %s)" % (
            desc["vault"]["addr"], ", ".join(desc["vault"]["kv_mounts"]), os.path.join(desc["state_dir"], "lab.json")),
        "  audit log  %s" % desc["vault"]["audit_log"],
        "  dns        %s port %s  zones %s  TSIG %s (%s)" % (dns["address"], dns["port"], ", ".join(dns["zones"]),
                                                             dns["tsig_name"], dns["tsig_algorithm"]),
        "  hostwinds  %s" % desc["hostwinds"]["url"],
        "  network    %s %s (hosts from %s)" % (
            desc["network"]["bridge"], desc["network"]["subnet"], desc["network"]["gateway"]),
        "  ssh key    %s  (root@<host ip>)" % desc["ssh"]["private_key"],
    ]
    for name, ok in sorted(desc.get("parts", {}).items()):
        lines.append("  %-10s %s" % (name, "ok" if ok else "NOT OK"))
    lab_hosts = desc.get("hosts") or []
    lines.append("  hosts      %s" % (", ".join("%s %s%s" % (h["name"], h["ip"], "" if h["running"] else " (stopped)")
                                                for h in lab_hosts) or "none"))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="labctl", description="the penguinmails lab: OpenBao, BIND9, Hostwinds simulator, VPS hosts")
    parser.add_argument("--state-dir", help="default: env %s or %s" % (STATE_ENV, DEFAULT_STATE))
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="bring the lab up (prints the running lab if it is up already)")
    p_up.add_argument("--json", action="store_true", help="print the lab description as JSON (it holds the lab's tokens)")
    p_up.add_argument("--owner-pid", type=int, default=0, help="tie the lab to this process: a later `up` sweeps it once it died")
    p_down = sub.add_parser("down", help="stop everything of the lab and remove its state dir")
    p_down.add_argument("--all", action="store_true", help="sweep every lab of this machine (pmlab*/pm-lab* prefix)")
    p_status = sub.add_parser("status", help="health of every part and the hosts")
    p_status.add_argument("--json", action="store_true")
    sub.add_parser("env", help="shell exports for the lab (VAULT_ADDR, VAULT_TOKEN, HOSTWINDS_API_URL, ...)")
    p_serve = sub.add_parser("_serve", help=argparse.SUPPRESS)
    p_serve.add_argument("--owner-pid", type=int, default=0)
    for sub_parser in (p_up, p_down, p_status, p_serve):
        sub_parser.add_argument("--state-dir", dest="sub_state_dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    state_dir = resolve_state_dir(getattr(args, "sub_state_dir", None) or args.state_dir)
    if os.geteuid() != 0:
        print("labctl: the lab needs root (network namespaces, mounts)", file=sys.stderr)
        return 2
    try:
        if args.command == "_serve":
            return serve(state_dir, args.owner_pid)
        if args.command == "up":
            desc = up(state_dir, owner_pid=args.owner_pid)
            print(json.dumps(desc, indent=2) if args.json else _summary(status(state_dir)))
        elif args.command == "down":
            if args.all:
                down_all()
            down(state_dir)
            print("lab down: %s" % state_dir)
        elif args.command == "status":
            desc = status(state_dir)
            print(json.dumps(desc, indent=2) if args.json else _summary(desc))
            return 0 if desc["state"] == "up" else 3
        elif args.command == "env":
            desc = read_description(state_dir)
            if not desc:
                raise LabError("the lab at %s is not up" % state_dir)
            for key, value in sorted(desc["env"].items()):
                print("export %s=%s" % (key, shlex.quote(str(value))))
    except (LabError, hosts.LabHostError, OSError, ValueError) as exc:
        print("labctl: %s" % exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
