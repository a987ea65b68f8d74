#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: audit_verify
short_description: Verify the hash chain of a penguinmails.vps audit file, against anchors from syslog or a webhook
version_added: 0.2.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - Checks every link of the JSON lines file the audit callback P(penguinmails.vps.audit#callback)
    writes, and fails naming the first bad line - an edited, removed, inserted or reordered event, a
    line of another hash algorithm in a keyed chain, a damaged line.
  - With O(anchors) - events and end-of-run checkpoints that syslog or the webhook received, or a
    C(SEQ:HASH) written down earlier - it also finds what the file alone cannot show - its end cut
    off, the whole file replaced, the chain rewritten.
  - Read-only. The same check runs without Ansible as
    C(python3 -m ansible_collections.penguinmails.vps.plugins.module_utils.audit verify FILE), and
    the playbook C(penguinmails.vps.audit_verify) runs this module on the controller.
options:
  path:
    description:
      - The audit file (the callback's C(file) option) on the host the module runs on.
    type: path
    default: ~/.ansible/penguinmails/audit.jsonl
    aliases: [file]
  chain_key:
    description:
      - The callback's C(chain_key), for a keyed (HMAC-SHA256) chain; then only HMAC-SHA256 lines verify.
      - Falls back to E(PENGUINMAILS_AUDIT_CHAIN_KEY).
    type: str
  anchors:
    description:
      - Each item is C(SEQ:HASH) or a bare C(HASH) (as an earlier verify printed it), or the path of a
        file exported from syslog or the webhook receiver holding the callback's events and
        C(audit_checkpoint) records, one per line (RFC 5424, classic syslog or JSON lines).
      - Records of another controller's chain are ignored; when none belongs to this file's chain, the
        file was replaced (or the export is the wrong one) and line 1 is reported.
    type: list
    elements: str
    default: []
  first_prev_hash:
    description:
      - The hash the first event must follow, for a file split off an older one by hand (the last hash
        of the older file). Default - the genesis hash (64 zeros).
    type: str
  any_start:
    description:
      - Accept any first link (skips the check of O(first_prev_hash)).
    type: bool
    default: false
  accept_breaks:
    description:
      - Succeed when the only findings are chain breaks the file sink recorded (damaged bytes it skipped,
        each accounted for by a C(chain_break) event). They are still returned in RV(audit_verify.breaks).
    type: bool
    default: false
extends_documentation_fragment:
  - penguinmails.vps.attributes
  - penguinmails.vps.attributes.info_module
notes:
  - Exit status of the command line form - 0 intact, 1 tampered or unreadable, 2 usage error, 3 intact
    apart from recorded chain breaks.
seealso:
  - plugin: penguinmails.vps.audit
    plugin_type: callback
  - module: penguinmails.vps.audit_event
"""

EXAMPLES = r"""
- name: Verify the audit trail against what syslog received
  penguinmails.vps.audit_verify:
    path: /var/log/penguinmails/audit.jsonl
    anchors:
      - /var/log/remote/controller1/penguinmails-audit.log
  delegate_to: localhost

- name: Verify against the last hash written down in the change ticket
  penguinmails.vps.audit_verify:
    path: /var/log/penguinmails/audit.jsonl
    anchors: ["1042:6b1f0e1c8a7d4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3a291807f6e5d4c3b"]
  delegate_to: localhost
"""

RETURN = r"""
audit_verify:
  description: What the verification found.
  returned: always
  type: dict
  contains:
    ok:
      description: Intact, no chain break, every anchor matched.
      type: bool
      sample: false
    count:
      description: Events in the file.
      type: int
      sample: 42
    last_seq:
      description: Sequence number of the last event.
      type: int
      sample: 42
    last_hash:
      description: Hash of the last event.
      type: str
    anchor:
      description: C(SEQ:HASH) of the last event, to give to a later verification.
      type: str
    first_bad_line:
      description: The first line with a finding, or null.
      type: int
      sample: 7
    problems:
      description: The findings, C(line N - ...), sorted by line.
      type: list
      elements: str
    breaks:
      description: Chain breaks the file sink recorded (C(line N - chain break after line M - B bytes skipped)).
      type: list
      elements: str
    chain_ids:
      description: The chain ids in the file.
      type: list
      elements: str
    anchors_checked:
      description: Anchor records compared with the file.
      type: int
    exit_code:
      description: The command line form's exit status (0, 1 or 3).
      type: int
    summary:
      description: One line - the result, the first bad line first.
      type: str
      sample: "FAILED against 10 anchor(s): first bad line 7: line 7: the file ends at seq 6 ..."
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.penguinmails.vps.plugins.module_utils.audit import (
    GENESIS_HASH,
    AuditError,
    load_anchors,
    verify_file,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", default="~/.ansible/penguinmails/audit.jsonl", aliases=["file"]),
            chain_key=dict(type="str", no_log=True),
            anchors=dict(type="list", elements="str", default=[]),
            first_prev_hash=dict(type="str"),
            any_start=dict(type="bool", default=False),
            accept_breaks=dict(type="bool", default=False),
        ),
        mutually_exclusive=[("first_prev_hash", "any_start")],
        supports_check_mode=True,
    )
    params = module.params
    chain_key = params["chain_key"] or os.environ.get("PENGUINMAILS_AUDIT_CHAIN_KEY") or None
    first = None if params["any_start"] else (params["first_prev_hash"] or GENESIS_HASH)
    try:
        anchors = [anchor for spec in params["anchors"] for anchor in load_anchors(spec)]
    except AuditError as exc:
        module.fail_json(msg=str(exc))
    result = verify_file(params["path"], chain_key, first, anchors).as_dict()
    if result["exit_code"] == 1 or (result["exit_code"] == 3 and not params["accept_breaks"]):
        module.fail_json(msg="%s: %s" % (params["path"], result["summary"]), audit_verify=result)
    module.exit_json(changed=False, audit_verify=result)


if __name__ == "__main__":
    main()
