#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vault_session
short_description: One Vault login for a whole run, revoked at its end
version_added: 0.5.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - Runs on the controller (an action plugin).
  - O(state=present) logs in to Vault once (AppRole or JWT, the Vault options below) and keeps the token as the fact
    C(penguinmails_vault_session) of the host the task runs on (C(localhost) in the collection's playbooks).
  - The collection's action plugins (M(penguinmails.vps.ssh_host_keys), M(penguinmails.vps.ssh_agent)) then use it
    instead of logging in again, and so do its modules through the plays' C(module_defaults) and the filter
    P(penguinmails.vps.vault_session_token#filter). A run of a fleet playbook thus logs in once, not once per task or
    per host.
  - A session that is still valid for more than two minutes is kept; one closer to its end is replaced by a new login,
    and a token that ends during the run is never handed out (the caller logs in itself instead).
  - O(state=absent) revokes the session's token (C(auth/token/revoke-self)). A run that is killed leaves the token to
    expire with its TTL (the AppRole's C(token_ttl)).
  - With token auth there is nothing to log in to - the session stays empty and the caller's token is never revoked.
  - The result is hidden like that of a C(no_log) task; the token never reaches the output.
options:
  state:
    description:
      - V(present) - log in (once); V(absent) - revoke the session's token.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - penguinmails.vps.vault
  - penguinmails.vps.attributes
  - penguinmails.vps.attributes.action
  - penguinmails.vps.attributes.action_group
attributes:
  check_mode:
    support: full
    details: Logs in in check mode too (later tasks of the run need Vault); nothing is written.
  diff_mode:
    support: none
    details: Nothing to compare.
  action:
    details: Runs on the controller as an action plugin.
seealso:
  - module: penguinmails.vps.ssh_host_keys
"""

EXAMPLES = r"""
- name: Log in to Vault once for the run
  penguinmails.vps.vault_session:

- name: Revoke the run's token at the end
  penguinmails.vps.vault_session:
    state: absent
"""

RETURN = r"""
ansible_facts:
  description:
    - C(penguinmails_vault_session) - the run's session (its token included) for the later tasks of the run; emptied by
      O(state=absent). The whole result is hidden like that of a C(no_log) task.
  returned: when a session starts or ends
  type: dict
  sample: {"penguinmails_vault_session": {}}
session:
  description:
    - The session without its token - C(accessor), C(method), C(expires) (epoch seconds; 0 when it does not end) with
      O(state=present); C(revoked) with O(state=absent).
  returned: always
  type: dict
  sample: {"accessor": "hmac-like-accessor", "method": "approle", "expires": 1764900000}
"""
