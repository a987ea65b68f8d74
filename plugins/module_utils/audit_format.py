# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The audit event format, in one place: fields, actions and their detail names, severities, the
timestamp, the user agent and the build of one event (docs/audit-event.schema.json is its schema)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os
import re
import sys

try:
    from ansible_collections.penguinmails.vps.plugins.module_utils.audit_redact import redact, redact_text
except ImportError:  # run as a file (python3 audit.py verify FILE): the sibling files, stdlib only
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from audit_redact import redact, redact_text

STATUSES = ("success", "failure")
SEVERITIES = ("info", "warning", "critical")
ACTION_PATTERN = r"^[a-z][a-z0-9_]{2,63}$"
_ACTION_RE = re.compile(ACTION_PATTERN)
EVENT_FIELDS = ("timestamp", "action", "tenantId", "userId", "ipAddress", "status", "severity", "details")
CHECKPOINT_ACTION = "audit_checkpoint"
CHAIN_BREAK_ACTION = "chain_break"

class AuditError(Exception):
    """A one-line, secret-free error about an event, a sink or a log file."""


# ---------------------------------------------------------------------------------------
# Actions and their detail fields: THE place to add an action.
# ---------------------------------------------------------------------------------------
# Fields any action may carry in ``details`` (an unknown action keeps only these).
GENERIC_FIELDS = ("role", "mode", "trigger", "host", "reason", "source", "error", "failedTask", "failed_task",
                  "count", "forced", "secretType")
_SSH_KEY_FIELDS = ("roles", "vaultChanged", "hostChanged", "vaultOnly", "stage", "supersededBy", "fingerprint",
                   "keyType", "graceUntil", "grace_until", "output")
_SMTP_APPLIED_FIELDS = ("username", "passwordReset", "verified")
_MIGRATION_FIELDS = ("serverName", "newVpsId", "newVpsIp", "oldVpsId", "oldVpsIp", "oldVpsName", "step", "stage",
                     "abandonedRun")
_MAIL_FIELDS = ("messages", "bytes", "seconds", "flagUpdates", "snapshotId", "snapshotTime", "rpoSeconds", "serverName")
_DKIM_FIELDS = ("domain", "oldSelector", "newSelector", "selector", "verified")
_CERT_FIELDS = ("serial", "keyId", "principals", "ttl", "validBefore", "issuerFingerprint", "fingerprint", "certType",
                "keyType", "mount", "tenants")

# action -> (default severity, or None for "critical on failure, info on success"; detail fields besides GENERIC_FIELDS)
ACTIONS = {
    "ssh_key_rotated": (None, _SSH_KEY_FIELDS),
    "ssh_key_regenerated": (None, _SSH_KEY_FIELDS),
    "ssh_key_revoked": (None, ("roles", "vaultChanged", "hostChanged", "removedKeys", "fingerprint")),
    "ssh_key_downloaded": (None, ("output", "fingerprint", "downloadedAt", "wrapCreationPath")),
    "host_key_recorded": (None, ("fingerprints", "serverName")),
    "tenant_notified": (None, ("event",)),
    "bulk_rotation_completed": (None, ("rotatedCount", "failedCount", "skippedCount", "failedTenants",
                                       "tenantsWithoutHost", "hostsUpdated")),
    "vps_migration_completed": (None, _MIGRATION_FIELDS + ("oldVpsWiped", "oldVpsDestroyed", "resumed", "steps", "dkim",
                                                           "rotated", "failedBuilds", "mailSource", "mailMessages",
                                                           "mailDeltaMessages", "rpoSeconds", "mailLossAccepted")),
    "vps_migration_failed": ("critical", _MIGRATION_FIELDS),
    "vps_migration_aborted": ("warning", _MIGRATION_FIELDS + ("destroyed",)),
    "vps_migration_refused": ("warning", _MIGRATION_FIELDS),
    "vps_build_failed": ("warning", ("serverName", "failedServiceid", "replacedBy")),
    "mail_copied": (None, _MAIL_FIELDS),
    "mail_delta_copied": (None, _MAIL_FIELDS + ("oldQueue",)),
    "mail_loss_accepted": ("critical", ("step", "serverName", "oldVpsIp")),
    "mail_backup_completed": (None, _MAIL_FIELDS + ("dataAdded", "removed", "snapshots", "initialised")),
    "mail_backup_failed": ("critical", ("stage",)),
    "provider_ssh_key_added": (None, ("keyName", "fingerprint", "serverName")),
    "provider_ssh_key_removed": (None, ("keyName", "serverName")),
    "smtp_credentials_recovered": (None, _SMTP_APPLIED_FIELDS),
    "smtp_password_applied": (None, _SMTP_APPLIED_FIELDS),
    "smtp_password_rotated": (None, ("secretKeyRotated",)),
    "dkim_key_rotated": (None, _DKIM_FIELDS),
    "dkim_rotated": (None, _DKIM_FIELDS),
    "ssh_login_failed": ("warning", ("sources", "users")),
    "ssh_certificate_signed": (None, _CERT_FIELDS),
    "ssh_host_certificate_signed": (None, _CERT_FIELDS),
    "ssh_certificate_revoked": (None, ("serials", "keyIds", "publicKeys", "mount", "hostCount", "failedTenants")),
    "ssh_auth_changed": (None, ("previousMode", "newMode", "stage", "vaultChanged", "hostChanged")),
    "ssh_ca_rotated": (None, ("mount", "step", "issuerFingerprints", "hostCount", "failedTenants")),
    "vault_write_burst": ("critical", ("mount", "path", "newVersions", "windowHours", "threshold", "currentVersion",
                                       "oldestVersion", "historyTruncated")),
    # written by the callback and the file sink themselves
    "audit_event_hidden": ("warning", ()),
    "audit_event_invalid": ("warning", ()),
    CHAIN_BREAK_ACTION: ("critical", ("skippedBytes", "skippedLines", "afterSeq")),
}
KNOWN_ACTIONS = tuple(ACTIONS)
ACTION_SEVERITY = dict((name, spec[0]) for name, spec in ACTIONS.items() if spec[0])


