# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of penguinmails.vps.tenant_record: tells the module which run asks.

With ``run_id`` set, the module records who holds a migration: this controller's host name and the
``ansible-playbook`` process (the parent of this worker) with its start time, so a later run on the same
controller knows at once whether the holder is gone (killed) or still working. It also passes the runs that
ended after auditing their failure but could not release the migration (a marker file each in
``~/.ansible/penguinmails/ended-runs``, written by migrate when Vault refused the release), so those are taken
over without being reported as abandoned a second time.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import socket
import time

from ansible.plugins.action import ActionBase


ENDED_DIR = os.path.join(os.path.expanduser("~"), ".ansible", "penguinmails", "ended-runs")


ENDED_KEEP_SECONDS = 30 * 86400


def ended_runs():
    """Runs of this controller that ended after auditing their failure but could not release their migration
    (markers older than 30 days are removed: a lease expires long before)."""
    try:
        names = [name for name in os.listdir(ENDED_DIR) if not name.startswith(".")]
    except OSError:
        return []
    now = time.time()
    kept = []
    for name in names:
        path = os.path.join(ENDED_DIR, name)
        try:
            if now - os.lstat(path).st_mtime > ENDED_KEEP_SECONDS:
                os.unlink(path)
                continue
        except OSError:
            continue
        kept.append(name)
    return sorted(kept)


def run_owner():
    pid = os.getppid()
    start = None
    try:
        with open("/proc/%d/stat" % pid) as handle:
            start = handle.read().rsplit(") ", 1)[1].split()[19]
    except (OSError, IndexError):
        pass
    return {"host": socket.gethostname(), "pid": pid, "pid_start": start}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        args = dict(self._task.args)
        if args.get("run_id"):
            args["run_owner"] = run_owner()
            args["ended_runs"] = ended_runs()
        result.update(self._execute_module(module_name="penguinmails.vps.tenant_record", module_args=args, task_vars=task_vars))
        return result
