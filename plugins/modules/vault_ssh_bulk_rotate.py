#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vault_ssh_bulk_rotate
short_description: Rotate the due SSH keys of many tenants in Vault, on every core
version_added: 0.1.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - Rotates, in one run, every due SSH key (C(<mount>/<tenant>/admin_ssh), C(<mount>/<tenant>/tenant_ssh))
    of the given tenants, or of every tenant found under the mount.
  - Key generation runs in a pool of O(workers) processes (default one per core); Vault reads happen ahead
    and every new key is written as soon as it exists, so the run approaches the machine's limit.
  - Each key is stored exactly as M(penguinmails.vps.vault_ssh_keypair) with O(penguinmails.vps.vault_ssh_keypair#module:state=rotated)
    stores it (the old public key joins the grace keys, each superseded key with its own grace; an admin key
    keeps the last key its host confirmed as the fallback), with a check-and-set write on the version that was
    read. A key that another run replaced meanwhile is reported under RV(skipped) with the reason
    V(rotated concurrently), the fingerprint that stands and a one-line C(message) - not a failure, no rerun
    needed; a key that cannot be
    written fails alone, under RV(failures) with its reason; the others go on and the task succeeds.
    Check RV(failures_count) (or let the playbook fail after the host updates, as
    penguinmails.vps.rotate does).
  - This module changes Vault only. Install the new public keys on the hosts afterwards with the role
    penguinmails.vps.ssh_access (the old keys stay valid there until their grace ends).
options:
  tenants:
    description:
      - The tenant ids. When empty, every tenant under O(mount) is considered.
    type: list
    elements: str
    default: []
  addresses:
    description:
      - Only the tenants whose host (C(vps_ip) of C(<mount>/<tenant>/record)) is one of these addresses, out of
        O(tenants) (or of every tenant under O(mount)). For a sliced job (AWX/AAP job slicing), give the names and
        C(ansible_host) of the slice's inventory hosts; each tenant is then rotated by exactly one slice, the one
        that holds its host (penguinmails.vps.rotate_all does so with C(penguinmails_tenant_scope=inventory)).
      - A tenant without a record belongs to no host and is left out; a record that cannot be read is reported
        under RV(failures) with the role C(record).
      - Unset, every tenant considered is rotated; an empty list rotates nothing.
    type: list
    elements: str
  roles:
    description:
      - Which keys of each tenant.
    type: list
    elements: str
    choices: [admin, tenant]
    default: [admin, tenant]
  rotation_days:
    description:
      - A key is due at most this many days after its last rotation.
      - Due dates are spread as by M(penguinmails.vps.vault_ssh_keypair) - a key is due a stable number of days
        early, from 0 to 10% of the period (0 to 8 days of 90), derived from its tenant id and role, so that keys
        rotated on one day (a bulk onboarding, a forced rotation) come due over several days.
    type: int
    default: 90
  force:
    description:
      - Rotate every key, due or not (for example after a suspected leak).
    type: bool
    default: false
  grace_hours:
    description:
      - How long the previous public key stays valid.
    type: int
    default: 24
  key_type:
    description:
      - Type of the new keys. By default each key keeps its own type (RSA for a key without one).
    type: str
    choices: [rsa, ed25519]
  bits:
    description:
      - Size of new RSA keys.
    type: int
    default: 4096
  workers:
    description:
      - Key generation processes. Defaults to the number of cores.
    type: int
  mount:
    description:
      - The KV v2 mount of the SSH keys.
    type: str
    default: vps
  tenant_download:
    description:
      - Offer each rotated tenant key to its tenant for a self-service download, once (a single-use Vault wrapping
        token of the new version, valid for O(grace_hours) and at least 24 hours, kept at
        C(<mount>/<tenant>/tenant_ssh_download); see M(penguinmails.vps.vault_tenant_key_download)).
      - An offer that cannot be made is a warning; the rotation stands.
    type: bool
    default: true
    version_added: 0.2.0
extends_documentation_fragment:
  - penguinmails.vps.vault
  - penguinmails.vps.attributes
  - penguinmails.vps.attributes.action_group
attributes:
  check_mode:
    support: full
    details: Reads every key and reports which would rotate; generates and writes nothing.
  diff_mode:
    support: none
notes:
  - No private key is ever returned or logged.
seealso:
  - module: penguinmails.vps.vault_ssh_keypair
"""

EXAMPLES = r"""
- name: Rotate every due key of every tenant (daily schedule)
  penguinmails.vps.vault_ssh_bulk_rotate:
  register: bulk

- name: Report the counts
  ansible.builtin.debug:
    msg: "rotated {{ bulk.rotated_count }}, failed {{ bulk.failures_count }}"

- name: Rotate the due keys of the tenants on this slice's hosts (AWX job slicing)
  penguinmails.vps.vault_ssh_bulk_rotate:
    addresses: "{{ groups['all'] + groups['all'] | map('extract', hostvars, 'ansible_host') | select('defined') | list }}"

- name: Force a new admin key for two tenants
  penguinmails.vps.vault_ssh_bulk_rotate:
    tenants: [t1, t2]
    roles: [admin]
    force: true
"""

RETURN = r"""
rotated:
  description: The keys rotated.
  returned: always
  type: list
  elements: dict
  sample: [{"tenant_id": "t1", "role": "admin", "fingerprint": "SHA256:...", "version": 4, "next_rotation": "2027-02-14T12:00:00Z"},
           {"tenant_id": "t1", "role": "tenant", "fingerprint": "SHA256:...", "version": 3, "next_rotation": "2027-02-14T12:00:00Z",
            "download_offer_expires_at": "2026-11-24T12:00:00Z"}]
rotated_count:
  description: How many keys were rotated.
  returned: always
  type: int
failures:
  description:
    - The keys that could not be rotated, with the reason (never a secret). Named so because Ansible
      reserves C(failed) for the task's own status.
  returned: always
  type: list
  elements: dict
  sample: [{"tenant_id": "t2", "role": "tenant", "error": "Vault refused write of vps/t2/tenant_ssh (HTTP 403): permission denied"}]
tenants_considered:
  description: How many tenants were considered (after O(addresses)).
  returned: always
  type: int
failures_count:
  description: How many keys could not be rotated.
  returned: always
  type: int
skipped:
  description:
    - Keys not rotated (V(not due), V(revoked), V(no key), V(rotated concurrently)), with the reason.
    - V(rotated concurrently) - another run replaced the key first; the entry also has the C(fingerprint) that
      stands and a one-line C(message). Not a failure; no rerun needed.
  returned: always
  type: list
  elements: dict
  sample: [{"tenant_id": "t3", "role": "admin", "reason": "not due"},
           {"tenant_id": "t4", "role": "tenant", "reason": "rotated concurrently", "fingerprint": "SHA256:...",
            "message": "t4/tenant key replaced concurrently by another run - ..."}]
skipped_count:
  description: How many keys were not rotated.
  returned: always
  type: int
unconfirmed:
  description: Active keys whose host has not confirmed them yet (rotated now, or left so by an earlier run).
  returned: always
  type: list
  elements: dict
  sample: [{"tenant_id": "t1", "role": "admin"}]
host_updates:
  description:
    - One job per tenant with an unconfirmed key - C(tenant_id), C(roles) (O(roles)) and C(rotated_roles) (the
      roles rotated in this run) - for the host step (role penguinmails.vps.ssh_access).
  returned: always
  type: list
  elements: dict
  sample: [{"tenant_id": "t1", "roles": ["admin", "tenant"], "rotated_roles": ["admin"]}]
would_rotate:
  description: In check mode, the keys that would be rotated.
  returned: when check mode or nothing is due
  type: list
  elements: dict
invalid_tenants:
  description: Names under the mount that are not valid tenant ids (ignored).
  returned: always
  type: list
  elements: str
timings:
  description: Seconds spent reading, generating and in total.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.penguinmails.vps.plugins.module_utils import bulk_rotation, ssh_keys
from ansible_collections.penguinmails.vps.plugins.module_utils.validators import ValidationError, validate_tenant_id
from ansible_collections.penguinmails.vps.plugins.module_utils.vault_client import (
    VaultError,
    get_client,
    vault_module,
)


def main():
    module = vault_module(
        dict(
            tenants=dict(type="list", elements="str", default=[]),
            addresses=dict(type="list", elements="str"),
            roles=dict(type="list", elements="str", choices=["admin", "tenant"], default=["admin", "tenant"]),
            rotation_days=dict(type="int", default=90),
            force=dict(type="bool", default=False),
            grace_hours=dict(type="int", default=24),
            key_type=dict(type="str", choices=list(ssh_keys.KEY_TYPES)),
            bits=dict(type="int", default=4096),
            workers=dict(type="int"),
            mount=dict(type="str", default="vps"),
            tenant_download=dict(type="bool", default=True),
        )
    )
    if not ssh_keys.HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib("cryptography"), exception=str(ssh_keys.CRYPTOGRAPHY_IMPORT_ERROR))
    p = module.params
    try:
        if p["rotation_days"] < 1 or p["grace_hours"] < 0 or (p["workers"] is not None and p["workers"] < 1):
            raise ValidationError("rotation_days and workers must be at least 1 and grace_hours not negative")
        tenants = [validate_tenant_id(tenant) for tenant in p["tenants"]]
        client = get_client(p)
        invalid = []
        if not tenants:
            tenants, invalid = bulk_rotation.list_tenants(client, p["mount"])
        record_failures = []
        if p["addresses"] is not None:
            tenants, record_failures = bulk_rotation.tenants_at(client, tenants, p["addresses"], p["mount"])
        result = bulk_rotation.rotate_many(
            client, tenants, roles=p["roles"], mount=p["mount"], key_type=p["key_type"], bits=p["bits"],
            rotation_days=p["rotation_days"], grace_hours=p["grace_hours"], force=p["force"], workers=p["workers"],
            check_mode=module.check_mode, tenant_download_offer=p["tenant_download"],
        )
    except (ValidationError, VaultError) as exc:
        module.fail_json(msg=str(exc))
    for error in result.pop("download_offer_errors", []):
        module.warn(error)
    result["failures"] = sorted(record_failures + result["failures"], key=lambda item: (item["tenant_id"], item["role"]))
    result.update(
        tenants_considered=len(tenants),
        invalid_tenants=invalid,
        rotated_count=len(result["rotated"]),
        failures_count=len(result["failures"]),
        skipped_count=len(result["skipped"]),
        host_updates=bulk_rotation.host_updates(result, p["roles"]),
        changed=bool(result["rotated"]) or bool(module.check_mode and result.get("would_rotate")),
    )
    if result["failures"]:
        module.warn("%d of %d due keys could not be rotated (see failures)"
                    % (len(result["failures"]), len(result["failures"]) + len(result["rotated"])))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
