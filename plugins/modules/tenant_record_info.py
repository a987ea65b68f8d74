#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: tenant_record_info
short_description: Read a tenant's record in Vault
version_added: 0.2.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - Reads C(<mount>/<tenant_id>/record) (the tenant's VPS, domain, DKIM selector, contact address, host keys,
    migration state; see M(penguinmails.vps.tenant_record)) and changes nothing.
  - The record holds no secret.
options:
  tenant_id:
    description:
      - The tenant id.
    type: str
    required: true
  mount:
    description:
      - The KV v2 mount of the tenant records.
    type: str
    default: vps
extends_documentation_fragment:
  - penguinmails.vps.vault
  - penguinmails.vps.attributes
  - penguinmails.vps.attributes.info_module
  - penguinmails.vps.attributes.action_group
seealso:
  - module: penguinmails.vps.tenant_record
"""

EXAMPLES = r"""
- name: Where does acme's VPS live
  penguinmails.vps.tenant_record_info:
    tenant_id: acme
  register: acme

- name: Show it
  ansible.builtin.debug:
    msg: "{{ acme.record.vps_ip | default('no VPS recorded') }}"
"""

RETURN = r"""
record:
  description: The record's fields (empty when there is no record).
  returned: always
  type: dict
  sample: {"domain": "acme.example", "vps_ip": "192.0.2.10", "vps_id": "100007", "dkim_selector": "dkim"}
exists:
  description: Whether the record exists.
  returned: always
  type: bool
migration:
  description: The migration in progress (empty when there is none).
  returned: always
  type: dict
version:
  description: The KV version of the record (0 when there is none).
  returned: always
  type: int
path:
  description: The record's path, C(<mount>/<tenant_id>/record).
  returned: always
  type: str
  sample: vps/acme/record
"""

from ansible_collections.penguinmails.vps.plugins.module_utils import tenant_record
from ansible_collections.penguinmails.vps.plugins.module_utils.validators import ValidationError
from ansible_collections.penguinmails.vps.plugins.module_utils.vault_client import (
    VaultError,
    get_client,
    vault_module,
)


def main():
    module = vault_module(
        dict(
            tenant_id=dict(type="str", required=True),
            mount=dict(type="str", default="vps"),
        )
    )
    p = module.params
    try:
        store = tenant_record.RecordStore(get_client(p), p["tenant_id"], mount=p["mount"])
        data, version = store.read()
    except (ValidationError, VaultError) as exc:
        module.fail_json(msg=str(exc))
    data = data or {}
    module.exit_json(changed=False, record=data, exists=version > 0 and bool(data), migration=data.get("migration") or {},
                     version=version, path=store.where)


if __name__ == "__main__":
    main()
