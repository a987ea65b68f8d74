#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: tenant_record
short_description: Read and update a tenant's record in Vault, including the state of a VPS migration
version_added: 0.1.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - Manages the record C(<mount>/<tenant_id>/record) of one tenant in a KV v2 mount of Vault or OpenBao,
    with the fields C(domain), C(vps_id), C(vps_ip), C(vps_name), C(plan), C(region), C(dkim_selector), C(migrated_at),
    C(migration_reason), C(previous_vps_id), C(previous_vps_ip) and C(previous_vps_name).
  - While a migration runs, the mapping C(migration) in the record holds what a rerun needs to resume
    it instead of starting over, see RV(migration). When the migration completes it becomes
    C(last_migration).
  - Every write is a check-and-set on the version that was read (V(0) when there is no record yet).
    Of two runs that start a migration of one tenant at the same time exactly one wins; the other fails
    with a check-and-set conflict and writes nothing. Replaced versions stay in the KV history.
  - The record holds no secret.
  - A new record for a tenant id that differs from an existing one only by case is refused (one tenant).
options:
  tenant_id:
    description:
      - The tenant id, matching C(^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$).
    type: str
    required: true
  state:
    description:
      - V(query) reads the record and changes nothing (M(penguinmails.vps.tenant_record_info) does the same
        and is the module to use for reading).
      - V(present) sets the fields given (O(domain), O(vps_id), O(vps_ip), O(vps_name), O(plan),
        O(region), O(dkim_selector)) and keeps the others; it creates the record if there is none.
      - V(migrating) starts a migration, or resumes the one in progress, and records O(step),
        O(new_vps_id) and O(new_vps_ip). A new migration needs O(reason); its server name is
        O(server_name) or C(pm-<tenant_id>-<n>) with C(n) one more than the highest number the record
        knows. The old VPS (C(vps_id), C(vps_ip), C(vps_name)) is captured at the start.
        A resumed migration keeps its server name and reason; an id or address that differs from the
        recorded one fails.
      - V(migrated) switches the record to the new VPS (step C(record_updated)) once the migration has
        reached C(dns_switched); the old VPS becomes C(previous_vps_*), C(migrated_at) and
        C(migration_reason) are set. A rerun changes nothing.
      - V(completed) ends the migration (it must have reached C(record_updated)) and keeps it as
        C(last_migration). Without a migration in progress it changes nothing.
      - V(aborted) ends a migration that has not switched DNS yet and keeps it as C(last_aborted_migration)
        (after the caller destroyed its half-built VPS).
    type: str
    choices: [query, present, migrating, migrated, completed, aborted]
    default: query
  domain:
    description:
      - The tenant's mail domain (O(state=present)).
    type: str
  vps_id:
    description:
      - The serviceid of the tenant's VPS (O(state=present)).
    type: raw
  vps_ip:
    description:
      - The address of the tenant's VPS (O(state=present)).
    type: str
  vps_name:
    description:
      - The server name of the tenant's VPS (O(state=present)).
    type: str
  plan:
    description:
      - The hosting plan of the VPS (O(state=present) or O(state=migrated)).
    type: str
  region:
    description:
      - The region or location of the VPS (O(state=present) or O(state=migrated)).
    type: str
  dkim_selector:
    description:
      - The DKIM selector Mailu signs with (O(state=present), or O(state=migrated) when a migration moved to a new
        selector); set when DKIM keys rotate to a new selector, read by the migration (default V(dkim)).
    type: str
  run_id:
    description:
      - The id of the run that works on the migration (O(state=migrating)). The first run holds the migration
        (C(migration.run)); another run is refused with a clear message while the holder may still work, as long as its
        C(ansible-playbook) process still runs (same controller) or its lease (O(lease_minutes)) has not
        expired. A holder that is gone is taken over and returned as RV(abandoned).
      - Every write of a step carries it; a run whose migration was taken over stops.
    type: str
  run_owner:
    description:
      - Who runs (C(host), C(pid), C(pid_start) of the C(ansible-playbook) process). Set by the module's action
        plugin; not to be given by hand.
    type: dict
  lease_minutes:
    description:
      - How long a run's hold lasts without a new step, for runs on other controllers.
    type: int
    default: 30
  takeover:
    description:
      - Take the migration over even from a run that may still work (O(state=migrating)).
    type: bool
    default: false
  replace_server:
    description:
      - The build of the new VPS failed (and it was terminated); record it under C(failed_servers) and go on with
        the next server name (O(state=migrating), before step C(ssh_access)).
    type: bool
    default: false
  notes:
    description:
      - Facts of the migration to keep in C(migration.notes) (O(state=migrating)), for example which secrets a
        compromise rotated. Never secrets.
    type: dict
  release:
    description:
      - The run of O(run_id) lets go of the migration (O(state=migrating)), after its failure was audited, so the next
        run does not report it as abandoned.
    type: bool
    default: false
  ended_runs:
    description:
      - Runs known to have ended after auditing their failure, which could not release the migration (Vault sealed
        or unreachable at that moment). Set by the module's action plugin from this controller's markers; not to be
        given by hand.
    type: list
    elements: str
    default: []
  forget_host_keys:
    description:
      - An address whose host keys the record must forget (O(state=migrating)), so that the first contact with a new VPS
        records its keys afresh, whatever an earlier server at that address had.
    type: str
  contact_email:
    description:
      - The tenant's contact address (O(state=present)); key rotations, revocations, regenerations and
        migrations are notified there. V("") clears it.
    type: str
  reason:
    description:
      - Why the tenant moves; needed to start a migration.
      - V(provision) is the provisioning of a tenant that has no VPS yet (playbook C(penguinmails.vps.provision)); the
        record switches to the new VPS with C(provisioned_at) (not C(migrated_at)) and the completed run is kept as
        C(last_provision). A migration needs a tenant with a VPS, a provisioning one without.
    type: str
    choices: [compromise, failure, upgrade, provision]
  step:
    description:
      - The migration step reached (O(state=migrating) or O(state=migrated)). The record keeps the
        furthest step reached and the time each step was first reached.
      - The playbook C(penguinmails.vps.provision) records its own steps C(secrets_created), C(first_backup) and C(welcome_sent) too.
    type: str
    choices: [recorded, secrets_rotated, secrets_created, provisioned, ssh_access, mailu, dkim, mail_copied, verified, dns_switched,
              record_updated, first_backup, welcome_sent, final_delta, old_vps_wiped, old_vps_destroyed]
  server_name:
    description:
      - Server name of the new VPS when a migration starts (default C(pm-<tenant_id>-<n>)).
    type: str
  new_vps_id:
    description:
      - The serviceid of the new VPS, once it exists (O(state=migrating)). Needed from step C(provisioned) on.
    type: raw
  new_vps_ip:
    description:
      - The address of the new VPS, once it exists (O(state=migrating)). Needed from step C(provisioned) on.
    type: str
  mount:
    description:
      - The KV v2 mount that holds the tenant records.
    type: str
    default: vps
