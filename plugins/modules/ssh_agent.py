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
    ends, however it ends (SIGKILL included). So the keys stay as long as the run needs them - a sliced AWX
    job whose host play runs for hours keeps them - and no longer; O(lifetime) may cap every key at a number of
    seconds, after which the agent forgets it even if nothing else happens.
  - O(state=loaded) (starts the agent if needed and) reads each tenant's current key from Vault for each
    of O(roles), plus the fallback key while the current admin key is not confirmed by the host (see
    M(penguinmails.vps.vault_ssh_keypair)), and feeds them to C(ssh-add) on its standard input; private
    keys never become a variable, a result or a file. It writes the public keys (as C(IdentityFile)s that
    select the agent's keys) and a known_hosts file made from the tenant record's C(host_keys) in the
    agent's directory, and returns per tenant the C(ssh) arguments that use exactly those.
  - A tenant whose record has no host keys yet has them recorded on this first contact (C(ssh-keyscan),
    check-and-set write to the record; RV(host_keys_recorded) lists them so the play can audit it) unless
    O(host_key_policy=strict), which fails instead. Every later connection checks against the record.
  - B(Certificate mode) (per tenant, C(ssh_auth) in its record, or O(ssh_auth)); see docs/ssh-certificates.md.
    For the admin side of a tenant in certificate mode no stored key is read. Once per run (not per host) an
    Ed25519 key is made in memory, the Vault SSH engine (O(user_ca_mount), role O(certificate_role)) signs it
    for the principal O(certificate_principal), and key and certificate go to the agent over the agent
    protocol, for the certificate's remaining validity (or O(lifetime) when that is shorter). Later calls of the
    same run reuse the certificate while enough of its validity is left (at least five minutes, or half its TTL),
    else sign a new one. Each signing is returned in RV(certificates_signed) so the play can audit it.
  - For a tenant in certificate mode the known_hosts file also gets a C(@cert-authority <address> <key>) line for
    every key of the host CA (O(host_ca_mount); two during a CA rotation). A host whose record holds no host key
    but that presents a valid host certificate for its address is accepted through the CA (nothing is recorded,
    and O(host_key_policy=strict) does not refuse it); only a host without one is recorded at first contact.
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
      - Seconds the agent keeps each key. V(0) sets no limit of its own - the keys stay until the run ends, when
        the watchdog removes the agent (C(ssh-agent) and C(ssh-add) run without C(-t)).
      - A number N > 0 is a cap an operator may set (C(-t N)); a run (an AWX slice) whose host play lasts longer
        then loses the keys its connections need. A negative value is refused.
      - In certificate mode the run certificate and its key stay for the certificate's remaining validity (at most
        N seconds with a cap); a later call signs a new certificate when it runs out.
      - The playbooks pass C(penguinmails_ssh_key_lifetime) (default V(0)).
    type: int
    default: 0
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
  addresses:
    description:
      - Tenant id to address, for tenants whose host is not (or not yet) the C(vps_ip) of their record.
    type: dict
    default: {}
  ssh_auth:
    description:
      - How the admin side reaches the tenants' hosts. V(record) follows each tenant record's C(ssh_auth)
        (V(keys) when unset); V(keys) uses the stored admin keys; V(certificates) the run certificate only;
        V(both) the run certificate and the stored keys (while a tenant moves between modes).
    type: str
    choices: [record, keys, certificates, both]
    default: record
  user_ca_mount:
    description:
      - The SSH secrets engine mount that signs the admin certificates (user CA).
    type: str
    default: ssh-user-ca
  host_ca_mount:
    description:
      - The SSH secrets engine mount whose keys vouch for host certificates (host CA).
    type: str
    default: ssh-host-ca
  certificate_role:
    description:
      - The role of O(user_ca_mount) that signs the run certificate.
    type: str
    default: admin
  certificate_principal:
    description:
      - The principal of the run certificate (what C(AuthorizedPrincipalsFile) of the admin account lists).
    type: str
    default: penguinmails-admin
  certificate_ttl:
    description:
      - Seconds the run certificate is valid; V(0) takes the role's TTL (10 minutes unless set otherwise).
    type: int
    default: 0
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
  - Certificate mode needs the Python library C(cryptography) on the controller, and a token that may update
    C(<user_ca_mount>/sign/<certificate_role>) and list C(<mount>/issuers) (policy C(automation) of
    penguinmails.vps.vault_setup). An AWX/AAP job needs nothing more than its Vault credential.
