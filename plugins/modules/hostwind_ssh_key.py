#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: hostwind_ssh_key
short_description: An SSH key stored in the Hostwinds account, by name
version_added: 0.2.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - At Hostwinds a new instance gets for root the SSH keys named in C(add_instance)'s C(keys[]); those are keys
    stored in the account beforehand. This module stores (O(state=present)) or removes (O(state=absent)) one.
  - A key of that name with another public key is replaced (removed, then added).
  - penguinmails.vps.migrate registers the tenant's admin public key under a name of its own migration before
    ordering the new VPS, and removes it once SSH access from Vault is set up on the VPS.
options:
  name:
    description:
      - The key's name in the account (1-64 letters, digits, C(.), C(_) or C(-)).
    type: str
    required: true
  public_key:
    description:
      - The OpenSSH public key line (O(state=present)).
    type: str
  state:
    description:
      - V(present) or V(absent).
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - penguinmails.vps.hostwinds
  - penguinmails.vps.attributes
attributes:
  check_mode:
    support: full
    details: Reports what would change; calls no action that changes something.
  diff_mode:
    support: none
    details: Public keys only; nothing worth a diff.
seealso:
  - module: penguinmails.vps.hostwind_vps
"""

EXAMPLES = r"""
- name: Let the new VPS accept the tenant's admin key
  penguinmails.vps.hostwind_ssh_key:
    name: pm-acme-2-admin
    public_key: "{{ admin_public_key }}"

- name: Remove it once SSH access from Vault is set up
  penguinmails.vps.hostwind_ssh_key:
    name: pm-acme-2-admin
    state: absent
"""

RETURN = r"""
name:
  description: The key's name.
  returned: always
  type: str
  sample: pm-acme-2-admin
existed:
  description: Whether a key of that name was stored before the run.
  returned: always
  type: bool
"""

import os

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

from ansible_collections.penguinmails.vps.plugins.module_utils import hostwinds as hw


def _same(left, right):
    return (left or "").split()[:2] == (right or "").split()[:2]


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            public_key=dict(type="str", no_log=False),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            api_key=dict(type="str", no_log=True, fallback=(env_fallback, ["HOSTWINDS_API_KEY"])),
            api_url=dict(type="str", fallback=(env_fallback, ["HOSTWINDS_API_URL"])),
            api_timeout=dict(type="int", default=30),
            api_retries=dict(type="int", default=3),
        ),
        required_if=[("state", "present", ("public_key",))],
        supports_check_mode=True,
    )
    if not hw.HAS_REQUESTS:
        module.fail_json(msg=missing_required_lib("requests"))
    p = module.params
    try:
        hw.validate_key_name(p["name"])
        client = hw.HostwindsClient(p["api_url"] or os.environ.get("HOSTWINDS_API_URL") or hw.DEFAULT_API_URL, p["api_key"],
                                    timeout=p["api_timeout"], retries=p["api_retries"])
        found = client.find_ssh_key(p["name"])
        changed = False
        if p["state"] == "absent":
            changed = found is not None
            if changed and not module.check_mode:
                client.delete_ssh_key(p["name"])
        elif found is None or not _same(found.get("key") or found.get("ssh_key"), p["public_key"]):
            changed = True
            if not module.check_mode:
                if found is not None:
                    client.delete_ssh_key(p["name"])
                client.add_ssh_key(p["name"], p["public_key"])
    except hw.HostwindsError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=changed, name=p["name"], existed=found is not None)


if __name__ == "__main__":
    main()
