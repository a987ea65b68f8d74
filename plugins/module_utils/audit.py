# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Audit events of penguinmails.vps: the audit log (chain + sinks + delivery policy), the callback's shared
configuration and the verify command. The parts live by concern: the event format in ``audit_format``, redaction in
``audit_redact``, the hash chain, verification and anchors in ``audit_chain``, the sinks in ``audit_sinks``; their
names are re-exported here for the callers of this module.

An event has the seed's fields ``timestamp, action, tenantId, userId, ipAddress, status,
details`` plus ``severity`` and, once written by :class:`AuditLog`, ``context``, ``chain_id``,
``seq``, ``prev_hash``, ``hash_alg`` and ``hash``.  ``hash`` is SHA-256 (or HMAC-SHA256 with a
chain key) over the canonical JSON of the event without ``hash``; since that includes
``prev_hash``, editing, removing or reordering any event breaks every later link.  What the file
alone cannot show (its end cut off, or the whole file replaced) is found against *anchors*: the
copies of the events and the end-of-run checkpoints that syslog and webhooks received.

The verify command needs only the Python standard library::

    python3 -m ansible_collections.penguinmails.vps.plugins.module_utils.audit verify FILE [--anchor ...]

(with the collections directory on ``PYTHONPATH``), or the playbook ``penguinmails.vps.audit_verify``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import sys
import types

if __name__ == "__main__" and not __package__:
    # Run as a file (python3 audit.py verify FILE, stdlib only): the files beside this one stand for the collection's
    # module_utils package, so that the parts import each other by their package names as everywhere else.
    PACKAGE = "ansible_collections.penguinmails.vps.plugins.module_utils"
    for depth in range(1, PACKAGE.count(".") + 2):
        name = ".".join(PACKAGE.split(".")[:depth])
        sys.modules[name] = types.ModuleType(name)
        sys.modules[name].__path__ = [os.path.dirname(os.path.abspath(__file__))] if name == PACKAGE else []

from ansible_collections.penguinmails.vps.plugins.module_utils.audit_chain import (
    CHAIN_FIELDS,
    GENESIS_HASH,
    chain,
    checkpoint_record,
    event_hash,
    load_anchors,
    verify_file,
    verify_lines,
)
from ansible_collections.penguinmails.vps.plugins.module_utils.audit_format import (
    ACTIONS,
    AUDIT_EVENT_MUTUALLY_EXCLUSIVE,
    AUDIT_EVENT_REQUIRED_ONE_OF,
    EVENT_FIELDS,
    GENERIC_FIELDS,
    KNOWN_ACTIONS,
    AuditError,
    audit_event_argument_spec,
    build_event,
    detail_fields,
    filter_details,
    iso_timestamp,
    normalize_event,
)
from ansible_collections.penguinmails.vps.plugins.module_utils.audit_redact import REDACTED, redact, redact_text
from ansible_collections.penguinmails.vps.plugins.module_utils.audit_sinks import (
    EmailSink,
    FileSink,
    SyslogSink,
    WebhookSink,
)

# The names of the parts (audit_format, audit_redact, audit_chain, audit_sinks) stay importable from here.
__all__ = [
    "CHAIN_FIELDS",
    "GENESIS_HASH",
    "chain",
    "checkpoint_record",
    "event_hash",
    "load_anchors",
    "verify_file",
    "verify_lines",
    "ACTIONS",
    "AUDIT_EVENT_MUTUALLY_EXCLUSIVE",
    "AUDIT_EVENT_REQUIRED_ONE_OF",
    "EVENT_FIELDS",
    "GENERIC_FIELDS",
    "KNOWN_ACTIONS",
    "AuditError",
    "audit_event_argument_spec",
    "build_event",
    "detail_fields",
    "filter_details",
    "iso_timestamp",
    "normalize_event",
    "REDACTED",
    "redact",
    "redact_text",
    "EmailSink",
    "FileSink",
    "SyslogSink",
    "WebhookSink",
    "Delivery",
    "AuditLog",
    "RUN_STATE",
    "alert_channels",
    "audit_log_from_options",
    "main",
]


# ---------------------------------------------------------------------------------------
# The audit log: chain + sinks + delivery policy
# ---------------------------------------------------------------------------------------
SINK_FAILURE_POLICIES = ("warn", "fail")


class Delivery(object):
    """Where one event went: ``accepted`` and ``failed`` sink names (``failed``: (name, one-line reason))."""

    def __init__(self, event, written, accepted, failed):
        self.event = event
        self.written = written
        self.accepted = accepted
        self.failed = failed

    @property
    def lost(self):
        return not self.accepted

    def warnings(self):
        messages = []
        for name, reason in self.failed:
            if name == "file":
                messages.append("audit file: event %s not written: %s" % (self.event.get("action"), reason))
            else:
                messages.append("audit %s: event %s not delivered: %s" % (name, self.event.get("action"), reason))
        return messages

    def verdict(self, on_sink_failure="warn", on_event_lost="fail"):
        """The one-line reason to fail the audit point under the policy, or None."""
        reasons = "; ".join("%s: %s" % (name, reason) for name, reason in self.failed) or "no sink is configured"
        if self.lost and on_event_lost == "fail":
            return "audit event %s reached no sink (%s); on_event_lost=fail stops here" % (self.event.get("action"), reasons)
        if self.failed and on_sink_failure == "fail":
            return "audit event %s was refused by a sink (%s); on_sink_failure=fail stops here" % (
                self.event.get("action"), reasons)
        return None

    def summary(self):
        return {"accepted": list(self.accepted), "failed": [name for name, _reason in self.failed]}


