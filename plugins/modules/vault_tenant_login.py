#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vault_tenant_login
short_description: A tenant's Vault login, bound to its own identity and never to another's
version_added: 0.2.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - Makes a tenant's userpass login (the tenant id in lower case, since userpass names are case-insensitive), the
    identity entity C(tenant-<tenant_id>) with the metadata C(tenant_id) that the templated policy C(tenant)
    uses, and the alias that ties the login to the entity.
  - Tenant ids that differ only by case are one tenant. A new tenant whose id differs from an existing
    tenant (in the KV mount O(vps_mount), or an existing tenant entity) only by case is refused.
  - A login or alias that belongs to another entity is never rebound, and a login that exists without an
    alias is refused rather than adopted; a tenant can never log in as another tenant.
  - Used by the role penguinmails.vps.vault_setup. Needs a token allowed to manage auth methods and identities.
options:
  tenant_id:
    description:
      - The tenant id.
    type: str
    required: true
  password:
    description:
      - The login's password (12 or more characters).
    type: str
    required: true
  update_password:
    description:
      - V(on_create) sets the password only when the login is created; V(always) on every run.
    type: str
    choices: [on_create, always]
    default: on_create
  auth_mount:
    description:
      - The userpass auth method's path.
    type: str
    default: userpass
  vps_mount:
    description:
      - The KV v2 mount whose top-level folders are the tenants.
    type: str
    default: vps
  token_ttl:
    description:
      - The lifetime of the login's tokens.
    type: str
    default: 1h
extends_documentation_fragment:
  - penguinmails.vps.vault
  - penguinmails.vps.attributes
  - penguinmails.vps.attributes.action_group
attributes:
  check_mode:
    support: full
    details: Checks every rule and reports what would change; writes nothing.
  diff_mode:
    support: none
    details: Nothing to compare (passwords are never shown).
seealso:
  - module: penguinmails.vps.vault_ssh_key_download
"""

EXAMPLES = r"""
- name: A login for tenant acme
  penguinmails.vps.vault_tenant_login:
    tenant_id: acme
    password: "{{ acme_password }}"
"""

RETURN = r"""
login:
  description: The userpass user name (the tenant id in lower case).
  returned: always
  type: str
  sample: acme
entity_id:
  description: The id of the tenant's identity entity (none in check mode for a new one).
  returned: always
  type: str
created:
  description: Whether the login was created.
  returned: always
  type: bool
"""

from ansible_collections.penguinmails.vps.plugins.module_utils import tenant_login
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
            password=dict(type="str", required=True, no_log=True),
            update_password=dict(type="str", default="on_create", choices=["on_create", "always"]),
            auth_mount=dict(type="str", default="userpass"),
            vps_mount=dict(type="str", default="vps"),
            token_ttl=dict(type="str", default="1h", no_log=False),
        )
    )
    p = module.params
    try:
        logins = tenant_login.TenantLogins(get_client(p), p["auth_mount"], p["vps_mount"])
        plan = logins.plan(p["tenant_id"], p["password"], p["update_password"])
        if plan.changed and not module.check_mode:
            logins.commit(p["tenant_id"], p["password"], plan, p["token_ttl"])
    except (ValidationError, VaultError, tenant_login.LoginError) as exc:
        module.fail_json(msg="vault_tenant_login: %s" % exc)
    module.exit_json(changed=plan.changed, login=plan.login, entity_id=plan.entity_id, created=plan.create_user)


if __name__ == "__main__":
    main()
