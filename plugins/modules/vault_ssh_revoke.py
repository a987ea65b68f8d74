#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vault_ssh_revoke
short_description: Add certificate serials, key ids or public keys to the SSH key revocation list kept in Vault
version_added: 0.2.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - Adds entries to the revocation list of a user CA, kept in C(<mount>/_ssh_ca/<user_ca_mount>) (check-and-set;
    entries are never removed). The hosts' key revocation list (KRL, sshd's C(RevokedKeys)) is made from it by
    the role penguinmails.vps.ssh_access (module M(penguinmails.vps.ssh_krl)); sshd reads the KRL at every
    login, so a host refuses a revoked certificate as soon as its KRL is written.
  - A serial revokes the certificate of that serial from every key of the user CA (during a rotation both); a key
    id revokes every certificate with that key id (the signing role and Vault identity, see
    docs/ssh-certificates.md), past and future; a public key revokes that key, certified or not.
options:
  serials:
    description:
      - Certificate serials, decimal or C(0x)-hex (sshd logs them in decimal, Vault returns hex).
    type: list
    elements: str
    default: []
  key_ids:
    description:
      - Certificate key ids.
    type: list
    elements: str
    default: []
  public_keys:
    description:
      - OpenSSH public key lines.
    type: list
    elements: str
    default: []
  reason:
    description:
      - Why (kept with each entry).
    type: str
    default: ""
  mount:
    description:
      - The KV v2 mount that holds the list.
    type: str
    default: vps
  user_ca_mount:
    description:
      - The user CA the list belongs to.
    type: str
    default: ssh-user-ca
extends_documentation_fragment:
  - penguinmails.vps.vault
  - penguinmails.vps.attributes
  - penguinmails.vps.attributes.action_group
attributes:
  check_mode:
    support: full
    details: Reports what would be added; writes nothing.
  diff_mode:
    support: full
    details: The entries added.
seealso:
  - module: penguinmails.vps.ssh_krl
  - module: penguinmails.vps.vault_ssh_ca_info
"""

EXAMPLES = r"""
- name: Revoke a certificate found in sshd's log
  penguinmails.vps.vault_ssh_revoke:
    serials: ["17794228941741518073"]
    reason: laptop stolen
"""

RETURN = r"""
added:
  description: What this run added - C(serials), C(key_ids), C(public_keys) (each a list).
  returned: always
  type: dict
revoked:
  description: The whole list after the change - C(serials) (decimal strings), C(key_ids), C(public_keys).
  returned: always
  type: dict
version:
  description: The KV version of the list (0 when nothing was ever revoked).
  returned: always
  type: int
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
            serials=dict(type="list", elements="str", default=[]),
            key_ids=dict(type="list", elements="str", default=[], no_log=False),
            public_keys=dict(type="list", elements="str", default=[]),
            reason=dict(type="str", default=""),
            mount=dict(type="str", default="vps"),
            user_ca_mount=dict(type="str", default=ssh_ca.DEFAULT_USER_CA_MOUNT),
        )
    )
    p = module.params
    try:
        if not (p["serials"] or p["key_ids"] or p["public_keys"]):
            raise ValidationError("give serials, key_ids or public_keys to revoke")
        store = ssh_ca.RevocationStore(get_client(p), p["mount"], p["user_ca_mount"])
        new, version, added = store.plan(p["serials"], p["key_ids"], p["public_keys"], p["reason"])
        if new is not None and not module.check_mode:
            version = store.commit(new, version)
        revoked = store.lists(new if new is not None else store.read()[0])
    except (ValidationError, VaultError, ssh_ca.CAError, sc.CertificateError) as exc:
        module.fail_json(msg=str(exc))
    revoked["serials"] = [str(serial) for serial in revoked["serials"]]
    shown = {"serials": [e["serial"] for e in added["serials"]], "key_ids": [e["key_id"] for e in added["key_ids"]],
             "public_keys": [e["public_key"] for e in added["public_keys"]]}
    result = dict(changed=new is not None, added=shown, revoked=revoked, version=version)
    if module._diff:
        result["diff"] = {"before": "", "after": "".join("%s: %s\n" % (kind, value) for kind in ssh_ca.RevocationStore.KINDS
                                                         for value in shown[kind])}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
