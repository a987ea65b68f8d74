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

from ansible_collections.penguinmails.vps.plugins.module_utils.audit_redact import redact, redact_text
STATUSES = ("success", "failure")
SEVERITIES = ("info", "warning", "critical")
ACTION_PATTERN = r"^[a-z][a-z0-9_]{2,63}$"
_ACTION_RE = re.compile(ACTION_PATTERN)
# The specification's event: {timestamp (ISO 8601, milliseconds, Z), action, tenantId, userId, ipAddress (where the
# action came from), userAgent, status}; ``severity`` and ``details`` (snake_case names) beside them.
EVENT_FIELDS = ("timestamp", "action", "tenantId", "userId", "ipAddress", "userAgent", "status", "severity", "details")
TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"
# Earlier names of actions, written by older releases or passed by older playbooks: built under the specified name.
LEGACY_ACTIONS = {"ssh_key_downloaded": "ssh_key_download"}
COLLECTION = "penguinmails.vps"
# Kept equal to galaxy.yml's version by tests/unit/plugins/module_utils/test_audit_format.py.
COLLECTION_VERSION = "0.2.0"
CHECKPOINT_ACTION = "audit_checkpoint"
CHAIN_BREAK_ACTION = "chain_break"


class AuditError(Exception):
    """A one-line, secret-free error about an event, a sink or a log file."""


# ---------------------------------------------------------------------------------------
# Actions and their detail fields: THE place to add an action.
# ---------------------------------------------------------------------------------------
# Fields any action may carry in ``details`` (an unknown action keeps only these).
GENERIC_FIELDS = ("role", "mode", "trigger", "host", "vps_ip", "reason", "source", "error", "failed_task",
                  "count", "forced", "secret_type", "alert_sinks")
_SSH_KEY_FIELDS = ("roles", "vault_changed", "host_changed", "vault_only", "stage", "superseded_by", "fingerprint",
                   "key_type", "grace_until", "output")
_SMTP_APPLIED_FIELDS = ("username", "password_reset", "verified", "new_vps_ip", "recovery_type")
_MIGRATION_FIELDS = ("server_name", "new_vps_id", "new_vps_ip", "old_vps_id", "old_vps_ip", "old_vps_name", "step", "stage",
                     "abandoned_run")
_MAIL_FIELDS = ("messages", "bytes", "seconds", "flag_updates", "snapshot_id", "snapshot_time", "rpo_seconds", "server_name")
_DKIM_FIELDS = ("domain", "old_selector", "new_selector", "selector", "verified")
_CERT_FIELDS = ("serial", "key_id", "principals", "ttl", "valid_before", "issuer_fingerprint", "fingerprint", "cert_type",
                "key_type", "mount", "tenants")