def detail_fields(action):
    """The ``details`` keys an event of ``action`` keeps (GENERIC_FIELDS for an unknown action)."""
    spec = ACTIONS.get(action)
    return frozenset(GENERIC_FIELDS + (spec[1] if spec else ()))


def filter_details(action, details):
    """Keep the allowed fields of ``details``; ``droppedFields`` counts the others (their names may be secrets)."""
    allowed = detail_fields(action)
    kept = dict((key, value) for key, value in details.items() if isinstance(key, str) and key in allowed)
    dropped = len(details) - len(kept)
    if dropped:
        kept["droppedFields"] = dropped
    return kept


# ---------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------
def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def iso_timestamp(moment=None):
    moment = moment or utc_now()
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def default_severity(action, status):
    if ACTION_SEVERITY.get(action):
        return ACTION_SEVERITY[action]
    return "critical" if status == "failure" else "info"


def build_event(action, status="success", tenant_id=None, user_id=None, ip_address=None, details=None,
                severity=None, timestamp=None, no_log_values=()):
    """Validate the parts of an event and return it as a dict (details allow-listed, then redacted).

    Raises :class:`AuditError` on an invalid action, status or severity.
    """
    if not isinstance(action, str) or not _ACTION_RE.match(action):
        raise AuditError("invalid audit action %r: must match %s" % (_short(action), ACTION_PATTERN))
    if status not in STATUSES:
        raise AuditError("invalid audit status %r: must be one of %s" % (_short(status), ", ".join(STATUSES)))
    if severity is None:
        severity = default_severity(action, status)
    if severity not in SEVERITIES:
        raise AuditError("invalid audit severity %r: must be one of %s" % (_short(severity), ", ".join(SEVERITIES)))
    if details is None:
        details = {}
    if not isinstance(details, dict):
        raise AuditError("audit details must be a mapping, not %s" % type(details).__name__)
    return {
        "timestamp": timestamp or iso_timestamp(),
        "action": action,
        "tenantId": _opt_str(tenant_id),
        "userId": _opt_str(user_id),
        "ipAddress": _opt_str(ip_address),
        "status": status,
        "severity": severity,
        "details": redact(filter_details(action, details), no_log_values),
    }


def _event_options():
    return dict(
        action=dict(type="str"),
        status=dict(type="str", default="success", choices=list(STATUSES)),
        tenant_id=dict(type="str"),
        user_id=dict(type="str"),
        ip_address=dict(type="str"),
        details=dict(type="dict", default={}),
        severity=dict(type="str", choices=list(SEVERITIES)),
        redact_values=dict(type="list", elements="str", default=[], no_log=True),
    )


def audit_event_argument_spec():
    """The options of the ``audit_event`` module and action (shared so they cannot drift): one event, or a list of
    events (``events``, one task for every tenant of a host)."""
    spec = _event_options()
    item = _event_options()
    item["action"]["required"] = True
    spec["events"] = dict(type="list", elements="dict", options=item)
    return spec


# ``action`` and ``events`` exclude each other; one of them is needed.
AUDIT_EVENT_MUTUALLY_EXCLUSIVE = [("action", "events")]
AUDIT_EVENT_REQUIRED_ONE_OF = [("action", "events")]


def normalize_event(candidate, no_log_values=()):
    """Turn an ``audit_event`` mapping found in a task result into a valid, redacted event.

    Accepts the seed's camelCase names and the module option names (``tenant_id``, ...).
    """
    if not isinstance(candidate, dict):
        raise AuditError("audit_event must be a mapping, not %s" % type(candidate).__name__)

    def pick(*names):
        for name in names:
            if candidate.get(name) not in (None, ""):
                return candidate[name]
        return None

    return build_event(
        action=pick("action"),
        status=pick("status") or "success",
        tenant_id=pick("tenantId", "tenant_id"),
        user_id=pick("userId", "user_id"),
        ip_address=pick("ipAddress", "ip_address"),
        details=pick("details") or {},
        severity=pick("severity"),
        timestamp=pick("timestamp"),
        no_log_values=no_log_values,
    )


def _opt_str(value):
    if value in (None, ""):
        return None
    return redact_text(str(value), heuristics=False)


def _short(value, limit=60):
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
