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
    O(chain_key)) and carries its file's C(chain_id) and C(seq). The chain continues across runs and
    concurrent processes (file lock). The verify command (playbook C(penguinmails.vps.audit_verify),
    or C(python3 -m ansible_collections.penguinmails.vps.plugins.module_utils.audit verify FILE)) finds
    edited, removed, inserted or reordered events and names the first bad line.
  - B(Anchors) - at the end of each run a checkpoint (action C(audit_checkpoint); the file's last
    C(seq), C(hash) and C(chain_id)) goes to O(syslog_address) and O(webhook_url). C(verify --anchor)
    checks the file against what those sinks received, which finds a cut-off end, a replaced file and
    a rewritten chain.
  - B(No event is dropped) - a damaged end of the file (a half-written line) is left as it is and the
    next event starts a new segment after a C(chain_break) event (critical) that links to the last
    intact event and records the bytes skipped. An M(penguinmails.vps.audit_event) task writes its
    event before it completes and fails when no sink accepted it (O(on_event_lost)) or, with
    O(on_sink_failure=fail), when any sink refused it.
  - Sinks - the JSON lines O(file) (mode 0600), O(syslog_address), O(webhook_url) for every
    event; O(alert_webhook_url) and the O(alert_email_to) mail for events whose severity is in
    O(alert_severities) (by default V(critical) - V(vps_migration_failed), C(chain_break), and any
    failure). Webhooks go through C(ansible.module_utils.urls.open_url) and verify TLS
    (O(webhook_validate_certs), O(webhook_ca_path)); alert mail verifies TLS
    (O(smtp_validate_certs), O(smtp_ca_path)) and never sends a password without TLS. Webhooks are
    retried on transport errors, 408, 429 and 5xx, at most O(webhook_attempts) times.
  - Secrets are never written. Ansible hides results of C(no_log) tasks from callbacks; each action
    keeps only the detail fields it declares (C(ACTIONS) in C(plugins/module_utils/audit.py)); and
    every event is redacted - mapping keys and values, values under keys like C(password), C(pw),
    C(token), C(secret), C(private_key), C(api_key), C(value), and PEM and OpenSSH private keys,
    Vault tokens, JWTs, bearer values, C(password=...) and C(pw=...), C(user:password@), hex keys
    and random-looking words inside any string, nested at any depth.
  - An C(audit_event) task hidden by C(no_log) is recorded as C(audit_event_hidden) with a
    warning, so an audit point is never lost silently.
  - Works beside any stdout callback (it is a notification callback) and in AWX/AAP - enable it
    with E(ANSIBLE_CALLBACKS_ENABLED=penguinmails.vps.audit) in the job template's environment
    and prefer the syslog or webhook sinks there, since the file lives in the job's container.
requirements:
  - ansible-core (C(ansible.module_utils.urls) for webhooks) and the Python standard library.
