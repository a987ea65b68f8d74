# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tenant record ``<vps mount>/<tenant>/record`` and the migration state kept in it.

Fields (docs/migration.md): ``domain``, ``vps_id``, ``vps_ip``, ``vps_name``, ``plan``,
``region``, ``migrated_at``, ``migration_reason`` and the previous VPS (``previous_vps_id``,
``previous_vps_ip``, ``previous_vps_name``).  While a migration runs, the sub-mapping
``migration`` holds what a rerun needs to resume instead of starting over:

* ``reason``, ``started_at``, ``step`` (the furthest step reached, see :data:`STEPS`) and
  ``steps`` (step -> time it was first reached, milliseconds);
* ``server_name`` (``pm-<tenant>-<n>``, chosen once, so a rerun provisions nothing new),
  ``new_vps_id`` and ``new_vps_ip`` once the server exists;
* ``old_vps_id``, ``old_vps_ip``, ``old_vps_name``: the VPS being replaced, captured at the start
  (the record's own ``vps_*`` fields switch to the new VPS at step ``record_updated``, but the old
  one must still be wiped and destroyed after that).

When the migration completes, ``migration`` moves to ``last_migration`` (with ``completed_at``).

Every change is planned from one read (:func:`plan`, a pure function of the stored data, the
request and the time) and written with check-and-set on the version read (:meth:`RecordStore.commit`),
so two concurrent runs cannot both start a migration of one tenant; the loser gets
``VaultCASConflict`` and writes nothing.  Older versions stay in the KV history.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import datetime
import re

from ansible_collections.penguinmails.vps.plugins.module_utils import key_metadata, timeutil
from ansible_collections.penguinmails.vps.plugins.module_utils.timeutil import format_time
from ansible_collections.penguinmails.vps.plugins.module_utils.validators import (
    ValidationError,
    check_tenant_unique,
    tenant_record_path,
    validate_domain,
    validate_selector,
    validate_tenant_id,
)

STATES = ("query", "present", "migrating", "migrated", "completed", "aborted")
REASONS = ("compromise", "failure", "upgrade", "provision")
# The steps of penguinmails.vps.migrate, in order (playbooks/tasks/migrate/<step>.yml).
STEPS = (
    "recorded",
    "secrets_rotated",
    "provisioned",
    "ssh_access",
    "mailu",
    "dkim",
    "mail_copied",
    "verified",
    "dns_switched",
    "record_updated",
    "final_delta",
    "old_vps_wiped",
    "old_vps_destroyed",
)
# penguinmails.vps.provision runs on the same mechanism (reason ``provision``, a tenant without a VPS yet), with
# steps of its own (playbooks/tasks/provision/<step>.yml); ORDER places every step of both workflows.
PROVISION_STEPS = ("secrets_created", "first_backup", "welcome_sent")
ORDER = STEPS[:2] + ("secrets_created",) + STEPS[2:10] + ("first_backup", "welcome_sent") + STEPS[10:]
# A run holds the migration (migration.run) while it works; another run is refused until the owner is gone
# (its process ended, on the same controller) or its lease expired (from another controller).
DEFAULT_LEASE_MINUTES = 30
# Scalar fields a caller may set with state=present.
FIELDS = ("domain", "vps_id", "vps_ip", "vps_name", "plan", "region", "dkim_selector", "contact_email")
_EMAIL_RE = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?\Z")
SERVER_NAME_FORMAT = "pm-%s-%d"
_SERVER_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


class RecordError(Exception):
    """A rule of the record refused the request; the message is one line."""


# ---------------------------------------------------------------------------------------
# Time
# ---------------------------------------------------------------------------------------
def utcnow():
    """Now, to the microsecond: step times of a migration are recorded in milliseconds."""
    return timeutil.utcnow(precise=True)


