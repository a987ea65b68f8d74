#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: tenant_secrets_info
short_description: Per-tenant status of SSH keys, SMTP credentials and DKIM keys in Vault
version_added: 0.1.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - For each tenant, reads C(vps/<tenant>/admin_ssh), C(vps/<tenant>/tenant_ssh),
    C(vps/<tenant>/record), C(smtp/<tenant>/admin) and lists C(dkim/<domain>) for the tenant's domain.
  - Reports per key the status V(active), V(expired) (rotation overdue by its C(rotation_policy),
    for example V(90_days)), V(revoked) or V(missing), its last rotation, next rotation, age, grace
    period and, for the tenant key, whether it was downloaded; whether SMTP admin credentials exist;
    and the DKIM selectors stored for the domain.
  - Tenants come sorted by urgency - V(critical) (admin key missing, revoked or expired, tenant key
    expired), then V(warning) (rotation due within O(due_soon_days), tenant key missing or revoked,
    SMTP or DKIM or record missing), then V(ok); within a level the soonest rotation first.
  - Never returns a private key, password or other secret value.
options:
  tenant_ids:
    description:
      - Tenants to report on. Default - every tenant below O(vps_mount).
    type: list
    elements: str
  due_soon_days:
    description:
      - A rotation due within this many days makes the tenant a V(warning).
    type: int
    default: 14
  now:
    description:
      - Evaluate as of this ISO 8601 time instead of the current time (for reports "as of" a date).
    type: str
  vps_mount:
    description:
      - KV v2 mount of the SSH keys and tenant records.
    type: str
    default: vps
  smtp_mount:
    description:
      - KV v2 mount of the SMTP credentials.
    type: str
    default: smtp
  dkim_mount:
    description:
      - KV v2 mount of the DKIM keys.
    type: str
    default: dkim
extends_documentation_fragment:
  - penguinmails.vps.vault
  - penguinmails.vps.attributes
  - penguinmails.vps.attributes.info_module
  - penguinmails.vps.attributes.action_group
seealso:
  - module: penguinmails.vps.vault_health_info
"""

EXAMPLES = r"""
- name: Status of every tenant
  penguinmails.vps.tenant_secrets_info:
  register: secrets_status

- name: Tenants whose keys need attention
  ansible.builtin.debug:
    msg: "{{ secrets_status.tenants | selectattr('urgency', 'ne', 'ok') | map(attribute='tenant_id') | list }}"

- name: Two tenants, as of the end of the month
  penguinmails.vps.tenant_secrets_info:
    tenant_ids: [t1, t2]
    now: "2026-11-30T23:59:59Z"
"""

RETURN = r"""
tenants:
  description: One entry per tenant, most urgent first.
  returned: success
  type: list
  elements: dict
  contains:
    tenant_id:
      description: The tenant.
      type: str
      sample: t1
    urgency:
      description: V(critical), V(warning) or V(ok).
      type: str
      sample: warning
    issues:
      description: Human-readable reasons for the urgency.
      type: list
      elements: str
      sample: ["tenant key rotation due in 3 day(s)"]
    domain:
      description: The tenant's domain from its record, or null.
      type: str
      sample: t1.example.com
    vps_ip:
      description: The VPS address from the record, or null.
      type: str
    migrated_at:
      description: Last migration time from the record, or null.
      type: str
    notified:
      description: Whether the record has a C(contact_email), so the tenant is told of rotations and migrations.
      type: bool
    keys:
      description:
        - C(admin) and C(tenant) key status - present, status, state, fingerprint, key_type,
          created_at, last_rotated, age_days, rotation_policy, rotation_days, next_rotation,
          days_until_rotation, grace_until, in_grace, revoked_at, issues; the tenant key also
          downloaded and downloaded_at.
      type: dict
      sample: {"admin": {"status": "active", "next_rotation": "2027-02-21T10:00:00Z", "days_until_rotation": 90}}
    smtp:
      description: C(present) - whether SMTP admin credentials with a password exist.
      type: dict
      sample: {"present": true}
    dkim:
      description: C(domain), C(selectors) stored for it, C(present).
      type: dict
      sample: {"domain": "t1.example.com", "selectors": ["dkim"], "present": true}
summary:
  description:
    - Counts - total, critical, warning, ok, keys_active, keys_expired, keys_revoked, keys_missing, and generated_at.
    - C(without_contact) - the tenants whose record has no C(contact_email) (never told of a rotation or a migration).
  returned: success
  type: dict
  sample: {"total": 3, "critical": 1, "warning": 1, "ok": 1, "generated_at": "2026-11-23T10:44:12Z", "without_contact": ["t3"]}
"""


from ansible_collections.penguinmails.vps.plugins.module_utils.key_health import parse_time, tenants_report
from ansible_collections.penguinmails.vps.plugins.module_utils.validators import ValidationError
from ansible_collections.penguinmails.vps.plugins.module_utils.vault_client import (
    VaultError,
    get_client,
    vault_module,
)


def main():
    module = vault_module(
        dict(
            tenant_ids=dict(type="list", elements="str"),
            due_soon_days=dict(type="int", default=14),
            now=dict(type="str"),
            vps_mount=dict(type="str", default="vps"),
            smtp_mount=dict(type="str", default="smtp"),
            dkim_mount=dict(type="str", default="dkim"),
        )
    )
    p = module.params
    now = None
    if p["now"]:
        now = parse_time(p["now"])
        if now is None:
            module.fail_json(msg="invalid now %r: use an ISO 8601 time such as 2026-11-30T23:59:59Z" % p["now"][:40])
    try:
        tenants, summary = tenants_report(
            get_client(p),
            tenant_ids=p["tenant_ids"],
            mounts={"vps": p["vps_mount"], "smtp": p["smtp_mount"], "dkim": p["dkim_mount"]},
            now=now,
            due_soon_days=p["due_soon_days"],
        )
    except (ValidationError, VaultError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, tenants=tenants, summary=summary)


if __name__ == "__main__":
    main()
