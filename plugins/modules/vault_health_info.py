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
  - On integrated (Raft) storage, the Raft health - the servers, voters, leader, the leader's last index and
    autopilot's state (healthy, failure tolerance, each server's health and index) where the server has it.
  - With O(backup_repository), Vault's own last backup (penguinmails.vps.vault_backup) - read from the restic
    repository itself (C(restic snapshots --latest 1)), because what the repository holds is what a restore can
    use; a marker written elsewhere could vouch for a snapshot pruned or lost since. It costs one restic call.
    A backup older than O(backup_max_age_hours), none, or a repository that cannot be read raises a warning.
extends_documentation_fragment:
  - penguinmails.vps.vault
  - penguinmails.vps.attributes
  - penguinmails.vps.attributes.info_module
  - penguinmails.vps.attributes.action_group
options:
  backup_repository:
    description:
      - The restic repository of Vault's snapshots (the one penguinmails.vps.vault_backup writes). Without it,
        RV(vault_health.last_backup) is null and RV(vault_health.backup_status) is V(not_checked).
    type: str
  backup_password:
    description:
      - That repository's password. Defaults to E(PENGUINMAILS_VAULT_BACKUP_PASSWORD).
    type: str
  backup_sftp_command:
    description:
      - The command restic runs to reach an C(sftp:) repository.
    type: str
  backup_env:
    description:
      - Environment for restic (for example S3 credentials).
    type: dict
    default: {}
  backup_name:
    description:
      - restic's host name of the Vault snapshots.
    type: str
    default: vault
  backup_max_age_hours:
    description:
      - A last backup older than this is V(stale) in RV(vault_health.backup_status).
    type: int
    default: 26
  restic_binary:
    description:
      - The restic executable on the controller.
    type: path
    default: restic
notes:
  - Reads C(sys/health), C(sys/seal-status), C(sys/leader) and C(sys/ha-status); only the last
    needs a privileged token, and it is skipped when refused or when the node is sealed. The Raft health reads
    C(sys/storage/raft/configuration) and C(sys/storage/raft/autopilot/state) and is null when refused.
seealso:
  - module: penguinmails.vps.tenant_secrets_info
  - module: penguinmails.vps.vault_snapshot
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
    raft:
      description: Raft health; null when the storage is not Raft, the node is sealed or the token may not read it.
      type: dict
      contains:
        servers:
          description: The Raft configuration's servers (node_id, address, leader, voter).
          type: list
          elements: dict
        voters:
          description: Node ids of the voters.
          type: list
          elements: str
        leader:
          description: Node id of the leader.
          type: str
        last_index:
          description: The leader's last Raft index (autopilot's; null when the server does not say).
          type: int
        autopilot:
          description: Autopilot's state (healthy, failure_tolerance, leader, servers by node id with healthy, status,
            node_type, last_index, last_contact); null when the server has none or refuses it.
          type: dict
    last_backup:
      description: Vault's newest snapshot in O(backup_repository) (id, time, age_seconds, raft_index, vault_version);
        null when there is none or no repository was given.
      type: dict
    backup_status:
      description: V(ok) (a backup younger than O(backup_max_age_hours)), V(stale), V(none) (the repository holds no
        Vault snapshot), V(error) (the repository could not be read, see RV(vault_health.backup_error)) or
        V(not_checked) (no O(backup_repository)).
      type: str
      sample: ok
    backup_error:
      description: Why the repository could not be read (never a secret); null otherwise.
      type: str
"""

import datetime

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

from ansible_collections.penguinmails.vps.plugins.module_utils import restic_backup
from ansible_collections.penguinmails.vps.plugins.module_utils import vault_snapshot
from ansible_collections.penguinmails.vps.plugins.module_utils.key_health import vault_health
from ansible_collections.penguinmails.vps.plugins.module_utils.vault_client import (
    HAS_HVAC,
    HVAC_IMPORT_ERROR,
    OPTION_SOURCES,
    VaultError,
    get_client,
    vault_argument_spec,
)


def last_backup(p, now):
    """(last_backup, backup_status, backup_error) from the Vault snapshots' repository."""
    if not p["backup_repository"]:
        return None, "not_checked", None
    if not p["backup_password"]:
        return None, "error", "backup_password (or PENGUINMAILS_VAULT_BACKUP_PASSWORD) is needed to read %s" % p["backup_repository"]
    restic = restic_backup.Restic(p["backup_repository"], p["backup_password"], p["restic_binary"], p["backup_sftp_command"],
                                  p["backup_env"])
    try:
        view = vault_snapshot.last_backup(restic, p["backup_name"], now)
    except vault_snapshot.SnapshotError as exc:
        return None, "error", str(exc)
    if view is None:
        return None, "none", None
    fresh = view["age_seconds"] is not None and view["age_seconds"] <= p["backup_max_age_hours"] * 3600
    return view, "ok" if fresh else "stale", None


def main():
    argument_spec = vault_argument_spec()
    argument_spec.update(
        backup_repository=dict(type="str"),
        backup_password=dict(type="str", no_log=True, fallback=(env_fallback, ["PENGUINMAILS_VAULT_BACKUP_PASSWORD"])),
        backup_sftp_command=dict(type="str"),
        backup_env=dict(type="dict", default={}, no_log=True),
        backup_name=dict(type="str", default=vault_snapshot.DEFAULT_NAME),
        backup_max_age_hours=dict(type="int", default=26),
        restic_binary=dict(type="path", default="restic"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if not HAS_HVAC:
        module.fail_json(msg=missing_required_lib("hvac"), exception=str(HVAC_IMPORT_ERROR))
    p = module.params
    try:
        client = get_client(dict((name, p.get(name)) for name in OPTION_SOURCES))
        health = vault_health(client)
        health["raft"] = vault_snapshot.raft_health(client) if health["healthy"] else None
    except VaultError as exc:
        module.fail_json(msg=str(exc))
    health["last_backup"], health["backup_status"], health["backup_error"] = last_backup(
        p, datetime.datetime.now(datetime.timezone.utc))
    warning = {
        "stale": lambda: "Vault's last backup (%s) is older than %d h: run penguinmails.vps.vault_backup"
        % ((health["last_backup"] or {}).get("time"), p["backup_max_age_hours"]),
        "none": lambda: "Vault has never been backed up to %s: run penguinmails.vps.vault_backup" % p["backup_repository"],
        "error": lambda: "Vault's last backup could not be read: %s" % health["backup_error"],
    }.get(health["backup_status"])
    if warning:
        module.warn(warning())
    module.exit_json(changed=False, vault_health=health)


if __name__ == "__main__":
    main()
