#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vault_health_info
short_description: Health, seal, storage and HA status of a Vault / OpenBao node
version_added: 0.1.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - Reports whether the node is initialised, sealed or a standby, its version, cluster, seal and
    storage type, unseal progress, and its HA state (leader address, HA nodes when the token may
    read C(sys/ha-status)).
  - A sealed or standby node is reported, not treated as an error; the module fails only when the
    node cannot be reached.
extends_documentation_fragment:
  - penguinmails.vps.vault
  - penguinmails.vps.attributes
  - penguinmails.vps.attributes.info_module
  - penguinmails.vps.attributes.action_group
notes:
  - Reads C(sys/health), C(sys/seal-status), C(sys/leader) and C(sys/ha-status); only the last
    needs a privileged token, and it is skipped when refused or when the node is sealed.
seealso:
  - module: penguinmails.vps.tenant_secrets_info
"""

EXAMPLES = r"""
- name: Check Vault before a rotation
  penguinmails.vps.vault_health_info:
    url: https://vault.example.com:8200
  register: vault

- name: Stop when Vault is sealed
  ansible.builtin.assert:
    that: vault.vault_health.healthy
    fail_msg: "Vault is sealed or not initialised: unseal it first"
"""

RETURN = r"""
vault_health:
  description: The node's state.
  returned: success
  type: dict
  contains:
    healthy:
      description: Initialised and unsealed.
      type: bool
      sample: true
    initialized:
      description: Whether the node is initialised.
      type: bool
      sample: true
    sealed:
      description: Whether the node is sealed.
      type: bool
      sample: false
    standby:
      description: Whether the node is an HA standby (reported as true by a sealed node).
      type: bool
      sample: false
    performance_standby:
      description: Whether the node is a performance standby.
      type: bool
      sample: false
    is_active:
      description: Whether this node serves requests (HA active node, or unsealed single node).
      type: bool
      sample: true
    version:
      description: Server version.
      type: str
      sample: 2.7.2
    cluster_name:
      description: Cluster name (absent while sealed).
      type: str
      sample: vault-cluster-92aff83d
    cluster_id:
      description: Cluster id (absent while sealed).
      type: str
    server_time_utc:
      description: The server's clock, ISO 8601 UTC.
      type: str
      sample: "2026-11-23T10:44:12Z"
    replication_performance_mode:
      description: Performance replication mode.
      type: str
    replication_dr_mode:
      description: DR replication mode.
      type: str
    seal_type:
      description: Seal type, for example V(shamir) or an auto-unseal type.
      type: str
      sample: shamir
    storage_type:
      description: Storage backend, for example V(raft), V(file), V(inmem).
      type: str
      sample: raft
    unseal_threshold:
      description: Key shares needed to unseal.
      type: int
    unseal_shares:
      description: Key shares in total.
      type: int
    unseal_progress:
      description: Shares entered so far while sealed.
      type: int
    ha_enabled:
      description: Whether the storage backend runs in HA mode.
      type: bool
    leader_address:
      description: The active node's address in HA mode.
      type: str
    ha_nodes:
      description: HA nodes (hostname, api_address, cluster_address, active_node, version); null when not readable.
      type: list
      elements: dict
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.penguinmails.vps.plugins.module_utils.key_health import vault_health
from ansible_collections.penguinmails.vps.plugins.module_utils.vault_client import (
    HAS_HVAC,
    HVAC_IMPORT_ERROR,
    VaultError,
    get_client,
    vault_argument_spec,
)


def main():
    module = AnsibleModule(argument_spec=vault_argument_spec(), supports_check_mode=True)
    if not HAS_HVAC:
        module.fail_json(msg=missing_required_lib("hvac"), exception=str(HVAC_IMPORT_ERROR))
    try:
        health = vault_health(get_client(module.params))
    except VaultError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, vault_health=health)


if __name__ == "__main__":
    main()
