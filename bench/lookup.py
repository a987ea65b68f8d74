#!/usr/bin/env python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: N Vault lookups in one play, penguinmails.vps.vault vs community.hashi_vault.vault_kv2_get.

Both run in the same process tree against the same real OpenBao, same secrets, same play shape.
Scenarios:
  loop-token    one task, loop of N items, one lookup per item, token auth
  loop-approle  the same with AppRole auth (how AWX/cron jobs log in)
  terms-token   one lookup call with N terms
Each scenario is run --repeat times alternately; the median wall time is reported, raw and net of a
baseline play of the same shape without lookups (ansible-playbook start-up and templating cost).

    .venv/bin/python bench/lookup.py [--n 200] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tests.support.ansible_run import run_playbook  # noqa: E402
from tests.support.openbao import OpenBao  # noqa: E402

LOOP = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: {n} lookups
      ansible.builtin.set_fact:
        value: "{{{{ {expr} }}}}"
      loop: "{{{{ range({n}) | list }}}}"
"""

TERMS = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: one call, {n} terms
      ansible.builtin.set_fact:
        values: "{{{{ {expr} }}}}"
"""

OURS_ITEM = "lookup('penguinmails.vps.vault', 'vps/b' ~ item ~ '/admin_ssh', field='public_key'{auth})"
THEIRS_ITEM = "lookup('community.hashi_vault.vault_kv2_get', 'b' ~ item ~ '/admin_ssh', engine_mount_point='vps'{auth}).secret.public_key"
OURS_TERMS = "query('penguinmails.vps.vault', *paths, field='public_key')"
THEIRS_TERMS = "query('community.hashi_vault.vault_kv2_get', *names, engine_mount_point='vps') | map(attribute='secret.public_key') | list"
BASELINE_ITEM = "'b' ~ item"
BASELINE_TERMS = "paths | map('upper') | list"


def timed(playbook, env, extra_args):
    started = time.perf_counter()
    result = run_playbook(playbook, env=env, args=extra_args)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit("benchmark play failed:\n%s\n%s" % (result.stdout[-3000:], result.stderr[-2000:]))
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n = args.n

    with OpenBao() as bao:
        bao.enable_kv("vps")
        for i in range(n):
            bao.kv_put("vps", "b%d/admin_ssh" % i, {"public_key": "ssh-ed25519 AAAA%d" % i, "fingerprint": "SHA256:%d" % i})
        bao.api("POST", "/v1/sys/auth/approle", {"type": "approle"})
        bao.api("PUT", "/v1/sys/policies/acl/bench", {"policy": 'path "vps/*" { capabilities = ["read", "list"] }'})
        bao.api("POST", "/v1/auth/approle/role/bench", {"token_policies": ["bench"], "token_ttl": "1h"})
        role_id = bao.api("GET", "/v1/auth/approle/role/bench/role-id")["data"]["role_id"]
        secret_id = bao.api("POST", "/v1/auth/approle/role/bench/secret-id")["data"]["secret_id"]

        token_env = bao.env()
        approle_env = {"VAULT_ADDR": bao.addr}
        ours_approle = ", auth_method='approle', role_id=rid, secret_id=sid"
        theirs_approle = ", auth_method='approle', role_id=rid, secret_id=sid, url='%s'" % bao.addr
        approle_args = ["-e", "rid=%s sid=%s" % (role_id, secret_id)]
        paths_file = os.path.join(tempfile.mkdtemp(prefix="pm-bench-"), "vars.yml")
        with open(paths_file, "w") as handle:
            handle.write("paths:\n" + "".join("  - vps/b%d/admin_ssh\n" % i for i in range(n)))
            handle.write("names:\n" + "".join("  - b%d/admin_ssh\n" % i for i in range(n)))
        terms_args = ["-e", "@" + paths_file]

        scenarios = [
            ("loop-token", LOOP, OURS_ITEM.format(auth=""), THEIRS_ITEM.format(auth=""), BASELINE_ITEM, token_env, []),
            ("loop-approle", LOOP, OURS_ITEM.format(auth=ours_approle), THEIRS_ITEM.format(auth=theirs_approle), BASELINE_ITEM,
             approle_env, approle_args),
            ("terms-token", TERMS, OURS_TERMS, THEIRS_TERMS, BASELINE_TERMS, token_env, terms_args),
        ]
        print("%d lookups per play, OpenBao %s, median of %d runs each" % (n, bao.addr, args.repeat))
        print("%-13s %10s %10s %10s %8s %12s" % ("scenario", "ours s", "theirs s", "baseline s", "ratio", "net ratio"))
        worst = 0.0
        for name, shape, ours, theirs, baseline, env, extra in scenarios:
            times = {"ours": [], "theirs": [], "base": []}
            for dummy in range(args.repeat):
                for key, expr in (("ours", ours), ("theirs", theirs), ("base", baseline)):
                    times[key].append(timed(shape.format(n=n, expr=expr), env, extra))
            o, t, b = (statistics.median(times[k]) for k in ("ours", "theirs", "base"))
            ratio = o / t
            net = (o - b) / (t - b) if t > b else float("nan")
            worst = max(worst, ratio)
            print("%-13s %10.2f %10.2f %10.2f %7.2fx %11.2fx" % (name, o, t, b, ratio, net))
        print("goal: ours <= 0.5x theirs (raw wall time, worst scenario: %.2fx)" % worst)


if __name__ == "__main__":
    main()