class AuditLog(object):
    """Writes events: chained in the file, then copied to syslog and webhooks; alert events also go
    to the alert webhook and the alert mail.

    ``file_path`` is the chain file; with ``ephemeral`` it is a private per-run file (the callback's
    ``file`` option set empty) that chains the run but is not a sink. ``broken`` maps sink names to
    configuration errors (they count as failed sinks). A failing sink never stops the others.
    """

    def __init__(self, file_path=None, chain_key=None, syslog=None, webhook=None, alert_webhook=None, email=None,
                 alert_severities=("critical",), warn=None, broken=None, ephemeral=False):
        self.store = FileSink(file_path, chain_key) if file_path else None
        self.chain_key = chain_key
        self.ephemeral = ephemeral
        self.syslog = syslog
        self.webhook = webhook
        self.alert_webhook = alert_webhook
        self.email = email
        self.alert_severities = tuple(alert_severities)
        self.broken = dict(broken or {})
        self.warn = warn or (lambda message: None)
        self.written = []

    def _targets(self, event):
        targets = [("syslog", self.syslog), ("webhook", self.webhook)]
        if event.get("severity") in self.alert_severities:
            targets += [("alert webhook", self.alert_webhook), ("alert email", self.email)]
        return targets

    def deliver(self, event, context=None):
        """Write ``event`` everywhere it belongs; return a :class:`Delivery` (nothing raised)."""
        event = dict(event)
        if context:
            event["context"] = redact(context)
        accepted, failed, written = [], [], []
        if self.store is not None:
            try:
                linked = self.store.append(event)
                written = list(self.store.written)
                if not self.ephemeral:
                    accepted.append("file")
            except (AuditError, IOError, OSError) as exc:
                linked = event  # the other sinks still get it, unchained
                failed.append(("run chain" if self.ephemeral else "file", _describe(exc)))
        else:
            linked = event
        self.written.extend(written or [linked])
        for extra in written[:-1]:  # a chain_break written before the event: the other sinks get it too
            self._send(extra, [], [])
        for name, sink in self._targets(linked):
            if sink is None:
                if name in self.broken:
                    failed.append((name, self.broken[name]))
                continue
            self._send(linked, accepted, failed, name, sink)
        return Delivery(linked, written, accepted, failed)

    def _send(self, event, accepted, failed, name=None, sink=None):
        targets = [(name, sink)] if name else self._targets(event)
        for target, target_sink in targets:
            if target_sink is None:
                continue
            try:
                target_sink.send(event)
                accepted.append(target)
            except (AuditError, IOError, OSError) as exc:
                failed.append((target, _describe(exc)))

    def emit(self, event, context=None):
        """Deliver ``event``, pass the warnings to ``warn``; return the linked event."""
        delivery = self.deliver(event, context)
        for message in delivery.warnings():
            self.warn(message)
        return delivery.event

    def checkpoint(self, run_events=0, user=None):
        """Send the file's last ``seq`` and ``hash`` to syslog and the webhook (the anchors of ``verify``).

        Returns (record or None, accepted names, failed (name, reason) pairs).
        """
        if self.store is None or self.ephemeral or (self.syslog is None and self.webhook is None):
            return None, [], []
        tail = self.store.tail()
        if tail is None:
            return None, [], []
        record = checkpoint_record(tail, self.store.path, run_events, user)
        accepted, failed = [], []
        for name, sink in (("syslog", self.syslog), ("webhook", self.webhook)):
            if sink is not None:
                self._send(record, accepted, failed, name, sink)
        return record, accepted, failed


def _describe(exc):
    if isinstance(exc, AuditError):
        return str(exc)
    if isinstance(exc, (IOError, OSError)) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


# ---------------------------------------------------------------------------------------
# The callback's configuration, shared with the audit_event action
# ---------------------------------------------------------------------------------------
# Set by the callback (penguinmails.vps.audit) in the controller's main process: its resolved
# options, the private per-run chain file when ``file`` is empty, and the playbook and play.
# Ansible forks its workers from that process (ansible.utils.multiprocessing uses "fork"), so the
# audit_event action sees this state and writes its event itself, before its task completes: an
# event that reached no sink can then fail the task. Empty when the callback is not enabled.
RUN_STATE = {}


