#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vault_ssh_sign
short_description: Have the Vault SSH engine sign public keys (host keys, or user keys), renewing only what needs it
version_added: 0.2.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - Signs each of O(keys) with role O(role) of the SSH secrets engine at O(mount) (docs/ssh-certificates.md),
    unless the certificate the entry already has certifies that key, was signed by the CA key that signs now,
    names exactly O(principals) and stays valid longer than O(renew_before) seconds. So a host certificate is
    renewed before it expires, after a CA rotation, and when the host's address changes, and not otherwise.
  - Returns every certificate (kept or new) and, in RV(signed), what was signed in this run with its serial,
    principals and validity, for the audit trail.
  - Only public keys are sent; nothing secret is returned.
options:
  mount:
    description:
      - The SSH secrets engine mount (the host CA for host keys).
    type: str
    default: ssh-host-ca
  role:
    description:
      - The role of O(mount) that signs.
    type: str
    default: host
  cert_type:
    description:
      - V(host) or V(user) certificates.
    type: str
    choices: [host, user]
    default: host
  principals:
    description:
      - The principals of the certificates (for a host, the names and addresses clients connect to).
    type: list
    elements: str
    required: true
  keys:
    description:
      - The public keys to certify, each C({name, public_key, certificate}); C(certificate) is the current
        certificate of that key, if any (an empty string when there is none).
    type: list
    elements: dict
    required: true
  ttl:
    description:
      - Seconds a new certificate is valid; V(0) takes the role's TTL.
    type: int
    default: 0
  renew_before:
    description:
      - A certificate that expires within this many seconds is signed again.
    type: int
    default: 2592000
extends_documentation_fragment:
  - penguinmails.vps.vault
  - penguinmails.vps.attributes
  - penguinmails.vps.attributes.action_group
attributes:
  check_mode:
    support: full
    details: Reports which keys would be signed and why; signs nothing.
  diff_mode:
    support: full
    details: Which keys get a new certificate and why.
seealso:
  - module: penguinmails.vps.vault_ssh_ca
  - module: penguinmails.vps.ssh_agent
"""

EXAMPLES = r"""
- name: Certify the host keys of a VPS for its address
  penguinmails.vps.vault_ssh_sign:
    principals: [203.0.113.10]
    keys:
      - name: /etc/ssh/ssh_host_ed25519_key.pub
        public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB... root@vps"
        certificate: ""
  delegate_to: localhost
  register: host_certs
"""

RETURN = r"""
certificates:
  description:
    - One per entry of O(keys), in order - C(name), C(public_key), C(certificate) (the line; the current one
      when kept, empty in check mode for a key that would be signed), C(signed) (signed in this run),
      C(reason) (why it was signed, or V(valid)), and for a certificate C(serial) (decimal string), C(key_id),
      C(principals), C(valid_after), C(valid_before), C(ca_fingerprint), C(fingerprint), C(key_type).
  returned: always
  type: list
  elements: dict
signed:
  description: The entries of RV(certificates) signed in this run (for the audit trail).
  returned: always
  type: list
  elements: dict
"""

import time

from ansible_collections.penguinmails.vps.plugins.module_utils import ssh_ca
from ansible_collections.penguinmails.vps.plugins.module_utils import ssh_certificates as sc
from ansible_collections.penguinmails.vps.plugins.module_utils.validators import ValidationError
from ansible_collections.penguinmails.vps.plugins.module_utils.vault_client import (
    VaultError,
    get_client,
    vault_module,
)

_SHOWN = ("serial", "key_id", "principals", "valid_after", "valid_before", "ca_fingerprint", "fingerprint", "key_type")


def _describe(entry, cert):
    entry = dict(entry)
    if cert:
        entry.update((name, cert[name]) for name in _SHOWN)
        entry["serial"] = str(cert["serial"])
    return entry


def main():
    module = vault_module(
        dict(
            mount=dict(type="str", default=ssh_ca.DEFAULT_HOST_CA_MOUNT),
            role=dict(type="str", default=ssh_ca.DEFAULT_HOST_ROLE),
            cert_type=dict(type="str", default="host", choices=["host", "user"]),
            principals=dict(type="list", elements="str", required=True),
            keys=dict(type="list", elements="dict", required=True, no_log=False),
            ttl=dict(type="int", default=0),
            renew_before=dict(type="int", default=30 * 86400),
        )
    )
    p = module.params
    certificates, signed = [], []
    try:
        principals = [ssh_ca.validate_principal(principal) for principal in p["principals"]]
        if not principals:
            raise ValidationError("principals must not be empty")
        ca = ssh_ca.CertificateAuthority(get_client(p), p["mount"])
        issuers = ca.issuers()
        if not issuers:
            raise ssh_ca.CAError("%s has no CA key: set it up with penguinmails.vps.vault_setup" % p["mount"])
        signing_key = issuers[0]["public_key"] if issuers[0]["default"] else None
        plan = ssh_ca.signing_plan(p["keys"], signing_key, p["cert_type"], principals, p["renew_before"], int(time.time()))
        for item in plan:
            entry = {"name": item["name"], "public_key": item["public_key"], "signed": False, "reason": item["reason"],
                     "certificate": item["certificate"]}
            if item["sign"] and not module.check_mode:
                cert = ca.sign(p["role"], item["public_key"], cert_type=p["cert_type"], principals=principals, ttl=p["ttl"])
                entry.update(signed=True, certificate=cert["certificate"])
                entry = _describe(entry, cert)
                signed.append(entry)
            else:
                entry = _describe(entry, sc.summary(sc.parse_certificate(item["certificate"])) if item["certificate"] else None)
            certificates.append(entry)
    except (ValidationError, VaultError, ssh_ca.CAError, sc.CertificateError) as exc:
        module.fail_json(msg=str(exc))
    to_sign = [item for item in plan if item["sign"]]
    result = dict(changed=bool(to_sign), certificates=certificates, signed=signed)
    if module._diff:
        result["diff"] = {"before": "", "after": "".join("%s: sign (%s)\n" % (item["name"], item["reason"]) for item in to_sign)}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
