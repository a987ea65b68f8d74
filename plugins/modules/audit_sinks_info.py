#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: audit_sinks_info
short_description: Say where this run's audit events and alerts go, and warn when no alert can reach anyone
version_added: 0.3.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - Runs on the controller (an action plugin) and reads the configuration of the audit callback
    P(penguinmails.vps.audit#callback) of this run.
  - A scheduled run whose failures reach no one is silent; the collection's scheduled playbooks (rotate, rotate_all,
    backup, report, vault_history) call this first, so such a run says so at its start (a warning in the output, and
    so in an AWX job's output) and in its audit events (C(details.alert_sinks) is empty).
  - The places an alert can reach someone are the alert webhook, the alert mail, the webhook (every event) and syslog
    (the callback's C(alert_webhook_url), C(alert_email_to), C(webhook_url), C(syslog_address)); the audit file alone
    reaches no one.
extends_documentation_fragment:
  - penguinmails.vps.attributes
  - penguinmails.vps.attributes.info_module
  - penguinmails.vps.attributes.action
attributes:
  action:
    details: Runs on the controller as an action plugin; it needs the audit callback's state of the run.
options:
  warn:
    description:
      - Warn when no alert can reach anyone.
    type: bool
    default: true
seealso:
  - module: penguinmails.vps.audit_event
"""

EXAMPLES = r"""
- name: Say where this run's alerts go (a warning when nowhere)
  penguinmails.vps.audit_sinks_info:
  register: run_alerts
"""

RETURN = r"""
callback_enabled:
  description: Whether the audit callback P(penguinmails.vps.audit#callback) is enabled in this run.
  returned: always
  type: bool
  sample: true
alert_sinks:
  description: The configured places an alert can reach someone - C(alert webhook), C(alert email), C(webhook), C(syslog).
  returned: always
  type: list
  elements: str
  sample: ["alert webhook", "syslog"]
unheard:
  description: True when no alert of this run can reach anyone (no callback, or the audit file only).
  returned: always
  type: bool
  sample: false
message:
  description: One line that says where the alerts go, or that they go nowhere and how to change it.
  returned: always
  type: str
  sample: "alerts of this run go to: alert webhook, syslog"
"""
