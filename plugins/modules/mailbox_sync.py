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
  - Runs on the controller (an action plugin). Lists the mail data under O(mail_root) (Mailu's C(/mailu/mail), Dovecot's Maildir
    layout) on both hosts at once over SSH (one connection per host for the whole copy), then streams what the target lacks from C(tar) on the source to a small
    receiver (the target's C(python3), standard library only) on the target. The bytes go from one C(ssh) to the
    other through an operating-system pipe; nothing is written on the controller.
  - Only mail data moves - messages of the INBOX and every folder (flags in their names, dates as their
    modification times), Dovecot's C(dovecot-uidlist), C(dovecot-keywords), C(maildirfolder), C(subscriptions) and
    C(dovecot-uidvalidity) files. Never indexes, C(tmp/), links, devices, configuration or executables; the
    receiver refuses any other member, so a compromised source cannot place anything else on the target.
  - Each file is written to the account's C(tmp/); files are made durable in batches (one filesystem sync for
    the batch, then the renames into C(cur/) and C(new/), then a sync of those directories), and Dovecot's
    C(dovecot-uidlist) files last, so a running Dovecot never sees half a message and a killed copy leaves
    nothing but files in C(tmp/) (removed by the next run); a rerun goes on from the last durable batch.
  - A message held by both sides keeps the union of their flags; nothing is deleted on the target. A rerun copies
    only what is still missing.
  - O(mode=copy) (before the DNS switch, the target has no user yet) also takes the source's C(dovecot-uidlist)
    of each mailbox, so UIDs and UIDVALIDITY stay what the tenant's IMAP clients know. O(mode=merge) (the final
    delta, when the target already receives mail) never replaces the target's UIDs; Dovecot numbers the added
    messages after its own.
extends_documentation_fragment:
  - penguinmails.vps.attributes
  - penguinmails.vps.attributes.action
attributes:
  check_mode:
    support: full
    details: Lists both sides and reports what would be copied; moves nothing.
  diff_mode:
    support: none
    details: No diff is returned.
  action:
    details: The copy runs in the controller process, which shows its progress while it runs.
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
  changed_since:
    description:
      - The RV(source_time) of an earlier complete run between the same hosts; the source then lists only the files
        created, renamed or changed since (new mail, flags set, Dovecot's rewritten C(dovecot-uidlist)), so the
        final delta costs what changed, not a listing of every message. The target is still listed in full.
      - Only after a run that finished; a copy that stopped part-way is resumed without it.
    type: float
  compress:
    description:
      - Compress the stream on the source (C(gzip -1); the receiver reads either). Mail text shrinks to a third or
        less, so this pays on links slower than the source compresses (tens of MB/s, for example a copy between providers
        through the controller); on a fast link it costs CPU and time (in the lab, up to twice the time).
    type: bool
    default: false
  progress_interval:
    description:
      - Seconds between two progress lines (messages and bytes done of the total, MB/s, the time left) shown to
        the operator while the copy runs, and so in an AWX job's output. The last line shows when it is done.
    type: int
    default: 5
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
source_time:
  description:
    - The source's clock (epoch seconds) when it was listed, a few seconds early; the O(changed_since) of the next
      run (the final delta). 0 when the source's C(date) cannot tell it.
  returned: always
  type: float
  sample: 1764950000.25
listing_seconds:
  description: Time the two listings took (both hosts listed at once, connections included).
  returned: always
  type: float
progress:
  description:
    - The figures of the transfer (after the listings), for the migration's record.
  returned: always
  type: dict
  contains:
    total_messages:
      description: Messages to copy.
      type: int
    total_bytes:
      description: Bytes of the messages to copy.
      type: int
    messages:
      description: Messages made durable on the target.
      type: int
    bytes:
      description: Bytes of those messages.
      type: int
    seconds:
      description: Time of the transfer.
      type: float
    messages_per_second:
      description: Messages per second.
      type: float
    bytes_per_second:
      description: Message bytes per second.
      type: int
    lines:
      description: The progress lines shown while it ran (at most the last 50).
      type: list
      elements: str
      sample: ["mail copy: 1200/3000 messages, 8.7/21.8 MB, 9.1 MB/s, 1 s left"]
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

from ansible_collections.penguinmails.vps.plugins.module_utils.maildir_sync import SyncError, argument_spec, run_task


def main():
    # The work is done by the action plugin (plugins/action/mailbox_sync.py) on the controller, which shows the
    # progress while the copy runs; this module is the same copy without the live progress lines.
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    try:
        result = run_task(module.params, check_mode=module.check_mode)
    except SyncError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
