#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vault_ssh_key_download
short_description: Hand out a tenant's SSH private key once, as a Vault wrapping token or a 0600 file
version_added: 0.1.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - Delivers the private key stored at C(<mount>/<tenant_id>/<role>_ssh) exactly once.
  - With O(output=wrap) the key is put in a single-use Vault response-wrapping token. Whoever
    unwraps the token first gets the key; if someone else did, the tenant's unwrap fails, which
    shows the interception.
  - With O(output=file) the key is written to O(dest) on the machine that runs the module, atomically
    and with mode 0600 (for operators who hand the file over themselves).
  - Before the key is delivered, C(downloaded_at) is set with a check-and-set write on the version
    that was read, so two concurrent downloads cannot both succeed. Later downloads are refused until
    the key is regenerated (M(penguinmails.vps.vault_ssh_keypair) with C(state=regenerated)) or rotated.
  - Revoked keys are never handed out.
  - Returns the connection instruction C(ssh -i <file> tenant-<id8>@<ip>); the address comes from
    C(<mount>/<tenant_id>/record) (field C(vps_ip)) when it exists.
options:
  tenant_id:
    description:
      - The tenant id, matching C(^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$).
    type: str
    required: true
  role:
    description:
      - Which key to hand out. Normally the tenant's own key.
    type: str
    choices: [admin, tenant]
    default: tenant
  output:
    description:
      - V(wrap) returns (or writes to O(dest)) a single-use wrapping token that holds the key.
      - V(file) writes the private key itself to O(dest).
    type: str
    choices: [wrap, file]
    default: wrap
  dest:
    description:
      - With O(output=file), the file for the private key (required). With O(output=wrap), an optional
        file for the wrapping token; the token is then not returned.
      - Written atomically with mode 0600; the directory must exist.
    type: path
  wrap_ttl:
    description:
      - How long the wrapping token can be unwrapped, in Vault duration syntax.
    type: str
    default: 24h
  ssh_user:
    description:
      - The login shown in the instructions. Defaults to C(tenant-<first 8 characters of tenant_id>)
        for the tenant key and C(root) for the admin key.
    type: str
  host:
    description:
      - The address shown in the instructions. Defaults to C(vps_ip) of the tenant's record in Vault.
    type: str
  mount:
    description:
      - The KV v2 mount that holds the tenants' SSH keys and records.
    type: str
    default: vps
extends_documentation_fragment:
  - penguinmails.vps.vault
attributes:
  check_mode:
    support: full
    description: Checks that a download is allowed and reports C(changed); marks, wraps and writes nothing.
  diff_mode:
    support: none
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
notes:
  - The wrapping token is a credential for one use. Give it to the tenant over a trusted channel,
    or use O(dest) to keep it out of the play's output. The tenant runs
    C(bao unwrap -field=private_key <token> > key && chmod 600 key) (or C(vault unwrap ...)).
seealso:
  - module: penguinmails.vps.vault_ssh_keypair
  - name: Response wrapping
    description: How Vault response-wrapping tokens work.
    link: https://openbao.org/docs/concepts/response-wrapping/
"""

EXAMPLES = r"""
- name: One-time download of the tenant key as a wrapping token, written to a 0600 file
  penguinmails.vps.vault_ssh_key_download:
    tenant_id: acme
    dest: /root/handover/acme.token
  register: download

- name: Show how to connect
  ansible.builtin.debug:
    msg: "{{ download.instructions }}"

- name: Write the key itself for an operator (0600)
  penguinmails.vps.vault_ssh_key_download:
    tenant_id: acme
    output: file
    dest: /root/handover/tenant-acme.key
"""

RETURN = r"""
fingerprint:
  description: Fingerprint of the key handed out.
  returned: always
  type: str
  sample: SHA256:4mTOk1cvyjAT0xQXTxxbTrrC1i2Bwdf4XBJzHkLb0rA
downloaded_at:
  description: When the download was recorded (ISO 8601, UTC). None in check mode.
  returned: always
  type: str
dest:
  description: The file written (private key or wrapping token).
  returned: when O(dest) is set
  type: str
wrap_token:
  description: The single-use wrapping token that holds the key. Not returned when O(dest) is set.
  returned: when O(output=wrap), O(dest) is not set and not in check mode
  type: str
