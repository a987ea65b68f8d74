#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: ssh_krl
short_description: Write an OpenSSH key revocation list (KRL) for sshd's RevokedKeys
version_added: 0.2.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - Writes the KRL at O(path) that revokes the certificate O(serials) and O(key_ids) of every key in
    O(ca_keys), and the O(public_keys) (certified or not), in the binary format of OpenSSH's
    C(PROTOCOL.krl); no C(ssh-keygen) is needed.
  - The file depends only on the options (entries sorted, O(version) as the KRL version, no time stamp), so a
    second run with the same list changes nothing. It is written atomically (a temporary file in the same
    directory, then a rename), so sshd, which reads it at every login, never sees half a file.
  - sshd refuses every public key login when C(RevokedKeys) names a file it cannot read; write the KRL before
    the sshd configuration names it (the role penguinmails.vps.ssh_access does).
options:
  path:
    description:
      - The KRL file.
    type: path
    required: true
  ca_keys:
    description:
      - The CA public keys whose serials and key ids are revoked (the keys of C(TrustedUserCAKeys)).
    type: list
    elements: str
    default: []
  serials:
    description:
      - Certificate serials, decimal or C(0x)-hex.
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
      - OpenSSH public key lines to revoke.
    type: list
    elements: str
    default: []
  version:
    description:
      - The KRL version number (for example the KV version of the list in Vault).
    type: int
    default: 0
  mode:
    description:
      - Permissions of the file.
    type: raw
    default: "0644"
extends_documentation_fragment:
  - penguinmails.vps.attributes
  - penguinmails.vps.attributes.platform
attributes:
  check_mode:
    support: full
    details: Reports whether the file would change; writes nothing.
  diff_mode:
    support: full
    details: The revoked entries before and after, one per line.
seealso:
  - module: penguinmails.vps.vault_ssh_revoke
"""

EXAMPLES = r"""
- name: The KRL of the host
  penguinmails.vps.ssh_krl:
    path: /etc/ssh/penguinmails/revoked_keys.krl
    ca_keys: "{{ ca.user_ca['keys'] }}"
    serials: "{{ ca.revoked.serials }}"
    key_ids: "{{ ca.revoked.key_ids }}"
    public_keys: "{{ ca.revoked.public_keys }}"
"""

RETURN = r"""
entries:
  description: What the KRL revokes, one line each, for example C(ca SHA256:... serial 17794228941741518073).
  returned: always
  type: list
  elements: str
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.penguinmails.vps.plugins.module_utils import ssh_certificates as sc


def _read(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def _write(module, path, data):
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".krl-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        module.set_mode_if_different(tmp, module.params["mode"], False)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            ca_keys=dict(type="list", elements="str", default=[], no_log=False),
            serials=dict(type="list", elements="str", default=[]),
            key_ids=dict(type="list", elements="str", default=[], no_log=False),
            public_keys=dict(type="list", elements="str", default=[]),
            version=dict(type="int", default=0),
            mode=dict(type="raw", default="0644"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        data = sc.build_krl(p["ca_keys"], p["serials"], p["key_ids"], p["public_keys"], version=p["version"],
                            comment="penguinmails.vps")
        entries = sc.describe_krl(data)
    except sc.CertificateError as exc:
        module.fail_json(msg="ssh_krl: %s" % exc)
    current = _read(p["path"])
    changed = current != data
    if changed and not module.check_mode:
        if not os.path.isdir(os.path.dirname(p["path"]) or "."):
            module.fail_json(msg="ssh_krl: the directory of %s does not exist" % p["path"])
        try:
            _write(module, p["path"], data)
        except (IOError, OSError) as exc:
            module.fail_json(msg="ssh_krl: cannot write %s: %s" % (p["path"], exc.strerror or exc))
    elif not module.check_mode:
        changed = module.set_mode_if_different(p["path"], p["mode"], False)
    result = dict(changed=changed, entries=entries)
    if module._diff:
        try:
            before = sc.describe_krl(current) if current else []
        except sc.CertificateError:
            before = ["(a file that is not a KRL)"]
        result["diff"] = {"before": "".join(line + "\n" for line in before),
                          "after": "".join(line + "\n" for line in entries)}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
