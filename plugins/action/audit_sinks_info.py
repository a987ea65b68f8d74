# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of penguinmails.vps.audit_sinks_info (documented in plugins/modules/audit_sinks_info.py): where the
run's alerts go, read from the audit callback's state of this run (module_utils/audit.RUN_STATE)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.plugins.action import ActionBase

from ansible_collections.penguinmails.vps.plugins.module_utils import audit

UNHEARD = ("no alert of this run can reach anyone: %s; set an alert sink of the penguinmails.vps.audit callback "
           "(PENGUINMAILS_AUDIT_ALERT_WEBHOOK_URL, PENGUINMAILS_AUDIT_ALERT_EMAIL_TO, PENGUINMAILS_AUDIT_WEBHOOK_URL or "
           "PENGUINMAILS_AUDIT_SYSLOG; docs/audit.md)")


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars or {})
        del tmp
        _validation, args = self.validate_argument_spec(argument_spec=dict(warn=dict(type="bool", default=True)))
        options = audit.RUN_STATE.get("options")
        sinks = audit.alert_channels(options) if options is not None else []
        if options is None:
            message = UNHEARD % "the audit callback is not enabled"
        elif not sinks:
            message = UNHEARD % "the audit callback writes the audit file only"
        else:
            message = "alerts of this run go to: %s" % ", ".join(sinks)
        if not sinks and args["warn"]:
            result["warnings"] = [message]
        result.update(changed=False, callback_enabled=options is not None, alert_sinks=sinks, unheard=not sinks,
                      message=message)
        return result
