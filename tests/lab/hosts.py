# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Real lab VPS hosts: a network namespace, private mounts and a real OpenSSH sshd each.

    host = create_host(state_dir, "vps1", [public_key])   # {"name", "ip", "netns", "root", "sshd_pid", ...}
    host_exec(state_dir, "vps1", ["useradd", "-m", "bob"], check=True)
    destroy_host(state_dir, "vps1")                        # idempotent
    destroy_network(state_dir)                             # every host of the state dir, then the bridge

A lab *network* belongs to one state dir: a bridge ``pmlab<K>`` on the controller holding
``198.18.K.1/24`` (K is the lowest index free on this machine, chosen under a machine-wide lock,
so several labs can run side by side; the bridge's alias records the state dir). A *host* is

* a network namespace ``pm-lab<K>-<name>`` with ``eth0`` = ``198.18.K.N/24`` (a veth into the
  bridge, default route via ``198.18.K.1``) and its own loopback;
* a PID, UTS, IPC and private mount namespace whose init (PID 1, a tiny reaper) holds it, so
  killing that init ends every process of the host. Inside: ``/etc`` is an overlay on the real
  ``/etc`` (``useradd`` and config edits stay in the host), and ``/etc/ssh``, ``/root``,
  ``/home``, ``/mailu``, ``/var/log``, ``/var/tmp``, ``/tmp`` are bind mounts of the host's own
  directories below ``<root>/fs`` (``root`` in the host dict is ``<state_dir>/hosts/<name>``),
  ``/run`` is a private tmpfs;
* a real ``/usr/sbin/sshd`` on port 22 with its own host keys: root login by key only, no PAM,
  LogLevel VERBOSE into the host's ``/var/log/sshd.log`` (``<root>/fs/var/log/sshd.log`` on the
  controller).