wrap_accessor:
  description: Accessor of the wrapping token (to look it up or revoke it; it cannot unwrap).
  returned: when O(output=wrap) and not in check mode
  type: str
wrap_ttl:
  description: Lifetime of the wrapping token in seconds.
  returned: when O(output=wrap) and not in check mode
  type: int
ssh_user:
  description: The login on the VPS.
  returned: always
  type: str
  sample: tenant-acme
host:
  description: The VPS address, when known.
  returned: always
  type: str
  sample: 192.0.2.10
instructions:
  description: How to connect with the key.
  returned: always
  type: str
  sample: ssh -i tenant-acme.key tenant-acme@192.0.2.10
version:
  description: The KV version that records the download.
  returned: always
  type: int
"""

import os


from ansible_collections.penguinmails.vps.plugins.module_utils import keypair_store, ssh_keys
from ansible_collections.penguinmails.vps.plugins.module_utils.validators import ValidationError
from ansible_collections.penguinmails.vps.plugins.module_utils.vault_client import (
    VaultError,
    get_client,
    vault_module,
)


def instructions(user, host, key_file):
    target = "%s@%s" % (user, host or "<vps ip>")
    return "ssh -i %s %s" % (key_file, target)


def deliver(client, store, data, p, user, host):
    """Hand the key out; returns the result fields of the delivery."""
    if p["output"] == "file":
        ssh_keys.write_private_key(p["dest"], data["private_key"])
        return dict(dest=p["dest"])
    payload = dict(private_key=data["private_key"], public_key=data.get("public_key"),
                   fingerprint=data.get("fingerprint"), ssh_user=user, host=host)
    info = client.wrap(payload, ttl=p["wrap_ttl"])
    if not info.get("token"):
        raise VaultError("Vault returned no wrapping token for %s" % store.where)
    result = dict(wrap_accessor=info.get("accessor"), wrap_ttl=info.get("ttl"))
    if p["dest"]:
        ssh_keys.write_private_key(p["dest"], info["token"])
        result["dest"] = p["dest"]
    else:
        result["wrap_token"] = info["token"]
    return result


def main():
    module = vault_module(
        dict(
            tenant_id=dict(type="str", required=True),
            role=dict(type="str", default="tenant", choices=["admin", "tenant"]),
            output=dict(type="str", default="wrap", choices=["wrap", "file"]),
            dest=dict(type="path"),
            wrap_ttl=dict(type="str", default="24h"),
            ssh_user=dict(type="str"),
            host=dict(type="str"),
            mount=dict(type="str", default="vps"),
        ),
        required_if=[("output", "file", ("dest",))],
    )
    p = module.params
    if p["dest"] and not os.path.isdir(os.path.dirname(os.path.abspath(p["dest"]))):
        module.fail_json(msg="cannot write %s: its directory does not exist" % p["dest"])
    try:
        client = get_client(p)
        store = keypair_store.KeypairStore(client, p["tenant_id"], p["role"], mount=p["mount"])
        data, version = store.plan_download()
        module.no_log_values.add(data["private_key"])
        user = p["ssh_user"] or (keypair_store.tenant_user(p["tenant_id"]) if p["role"] == "tenant" else "root")
        host = p["host"] or store.vps_ip()
        key_file = p["dest"] if p["output"] == "file" else "%s.key" % user
        result = dict(changed=True, fingerprint=data.get("fingerprint"), ssh_user=user, host=host,
                      instructions=instructions(user, host, key_file), downloaded_at=None, version=version)
        if module.check_mode:
            module.exit_json(**result)
        record, result["version"] = store.claim_download(data, version)
        result["downloaded_at"] = record["downloaded_at"]
    except (ValidationError, VaultError, keypair_store.KeypairError) as exc:
        module.fail_json(msg=str(exc))
    try:
        result.update(deliver(client, store, data, p, user, host))
    except (VaultError, ssh_keys.SSHKeyError, OSError) as exc:
        module.fail_json(msg="the download of %s was recorded but the delivery failed (%s); regenerate the key to try again"
                         % (store.where, exc if not isinstance(exc, OSError) else exc.strerror))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
