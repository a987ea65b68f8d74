#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: ssh_agent
short_description: Hold tenants' SSH keys from Vault in a private ssh-agent for one run, never on disk
version_added: 0.2.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - Runs on the controller (an action plugin; the task never connects to a host).
  - O(state=started) starts the run's private C(ssh-agent) (a 0700 directory, the socket in it) under a
    watchdog that stops the agent and removes the directory as soon as the C(ansible-playbook) process
    ends, however it ends (SIGKILL included). Every key is added with a lifetime (O(lifetime)), after
    which the agent forgets it even if nothing else happens.
  - O(state=loaded) (starts the agent if needed and) reads each tenant's current key from Vault for each
    of O(roles), plus the fallback key while the current admin key is not confirmed by the host (see
    M(penguinmails.vps.vault_ssh_keypair)), and feeds them to C(ssh-add) on its standard input; private
    keys never become a variable, a result or a file. It writes the public keys (as C(IdentityFile)s that
    select the agent's keys) and a known_hosts file made from the tenant record's C(host_keys) in the
    agent's directory, and returns per tenant the C(ssh) arguments that use exactly those.
  - A tenant whose record has no host keys yet has them recorded on this first contact (C(ssh-keyscan),
    check-and-set write to the record; RV(host_keys_recorded) lists them so the play can audit it) unless
    O(host_key_policy=strict), which fails instead. Every later connection checks against the record.
  - O(state=stopped) stops the agent at once (the watchdog would do it when the run ends anyway).
  - The agent's description is kept in the fact C(penguinmails_ssh_agent), so later tasks of the run
    reuse it.
options:
  state:
    description:
      - V(started), V(loaded) or V(stopped); see the description.
    type: str
    choices: [started, loaded, stopped]
    default: loaded
  tenants:
    description:
      - The tenant ids whose keys O(state=loaded) loads.
    type: list
    elements: str
    default: []
  roles:
    description:
      - Which keys of each tenant to load.
    type: list
    elements: str
    choices: [admin, tenant]
    default: [admin]
  lifetime:
    description:
      - Seconds the agent keeps each key.
    type: int
    default: 3600
  mount:
    description:
      - The KV v2 mount of the tenants' keys and records.
    type: str
    default: vps
  host_key_policy:
    description:
      - V(record) records the host keys of a tenant whose record has none at the first contact; V(strict)
        fails for such a tenant.
    type: str
    choices: [record, strict]
    default: record
  admin_user:
    description:
      - The admin account on the VPSes (returned with the connection facts).
    type: str
    default: root
extends_documentation_fragment:
  - penguinmails.vps.vault
  - penguinmails.vps.attributes
  - penguinmails.vps.attributes.action
  - penguinmails.vps.attributes.action_group
attributes:
  check_mode:
    support: full
    details: Runs in check mode too (it changes nothing outside the agent); later tasks need the keys.
  diff_mode:
    support: none
    details: Nothing to compare.
  action:
    details: Runs on the controller as an action plugin.
notes:
  - Needs C(ssh-agent), C(ssh-add) and C(ssh-keyscan) (Debian C(openssh-client)) on the controller.
seealso:
  - module: penguinmails.vps.vault_ssh_keypair
"""

EXAMPLES = r"""
- name: Load the admin keys of two tenants
  penguinmails.vps.ssh_agent:
    tenants: [acme, globex]
  register: agent

- name: Reach acme's VPS with its admin key from the agent
  ansible.builtin.add_host:
    name: "{{ agent.tenants.acme.address }}"
    ansible_user: root
    ansible_ssh_common_args: "{{ agent.tenants.acme.ssh_args }}"
    ansible_host_key_checking: true

- name: Stop the agent
  penguinmails.vps.ssh_agent:
    state: stopped
"""

RETURN = r"""
agent:
  description: The agent (its socket, its private directory, the watchdog's pid).
  returned: unless O(state=stopped)
  type: dict
  sample: {"socket": "/tmp/pm-agent-x1/agent.sock", "directory": "/tmp/pm-agent-x1", "pid": 4242}
tenants:
  description:
    - Per tenant, C(address) (vps_ip of the record), C(account) (the tenant's Unix account), C(admin_user),
      C(identity_files) and C(fingerprints) per role (current key first, then the fallback key),
      C(known_hosts) (a file with the record's host keys), C(host_keys_known) and C(ssh_args) (the ssh
      options that connect with the admin keys from the agent and check the host key against the record).
  returned: when O(state=loaded) and O(tenants) is not empty
  type: dict
host_keys_recorded:
  description: Tenants whose host keys were recorded in this run (first contact).
  returned: when O(state=loaded) and O(tenants) is not empty
  type: list
  elements: str
"""
