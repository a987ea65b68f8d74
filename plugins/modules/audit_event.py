#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: audit_event
short_description: Record an audit event (key download, rotation, revocation, migration, ...)
version_added: 0.1.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - Marks a task as an audit point. The task returns the event in RV(audit_event). With the callback
    plugin P(penguinmails.vps.audit#callback) enabled, the action writes the event to the callback's
    sinks (the hash-chained audit file, syslog, webhook; critical events also to the alert webhook and
    alert email) before the task completes, returns where it went in RV(audit_delivery), and fails when
    no sink accepted it (the callback's C(on_event_lost), default V(fail)) or, with the callback's
    C(on_sink_failure=fail), when any sink refused it.
  - The event has the specification's fields C(timestamp) (ISO 8601 UTC, milliseconds), C(action), C(tenantId),
    C(userId), C(ipAddress) (where the action came from), C(userAgent) and C(status), plus C(severity) and
    C(details) (snake_case names; camelCase names given are written in their snake_case form). Its JSON Schema is
    docs/audit-event.schema.json.
  - Runs on the controller (an action plugin); it never connects to the host, so it works in a
    C(rescue) block after the host became unreachable.
  - O(details) keeps only the fields its action declares (the allow-list C(ACTIONS) in
    C(plugins/module_utils/audit_format.py), listed in docs/audit.md; an undeclared action keeps the generic
    fields C(role), C(mode), C(trigger), C(host), C(vps_ip), C(reason), C(source), C(error), C(failed_task),
    C(count), C(forced), C(secret_type)); the others are dropped and counted in C(dropped_fields).
  - What is kept is redacted before it is returned, so private keys, passwords and tokens never reach
    the output or the audit sinks. Mapping keys and values are both redacted - values under keys that
    look like C(password), C(pw), C(token), C(secret), C(private_key), C(api_key), C(value) become
    C(********), and so do PEM and OpenSSH private keys, Vault tokens, JWTs, C(pw=...) and
    C(user:password@), hex keys and random-looking words inside any string.
  - "Do not set C(no_log: true) on this task: Ansible hides no_log results from callbacks, so the
    callback can only record that an audit event was hidden (action C(audit_event_hidden))."
options:
  action:
    description:
      - The event name, matching C(^[a-z][a-z0-9_]{2,63}$).
      - "The collection emits V(ssh_key_download), V(ssh_key_rotated), V(ssh_key_revoked),
        V(ssh_key_regenerated), V(vps_migration_completed), V(vps_migration_failed),
        V(smtp_credentials_recovered), V(smtp_password_rotated), V(smtp_password_applied),
        V(dkim_key_rotated), V(bulk_rotation_completed), V(ssh_login_failed) and V(vault_write_burst)."
      - One of O(action) and O(events) is required.
    type: str
  status:
    description:
      - Outcome of the audited operation.
    type: str
    choices: [success, failure]
    default: success
  tenant_id:
    description:
      - The tenant the event is about.
    type: str
  user_id:
    description:
      - Who performed the operation.
      - Defaults to the AWX/AAP user (C(awx_user_name), C(tower_user_name)), then the
        E(PENGUINMAILS_AUDIT_USER) environment variable, then the controller's login user.
    type: str
  ip_address:
    description:
      - Where the action came from (the specification's C(ipAddress)).
      - Defaults to the operator's end of the SSH session the run was started in (E(SSH_CLIENT)), else null.
    type: str
  vps_ip:
    description:
      - The VPS the action was on, kept in C(details.vps_ip).
      - Defaults to the host's C(ansible_host) when that is an IP address.
    type: str
  details:
    description:
      - Event-specific data, for example C(mode) (V(auto) or V(manual)) and C(role) for
        V(ssh_key_rotated), or C(rotated_count) and C(failed_count) for V(bulk_rotation_completed).
      - Only the fields the action declares are kept; redacted before it is returned or written.
    type: dict
    default: {}
  severity:
    description:
      - V(critical) events also go to the alert webhook and alert email.
      - "Default: V(critical) for V(vps_migration_failed), V(vault_write_burst) and for any
        O(status=failure), V(warning) for V(ssh_login_failed), V(info) otherwise."
    type: str
    choices: [info, warning, critical]
  redact_values:
    description:
      - Secret values to mask wherever they appear in O(details), for secrets that have no
        recognisable shape (for example a short password inside a command's output).
      - Random-looking words of 12 or more letters and digits are masked anyway, as generated
        passwords and tokens (see docs/audit.md).
    type: list
    elements: str
    default: []
  events:
    description:
      - Several events in one task, for example every tenant of a host in a fleet run (the
        RV(penguinmails.vps.ssh_host_keys#module:audit_events) of M(penguinmails.vps.ssh_host_keys)). Each item has the
        options of a single event and their defaults; the events are returned in RV(audit_events), in order.
      - Every event is checked before any is delivered - an invalid one fails the task naming its index and the rule,
        and none of the list is written. With the callback each event is delivered like a single one, all of them even
        when one fails; the task then fails with the first verdict, prefixed with C(events[N]) (the index of its event).
      - An empty list is a no-op. Excludes O(action).
    type: list
    elements: dict
    suboptions:
      action:
        description: The event name.
        type: str
        required: true
      status:
        description: V(success) or V(failure).
        type: str
        choices: [success, failure]
        default: success
      tenant_id:
        description: The tenant the event is about.
        type: str
      user_id:
        description: Who performed the operation (default as O(user_id)).
        type: str
      ip_address:
        description: Where the action came from (default as O(ip_address)).
        type: str
      vps_ip:
        description: The VPS the action was on (default as O(vps_ip)).
        type: str
      details:
        description: Event-specific data, as O(details).
        type: dict
        default: {}
      severity:
        description: As O(severity).
        type: str
        choices: [info, warning, critical]
      redact_values:
        description: As O(redact_values).
        type: list
        elements: str
        default: []
extends_documentation_fragment:
  - penguinmails.vps.attributes
  - penguinmails.vps.attributes.action
attributes:
  check_mode:
    support: full
    details: The event is recorded in check mode too, marked with C(context.check_mode).
  diff_mode:
    support: none
notes:
  - Tag audit tasks with C(always) so that C(--tags) runs still record them.
  - Modules may also return an C(audit_event) mapping themselves (see docs/audit.md); the callback
    treats it the same way.
seealso:
  - plugin: penguinmails.vps.audit
    plugin_type: callback
"""

EXAMPLES = r"""
- name: Audit every tenant of a host in one task (the fleet host step's events)
  penguinmails.vps.audit_event:
    events: "{{ host_step.audit_events }}"

- name: Audit a manual rotation of the admin key
  penguinmails.vps.audit_event:
    action: ssh_key_rotated
    tenant_id: "{{ tenant_id }}"
    details:
      mode: manual
      role: admin
      fingerprint: "{{ rotated.fingerprint }}"
  tags: [always]

- name: Migrate, and audit the outcome either way
  block:
    - name: Run the migration steps
      ansible.builtin.include_tasks: migrate_steps.yml
    - name: Audit the completed migration
      penguinmails.vps.audit_event:
        action: vps_migration_completed
        tenant_id: "{{ tenant_id }}"
        vps_ip: "{{ new_vps_ip }}"
        details:
          reason: "{{ migration_reason }}"
  rescue:
    - name: Audit the failed migration (critical, alerts go out)
      penguinmails.vps.audit_event:
        action: vps_migration_failed
        status: failure
        tenant_id: "{{ tenant_id }}"
        details:
          failed_task: "{{ ansible_failed_task.name }}"
          error: "{{ ansible_failed_result.msg | default('') }}"

- name: Audit a bulk rotation
  penguinmails.vps.audit_event:
    action: bulk_rotation_completed
    details:
      rotated_count: "{{ rotated_tenants | length }}"
      failed_count: "{{ failed_tenants | length }}"
"""

RETURN = r"""
audit_events:
  description:
    - With O(events), every event, in order, each as RV(audit_event) describes it.
  returned: when O(events) is given
  type: list
  elements: dict
  sample: [{"action": "ssh_key_rotated", "tenantId": "acme", "status": "success", "severity": "info", "details": {"role": "admin"}}]
audit_event:
  description:
    - The event, redacted (with O(events), the last one; absent for an empty list).
    - When the audit callback is enabled, the event as written - with C(context), C(chain_id), C(seq),
      C(prev_hash), C(hash_alg) and C(hash) when the file took it.
  returned: always, except with an empty O(events)
  type: dict
  contains:
    timestamp:
      description: ISO 8601 UTC time of the event.
      type: str
      sample: "2026-11-23T10:44:12.123Z"
    action:
      description: The event name.
      type: str
      sample: ssh_key_rotated
    tenantId:
      description: The tenant, or null.
      type: str
      sample: t1
    userId:
      description: Who performed the operation.
      type: str
      sample: ops
    ipAddress:
      description: Where the action came from, or null.
      type: str
      sample: 203.0.113.7
    userAgent:
      description: The client, C(ansible-core/<version> penguinmails.vps/<version>) and C(awx-job/<id>) in an AWX job.
      type: str
      sample: ansible-core/2.19.4 penguinmails.vps/0.2.0 awx-job/42
    status:
      description: V(success) or V(failure).
      type: str
      sample: success
    severity:
      description: V(info), V(warning) or V(critical).
      type: str
      sample: info
    details:
      description: The allowed, redacted details, snake_case (C(dropped_fields) counts the fields dropped).
      type: dict
      sample: {"mode": "manual", "role": "admin"}
    context:
      description: Where the event happened (C(playbook), C(play), C(task), C(host), C(check_mode), C(awx_job_id) in AWX).
      returned: when the audit callback is enabled
      type: dict
      sample: {"playbook": "rotate.yml", "play": "Rotate", "task": "Audit", "host": "localhost", "check_mode": false}
    chain_id:
      description: The chain of the audit file the event was written to.
      returned: when the audit callback is enabled and its file took the event
      type: str
      sample: c25764efecc264b5e
    seq:
      description: The event's number in that chain.
      returned: when the audit callback is enabled and its file took the event
      type: int
      sample: 12
    prev_hash:
      description: The hash of the event before it in the chain (64 zeros for the first).
      returned: when the audit callback is enabled and its file took the event
      type: str
    hash_alg:
      description: V(sha256), or V(hmac-sha256) with the callback's C(chain_key).
      returned: when the audit callback is enabled and its file took the event
      type: str
      sample: sha256
    hash:
      description: The event's hash, which the next event links to.
      returned: when the audit callback is enabled and its file took the event
      type: str
audit_delivery:
  description: Where the event went (with O(events), the last one).
  returned: when the audit callback is enabled, the task is not C(no_log) and there is an event
  type: dict
  contains:
    accepted:
      description: Sinks that took the event (V(file), V(syslog), V(webhook), V(alert webhook), V(alert email)).
      type: list
      elements: str
      sample: ["file", "syslog"]
    failed:
      description: Sinks that refused it (their reasons are in the task's warnings).
      type: list
      elements: str
      sample: []
"""

import getpass
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.penguinmails.vps.plugins.module_utils.audit_format import (
    AUDIT_EVENT_MUTUALLY_EXCLUSIVE,
    AUDIT_EVENT_REQUIRED_ONE_OF,
    AuditError,
    audit_event_argument_spec,
    build_event,
    origin_address,
    user_agent,
)


def main():
    # Normally the action plugin of the same name runs instead, on the controller; this module is
    # the fallback when the task is sent to a host, and the source of the documentation.
    module = AnsibleModule(argument_spec=audit_event_argument_spec(), supports_check_mode=True,
                           mutually_exclusive=AUDIT_EVENT_MUTUALLY_EXCLUSIVE, required_one_of=AUDIT_EVENT_REQUIRED_ONE_OF)
    params = module.params
    many = params["events"] is not None
    events = []
    for index, item in enumerate(params["events"] if many else [params]):
        try:
            events.append(build_event(
                action=item["action"],
                status=item["status"],
                tenant_id=item["tenant_id"],
                user_id=item["user_id"] or os.environ.get("PENGUINMAILS_AUDIT_USER") or getpass.getuser(),
                ip_address=item["ip_address"] or origin_address(),
                vps_ip=item["vps_ip"],
                agent=user_agent(os.environ.get("JOB_ID")),
                details=item["details"],
                severity=item["severity"],
                no_log_values=item["redact_values"],
            ))
        except AuditError as exc:
            module.fail_json(msg=("events[%d]: %s" % (index, exc)) if many else str(exc))
    if not many:
        module.exit_json(changed=False, audit_event=events[0])
    module.exit_json(changed=False, audit_events=events, **(dict(audit_event=events[-1]) if events else {}))


if __name__ == "__main__":
    main()
