# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of penguinmails.vps.vault_session (documented in plugins/modules/vault_session.py).

One Vault login per run: ``present`` logs in once (AppRole or JWT) and keeps the token as the fact
``penguinmails_vault_session`` of the host it runs on (localhost in the playbooks), where the collection's action
plugins and, through the plays' ``module_defaults``, its modules find it instead of logging in again;
``absent`` revokes it (``auth/token/revoke-self``). With token auth there is nothing to log in to: the session
stays empty and the caller's own token is never revoked. The result is hidden like a ``no_log`` task's.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible.plugins.action import ActionBase

from ansible_collections.penguinmails.vps.plugins.module_utils import vault_client as vc


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        spec = vc.vault_argument_spec()
        spec.update(state=dict(type="str", default="present", choices=["present", "absent"]))
        _validation, args = self.validate_argument_spec(argument_spec=spec)
        session = task_vars.get(vc.SESSION_FACT) or {}
        # never hand a token back to a callback, whatever happens below
        result["_ansible_no_log"] = True
        if session.get("token") and args.get("token") == session["token"]:
            # the plays' module_defaults hand every Vault task the session's token; this task means the login behind it
            args = dict(args, token=None, auth_method=None)
        try:
            settings = vc.resolve_settings(vc.controller_vault_options(args, task_vars, session=False))
            if args["state"] == "absent":
                revoked = vc.end_session(session, settings)
                result.update(changed=revoked, ansible_facts={vc.SESSION_FACT: {}}, session=dict(revoked=revoked))
                return result
            if vc.session_usable(session, settings, time.time()):
                result.update(changed=False, session=vc.session_summary(session))
                return result
            session = vc.start_session(settings)
            result.update(changed=bool(session), ansible_facts={vc.SESSION_FACT: session}, session=vc.session_summary(session))
        except vc.VaultError as exc:
            result.update(failed=True, msg="vault_session: %s" % exc)
        return result
