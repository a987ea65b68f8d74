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
    type: str
    choices: [query, present, migrating, migrated, completed]
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
      - The DKIM selector Mailu signs with (O(state=present)); set when DKIM keys rotate to a new selector,
        read by the migration (default V(dkim)).
    type: str
  contact_email:
    description:
      - The tenant's contact address (O(state=present)); key rotations, revocations, regenerations and
        migrations are notified there. V("") clears it.
    type: str
  reason:
    description:
      - Why the tenant moves; needed to start a migration.
    type: str
    choices: [compromise, failure, upgrade]
  step:
    description:
      - The migration step reached (O(state=migrating) or O(state=migrated)). The record keeps the
        furthest step reached and the time each step was first reached.
    type: str
    choices: [recorded, provisioned, ssh_access, mailu, dkim, verified, dns_switched, record_updated, old_vps_destroyed]
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
attributes:
  check_mode:
    support: full
    description: Reports the record the run would write, and writes nothing.
  diff_mode:
    support: full
    description: Shows the record before and after.
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
    VaultError,
    get_client,
    vault_module,
)

REQUEST_OPTIONS = tenant_record.FIELDS + ("reason", "step", "server_name", "new_vps_id", "new_vps_ip")


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
            step=dict(type="str", choices=list(tenant_record.STEPS)),
            server_name=dict(type="str"),
            new_vps_id=dict(type="raw"),
            new_vps_ip=dict(type="str"),
            mount=dict(type="str", default="vps"),
        )
    )
    p = module.params
    try:
        store = tenant_record.RecordStore(get_client(p), p["tenant_id"], mount=p["mount"])
        planned = store.plan(p["state"], dict((name, p[name]) for name in REQUEST_OPTIONS))
        if planned.changed and not module.check_mode:
            store.commit(planned)
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
    if module._diff:
        result["diff"] = dict(before=planned.before or {}, after=after)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
