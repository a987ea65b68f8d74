#!/usr/bin/env python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: what one more tenant on an already-reached host costs the controller in a forced rotate_all.

On a private lab (tests/lab) with HOSTS lab hosts:

1. a forced ``penguinmails.vps.rotate_all`` (admin keys, Ed25519, tenants from the Vault records of a private mount,
   forks 10) over HOSTS hosts with one tenant each, then, after 3 more tenants per host were added, over the same
   hosts with four tenants each;
2. the controller CPU of each run: user + system time of ansible-playbook and every process it waited for
   (resource.getrusage(RUSAGE_CHILDREN) around the run);
3. one execution of a localhost module: a play running ``ansible.builtin.ping`` on localhost 21 times minus the same
   play running it once, divided by 20.

Prints the CPU per extra tenant, (CPU(4 per host) - CPU(1 per host)) / (3 x HOSTS), in seconds and in units of one
localhost module execution (issue 20: at most 3, goal 2; the per-tenant host step of before cost about 15). Each run
configuration is warmed up once (first contact records the host keys) and then measured --repeat times; medians are
printed. Nothing is asserted but that every run succeeded and every admin key is confirmed.

    .venv/bin/python bench/host_step_cost.py [--hosts 6] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "collections"))
sys.path.insert(0, REPO)

from ansible_collections.penguinmails.vps.plugins.module_utils import keypair_store  # noqa: E402
from tests.lab import lab as lab_core  # noqa: E402
from tests.support.ansible_run import ensure_collection_link, run_playbook  # noqa: E402
from tests.support.fleet import Fleet  # noqa: E402

ensure_collection_link()

PING_PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Ping
      ansible.builtin.ping:
      loop: "{{ range(%d) | list }}"
"""


def cpu_of(func):
    """(result, wall seconds, CPU seconds of the children func waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    result = func()
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return result, wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def rotate_all(fleet, vault, work):
    extra = {"force": "true", "ssh_role": "admin", "key_type": "ed25519", "penguinmails_vault_vps_mount": fleet.mount,
             "penguinmails_python_interpreter": "/usr/bin/python3"}
    env = {"VAULT_ADDR": vault["addr"], "VAULT_TOKEN": vault["token"]}

    def run():
        proc = run_playbook("- ansible.builtin.import_playbook: %s\n" % os.path.join(REPO, "playbooks", "rotate_all.yml"),
                            env=env, extra_vars=extra, args=["--forks", "10"], tmp_path=work, timeout=1800)
        if proc.returncode != 0:
            raise SystemExit("rotate_all failed:\n" + (proc.stdout + proc.stderr)[-3000:])
        return proc

    return cpu_of(run)


def measure(fleet, vault, work, repeat):
    rotate_all(fleet, vault, work)  # warm-up: first contact with new tenants records host keys
    walls, cpus = [], []
    for _round in range(repeat):
        _proc, wall, cpu = rotate_all(fleet, vault, work)
        walls.append(wall)
        cpus.append(cpu)
    unconfirmed = [t for t in fleet.tenants if not keypair_store.is_confirmed(fleet.admin_record(t).data)]
    if unconfirmed or fleet.invariant_violations():
        raise SystemExit("not every admin key confirmed/logging in: %s" % unconfirmed[:5])
    return statistics.median(walls), statistics.median(cpus), cpus


def ping_cost(work, repeat):
    def play(count):
        return cpu_of(lambda: run_playbook(PING_PLAY % count, tmp_path=work))[2]

    samples = sorted((play(21) - play(1)) / 20.0 for _round in range(repeat))
    return statistics.median(samples), samples


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    state_dir = tempfile.mkdtemp(prefix="pm-lab-")
    work = tempfile.mkdtemp(prefix="pm-bench-hoststep-")
    os.chmod(work, 0o700)
    try:
        desc = lab_core.up(state_dir, owner_pid=os.getpid())
        fleet = Fleet(desc, work)
        fleet.create_hosts(args.hosts)
        print("load before: %s" % open("/proc/loadavg").read().strip())
        ping, ping_samples = ping_cost(work, args.repeat)
        print("one localhost module execution (ansible.builtin.ping): %.3f CPU-s (samples %s)"
              % (ping, ", ".join("%.3f" % s for s in ping_samples)))
        fleet.seed_tenants(args.hosts, roles=("admin",))
        fleet.bootstrap()
        wall1, cpu1, cpus1 = measure(fleet, desc["vault"], work, args.repeat)
        print("forced rotate_all, %d hosts x 1 tenant: wall %.1f s, CPU %.2f s (samples %s)"
              % (args.hosts, wall1, cpu1, ", ".join("%.2f" % c for c in cpus1)))
        fleet.seed_tenants(3 * args.hosts, roles=("admin",))
        fleet.bootstrap()
        wall4, cpu4, cpus4 = measure(fleet, desc["vault"], work, args.repeat)
        print("forced rotate_all, %d hosts x 4 tenants: wall %.1f s, CPU %.2f s (samples %s)"
              % (args.hosts, wall4, cpu4, ", ".join("%.2f" % c for c in cpus4)))
        extra = (cpu4 - cpu1) / (3.0 * args.hosts)
        print("CPU per extra tenant: %.3f s = %.2f localhost module executions; per host with its first tenant: %.3f s = %.2f"
              % (extra, extra / ping, cpu1 / args.hosts, cpu1 / args.hosts / ping))
        print("wall 4x tenants / 1x: %.2f" % (wall4 / wall1))
        print("load after: %s" % open("/proc/loadavg").read().strip())
    finally:
        lab_core.down(state_dir)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
