#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: ssh_host_keys
short_description: Install, verify and confirm the SSH keys of every tenant of one host in one step
version_added: 0.5.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - The host step of the fleet playbooks (rotate_all, regenerate, migrate's SSH access); see
    docs/ssh-key-lifecycle.md. Runs as an action plugin on the controller, once per host, for every tenant of
    the host in O(jobs).
  - Reads from Vault, in the controller process and on one Vault client, what the host must hold for each
    tenant - the current key, the fallback key while the current admin key is unconfirmed, every grace key with
    its own expiry, the KV version as the serial - and, in SSH certificate mode, the principals
    (docs/ssh-certificates.md; the CA files themselves are set up once per host by the role
    penguinmails.vps.ssh_access, C(tasks_from=ca_host)).
  - Calls M(penguinmails.vps.authorized_key_batch) once on the host for all of them, logs in from the
    controller with every current key (from the run's ssh-agent, O(login_concurrency) at a time), records the
    confirmations in Vault with check-and-set, and calls the batch module once more for the tenants whose
    fallback key goes.
  - A tenant that fails (Vault read refused, a bad record, an account of another tenant, a login refused, a
    host that cannot be reached) is reported in RV(failures) with its stage and one line; its previous keys
    stay valid and the host's other tenants go on. The task itself fails only on bad options.
  - A role whose host already holds a newer serial (another run wrote it) is left to that run, and a key that
    another run rotated after this run loaded its keys is loaded from Vault and verified here; both are said in
    one line each in RV(superseded).
  - Returns the audit events (RV(audit_events), for M(penguinmails.vps.audit_event) O(penguinmails.vps.audit_event#module:events))
    and the notices to send (RV(notices)); neither holds a secret.
options:
  jobs:
    description:
      - The tenants of this host, as the playbooks' C(tasks/ssh_targets.yml) places them - C(tenant_id), C(roles)
        (V(admin), V(tenant)), C(rotated_roles) (the roles whose key this run changed in Vault), C(address) and
        C(connection) (from M(penguinmails.vps.ssh_agent) - C(account), C(identity_files), C(fingerprints),
        C(known_hosts)).
    type: list
    elements: dict
    required: true
  agent:
    description:
      - The run's ssh-agent (the fact C(penguinmails_ssh_agent) of M(penguinmails.vps.ssh_agent)). Defaults to
        that fact of C(localhost).
    type: dict
    default: {}
  mount:
    description:
      - KV v2 mount of C(<tenant>/admin_ssh), C(<tenant>/tenant_ssh) and C(<tenant>/record).
    type: str
    default: vps
  admin_user:
    description:
      - The admin account on the host.
    type: str
    default: root
  tenant_shell:
    description:
      - Shell of a tenant account that is created.
    type: str
    default: /bin/bash
  marker_prefix:
    description:
      - Managed lines carry the comment C(<prefix>:<tenant>:<role>).
    type: str
    default: penguinmails
  exclusive:
    description:
      - Remove every unmanaged key of the accounts.
    type: bool
    default: false
  fallback:
    description:
      - Install the fallback key (the last key the host confirmed) while the current admin key is unconfirmed.
        V(false) for a brand-new VPS after a compromise, where the fallback is the exposed key.
    type: bool
    default: true
  allow_no_admin_key:
    description:
      - Allow a tenant whose admin key is missing or revoked in Vault (the admin account would have no managed key).
    type: bool
    default: false
  ssh_auth:
    description:
      - How the admin account is reached - V(record) follows C(ssh_auth) of each tenant record; V(keys),
        V(certificates), V(both) for every tenant.
    type: str
    choices: [record, keys, certificates, both]
    default: record
  admin_principal:
    description:
      - The principal of the automation's admin certificates (certificate mode).
    type: str
    default: penguinmails-admin
  tenant_certificates:
    description:
      - In certificate mode let the tenant log in to its own account with its own certificates too.
    type: bool
    default: true
  ca_dir:
    description:
      - Directory of the certificate mode files on the host (C(principals/) below it).
    type: str
    default: /etc/ssh/penguinmails
  verify:
    description:
      - Log in with every current key and record the confirmations. V(false) installs only.
    type: bool
    default: true
  login_concurrency:
    description:
      - How many logins run at once.
    type: int
    default: 8
  login_timeout:
    description:
      - Seconds for the TCP connection of a login (the whole login may take three times as long).
    type: int
    default: 10
  audit_action:
    description:
      - The action of the audit events returned (V(ssh_key_rotated), V(ssh_key_regenerated), ...).
    type: str
    default: ssh_key_rotated
  mode:
    description:
      - The C(mode) detail of the audit events (V(auto) for a scheduled run, V(manual)).
    type: str
    default: manual
extends_documentation_fragment:
  - penguinmails.vps.vault
  - penguinmails.vps.attributes
  - penguinmails.vps.attributes.action
  - penguinmails.vps.attributes.action_group
attributes:
  check_mode:
    support: full
    details: Reports per tenant what the host would get; no login, no Vault write, nothing written on the host.
  diff_mode:
    support: full
    details: One diff per file of the host that changes.
  action:
    details: The Vault work and the logins run on the controller; the host runs M(penguinmails.vps.authorized_key_batch).
notes:
  - Needs C(ssh) on the controller and the run's ssh-agent (M(penguinmails.vps.ssh_agent) O(penguinmails.vps.ssh_agent#module:state=loaded)).
seealso:
  - module: penguinmails.vps.authorized_key_batch
  - module: penguinmails.vps.ssh_agent
  - module: penguinmails.vps.vault_ssh_keypair
"""

EXAMPLES = r"""
- name: Install, verify and confirm every tenant's keys of this host
  penguinmails.vps.ssh_host_keys:
    jobs: "{{ penguinmails_ssh_jobs }}"
    audit_action: ssh_key_rotated
    mode: auto
  register: host_step

- name: Audit every tenant of the host in one task
  penguinmails.vps.audit_event:
    events: "{{ host_step.audit_events }}"
"""

RETURN = r"""
tenants:
  description:
    - Per tenant id - C(ok), C(stage) and C(error) (when it failed), C(mode) (V(keys), V(certificates), V(both)),
      C(account), per role C(fingerprint), C(vault_changed), C(host_changed), C(stale), C(verified),
      C(confirmed), C(superseded), C(host) (what M(penguinmails.vps.authorized_key_batch) did - C(user), C(path),
      C(user_created), C(added), C(removed), C(updated), C(expiring), C(stale), C(serial)), and C(keys) - per role what the host was given (the public view of
      M(penguinmails.vps.vault_ssh_keypair_info) - C(host_keys), C(grace_keys), C(revoked_keys), C(version), ...).
  returned: always
  type: dict
  sample:
    acme:
      ok: true
      stage: ""
      error: ""
      mode: keys
      account: tenant-acme
      roles:
        admin: {fingerprint: "SHA256:...", vault_changed: true, host_changed: true, stale: false, verified: true,
                confirmed: true, superseded: ""}
failures:
  description: The tenants that failed, each C({tenant_id, host, error}) with the stage in C(error).
  returned: always
  type: list
  elements: dict
  sample: [{"tenant_id": "beta", "host": "vps-7", "error": "Log in from the controller with every current key: admin key: ..."}]
audit_events:
  description: The events of this host's tenants, for M(penguinmails.vps.audit_event) O(penguinmails.vps.audit_event#module:events).
  returned: always
  type: list
  elements: dict
  sample: [{"action": "ssh_key_rotated", "tenant_id": "acme", "details": {"role": "admin", "mode": "auto"}}]
notices:
  description: The tenants to tell that their own key changed - C(tenant_id), C(key) (public view), C(account), C(address).
  returned: always
  type: list
  elements: dict
  sample: []
answers:
  description:
    - The answer to each rotation this run made, as the specification gives it - the new fingerprint and how long the
      old key stays valid (its grace), one line per tenant and role.
  returned: always
  type: list
  elements: str
  sample: ["rotated acme tenant key: new fingerprint SHA256:...; Old key valid for 24 hours (until 2026-12-06T18:00:00Z)"]
superseded:
  description: One line per key that another run changed while this one worked (which key, what stands, rerun or not).
  returned: always
  type: list
  elements: str
  sample: ["acme/admin: another run rotated it to SHA256:... while this run verified it; that run installs and confirms its key, no rerun needed"]
host_unreachable:
  description: Whether the host could not be reached (every tenant of it failed).
  returned: always
  type: bool
  sample: false
"""
