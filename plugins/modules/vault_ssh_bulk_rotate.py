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
    stores it (the old public key becomes the grace key), with a check-and-set write on the version that
    was read. A tenant whose key changed meanwhile fails alone, with a clear message; the others go on.
  - This module changes Vault only. Install the new public keys on the hosts afterwards with the role
    penguinmails.vps.ssh_access (the old keys stay valid there until their grace ends).
options:
  tenants:
    description:
      - The tenant ids. When empty, every tenant under O(mount) is considered.
    type: list
    elements: str
    default: []
  roles:
    description:
      - Which keys of each tenant.
    type: list
    elements: str
    choices: [admin, tenant]
    default: [admin, tenant]
  rotation_days:
    description:
      - A key is due this many days after its last rotation.
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
      - Type of the new keys.
    type: str
    choices: [rsa, ed25519]
    default: rsa
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
extends_documentation_fragment:
  - penguinmails.vps.vault
attributes:
  check_mode:
    support: full
    description: Reads every key and reports which would rotate; generates and writes nothing.
  diff_mode:
    support: none
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
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
    msg: "rotated {{ bulk.rotated_count }}, failed {{ bulk.failed_count }}"

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
  sample: [{"tenant_id": "t1", "role": "admin", "fingerprint": "SHA256:...", "version": 4}]
rotated_count:
  description: How many keys were rotated.
  returned: always
  type: int
failed:
  description: The keys that could not be rotated, with the reason (never a secret).
  returned: always
  type: list
  elements: dict
  sample: [{"tenant_id": "t2", "role": "tenant", "error": "check-and-set conflict on write of vps/t2/tenant_ssh ..."}]
failed_count:
  description: How many keys failed.
  returned: always
  type: int
skipped:
  description: Keys not rotated (not due, revoked, missing), with the reason.
  returned: always
  type: list
  elements: dict
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
            roles=dict(type="list", elements="str", choices=["admin", "tenant"], default=["admin", "tenant"]),
            rotation_days=dict(type="int", default=90),
            force=dict(type="bool", default=False),
            grace_hours=dict(type="int", default=24),
            key_type=dict(type="str", choices=list(ssh_keys.KEY_TYPES), default="rsa"),
            bits=dict(type="int", default=4096),
            workers=dict(type="int"),
            mount=dict(type="str", default="vps"),
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
        result = bulk_rotation.rotate_many(
            client, tenants, roles=p["roles"], mount=p["mount"], key_type=p["key_type"], bits=p["bits"],
            rotation_days=p["rotation_days"], grace_hours=p["grace_hours"], force=p["force"], workers=p["workers"],
            check_mode=module.check_mode,
        )
    except (ValidationError, VaultError) as exc:
        module.fail_json(msg=str(exc))
    result.update(
        invalid_tenants=invalid,
        rotated_count=len(result["rotated"]),
        failed_count=len(result["failed"]),
        changed=bool(result["rotated"]) or bool(module.check_mode and result.get("would_rotate")),
    )
    if result["failed"]:
        module.fail_json(msg="%d of %d due keys could not be rotated" % (len(result["failed"]), len(result["failed"]) + len(result["rotated"])),
                         **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
