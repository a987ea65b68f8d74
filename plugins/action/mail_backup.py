# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of penguinmails.vps.mail_backup (documented in plugins/modules/mail_backup.py).

A restore can take long: while the module runs (on the controller, where the module's restic runs), this plugin
shows the progress lines the module appends to a private file (messages and bytes done of the snapshot's, the rate,
the time left), so the operator - and an AWX job's output - sees the restore move instead of one task hanging.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import tempfile
import threading

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()


def new_lines(path, offset):
    """The complete lines appended to ``path`` since ``offset``, and the new offset."""
    try:
        with open(path) as handle:
            handle.seek(offset)
            data = handle.read()
    except OSError:
        return [], offset
    complete = data[:data.rfind("\n") + 1]
    return complete.splitlines(), offset + len(complete)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        args = dict(self._task.args)
        live = (args.get("state") == "restored" and not self._play_context.check_mode
                and self._connection.transport in ("local", "ansible.builtin.local"))
        if not live:
            result.update(self._execute_module(module_name="penguinmails.vps.mail_backup", module_args=args,
                                               task_vars=task_vars))
            return result
        workdir = tempfile.mkdtemp(prefix="pm-restore-progress-")  # 0700: the lines name the tenant's mail volume
        args["progress_file"] = os.path.join(workdir, "progress")
        outcome = {}

        def execute():
            try:
                outcome["result"] = self._execute_module(module_name="penguinmails.vps.mail_backup", module_args=args,
                                                         task_vars=task_vars)
            except Exception as exc:  # pylint: disable=broad-except  # reported as the task's failure below
                outcome["error"] = exc

        worker = threading.Thread(target=execute, name="mail_backup-restore")
        prefix = "[%s] " % task_vars.get("inventory_hostname", "localhost")
        offset = 0
        try:
            worker.start()
            running = True
            while running:
                worker.join(1.0)
                running = worker.is_alive()  # read once more after the module ended: its last lines
                lines, offset = new_lines(args["progress_file"], offset)
                for line in lines:
                    display.display(prefix + line)
        finally:
            worker.join()
            shutil.rmtree(workdir, ignore_errors=True)
        if "error" in outcome:
            raise outcome["error"]
        module_result = outcome["result"]
        module_result.get("invocation", {}).get("module_args", {}).pop("progress_file", None)
        result.update(module_result)
        return result
