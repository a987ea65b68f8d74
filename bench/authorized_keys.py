#!/usr/bin/env python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: penguinmails.vps.authorized_key_rotate vs ansible.posix.authorized_key on a big file.

An authorized_keys file of --lines lines (default 1000 unmanaged keys) is changed --ops times in one
play (local connection, the file given with the modules' ``path`` option, user root):

  add      each task adds one new key
  rerun    the same tasks again (nothing changes; both must report ok)
  rotate   each task installs a new key and gives the previous one expiry-time (a rotation with grace);
           ansible.posix.authorized_key needs two tasks for it (key + key_options on the old key)
  revoke   each task removes one key

The file is rebuilt before every scenario; the median of --repeat runs is reported with the ratio
ours/theirs, raw and net of a baseline play of the same shape that does nothing.

    .venv/bin/python bench/authorized_keys.py [--lines 1000] [--ops 20] [--repeat 3]
"""
from __future__ import annotations

import argparse
import datetime
import os
import shutil
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "collections"))

from tests.support.ansible_run import ensure_collection_link, run_playbook  # noqa: E402

HEAD = """
- hosts: localhost
  gather_facts: false
  vars_files: [{vars_file}]
  tasks:
"""

OURS = {
    "add": """
    - name: Add one key per task
      penguinmails.vps.authorized_key_rotate:
        user: root
        path: "{path}"
        keys: ["{{{{ item.new }}}}"]
        marker: "bench:{{{{ item.i }}}}"
      loop: "{{{{ ops }}}}"
""",
    "rotate": """
    - name: New key, previous key with expiry-time
      penguinmails.vps.authorized_key_rotate:
        user: root
        path: "{path}"
        keys: ["{{{{ item.newer }}}}"]
        grace_keys: [{{key: "{{{{ item.new }}}}", expires: "{{{{ expiry_iso }}}}"}}]
        marker: "bench:{{{{ item.i }}}}"
      loop: "{{{{ ops }}}}"
""",
    "revoke": """
    - name: Remove one key per task
      penguinmails.vps.authorized_key_rotate:
        user: root
        path: "{path}"
        revoked_keys: ["{{{{ item.newer }}}}", "{{{{ item.new }}}}"]
      loop: "{{{{ ops }}}}"
""",
}

THEIRS = {
    "add": """
    - name: Add one key per task
      ansible.posix.authorized_key:
        user: root
        path: "{path}"
        manage_dir: false
        key: "{{{{ item.new }}}}"
        comment: "bench:{{{{ item.i }}}}"
      loop: "{{{{ ops }}}}"
""",
    "rotate": """
    - name: New key
      ansible.posix.authorized_key:
        user: root
        path: "{path}"
        manage_dir: false
        key: "{{{{ item.newer }}}}"
        comment: "bench:{{{{ item.i }}}}"
      loop: "{{{{ ops }}}}"
    - name: Previous key with expiry-time
      ansible.posix.authorized_key:
        user: root
        path: "{path}"
        manage_dir: false
        key: "{{{{ item.new }}}}"
        key_options: 'expiry-time="{{{{ expiry_ssh }}}}"'
        comment: "bench:{{{{ item.i }}}}"
      loop: "{{{{ ops }}}}"
""",
    "revoke": """
    - name: Remove one key per task
      ansible.posix.authorized_key:
        user: root
        path: "{path}"
        manage_dir: false
        key: "{{{{ item.newer }}}}\\n{{{{ item.new }}}}"
        state: absent
      loop: "{{{{ ops }}}}"
""",
}

BASELINE = """
    - name: The same loop doing nothing
      ansible.builtin.set_fact:
        value: "{{{{ item.i }}}}"
      loop: "{{{{ ops }}}}"
"""

# Which file state each scenario starts from.
START = {"add": "base", "rerun": "added", "rotate": "added", "revoke": "rotated"}


def timed(playbook):
    started = time.perf_counter()
    result = run_playbook(playbook)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit("benchmark play failed:\n%s\n%s" % (result.stdout[-3000:], result.stderr[-2000:]))
    return elapsed, result.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--ops", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    ensure_collection_link()
    from ansible_collections.penguinmails.vps.plugins.module_utils import ssh_keys

    def public():
        return ssh_keys.generate_keypair("ed25519", comment="bench").public_key.rsplit(" ", 1)[0]

    work = tempfile.mkdtemp(prefix="pm-bench-ak-")
    try:
        base = "".join("%s user%d@example.com\n" % (public(), i) for i in range(args.lines))
        ops = [{"i": i, "new": public(), "newer": public()} for i in range(args.ops)]
        expiry = datetime.datetime.now(datetime.timezone.utc).replace(second=0, microsecond=0) + datetime.timedelta(days=1)
        vars_file = os.path.join(work, "vars.yml")
        with open(vars_file, "w") as handle:
            handle.write("expiry_iso: '%s'\nexpiry_ssh: '%s'\nops:\n" % (expiry.strftime("%Y-%m-%dT%H:%M:%SZ"), expiry.strftime("%Y%m%d%H%MZ")))
            for op in ops:
                handle.write("  - {i: %d, new: '%s', newer: '%s'}\n" % (op["i"], op["new"], op["newer"]))
        path = os.path.join(work, "authorized_keys")
        head = HEAD.format(vars_file=vars_file)

        def prepare(state, who):
            """The file as the scenario expects it, made by the same implementation."""
            with open(path, "w") as handle:
                handle.write(base)
            os.chmod(path, 0o600)
            tasks = {"base": [], "added": ["add"], "rotated": ["add", "rotate"]}[state]
            for scenario in tasks:
                body = (OURS if who == "ours" else THEIRS)[scenario].format(path=path)
                timed(head + body)

        print("authorized_keys of %d lines, %d operations per play, median of %d runs (cores: %s)"
              % (args.lines, args.ops, args.repeat, os.cpu_count()))
        print("%-8s %9s %9s %11s %8s %10s" % ("scenario", "ours s", "theirs s", "baseline s", "ratio", "net ratio"))
        base_times = [timed(head + BASELINE.format())[0] for dummy in range(args.repeat)]
        b = statistics.median(base_times)
        for scenario in ("add", "rerun", "rotate", "revoke"):
            times = {"ours": [], "theirs": []}
            for dummy in range(args.repeat):
                for who, table in (("ours", OURS), ("theirs", THEIRS)):
                    prepare(START[scenario], who)
                    body = table["add" if scenario == "rerun" else scenario].format(path=path)
                    elapsed, stdout = timed(head + body)
                    if scenario == "rerun":
                        assert "changed=0" in stdout, stdout[-2000:]
                    times[who].append(elapsed)
                    with open(path) as handle:
                        lines = handle.read().splitlines()
                    assert len(lines) >= args.lines, (who, scenario, len(lines))
            o, t = statistics.median(times["ours"]), statistics.median(times["theirs"])
            net = (o - b) / (t - b) if t > b else float("nan")
            print("%-8s %9.2f %9.2f %11.2f %7.2fx %9.2fx" % (scenario, o, t, b, o / t, net))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