Every process a lab starts carries ``PM_LAB_MEMBER=<state_dir>`` in its environment so that a
sweep can find what a crash left behind (see :func:`sweep_processes`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

from tests.support.wait import wait_until as _wait_until

MEMBER_ENV = "PM_LAB_MEMBER"
BRIDGE_PREFIX = "pmlab"
NETNS_PREFIX = "pm-lab"
NET_LOCK = "/run/lock/pm-lab-net.lock"
MAX_LABS = 256  # 198.18.0.0/24 .. 198.18.255.0/24
FIRST_HOST, LAST_HOST = 2, 254
HOST_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
PRIVATE_DIRS = ("root", "home", "mailu", "var/log", "var/tmp", "tmp")
SSHD = "/usr/sbin/sshd"
HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SSHD_CONFIG = """\
# penguinmails lab host {name}: root by key only
Include /etc/ssh/sshd_config.d/*.conf
Port 22
HostKey /etc/ssh/ssh_host_ed25519_key
HostKey /etc/ssh/ssh_host_ecdsa_key
PermitRootLogin prohibit-password
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes yes
UseDNS no
PidFile /run/sshd.pid
LogLevel VERBOSE
MaxStartups 64:30:128
AcceptEnv LANG LC_*
PrintMotd no
Subsystem sftp /usr/lib/openssh/sftp-server
"""
# PID 1 of a host: reaps every orphan, exits on SIGTERM/SIGINT (the kernel then kills the rest).
REAPER = (
    "import os,signal\n"
    "S={signal.SIGCHLD,signal.SIGTERM,signal.SIGINT}\n"
    "signal.pthread_sigmask(signal.SIG_BLOCK,S)\n"
    "while True:\n"
    " try:\n"
    "  while os.waitpid(-1,os.WNOHANG)[0]>0: pass\n"
    " except ChildProcessError: pass\n"
    " if signal.sigwait(S)!=signal.SIGCHLD: os._exit(0)\n"
)

# Popen objects of the launchers this process started, so destroy_host can reap them.
_LAUNCHED = {}


class LabHostError(RuntimeError):
    """A lab host could not be created or driven (one line, no secrets)."""


# -- small helpers ---------------------------------------------------------------------------
def _run(argv, check=True):
    proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    if check and proc.returncode != 0:
        raise LabHostError("%s failed: %s" % (" ".join(argv), (proc.stderr or proc.stdout).strip()[-500:]))
    return proc


@contextlib.contextmanager
def _locked(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_file(path, text, mode=0o644):
    """Write ``text`` atomically (temp file in the same directory + os.replace) with ``mode``."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _read_json(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def _state_dir(state_dir):
    return os.path.realpath(os.path.abspath(state_dir))


def _hosts_dir(state_dir):
    return os.path.join(_state_dir(state_dir), "hosts")


def _host_dir(state_dir, name):
    return os.path.join(_hosts_dir(state_dir), name)


def _check_name(name):
    if not isinstance(name, str) or not HOST_NAME_RE.match(name):
        raise ValueError("invalid lab host name %r: letters, digits, '.', '_', '-', at most 63" % (name,))


# -- processes --------------------------------------------------------------------------------
def pid_alive(pid):
    if not pid:
        return False
    try:
        with open("/proc/%d/stat" % pid) as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def process_tag(pid):
    """The PM_LAB_MEMBER value of a process, or None."""
    try:
        with open("/proc/%d/environ" % pid, "rb") as handle:
            environ = handle.read().split(b"\0")
    except OSError:
        return None
    prefix = MEMBER_ENV.encode() + b"="
    for item in environ:
        if item.startswith(prefix):
            return item[len(prefix):].decode(errors="replace")
    return None


def _all_pids():
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _protected_pids():
    """This process and its ancestors: never killed by a sweep."""
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            with open("/proc/%d/stat" % pid) as handle:
                pid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return pids


def tagged_pids(state_dir=None):
    """Live processes tagged as members of the lab at ``state_dir`` (of any lab when None)."""
    want = _state_dir(state_dir) if state_dir else None
    skip = _protected_pids()
    found = []
    for pid in _all_pids():
        if pid in skip:
            continue
        tag = process_tag(pid)
        if tag is not None and (want is None or tag == want) and pid_alive(pid):
            found.append(pid)
    return found


def _netns_inode(netns):
    try:
        return os.stat(os.path.join("/run/netns", netns)).st_ino
    except OSError:
        return None


def netns_pids(netns):
    """Live processes whose network namespace is the named one (like `ip netns pids`)."""
    inode = _netns_inode(netns)
    if inode is None:
        return []
    found = []
    for pid in _all_pids():
        try:
            if os.stat("/proc/%d/ns/net" % pid).st_ino == inode and pid_alive(pid):
                found.append(pid)
        except OSError:
            continue
    return found


def kill_and_wait(pids, timeout=10, term_first=True):
    """SIGTERM (optionally) then SIGKILL ``pids``; wait until none is alive. Returns the survivors."""
    pids = [pid for pid in pids if pid_alive(pid)]
    if not pids:
        return []
    if term_first:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            _wait_until(lambda: not any(pid_alive(p) for p in pids), min(timeout, 5), "processes to stop")
    for pid in pids:
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        _wait_until(lambda: not any(pid_alive(p) for p in pids), timeout, "processes to die")
    _reap_children()
    return [pid for pid in pids if pid_alive(pid)]


def _reap_children():
    for key, proc in list(_LAUNCHED.items()):
        if proc.poll() is not None:
            _LAUNCHED.pop(key, None)


def sweep_processes(state_dir=None):
    """Kill every process tagged for ``state_dir`` (every lab when None). Returns the pids killed."""
    pids = tagged_pids(state_dir)
    kill_and_wait(pids)
    return pids


def _children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as handle:
            return [int(item) for item in handle.read().split()]
    except (OSError, ValueError):
        return []


def _comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as handle:
            return handle.read().strip()
    except OSError:
        return ""


# -- the lab network ----------------------------------------------------------------------------
def _bridges():
    """{index: (owner pid, state dir)} of the lab bridges on this machine (from their alias)."""
    found = {}
    for ifname in os.listdir("/sys/class/net"):
        match = re.match(r"^%s(\d+)$" % BRIDGE_PREFIX, ifname)
        if match and os.path.isdir("/sys/class/net/%s/bridge" % ifname):
            try:
                with open("/sys/class/net/%s/ifalias" % ifname) as handle:
                    owner, _sep, path = handle.read().strip().partition(":")
                owner = int(owner)
            except (OSError, ValueError):
                owner, path = 0, ""
            found[int(match.group(1))] = (owner, path)
    return found


def lab_bridges():
    """{bridge name: {"lab_id", "state_dir", "owner_pid"}} for every lab bridge of this machine.

    ``owner_pid`` is the process the lab lives for (0: until ``down``); a lab whose owner died is an orphan.
    """
    return {
        "%s%d" % (BRIDGE_PREFIX, index): {"lab_id": index, "state_dir": path, "owner_pid": owner}
        for index, (owner, path) in _bridges().items()
    }


def network_info(state_dir):
    """The network of ``state_dir`` (dict) or None."""
    return _read_json(os.path.join(_state_dir(state_dir), "network.json"))


def ensure_network(state_dir, owner_pid=0):
    """Create (once) the bridge of the lab at ``state_dir``; return its description.

    ``owner_pid``: the process the lab lives for (a test session), 0 when it lives until ``down``.
    """
    state_dir = _state_dir(state_dir)
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    path = os.path.join(state_dir, "network.json")
    with _locked(os.path.join(state_dir, ".network.lock")):
        net = _read_json(path)
        if net and os.path.isdir("/sys/class/net/%s" % net["bridge"]):
            return net
        with _locked(NET_LOCK):
            used = _bridges()
            mine = [index for index, (_owner, path) in used.items() if path == state_dir]
            free = [index for index in range(MAX_LABS) if index not in used]
            if mine:
                index = mine[0]
            elif free:
                index = free[0]
            else:
                raise LabHostError("no free lab network: %d labs exist" % MAX_LABS)
            bridge = "%s%d" % (BRIDGE_PREFIX, index)
            gateway = "198.18.%d.1" % index
            if not mine:
                _run(["ip", "link", "add", bridge, "type", "bridge"])
                _run(["ip", "link", "set", "dev", bridge, "alias", "%d:%s" % (owner_pid, state_dir)])
            _run(["ip", "addr", "replace", "%s/24" % gateway, "dev", bridge])
            _run(["ip", "link", "set", "dev", bridge, "up"])
        net = {
            "lab_id": index,
            "bridge": bridge,
            "gateway": gateway,
            "subnet": "198.18.%d.0/24" % index,
            "prefixlen": 24,
            "netns_prefix": "%s%d-" % (NETNS_PREFIX, index),
            "next_host": (net or {}).get("next_host", FIRST_HOST),
            "state_dir": state_dir,
            "owner_pid": owner_pid,
        }
        write_file(path, json.dumps(net, indent=2) + "\n", 0o600)
        return net


def _allocate_address(state_dir, net, name):
    """Reserve the next free host number (not reusing a recent one) and the host dir. Under the hosts lock."""
    used = set()
    for host in _host_records(state_dir):
        used.add(host["host_number"])
    number = net.get("next_host", FIRST_HOST)
    for _unused in range(LAST_HOST - FIRST_HOST + 1):
        if number > LAST_HOST or number < FIRST_HOST:
            number = FIRST_HOST
        if number not in used:
            break
        number += 1
    else:
        raise LabHostError("the lab network %s is full" % net["subnet"])
    net["next_host"] = number + 1
    write_file(os.path.join(_state_dir(state_dir), "network.json"), json.dumps(net, indent=2) + "\n", 0o600)
    return number


# -- hosts -----------------------------------------------------------------------------------
def _host_records(state_dir):
    records = []
    directory = _hosts_dir(state_dir)
    if not os.path.isdir(directory):
        return records
    for name in sorted(os.listdir(directory)):
        record = _read_json(os.path.join(directory, name, "host.json"))
        if record:
            records.append(record)
    return records


def _public(record):
    keys = ("name", "ip", "netns", "root", "sshd_pid", "init_pid", "sshd_log", "gateway", "lab_id", "status")
    host = {key: record.get(key) for key in keys}
    host["running"] = _init_matches(record)
    return host


def _init_matches(record):
    """True when the recorded init pid is alive and still lives in the host's network namespace."""
    pid, inode = record.get("init_pid"), _netns_inode(record.get("netns", ""))
    if not pid or inode is None or not pid_alive(pid):
        return False
    try:
        return os.stat("/proc/%d/ns/net" % pid).st_ino == inode
    except OSError:
        return False


def get_host(state_dir, name):
    _check_name(name)
    record = _read_json(os.path.join(_host_dir(state_dir, name), "host.json"))
    if not record:
        raise LabHostError("no lab host %s in %s" % (name, _state_dir(state_dir)))
    return _public(record)


def list_hosts(state_dir):
    return [_public(record) for record in _host_records(state_dir)]


def _authorized_keys_text(authorized_keys):
    if isinstance(authorized_keys, str):
        authorized_keys = authorized_keys.splitlines()
    lines = [line.strip() for line in authorized_keys or () if line and line.strip()]
    if not lines:
        raise ValueError("a lab host needs at least one authorized key for root")
    for line in lines:
        if "\n" in line or "PRIVATE KEY" in line:
            raise ValueError("authorized_keys takes OpenSSH public key lines only")
    return "\n".join(lines) + "\n"


def _shared_paths():
    """Controller paths a host must see where the controller sees them, with the private dir that would hide them.

    The lab's Mailu host (tests/lab/mail) runs inside the hosts from this checkout, with Rspamd's cache in
    its .build. When the checkout or the venv lives below one of PRIVATE_DIRS (a clone in /tmp, a venv in
    /root), the host's own dir would hide them.
    """
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    shared = []
    for path in (repo, sys.prefix):
        real = os.path.realpath(path)
        if any(real == kept or real.startswith(kept + "/") for kept, _sub in shared):
            continue
        for sub in PRIVATE_DIRS:
            if real.startswith("/%s/" % sub):
                shared.append((real, sub))
                break
    return shared


def _prepare_fs(hdir, name, ip, keys_text):
    fs = os.path.join(hdir, "fs")
    for sub in PRIVATE_DIRS + ("etc/ssh", "etc/ssh/sshd_config.d"):
        os.makedirs(os.path.join(fs, sub), exist_ok=True)
    os.chmod(os.path.join(fs, "root"), 0o700)
    for sub in ("tmp", "var/tmp"):
        os.chmod(os.path.join(fs, sub), 0o1777)
    for sub in ("upper", "work"):
        os.makedirs(os.path.join(hdir, "overlay", sub), exist_ok=True)
    ssh_dir = os.path.join(fs, "etc", "ssh")
    for key_type in ("ed25519", "ecdsa"):
        key = os.path.join(ssh_dir, "ssh_host_%s_key" % key_type)
        _run(["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", "root@%s" % name, "-f", key])
    write_file(os.path.join(ssh_dir, "sshd_config"), SSHD_CONFIG.format(name=name), 0o644)
    root_ssh = os.path.join(fs, "root", ".ssh")
    os.makedirs(root_ssh, mode=0o700, exist_ok=True)
    os.chmod(root_ssh, 0o700)
    write_file(os.path.join(root_ssh, "authorized_keys"), keys_text, 0o600)
    reaper = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
    q = shlex.quote
    lines = ["set -eu", "exec </dev/null"]
    lines.append("mount -t overlay pm-lab-etc -o lowerdir=/etc,upperdir=%s,workdir=%s /etc"
                 % (q(os.path.join(hdir, "overlay", "upper")), q(os.path.join(hdir, "overlay", "work"))))
    lines.append("mount --bind %s /etc/ssh" % q(ssh_dir))
    for path, _sub in _shared_paths():  # visible inside the private dir, at the same path
        target = os.path.join(fs, path.lstrip("/"))
        os.makedirs(target, exist_ok=True)
        lines.append("mount --bind %s %s" % (q(path), q(target)))
    for sub in PRIVATE_DIRS:
        lines.append("mount --rbind %s /%s" % (q(os.path.join(fs, sub)), sub))
    lines += [
        "mount -t tmpfs -o mode=0755,size=32m pm-lab-run /run",
        "mkdir -p /run/sshd /run/lock",
        "hostname %s" % q(name),
        "printf '%%s\\t%%s\\n' %s %s >> /etc/hosts" % (q(ip), q(name)),
        "cat > /run/pm-lab-init <<'PM_LAB_EOF'\n%sPM_LAB_EOF" % REAPER,
        "%s -D -E /var/log/sshd.log &" % SSHD,
        "exec %s -I -S /run/pm-lab-init" % q(reaper),
    ]
    init = os.path.join(hdir, "init.sh")
    write_file(init, "\n".join(lines) + "\n", 0o700)
    return init


def _ssh_banner(ip, port=22):
    try:
        with socket.create_connection((ip, port), timeout=1) as sock:
            sock.settimeout(2)
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def create_host(state_dir, name, authorized_keys, timeout=60):
    """Create and start the lab host ``name``; return its description once sshd answers."""
    _check_name(name)
    keys_text = _authorized_keys_text(authorized_keys)
    state_dir = _state_dir(state_dir)
    net = ensure_network(state_dir)
    hdir = _host_dir(state_dir, name)
    with _locked(os.path.join(state_dir, ".hosts.lock")):
        if os.path.exists(os.path.join(hdir, "host.json")):
            raise LabHostError("lab host %s already exists in %s" % (name, state_dir))
        net = network_info(state_dir) or net
        number = _allocate_address(state_dir, net, name)
        os.makedirs(hdir, mode=0o700, exist_ok=True)
        index = net["lab_id"]
        record = {
            "name": name,
            "lab_id": index,
            "host_number": number,
            "ip": "198.18.%d.%d" % (index, number),
            "gateway": net["gateway"],
            "netns": "%s%d-%s" % (NETNS_PREFIX, index, name),
            "veth": "%s%dh%d" % (BRIDGE_PREFIX, index, number),
            "bridge": net["bridge"],
            "root": hdir,
            "sshd_log": os.path.join(hdir, "fs", "var", "log", "sshd.log"),
            "state_dir": state_dir,
            "status": "creating",
            "init_pid": None,
            "launcher_pid": None,
            "sshd_pid": None,
        }
        write_file(os.path.join(hdir, "host.json"), json.dumps(record, indent=2) + "\n", 0o600)
    try:
        _start_host(state_dir, record, keys_text, timeout)
    except BaseException as exc:
        with contextlib.suppress(Exception):
            destroy_host(state_dir, name)
        if isinstance(exc, (LabHostError, TimeoutError)):
            raise LabHostError("lab host %s did not start: %s" % (name, exc)) from None
        raise
    return _public(record)


def _start_host(state_dir, record, keys_text, timeout):
    hdir, netns, name = record["root"], record["netns"], record["name"]
    init = _prepare_fs(hdir, name, record["ip"], keys_text)
    os.makedirs("/mailu", exist_ok=True)  # mount point for the hosts' private /mailu
    peer = "%s%dp%d" % (BRIDGE_PREFIX, record["lab_id"], record["host_number"])
    _run(["ip", "netns", "add", netns])
    _run(["ip", "link", "add", record["veth"], "type", "veth", "peer", "name", peer])
    _run(["ip", "link", "set", "dev", peer, "netns", netns])
    _run(["ip", "link", "set", "dev", record["veth"], "master", record["bridge"], "up"])
    for argv in (
        ["link", "set", "dev", "lo", "up"],
        ["link", "set", "dev", peer, "name", "eth0"],
        ["addr", "add", "%s/24" % record["ip"], "dev", "eth0"],
        ["link", "set", "dev", "eth0", "up"],
        ["route", "add", "default", "via", record["gateway"]],
    ):
        _run(["ip", "-n", netns] + argv)
    env = {"PATH": HOST_PATH, "HOME": "/root", "LANG": "C.UTF-8", MEMBER_ENV: state_dir}
    log = open(os.path.join(hdir, "init.log"), "ab")
    try:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, "unshare", "--mount", "--uts", "--ipc", "--pid", "--fork",
             "--mount-proc", "--kill-child", "--propagation", "private", "/bin/sh", init],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd="/",
            start_new_session=True,
        )
    finally:
        log.close()
    _LAUNCHED[(state_dir, name)] = proc
    record["launcher_pid"] = proc.pid

    def started():
        if proc.poll() is not None:
            with open(os.path.join(hdir, "init.log"), errors="replace") as handle:
                tail = handle.read()[-600:].strip().replace("\n", " | ")
            raise LabHostError("the host init exited with %s: %s" % (proc.returncode, tail))
        children = _children(proc.pid)
        if not children:
            return False
        record["init_pid"] = children[0]
        sshd = [pid for pid in _children(children[0]) if _comm(pid) == "sshd"]
        if not sshd or not _ssh_banner(record["ip"]):
            return False
        record["sshd_pid"] = sshd[0]
        return True

    _wait_until(started, timeout, "sshd of lab host %s on %s" % (name, record["ip"]))
    record["status"] = "running"
    write_file(os.path.join(hdir, "host.json"), json.dumps(record, indent=2) + "\n", 0o600)


