# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of penguinmails.vps.mailbox_sync (documented in plugins/modules/mailbox_sync.py).

The copy (module_utils/maildir_sync.py) runs in this process, so its progress - messages and bytes done of the
total, the rate, the time left - reaches the operator while it runs (Ansible's display, and so an AWX job's
output), every O(progress_interval) seconds; the result keeps the figures (``progress``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.penguinmails.vps.plugins.module_utils import maildir_sync

display = Display()


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars or {})
        del tmp
        _validation, args = self.validate_argument_spec(argument_spec=maildir_sync.argument_spec())
        prefix = "[%s] " % (task_vars or {}).get("inventory_hostname", "localhost")
        try:
            result.update(maildir_sync.run_task(args, check_mode=bool(self._play_context.check_mode),
                                                show=lambda line: display.display(prefix + line)))
        except maildir_sync.SyncError as exc:
            result.update(failed=True, msg=str(exc))
        return result
