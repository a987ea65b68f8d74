# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab itself, against its real parts: lab hosts (netns + sshd), labctl up/status/down, crash cleanup."""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import urllib.request
from urllib.parse import urlencode

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests.lab import hosts
from tests.lab.fixtures import make_state_dir
from tests.support.ansible_run import run_playbook
from tests.support.openbao import wait_until

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LABCTL = os.path.join(REPO, "tests", "lab", "labctl")


def labctl(state_dir, *args, check=True):
    proc = subprocess.run([LABCTL, "--state-dir", state_dir] + list(args), capture_output=True, text=True, timeout=300, check=False)
    if check:
        assert proc.returncode == 0, "labctl %s failed (%s): %s %s" % (args, proc.returncode, proc.stdout, proc.stderr)
    return proc


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def lab_leftovers(state_dir, lab_id, pids=()):
    """Everything of one lab still on the machine: processes, namespaces, links, mounts, files."""
    left = {}
    procs = [pid for pid in hosts._all_pids() if hosts.pid_alive(pid) and pid != os.getpid()
             and (hosts.process_tag(pid) == state_dir or state_dir in cmdline(pid))]
    procs += [pid for pid in pids if pid and hosts.pid_alive(pid)]
    if procs:
        left["processes"] = sorted({"%d %s" % (pid, cmdline(pid)) for pid in procs})
    bridges = hosts.lab_bridges()
    if any(info["state_dir"] == state_dir for info in bridges.values()):
        left["bridge"] = bridges
    bridge = "%s%d" % (hosts.BRIDGE_PREFIX, lab_id)
    if bridge not in bridges:  # else the index went to a newer lab: its namespaces and links are not ours
        netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
        prefix = "%s%d-" % (hosts.NETNS_PREFIX, lab_id)
        if any(line.startswith(prefix) for line in netns.splitlines()):
            left["netns"] = netns
        links = [ifname for ifname in os.listdir("/sys/class/net") if re.match(r"^%s[hp]\d+$" % bridge, ifname)]
        if links:
            left["links"] = links
    with open("/proc/mounts") as handle:
        mounts = [line for line in handle if state_dir in line]
    if mounts:
        left["mounts"] = mounts
    if os.path.exists(state_dir):
        left["state_dir"] = os.listdir(state_dir)
    return left


