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
      - Only these selectors, which must all exist (or be generated). Default is every selector stored for the domain.
    type: list
    elements: str
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
  sample:
    - {selector: dkim, dns_name: dkim._domainkey.example.com, txt: "v=DKIM1; k=rsa; p=MIIBIjANBg...", generated: false,
       exists: true}
generated:
  description: The selectors this run generated (or would generate in check mode).
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


def main():
    module = vault_module(
        dict(
            domain=dict(type="str", required=True),
            selector=dict(type="str", default="dkim"),
            selectors=dict(type="list", elements="str"),
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
                created = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()
                try:
                    client.write(mount, dkim_key_path(domain, selector, mount)[1],
                                 {"private_key": private, "public_key": public,
                                  "created_at": created.replace("+00:00", "Z")}, cas=0)
                except VaultCASConflict:
                    generated.remove(selector)  # another run stored it first: use that key
                stored.append(selector)
        names = wanted or sorted(set(stored) | set(generated))
        missing = [s for s in names if s not in stored and s not in generated]
        if missing:
            module.fail_json(msg="no DKIM key in Vault at %s for selector(s) %s; set generate_missing (dkim_generate_missing)"
                                 " to create %s" % ("%s/%s" % (mount, domain_path), ", ".join(missing), selector))
        if not names:
            module.fail_json(msg="no DKIM key stored under %s/%s; set generate_missing (dkim_generate_missing) to "
                                 "create selector %s" % (mount, domain_path, selector))
        entries = []
        for name in sorted(names):
            exists = name in stored
            txt = ""
            if exists:
                where = "%s/%s" % dkim_key_path(domain, name, mount)
                secret = client.read(*dkim_key_path(domain, name, mount))
                txt = txt_value(secret.field("private_key"), where)
            entries.append(dict(selector=name, dns_name="%s._domainkey.%s" % (name, domain), txt=txt,
                                generated=name in generated, exists=exists))
    except (ValidationError, VaultError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=bool(generated), selectors=entries, generated=generated)


if __name__ == "__main__":
    main()
