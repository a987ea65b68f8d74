# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of penguinmails.vps.ssh_host_keys (documented in plugins/modules/ssh_host_keys.py).

The host step of a fleet run, for every tenant of one host at once: the Vault reads and check-and-set
writes run here, in the controller process, on one Vault client; the host is called twice in all
(module penguinmails.vps.authorized_key_batch: install, then drop the confirmed fallbacks); the logins
that verify the new keys run concurrently, bounded. The lifecycle itself is in module_utils/host_step.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleConnectionFailure
from ansible.plugins.action import ActionBase

from ansible_collections.penguinmails.vps.plugins.module_utils import host_step
from ansible_collections.penguinmails.vps.plugins.module_utils.validators import ValidationError
from ansible_collections.penguinmails.vps.plugins.module_utils.vault_client import (
    VaultError,
    controller_vault_options,
    get_client,
)

BATCH_MODULE = "penguinmails.vps.authorized_key_batch"


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        _validation, args = self.validate_argument_spec(argument_spec=host_step.argument_spec())
        agent = args["agent"] or (task_vars.get("hostvars") or {}).get("localhost", {}).get("penguinmails_ssh_agent") or {}
        host = dict(name=task_vars.get("inventory_hostname"),
                    address=self._templar.template(task_vars.get("ansible_host") or task_vars.get("inventory_hostname")),
                    port=int(self._templar.template(task_vars.get("ansible_port") or 22)))
        try:
            client = get_client(controller_vault_options(args, task_vars))
        except (VaultError, ValidationError) as exc:
            client = exc  # every tenant fails with this one reason (audited per tenant)
        step = host_step.HostStep(client, args, host, agent, lambda module_args: self._batch(module_args, task_vars),
                                  check_mode=bool(self._play_context.check_mode))
        result.update(step.run())
        if self._play_context.diff and step.diffs:
            result["diff"] = step.diffs
        return result

    def _batch(self, module_args, task_vars):
        """One call of the batch module on the host; the raw result (``unreachable``/``failed`` as Ansible gives them)."""
        try:
            return self._execute_module(module_name=BATCH_MODULE, module_args=module_args, task_vars=task_vars)
        except AnsibleConnectionFailure as exc:
            # every tenant of the host fails with this reason (audited per tenant); the play goes on to audit them
            return dict(unreachable=True, msg=" ".join(str(exc).split())[:300])
