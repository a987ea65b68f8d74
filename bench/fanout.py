#!/usr/bin/env python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: rotating root's authorized_keys on H lab hosts (network namespaces with a real sshd).

The change on every host is the one a rotation makes: the new public key is added and the previous
one stays with expiry-time="<in 24 h>" (grace period). Three plays over the same hosts, same forks:
  ping      ansible.builtin.ping (baseline: connection + module transfer cost of one task)
  ours      penguinmails.vps.authorized_key_rotate (one task: keys + grace_keys + marker)
  peer      ansible.posix.authorized_key, a loop of two items (new key; old key with key_options)
Before every timed run the hosts' authorized_keys are reset from the controller side (the lab
host's /root is a directory here), so each run makes the same change. SSH control masters are
warmed up first (an untimed ping), as in any real run after the first task. Runs alternate, the
median of --repeat is reported, with the per-host overhead over the ping baseline.

    .venv/bin/python bench/fanout.py [--hosts 20] [--forks 10] [--repeat 3]
"""
from __future__ import annotations

import argparse
import datetime
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "collections"))
sys.path.insert(0, REPO)

from tests.support.ansible_run import VENV_BIN, ansible_env, ensure_collection_link  # noqa: E402
from tests.lab import hosts as lab_hosts  # noqa: E402
from tests.lab import lab as lab_core  # noqa: E402

MARKER = "penguinmails:bench:admin"

PING = """
- hosts: bench
  gather_facts: false
  tasks:
    - name: Ping
      ansible.builtin.ping:
"""

OURS = """
- hosts: bench
  gather_facts: false
  tasks:
    - name: Rotate the managed key (new key, previous key with expiry-time)
      penguinmails.vps.authorized_key_rotate:
        user: root
        keys: ["{{ bench_new }}"]
        grace_keys: [{key: "{{ bench_old }}"}]
        grace_until: "{{ bench_grace_until }}"
        marker: %s
""" % MARKER

PEER = """
- hosts: bench
  gather_facts: false
  tasks:
    - name: Add the new key; keep the previous key with expiry-time
      ansible.posix.authorized_key:
        user: root
        key: "{{ item.key }}"
        key_options: "{{ item.options | default(omit) }}"
        state: present
      loop:
        - {key: "{{ bench_new }}"}
        - {key: "{{ bench_old }}", options: 'expiry-time="{{ bench_grace_expiry }}"'}
      loop_control:
        label: "{{ item.key.split()[2] }}"
