#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: tenant_credentials_info
short_description: A tenant's SSH credentials view - VPS address, user, port, key fingerprint and rotation dates
version_added: 0.3.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - The read-only SSH credentials view of one tenant, for the tenant itself (its own Vault login, see
    M(penguinmails.vps.vault_tenant_login)) or for an operator - the six fields of the product's
    C(GET /api/v1/tenant/infrastructure/ssh-credentials) - C(vpsIp), C(sshUsername), C(sshPort), C(keyFingerprint),
    C(lastRotated), C(nextRotation).
  - Never returns a secret (no private key, no token) and writes nothing; viewing does not use up the one-time
    download (C(downloaded_at) stays as it is).
  - A KV v2 read returns every field of a secret, so a policy cannot let a tenant read the fingerprint of
    C(<mount>/<tenant>/tenant_ssh) without also reading its private key. The policy C(tenant) therefore grants a
    tenant only the B(metadata) of its own C(tenant_ssh), and every write of the key (creation, rotation, bulk
    rotation, regeneration, revocation, confirmation, download) publishes the key's public fields in that
    metadata's C(custom_metadata) (C(fingerprint), C(key_type), C(created_at), C(last_rotated),
    C(rotation_policy), C(state), C(key_version)), as the tenant record publishes its C(vps_ip) there. The
    policy C(automation) may patch C(custom_metadata) and no other metadata parameter, so it still cannot change
    the history's retention. A tenant token reads nothing else, and no other tenant's metadata.
  - A token that may read the secret itself (admin, automation) uses the published fields while they describe the
    current version and reads the secret otherwise (a key not written since the fields are published); the VPS
    address then comes from the tenant record. Which of both the token may read is asked once with
    C(sys/capabilities-self), so a tenant's view leaves no denied request in Vault's audit log.
  - The user name is the tenant's account on its VPS, C(tenant-<tenant id in lower case>) (the filter
    penguinmails.vps.tenant_account, as the role penguinmails.vps.ssh_access creates it); C(nextRotation) is
    the key's planned rotation (its rotation period after the last rotation, spread per tenant, never later).
  - Audit the view with M(penguinmails.vps.audit_event), as the playbook penguinmails.vps.credentials does; Vault's
    audit device records the read as well.
options:
  tenant_id:
    description:
      - The tenant id.
    type: str
    required: true
  ssh_port:
    description:
      - The SSH port of the tenant's VPS (the tenant record holds none).
    type: int
    default: 22
  mount:
    description:
      - The KV v2 mount of the tenants' SSH keys and records.
    type: str
    default: vps
extends_documentation_fragment:
  - penguinmails.vps.vault
  - penguinmails.vps.attributes
  - penguinmails.vps.attributes.info_module
  - penguinmails.vps.attributes.action_group
seealso:
  - module: penguinmails.vps.vault_ssh_keypair_info
  - module: penguinmails.vps.vault_ssh_key_download
  - module: penguinmails.vps.vault_tenant_login
"""

EXAMPLES = r"""
- name: The credentials view of acme, with acme's own login
  penguinmails.vps.tenant_credentials_info:
    tenant_id: acme
    auth_method: token
    token: "{{ acme_vault_token }}"
  register: view

- name: Show how to connect
  ansible.builtin.debug:
    msg: "ssh -i acme.key -p {{ view.credentials.sshPort }} {{ view.credentials.sshUsername }}@{{ view.credentials.vpsIp }}"
"""

RETURN = r"""
credentials:
  description: The six fields of the view.
  returned: success
  type: dict
  contains:
    vpsIp:
      description: The address of the tenant's VPS (null when the tenant record has none).
      type: str
      sample: 192.0.2.10
    sshUsername:
      description: The tenant's account on its VPS.
      type: str
      sample: tenant-acme
    sshPort:
      description: The SSH port (O(ssh_port)).
      type: int
      sample: 22
    keyFingerprint:
      description: The SHA256 fingerprint of the tenant's current public key.
      type: str
      sample: "SHA256:4mTOk1cvyjAT0xQXTxxbTrrC1i2Bwdf4XBJzHkLb0rA"
    lastRotated:
      description: When the key was last rotated (or created), ISO 8601 UTC.
      type: str
      sample: "2026-11-20T10:00:00Z"
    nextRotation:
      description: When the key is planned to rotate, ISO 8601 UTC; null for a revoked key.
      type: str
      sample: "2027-02-12T10:00:00Z"
state:
  description: The key's state, V(active) or V(revoked).
  returned: success
  type: str
  sample: active
source:
  description:
    - V(metadata) when the fields come from the key's published metadata, V(secret) when they were read from the
      secret (a token that may read it, and a published view that is behind).
  returned: success
  type: str
  sample: metadata
stale:
  description:
    - True when the published fields describe an older version of the key than the current one and the token may not
      read the secret (the next write of the key publishes them again).
  returned: success
  type: bool
  sample: false
key_version:
  description: The KV version of the key the view describes.
  returned: success
  type: int
  sample: 3
viewer:
  description: V(tenant) for a token that may not read the secret itself (a tenant's login), V(operator) otherwise.
  returned: success
  type: str
  sample: tenant
"""

from ansible_collections.penguinmails.vps.plugins.module_utils import ssh_credentials
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
            ssh_port=dict(type="int", default=22),
            mount=dict(type="str", default="vps"),
        )
    )
    p = module.params
    if not 1 <= p["ssh_port"] <= 65535:
        module.fail_json(msg="ssh_port must be between 1 and 65535, not %s" % p["ssh_port"])
    try:
        result = ssh_credentials.view(get_client(p), p["tenant_id"], mount=p["mount"], ssh_port=p["ssh_port"])
    except (ValidationError, VaultError, ssh_credentials.CredentialsError) as exc:
        module.fail_json(msg="tenant_credentials_info: %s" % exc)
    if result["stale"]:
        module.warn("the published credentials of %s describe an older key version than the current one: "
                    "the next write of the key publishes them again" % p["tenant_id"])
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