# ---------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------
def text(value, what):
    """Normalise an id or address to a non-empty string (serviceids come as ints); None stays None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValidationError("invalid %s %r: must be a string or a whole number" % (what, value))
    value = str(value).strip()
    if not value or len(value) > 255 or any(ch.isspace() for ch in value):
        raise ValidationError("invalid %s %r: must be 1-255 characters without spaces" % (what, value))
    return value


def validate_email(address):
    """A tenant contact address (``local@domain``, one line); ``""`` clears it."""
    if address == "":
        return address
    if not isinstance(address, str) or not _EMAIL_RE.match(address):
        raise ValidationError("invalid contact e-mail address %r: must be local@domain" % (address,))
    validate_domain(address.rsplit("@", 1)[1])
    return address


def validate_server_name(name):
    if not isinstance(name, str) or not _SERVER_NAME_RE.fullmatch(name):
        raise ValidationError("invalid server name %r: 1-63 letters, digits, '.', '_' or '-'" % (name,))
    return name


def server_number(tenant_id, name):
    """The ``n`` of a server name ``pm-<tenant>-<n>``, or None."""
    if not isinstance(name, str):
        return None
    prefix = "pm-%s-" % tenant_id
    if name.startswith(prefix) and name[len(prefix):].isdigit():
        return int(name[len(prefix):])
    return None


def next_server_name(tenant_id, data):
    """``pm-<tenant>-<n+1>`` after the highest number the record knows (current, previous, last)."""
    numbers = [server_number(tenant_id, data.get(field)) for field in ("vps_name", "previous_vps_name")]
    last = data.get("last_migration") or {}
    numbers.append(server_number(tenant_id, last.get("server_name")))
    numbers = [n for n in numbers if n is not None]
    if numbers:
        highest = max(numbers)
    else:
        # No numbered server known: the current VPS (if any) counts as number 1.
        highest = 1 if data.get("vps_id") or data.get("vps_ip") else 0
    return SERVER_NAME_FORMAT % (tenant_id, highest + 1)


def step_index(step):
    return ORDER.index(step) if step in ORDER else -1


# ---------------------------------------------------------------------------------------
# Planning (pure)
# ---------------------------------------------------------------------------------------
class Plan(object):
    """What one request does: ``before``/``after`` records, ``changed``, ``resumed``, a message."""

    def __init__(self, before, after, version, resumed=False, message=None):
        self.before = before
        self.after = after
        self.version = version
        self.resumed = resumed
        self.message = message
        self.abandoned = None

    @property
    def changed(self):
        return self.before != self.after


def plan(tenant_id, state, before, version, now, request):
    """Plan ``state`` for the record ``before`` (a dict, None when there is none) read at ``version``.

    ``request`` holds the module's options: the scalar :data:`FIELDS`, ``reason``, ``step``,
    ``server_name``, ``new_vps_id``, ``new_vps_ip``.  Raises :class:`RecordError` or
    ``ValidationError``.
    """
    validate_tenant_id(tenant_id)
    if state not in STATES:
        raise RecordError("invalid state %r: choose one of %s" % (state, ", ".join(STATES)))
    data = copy.deepcopy(before) if before else {}
    if state == "query":
        return Plan(before, before, version)
    if state == "present":
        after = _set_fields(data, request)
        return Plan(before, after if (after or before is not None) else None, version)
    if state == "migrating":
        return _plan_migrating(tenant_id, before, data, version, now, request)
    if state == "migrated":
        return _plan_migrated(tenant_id, before, data, version, now, request)
    if state == "aborted":
        return _plan_aborted(tenant_id, before, data, version, now, request)
    return _plan_completed(tenant_id, before, data, version, now, request)


def _set_fields(data, request):
    for field in FIELDS:
        value = request.get(field)
        if value is None:
            continue
        if field == "domain":
            value = validate_domain(value)
        elif field == "contact_email":
            value = validate_email(value)
        elif field == "dkim_selector":
            value = validate_selector(value)
        elif field in ("vps_id", "vps_ip", "vps_name"):
            value = text(value, field.replace("_", " "))
        else:
            value = str(value)
        data[field] = value
    return data


def _mark_step(migration, step, now):
    if step is None:
        return
    if step not in ORDER:
        raise RecordError("invalid step %r: choose one of %s" % (step, ", ".join(ORDER)))
    steps = migration.setdefault("steps", {})
    if step not in steps:
        steps[step] = format_time(now, millis=True)
    if step_index(step) > step_index(migration.get("step")):
        migration["step"] = step


def owner_alive(run, now, local_host=None, pid_alive=None):
    """Whether the run holding a migration may still be working.

    On the controller that started it: its ``ansible-playbook`` process (pid and start time) still runs.
    Elsewhere: its lease has not expired.
    """
    if not run:
        return False
    if local_host is not None and run.get("host") == local_host and run.get("pid") and pid_alive is not None:
        return pid_alive(run.get("pid"), run.get("pid_start"))
    until = timeutil.parse_time(run.get("lease_until"))
    return until is not None and now < until


def _take_run(tenant_id, migration, now, request, plan_notes):
    """Claim the migration for the run of ``request`` (run_id, run_owner); refuse one held by a live run."""
    run_id = request.get("run_id")
    if not run_id or request.get("release"):
        return
    owner = request.get("run_owner") or {}
    held = migration.get("run") or {}
    if held and held.get("id") != run_id and held.get("id") in (request.get("ended_runs") or ()):
        held = {}  # that run ended (its failure was audited) but could not release the migration
    if held and held.get("id") != run_id:
        alive = owner_alive(held, now, owner.get("host"), request.get("pid_alive"))
        if alive and not request.get("takeover"):
            raise RecordError(
                "a migration run of %s is in progress (run %s on %s, pid %s, at step %s, lease until %s): wait for it, "
                "or if it is gone pass -e migrate_takeover=true"
                % (tenant_id, held.get("id"), held.get("host"), held.get("pid"), migration.get("step"), held.get("lease_until"))
            )
        abandoned = {"run": held.get("id"), "host": held.get("host"), "step": migration.get("step"),
                     "found_at": format_time(now), "taken_over": bool(alive)}
        migration.setdefault("abandoned_runs", []).append(abandoned)
        plan_notes["abandoned"] = abandoned
    lease = int(request.get("lease_minutes") or DEFAULT_LEASE_MINUTES)
    migration["run"] = {
        "id": run_id,
        "host": owner.get("host"),
        "pid": owner.get("pid"),
        "pid_start": owner.get("pid_start"),
        "started_at": held.get("started_at") if held.get("id") == run_id else format_time(now),
        "lease_until": format_time(now + datetime.timedelta(minutes=lease)),
    }


def _plan_migrating(tenant_id, before, data, version, now, request):
    reason = request.get("reason")
    if reason is not None and reason not in REASONS:
        raise RecordError("invalid reason %r: choose one of %s" % (reason, ", ".join(REASONS)))
    migration = data.get("migration")
    resumed = bool(migration)
    message = None
    notes = {}
    if not migration:
        if reason is None:
            raise RecordError("starting a migration of %s needs a reason (%s)" % (tenant_id, ", ".join(REASONS)))
        if reason == "provision" and (data.get("vps_id") or data.get("vps_ip")):
            raise RecordError("%s has a VPS already (%s): it is provisioned; migrate it instead"
                              % (tenant_id, data.get("vps_name") or data.get("vps_ip") or data.get("vps_id")))
        if reason != "provision" and not (data.get("vps_id") or data.get("vps_ip")):
            raise RecordError("%s has no VPS yet: provision it (penguinmails.vps.provision) before migrating it" % tenant_id)
        name = request.get("server_name")
        name = validate_server_name(name) if name else next_server_name(tenant_id, data)
        if name == data.get("vps_name"):
            raise RecordError("server name %s is the tenant's current VPS; choose another" % name)
        migration = {
            "reason": reason,
            "started_at": format_time(now),
            "server_name": name,
            "old_vps_id": data.get("vps_id"),
            "old_vps_ip": data.get("vps_ip"),
            "old_vps_name": data.get("vps_name"),
        }
        migration = dict((key, value) for key, value in migration.items() if value is not None)
        _mark_step(migration, "recorded", now)
        data["migration"] = migration
        _take_run(tenant_id, migration, now, request, notes)
    else:
        _take_run(tenant_id, migration, now, request, notes)
        if request.get("server_name") and request["server_name"] != migration.get("server_name"):
            raise RecordError(
                "a migration of %s to %s is in progress (step %s); it resumes with that server"
                % (tenant_id, migration.get("server_name"), migration.get("step"))
            )
        if reason is not None and reason != migration.get("reason"):
            message = "resuming the migration started for reason %s (not %s)" % (migration.get("reason"), reason)
    if request.get("replace_server"):
        if step_index(migration.get("step")) >= step_index("ssh_access"):
            raise RecordError("the new VPS of %s is set up already (step %s): it is not replaced" % (tenant_id, migration.get("step")))
        failed = {"server_name": migration.get("server_name"), "serviceid": migration.get("new_vps_id"),
                  "at": format_time(now)}
        migration.setdefault("failed_servers", []).append(dict((k, v) for k, v in failed.items() if v))
        numbers = [server_number(tenant_id, item.get("server_name")) for item in migration["failed_servers"]]
        numbers.append(server_number(tenant_id, next_server_name(tenant_id, data)))
        migration["server_name"] = SERVER_NAME_FORMAT % (tenant_id, max(n for n in numbers if n is not None) + 1)
        for option in ("new_vps_id", "new_vps_ip"):
            migration.pop(option, None)
        message = "the build of %s failed; the migration goes on with %s" % (failed["server_name"], migration["server_name"])
    _note(migration, request)
    if request.get("release"):
        if (migration.get("run") or {}).get("id") == request.get("run_id"):
            migration.pop("run", None)
    if request.get("forget_host_keys"):
        address = text(request["forget_host_keys"], "address")
        for field in ("host_keys", "host_key_fingerprints", "host_keys_recorded"):
            if isinstance(data.get(field), dict):
                data[field].pop(address, None)
    for option, what in (("new_vps_id", "new VPS id"), ("new_vps_ip", "new VPS address")):
        value = text(request.get(option), what)
        if value is None:
            continue
        if option == "new_vps_id" and value == migration.get("old_vps_id"):
            raise RecordError("the new VPS id %s is the old VPS of %s: refusing to record it" % (value, tenant_id))
        known = migration.get(option)
        if known is not None and known != value:
            raise RecordError(
                "the migration of %s recorded %s %s, not %s; the server %s was replaced outside this workflow"
                % (tenant_id, what, known, value, migration.get("server_name"))
            )
        migration[option] = value
    _mark_step(migration, request.get("step"), now)
    if migration.get("step") and step_index(migration["step"]) >= step_index("provisioned"):
        if not (migration.get("new_vps_id") and migration.get("new_vps_ip")):
            raise RecordError("step %s needs new_vps_id and new_vps_ip of the new server" % migration["step"])
    planned = Plan(before, data, version, resumed=resumed, message=message)
    planned.abandoned = notes.get("abandoned")
    return planned


def _check_run(tenant_id, migration, request):
    """A run may only write steps of the migration it holds."""
    held = (migration.get("run") or {}).get("id")
    if request.get("run_id") and held and held != request["run_id"]:
        raise RecordError("the migration of %s was taken over by run %s: this run stops" % (tenant_id, held))


def _plan_migrated(tenant_id, before, data, version, now, request):
    migration = data.get("migration")
    if not migration:
        raise RecordError("no migration of %s is in progress: nothing to record as migrated" % tenant_id)
    _check_run(tenant_id, migration, request)
    if step_index(migration.get("step")) < step_index("dns_switched"):
        raise RecordError(
            "the migration of %s is at step %s: the record switches to the new VPS only after dns_switched"
            % (tenant_id, migration.get("step"))
        )
    if step_index(migration["step"]) < step_index("record_updated"):
        data["vps_id"] = migration["new_vps_id"]
        data["vps_ip"] = migration["new_vps_ip"]
        data["vps_name"] = migration["server_name"]
        for field in ("id", "ip", "name"):
            old = migration.get("old_vps_%s" % field)
            if old is None:
                data.pop("previous_vps_%s" % field, None)
            else:
                data["previous_vps_%s" % field] = old
        if migration["reason"] == "provision":
            data["provisioned_at"] = format_time(now)
        else:
            data["migrated_at"] = format_time(now)
            data["migration_reason"] = migration["reason"]
        for field in ("plan", "region"):
            if request.get(field) is not None:
                data[field] = str(request[field])
        if request.get("dkim_selector") is not None:
            data["dkim_selector"] = validate_selector(request["dkim_selector"])
        _mark_step(migration, "record_updated", now)
    _note(migration, request)
    _mark_step(migration, request.get("step"), now)
    return Plan(before, data, version, resumed=True)


def _note(migration, request):
    if request.get("notes"):
        if not isinstance(request["notes"], dict):
            raise RecordError("notes must be a mapping")
        migration.setdefault("notes", {}).update(request["notes"])


def _plan_aborted(tenant_id, before, data, version, now, request):
    migration = data.pop("migration", None)
    if not migration:
        return Plan(before, before, version, message="no migration of %s is in progress" % tenant_id)
    _check_run(tenant_id, migration, request)
    if step_index(migration.get("step")) >= step_index("dns_switched"):
        raise RecordError("the migration of %s switched DNS already (step %s): it can only be completed, not aborted"
                          % (tenant_id, migration.get("step")))
    migration["aborted_at"] = format_time(now, millis=True)
    migration.pop("run", None)
    data["last_aborted_migration"] = migration
    return Plan(before, data, version, resumed=True)


def _plan_completed(tenant_id, before, data, version, now, request=None):
    migration = data.pop("migration", None)
    if not migration:
        return Plan(before, before, version, message="no migration of %s is in progress" % tenant_id)
    _check_run(tenant_id, migration, request or {})
    if step_index(migration.get("step")) < step_index("record_updated"):
        raise RecordError(
            "the migration of %s is at step %s: record it as migrated before completing it"
            % (tenant_id, migration.get("step"))
        )
    migration["completed_at"] = format_time(now, millis=True)
    migration.pop("run", None)
    # A provisioning is not a move: migrate's "moved recently" rule reads last_migration only.
    data["last_provision" if migration.get("reason") == "provision" else "last_migration"] = migration
    return Plan(before, data, version, resumed=True)


# ---------------------------------------------------------------------------------------
# Vault
# ---------------------------------------------------------------------------------------
class RecordStore(object):
    """Reads and check-and-set writes of one tenant's record."""

    def __init__(self, client, tenant_id, mount="vps", clock=utcnow):
        self.client = client
        self.tenant_id = validate_tenant_id(tenant_id)
        self.mount, self.path = tenant_record_path(tenant_id, mount)
        self.where = "%s/%s" % (self.mount, self.path)
        self.clock = clock

    def read(self):
        """``(data or None, version)``; version 0 when there is no record (the CAS of a first write)."""
        secret = self.client.read_or_none(self.mount, self.path)
        if secret is None:
            return None, 0
        return secret.data, secret.version

    def plan(self, state, request):
        before, version = self.read()
        if before is None and version == 0 and state != "query":
            # A new tenant: ids that differ only by case are one tenant.
            check_tenant_unique(self.tenant_id, [name.rstrip("/") for name in self.client.list(self.mount, "")])
        return plan(self.tenant_id, state, before, version, self.clock(), request)

    def commit(self, planned):
        """Write ``planned.after`` with check-and-set on the version read; returns the new version.

        A changed ``vps_ip`` is published beside the tenant key for the tenant's credentials view
        (module_utils.key_metadata; never fails the write).
        """
        planned.version = self.client.write(self.mount, self.path, planned.after, cas=planned.version)
        before_ip, after_ip = (planned.before or {}).get("vps_ip"), (planned.after or {}).get("vps_ip")
        if after_ip != before_ip:
            key_metadata.publish_vps_ip(self.client, self.mount, self.tenant_id, after_ip)
        return planned.version
