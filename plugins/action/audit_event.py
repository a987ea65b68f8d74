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
    AUDIT_EVENT_MUTUALLY_EXCLUSIVE,
    AUDIT_EVENT_REQUIRED_ONE_OF,
    AuditError,
    audit_event_argument_spec,
    audit_log_from_options,
    build_event,
)
from ansible_collections.penguinmails.vps.plugins.module_utils.audit_format import origin_address, user_agent


def _default_user(task_vars):
    for name in ("awx_user_name", "tower_user_name"):
        value = task_vars.get(name)
        if value:
            return str(value)
    try:
        return os.environ.get("PENGUINMAILS_AUDIT_USER") or getpass.getuser()
    except Exception:  # pylint: disable=broad-except
        return None


def _host_address(task_vars):
    """The VPS the task is about (``details.vps_ip``): its ``ansible_host`` when that is an IP address."""
    value = task_vars.get("ansible_host")
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        return None


def _job_id(task_vars):
    """The AWX/AAP job this run is, where there is one."""
    return task_vars.get("awx_job_id") or task_vars.get("tower_job_id") or os.environ.get("JOB_ID")


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        validation, args = self.validate_argument_spec(argument_spec=audit_event_argument_spec(),
                                                       mutually_exclusive=AUDIT_EVENT_MUTUALLY_EXCLUSIVE,
                                                       required_one_of=AUDIT_EVENT_REQUIRED_ONE_OF)
        del validation
        many = args["events"] is not None
        items = args["events"] if many else [args]
        events = []
        # Every event is built (and so checked) before any is delivered: a bad one delivers none.
        for index, item in enumerate(items):
            try:
                events.append(build_event(
                    action=item["action"],
                    status=item["status"],
                    tenant_id=item["tenant_id"],
                    user_id=item["user_id"] or _default_user(task_vars),
                    ip_address=item["ip_address"] or origin_address(),
                    vps_ip=item["vps_ip"] or _host_address(task_vars),
                    agent=user_agent(_job_id(task_vars)),
                    details=item["details"],
                    severity=item["severity"],
                    no_log_values=item["redact_values"],
                ))
            except AuditError as exc:
                result.update(failed=True, msg=("events[%d]: %s" % (index, exc)) if many else str(exc))
                return result
        result.update(changed=False)
        state = audit.RUN_STATE
        if state.get("options") is not None and not self._task.no_log:
            # Callback enabled: deliver each event (all of them, even after one failed). A no_log task: the callback
            # records that an audit point was hidden (audit_event_hidden); without the callback the events are only
            # returned.
            events = self._deliver(events, state, task_vars, result, many)
        if many:
            result["audit_events"] = events
            if events:
                result["audit_event"] = events[-1]
        else:
            result["audit_event"] = events[0]
        return result

    def _deliver(self, events, state, task_vars, result, many):
        """Deliver every event (one refused never stops the next); the task fails with the first verdict, naming the
        event's index in ``events``."""
        options = state["options"]
        log = audit_log_from_options(options, run_file=state.get("run_file"))
        delivered, summaries, warnings, verdicts = [], [], [], []
        for index, event in enumerate(events):
            delivery = log.deliver(event, self._context(state, task_vars))
            delivered.append(delivery.event)
            summaries.append(delivery.summary())
            warnings += ["penguinmails.vps.audit: %s" % message for message in delivery.warnings()]
            verdict = delivery.verdict(options.get("on_sink_failure") or "warn", options.get("on_event_lost") or "fail")
            if verdict:
                verdicts.append(("events[%d]: %s" % (index, verdict)) if many else verdict)
        if summaries:
            result["audit_delivery"] = summaries[-1]
        if warnings:
            result["warnings"] = warnings
        if verdicts:
            more = " (and %d more of the list)" % (len(verdicts) - 1) if len(verdicts) > 1 else ""
            result.update(failed=True, msg=verdicts[0] + more)
        return delivered

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
