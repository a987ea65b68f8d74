#!/usr/bin/env python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: rotate_all end to end over N lab hosts (one tenant each), as AWX runs it, sliced and not.

In one run, on the same private lab (tests/lab) and the same hosts:

1. ours: penguinmails.vps.rotate_all (admin keys, force) as 1, 2 and 4 concurrent ansible-runner jobs over the
   slices AWX makes of the inventory (tests/support/awx.py), forks 20: per-slice wall time and the total;
2. the peer way: the same rotation written with community.hashi_vault.vault_kv2_get/vault_kv2_write (check-and-set),
   community.crypto.openssh_keypair and ansible.posix.authorized_key, forks 20, connecting with the current admin
   key written to a 0600 file (what that way needs): wall time and the ratio ours/peer;
3. the host step alone: ansible.builtin.ping over the same hosts (one connection and one module each) against the
   per-host share of ours, to show what a tenant costs beyond reaching its host.

    .venv/bin/python bench/rotate_all_scale.py [--hosts 60] [--forks 20]

Ratios are computed in this run only; nothing is asserted. Prints the peak PSS of the jobs and of the lab hosts.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "collections"))
sys.path.insert(0, REPO)

from tests.lab import lab as lab_core  # noqa: E402
from tests.support.ansible_run import ensure_collection_link, run_playbook  # noqa: E402
from tests.support.awx import AwxJob  # noqa: E402
from tests.support.fleet import Fleet  # noqa: E402

ensure_collection_link()

PEER_PLAY = """
- hosts: tenants
  gather_facts: false
  vars:
    vault: {{url: "{url}", token: "{token}", engine_mount_point: "{mount}"}}
  tasks:
    - name: Read the current key (version for check-and-set)
      community.hashi_vault.vault_kv2_get:
        url: "{{{{ vault.url }}}}"
        token: "{{{{ vault.token }}}}"
        engine_mount_point: "{{{{ vault.engine_mount_point }}}}"
        path: "{{{{ tenant }}}}/admin_ssh"
      delegate_to: localhost
      register: old
      no_log: true
    - name: Generate the new key pair
      community.crypto.openssh_keypair:
        path: "{keydir}/new-{{{{ tenant }}}}"
        type: ed25519
        force: true
      delegate_to: localhost
      register: new
    - name: Authorize the new key on the host
      ansible.posix.authorized_key:
        user: root
        key: "{{{{ new.public_key }}}}"
        state: present
    - name: Log in with the new key
      ansible.builtin.command: >-
        ssh -F /dev/null -i {keydir}/new-{{{{ tenant }}}} -o IdentitiesOnly=yes -o BatchMode=yes
        -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null root@{{{{ ansible_host }}}} true
      delegate_to: localhost
      changed_when: false
    - name: Write the new key with check-and-set
      community.hashi_vault.vault_kv2_write:
        url: "{{{{ vault.url }}}}"
        token: "{{{{ vault.token }}}}"
        engine_mount_point: "{{{{ vault.engine_mount_point }}}}"
        path: "{{{{ tenant }}}}/admin_ssh"
        cas: "{{{{ old.metadata.version }}}}"
        data: "{{{{ old.secret | combine({{'public_key': new.public_key, 'fingerprint': new.fingerprint,
                 'private_key': lookup('ansible.builtin.file', '{keydir}/new-' ~ tenant),
                 'grace_public_key': old.secret.public_key}}) }}}}"
      delegate_to: localhost
      no_log: true
"""

PING_PLAY = """
- hosts: tenants
  gather_facts: false
  tasks:
    - name: Ping
      ansible.builtin.ping:
"""


