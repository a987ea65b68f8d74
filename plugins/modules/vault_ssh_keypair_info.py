#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vault_ssh_keypair_info
short_description: The public state of a tenant's SSH keys in Vault, and what its host must accept
version_added: 0.2.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - Reads C(<mount>/<tenant_id>/<role>_ssh) for each of O(roles) and returns its public fields, its KV
    version, whether the host confirmed the current key, and the keys the host must hold now,
    the C(host_keys) of RV(keys) (valid without an expiry, the current key and, while it is unconfirmed, the
    fallback key) and the grace key with its expiry.
  - This is what the role penguinmails.vps.ssh_access installs, with the KV version as the
    C(serial) of M(penguinmails.vps.authorized_key_rotate), so an older state never replaces a newer one.
  - Never returns a private key.
options:
  tenant_id:
    description:
      - The tenant id.
    type: str
    required: true
  roles:
    description:
      - Which keys.
    type: list
    elements: str
    choices: [admin, tenant]
    default: [admin, tenant]
  mount:
    description:
      - The KV v2 mount that holds the tenants' SSH keys.
    type: str
    default: vps
extends_documentation_fragment:
  - penguinmails.vps.vault
  - penguinmails.vps.attributes
  - penguinmails.vps.attributes.info_module
  - penguinmails.vps.attributes.action_group
seealso:
  - module: penguinmails.vps.vault_ssh_keypair
  - module: penguinmails.vps.authorized_key_rotate
"""

EXAMPLES = r"""
- name: What must acme's host accept now
  penguinmails.vps.vault_ssh_keypair_info:
    tenant_id: acme
  register: keys

- name: Install it
  penguinmails.vps.authorized_key_rotate:
    user: root
    keys: "{{ keys.keys.admin.host_keys }}"
    grace_keys: "{{ keys.keys.admin.grace_keys }}"
    marker: "penguinmails:acme:admin"
    serial: "{{ keys.keys.admin.version }}"
"""

RETURN = r"""
keys:
  description:
    - Per role, the public fields of the record (C(public_key), C(fingerprint), C(key_type), C(state),
      C(last_rotated), C(grace_public_key), C(grace_until), C(fallback_public_key), C(installed_fingerprint),
      C(downloaded_at), ...) plus C(version) (the KV version), C(exists), C(confirmed), C(host_keys)
      (keys valid without an expiry), C(grace_keys) (a list of C({key, expires}) while the grace key is
      valid and not already in C(host_keys); every superseded key with its own end), C(revoked_keys) (the public keys
      of a revoked record) and C(next_rotation) (when the key is planned to rotate, spread per tenant, never later
      than its rotation period).
  returned: always
  type: dict
  sample:
    admin:
      exists: true
      version: 7
      fingerprint: "SHA256:4mTOk1cvyjAT0xQXTxxbTrrC1i2Bwdf4XBJzHkLb0rA"
      confirmed: false
      host_keys: ["ssh-rsa AAAA... penguinmails-acme-admin", "ssh-rsa AAAA... penguinmails-acme-admin"]
      grace_keys: []
      revoked_keys: []
"""

from ansible_collections.penguinmails.vps.plugins.module_utils import keypair_store
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
            roles=dict(type="list", elements="str", choices=["admin", "tenant"], default=["admin", "tenant"]),
            mount=dict(type="str", default="vps"),
        )
    )
    p = module.params
    try:
        client = get_client(p)
        keys = {}
        for role in p["roles"]:
            store = keypair_store.KeypairStore(client, p["tenant_id"], role, mount=p["mount"])
            data, version = store.read()
            keys[role] = keypair_store.host_view(data, version, keypair_store.utcnow(), tenant_id=p["tenant_id"], role=role)
    except (ValidationError, VaultError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, keys=keys)


if __name__ == "__main__":
    main()
