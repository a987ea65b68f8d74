#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vault_ssh_ca_info
short_description: The CA keys, the revocations and the SSH mode of tenants, for certificate mode
version_added: 0.2.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - Reads what a host or a controller needs in SSH certificate mode (docs/ssh-certificates.md) - the public
    keys of the user CA (C(TrustedUserCAKeys) of the hosts) and of the host CA (C(@cert-authority) of the
    controller; two each during a rotation), what the key revocation list revokes, and C(ssh_auth) of a
    tenant record (V(keys) when unset).
  - With O(list_tenants=true) it also lists every tenant whose record is in certificate mode (one read per
    tenant).
  - Reads only; never returns a private key.
options:
  tenant_id:
    description:
      - A tenant whose mode is returned as RV(ssh_auth).
    type: str
  ssh_auth:
    description:
      - V(record) returns the mode of the tenant record; V(keys), V(certificates) or V(both) override it (the
        value is returned as given).
    type: str
    choices: [record, keys, certificates, both]
    default: record
  ca:
    description:
      - Whether to read the CA keys and the revocations. V(auto) reads them unless the mode (RV(ssh_auth)) is
        V(keys), so a stored-key setup needs no SSH engine at all.
    type: str
    choices: [always, auto, never]
    default: always
  list_tenants:
    description:
      - Also return RV(certificate_tenants).
    type: bool
    default: false
  mount:
    description:
      - The KV v2 mount of the tenant records (and of the revocations, under C(_ssh_ca/<user_ca_mount>)).
    type: str
    default: vps
  user_ca_mount:
    description:
      - The SSH secrets engine mount of the user CA.
    type: str
    default: ssh-user-ca
  host_ca_mount:
    description:
      - The SSH secrets engine mount of the host CA.
    type: str
    default: ssh-host-ca
extends_documentation_fragment:
  - penguinmails.vps.vault
  - penguinmails.vps.attributes
  - penguinmails.vps.attributes.info_module
  - penguinmails.vps.attributes.action_group
seealso:
  - module: penguinmails.vps.vault_ssh_ca
  - module: penguinmails.vps.ssh_krl
"""

EXAMPLES = r"""
- name: What a host in certificate mode must trust and revoke
  penguinmails.vps.vault_ssh_ca_info:
    tenant_id: acme
    ca: auto
  register: ca
"""

RETURN = r"""
ssh_auth:
  description: The tenant's mode (V(keys), V(certificates), or the O(ssh_auth) given).
  returned: when O(tenant_id) is given
  type: str
  sample: certificates
user_ca:
  description:
    - C(mount), C(keys) (the public keys, the one that signs first) and C(issuers) (C(id), C(name),
      C(public_key), C(fingerprint), C(default)) of the user CA; empty lists when not read or not set up.
  returned: always
  type: dict
host_ca:
  description: The same for the host CA.
  returned: always
  type: dict
revoked:
  description:
    - What the key revocation list revokes - C(serials) (decimal strings), C(key_ids), C(public_keys) - and
      C(version) (the KV version of the list, 0 when nothing was ever revoked).
  returned: always
  type: dict
vps_ip:
  description: The C(vps_ip) of the tenant record (empty when it has none).
  returned: when O(tenant_id) is given
  type: str
certificate_tenants:
  description: Every tenant whose record is in certificate mode, each C({tenant_id, address}) (C(address) is the record's C(vps_ip)).
  returned: when O(list_tenants=true)
  type: list
  elements: dict
"""

from ansible_collections.penguinmails.vps.plugins.module_utils import ssh_ca
from ansible_collections.penguinmails.vps.plugins.module_utils import ssh_certificates as sc
from ansible_collections.penguinmails.vps.plugins.module_utils.validators import (
    ValidationError,
    tenant_record_path,
    validate_tenant_id,
)
from ansible_collections.penguinmails.vps.plugins.module_utils.vault_client import (
    VaultError,
    get_client,
    vault_module,
)


def _record(client, tenant_id, mount):
    record_mount, record_path = tenant_record_path(tenant_id, mount)
    secret = client.read_or_none(record_mount, record_path)
    return (secret.data if secret else None) or {}


def _ca(client, mount, read):
    issuers = ssh_ca.CertificateAuthority(client, mount).issuers() if read else []
    return {"mount": mount, "keys": [issuer["public_key"] for issuer in issuers], "issuers": issuers}


def main():
    module = vault_module(
        dict(
            tenant_id=dict(type="str"),
            ssh_auth=dict(type="str", default="record", choices=["record", "keys", "certificates", "both"]),
            ca=dict(type="str", default="always", choices=["always", "auto", "never"]),
            list_tenants=dict(type="bool", default=False),
            mount=dict(type="str", default="vps"),
            user_ca_mount=dict(type="str", default=ssh_ca.DEFAULT_USER_CA_MOUNT),
            host_ca_mount=dict(type="str", default=ssh_ca.DEFAULT_HOST_CA_MOUNT),
        )
    )
    p = module.params
    result = dict(changed=False)
    try:
        client = get_client(p)
        mode = None
        if p["tenant_id"]:
            tenant_id = validate_tenant_id(p["tenant_id"])
            record = _record(client, tenant_id, p["mount"])
            mode = ssh_ca.tenant_mode(record) if p["ssh_auth"] == "record" else p["ssh_auth"]
            result["ssh_auth"] = mode
            result["vps_ip"] = record.get("vps_ip") or ""
        read = p["ca"] == "always" or (p["ca"] == "auto" and mode != "keys")
        result["user_ca"] = _ca(client, p["user_ca_mount"], read)
        result["host_ca"] = _ca(client, p["host_ca_mount"], read)
        store = ssh_ca.RevocationStore(client, p["mount"], p["user_ca_mount"])
        data, version = store.read() if read else ({}, 0)
        revoked = store.lists(data)
        revoked["serials"] = [str(serial) for serial in revoked["serials"]]
        revoked["version"] = version
        result["revoked"] = revoked
        if p["list_tenants"]:
            found = []
            for name in client.list(p["mount"], ""):
                try:
                    tenant_id = validate_tenant_id(name.rstrip("/"))
                except ValidationError:
                    continue
                record = _record(client, tenant_id, p["mount"])
                if ssh_ca.tenant_mode(record) == "certificates":
                    found.append({"tenant_id": tenant_id, "address": record.get("vps_ip") or ""})
            result["certificate_tenants"] = sorted(found, key=lambda item: item["tenant_id"])
    except (ValidationError, VaultError, ssh_ca.CAError, sc.CertificateError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