# action -> (default severity, or None for "critical on failure, info on success"; detail fields besides GENERIC_FIELDS)
ACTIONS = {
    "ssh_key_rotated": (None, _SSH_KEY_FIELDS),
    "ssh_key_regenerated": (None, _SSH_KEY_FIELDS),
    "ssh_key_revoked": (None, ("roles", "vault_changed", "host_changed", "removed_keys", "fingerprint")),
    "ssh_key_download": (None, ("output", "fingerprint", "downloaded_at", "wrap_creation_path", "key_version", "self_service",
                                "attempt", "vault_request_id")),
    "ssh_credentials_viewed": (None, ("fingerprint", "viewer")),
    "host_key_recorded": (None, ("fingerprints", "server_name")),
    "tenant_notified": (None, ("event",)),
    "bulk_rotation_completed": (None, ("rotated_count", "failed_count", "skipped_count", "failed_tenants",
                                       "tenants_without_host", "hosts_updated")),
    "vps_migration_completed": (None, _MIGRATION_FIELDS + ("old_vps_wiped", "old_vps_destroyed", "resumed", "steps", "dkim",
                                                           "rotated", "failed_builds", "mail_source", "mail_messages",
                                                           "mail_delta_messages", "rpo_seconds", "mail_loss_accepted",
                                                           "secrets_recovered", "mail_pending", "rpo")),
    # A migration completed with mail pending (the old VPS did not answer): its mail merged by a later run.
    "vps_migration_mail_merged": (None, _MIGRATION_FIELDS + ("old_vps_wiped", "old_vps_destroyed", "mail_source",
                                                             "mail_delta_messages", "rpo_seconds", "mail_loss_accepted",
                                                             "pending_since")),
    # Preflight: the estimated mail copy time exceeds the recovery time objective (migrate_rto).
    "vps_migration_rto_exceeded": ("warning", ("server_name", "mailbox_bytes", "size_source", "copy_rate_mbps",
                                               "estimated_seconds", "rto_seconds")),
    "vps_migration_failed": ("critical", _MIGRATION_FIELDS),
    "vps_migration_aborted": ("warning", _MIGRATION_FIELDS + ("destroyed",)),
    "vps_migration_refused": ("warning", _MIGRATION_FIELDS),
    "vps_provisioned": (None, _MIGRATION_FIELDS + ("domain", "resumed", "steps", "failed_builds", "dkim", "snapshot_id", "mode")),
    "vps_provisioning_failed": ("critical", _MIGRATION_FIELDS + ("domain",)),
    "vps_provisioning_aborted": ("warning", _MIGRATION_FIELDS + ("domain", "destroyed", "left_in_vault")),
    "vps_build_failed": ("warning", ("server_name", "failed_serviceid", "replaced_by")),
    "mail_copied": (None, _MAIL_FIELDS),
    "mail_delta_copied": (None, _MAIL_FIELDS + ("old_queue", "pending_since")),
    "mail_loss_accepted": ("critical", ("step", "server_name", "old_vps_ip")),
    "mail_backup_completed": (None, _MAIL_FIELDS + ("data_added", "removed", "snapshots", "initialised")),
    "mail_backup_failed": ("critical", ("stage",)),
    "vault_backup_completed": (None, ("snapshot_id", "snapshot_time", "bytes", "sha256", "seconds", "data_added", "removed",
                                      "snapshots", "initialised", "raft_index", "vault_version", "name")),
    "vault_backup_failed": ("critical", ("stage", "name")),
    "vault_restore_reconciled": (None, ("roles", "writes", "stage")),
    "provider_ssh_key_added": (None, ("key_name", "fingerprint", "server_name")),
    "provider_ssh_key_removed": (None, ("key_name", "server_name")),
    "smtp_credentials_recovered": (None, _SMTP_APPLIED_FIELDS),
    "smtp_password_applied": (None, _SMTP_APPLIED_FIELDS),
    "smtp_password_rotated": (None, ("secret_key_rotated",)),
    "dkim_key_rotated": (None, _DKIM_FIELDS),
    "dkim_rotated": (None, _DKIM_FIELDS),
    "ssh_login_failed": ("warning", ("sources", "users")),
    "ssh_certificate_signed": (None, _CERT_FIELDS),
    "ssh_host_certificate_signed": (None, _CERT_FIELDS),
    "ssh_certificate_revoked": (None, ("serials", "key_ids", "public_keys", "mount", "host_count", "failed_tenants")),
    "ssh_auth_changed": (None, ("previous_mode", "new_mode", "stage", "vault_changed", "host_changed")),
    "ssh_ca_rotated": (None, ("mount", "step", "issuer_fingerprints", "host_count", "failed_tenants")),
    "vault_write_burst": ("critical", ("mount", "path", "new_versions", "window_hours", "threshold", "current_version",
                                       "oldest_version", "history_truncated")),
    # written by the callback and the file sink themselves
    "audit_event_hidden": ("warning", ()),
    "audit_event_invalid": ("warning", ()),
    CHAIN_BREAK_ACTION: ("critical", ("skipped_bytes", "skipped_lines", "after_seq")),
}
# Detail fields the specification requires of its named events (null when a caller does not know them).
REQUIRED_DETAILS = {
    "vps_migration_completed": ("old_vps_ip", "new_vps_ip", "reason", "secrets_recovered"),
    "vps_migration_failed": ("error", "old_vps_ip"),
    "smtp_credentials_recovered": ("new_vps_ip", "recovery_type"),
}
KNOWN_ACTIONS = tuple(ACTIONS)
ACTION_SEVERITY = dict((name, spec[0]) for name, spec in ACTIONS.items() if spec[0])


def detail_fields(action):
    """The ``details`` keys an event of ``action`` keeps (GENERIC_FIELDS for an unknown action)."""
    spec = ACTIONS.get(action)
    return frozenset(GENERIC_FIELDS + (spec[1] if spec else ()))


_CAMEL_RE = re.compile(r"(?<=[a-z0-9])([A-Z])")


def snake_case(name):
    """``oldVpsIp`` -> ``old_vps_ip``: detail names are snake_case, as the specification writes them."""
    return _CAMEL_RE.sub(lambda match: "_" + match.group(1).lower(), name)


def filter_details(action, details):
    """Keep the allowed fields of ``details`` (camelCase names taken as their snake_case form); ``dropped_fields``
    counts the others (their names may be secrets)."""
    allowed = detail_fields(action)
    kept = {}
    for key, value in details.items():
        name = snake_case(key) if isinstance(key, str) else None
        if name in allowed:
            kept[name] = value
    dropped = len(details) - len(kept)
    if dropped:
        kept["dropped_fields"] = dropped
    return kept


