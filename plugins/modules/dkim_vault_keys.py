#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: dkim_vault_keys
short_description: List the DKIM keys of a domain in Vault, generate a missing one, and give their DNS records
version_added: 0.1.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - Used by the role C(penguinmails.vps.dkim); runs where Vault is reachable (the role delegates it to the controller).
  - Lists the selectors stored under C(dkim/<domain>/) in a KV v2 mount and, for each one, returns the DNS name
    C(<selector>._domainkey.<domain>) and the TXT value C(v=DKIM1; k=rsa; p=<base64 DER>), derived from the stored
    private key (the key that signs), never the private key itself.
  - With O(generate_missing=true), when O(selector) is not stored yet, generates an RSA key (PKCS#8 PEM, as Mailu
    writes it) and stores it with check-and-set C(cas=0), so that two concurrent runs cannot both create it; the
    loser uses the winner's key.
  - A selector whose key was exposed (a compromised VPS held it) is marked revoked in Vault (C(revoked_at), a new
    version of the same key, see O(revoke_others)). Revoked keys stay in Vault's history but are left out of the
    default listing (O(which=active)), so no later run installs or publishes them again.
extends_documentation_fragment:
  - penguinmails.vps.vault
  - penguinmails.vps.attributes
  - penguinmails.vps.attributes.action_group
attributes:
  check_mode:
    support: full
    details: Reports a key it would generate (with an empty C(txt)); writes nothing.
  diff_mode:
    support: none
    details: No diff is returned.
options:
  domain:
    description:
      - The mail domain, for example V(example.com).
    type: str
    required: true
  selector:
    description:
      - The selector to generate when O(generate_missing=true) and it is not in Vault.
    type: str
    default: dkim
  selectors:
    description:
      - Only these selectors, which must all exist (or be generated), revoked or not. Default is every selector stored
        for the domain that O(which) selects.
    type: list
    elements: str
  which:
    description:
      - Without O(selectors), which stored selectors to list. V(active) leaves out the revoked (exposed) keys.
    type: str
    choices: [active, revoked, all]
    default: active
  revoke_others:
    description:
      - Mark every stored selector other than O(selector) revoked (its key was exposed). Check-and-set on the
        version read; a selector already revoked is left as it is.
    type: bool
    default: false
  generate_missing:
    description:
      - Generate and store O(selector) if it is missing.
    type: bool
    default: false
  key_size:
    description:
      - RSA key size for a generated key.
    type: int
    default: 2048
    choices: [1024, 2048, 3072, 4096]
  mount:
    description:
      - The KV v2 mount holding the DKIM keys.
    type: str
    default: dkim
requirements:
  - cryptography (Python library)
  - hvac >= 1.2 (Python library)
"""

EXAMPLES = r"""
- name: DKIM keys of example.com, creating the default selector if there is none
  penguinmails.vps.dkim_vault_keys:
    domain: example.com
    generate_missing: true
  delegate_to: localhost
  register: dkim_keys
"""

RETURN = r"""
selectors:
  description: One entry per selector, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    selector:
      description: The selector.
      type: str
    dns_name:
      description: C(<selector>._domainkey.<domain>), without a trailing dot.
      type: str
    txt:
      description: The TXT value to publish; empty for a key that check mode would generate.
      type: str
    generated:
      description: Whether this run generated the key.
      type: bool
    exists:
      description: Whether the key is stored in Vault now (false only in check mode for a key to generate).
      type: bool
    revoked:
      description: Whether the key is marked revoked (exposed) in Vault.
      type: bool
  sample:
    - {selector: dkim, dns_name: dkim._domainkey.example.com, txt: "v=DKIM1; k=rsa; p=MIIBIjANBg...", generated: false,
       exists: true, revoked: false}
generated:
  description: The selectors this run generated (or would generate in check mode).
  returned: always
  type: list
  elements: str
revoked:
  description: The selectors this run marked revoked (or would mark in check mode).
  returned: always
  type: list
  elements: str
