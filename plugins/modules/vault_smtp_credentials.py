#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vault_smtp_credentials
short_description: Create or rotate a tenant's Mailu admin SMTP password in Vault
version_added: 0.1.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - Manages C(smtp/<tenant>/admin) (fields C(username), C(password), C(webmail_url), C(last_rotated),
    C(rotation_policy)) in a KV v2 mount.
  - O(state=present) creates the credentials when they are missing (a random password of O(password_length)
    letters and digits); O(state=rotated) also replaces the password when it is due (O(rotation_days)) or
    with O(force=true).
  - Every write is check-and-set against the version read, so two concurrent rotations cannot both win;
    the previous password stays in the KV history.
  - The module changes Vault only. Apply the new password on the VPS with the role C(penguinmails.vps.mailu)
    (it resets the admin password when the login with the Vault password fails), as the C(rotate)
    playbook does with C(secret_type=smtp).
extends_documentation_fragment:
  - penguinmails.vps.vault
  - penguinmails.vps.attributes
  - penguinmails.vps.attributes.action_group
attributes:
  check_mode:
    support: full
    details: Reports whether it would create or rotate; generates and writes nothing.
  diff_mode:
    support: full
    details: Shows the stored fields before and after, never the password.
options:
  tenant_id:
    description:
      - The tenant, matching C(^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z).
    type: str
    required: true
  state:
    description:
      - V(present) creates missing credentials; V(rotated) also rotates a due password.
    type: str
    choices: [present, rotated]
    default: present
  username:
    description:
      - The admin address, for example V(admin@example.com). Needed only to create the credentials.
    type: str
  webmail_url:
    description:
      - Stored with newly created credentials.
    type: str
  rotation_days:
    description:
      - A password is due for rotation this many days after C(last_rotated).
    type: int
    default: 90
  force:
    description:
      - With O(state=rotated), rotate even when the password is not due.
    type: bool
    default: false
  password_length:
    description:
      - Length of a new password (letters and digits, at least 20).
    type: int
    default: 32
  mount:
    description:
      - The KV v2 mount of the SMTP credentials.
    type: str
    default: smtp
  return_password:
    description:
      - Also return the resulting password, for example to hand it to another system.
      - The task must set C(no_log=true); the module refuses otherwise.
    type: bool
    default: false
  rotate_secret_key:
    description:
      - With a rotation, also replace Mailu's C(SECRET_KEY) (field C(secret_key)), as after a compromise of the VPS
        that held it. A new record always gets one.
    type: bool
    default: false
seealso:
  - module: penguinmails.vps.smtp_check
  - module: penguinmails.vps.vault_ssh_keypair
"""

EXAMPLES = r"""
- name: Rotate the SMTP admin password of acme when it is due
  penguinmails.vps.vault_smtp_credentials:
    tenant_id: acme
    state: rotated

- name: Create the credentials of a new tenant
  penguinmails.vps.vault_smtp_credentials:
    tenant_id: newco
    username: admin@newco.example
    webmail_url: https://mail.newco.example/webmail
"""

RETURN = r"""
action:
  description: What was done (or would be in check mode).
  returned: always
  type: str
  choices: [none, created, rotated]
rotated:
  description: Whether the password was replaced.
  returned: always
  type: bool
username:
  description: The admin address.
  returned: always
  type: str
last_rotated:
  description: Time of the last rotation (ISO 8601 UTC).
  returned: always
  type: str
next_rotation:
  description: When the password is due next (ISO 8601 UTC).
  returned: always
  type: str
version:
  description: The KV version holding the result (null in check mode when it would change).
  returned: always
  type: int
policy_problem:
  description:
    - Empty when the stored credentials meet the policy (an address as username, a password of 12 or more
      printable characters without whitespace), else the one rule they break. Never the password.
  returned: always
  type: str
secret_key_rotated:
  description: Whether Mailu's C(SECRET_KEY) (C(secret_key)) was replaced too.
  returned: always
  type: bool
password:
  description: The password; only with O(return_password=true) and C(no_log=true).
  returned: when O(return_password=true)
  type: str
"""

import datetime


from ansible_collections.penguinmails.vps.plugins.module_utils import smtp_credentials, timeutil
from ansible_collections.penguinmails.vps.plugins.module_utils.validators import ValidationError
from ansible_collections.penguinmails.vps.plugins.module_utils.vault_client import (
    VaultError,
    get_client,
    vault_module,
)


def _show(data):
    view = smtp_credentials.public_view(data)
    return "".join("%s: %s\n" % (key, view[key]) for key in sorted(view)) if data else "absent\n"


def main():
    module = vault_module(
        dict(
            tenant_id=dict(type="str", required=True),
            state=dict(type="str", default="present", choices=["present", "rotated"]),
            username=dict(type="str"),
            webmail_url=dict(type="str"),
            rotation_days=dict(type="int", default=90),
            force=dict(type="bool", default=False),
            password_length=dict(type="int", default=32, no_log=False),
            mount=dict(type="str", default="smtp"),
            return_password=dict(type="bool", default=False, no_log=False),
            rotate_secret_key=dict(type="bool", default=False, no_log=False),
        )
    )
    p = module.params
    if p["return_password"] and not module.no_log:
        module.fail_json(msg="return_password: true needs no_log: true on the task, so that the password is never shown")
    now = timeutil.utcnow()
    try:
        store = smtp_credentials.SmtpCredentialsStore(get_client(p), p["tenant_id"], mount=p["mount"])
        plan = store.plan(p["state"], now, username=p["username"], webmail_url=p["webmail_url"],
                          rotation_days=p["rotation_days"], force=p["force"], password_length=p["password_length"],
                          rotate_secret_key=p["rotate_secret_key"])
        for data in (plan.before, plan.after):
            if data and data.get("password") and not p["return_password"]:
                module.no_log_values.add(data["password"])
            if data and data.get("secret_key"):
                module.no_log_values.add(data["secret_key"])
        if plan.changed and not module.check_mode:
            store.commit(plan)
        elif plan.changed:
            plan.version = None
    except (ValidationError, VaultError, smtp_credentials.SmtpCredentialsError) as exc:
        module.fail_json(msg=str(exc))
    after = plan.after
    last = timeutil.parse_time(after.get("last_rotated"))
    result = dict(
        changed=plan.changed,
        action=plan.action,
        rotated=plan.action == "rotated",
        username=after.get("username"),
        last_rotated=after.get("last_rotated"),
        next_rotation=timeutil.format_time((last or now) + datetime.timedelta(days=p["rotation_days"])),
        version=plan.version,
        policy_problem=smtp_credentials.policy_problem(after),
        secret_key_rotated=plan.action == "rotated" and (plan.before or {}).get("secret_key") != after.get("secret_key"),
    )
    if p["return_password"] and not module.check_mode:
        result["password"] = after["password"]
    if module._diff:
        result["diff"] = dict(before=_show(plan.before), after=_show(plan.after))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
