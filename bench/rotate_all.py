#!/usr/bin/env python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: Vault-side bulk rotation of N tenants' SSH keys (RSA-4096) against a private OpenBao.

1. Measures the single-key RSA-4096 generation time on this machine, on the code path the bulk
   rotation uses (plugins/module_utils/ssh_keys.generate_keypair), median of --single-samples.
2. Seeds N tenants with an existing key (per role) in a fresh OpenBao, then rotates all of them with
   plugins/module_utils/bulk_rotation.rotate_many(force=True) and checks every key was rotated.
   The ideal wall time is  keys x single-key time / cores  (cores = os.cpu_count()); the ratio to it
   is the overhead of the pool and the Vault I/O (goal <= 1.3).
3. The peer way for a small sample: community.hashi_vault.vault_kv2_get (read version + old key),
   community.crypto.openssh_keypair (RSA-4096), community.hashi_vault.vault_kv2_write (cas) in an
   ansible loop, extrapolated per key to N.

    .venv/bin/python bench/rotate_all.py [--n 1000] [--roles admin] [--peer-sample 20]

RSA key generation time varies a lot from key to key (prime search), so the single-key figure is
printed as median and mean; the ratio line uses the median, as the goal is stated. On a shared machine
the wall-time ratio also counts the CPU that other processes took: the bench prints the share of the
cores its keygen processes got, the CPU used by itself and by OpenBao, and the load-independent ratio
of the pool's CPU time per key to a single key's CPU time.
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
from concurrent.futures import ThreadPoolExecutor

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "collections"))
sys.path.insert(0, REPO)

from tests.support.ansible_run import ensure_collection_link, run_playbook  # noqa: E402

ensure_collection_link()

from ansible_collections.penguinmails.vps.plugins.module_utils import (  # noqa: E402
    bulk_rotation,
    keypair_store,
    ssh_keys,
)
from ansible_collections.penguinmails.vps.plugins.module_utils import vault_client as vc  # noqa: E402
from tests.support.openbao import OpenBao  # noqa: E402

OLD = "2020-01-01T00:00:00Z"

PEER_PLAY = """
- hosts: localhost
  gather_facts: false
  vars:
    tenants: {tenants}
    roles: {roles}
    keydir: {keydir}
    pairs: "{{{{ tenants | product(roles) | list }}}}"
  tasks:
    - name: Read the current secrets (version for check-and-set, old public key for the grace period)
      community.hashi_vault.vault_kv2_get:
        engine_mount_point: vps
        path: "{{{{ item.0 }}}}/{{{{ item.1 }}}}_ssh"
      loop: "{{{{ pairs }}}}"
      register: old

    - name: Generate the new key pairs
      community.crypto.openssh_keypair:
        path: "{{{{ keydir }}}}/{{{{ item.0 }}}}_{{{{ item.1 }}}}"
        type: rsa
        size: 4096
        force: true
        comment: "{{{{ item.0 }}}}-{{{{ item.1 }}}}"
      loop: "{{{{ pairs }}}}"
      register: generated

    - name: Write the new keys with check-and-set
      community.hashi_vault.vault_kv2_write:
        engine_mount_point: vps
        path: "{{{{ item.0.0 }}}}/{{{{ item.0.1 }}}}_ssh"
        cas: "{{{{ item.1.metadata.version }}}}"
        data:
          private_key: "{{{{ lookup('ansible.builtin.file', keydir ~ '/' ~ item.0.0 ~ '_' ~ item.0.1) }}}}"
          public_key: "{{{{ item.2.public_key }}}} {{{{ item.2.comment }}}}"
          fingerprint: "{{{{ item.2.fingerprint }}}}"
          key_type: rsa
          created_at: "{{{{ item.1.secret.created_at }}}}"
          last_rotated: "{{{{ now(utc=true, fmt='%Y-%m-%dT%H:%M:%SZ') }}}}"
          rotation_policy: 90_days
          state: active
          grace_public_key: "{{{{ item.1.secret.public_key }}}}"
          grace_until: "{{{{ '%Y-%m-%dT%H:%M:%SZ' | strftime(now(utc=true).timestamp() + 86400, utc=true) }}}}"
      loop: "{{{{ pairs | zip(old.results, generated.results) | list }}}}"
      loop_control:
        label: "{{{{ item.0 }}}}"
      no_log: true
"""

BASELINE_PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Nothing
      ansible.builtin.debug:
        msg: baseline
"""


def single_key_times(samples, bits):
    """(wall, CPU) seconds of ``samples`` single-key generations in this process."""
    times = []
    for dummy in range(samples):
        started, cpu_started = time.perf_counter(), time.process_time()
        ssh_keys.generate_keypair("rsa", bits=bits, comment="single")
        times.append((time.perf_counter() - started, time.process_time() - cpu_started))
    return times


def process_cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def proc_cpu(pid):
    """User + system CPU seconds of a running process (Linux /proc), 0.0 when unknown."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / float(os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def seed(client, tenants, roles):
    """Every tenant gets an existing (Ed25519, cheap to make) key per role, last rotated long ago."""

    def one(args):
        tenant, role = args
        pair = ssh_keys.generate_keypair("ed25519", comment="seed")
        record = keypair_store.record_created(pair, keypair_store.utcnow(), 90)
        record["last_rotated"] = OLD
        client.write("vps", "%s/%s_ssh" % (tenant, role), record, cas=0)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, [(t, r) for t in tenants for r in roles]))


