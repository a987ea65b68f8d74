# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: audit
type: notification
short_description: Hash-chained audit events for tenant secrets and VPS operations, with alerts
version_added: 0.1.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - Turns audit points of a playbook run into audit events in the seed's format (C(timestamp),
    C(action), C(tenantId), C(userId), C(ipAddress), C(status), C(details)), plus C(severity),
    C(context) (playbook, play, task, host, check mode, AWX job), C(seq), C(prev_hash),
    C(hash_alg) and C(hash).
  - "B(Contract) - a task is an audit point when its result carries an C(audit_event) mapping.
    The simple way is the action M(penguinmails.vps.audit_event) (runs on the controller, never
    touches the host); a module may also return C(audit_event) itself (keys C(action), C(status),
    C(tenant_id) or C(tenantId), C(user_id), C(ip_address), C(details), C(severity)). Items of a loop
    are audit points one by one. Failed tasks count too, so a module can report its own failure."
  - Every event is linked to the previous one by C(prev_hash) and SHA-256 (or HMAC-SHA256 with
    O(chain_key)); C(python plugins/module_utils/audit.py verify FILE) finds edited, removed or
    reordered events. The chain continues across runs and concurrent processes (file lock).
  - Sinks - the JSON lines O(file) (mode 0600), O(syslog_address), O(webhook_url) for every
    event; O(alert_webhook_url) and the O(alert_email_to) mail for events whose severity is in
    O(alert_severities) (by default V(critical) - V(vps_migration_failed) and any failure).
    Webhooks are retried on transport errors, 408, 429 and 5xx, at most O(webhook_attempts)
    times. A sink that fails produces one warning and never stops the play or the other sinks.
  - Secrets are never written. Ansible hides results of C(no_log) tasks from callbacks, and every
    event is redacted again here - values under keys like C(password), C(token), C(secret),
    C(private_key), C(api_key), and PEM private keys, Vault tokens, JWTs, bearer values and
    C(user:password@) inside any string, nested at any depth.
  - An C(audit_event) task hidden by C(no_log) is recorded as C(audit_event_hidden) with a
    warning, so an audit point is never lost silently.
  - Works beside any stdout callback (it is a notification callback) and in AWX/AAP - enable it
    with E(ANSIBLE_CALLBACKS_ENABLED=penguinmails.vps.audit) in the job template's environment
    and prefer the syslog or webhook sinks there, since the file lives in the job's container.
requirements:
  - Python standard library only (urllib, smtplib, socket).