# ---------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------
def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def iso_timestamp(moment=None):
    moment = moment or utc_now()
    moment = moment.astimezone(datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (moment.microsecond // 1000)


def _ansible_version():
    try:
        from ansible.module_utils.ansible_release import __version__  # pylint: disable=import-outside-toplevel
    except ImportError:  # the verify command, run where ansible is not installed
        return "unknown"
    return __version__


def user_agent(job_id=None):
    """The client, as the specification's ``userAgent``: ``ansible-core/<v> penguinmails.vps/<v>`` and the AWX/AAP job
    (``awx-job/<id>``) where there is one."""
    agent = "ansible-core/%s %s/%s" % (_ansible_version(), COLLECTION, COLLECTION_VERSION)
    return agent + (" awx-job/%s" % job_id if job_id not in (None, "") else "")


def origin_address(environ=None):
    """The address the action came from, where known: the operator's end of the SSH session the run was started in
    (``SSH_CLIENT``/``SSH_CONNECTION``); None otherwise (a local shell, a scheduler, an AWX job)."""
    environ = os.environ if environ is None else environ
    for name in ("SSH_CLIENT", "SSH_CONNECTION"):
        first = (environ.get(name) or "").split(" ")[0]
        if first and re.match(r"^[0-9a-fA-F:.]{2,45}\Z", first):
            return first
    return None


def default_severity(action, status):
    if ACTION_SEVERITY.get(action):
        return ACTION_SEVERITY[action]
    return "critical" if status == "failure" else "info"


def build_event(action, status="success", tenant_id=None, user_id=None, ip_address=None, details=None,
                severity=None, timestamp=None, no_log_values=(), agent=None, vps_ip=None):
    """Validate the parts of an event and return it as a dict in the specified format (details allow-listed,
    snake_case, then redacted). ``vps_ip``, the VPS the action was on, goes into ``details``; ``ipAddress`` is where
    the action came from.

    Raises :class:`AuditError` on an invalid action, status or severity.
    """
    action = LEGACY_ACTIONS.get(action, action)
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
    if vps_ip not in (None, ""):
        details = dict(details, vps_ip=str(vps_ip))
    kept = filter_details(action, details)
    for name in REQUIRED_DETAILS.get(action, ()):
        kept.setdefault(name, None)  # the specification's detail fields are always there; null when not known
    return {
        "timestamp": _millis(timestamp) if timestamp else iso_timestamp(),
        "action": action,
        "tenantId": _opt_str(tenant_id),
        "userId": _opt_str(user_id),
        "ipAddress": _opt_str(ip_address),
        "userAgent": _opt_str(agent) or user_agent(),
        "status": status,
        "severity": severity,
        "details": redact(kept, no_log_values),
    }


def _event_options():
    return dict(
        action=dict(type="str"),
        status=dict(type="str", default="success", choices=list(STATUSES)),
        tenant_id=dict(type="str"),
        user_id=dict(type="str"),
        ip_address=dict(type="str"),
        vps_ip=dict(type="str"),
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
        agent=pick("userAgent", "user_agent"),
        vps_ip=pick("vps_ip"),
    )


_MICROS_RE = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?Z\Z")


def _millis(timestamp):
    """A given timestamp in the specified form (milliseconds); one of another form is kept as it is."""
    match = _MICROS_RE.match(str(timestamp))
    if not match:
        return str(timestamp)
    return "%s.%sZ" % (match.group(1), (match.group(2) or "").ljust(3, "0")[:3])


def _opt_str(value):
    if value in (None, ""):
        return None
    return redact_text(str(value), heuristics=False)


def _short(value, limit=60):
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------
# The schema (docs/audit-event.schema.json is this, written out; a unit test keeps them equal)
# ---------------------------------------------------------------------------------------
USER_AGENT_PATTERN = r"^ansible-core/\S+ penguinmails\.vps/\S+( awx-job/\S+)?$"


def _details_schema(fields, required=()):
    schema = {"type": "object", "propertyNames": {"enum": sorted(set(fields) | {"dropped_fields"})}}
    if required:
        schema["required"] = list(required)
    return schema


def event_schema():
    """The JSON Schema (draft 2020-12) of every event this collection writes."""
    nullable = {"type": ["string", "null"]}
    rules = []
    for action, (_severity, fields) in ACTIONS.items():
        rules.append({"if": {"properties": {"action": {"const": action}}},
                      "then": {"properties": {"details": _details_schema(GENERIC_FIELDS + fields,
                                                                         REQUIRED_DETAILS.get(action, ()))}}})
    rules.append({"if": {"properties": {"action": {"not": {"enum": list(ACTIONS)}}}},
                  "then": {"properties": {"details": _details_schema(GENERIC_FIELDS)}}})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "penguinmails.vps audit event",
        "description": "One audit event as the file sink, syslog, webhooks and mail carry it: the specification's fields "
                       "(timestamp, action, tenantId, userId, ipAddress, userAgent, status) with severity and details "
                       "beside them; the file sink adds context and the hash chain fields.",
        "type": "object",
        "required": list(EVENT_FIELDS),
        "properties": {
            "timestamp": {"type": "string", "pattern": TIMESTAMP_PATTERN},
            "action": {"type": "string", "pattern": ACTION_PATTERN},
            "tenantId": nullable,
            "userId": nullable,
            "ipAddress": nullable,
            "userAgent": {"type": "string", "pattern": USER_AGENT_PATTERN},
            "status": {"enum": list(STATUSES)},
            "severity": {"enum": list(SEVERITIES)},
            "details": {"type": "object", "propertyNames": {"pattern": "^[a-z][a-z0-9_]*$"}},
            "context": {"type": "object"},
            "chain_id": {"type": "string"},
            "seq": {"type": "integer", "minimum": 1},
            "prev_hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "hash_alg": {"enum": ["sha256", "hmac-sha256"]},
            "hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        },
        "allOf": rules,
    }