def alert_channels(options):
    """The configured places an alert of the run can reach someone (the audit file alone reaches no one)."""
    opt = options.get
    channels = []
    if opt("alert_webhook_url"):
        channels.append("alert webhook")
    if [r for r in (opt("alert_email_to") or []) if r and str(r).strip()]:
        channels.append("alert email")
    if opt("webhook_url"):
        channels.append("webhook")
    if opt("syslog_address"):
        channels.append("syslog")
    return channels


def audit_log_from_options(options, warn=None, run_file=None):
    """An :class:`AuditLog` from the callback's options (a dict of option name -> value).

    Sink configuration errors become warnings and failed sinks (``broken``), never exceptions.
    """
    opt = options.get
    broken = {}
    syslog = webhook = alert_webhook = email = None
    if opt("syslog_address"):
        try:
            syslog = SyslogSink(opt("syslog_address"), facility=opt("syslog_facility") or "authpriv")
        except AuditError as exc:
            broken["syslog"] = str(exc)
    hook = dict(attempts=opt("webhook_attempts") or 3, timeout=opt("webhook_timeout") or 5,
                backoff=opt("webhook_backoff") if opt("webhook_backoff") is not None else 0.5,
                secret=opt("webhook_secret"), validate_certs=opt("webhook_validate_certs") is not False,
                ca_path=opt("webhook_ca_path"))
    for name, key in (("webhook", "webhook_url"), ("alert webhook", "alert_webhook_url")):
        if opt(key):
            try:
                sink = WebhookSink(opt(key), **hook)
            except AuditError as exc:
                broken[name] = str(exc)
                continue
            if name == "webhook":
                webhook = sink
            else:
                alert_webhook = sink
    recipients = [r.strip() for r in (opt("alert_email_to") or []) if r and r.strip()]
    if recipients:
        try:
            email = EmailSink(opt("smtp_host") or "localhost", port=opt("smtp_port") or 25,
                              sender=opt("alert_email_from") or "penguinmails-audit@localhost", recipients=recipients,
                              username=opt("smtp_username") or None, password=opt("smtp_password"),
                              security=opt("smtp_security") or "none",
                              validate_certs=opt("smtp_validate_certs") is not False, ca_path=opt("smtp_ca_path"))
        except AuditError as exc:
            broken["alert email"] = str(exc)
    path = opt("file")
    for name, message in sorted(broken.items()):
        (warn or (lambda _m: None))("configuration of the %s: %s" % (name, message))
    return AuditLog(
        file_path=os.path.expanduser(path) if path else run_file,
        chain_key=opt("chain_key") or None,
        syslog=syslog, webhook=webhook, alert_webhook=alert_webhook, email=email,
        alert_severities=opt("alert_severities") or ("critical",),
        warn=warn, broken=broken, ephemeral=not path,
    )


# ---------------------------------------------------------------------------------------
# The verify command
# ---------------------------------------------------------------------------------------
USAGE = """usage: python3 -m ansible_collections.penguinmails.vps.plugins.module_utils.audit verify FILE
           [--anchor SEQ:HASH | --anchor HASH | --anchor EXPORT]... [--chain-key-env NAME]
           [--first-prev-hash HASH | --any-start] [--json]

Checks the hash chain of a penguinmails.vps audit file and names the first bad line.
--anchor     what another sink holds: SEQ:HASH or HASH written down from an earlier verify, or a file
             exported from syslog or the webhook receiver (events and end-of-run checkpoints, one per
             line): finds a cut-off end, a replaced file and a rewritten chain. Repeatable.
--chain-key-env NAME   the variable holding the chain key (default PENGUINMAILS_AUDIT_CHAIN_KEY); with a
             key only HMAC-SHA256 lines verify.
--first-prev-hash HASH the hash the first event must follow (a file split by hand); --any-start skips it.
Exit status 0: intact; 1: tampered, damaged or unreadable; 2: usage error; 3: intact apart from
chain breaks the file sink recorded (damaged bytes it skipped)."""


def main(argv=None, out=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    out = out or sys.stdout
    if len(argv) < 2 or argv[0] != "verify":
        out.write(USAGE + "\n")
        return 2
    path = argv[1]
    key_env = "PENGUINMAILS_AUDIT_CHAIN_KEY"
    first = GENESIS_HASH
    as_json = False
    anchors = []
    rest = argv[2:]
    try:
        while rest:
            option = rest.pop(0)
            if option == "--chain-key-env" and rest:
                key_env = rest.pop(0)
            elif option == "--first-prev-hash" and rest:
                first = rest.pop(0)
            elif option == "--any-start":
                first = None
            elif option == "--anchor" and rest:
                anchors.extend(load_anchors(rest.pop(0)))
            elif option == "--json":
                as_json = True
            else:
                out.write(USAGE + "\n")
                return 2
    except AuditError as exc:
        out.write("%s: %s\n" % (path, exc))
        return 2
    result = verify_file(path, os.environ.get(key_env) or None, first, anchors)
    if as_json:
        out.write(json.dumps(dict(result.as_dict(), file=path), sort_keys=True) + "\n")
    else:
        out.write("%s: %s\n" % (path, result.summary()))
    return result.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