options:
  file:
    description:
      - JSON lines file the events are appended to; the hash chain continues from its last line.
      - Set to an empty string to keep the chain in memory only (for example in AWX, together with
        O(syslog_address) or O(webhook_url)).
    type: str
    default: ~/.ansible/penguinmails/audit.jsonl
    env:
      - name: PENGUINMAILS_AUDIT_FILE
    ini:
      - section: penguinmails_audit
        key: file
  chain_key:
    description:
      - With a key, the chain uses HMAC-SHA256, so an attacker who can write the file cannot
        re-hash an edited event; C(verify) then needs the key in E(PENGUINMAILS_AUDIT_CHAIN_KEY).
    type: str
    env:
      - name: PENGUINMAILS_AUDIT_CHAIN_KEY
    ini:
      - section: penguinmails_audit
        key: chain_key
  syslog_address:
    description:
      - Syslog destination for every event (RFC 5424, JSON body) - a Unix socket path such as
        V(/dev/log), or V(udp://host:port) or V(tcp://host:port).
    type: str
    env:
      - name: PENGUINMAILS_AUDIT_SYSLOG
    ini:
      - section: penguinmails_audit
        key: syslog_address
  syslog_facility:
    description:
      - Syslog facility.
    type: str
    default: authpriv
    choices: [auth, authpriv, daemon, user, local0, local1, local2, local3, local4, local5, local6, local7]
    env:
      - name: PENGUINMAILS_AUDIT_SYSLOG_FACILITY
    ini:
      - section: penguinmails_audit
        key: syslog_facility
  webhook_url:
    description:
      - URL every event is POSTed to as JSON.
    type: str
    env:
      - name: PENGUINMAILS_AUDIT_WEBHOOK_URL
    ini:
      - section: penguinmails_audit
        key: webhook_url
  alert_webhook_url:
    description:
      - URL alert events (see O(alert_severities)) are POSTed to as JSON.
    type: str
    env:
      - name: PENGUINMAILS_AUDIT_ALERT_WEBHOOK_URL
    ini:
      - section: penguinmails_audit
        key: alert_webhook_url
  webhook_secret:
    description:
      - When set, every webhook request carries C(X-Penguinmails-Signature) = C(sha256=) and the
        HMAC-SHA256 of the body with this secret.
    type: str
    env:
      - name: PENGUINMAILS_AUDIT_WEBHOOK_SECRET
    ini:
      - section: penguinmails_audit
        key: webhook_secret
  webhook_attempts:
    description:
      - Attempts per event and webhook (the first try included); back-off doubles from O(webhook_backoff).
    type: int
    default: 3
    env:
      - name: PENGUINMAILS_AUDIT_WEBHOOK_ATTEMPTS
    ini:
      - section: penguinmails_audit
        key: webhook_attempts
  webhook_timeout:
    description:
      - Seconds to wait for one webhook request.
    type: int
    default: 5
    env:
      - name: PENGUINMAILS_AUDIT_WEBHOOK_TIMEOUT
    ini:
      - section: penguinmails_audit
        key: webhook_timeout
  webhook_backoff:
    description:
      - Seconds before the first retry.
    type: float
    default: 0.5
    env:
      - name: PENGUINMAILS_AUDIT_WEBHOOK_BACKOFF
    ini:
      - section: penguinmails_audit
        key: webhook_backoff
  webhook_validate_certs:
    description:
      - Verify the TLS certificate of HTTPS webhooks.
    type: bool
    default: true
    env:
      - name: PENGUINMAILS_AUDIT_WEBHOOK_VALIDATE_CERTS
    ini:
      - section: penguinmails_audit
        key: webhook_validate_certs
  alert_severities:
    description:
      - Severities that count as alerts.
    type: list
    elements: str
    default: [critical]
    env:
      - name: PENGUINMAILS_AUDIT_ALERT_SEVERITIES
    ini:
      - section: penguinmails_audit
        key: alert_severities
  alert_email_to:
    description:
      - Recipients of alert mails (comma-separated in the environment variable). No mail when empty.
    type: list
    elements: str
    env:
      - name: PENGUINMAILS_AUDIT_ALERT_EMAIL_TO
    ini:
      - section: penguinmails_audit
        key: alert_email_to
  alert_email_from:
    description:
      - Sender of alert mails.
    type: str
    default: penguinmails-audit@localhost
    env:
      - name: PENGUINMAILS_AUDIT_ALERT_EMAIL_FROM
    ini:
      - section: penguinmails_audit
        key: alert_email_from
  smtp_host:
    description:
      - SMTP server for alert mails.
    type: str
    default: localhost
    env:
      - name: PENGUINMAILS_AUDIT_SMTP_HOST
    ini:
      - section: penguinmails_audit
        key: smtp_host
  smtp_port:
    description:
      - SMTP port.
    type: int
    default: 25
    env:
      - name: PENGUINMAILS_AUDIT_SMTP_PORT
    ini:
      - section: penguinmails_audit
        key: smtp_port
  smtp_security:
    description:
      - V(starttls) upgrades the connection, V(tls) connects with TLS (port 465).
    type: str
    default: none
    choices: [none, starttls, tls]
    env:
      - name: PENGUINMAILS_AUDIT_SMTP_SECURITY
    ini:
      - section: penguinmails_audit
        key: smtp_security
  smtp_username:
    description:
      - SMTP AUTH user; no AUTH when unset.
    type: str
    env:
      - name: PENGUINMAILS_AUDIT_SMTP_USERNAME
    ini:
      - section: penguinmails_audit
        key: smtp_username
  smtp_password:
    description:
      - SMTP AUTH password.
    type: str
    env:
      - name: PENGUINMAILS_AUDIT_SMTP_PASSWORD
    ini:
      - section: penguinmails_audit
        key: smtp_password
notes:
  - Tag audit tasks with C(always) so that C(--tags) runs still record them.
  - Keep the last hash that C(verify) prints (or rely on the syslog/webhook copies) - removing the
    newest events from the end of the file cannot be detected from the file alone.
seealso:
  - module: penguinmails.vps.audit_event
"""

EXAMPLES = r"""
# ansible.cfg
# [defaults]
# callbacks_enabled = penguinmails.vps.audit
#
# [penguinmails_audit]
# file = /var/log/penguinmails/audit.jsonl
# syslog_address = /dev/log
# alert_webhook_url = https://alerts.example.com/hooks/penguinmails
# alert_email_to = ops@example.com, security@example.com
# smtp_host = smtp.example.com
# smtp_port = 587
# smtp_security = starttls

# Or for one run:
#   ANSIBLE_CALLBACKS_ENABLED=penguinmails.vps.audit \
#   PENGUINMAILS_AUDIT_FILE=/var/log/penguinmails/audit.jsonl \
#   ansible-playbook penguinmails.vps.rotate -e tenant_id=t1
# and check the chain:
#   python ansible_collections/penguinmails/vps/plugins/module_utils/audit.py verify /var/log/penguinmails/audit.jsonl
"""

import getpass
import ipaddress
import os

from ansible.plugins.callback import CallbackBase

from ansible_collections.penguinmails.vps.plugins.module_utils.audit import (
    AuditError,
    AuditLog,
    EmailSink,
    SyslogSink,
    WebhookSink,
    build_event,
    normalize_event,
)

AUDIT_ACTION = "audit_event"


def _task_result(result):
    data = getattr(result, "result", None)
    if not isinstance(data, dict):
        data = getattr(result, "_result", None)
    return data if isinstance(data, dict) else {}


def _task_of(result):
    return getattr(result, "task", None) or getattr(result, "_task", None)


def _host_of(result):
    return getattr(result, "host", None) or getattr(result, "_host", None)


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "penguinmails.vps.audit"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None):
        super(CallbackModule, self).__init__(display=display)
        self.log = None
        self.playbook = None
        self.play = None
        self.extra = {}
        self.count = 0

    # -- configuration ----------------------------------------------------------------------
    def set_options(self, task_keys=None, var_options=None, direct=None):
        super(CallbackModule, self).set_options(task_keys=task_keys, var_options=var_options, direct=direct)
        opt = self.get_option
        syslog = webhook = alert_webhook = email = None
        try:
            if opt("syslog_address"):
                syslog = SyslogSink(opt("syslog_address"), facility=opt("syslog_facility"))
            hook = dict(attempts=opt("webhook_attempts"), timeout=opt("webhook_timeout"), backoff=opt("webhook_backoff"),
                        secret=opt("webhook_secret"), validate_certs=opt("webhook_validate_certs"))
            if opt("webhook_url"):
                webhook = WebhookSink(opt("webhook_url"), **hook)
            if opt("alert_webhook_url"):
                alert_webhook = WebhookSink(opt("alert_webhook_url"), **hook)
            recipients = [r.strip() for r in (opt("alert_email_to") or []) if r and r.strip()]
            if recipients:
                email = EmailSink(opt("smtp_host"), port=opt("smtp_port"), sender=opt("alert_email_from"),
                                  recipients=recipients, username=opt("smtp_username"), password=opt("smtp_password"),
                                  security=opt("smtp_security"))
        except AuditError as exc:
            self._warn("configuration: %s" % exc)
        path = opt("file")
        self.log = AuditLog(
            file_path=os.path.expanduser(path) if path else None,
            chain_key=opt("chain_key"),
            syslog=syslog,
            webhook=webhook,
            alert_webhook=alert_webhook,
            email=email,
            alert_severities=opt("alert_severities") or ("critical",),
            warn=self._warn,
        )

    def _warn(self, message):
        self._display.warning("penguinmails.vps.audit: %s" % message)

    # -- play context -----------------------------------------------------------------------
    def v2_playbook_on_start(self, playbook):
        self.playbook = os.path.basename(getattr(playbook, "_file_name", "") or "") or None

    def v2_playbook_on_play_start(self, play):
        self.play = play.get_name()
        try:
            extra = play.get_variable_manager().extra_vars
        except Exception:  # pylint: disable=broad-except
            extra = {}
        self.extra = dict((k, str(extra[k])) for k in ("awx_job_id", "awx_user_name", "tower_user_name") if extra.get(k))

    # -- audit points -----------------------------------------------------------------------
    def v2_runner_on_ok(self, result):
        self._collect(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._collect(result)

    def v2_playbook_on_stats(self, stats):
        if self.log is not None and self.count:
            where = self.log.store.path if hasattr(self.log.store, "path") else "memory"
            self._display.v("penguinmails.vps.audit: %d event(s) recorded (%s)" % (self.count, where))

    def _collect(self, result):
        if self.log is None:
            return
        data = _task_result(result)
        task = _task_of(result)
        action = str(getattr(task, "resolved_action", None) or getattr(task, "action", "") or "")
        candidates = []
        if isinstance(data.get("audit_event"), dict):
            candidates.append(data["audit_event"])
        for item in data.get("results") or []:
            if isinstance(item, dict) and isinstance(item.get("audit_event"), dict):
                candidates.append(item["audit_event"])
        if not candidates and data.get("censored") and action.rsplit(".", maxsplit=1)[-1] == AUDIT_ACTION:
            self._warn("the audit_event task %r is no_log: its event was hidden from the callback; remove no_log"
                       % self._task_name(task))
            candidates.append({"action": "audit_event_hidden", "status": "failure", "severity": "warning",
                               "details": {"reason": "no_log task"}})
        for candidate in candidates:
            self._emit(candidate, result, task)

    def _emit(self, candidate, result, task):
        try:
            event = normalize_event(candidate)
        except AuditError as exc:
            self._warn("task %r returned an invalid audit_event: %s" % (self._task_name(task), exc))
            event = build_event("audit_event_invalid", status="failure", severity="warning",
                                details={"error": str(exc)})
        host = _host_of(result)
        if not event.get("userId"):
            event["userId"] = self.extra.get("awx_user_name") or self.extra.get("tower_user_name") or _login_user()
        if not event.get("ipAddress") and host is not None:
            event["ipAddress"] = _host_ip(host)
        context = {
            "playbook": self.playbook,
            "play": self.play,
            "task": self._task_name(task),
            "host": host.get_name() if host is not None else None,
            "check_mode": bool(getattr(task, "check_mode", False)),
        }
        if self.extra.get("awx_job_id"):
            context["awx_job_id"] = self.extra["awx_job_id"]
        self.log.emit(event, context)
        self.count += 1

    @staticmethod
    def _task_name(task):
        try:
            return task.get_name()
        except Exception:  # pylint: disable=broad-except
            return None


def _login_user():
    try:
        return os.environ.get("PENGUINMAILS_AUDIT_USER") or getpass.getuser()
    except Exception:  # pylint: disable=broad-except
        return None


def _host_ip(host):
    try:
        value = host.get_vars().get("ansible_host")
        return str(ipaddress.ip_address(str(value)))
    except Exception:  # pylint: disable=broad-except
        return None