extends_documentation_fragment:
  - penguinmails.vps.vault
  - penguinmails.vps.attributes
  - penguinmails.vps.attributes.action
  - penguinmails.vps.attributes.action_group
attributes:
  check_mode:
    support: full
    details: Reports the record the run would write, and writes nothing.
  diff_mode:
    support: full
    details: Shows the record before and after.
seealso:
  - module: penguinmails.vps.hostwind_vps
"""

EXAMPLES = r"""
- name: Record the tenant's VPS
  penguinmails.vps.tenant_record:
    tenant_id: acme
    state: present
    domain: acme.example
    vps_id: 100123
    vps_ip: 198.51.100.10
    vps_name: pm-acme-1

- name: Start (or resume) a migration
  penguinmails.vps.tenant_record:
    tenant_id: acme
    state: migrating
    reason: compromise
  register: record

- name: Provision the server the migration chose (a rerun finds it instead of creating another)
  penguinmails.vps.hostwind_vps:
    name: "{{ record.migration.server_name }}"
    plan: "1"
    location: "1"
    image: debian-12
  register: new_vps

- name: Record the new server
  penguinmails.vps.tenant_record:
    tenant_id: acme
    state: migrating
    step: provisioned
    new_vps_id: "{{ new_vps.serviceid }}"
    new_vps_ip: "{{ new_vps.main_ip }}"

- name: After the DNS switch, point the record at the new VPS
  penguinmails.vps.tenant_record:
    tenant_id: acme
    state: migrated

- name: End the migration once the old VPS is gone
  penguinmails.vps.tenant_record:
    tenant_id: acme
    state: completed
"""

RETURN = r"""
record:
  description: The record after the run (before it, with O(state=query)); empty when there is none.
  returned: always
  type: dict
  sample:
    domain: acme.example
    vps_id: "100123"
    vps_ip: 198.51.100.10
    vps_name: pm-acme-1
exists:
  description: Whether the record exists after the run (in check mode, would exist).
  returned: always
  type: bool
