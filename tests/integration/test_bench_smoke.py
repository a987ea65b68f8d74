# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""bench/rotate_all.py with a small N: the benchmark runs end to end (no timing assertion)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.ansible_run import REPO


def test_rotate_all_bench_small_n():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "ANSIBLE_"))}
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "bench", "rotate_all.py"), "--n", "6", "--peer-sample", "2",
         "--single-samples", "3"],
        capture_output=True, text=True, timeout=300, cwd=REPO, env=env, check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "bulk rotate_many: 6 keys" in proc.stdout
    assert "ratio to limit: " in proc.stdout
    assert "ours/peer ratio: " in proc.stdout
    assert "PRIVATE KEY" not in output
