# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run-private ssh-agents of penguinmails.vps.ssh_agent, seen from outside (other runs' agents ignored)."""

from __future__ import annotations

import os

from tests.support.wait import wait_until


def watchdogs_of(run_pid):
    """Pids of the agent watchdogs that guard the ansible-playbook process ``run_pid``."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % name, "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            continue
        if len(argv) > 4 and argv[1] == b"-c" and b"pm-agent-" in argv[2] and argv[3] == str(run_pid).encode():
            found.append(int(name))
    return found


def wait_agents_gone(run_pid, timeout=30):
    """Wait until every agent of the run ``run_pid`` is gone with its directory (its watchdog removes both)."""
    wait_until(lambda: not watchdogs_of(run_pid), timeout, "the ssh-agents of run %s to go" % run_pid)