seealso:
  - module: penguinmails.vps.vault_ssh_keypair
  - module: penguinmails.vps.vault_ssh_ca
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

- name: Reach tenants in certificate mode with one certificate for the whole run
  penguinmails.vps.ssh_agent:
    tenants: [acme, globex]
    ssh_auth: certificates
  register: agent

- name: Audit the signing
  penguinmails.vps.audit_event:
    action: ssh_certificate_signed
    details:
      serial: "{{ item.serial }}"
      principals: "{{ item.principals }}"
      ttl: "{{ item.ttl }}"
  loop: "{{ agent.certificates_signed }}"

- name: Stop the agent
  penguinmails.vps.ssh_agent:
    state: stopped
"""

RETURN = r"""
ansible_facts:
  description: The fact C(penguinmails_ssh_agent) - the agent's description (as RV(agent)), which later tasks of the run reuse.
  returned: always
  type: dict
agent:
  description: The agent (its socket, its private directory, the watchdog's pid, the O(lifetime) it was started with).
  returned: unless O(state=stopped)
  type: dict
  sample: {"socket": "/tmp/pm-agent-x1/agent.sock", "directory": "/tmp/pm-agent-x1", "pid": 4242, "lifetime": 0}
tenants:
  description:
    - Per tenant, C(address) (vps_ip of the record), C(account) (the tenant's Unix account), C(admin_user),
      C(identity_files) and C(fingerprints) per role (current key first, then the fallback key; in certificate
      mode the run certificate and the ephemeral public key follow the admin keys, with the ephemeral key's
      fingerprint),
      C(known_hosts) (a file with the record's host keys, and the host CA lines in certificate mode),
      C(ca_known_hosts) (certificate mode only - a file with the host CA lines alone), C(host_key_fingerprints),
      C(host_key_source) (V(record), V(certificate) or V(ssh-keyscan)), C(ssh_auth) (the mode used) and
      C(ssh_args) (the ssh options that connect with the admin identities from the agent and check the host key).
  returned: when O(state=loaded) and O(tenants) is not empty
  type: dict
hosts:
  description:
    - Per address, C(tenants), C(identity_files), C(known_hosts), C(ca_known_hosts) (when a tenant of the host
      is in certificate mode) and C(ssh_args).
  returned: when O(state=loaded) and O(tenants) is not empty
  type: dict
errors:
  description: Tenant id to the one-line reason it cannot be reached (no host, no key, no certificate, host key).
  returned: when O(state=loaded)
  type: dict
certificate:
  description:
    - The run certificate (when a tenant needed one) - C(serial), C(key_id), C(principals), C(valid_after),
      C(valid_before), C(ttl), C(ca_fingerprint), C(fingerprint) and C(public_key) (of the ephemeral key),
      C(identity_file) (the certificate file), C(plain_identity_file) (the ephemeral public key, for a VPS whose
      authorized_keys got it at provisioning), C(mount), C(role), C(agent_until) (when the agent forgets it - its
      C(valid_before), or sooner with a O(lifetime) cap).
  returned: when O(state=loaded) and a tenant is in certificate mode
  type: dict
certificates_signed:
  description:
    - The certificates signed by this call (none when the run certificate was reused), each with C(serial),
      C(key_id), C(principals), C(valid_after), C(valid_before), C(ttl), C(ca_fingerprint), C(fingerprint),
      C(mount), C(role). Audit them (action C(ssh_certificate_signed)).
  returned: when O(state=loaded)
  type: list
  elements: dict
host_keys_recorded:
  description: Tenants whose host keys were recorded in this run (first contact).
  returned: when O(state=loaded) and O(tenants) is not empty
  type: list
  elements: str
"""