migration:
  description: The migration in progress after the run; empty when there is none.
  returned: always
  type: dict
  contains:
    reason:
      description: Why the tenant moves.
      type: str
    step:
      description: The furthest step reached.
      type: str
    steps:
      description: For each step reached, the time it was first reached (ISO 8601 UTC, milliseconds).
      type: dict
    started_at:
      description: When the migration started (ISO 8601 UTC).
      type: str
    server_name:
      description: Server name of the new VPS.
      type: str
    new_vps_id:
      description: Serviceid of the new VPS, once recorded.
      type: str
    new_vps_ip:
      description: Address of the new VPS, once recorded.
      type: str
    old_vps_id:
      description: Serviceid of the VPS being replaced.
      type: str
    old_vps_ip:
      description: Address of the VPS being replaced.
      type: str
    old_vps_name:
      description: Server name of the VPS being replaced.
      type: str
    run:
      description: The run that holds the migration (C(id), C(host), C(pid), C(pid_start), C(started_at), C(lease_until)).
      type: dict
    abandoned_runs:
      description: Earlier runs that stopped without finishing and were taken over (C(run), C(host), C(step), C(found_at)).
      type: list
      elements: dict
    failed_servers:
      description: New servers whose build failed and which were replaced (C(server_name), C(serviceid), C(at)).
      type: list
      elements: dict
    notes:
      description: Facts of the migration (the secrets a compromise rotated, the DKIM selectors, the account key name...).
      type: dict
abandoned:
  description: The earlier run this run took the migration over from (its id, host, step), to audit.
  returned: when a run was taken over
  type: dict
resumed:
  description: Whether a migration was already in progress before the run.
  returned: always
  type: bool
version:
  description: The KV version of the record after the run (the version read in check mode or without a change).
  returned: always
  type: int
path:
  description: The record's path, C(<mount>/<tenant_id>/record).
  returned: always
  type: str
  sample: vps/acme/record
msg:
  description: A note, for example that a migration resumes with its original reason.
  returned: when there is something to say
  type: str
"""


from ansible_collections.penguinmails.vps.plugins.module_utils import tenant_record
from ansible_collections.penguinmails.vps.plugins.module_utils.validators import ValidationError
from ansible_collections.penguinmails.vps.plugins.module_utils.vault_client import (
    VaultCASConflict,
    VaultError,
    get_client,
    vault_module,
)

REQUEST_OPTIONS = tenant_record.FIELDS + ("reason", "step", "server_name", "new_vps_id", "new_vps_ip", "run_id", "run_owner",
                                          "lease_minutes", "takeover", "replace_server", "notes", "forget_host_keys",
                                          "release", "ended_runs")


def pid_alive(pid, start):
    """Whether process ``pid`` runs and started at ``start`` (field 22 of /proc/<pid>/stat)."""
    try:
        with open("/proc/%d/stat" % int(pid)) as handle:
            fields = handle.read().rsplit(") ", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return False
    return fields[0] != "Z" and (not start or fields[19] == str(start))


def main():
    module = vault_module(
        dict(
            tenant_id=dict(type="str", required=True),
            state=dict(type="str", default="query", choices=list(tenant_record.STATES)),
            domain=dict(type="str"),
            vps_id=dict(type="raw"),
            vps_ip=dict(type="str"),
            vps_name=dict(type="str"),
            plan=dict(type="str"),
            region=dict(type="str"),
            dkim_selector=dict(type="str"),
            contact_email=dict(type="str"),
            reason=dict(type="str", choices=list(tenant_record.REASONS)),
            step=dict(type="str", choices=list(tenant_record.ORDER)),
            server_name=dict(type="str"),
            new_vps_id=dict(type="raw"),
            new_vps_ip=dict(type="str"),
            run_id=dict(type="str"),
            run_owner=dict(type="dict"),
            lease_minutes=dict(type="int", default=tenant_record.DEFAULT_LEASE_MINUTES),
            takeover=dict(type="bool", default=False),
            replace_server=dict(type="bool", default=False),
            notes=dict(type="dict"),
            forget_host_keys=dict(type="str", no_log=False),
            release=dict(type="bool", default=False),
            ended_runs=dict(type="list", elements="str", default=[]),
            mount=dict(type="str", default="vps"),
        )
    )
    p = module.params
    request = dict((name, p[name]) for name in REQUEST_OPTIONS)
    request["pid_alive"] = pid_alive
    try:
        store = tenant_record.RecordStore(get_client(p), p["tenant_id"], mount=p["mount"])
        for attempt in (1, 2):
            planned = store.plan(p["state"], request)
            if not planned.changed or module.check_mode:
                break
            try:
                store.commit(planned)
                break
            except VaultCASConflict:
                if attempt == 2:
                    raise
                # Another run wrote meanwhile: plan again on what it wrote (its lock, if any, is then seen).
    except (ValidationError, VaultError, tenant_record.RecordError) as exc:
        module.fail_json(msg=str(exc))
    after = planned.after or {}
    result = dict(
        changed=planned.changed,
        record=after,
        exists=planned.after is not None,
        migration=after.get("migration") or {},
        resumed=planned.resumed,
        version=planned.version,
        path=store.where,
    )
    if planned.message:
        result["msg"] = planned.message
    if getattr(planned, "abandoned", None):
        result["abandoned"] = planned.abandoned
    if module._diff:
        result["diff"] = dict(before=planned.before or {}, after=after)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