"""

import base64
import datetime

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.penguinmails.vps.plugins.module_utils.validators import (
    ValidationError,
    dkim_domain_path,
    dkim_key_path,
    validate_domain,
    validate_selector,
)
from ansible_collections.penguinmails.vps.plugins.module_utils.vault_client import (
    OPTION_SOURCES,
    VaultCASConflict,
    VaultError,
    get_client,
    vault_module,
)

try:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None
except ImportError as _exc:  # pragma: no cover
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = _exc


def generate_key(bits):
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode("ascii")
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")
    return private, public


def txt_value(private_pem, where):
    try:
        key = serialization.load_pem_private_key(private_pem.encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError):
        raise ValidationError("the private_key stored at %s is not a PEM private key" % where)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValidationError("the private_key stored at %s is not an RSA key" % where)
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode("ascii")


def _utc_now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _revoke(client, where, secret, check_mode):
    """Mark one stored key revoked (check-and-set on the version read); False when another run changed it first."""
    if check_mode:
        return True
    data = dict(secret.data, revoked_at=_utc_now())
    try:
        client.write(where[0], where[1], data, cas=secret.version)
    except VaultCASConflict:
        return False
    return True


def main():
    module = vault_module(
        dict(
            domain=dict(type="str", required=True),
            selector=dict(type="str", default="dkim"),
            selectors=dict(type="list", elements="str"),
            which=dict(type="str", default="active", choices=["active", "revoked", "all"]),
            revoke_others=dict(type="bool", default=False),
            generate_missing=dict(type="bool", default=False),
            key_size=dict(type="int", default=2048, choices=[1024, 2048, 3072, 4096]),
            mount=dict(type="str", default="dkim"),
        )
    )
    if not HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib("cryptography"), exception=str(CRYPTOGRAPHY_IMPORT_ERROR))
    p = module.params
    try:
        domain = validate_domain(p["domain"])
        selector = validate_selector(p["selector"])
        mount, domain_path = dkim_domain_path(domain, p["mount"])
        wanted = [validate_selector(s) for s in p["selectors"]] if p["selectors"] else None
        client = get_client(dict((name, p.get(name)) for name in OPTION_SOURCES))
        stored = [name.rstrip("/") for name in client.list(mount, domain_path) if not name.endswith("/")]
        generated = []
        if p["generate_missing"] and selector not in stored:
            generated.append(selector)
            if not module.check_mode:
                private, public = generate_key(p["key_size"])
                try:
                    client.write(mount, dkim_key_path(domain, selector, mount)[1],
                                 {"private_key": private, "public_key": public, "created_at": _utc_now()}, cas=0)
                except VaultCASConflict:
                    generated.remove(selector)  # another run stored it first: use that key
                stored.append(selector)
        secrets = dict((name, client.read(*dkim_key_path(domain, name, mount))) for name in stored if name not in generated
                       or not module.check_mode)
        revoked = []
        if p["revoke_others"]:
            for name in sorted(secrets):
                if name != selector and not secrets[name].data.get("revoked_at"):
                    if _revoke(client, dkim_key_path(domain, name, mount), secrets[name], module.check_mode):
                        revoked.append(name)
                    secrets[name] = client.read(*dkim_key_path(domain, name, mount))
        is_revoked = dict((name, bool(secret.data.get("revoked_at")) or name in revoked) for name, secret in secrets.items())
        listed = sorted(set(stored) | set(generated))
        if p["which"] != "all":
            listed = [name for name in listed if is_revoked.get(name, False) == (p["which"] == "revoked")]
        names = wanted or listed
        missing = [s for s in names if s not in stored and s not in generated]
        if missing:
            module.fail_json(msg="no DKIM key in Vault at %s for selector(s) %s; set generate_missing (dkim_generate_missing)"
                                 " to create %s" % ("%s/%s" % (mount, domain_path), ", ".join(missing), selector))
        if not names and p["which"] == "active":
            module.fail_json(msg="no DKIM key stored under %s/%s; set generate_missing (dkim_generate_missing) to "
                                 "create selector %s" % (mount, domain_path, selector))
        entries = []
        for name in sorted(names):
            txt = ""
            if name in secrets:
                where = "%s/%s" % dkim_key_path(domain, name, mount)
                txt = txt_value(secrets[name].field("private_key"), where)
            entries.append(dict(selector=name, dns_name="%s._domainkey.%s" % (name, domain), txt=txt,
                                generated=name in generated, exists=name in secrets, revoked=is_revoked.get(name, False)))
    except (ValidationError, VaultError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=bool(generated or revoked), selectors=entries, generated=generated, revoked=revoked)


if __name__ == "__main__":
    main()
