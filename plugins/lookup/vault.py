# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: vault
short_description: Read or list tenant secrets in Vault / OpenBao (KV v2)
version_added: 0.1.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - Reads secrets, or one field of them, from the KV v2 mounts of penguinmails.vps
    (V(vps), V(smtp), V(dkim) by default), or lists the keys below a path, for example the
    DKIM selectors of a domain.
  - Many terms can be read in one call. The client logs in once per process and settings and
    keeps that login and its HTTP connection for every later term and call (for example every
    item of a loop), unlike community.hashi_vault, which logs in on every call.
  - Every path is validated before it is used. Below the O(vps_mount) and O(smtp_mount) mounts
    the first segment must be a tenant id (C(^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$)); below
    O(dkim_mount) come a domain and a DKIM selector. C(.) and C(..) segments are refused.
  - Errors are one line, name the path and the cause, and never contain a secret.
options:
  _terms:
    description:
      - Paths C(<mount>/<path>), for example V(vps/t1/admin_ssh) or V(dkim/example.com).
    type: list
    elements: str
    required: true
  operation:
    description:
      - V(read) returns the secret's fields (a dict), or the value of O(field).
      - V(list) returns the list of keys below the path (an empty list when there are none).
      - V(metadata) returns the KV v2 metadata (versions, current_version, timestamps).
    type: str
    choices: [read, list, metadata]
    default: read
  field:
    description:
      - Return only this field of each secret. Fails if the secret has no such field.
    type: str
  version:
    description:
      - Read this version instead of the latest.
    type: int
  vps_mount:
    description:
      - Name of the KV v2 mount that holds the per-tenant SSH keys and records.
    type: str
    default: vps
    vars:
      - name: penguinmails_vault_vps_mount
  smtp_mount:
    description:
      - Name of the KV v2 mount that holds the per-tenant SMTP credentials.
    type: str
    default: smtp
    vars:
      - name: penguinmails_vault_smtp_mount
  dkim_mount:
    description:
      - Name of the KV v2 mount that holds the DKIM keys.
    type: str
    default: dkim
    vars:
      - name: penguinmails_vault_dkim_mount
extends_documentation_fragment:
  - penguinmails.vps.vault.PLUGINS
notes:
  - "Private keys and passwords read with this lookup are secrets. Use them only in tasks with
    C(no_log: true), or better, pass paths to the collection's modules and let them read Vault."
seealso:
  - name: KV secrets engine version 2
    description: The KV v2 API this lookup speaks.
    link: https://openbao.org/api-docs/secret/kv/kv-v2/
"""

EXAMPLES = r"""
- name: Read the admin public key of tenant t1 (token from VAULT_TOKEN, address from VAULT_ADDR)
  ansible.builtin.debug:
    msg: "{{ lookup('penguinmails.vps.vault', 'vps/t1/admin_ssh', field='public_key') }}"

- name: Read several secrets at once (one login, one connection)
  ansible.builtin.set_fact:
    tenant_keys: "{{ query('penguinmails.vps.vault', 'vps/t1/admin_ssh', 'vps/t1/tenant_ssh', field='fingerprint') }}"

- name: List the DKIM selectors of a domain
  ansible.builtin.set_fact:
    selectors: "{{ lookup('penguinmails.vps.vault', 'dkim/example.com', operation='list') }}"

- name: Log in with AppRole, as a scheduled job would
  ansible.builtin.set_fact:
    record: "{{ lookup('penguinmails.vps.vault', 'vps/t1/record', auth_method='approle',
                url='https://vault.example.com:8200', role_id=vault_role_id, secret_id=vault_secret_id) }}"
  no_log: true
"""

RETURN = r"""
_raw:
  description:
    - One element per term. With O(operation=read) the secret's fields as a dict, or with
      O(field) that field's value; with O(operation=list) a list of key names; with
      O(operation=metadata) the metadata dict.
  type: list
  elements: raw
"""

from ansible.errors import AnsibleLookupError
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.lookup import LookupBase
from ansible.utils.display import Display

from ansible_collections.penguinmails.vps.plugins.module_utils.validators import ValidationError, split_secret_path
from ansible_collections.penguinmails.vps.plugins.module_utils.vault_client import (
    OPTION_SOURCES,
    VaultError,
    get_client,
)

display = Display()


# Option resolution costs more than a KV read on a keep-alive connection. The resolved
# options depend only on the direct arguments, the penguinmails_vault_* variables, the
# environment and ansible.cfg (fixed for the life of a process), so they are memoised on those.
_VAR_PREFIX = "penguinmails_vault_"
_OPTIONS_MEMO = {}


def _options_key(variables, kwargs):
    relevant = sorted((k, repr(v)) for k, v in (variables or {}).items() if k.startswith(_VAR_PREFIX))
    return repr((sorted((k, repr(v)) for k, v in kwargs.items()), relevant))


class LookupModule(LookupBase):
    def _resolve_options(self, variables, kwargs):
        key = _options_key(variables, kwargs)
        options = _OPTIONS_MEMO.get(key)
        if options is None:
            self.set_options(var_options=variables, direct=kwargs)
            options = dict(self._options)
            if len(_OPTIONS_MEMO) > 64:
                _OPTIONS_MEMO.clear()
            _OPTIONS_MEMO[key] = options
        else:
            self._options = dict(options)
        return options

    def run(self, terms, variables=None, **kwargs):
        self._resolve_options(variables, kwargs)
        operation = self.get_option("operation")
        field = self.get_option("field")
        version = self.get_option("version")
        mounts = {
            "vps": self.get_option("vps_mount"),
            "smtp": self.get_option("smtp_mount"),
            "dkim": self.get_option("dkim_mount"),
        }
        if operation != "read" and (field or version):
            raise AnsibleLookupError("penguinmails.vps.vault: field and version apply only to operation=read")
        try:
            # Validate every term before the first request: bad input changes nothing.
            targets = [split_secret_path(to_native(term), mounts) for term in terms]
            client = get_client(dict((name, self.get_option(name)) for name in OPTION_SOURCES))
            results = []
            for mount, path in targets:
                display.vvv("penguinmails.vps.vault: %s %s/%s" % (operation, mount, path))
                if operation == "list":
                    results.append(client.list(mount, path))
                elif operation == "metadata":
                    results.append(client.metadata(mount, path))
                else:
                    secret = client.read(mount, path, version)
                    results.append(secret.field(field) if field else secret.data)
            return results
        except (ValidationError, VaultError) as exc:
            raise AnsibleLookupError("penguinmails.vps.vault: %s" % to_native(exc))