def ssh(key, ip, command="true", extra=()):
    argv = ["ssh", "-i", key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10"] + list(extra)
    return subprocess.run(argv + ["root@%s" % ip, command], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, check=False)


def keypair(directory, name):
    path = os.path.join(directory, name)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", path], check=True)
    return path


# -- lab hosts -------------------------------------------------------------------------------------
def test_lab_host_root_login_by_key_only(lab_host, tmp_path):
    result = lab_host.ssh("hostname; id -u; ip -4 -o addr show dev eth0")
    assert result.returncode == 0, result.stderr
    name, uid, addr = result.stdout.splitlines()
    assert (name, uid) == ("vps1", "0")
    assert " %s/24 " % lab_host["ip"] in addr
    assert lab_host["ip"].startswith("198.18.") and lab_host["netns"].startswith("pm-lab")
    # the effective sshd configuration inside the host
    effective = lab_host.exec(["/usr/sbin/sshd", "-T"], check=True).stdout.lower().splitlines()
    for setting in ("permitrootlogin without-password", "passwordauthentication no",
                    "kbdinteractiveauthentication no", "usepam no", "loglevel verbose"):
        assert setting in effective, setting
    # a key that is not authorized, and password authentication, are refused
    stranger = keypair(str(tmp_path), "stranger")
    refused = ssh(stranger, lab_host["ip"])
    assert refused.returncode == 255 and "Permission denied" in refused.stderr
    by_password = ssh(stranger, lab_host["ip"], extra=["-o", "PreferredAuthentications=password,keyboard-interactive"])
    assert by_password.returncode == 255 and "Permission denied" in by_password.stderr
    # the host's own sshd log (inside: /var/log/sshd.log) records both, at VERBOSE
    log = open(lab_host.path("/var/log/sshd.log")).read()
    assert "Accepted publickey for root from %s" % lab_host["gateway"] in log
    assert "Failed publickey for root" in log or "Connection closed by authenticating user root" in log
    assert lab_host["sshd_log"] == lab_host.path("/var/log/sshd.log")


def test_lab_host_honours_expiry_time(lab_host, tmp_path):
    expired = keypair(str(tmp_path), "expired")
    authorized = lab_host.path("/root/.ssh/authorized_keys")
    with open(authorized, "a") as handle:
        handle.write('expiry-time="20200101Z" %s\n' % open(expired + ".pub").read().strip())
    refused = ssh(expired, lab_host["ip"])
    assert refused.returncode == 255 and "Permission denied" in refused.stderr
    assert "Refused by key options" in open(lab_host.path("/var/log/sshd.log")).read()
    assert lab_host.ssh("true").returncode == 0  # the unexpired key still logs in


def test_lab_host_private_files_and_users(lab_host):
    created = lab_host.exec(["sh", "-c", "useradd -m -s /bin/bash pmlabuser && id -u pmlabuser && ls -d /home/pmlabuser"],
                            check=True)
    assert created.stdout.splitlines()[1] == "/home/pmlabuser"
    with pytest.raises(KeyError):
        pwd.getpwnam("pmlabuser")  # the controller has no such user
    assert not os.path.exists("/home/pmlabuser")
    assert os.path.isdir(lab_host.path("/home/pmlabuser"))
    # /etc changes stay in the host, the rest of /etc is the real one
    assert lab_host.exec(["grep", "-c", "^pmlabuser:", "/etc/passwd"]).stdout.strip() == "1"
    with open("/etc/passwd") as handle:
        assert "pmlabuser" not in handle.read()
    assert lab_host.exec(["test", "-x", "/usr/sbin/sshd"]).returncode == 0
    # /mailu, /root, /tmp are the host's own
    lab_host.exec(["sh", "-c", "echo secret-of-vps1 > /mailu/marker && echo x > /tmp/pm-lab-marker"], check=True)
    assert open(lab_host.path("/mailu/marker")).read() == "secret-of-vps1\n"
    assert not os.path.exists("/mailu/marker") and not os.path.exists("/tmp/pm-lab-marker")
    # only the host's processes are visible inside, the host's sshd is PID-namespaced
    ps = lab_host.exec(["ps", "-eo", "pid=,comm="], check=True).stdout
    assert {line.split()[1] for line in ps.splitlines()} <= {"python3", "sshd", "ps"}
    assert hosts.pid_alive(lab_host["sshd_pid"]) and cmdline(lab_host["sshd_pid"]).startswith("sshd:")


def test_two_hosts_created_concurrently_are_isolated_and_destroyed():
    state_dir = make_state_dir()
    try:
        key = keypair(state_dir, "key")
        pub = open(key + ".pub").read()
        made, errors = {}, []

        def create(name):
            try:
                made[name] = hosts.create_host(state_dir, name, [pub])
            except Exception as exc:  # collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=create, args=("node%d" % i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not errors, errors
        assert len({host["ip"] for host in made.values()}) == 4
        assert len({host["netns"] for host in made.values()}) == 4
        a, b = made["node0"], made["node1"]
        assert ssh(key, a["ip"], "echo only-a > /root/a-file; echo mail-a > /mailu/a").returncode == 0
        seen = ssh(key, b["ip"], "hostname; ls /root /mailu")
        assert seen.returncode == 0 and seen.stdout.split()[0] == "node1"
        assert "a-file" not in seen.stdout and "\na\n" not in seen.stdout
        # the hosts reach each other over the lab bridge
        reach = hosts.host_exec(state_dir, "node1", ["bash", "-c", "exec 3<>/dev/tcp/%s/22 && head -c 4 <&3" % a["ip"]],
                                capture_output=True, text=True, timeout=30)
        assert reach.stdout == "SSH-"
        assert [h["name"] for h in hosts.list_hosts(state_dir)] == ["node0", "node1", "node2", "node3"]
        with pytest.raises(hosts.LabHostError, match="already exists"):
            hosts.create_host(state_dir, "node0", [pub])
        with pytest.raises(ValueError, match="invalid lab host name"):
            hosts.create_host(state_dir, "../evil", [pub])
        with pytest.raises(ValueError, match="at least one authorized key"):
            hosts.create_host(state_dir, "nokey", [])
        pids = [a["sshd_pid"], a["init_pid"]]
        hosts.destroy_host(state_dir, "node0")
        hosts.destroy_host(state_dir, "node0")  # idempotent
        assert not any(hosts.pid_alive(pid) for pid in pids)
        assert not os.path.exists(os.path.join("/run/netns", a["netns"]))
        assert ssh(key, b["ip"]).returncode == 0  # the others live on
        lab_id = hosts.network_info(state_dir)["lab_id"]
        hosts.destroy_network(state_dir)
        shutil.rmtree(state_dir)
        assert lab_leftovers(state_dir, lab_id, [h["sshd_pid"] for h in made.values()]) == {}
    finally:
        hosts.destroy_network(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)


def test_ansible_runs_against_a_lab_host(lab_host, tmp_path):
    result = run_playbook(
        """
        - hosts: lab_hosts
          gather_facts: true
          tasks:
            - ansible.builtin.user:
                name: deploy
            - ansible.builtin.copy:
                dest: /mailu/mailu.env
                content: "DOMAIN=example.test\\n"
                mode: "0600"
            - ansible.builtin.assert:
                that: ansible_facts.hostname == "vps1"
        """,
        inventory=lab_host.inventory(tmp_path),
        tmp_path=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "changed=2" in result.stdout
    assert open(lab_host.path("/mailu/mailu.env")).read() == "DOMAIN=example.test\n"
    assert lab_host.exec(["id", "-u", "deploy"]).returncode == 0


def test_lab_fixture_hosts(lab):
    host = lab.create_host("fixture1")
    try:
        assert lab.ssh(host["ip"], "hostname").stdout.strip() == "fixture1"
        assert lab.host_exec("fixture1", ["cat", "/root/.ssh/authorized_keys"]).stdout.strip() == lab.public_key
        assert "fixture1" in [h["name"] for h in lab.hosts()]
    finally:
        lab.destroy_host("fixture1")
    assert "fixture1" not in [h["name"] for h in lab.hosts()]


# -- labctl ----------------------------------------------------------------------------------------
def _vault(desc, path):
    request = urllib.request.Request(desc["vault"]["addr"] + path, headers={"X-Vault-Token": desc["vault"]["token"]})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _hostwinds(desc, action, api_key=None, **fields):
    fields.update(action=action, API=desc["hostwinds"]["api_key"] if api_key is None else api_key)
    data = urlencode(fields).encode()
    with urllib.request.urlopen(urllib.request.Request(desc["hostwinds"]["url"], data=data), timeout=60) as response:
        return json.loads(response.read())


def test_labctl_up_status_down():
    state_dir = make_state_dir()
    try:
        desc = json.loads(labctl(state_dir, "up", "--json").stdout)
        assert desc["state_dir"] == state_dir
        assert set(desc) >= {"vault", "dns", "hostwinds", "ssh", "network", "env", "hosts", "supervisor_pid"}
        assert oct(os.stat(os.path.join(state_dir, "lab.json")).st_mode & 0o777) == "0o600"
        assert oct(os.stat(desc["ssh"]["private_key"]).st_mode & 0o777) == "0o600"
        # OpenBao: KV v2 mounts and the file audit device, which records requests
        mounts = _vault(desc, "/v1/sys/mounts")["data"]
        for mount in ("vps/", "smtp/", "dkim/"):
            assert mounts[mount]["type"] == "kv" and mounts[mount]["options"]["version"] == "2"
        audit = _vault(desc, "/v1/sys/audit")["data"]
        assert audit["file/"]["options"]["file_path"] == desc["vault"]["audit_log"]
        assert "sys/mounts" in open(desc["vault"]["audit_log"]).read()
        # BIND9 answers for its zone
        query = dns.message.make_query("example.test.", dns.rdatatype.SOA)
        answer = dns.query.udp(query, desc["dns"]["server"], port=desc["dns"]["port"], timeout=5)
        assert answer.rcode() == dns.rcode.NOERROR and answer.answer
        # up again: the same lab
        again = json.loads(labctl(state_dir, "up", "--json").stdout)
        assert again["supervisor_pid"] == desc["supervisor_pid"] and again["vault"]["addr"] == desc["vault"]["addr"]
        # the simulator: a wrong key is refused, add_instance builds a real host for the lab key
        refused = _hostwinds(desc, "get_instances", api_key="wrong")
        assert refused[0]["result"] == "error"
        created = _hostwinds(desc, "add_instance", template="debian-12", rid="1", location_id="1", srvrname="pm-core-1")
        assert any(item.get("result") == "success" for item in created)

        def active():
            data = _hostwinds(desc, "get_instances").get("success") or {}
            found = [inst for inst in (data.values() if isinstance(data, dict) else data)
                     if inst.get("srvrname") == "pm-core-1" and inst.get("status") == "active"]
            return found[0] if found else None

        instance = wait_until(active, 120, "the simulated instance to become active")
        login = ssh(desc["ssh"]["private_key"], instance["main_ip"], "hostname")
        assert login.returncode == 0, login.stderr
        status = json.loads(labctl(state_dir, "status", "--json").stdout)
        assert status["state"] == "up" and all(status["parts"].values())
        [host] = [h for h in status["hosts"] if h["ip"] == instance["main_ip"]]
        assert host["running"] and host["name"] == login.stdout.strip()
        human = labctl(state_dir, "status").stdout
        assert desc["vault"]["audit_log"] in human and desc["vault"]["token"] not in human
        env = labctl(state_dir, "env").stdout
        assert "export VAULT_ADDR=%s" % desc["vault"]["addr"] in env
        pids = [desc["supervisor_pid"], desc["vault"]["pid"], desc["dns"]["pid"], desc["hostwinds"]["pid"],
                host["sshd_pid"], host["init_pid"]]
        labctl(state_dir, "down")
        assert lab_leftovers(state_dir, desc["network"]["lab_id"], pids) == {}
        down_again = labctl(state_dir, "down")
        assert "lab down" in down_again.stdout
        assert labctl(state_dir, "status", check=False).returncode == 3
    finally:
        labctl(state_dir, "down", check=False)
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.mark.parametrize("lose_state_file", [False, True], ids=["state-file-kept", "state-file-lost"])
def test_labctl_down_after_a_crash(lose_state_file):
    state_dir = make_state_dir()
    try:
        desc = json.loads(labctl(state_dir, "up", "--json").stdout)
        host = hosts.create_host(state_dir, "crash1", [desc["ssh"]["public_key_text"]])
        assert ssh(desc["ssh"]["private_key"], host["ip"]).returncode == 0
        pids = [desc["supervisor_pid"], desc["vault"]["pid"], desc["dns"]["pid"], desc["hostwinds"]["pid"], host["init_pid"]]
        for pid in pids:  # the crash: everything labctl started dies at once, nothing is cleaned
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not any(hosts.pid_alive(pid) for pid in pids), 30, "the killed lab processes to die")
        if lose_state_file:
            for name in ("lab.json", "network.json"):
                os.unlink(os.path.join(state_dir, name))
        assert labctl(state_dir, "status", check=False).returncode == 3
        labctl(state_dir, "down")
        assert lab_leftovers(state_dir, desc["network"]["lab_id"], pids + [host["sshd_pid"]]) == {}
    finally:
        labctl(state_dir, "down", check=False)
        shutil.rmtree(state_dir, ignore_errors=True)


def test_orphaned_lab_is_swept_by_the_next_up():
    """A lab whose owner (a test session) died is taken down by the next `up` anywhere."""
    orphan_dir, state_dir = make_state_dir(), make_state_dir()
    owner = subprocess.Popen(["sleep", "600"])
    try:
        desc = json.loads(labctl(orphan_dir, "up", "--json", "--owner-pid", str(owner.pid)).stdout)
        owner.kill()
        owner.wait()
        labctl(state_dir, "up")
        assert lab_leftovers(orphan_dir, desc["network"]["lab_id"], [desc["supervisor_pid"], desc["vault"]["pid"]]) == {}
    finally:
        owner.kill()
        for directory in (orphan_dir, state_dir):
            labctl(directory, "down", check=False)
            shutil.rmtree(directory, ignore_errors=True)


def test_labctl_refuses_a_state_dir_it_cannot_use():
    with tempfile.NamedTemporaryFile() as handle:
        proc = labctl(handle.name, "up", check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