def destroy_host(state_dir, name):
    """Kill every process of the host, remove its namespace, veth and files. Idempotent."""
    _check_name(name)
    state_dir = _state_dir(state_dir)
    hdir = _host_dir(state_dir, name)
    record = _read_json(os.path.join(hdir, "host.json"))
    if record is None:
        net = network_info(state_dir)
        if net is None:
            shutil.rmtree(hdir, ignore_errors=True)
            return
        record = {"netns": "%s%d-%s" % (NETNS_PREFIX, net["lab_id"], name), "veth": None}
    _teardown_netns(record["netns"], record.get("init_pid") if _init_matches(record) else None)
    if record.get("veth") and os.path.isdir("/sys/class/net/%s" % record["veth"]):
        _run(["ip", "link", "del", record["veth"]], check=False)
    proc = _LAUNCHED.pop((state_dir, name), None)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
    shutil.rmtree(hdir, ignore_errors=True)


def _teardown_netns(netns, init_pid=None):
    if init_pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(init_pid, signal.SIGKILL)  # the kernel kills every process of its PID namespace
    survivors = kill_and_wait(netns_pids(netns), term_first=False)
    if survivors:
        raise LabHostError("processes %s of %s do not die" % (survivors, netns))
    if os.path.exists(os.path.join("/run/netns", netns)):
        _run(["ip", "netns", "del", netns], check=False)


