#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vault_ssh_auth_mode
short_description: Record how the automation reaches a tenant's VPS - stored keys or SSH certificates
version_added: 0.2.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - Sets C(ssh_auth) (V(keys) or V(certificates)) in C(<mount>/<tenant_id>/record) with check-and-set; every
    other field of the record stays as it is. M(penguinmails.vps.ssh_agent) and the role
    penguinmails.vps.ssh_access follow it.
  - This only records a mode; the playbook penguinmails.vps.ssh_auth moves a tenant between modes without
    losing access (it records the new mode only after the host accepted it). See docs/ssh-certificates.md.
options:
  tenant_id:
    description:
      - The tenant.
    type: str
    required: true
  ssh_auth:
    description:
      - The mode to record.
    type: str
    choices: [keys, certificates]
    required: true
  mount:
    description:
      - The KV v2 mount of the tenant records.
    type: str
    default: vps
extends_documentation_fragment:
  - penguinmails.vps.vault
  - penguinmails.vps.attributes
  - penguinmails.vps.attributes.action_group
attributes:
  check_mode:
    support: full
    details: Reports the change; writes nothing.
  diff_mode:
    support: full
    details: The mode before and after.
seealso:
  - module: penguinmails.vps.ssh_agent
"""

EXAMPLES = r"""
- name: Record that acme's VPS is reached with certificates now
  penguinmails.vps.vault_ssh_auth_mode:
    tenant_id: acme
    ssh_auth: certificates
"""

RETURN = r"""
previous:
  description: The mode before (V(keys) when the record had none).
  returned: always
  type: str
  sample: keys
ssh_auth:
  description: The mode now (in check mode, the mode it would be).
  returned: always
  type: str
  sample: certificates
version:
  description: The KV version of the record after the change (the version read when nothing changed).
  returned: success
  type: int
"""

from ansible_collections.penguinmails.vps.plugins.module_utils import ssh_ca
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
            ssh_auth=dict(type="str", required=True, choices=list(ssh_ca.MODES)),
            mount=dict(type="str", default="vps"),
        )
    )
    p = module.params
    try:
        store = ssh_ca.ModeStore(get_client(p), p["tenant_id"], p["mount"])
        record, version, new = store.plan(p["ssh_auth"])
        if new is not None and not module.check_mode:
            version = store.commit(new, version)
    except (ValidationError, VaultError, ssh_ca.CAError) as exc:
        module.fail_json(msg=str(exc))
    previous = ssh_ca.tenant_mode(record)
    result = dict(changed=new is not None, previous=previous, ssh_auth=p["ssh_auth"], version=version)
    if module._diff:
        result["diff"] = {"before": "ssh_auth: %s\n" % previous, "after": "ssh_auth: %s\n" % p["ssh_auth"]}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