options:
  file:
    description:
      - JSON lines file the events are appended to; the hash chain continues from its last line.
      - Set to an empty string to chain the run's events in a private temporary file that is removed at
        the end (for example in AWX, together with O(syslog_address) or O(webhook_url)); that file is
        not a sink, so an event then needs syslog or a webhook to count as accepted.
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
        re-hash an edited event; C(verify) then needs the key in E(PENGUINMAILS_AUDIT_CHAIN_KEY) and
        accepts only HMAC-SHA256 lines (a line rewritten as plain SHA-256 is reported).
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
  webhook_ca_path:
    description:
      - PEM file of CA certificates to verify HTTPS webhooks against (besides the system's).
    type: path
    version_added: 0.2.0
    env:
      - name: PENGUINMAILS_AUDIT_WEBHOOK_CA_PATH
    ini:
      - section: penguinmails_audit
        key: webhook_ca_path
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
      - V(starttls) upgrades the connection, V(tls) connects with TLS (port 465); both verify the
        server's certificate (O(smtp_validate_certs)).
      - V(none) sends in clear and therefore refuses O(smtp_username) - the password is never sent
        over a connection that is not encrypted.
    type: str
    default: none
    choices: [none, starttls, tls]
    env:
      - name: PENGUINMAILS_AUDIT_SMTP_SECURITY
    ini:
      - section: penguinmails_audit
        key: smtp_security
  smtp_validate_certs:
    description:
      - Verify the SMTP server's TLS certificate (C(ssl.create_default_context())) with
        O(smtp_security=starttls) or O(smtp_security=tls).
    type: bool
    default: true
    version_added: 0.2.0
    env:
      - name: PENGUINMAILS_AUDIT_SMTP_VALIDATE_CERTS
    ini:
      - section: penguinmails_audit
        key: smtp_validate_certs
  smtp_ca_path:
    description:
      - PEM file of CA certificates to verify the SMTP server against (instead of the system's).
    type: path
    version_added: 0.2.0
    env:
      - name: PENGUINMAILS_AUDIT_SMTP_CA_PATH
    ini:
      - section: penguinmails_audit
        key: smtp_ca_path
  smtp_username:
    description:
      - SMTP AUTH user; no AUTH when unset. Needs O(smtp_security=starttls) or O(smtp_security=tls).
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
  on_sink_failure:
    description:
      - What a sink that refuses an event (while another sink accepted it) does to the audit point.
      - V(warn) - a warning; V(fail) - the M(penguinmails.vps.audit_event) task fails.
    type: str
    default: warn
    choices: [warn, fail]
    version_added: 0.2.0
    env:
      - name: PENGUINMAILS_AUDIT_ON_SINK_FAILURE
    ini:
      - section: penguinmails_audit
        key: on_sink_failure
  on_event_lost:
    description:
      - What an event that no sink accepted does to the audit point.
      - V(fail) - the M(penguinmails.vps.audit_event) task fails, so the play stops there; V(warn) -
        a warning.
      - Events that other modules return (not through M(penguinmails.vps.audit_event)) are written
        by the callback after their task and can only be reported as an error.
    type: str
    default: fail
    choices: [fail, warn]
    version_added: 0.2.0
    env:
      - name: PENGUINMAILS_AUDIT_ON_EVENT_LOST
    ini:
      - section: penguinmails_audit
        key: on_event_lost
notes:
  - Tag audit tasks with C(always) so that C(--tags) runs still record them.
  - The file alone cannot show that its newest events were cut off or that it was replaced - keep
    O(syslog_address) or O(webhook_url) on (they receive every event and the end-of-run checkpoints)
    and verify with C(--anchor); see docs/audit.md for what an attacker who owns the controller can
    and cannot hide.
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
# and check the chain (against what syslog received):
#   ansible-playbook penguinmails.vps.audit_verify -e audit_file=/var/log/penguinmails/audit.jsonl \
#     -e audit_anchor=/var/log/remote/penguinmails-audit.log
"""

import atexit
import getpass
import ipaddress
import os
import shutil
import tempfile

from ansible.plugins.callback import CallbackBase

from ansible_collections.penguinmails.vps.plugins.module_utils import audit as audit_utils
from ansible_collections.penguinmails.vps.plugins.module_utils.audit import (
    AuditError,
    audit_log_from_options,
    build_event,
    normalize_event,
)
from ansible_collections.penguinmails.vps.plugins.module_utils.audit_format import origin_address, user_agent

AUDIT_ACTION = "audit_event"
OPTION_NAMES = (
    "file", "chain_key", "syslog_address", "syslog_facility", "webhook_url", "alert_webhook_url", "webhook_secret",
    "webhook_attempts", "webhook_timeout", "webhook_backoff", "webhook_validate_certs", "webhook_ca_path",
    "alert_severities", "alert_email_to", "alert_email_from", "smtp_host", "smtp_port", "smtp_security",
    "smtp_validate_certs", "smtp_ca_path", "smtp_username", "smtp_password", "on_sink_failure", "on_event_lost",
)


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
        self.options = {}
        self.playbook = None
        self.play = None
        self.extra = {}
        self.count = 0
        self.lost = 0

    # -- configuration ----------------------------------------------------------------------
    def set_options(self, task_keys=None, var_options=None, direct=None):
        super(CallbackModule, self).set_options(task_keys=task_keys, var_options=var_options, direct=direct)
        self.options = dict((name, self.get_option(name)) for name in OPTION_NAMES)
        run_file = None
        if not self.options.get("file"):
            # no file: the run's events are chained in a private file that goes away with the run
            directory = tempfile.mkdtemp(prefix="penguinmails-audit-")
            atexit.register(shutil.rmtree, directory, True)
            run_file = os.path.join(directory, "run.jsonl")
        self.log = audit_log_from_options(self.options, warn=self._warn, run_file=run_file)
        # The audit_event action runs in worker processes forked from this one: it finds the same
        # options here and writes its event itself (see RUN_STATE in module_utils/audit.py).
        audit_utils.RUN_STATE.clear()
        audit_utils.RUN_STATE.update(options=dict(self.options), run_file=run_file, playbook=None, play=None, extra={})

    def _warn(self, message):
        self._display.warning("penguinmails.vps.audit: %s" % message)

    # -- play context -----------------------------------------------------------------------
    def v2_playbook_on_start(self, playbook):
        self.playbook = os.path.basename(getattr(playbook, "_file_name", "") or "") or None
        audit_utils.RUN_STATE["playbook"] = self.playbook

    def v2_playbook_on_play_start(self, play):
        self.play = play.get_name()
        try:
            extra = play.get_variable_manager().extra_vars
        except Exception:  # pylint: disable=broad-except
            extra = {}
        self.extra = dict((k, str(extra[k])) for k in ("awx_job_id", "awx_user_name", "tower_user_name") if extra.get(k))
        audit_utils.RUN_STATE.update(play=self.play, extra=dict(self.extra))

    # -- audit points -----------------------------------------------------------------------
    def v2_runner_on_ok(self, result):
        self._collect(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._collect(result)

    def v2_playbook_on_stats(self, stats):
        if self.log is None:
            return
        record, accepted, failed = self.log.checkpoint(run_events=self.count, user=_login_user())
        for name, reason in failed:
            self._warn("audit %s: checkpoint seq %s not delivered: %s" % (name, record["details"]["seq"], reason))
        if record is not None and accepted:
            self._display.v("penguinmails.vps.audit: checkpoint seq %s hash %s sent to %s" % (
                record["details"]["seq"], record["details"]["hash"], ", ".join(accepted)))
        if self.count:
            where = self.log.store.path if self.log.store is not None and not self.log.ephemeral else "syslog/webhook only"
            self._display.v("penguinmails.vps.audit: %d event(s) recorded (%s)" % (self.count, where))
        if self.lost:
            self._display.error("penguinmails.vps.audit: %d audit event(s) of this run reached no sink" % self.lost)

    def _collect(self, result):
        if self.log is None:
            return
        data = _task_result(result)
        task = _task_of(result)
        action = str(getattr(task, "resolved_action", None) or getattr(task, "action", "") or "")
        candidates = []
        for item in [data] + [r for r in data.get("results") or [] if isinstance(r, dict)]:
            if isinstance(item.get("audit_event"), dict):
                if isinstance(item.get("audit_delivery"), dict):
                    self.count += 1  # the audit_event action already wrote it
                else:
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
        if not event.get("ipAddress"):
            event["ipAddress"] = origin_address()
        if host is not None and "vps_ip" not in event["details"] and _host_ip(host):
            event["details"]["vps_ip"] = _host_ip(host)
        job = self.extra.get("awx_job_id") or self.extra.get("tower_job_id") or os.environ.get("JOB_ID")
        if job and "awx-job/" not in (event.get("userAgent") or ""):
            event["userAgent"] = user_agent(job)
        context = {
            "playbook": self.playbook,
            "play": self.play,
            "task": self._task_name(task),
            "host": host.get_name() if host is not None else None,
            "check_mode": bool(getattr(task, "check_mode", False)),
        }
        if self.extra.get("awx_job_id"):
            context["awx_job_id"] = self.extra["awx_job_id"]
        delivery = self.log.deliver(event, context)
        for message in delivery.warnings():
            self._warn(message)
        if delivery.lost:
            self.lost += 1
            self._display.error("penguinmails.vps.audit: audit event %s (returned by task %r) reached no sink: %s" % (
                event["action"], self._task_name(task), "; ".join("%s: %s" % item for item in delivery.failed) or "no sink"))
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
