#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vault_restore_serials
short_description: After a Vault restore, carry a tenant's key records past the serials its host holds
version_added: 0.4.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - A host's C(authorized_keys) remembers, per tenant and role, the highest KV version (serial) whose keys it got,
    and refuses keys of a lower serial - so a run that read Vault before another rotated cannot put old keys back.
    A Vault restored from a snapshot has lost the versions written after the snapshot, while the hosts still hold
    their serials - its next rotations would be refused by the host (reported as superseded by a newer run), and
    the restored key would stop working when its grace ends (docs/vault-recovery.md).
  - This module reads the serials of O(tenant_id)'s markers on O(host) over SSH (nothing is changed there) and
    writes the tenant's C(admin_ssh) and C(tenant_ssh) records again, unchanged, with check-and-set, until their
    version reaches the host's serial. The next rotation is then installed as usual.
  - Runs on the controller; penguinmails.vps.vault_restored runs it for every tenant after a restore.
extends_documentation_fragment:
  - penguinmails.vps.vault
  - penguinmails.vps.attributes
  - penguinmails.vps.attributes.action_group
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
    details: No diff is returned.
options:
  tenant_id:
    description:
      - The tenant.
    type: str
    required: true
  host:
    description:
      - Address of the tenant's VPS.
    type: str
    required: true
  ssh_args:
    description:
      - Options for C(ssh) to O(host), for example the C(ssh_args) that M(penguinmails.vps.ssh_agent) returns.
    type: str
    default: ""
  user:
    description:
      - The SSH user on O(host); its home holds the admin C(authorized_keys).
    type: str
    default: root
  mount:
    description:
      - The KV v2 mount of the key records.
    type: str
    default: vps
  marker_prefix:
    description:
      - The prefix of the markers in C(authorized_keys) (as the rotation modules write them).
    type: str
    default: penguinmails
  connect_timeout:
    description:
      - Seconds to wait for the SSH connection.
    type: int
    default: 15
requirements:
  - hvac >= 1.2 (Python library)
seealso:
  - module: penguinmails.vps.vault_snapshot
"""

EXAMPLES = r"""
- name: Carry acme's key records past its host's serials after the restore
  penguinmails.vps.vault_restore_serials:
    tenant_id: acme
    host: 203.0.113.10
    ssh_args: "{{ agent.hosts['203.0.113.10'].ssh_args }}"
"""

RETURN = r"""
roles:
  description: Per role (C(admin), C(tenant)) the host's serial, the record's version before and after, and the writes.
  returned: always
  type: dict
  sample: {"admin": {"host_serial": 9, "version_before": 6, "version_after": 9, "writes": 3}}
writes:
  description: Versions written in all (in check mode, that would be).
  returned: always
  type: int
"""

from ansible_collections.penguinmails.vps.plugins.module_utils import vault_snapshot
from ansible_collections.penguinmails.vps.plugins.module_utils.maildir_sync import Endpoint, SyncError
from ansible_collections.penguinmails.vps.plugins.module_utils.validators import ValidationError, tenant_account, validate_tenant_id
from ansible_collections.penguinmails.vps.plugins.module_utils.vault_client import (
    OPTION_SOURCES,
    VaultError,
    get_client,
    vault_module,
)

ROLES = ("admin", "tenant")


def main():
    module = vault_module(dict(
        tenant_id=dict(type="str", required=True),
        host=dict(type="str", required=True),
        ssh_args=dict(type="str", default=""),
        user=dict(type="str", default="root"),
        mount=dict(type="str", default="vps"),
        marker_prefix=dict(type="str", default="penguinmails"),
        connect_timeout=dict(type="int", default=15),
    ))
    p = module.params
    try:
        tenant = validate_tenant_id(p["tenant_id"])
        files = ["~%s/.ssh/authorized_keys" % p["user"], "~%s/.ssh/authorized_keys" % tenant_account(tenant)]
        endpoint = Endpoint(p["host"], p["ssh_args"], p["user"], connect_timeout=p["connect_timeout"])
        text = endpoint.run("grep -h '^# penguinmails-serial ' %s 2>/dev/null; true" % " ".join(files), timeout=60)
        serials = vault_snapshot.host_serials(text.decode("utf-8", "replace"), p["marker_prefix"], tenant)
        client = get_client(dict((name, p.get(name)) for name in OPTION_SOURCES))
        roles = {}
        for role in ROLES:
            serial = serials.get(role, 0)
            before, after, writes = vault_snapshot.advance(client, p["mount"], "%s/%s_ssh" % (tenant, role), serial,
                                                           module.check_mode)
            roles[role] = dict(host_serial=serial, version_before=before, version_after=after, writes=writes)
    except (SyncError, ValidationError, VaultError) as exc:
        module.fail_json(msg="restore serials of %s: %s" % (p["tenant_id"], exc))
    writes = sum(item["writes"] for item in roles.values())
    module.exit_json(changed=writes > 0, roles=roles, writes=writes)


if __name__ == "__main__":
    main()
