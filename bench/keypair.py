#!/usr/bin/env python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: create and store an SSH key pair for N tenants in one play.

  ours    penguinmails.vps.vault_ssh_keypair (state=present) in a loop: generates the pair in memory
          and writes it to Vault with check-and-set, fingerprint and metadata included
  theirs  community.crypto.openssh_keypair (ssh-keygen, files on disk) + community.hashi_vault.vault_kv2_write
          of the private key, public key and fingerprint, in a loop

Both run against the same private OpenBao (tests/support/openbao.py), token auth, same key type and size,
fresh tenants each run. Prints the median wall time of --repeat runs and the ratio ours/theirs, raw and
net of a baseline play of the same shape that does nothing (ansible-playbook start-up, loop overhead).

    .venv/bin/python bench/keypair.py [--n 50] [--key-type rsa|ed25519] [--bits 4096] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tests.support.ansible_run import run_playbook  # noqa: E402
from tests.support.openbao import OpenBao  # noqa: E402

OURS = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Create and store {n} key pairs (penguinmails.vps.vault_ssh_keypair)
      penguinmails.vps.vault_ssh_keypair:
        tenant_id: "{prefix}{{{{ item }}}}"
        role: admin
        key_type: {key_type}
        bits: {bits}
      loop: "{{{{ range({n}) | list }}}}"
"""

THEIRS = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Generate {n} key pairs (community.crypto.openssh_keypair)
      community.crypto.openssh_keypair:
        path: "{keydir}/{prefix}{{{{ item }}}}"
        type: {key_type}
        size: {bits}
        comment: "penguinmails-{prefix}{{{{ item }}}}-admin"
      loop: "{{{{ range({n}) | list }}}}"
      register: pairs
    - name: Store them in Vault (community.hashi_vault.vault_kv2_write)
      community.hashi_vault.vault_kv2_write:
        url: "{url}"
        token: "{token}"
        engine_mount_point: vps
        path: "{prefix}{{{{ item.item }}}}/admin_ssh"
        data:
          private_key: "{{{{ lookup('ansible.builtin.file', item.filename) }}}}"
          public_key: "{{{{ item.public_key }}}}"
          fingerprint: "{{{{ item.fingerprint }}}}"
          key_type: {key_type}
          state: active
      loop: "{{{{ pairs.results }}}}"
      loop_control:
        label: "{{{{ item.item }}}}"
      no_log: true
"""

BASELINE = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: The same loop doing nothing
      ansible.builtin.set_fact:
        value: "{prefix}{{{{ item }}}}"
      loop: "{{{{ range({n}) | list }}}}"
"""


def timed(playbook, env):
    started = time.perf_counter()
    result = run_playbook(playbook, env=env)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit("benchmark play failed:\n%s\n%s" % (result.stdout[-3000:], result.stderr[-2000:]))
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--key-type", choices=["rsa", "ed25519"], default="rsa")
    parser.add_argument("--bits", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    bits = args.bits if args.key_type == "rsa" else 256

    with OpenBao() as bao:
        bao.enable_kv("vps")
        env = bao.env()
        times = {"ours": [], "theirs": [], "base": []}
        for run in range(args.repeat):
            keydir = tempfile.mkdtemp(prefix="pm-bench-keys-")
            try:
                for name, shape in (("ours", OURS), ("theirs", THEIRS), ("base", BASELINE)):
                    prefix = "%s%d-" % (name[0], run)
                    play = shape.format(n=args.n, prefix=prefix, key_type=args.key_type, bits=bits, keydir=keydir,
                                        url=bao.addr, token=bao.token)
                    times[name].append(timed(play, env))
            finally:
                shutil.rmtree(keydir, ignore_errors=True)
        # Both really stored N keys per run.
        for prefix in ("o0-", "t0-"):
            status, body = bao.request("GET", "/v1/vps/data/%s%d/admin_ssh" % (prefix, args.n - 1))
            assert status == 200 and body["data"]["data"]["public_key"], (prefix, status)

    o, t, b = (statistics.median(times[k]) for k in ("ours", "theirs", "base"))
    print("%d tenants, %s %s, median of %d runs (cores: %s)" % (
        args.n, args.key_type, bits if args.key_type == "rsa" else "", args.repeat, os.cpu_count()))
    print("%-28s %8.2f s" % ("ours (vault_ssh_keypair)", o))
    print("%-28s %8.2f s" % ("theirs (openssh_keypair+kv2)", t))
    print("%-28s %8.2f s" % ("baseline (empty loop)", b))
    print("ratio ours/theirs: %.2fx raw, %.2fx net of baseline" % (o / t, (o - b) / (t - b) if t > b else float("nan")))


if __name__ == "__main__":
    main()
