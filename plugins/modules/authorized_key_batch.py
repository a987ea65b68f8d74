#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: authorized_key_batch
short_description: Set the managed SSH keys of every tenant of one host in one call
version_added: 0.5.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - The fleet form of M(penguinmails.vps.authorized_key_rotate) - one call per host instead of one per tenant
    and role. Each entry of O(entries) has the options of M(penguinmails.vps.authorized_key_rotate) and the
    same meaning (current keys, grace keys with C(expiry-time), revoked keys, marker, serial, owner).
  - Every entry is validated before the host is touched. A bad entry, an account that belongs to another
    tenant or a missing user fails that entry alone (RV(entry_results) has C(failed) and C(msg) for it); the
    other entries are applied and the task does not fail.
  - Under one host lock, every C(authorized_keys) file is read once, the entries for it are applied in
    order (the admin account's file holds a block per tenant, each under its own marker and serial), and
    the file is written once, atomically, owned by the user with mode 0600.
  - O(principals) sets the C(AuthorizedPrincipalsFile) files of SSH certificate mode (docs/ssh-certificates.md)
    the same way - a tenant's block in the admin account's file, or a tenant account's own file.
  - Used by the host step of the fleet playbooks (M(penguinmails.vps.ssh_host_keys)); usable alone.
  - Runs on the managed host; needs only the Python standard library there.
options:
  entries:
    description:
      - One item per account and marker.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description:
          - The entry's name in RV(entry_results), for example V(acme:admin). Unique within the task.
        type: str
        required: true
      user:
        description:
          - The account whose C(authorized_keys) is managed.
        type: str
        required: true
      keys:
        description:
          - Public keys valid now (no expiry).
        type: list
        elements: str
        default: []
      grace_keys:
        description:
          - C({key, expires}) items, written with C(expiry-time).
        type: list
        elements: dict
        default: []
      grace_until:
        description:
          - Expiry for the O(entries[].grace_keys) without their own.
        type: str
      revoked_keys:
        description:
          - Public keys removed wherever they appear.
        type: list
        elements: str
        default: []
      marker:
        description:
          - Comment prefix of the managed lines, for example V(penguinmails:acme:admin).
        type: str
      serial:
        description:
          - The KV version the keys come from; a lower serial than the file holds for the marker changes
            nothing and returns C(stale=true) for the entry.
        type: int
      exclusive:
        description:
          - Remove every unmanaged key line of the file.
        type: bool
        default: false
      manage_user:
        description:
          - Create the user when it is missing.
        type: bool
        default: false
      owner:
        description:
          - The tenant the account belongs to (GECOS C(penguinmails tenant <owner>)); an account of another
            tenant is refused.
        type: str
      shell:
        description:
          - Shell of a created user.
        type: str
        default: /bin/bash
      missing_user:
        description:
          - V(fail) or V(ignore) a user that does not exist (with O(entries[].manage_user=false)).
        type: str
        choices: [fail, ignore]
        default: fail
      path:
        description:
          - Another file than C(~user/.ssh/authorized_keys).
        type: path
      requires:
        description:
          - Names of O(principals) items this entry relies on; when one of them failed the entry is not
            applied (a tenant's stored admin keys never leave before its certificate principal is in place).
            O(principals) are applied before O(entries).
        type: list
        elements: str
        default: []
  principals:
    description:
      - Principals files of SSH certificate mode.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description:
          - The item's name in RV(principal_results).
        type: str
        required: true
      path:
        description:
          - The principals file, for example C(/etc/ssh/penguinmails/principals/root).
        type: path
        required: true
      kind:
        description:
          - V(block) - a C(# BEGIN marker) .. C(# END marker) block of a shared file (as
            M(ansible.builtin.blockinfile) writes it); V(file) - the whole file.
        type: str
        choices: [block, file]
        default: file
      marker:
        description:
          - The block's marker text (with O(principals[].kind=block)).
        type: str
      principal:
        description:
          - The principal (with O(principals[].state=present)).
        type: str
      state:
        description:
          - V(present) or V(absent).
        type: str
        choices: [present, absent]
        default: present
extends_documentation_fragment:
  - penguinmails.vps.attributes
  - penguinmails.vps.attributes.PLATFORM
attributes:
  check_mode:
    support: full
    details: Reports per entry what would change; writes nothing and creates no user.
  diff_mode:
    support: full
    details: One diff per file that changes.
"""

EXAMPLES = r"""
- name: Install the keys of two tenants of this host in one call
  penguinmails.vps.authorized_key_batch:
    entries:
      - name: "acme:admin"
        user: root
        keys: ["ssh-ed25519 AAAAC3... new"]
        grace_keys:
          - key: "ssh-ed25519 AAAAC3... old"
            expires: "2026-12-06T10:00:00Z"
        marker: "penguinmails:acme:admin"
        serial: 7
      - name: "beta:admin"
        user: root
        keys: ["ssh-ed25519 AAAAC3... beta"]
        marker: "penguinmails:beta:admin"
        serial: 3
  register: batch
"""

RETURN = r"""
entry_results:
  description: Per entry name, what happened (the fields of M(penguinmails.vps.authorized_key_rotate)'s result).
  returned: always
  type: dict
  sample:
    "acme:admin":
      changed: true
      failed: false
      msg: ""
      user: root
      path: /root/.ssh/authorized_keys
      user_created: false
      user_missing: false
      added: []
      removed: []
      updated: []
      expiring: []
      stale: false
      serial: 7
principal_results:
  description: Per principals item name - C(changed), C(failed), C(msg), C(path).
  returned: always
  type: dict
  sample: {"acme:admin-principal": {"changed": true, "failed": false, "msg": "", "path": "/etc/ssh/penguinmails/principals/root"}}
failed_entries:
  description: The names of the entries and principals items that failed (each with its C(msg) in RV(entry_results) or RV(principal_results)).
  returned: always
  type: list
  elements: str
  sample: []
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.penguinmails.vps.plugins.module_utils import authorized_keys as ak
from ansible_collections.penguinmails.vps.plugins.module_utils import host_batch


def main():
    module = AnsibleModule(
        argument_spec=dict(
            entries=dict(type="list", elements="dict", default=[], options=dict(
                name=dict(type="str", required=True),
                user=dict(type="str", required=True),
                keys=dict(type="list", elements="str", default=[], no_log=False),
                grace_keys=dict(type="list", elements="dict", default=[], no_log=False),
                grace_until=dict(type="str"),
                revoked_keys=dict(type="list", elements="str", default=[], no_log=False),
                marker=dict(type="str"),
                serial=dict(type="int"),
                exclusive=dict(type="bool", default=False),
                manage_user=dict(type="bool", default=False),
                owner=dict(type="str"),
                shell=dict(type="str", default="/bin/bash"),
                missing_user=dict(type="str", default="fail", choices=["fail", "ignore"]),
                path=dict(type="path"),
                requires=dict(type="list", elements="str", default=[]),
            )),
            principals=dict(type="list", elements="dict", default=[], options=dict(
                name=dict(type="str", required=True),
                path=dict(type="path", required=True),
                kind=dict(type="str", default="file", choices=["block", "file"]),
                marker=dict(type="str"),
                principal=dict(type="str"),
                state=dict(type="str", default="present", choices=["present", "absent"]),
            )),
        ),
        supports_check_mode=True,
    )

    def run(argv):
        module.run_command(argv, check_rc=True)

    try:
        results, principals, diffs = host_batch.apply(module.params["entries"], module.params["principals"], run=run,
                                                      check_mode=module.check_mode, diff=module._diff)
    except ak.AuthorizedKeysError as exc:
        module.fail_json(msg=str(exc))
    failed = [name for name, item in list(results.items()) + list(principals.items()) if item["failed"]]
    result = dict(changed=any(item["changed"] for item in list(results.values()) + list(principals.values())),
                  entry_results=results, principal_results=principals, failed_entries=failed)
    if module._diff:
        result["diff"] = diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
