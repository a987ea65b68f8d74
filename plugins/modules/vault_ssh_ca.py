#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vault_ssh_ca
short_description: An SSH secrets engine mount of Vault or OpenBao as a CA - set up, rotated with overlap, retired
version_added: 0.2.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - Manages one C(ssh) secrets engine mount used as a certificate authority (the user CA that signs admin
    and tenant certificates, or the host CA that signs host keys); see docs/ssh-certificates.md.
  - O(state=present) enables the mount if it is missing, generates its first CA key (an issuer, named
    C(pm-<UTC time>)) if it has none, and creates or updates the O(roles) that differ from what Vault holds.
  - A CA key is rotated in three runs, so that hosts and clients trust both keys during the overlap.
    O(state=rotated) adds a second key that does not sign yet (nothing happens when one was added already);
    then the hosts learn it (playbook penguinmails.vps.ssh_ca). O(state=switched) makes the newest key the one
    that signs. O(state=retired) deletes every key but the one that signs; then the hosts forget them.
  - Every change is planned from one read; check mode reports the plan and changes nothing.
options:
  mount:
    description:
      - The mount path of the SSH secrets engine.
    type: str
    required: true
  state:
    description:
      - V(present), V(rotated), V(switched) or V(retired); see the description.
    type: str
    choices: [present, rotated, switched, retired]
    default: present
  key_type:
    description:
      - Type of a CA key the module generates.
    type: str
    choices: [ed25519, rsa, ec]
    default: ed25519
  roles:
    description:
      - With O(state=present), role name to the role's fields as the SSH engine takes them (C(key_type) is
        always C(ca)), for example C(allow_user_certificates), C(allowed_users), C(default_user), C(ttl),
        C(max_ttl), C(default_extensions), C(allowed_extensions), C(key_id_format). A role is written when a
        field given here differs from Vault's; fields not given are left alone.
      - In C(key_id_format) write Vault's variables as C(<role_name>), C(<token_display_name>) and
        C(<public_key_hash>) (double braces would be templated by Ansible).
    type: dict
    default: {}
  description:
    description:
      - Description of the mount when it is enabled.
    type: str
    default: penguinmails.vps SSH CA
extends_documentation_fragment:
  - penguinmails.vps.vault
  - penguinmails.vps.attributes
  - penguinmails.vps.attributes.action_group
attributes:
  check_mode:
    support: full
    details: Reports the planned actions (RV(actions)); changes nothing.
  diff_mode:
    support: full
    details: The planned actions, one line each.
notes:
  - O(state=present) reads C(sys/mounts/<mount>), so it needs a token that may manage mounts (as the role
    penguinmails.vps.vault_setup has). Rotation needs update and delete on C(<mount>/issuers/import/*),
    C(<mount>/config/issuers) and C(<mount>/issuer/*) (policy C(admin)).
seealso:
  - module: penguinmails.vps.vault_ssh_ca_info
  - module: penguinmails.vps.vault_ssh_sign
  - module: penguinmails.vps.ssh_agent
"""

EXAMPLES = r"""
- name: The user CA with the admin role (certificates of 10 minutes)
  penguinmails.vps.vault_ssh_ca:
    mount: ssh-user-ca
    roles:
      admin:
        allow_user_certificates: true
        allowed_users: penguinmails-admin
        default_user: penguinmails-admin
        ttl: 10m
        max_ttl: 1h
        default_extensions: {permit-pty: ""}

- name: Start a rotation (hosts must learn the new key before it signs)
  penguinmails.vps.vault_ssh_ca:
    mount: ssh-user-ca
    state: rotated
"""

RETURN = r"""
actions:
  description: What was done (or, in check mode, would be done), one line each.
  returned: always
  type: list
  elements: str
  sample: ["add a second CA key (ed25519) to ssh-user-ca; it does not sign until switched"]
issuers:
  description:
    - The CA keys of the mount after the change, the one that signs first, each with C(id), C(name),
      C(public_key), C(fingerprint) and C(default).
  returned: always
  type: list
  elements: dict
"""

from ansible_collections.penguinmails.vps.plugins.module_utils import ssh_ca
from ansible_collections.penguinmails.vps.plugins.module_utils import ssh_certificates as sc
from ansible_collections.penguinmails.vps.plugins.module_utils.validators import ValidationError
from ansible_collections.penguinmails.vps.plugins.module_utils.vault_client import (
    VaultError,
    get_client,
    vault_module,
)


def main():
    module = vault_module(
        dict(
            mount=dict(type="str", required=True),
            state=dict(type="str", default="present", choices=list(ssh_ca.CA_STATES)),
            key_type=dict(type="str", default="ed25519", choices=["ed25519", "rsa", "ec"]),
            roles=dict(type="dict", default={}),
            description=dict(type="str", default="penguinmails.vps SSH CA"),
        )
    )
    p = module.params
    try:
        for name in p["roles"]:
            ssh_ca.validate_role_name(name)
        ca = ssh_ca.CertificateAuthority(get_client(p), p["mount"])
        plan = ca.plan(p["state"], key_type=p["key_type"], roles=p["roles"], description=p["description"])
        if plan.changed and not module.check_mode:
            ca.commit(plan)
    except (ValidationError, VaultError, ssh_ca.CAError, sc.CertificateError) as exc:
        module.fail_json(msg=str(exc))
    result = dict(changed=plan.changed, actions=plan.actions, issuers=plan.issuers)
    if module._diff:
        result["diff"] = {"before": "", "after": "".join(action + "\n" for action in plan.actions)}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