"""


def keygen(path, comment):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path], check=True)
    with open(path + ".pub") as handle:
        return handle.read().strip()


def write_inventory(directory, host_list, private_key, keys, grace_until, grace_expiry):
    common = " ".join(lab_core.SSH_OPTIONS[:4])
    lines = ["[bench]"]
    for host in host_list:
        old, new = keys[host["name"]]
        lines.append(
            "%s ansible_host=%s ansible_user=root ansible_ssh_private_key_file=%s ansible_python_interpreter=/usr/bin/python3 "
            "ansible_ssh_common_args='%s' bench_old='%s' bench_new='%s'"
            % (host["name"], host["ip"], private_key, common, old, new))
    lines += ["", "[bench:vars]", "bench_grace_until=%s" % grace_until, "bench_grace_expiry=%s" % grace_expiry]
    path = os.path.join(directory, "inventory.ini")
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def reset_keys(host_list, controller_pub, keys):
    """Every host: the lab key (unmanaged) and the old managed key, as before a rotation."""
    for host in host_list:
        path = os.path.join(host["root"], "fs", "root", ".ssh", "authorized_keys")
        old, _new = keys[host["name"]]
        with open(path, "w") as handle:
            handle.write("%s\n%s\n" % (controller_pub, old))
        os.chmod(path, 0o600)


def blob(key):
    return key.split()[1]


def check_keys(host_list, controller_pub, keys, grace_expiry):
    for host in host_list:
        with open(os.path.join(host["root"], "fs", "root", ".ssh", "authorized_keys")) as handle:
            text = handle.read()
        old, new = keys[host["name"]]
        lines = text.splitlines()
        assert any(blob(controller_pub) in line for line in lines), "lab key lost on %s" % host["name"]
        assert any(blob(new) in line and "expiry-time" not in line for line in lines), "new key missing on %s" % host["name"]
        assert any(blob(old) in line and 'expiry-time="%s"' % grace_expiry in line for line in lines), \
            "old key without expiry on %s:\n%s" % (host["name"], text)


def run(playbook_path, inventory, forks, env):
    cmd = [os.path.join(VENV_BIN, "ansible-playbook"), "-i", inventory, "-f", str(forks), playbook_path]
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800, cwd=REPO, check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit("play %s failed:\n%s\n%s" % (playbook_path, proc.stdout[-3000:], proc.stderr[-2000:]))
    return elapsed


def close_masters(control_dir):
    for sock in glob.glob(os.path.join(control_dir, "*")):
        subprocess.run(["ssh", "-o", "ControlPath=%s" % sock, "-O", "exit", "bench"], capture_output=True, timeout=10,
                       check=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--forks", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    ensure_collection_link()

    state_dir = tempfile.mkdtemp(prefix="pm-lab-bench-")
    work = tempfile.mkdtemp(prefix="pm-bench-fanout-")
    control_dir = os.path.join(work, "cp")
    os.makedirs(control_dir)
    try:
        private_key = lab_core.controller_key(os.path.join(state_dir, "ssh", "id_ed25519"))
        with open(private_key + ".pub") as handle:
            controller_pub = handle.read().strip()
        lab_hosts.ensure_network(state_dir, owner_pid=os.getpid())
        started = time.perf_counter()
        host_list = [lab_hosts.create_host(state_dir, "fan%02d" % i, [controller_pub]) for i in range(args.hosts)]
        print("%d lab hosts up in %.1f s" % (len(host_list), time.perf_counter() - started))

        keys = {}
        for host in host_list:
            base = os.path.join(work, host["name"])
            keys[host["name"]] = (keygen(base + "-old", "%s old" % MARKER), keygen(base + "-new", "%s new" % MARKER))
        grace = datetime.datetime.now(datetime.timezone.utc).replace(second=0, microsecond=0) + datetime.timedelta(hours=24)
        grace_until, grace_expiry = grace.strftime("%Y-%m-%dT%H:%M:%SZ"), grace.strftime("%Y%m%d%H%MZ")
        inventory = write_inventory(work, host_list, private_key, keys, grace_until, grace_expiry)
        plays = {}
        for name, text in (("ping", PING), ("ours", OURS), ("peer", PEER)):
            plays[name] = os.path.join(work, "%s.yml" % name)
            with open(plays[name], "w") as handle:
                handle.write(text)
        env = ansible_env({"ANSIBLE_SSH_CONTROL_PATH_DIR": control_dir, "ANSIBLE_HOST_KEY_CHECKING": "False"})

        run(plays["ping"], inventory, args.forks, env)  # warm-up: control masters, interpreter
        times = {"ping": [], "ours": [], "peer": []}
        for dummy in range(args.repeat):
            for name in ("ping", "ours", "peer"):
                reset_keys(host_list, controller_pub, keys)
                times[name].append(run(plays[name], inventory, args.forks, env))
                if name != "ping":
                    check_keys(host_list, controller_pub, keys, grace_expiry)
        ping, ours, peer = (statistics.median(times[k]) for k in ("ping", "ours", "peer"))
        hosts = len(host_list)
        print("%d hosts, forks %d, median of %d runs each" % (hosts, args.forks, args.repeat))
        print("%-40s %8s %16s" % ("play", "wall s", "over ping /host"))
        print("%-40s %8.2f %16s" % ("ansible.builtin.ping (baseline)", ping, "-"))
        print("%-40s %8.2f %14.3f s" % ("penguinmails.vps.authorized_key_rotate", ours, (ours - ping) / hosts))
        print("%-40s %8.2f %14.3f s" % ("ansible.posix.authorized_key (2 items)", peer, (peer - ping) / hosts))
        print("ours/peer: %.2fx wall, %.2fx net of the ping baseline"
              % (ours / peer, (ours - ping) / (peer - ping) if peer > ping else float("nan")))
    finally:
        close_masters(control_dir)
        try:
            lab_hosts.destroy_network(state_dir)
            lab_hosts.sweep_processes(state_dir)
        finally:
            shutil.rmtree(state_dir, ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
