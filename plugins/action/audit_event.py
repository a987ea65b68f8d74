# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of penguinmails.vps.audit_event: builds the event without touching the host."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import getpass
import ipaddress
import os

from ansible.plugins.action import ActionBase

from ansible_collections.penguinmails.vps.plugins.module_utils.audit import (
    AuditError,
    audit_event_argument_spec,
    build_event,
)


def _default_user(task_vars):
    for name in ("awx_user_name", "tower_user_name"):
        value = task_vars.get(name)
        if value:
            return str(value)
    try:
        return os.environ.get("PENGUINMAILS_AUDIT_USER") or getpass.getuser()
    except Exception:  # pylint: disable=broad-except
        return None


def _default_ip(task_vars):
    value = task_vars.get("ansible_host")
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        return None


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        validation, args = self.validate_argument_spec(argument_spec=audit_event_argument_spec())
        del validation
        try:
            event = build_event(
                action=args["action"],
                status=args["status"],
                tenant_id=args["tenant_id"],
                user_id=args["user_id"] or _default_user(task_vars),
                ip_address=args["ip_address"] or _default_ip(task_vars),
                details=args["details"],
                severity=args["severity"],
                no_log_values=args["redact_values"],
            )
        except AuditError as exc:
            result.update(failed=True, msg=str(exc))
            return result
        result.update(changed=False, audit_event=event)
        return result
