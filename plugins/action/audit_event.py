# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of penguinmails.vps.audit_event: builds the event without touching the host and,
when the audit callback is enabled, writes it to the callback's sinks before the task completes, so
that an event no sink accepted fails the task (the callback's ``on_event_lost`` / ``on_sink_failure``)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import getpass
import ipaddress
import os

from ansible.plugins.action import ActionBase

from ansible_collections.penguinmails.vps.plugins.module_utils import audit
from ansible_collections.penguinmails.vps.plugins.module_utils.audit import (
    AuditError,
    audit_event_argument_spec,
    audit_log_from_options,
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
        state = audit.RUN_STATE
        if state.get("options") is None or self._task.no_log:
            # Callback not enabled: the event is only returned. A no_log task: the callback records
            # that an audit point was hidden (audit_event_hidden).
            return result
        options = state["options"]
        log = audit_log_from_options(options, run_file=state.get("run_file"))
        delivery = log.deliver(event, self._context(state, task_vars))
        result["audit_event"] = delivery.event
        result["audit_delivery"] = delivery.summary()
        warnings = ["penguinmails.vps.audit: %s" % message for message in delivery.warnings()]
        if warnings:
            result["warnings"] = warnings
        verdict = delivery.verdict(options.get("on_sink_failure") or "warn", options.get("on_event_lost") or "fail")
        if verdict:
            result.update(failed=True, msg=verdict)
        return result

    def _context(self, state, task_vars):
        context = {
            "playbook": state.get("playbook"),
            "play": state.get("play") or task_vars.get("ansible_play_name"),
            "task": self._task.get_name(),
            "host": task_vars.get("inventory_hostname"),
            "check_mode": bool(self._play_context.check_mode),
        }
        job = (state.get("extra") or {}).get("awx_job_id") or task_vars.get("awx_job_id")
        if job:
            context["awx_job_id"] = str(job)
        return context