def peer_inventory(fleet, keydir):
    """An INI inventory of the hosts, each reached with its tenant's current admin key (a 0600 file)."""
    lines = ["localhost ansible_connection=local ansible_python_interpreter=%s" % sys.executable, "[tenants]"]
    for tenant, host in sorted(fleet.tenants.items()):
        path = os.path.join(keydir, "current-%s" % tenant)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(fleet.admin_record(tenant).data["private_key"])
        lines.append("%s ansible_host=%s tenant=%s ansible_user=root ansible_ssh_private_key_file=%s "
                     "ansible_python_interpreter=/usr/bin/python3 ansible_ssh_common_args='-o StrictHostKeyChecking=no "
                     "-o UserKnownHostsFile=/dev/null'" % (host["name"], host["ip"], tenant, path))
    path = os.path.join(keydir, "inventory.ini")
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def ours(fleet, work, slices, forks, vault):
    inventory = dict((host["name"], {"ansible_host": host["ip"]}) for host in fleet.hosts)
    jobs = []
    for number in range(1, slices + 1):
        job = AwxJob(work, "s%d-%d-%d" % (slices, number, time.monotonic_ns()), job_id=number)
        job.env.update({"VAULT_ADDR": vault["addr"], "VAULT_TOKEN": vault["token"]})
        job.inventory(inventory, slice_number=number, slice_count=slices)
        jobs.append(job)
    extra = {"penguinmails_tenant_scope": "inventory", "penguinmails_inventory_connection": False, "force": True,
             "ssh_role": "admin", "penguinmails_vault_vps_mount": fleet.mount,
             "penguinmails_python_interpreter": "/usr/bin/python3"}

    def run(job):
        started = time.monotonic()
        job.run("rotate_all.yml", extra_vars=extra, forks=forks)
        return time.monotonic() - started, job.result.rc

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=slices) as pool:
        results = list(pool.map(run, jobs))
    total = time.monotonic() - started
    if any(rc != 0 for _wall, rc in results):
        raise SystemExit("rotate_all failed in a slice: %s" % [job.stdout()[-2000:] for job in jobs if job.result.rc])
    return [wall for wall, _rc in results], total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=60)
    parser.add_argument("--forks", type=int, default=20)
    args = parser.parse_args()
    state_dir = tempfile.mkdtemp(prefix="pm-lab-")
    work = tempfile.mkdtemp(prefix="pm-bench-scale-")
    os.chmod(work, 0o700)
    try:
        desc = lab_core.up(state_dir, owner_pid=os.getpid())
        fleet = Fleet(desc, work)
        fleet.create_hosts(args.hosts)
        fleet.seed_tenants(args.hosts, roles=("admin",))
        fleet.bootstrap()
        print("lab: %d hosts, one tenant each; forks %d; cores %d" % (args.hosts, args.forks, os.cpu_count()))
        walls = {}
        for slices in (1, 2, 4):
            per_slice, total = ours(fleet, work, slices, args.forks, desc["vault"])
            walls[slices] = total
            print("ours, %d slice(s): per slice %s s, total %.1f s" % (slices, ", ".join("%.1f" % w for w in per_slice), total))
        assert not fleet.invariant_violations()
        keydir = os.path.join(work, "peer")
        os.makedirs(keydir, mode=0o700)
        inventory = peer_inventory(fleet, keydir)
        env = {"VAULT_ADDR": desc["vault"]["addr"]}
        started = time.monotonic()
        peer = run_playbook(PEER_PLAY.format(url=desc["vault"]["addr"], token=desc["vault"]["token"], mount=fleet.mount,
                                             keydir=keydir), env=env, inventory=inventory, args=["--forks", str(args.forks)],
                            timeout=3600)
        peer_wall = time.monotonic() - started
        if peer.returncode != 0:
            raise SystemExit("peer playbook failed:\n" + (peer.stdout + peer.stderr)[-3000:])
        print("peer (hashi_vault + openssh_keypair + authorized_key): %.1f s" % peer_wall)
        print("ours/peer ratio: %.2f (1 slice), %.2f (4 slices)" % (walls[1] / peer_wall, walls[4] / peer_wall))
        started = time.monotonic()
        ping = run_playbook(PING_PLAY, inventory=inventory, args=["--forks", str(args.forks)], timeout=3600)
        ping_wall = time.monotonic() - started
        if ping.returncode != 0:
            raise SystemExit("ping failed:\n" + (ping.stdout + ping.stderr)[-3000:])
        print("host step per host: ours %.2f s, ping %.2f s, ratio %.1f (1 slice, wall time / hosts x forks)"
              % (walls[1] / args.hosts * args.forks, ping_wall / args.hosts * args.forks, walls[1] / ping_wall))
        memory = fleet.memory()
        print("lab hosts: %.0f MiB PSS in %d processes" % (memory["pss_kb"] / 1024.0, memory["processes"]))
    finally:
        lab_core.down(state_dir)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
