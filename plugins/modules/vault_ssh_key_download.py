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
    shows the interception. For the tenant key the token is a response-wrapped read of the secret's
    version that records the download, so its creation path is C(<mount>/data/<tenant_id>/tenant_ssh),
    so the recipient can check with C(sys/wrapping/lookup) where it came from before unwrapping.
  - With O(output=file) the key is written to O(dest) on the machine that runs the module, atomically
    and with mode 0600 (for operators who hand the file over themselves).
  - Before the key is delivered, C(downloaded_at) is set with a check-and-set write on the version
    that was read, so two concurrent downloads cannot both succeed. Later downloads are refused until
    the key is regenerated (M(penguinmails.vps.vault_ssh_keypair) with C(state=regenerated)) or rotated.
  - A tenant key offered to the tenant for its self-service download (M(penguinmails.vps.vault_tenant_key_download))
    is withdrawn first (its single-use token is used up here); a key the tenant already took itself, or whose token
    someone else used, is refused (regenerate it).
  - Revoked keys are never handed out. The admin key (root on the tenant's VPS) is refused unless
    O(allow_admin_key=true); the playbook penguinmails.vps.download_key audits such a download as critical.
  - Returns the connection instructions C(ssh -i <file> <account>@<ip> -p <port>), with the fingerprint,
    the last and next rotation; the address comes from C(<mount>/<tenant_id>/record) (field C(vps_ip)).
options:
  tenant_id:
    description:
      - The tenant id, matching C(^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z).
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
      - How long the wrapping token can be unwrapped, in Vault duration syntax (V(30m), V(1h), V(3600s)),
        at most one hour.
    type: str
    default: 1h
  allow_admin_key:
    description:
      - Allow handing out the admin key (root on the tenant's VPS). Off by default.
    type: bool
    default: false
  ssh_user:
    description:
      - The login shown in the instructions. Defaults to the tenant's account (the filter
        penguinmails.vps.tenant_account) for the tenant key and C(root) for the admin key.
    type: str
  port:
    description:
      - The SSH port shown in the instructions.
    type: int
    default: 22
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
  - penguinmails.vps.attributes
  - penguinmails.vps.attributes.action_group
attributes:
  check_mode:
    support: full
    details: Checks that a download is allowed and reports C(changed); marks, wraps and writes nothing.
  diff_mode:
    support: none
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
vault_request_id:
  description:
    - Vault's id of the read that handed the private key out with O(output=file), as Vault's own audit log records it
      (C(request.id)), to find that request there. Null with O(output=wrap) (a wrapped response carries no request id;
      its C(wrap_creation_path) and time find it) and when Vault did not say.
  returned: always
  type: str
  sample: 2477f49a-f945-bde5-a287-7afbe4483869
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
  sample: ssh -i tenant-acme.key tenant-acme@192.0.2.10 -p 22
port:
  description: The SSH port shown in the instructions.
  returned: always
  type: int
  sample: 22
wrap_creation_path:
  description: The creation path of the wrapping token, as C(sys/wrapping/lookup) reports it.
  returned: when O(output=wrap) and not in check mode
  type: str
  sample: vps/data/acme/tenant_ssh
last_rotated:
  description: When the key handed out was made or last rotated (ISO 8601, UTC).
  returned: always
  type: str
next_rotation:
  description: When the key is due for its next rotation (ISO 8601, UTC).
  returned: always
  type: str
version:
  description: The KV version that records the download.
  returned: always
  type: int
uid:
  description: Numeric owner id of the file O(dest), as Ansible adds it to a result naming a file that exists.
  returned: when the file O(dest) exists
  type: int
  sample: 0
gid:
  description: Numeric group id of the file O(dest).
  returned: when the file O(dest) exists
  type: int
  sample: 0
owner:
  description: Owner of the file O(dest).
  returned: when the file O(dest) exists
  type: str
  sample: root
group:
  description: Group of the file O(dest).
  returned: when the file O(dest) exists
  type: str
  sample: root
mode:
  description: Permissions of the file O(dest), in octal.
  returned: when the file O(dest) exists
  type: str
  sample: "0600"
size:
  description: Size of the file O(dest) in bytes.
  returned: when the file O(dest) exists
  type: int
  sample: 387
state:
  description: V(file), the kind of the file O(dest).
  returned: when the file O(dest) exists
  type: str
  sample: file
"""

import datetime
import os
import re


from ansible_collections.penguinmails.vps.plugins.module_utils import keypair_store, ssh_keys, tenant_download
from ansible_collections.penguinmails.vps.plugins.module_utils.validators import ValidationError, tenant_account
from ansible_collections.penguinmails.vps.plugins.module_utils.vault_client import (
    VaultError,
    get_client,
    vault_module,
)

MAX_WRAP_SECONDS = 3600
_DURATION_RE = re.compile(r"([0-9]+)([smh]?)\Z")


def wrap_seconds(ttl):
    """Seconds of a Vault duration (V(90), V(90s), V(30m), V(1h)); raises ValidationError beyond one hour."""
    match = _DURATION_RE.match(str(ttl).strip())
    if not match:
        raise ValidationError("invalid wrap_ttl %r: a duration such as 30m or 1h" % (ttl,))
    seconds = int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]
    if not 1 <= seconds <= MAX_WRAP_SECONDS:
        raise ValidationError("invalid wrap_ttl %r: between 1 second and 1 hour" % (ttl,))
    return seconds


def instructions(user, host, key_file, port):
    return "ssh -i %s %s@%s -p %d" % (key_file, user, host or "<vps ip>", port)


def next_rotation(data):
    last = keypair_store.parse_time(data.get("last_rotated")) or keypair_store.parse_time(data.get("created_at"))
    policy = str(data.get("rotation_policy") or "90_days").split("_", maxsplit=1)[0]
    if last is None or not policy.isdigit():
        return None
    return keypair_store.format_time(last + datetime.timedelta(days=int(policy)))


def deliver(client, store, data, version, p, ttl):
    """Hand the key out; returns the result fields of the delivery."""
    if p["output"] == "file":
        ssh_keys.write_private_key(p["dest"], data["private_key"])
        return dict(dest=p["dest"])  # vault_request_id: the read's, kept by main()
    if store.role == "tenant":
        # A wrapped read of the very version that records the download: its creation path names the secret.
        info = client.wrap_read(store.mount, store.path, ttl="%ds" % ttl, version=version)
    else:
        # The admin record may hold a fallback key: wrap the current key alone.
        info = client.wrap(dict(private_key=data["private_key"], public_key=data.get("public_key"),
                                fingerprint=data.get("fingerprint")), ttl="%ds" % ttl)
    if not info.get("token"):
        raise VaultError("Vault returned no wrapping token for %s" % store.where)
    result = dict(wrap_accessor=info.get("accessor"), wrap_ttl=info.get("ttl"), wrap_creation_path=info.get("creation_path"),
                  vault_request_id=client.last_request_id)
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
            wrap_ttl=dict(type="str", default="1h"),
            allow_admin_key=dict(type="bool", default=False),
            ssh_user=dict(type="str"),
            host=dict(type="str"),
            port=dict(type="int", default=22),
            mount=dict(type="str", default="vps"),
        ),
        required_if=[("output", "file", ("dest",))],
    )
    p = module.params
    if p["dest"] and not os.path.isdir(os.path.dirname(os.path.abspath(p["dest"]))):
        module.fail_json(msg="cannot write %s: its directory does not exist" % p["dest"])
    if p["role"] == "admin" and not p["allow_admin_key"]:
        module.fail_json(msg="the admin key (root on the tenant's VPS) is not handed out unless allow_admin_key is true")
    try:
        ttl = wrap_seconds(p["wrap_ttl"])
        client = get_client(p)
        store = keypair_store.KeypairStore(client, p["tenant_id"], p["role"], mount=p["mount"])
        data, version = store.plan_download()
        read_request_id = client.last_request_id  # the read that holds the private key
        for field in keypair_store.PRIVATE_FIELDS:
            if data.get(field):
                module.no_log_values.add(data[field])
        user = p["ssh_user"] or (tenant_account(p["tenant_id"]) if p["role"] == "tenant" else "root")
        host = p["host"] or store.vps_ip()
        key_file = p["dest"] if p["output"] == "file" else "%s.key" % user
        result = dict(changed=True, fingerprint=data.get("fingerprint"), ssh_user=user, host=host, port=p["port"],
                      vault_request_id=read_request_id,
                      instructions=instructions(user, host, key_file, p["port"]), downloaded_at=None, version=version,
                      last_rotated=data.get("last_rotated") or data.get("created_at"), next_rotation=next_rotation(data))
        if store.role == "tenant":
            # A waiting self-service offer of this key is used up first: the key goes out once, whoever takes it.
            tenant_download.withdraw(client, store.tenant_id, data, mount=p["mount"], check_mode=module.check_mode)
        if module.check_mode:
            module.exit_json(**result)
        record, result["version"] = store.claim_download(data, version)
        result["downloaded_at"] = record["downloaded_at"]
    except (ValidationError, VaultError, keypair_store.KeypairError, tenant_download.DownloadError) as exc:
        module.fail_json(msg=str(exc))
    try:
        result.update(deliver(client, store, data, result["version"], p, ttl))
    except (VaultError, ssh_keys.SSHKeyError, OSError) as exc:
        module.fail_json(msg="the download of %s was recorded but the delivery failed (%s); regenerate the key to try again"
                         % (store.where, exc if not isinstance(exc, OSError) else exc.strerror))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