def destroy_network(state_dir):
    """Destroy every host of ``state_dir``, any leftover namespace or veth of its lab, and its bridge."""
    state_dir = _state_dir(state_dir)
    for record in _host_records(state_dir):
        destroy_host(state_dir, record["name"])
    net = network_info(state_dir)
    indexes = {index for index, (_owner, path) in _bridges().items() if path == state_dir}
    if net:
        indexes.add(net["lab_id"])
    for index in indexes:
        sweep_network(index)
    shutil.rmtree(_hosts_dir(state_dir), ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(state_dir, "network.json"))


def sweep_network(index):
    """Remove the namespaces (and their processes), veths and bridge of lab network ``index``."""
    prefix = "%s%d-" % (NETNS_PREFIX, index)
    if os.path.isdir("/run/netns"):
        for netns in os.listdir("/run/netns"):
            if netns.startswith(prefix):
                _teardown_netns(netns)
    veth = re.compile(r"^%s%d[hp]\d+$" % (BRIDGE_PREFIX, index))
    for ifname in os.listdir("/sys/class/net"):
        if veth.match(ifname):
            _run(["ip", "link", "del", ifname], check=False)
    bridge = "%s%d" % (BRIDGE_PREFIX, index)
    if os.path.isdir("/sys/class/net/%s" % bridge):
        _run(["ip", "link", "del", bridge], check=False)


