#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: mailbox_sync
short_description: Copy a tenant's mailboxes from one VPS to another, keeping flags, dates and UIDs
version_added: 0.3.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - Runs on the controller. Lists the mail data under O(mail_root) (Mailu's C(/mailu/mail), Dovecot's Maildir
    layout) on both hosts over SSH, then streams what the target lacks from C(tar) on the source to a small
    receiver (the target's C(python3), standard library only) on the target. The bytes go from one C(ssh) to the
    other through an operating-system pipe; nothing is written on the controller.
  - Only mail data moves - messages of the INBOX and every folder (flags in their names, dates as their
    modification times), Dovecot's C(dovecot-uidlist), C(dovecot-keywords), C(maildirfolder), C(subscriptions) and
    C(dovecot-uidvalidity) files. Never indexes, C(tmp/), links, devices, configuration or executables; the
    receiver refuses any other member, so a compromised source cannot place anything else on the target.
  - Each file is written to the mailbox's C(tmp/) and renamed in place (as an MTA delivers), so a running Dovecot
    never sees half a message. A message held by both sides keeps the union of their flags; nothing is deleted
    on the target. A rerun copies only what is still missing.
  - O(mode=copy) (before the DNS switch, the target has no user yet) also takes the source's C(dovecot-uidlist)
    of each mailbox, so UIDs and UIDVALIDITY stay what the tenant's IMAP clients know. O(mode=merge) (the final
    delta, when the target already receives mail) never replaces the target's UIDs; Dovecot numbers the added
    messages after its own.
extends_documentation_fragment:
  - penguinmails.vps.attributes
attributes:
  check_mode:
    support: full
    details: Lists both sides and reports what would be copied; moves nothing.
  diff_mode:
    support: none
    details: No diff is returned.
options:
  source_host:
    description:
      - Address of the host the mail comes from (the old VPS).
    type: str
    required: true
  source_ssh_args:
    description:
      - Options for C(ssh) to the source, for example the C(ssh_args) that M(penguinmails.vps.ssh_agent) returns
        per host (the admin key in the run's agent, the host keys of the tenant record).
    type: str
    default: ""
  target_host:
    description:
      - Address of the host the mail goes to (the new VPS).
    type: str
    required: true
  target_ssh_args:
    description:
      - Options for C(ssh) to the target.
    type: str
    default: ""
  user:
    description:
      - The SSH user on both hosts (it must be able to read and write the mail; Mailu's files belong to C(mail)).
    type: str
    default: root
  mail_root:
    description:
      - The directory holding one Maildir per account (C(<address>/)) on both hosts.
    type: path
    default: /mailu/mail
  mode:
    description:
      - V(copy) takes the source's UIDs with its messages; V(merge) only adds what is missing (see the description).
    type: str
    choices: [copy, merge]
    default: copy
  timeout:
    description:
      - Seconds the whole copy may take (listings included). When it runs out the copy stops and the module fails
        with what was moved so far; a rerun goes on from there.
    type: int
    default: 3600
  connect_timeout:
    description:
      - Seconds to wait for each SSH connection.
    type: int
    default: 15
requirements:
  - OpenSSH client on the controller; GNU C(find) and C(tar) on the source; C(python3) on the target
notes:
  - The source only runs C(find) and C(tar); the receiver is sent in the command line, nothing is installed.
"""

EXAMPLES = r"""
- name: Copy the mailboxes to the new VPS before the DNS switch
  penguinmails.vps.mailbox_sync:
    source_host: 203.0.113.10
    source_ssh_args: "{{ agent.hosts['203.0.113.10'].ssh_args }}"
    target_host: 203.0.113.20
    target_ssh_args: "{{ agent.hosts['203.0.113.20'].ssh_args }}"
    mode: copy
    timeout: 1800
  register: copied

- name: Final delta after the switch (only what the new VPS lacks)
  penguinmails.vps.mailbox_sync:
    source_host: 203.0.113.10
    source_ssh_args: "{{ agent.hosts['203.0.113.10'].ssh_args }}"
    target_host: 203.0.113.20
    target_ssh_args: "{{ agent.hosts['203.0.113.20'].ssh_args }}"
    mode: merge
"""

RETURN = r"""
mode:
  description: The mode used.
  returned: always
  type: str
  sample: copy
messages:
  description: Messages copied (in check mode, that would be copied).
  returned: always
  type: int
  sample: 1520
bytes:
  description: Bytes of the messages copied (in check mode, that would be copied).
  returned: always
  type: int
  sample: 73400320
meta_files:
  description: Dovecot files copied (uidlists, keywords, subscriptions, folder markers).
  returned: always
  type: int
flag_updates:
  description: Messages on the target whose flags gained the source's (read or answered there).
  returned: always
  type: int
already_present:
  description: Messages the target held already (a rerun, or mail that reached both).
  returned: always
  type: int
refused:
  description: Stream members the receiver refused (not mail data); 0 unless the source sent something else.
  returned: always
  type: int
seconds:
  description: Time the copy took, listings included.
  returned: always
  type: float
source:
  description: What the source holds.
  returned: always
  type: dict
  contains:
    accounts:
      description: The accounts (addresses) with mail data.
      type: list
      elements: str
    mailboxes:
      description: Mailboxes (INBOX and folders) holding messages.
      type: int
    messages:
      description: Messages.
      type: int
    bytes:
      description: Bytes of the messages.
      type: int
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.penguinmails.vps.plugins.module_utils.maildir_sync import Endpoint, SyncError, sync


def main():
    module = AnsibleModule(
        argument_spec=dict(
            source_host=dict(type="str", required=True),
            source_ssh_args=dict(type="str", default=""),
            target_host=dict(type="str", required=True),
            target_ssh_args=dict(type="str", default=""),
            user=dict(type="str", default="root"),
            mail_root=dict(type="path", default="/mailu/mail"),
            mode=dict(type="str", default="copy", choices=["copy", "merge"]),
            timeout=dict(type="int", default=3600),
            connect_timeout=dict(type="int", default=15),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if p["timeout"] < 1 or p["connect_timeout"] < 1:
        module.fail_json(msg="timeout and connect_timeout must be at least 1 second")
    if p["source_host"] == p["target_host"]:
        module.fail_json(msg="source_host and target_host are the same host (%s)" % p["source_host"])
    source = Endpoint(p["source_host"], p["source_ssh_args"], p["user"], connect_timeout=p["connect_timeout"])
    target = Endpoint(p["target_host"], p["target_ssh_args"], p["user"], connect_timeout=p["connect_timeout"])
    try:
        result = sync(source, target, p["mode"], root=p["mail_root"], timeout=p["timeout"], check_mode=module.check_mode)
    except SyncError as exc:
        module.fail_json(msg="mailbox copy %s -> %s: %s" % (p["source_host"], p["target_host"], exc))
    result.setdefault("refused", 0)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