def timed_play(text, env):
    with tempfile.TemporaryDirectory(prefix="pm-bench-play-") as directory:
        started = time.perf_counter()
        result = run_playbook(text, env=env, timeout=3600, tmp_path=directory)
        elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit("peer play failed:\n%s\n%s" % (result.stdout[-3000:], result.stderr[-2000:]))
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="tenants (default 1000)")
    parser.add_argument("--roles", default="admin", help="comma-separated key roles per tenant (default admin)")
    parser.add_argument("--bits", type=int, default=4096)
    parser.add_argument("--single-samples", type=int, default=15, help="single-key timings (median)")
    parser.add_argument("--workers", type=int, default=None, help="keygen processes (default: cores)")
    parser.add_argument("--peer-sample", type=int, default=20, help="keys rotated the peer way (0: skip)")
    args = parser.parse_args()
    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    tenants = ["bench%05d" % i for i in range(args.n)]
    keys = len(tenants) * len(roles)
    cores = os.cpu_count() or 1

    # Half of the single-key samples before the bulk run, half after: the machine's load changes.
    singles = single_key_times((args.single_samples + 1) // 2, args.bits)

    with OpenBao() as bao:
        bao.enable_kv("vps")
        client = vc.get_client({"url": bao.addr, "token": bao.token})
        started = time.perf_counter()
        seed(client, tenants, roles)
        print("seeded %d tenants x %d role(s) in %.1f s" % (len(tenants), len(roles), time.perf_counter() - started))

        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        self_before, bao_before = process_cpu(), proc_cpu(bao.proc.pid)
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        result = bulk_rotation.rotate_many(client, tenants, roles=roles, key_type="rsa", bits=args.bits, force=True,
                                           workers=args.workers)
        wall = time.perf_counter() - started
        cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        pool_cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
        self_cpu, bao_cpu = process_cpu() - self_before, proc_cpu(bao.proc.pid) - bao_before
        if result["failures"] or len(result["rotated"]) != keys:
            raise SystemExit("bulk rotation incomplete: %d rotated, %d failed: %s"
                             % (len(result["rotated"]), len(result["failures"]), result["failures"][:3]))
        sample = client.read("vps", "%s/%s_ssh" % (tenants[-1], roles[-1]))
        if sample.version != 2 or not sample.data["public_key"].startswith("ssh-rsa ") or not sample.data.get("grace_public_key"):
            raise SystemExit("bulk rotation stored an unexpected record (version %s)" % sample.version)
        singles += single_key_times(args.single_samples // 2, args.bits)
        single = statistics.median(w for w, _c in singles)
        single_mean = statistics.mean(w for w, _c in singles)
        single_cpu = statistics.mean(c for _w, c in singles)
        limit = keys * single / cores
        print("single RSA-%d key (same code path, before and after): median %.3f s, mean %.3f s wall, mean %.3f CPU-s "
              "(%d samples); cores %d" % (args.bits, single, single_mean, single_cpu, len(singles), cores))
        print("bulk rotate_many: %d keys, wall %.2f s, %.2f keys/s (read %.2f s, keygen %.2f s)"
              % (keys, wall, keys / wall, result["timings"].get("read_s", 0), result["timings"].get("keygen_s", 0)))
        print("keygen processes: %.1f CPU-s, %.3f CPU-s/key, %.0f%% of %d cores over the wall time (load average %.1f before, %.1f after)"
              % (pool_cpu, pool_cpu / keys, 100.0 * pool_cpu / (wall * cores), cores, load_before, os.getloadavg()[0]))
        print("other CPU during the run: this process (reads, writes, pool feeding) %.1f CPU-s, OpenBao %.1f CPU-s"
              % (self_cpu, bao_cpu))
        print("ideal limit: %d x %.3f s / %d cores = %.2f s" % (keys, single, cores, limit))
        print("ratio to limit: %.2f (goal <= 1.3; %.2f against the mean single-key time)"
              % (wall / limit, wall / (keys * single_mean / cores)))
        # On a shared machine the wall-time ratio includes the CPU other processes took. Load-independent:
        # the pool's CPU time per key against a single key's CPU time (the cost of the bulk path itself);
        # with every core to itself the run would take about  keys x that / cores.
        print("load-independent: pool CPU per key / single-key CPU = %.2f (CPU-time limit %.1f s, pool CPU / cores %.1f s)"
              % (pool_cpu / keys / single_cpu, keys * single_cpu / cores, pool_cpu / cores))

        if args.peer_sample > 0:
            sample_tenants = tenants[:max(1, min(len(tenants), args.peer_sample // len(roles) or 1))]
            peer_keys = len(sample_tenants) * len(roles)
            keydir = tempfile.mkdtemp(prefix="pm-bench-keys-")
            try:
                play = PEER_PLAY.format(tenants=sample_tenants, roles=roles, keydir=keydir)
                peer = timed_play(play, bao.env())
                base = timed_play(BASELINE_PLAY, bao.env())
            finally:
                shutil.rmtree(keydir, ignore_errors=True)
            check = client.read("vps", "%s/%s_ssh" % (sample_tenants[0], roles[0]))
            if check.version != 3:
                raise SystemExit("the peer play did not write (version %s)" % check.version)
            per_key = peer / peer_keys
            net_per_key = max(peer - base, 1e-9) / peer_keys
            print("peer (openssh_keypair + vault_kv2_get/write loop): %d keys in %.2f s, %.3f s/key (net of %.2f s start-up: %.3f s/key)"
                  % (peer_keys, peer, per_key, base, net_per_key))
            print("peer extrapolated to %d keys: %.1f s (net %.1f s); ours/peer ratio: %.3f (net %.3f)"
                  % (keys, per_key * keys, net_per_key * keys, wall / (per_key * keys), wall / (net_per_key * keys)))


if __name__ == "__main__":
    main()