# -- running commands in a host ---------------------------------------------------------------
def host_command(state_dir, name, cwd="/"):
    """The argv prefix that runs a command inside the host (all its namespaces, as root)."""
    record = _read_json(os.path.join(_host_dir(state_dir, name), "host.json"))
    if not record or not _init_matches(record):
        raise LabHostError("lab host %s is not running" % name)
    return ["nsenter", "--target", str(record["init_pid"]), "--mount", "--uts", "--ipc", "--net", "--pid",
            "--wd=%s" % cwd, "--"]


def _host_kwargs(kwargs):
    cwd = kwargs.pop("cwd", None) or "/"
    if kwargs.get("env") is None:
        kwargs["env"] = {"PATH": HOST_PATH, "HOME": "/root", "LANG": "C.UTF-8"}
    return cwd, kwargs


def host_exec(state_dir, name, argv, **kwargs):
    """subprocess.run ``argv`` inside the host; keyword arguments go to subprocess.run.

    ``cwd`` is a path inside the host (default ``/``); ``env`` defaults to a clean root environment.
    """
    cwd, kwargs = _host_kwargs(kwargs)
    kwargs.setdefault("check", False)
    return subprocess.run(host_command(state_dir, name, cwd) + list(argv), **kwargs)  # pylint: disable=subprocess-run-check


def host_popen(state_dir, name, argv, **kwargs):
    """subprocess.Popen ``argv`` inside the host (for daemons); it dies with the host at the latest."""
    cwd, kwargs = _host_kwargs(kwargs)
    return subprocess.Popen(host_command(state_dir, name, cwd) + list(argv), **kwargs)
