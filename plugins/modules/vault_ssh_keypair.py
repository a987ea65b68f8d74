#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vault_ssh_keypair
short_description: Create, rotate, revoke, regenerate or delete a tenant's SSH key pair in Vault
version_added: 0.1.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - Manages the SSH key pair of one tenant and role at C(<mount>/<tenant_id>/<role>_ssh) in a KV v2
    mount of Vault or OpenBao, with the fields C(private_key) (OpenSSH format), C(public_key),
    C(fingerprint) (C(SHA256:...) as C(ssh-keygen -lf) prints it), C(key_type), C(created_at),
    C(last_rotated), C(rotation_policy), C(state), C(grace_keys) (with C(grace_public_key), C(grace_fingerprint) and
    C(grace_until) for its newest entry) and C(downloaded_at).
  - The key is generated on the machine that runs the module (normally the controller) and written
    straight to Vault; it is never written to disk.
  - Every write is a check-and-set on the version that was read (V(0) when the secret does not exist
    yet). Of two concurrent runs on the same key exactly one wins; the other fails with a
    check-and-set conflict and stores nothing. Replaced versions stay in the KV history.
  - A rotation keeps the previous public key as a grace key for O(grace_hours), so hosts can accept both
    keys during the change (see the role penguinmails.vps.ssh_access and the module
    penguinmails.vps.authorized_key_rotate). Every superseded key keeps its own grace, however many rotations
    follow within it. C(grace_keys) lists them all, newest first, each C({public_key, fingerprint, until}); ended
    ones are pruned and at most 20 are kept. C(grace_public_key), C(grace_fingerprint) and C(grace_until)
    repeat the newest for older readers.
  - The reachability invariant (docs/ssh-key-lifecycle.md). A new V(admin) key is unconfirmed until a
    login with it succeeded on the host and O(state=confirmed) recorded that (C(installed_fingerprint)).
    Until then the record keeps the last key the host confirmed as C(fallback_private_key) and
    C(fallback_public_key), and further rotations or regenerations keep that same fallback, so the
    current version of the record always holds a key the host accepts, whatever was interrupted.
  - A rotation or regeneration that loses its check-and-set write to another run that replaced the key
    in the meantime does not fail; the other run's key stands (RV(action=none)), and RV(msg) says so in one
    line (which key, the fingerprint that stands, no rerun needed).
options:
  tenant_id:
    description:
      - The tenant id, matching C(^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$).
    type: str
    required: true
  role:
    description:
      - Which key of the tenant, V(admin) (the operators' key) or V(tenant) (the tenant's own key).
    type: str
    choices: [admin, tenant]
    required: true
  state:
    description:
      - V(present) creates the key if there is none and otherwise changes nothing (it does not
        rotate, and it does not bring back a revoked key).
      - V(rotated) creates a missing key, and replaces the key when it is due (see O(rotation_days)) or
        when O(force=true). The old public key becomes a grace key. A revoked key is not rotated; use
        V(regenerated).
      - V(revoked) marks the key C(revoked), removes its private key and every grace key from the latest
        version (older versions keep them) and returns the public keys hosts must drop (all of them).
      - V(regenerated) replaces the key at once, without a grace key, and makes it active and
        downloadable again (after a revocation, a compromise or a lost key). Always changes.
      - V(absent) soft-deletes the latest version; the history stays and can be undeleted.
      - V(confirmed) records that the host accepted the current key (a login with it succeeded); it sets
        C(installed_fingerprint) and drops the fallback key. With O(fingerprint), nothing changes when
        the current key is another one (it was replaced after the host was updated).
      - A new tenant id that differs from an existing one only by case is refused (one tenant).
    type: str
    choices: [present, rotated, revoked, absent, regenerated, confirmed]
    default: present
  key_type:
    description:
      - Type of a new key. By default a rotated or regenerated key keeps the type of the key it
        replaces, and a new key is V(rsa).
    type: str
    choices: [rsa, ed25519]
  fingerprint:
    description:
      - With O(state=confirmed), the fingerprint of the key that logged in.
    type: str
  bits:
    description:
      - Size of a new RSA key.
    type: int
    default: 4096
  rotation_days:
    description:
      - A key is due for rotation at most this many days after its last rotation. Stored as C(rotation_policy).
      - Due dates are spread so that keys rotated on the same day do not all come due on one day again - a
        key is due a stable number of days early, from 0 to 10% of the period (whole days; 0 to 8 days of
        90), derived from the SHA-256 of C(<tenant_id>/<role>). Never later than O(rotation_days); periods
        under 20 days are not spread. See RV(next_rotation).
    type: int
    default: 90
  force:
    description:
      - With O(state=rotated), rotate even when the key is not due.
    type: bool
    default: false
  grace_hours:
    description:
      - After a rotation the old public key stays valid (a grace key) for this many hours.
        V(0) gives it no grace; earlier grace keys keep their own.
    type: int
    default: 24
  mount:
    description:
      - The KV v2 mount that holds the tenants' SSH keys.
    type: str
    default: vps
  return_private_key:
    description:
      - Also return the private key of the resulting key (for example to verify a login with it).
      - The task must set C(no_log=true); the module refuses otherwise, so the key is never shown
        in any output. Write it to disk only with mode 0600.
    type: bool
    default: false
  tenant_download:
    description:
      - When the tenant key is created, rotated or regenerated, offer it to the tenant for a self-service download,
        once - a single-use Vault wrapping token of exactly the new version, valid for O(grace_hours) and at least
        24 hours, kept at C(<mount>/<tenant_id>/tenant_ssh_download), which only that tenant's own login may read.
        The tenant takes it with M(penguinmails.vps.vault_tenant_key_download). See RV(download_offer_expires_at).
      - A revocation (or O(state=absent)) of the tenant key withdraws a waiting offer (its token is used up).
      - An offer that cannot be made is a warning; the key change stands. No effect on the admin key.
    type: bool
    default: true
    version_added: 0.2.0
extends_documentation_fragment:
  - penguinmails.vps.vault
  - penguinmails.vps.attributes
  - penguinmails.vps.attributes.action_group
attributes:
  check_mode:
    support: full
    details: Reports what would change (RV(action)); generates nothing and writes nothing. The key fields returned are those of the key stored now.
  diff_mode:
    support: full
    details: Shows the fingerprints and state before and after, never key material.
notes:
  - Needs the C(cryptography) Python library on the machine that runs it.
  - With O(state=absent) the token needs the C(delete) capability, which the C(automation) policy of
    the role penguinmails.vps.vault_setup does not grant.
seealso:
  - module: penguinmails.vps.vault_ssh_key_download
  - module: penguinmails.vps.vault_tenant_key_download
  - module: penguinmails.vps.authorized_key_rotate
"""

EXAMPLES = r"""
- name: Make sure tenant acme has an admin key
  penguinmails.vps.vault_ssh_keypair:
    tenant_id: acme
    role: admin

- name: Rotate the tenant key when it is 90 days old (run daily)
  penguinmails.vps.vault_ssh_keypair:
    tenant_id: acme
    role: tenant
    state: rotated
  register: key

- name: Rotate now, Ed25519, with a short grace period
  penguinmails.vps.vault_ssh_keypair:
    tenant_id: acme
    role: tenant
    state: rotated
    force: true
    key_type: ed25519
    grace_hours: 1

- name: Revoke the tenant key at once
  penguinmails.vps.vault_ssh_keypair:
    tenant_id: acme
    role: tenant
    state: revoked
"""

RETURN = r"""
public_key:
  description: The current public key (an C(authorized_keys) line). Absent when there is no key.
  returned: when a key exists after the run
  type: str
  sample: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI... penguinmails-acme-tenant
fingerprint:
  description: SHA256 fingerprint of RV(public_key), as C(ssh-keygen -lf) prints it.
  returned: when a key exists after the run
  type: str
  sample: SHA256:4mTOk1cvyjAT0xQXTxxbTrrC1i2Bwdf4XBJzHkLb0rA
key_type:
  description: Type of the current key.
  returned: when a key exists after the run
  type: str
  sample: rsa
key_state:
  description: C(active) or C(revoked).
  returned: when a key exists after the run
  type: str
  sample: active
grace_public_key:
  description: The most recently superseded public key (the newest of RV(grace_keys)), valid until RV(grace_until).
  returned: when the key has a grace key
  type: str
grace_until:
  description: End of the grace period of RV(grace_public_key) (ISO 8601, UTC).
  returned: when the key has a grace key
  type: str
  sample: "2026-11-24T12:00:00Z"
grace_keys:
  description:
    - Every superseded key still in its grace period, newest first, each with its own end. An admin key's
      fallback key may be among them; hosts hold it without an expiry until the current key is confirmed.
  returned: when the key has a grace key
  type: list
  elements: dict
  contains:
    public_key:
      description: The superseded public key.
      returned: always
      type: str
    fingerprint:
      description: Its SHA256 fingerprint.
      returned: always
      type: str
    until:
      description: End of its grace period (ISO 8601, UTC).
      returned: always
      type: str
      sample: "2026-11-24T12:00:00Z"
next_rotation:
  description:
    - When the key is due (ISO 8601, UTC) - its last rotation plus the period of its C(rotation_policy), less the
      tenant's stable offset (see O(rotation_days)).
  returned: when an active key exists after the run
  type: str
  sample: "2027-02-14T12:00:00Z"
fallback_public_key:
  description: The last key the host confirmed, kept while the current admin key is not confirmed.
  returned: when the key has a fallback key
  type: str
confirmed:
  description: Whether the host confirmed the current key (C(installed_fingerprint) equals RV(fingerprint)).
  returned: when a key exists after the run
  type: bool
host_keys:
  description:
    - The public keys that must be valid on the host now, without an expiry (the current key and, while
      it is not confirmed, the fallback key). Empty for a revoked key.
  returned: when a key exists after the run
  type: list
  elements: str
grace_expiry_time:
  description: RV(grace_until) in the C(YYYYMMDDHHMMZ) form of the C(authorized_keys) option C(expiry-time).
  returned: when the key has a grace key
  type: str
  sample: 202611241200Z
last_rotated:
  description: Time of the last rotation (ISO 8601, UTC).
  returned: when a key exists after the run
  type: str
rotated:
  description: Whether a new key replaced an existing one in this run (rotation or regeneration).
  returned: always
  type: bool
action:
  description: What was done, or would be done in check mode.
  returned: always
  type: str
  choices: [none, created, rotated, regenerated, revoked, deleted, confirmed]
revoked_public_keys:
  description: The public keys that no longer give access after a revocation, regeneration or deletion.
  returned: always
  type: list
  elements: str
version:
  description: The KV version of the secret after the run (none after a deletion or in check mode).
  returned: always
  type: int
download_offer_expires_at:
  description:
    - Until when the tenant can take the key it was offered for a self-service download (ISO 8601, UTC).
  returned: when O(tenant_download) offered a tenant key that was created, rotated or regenerated (not in check mode)
  type: str
  sample: "2026-11-24T12:00:00Z"
  version_added: 0.2.0
path:
  description: The secret's path, C(<mount>/<tenant_id>/<role>_ssh).
  returned: always
  type: str
  sample: vps/acme/tenant_ssh
msg:
  description:
    - Why nothing changed, when that is worth saying (not due, revoked, missing), in one line.
    - When another run replaced the key first - C(<tenant>/<role> key replaced concurrently by another run - that
      run's key SHA256:... stands ...; no rerun needed).
  returned: when there is something to say
  type: str
private_key:
  description: The private key (OpenSSH format); the task runs with C(no_log=true).
  returned: when O(return_private_key=true) and a key exists
  type: str
"""

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.penguinmails.vps.plugins.module_utils import keypair_store, ssh_keys, tenant_download
from ansible_collections.penguinmails.vps.plugins.module_utils.validators import ValidationError
from ansible_collections.penguinmails.vps.plugins.module_utils.vault_client import (
    VaultError,
    get_client,
    vault_module,
)


def result_of(plan, store, return_private_key, check_mode=False):
    # In check mode nothing was generated: show the key stored now, never a discarded one.
    data = (plan.before if check_mode else plan.after) or {}
    result = dict(
        changed=plan.changed,
        action=plan.action,
        rotated=plan.action in ("rotated", "regenerated") and plan.before is not None,
        revoked_public_keys=plan.revoked_keys if plan.action in ("revoked", "regenerated", "deleted") else [],
        version=plan.version,
        path=store.where,
    )
    for field in ("public_key", "fingerprint", "key_type", "grace_public_key", "grace_until", "last_rotated",
                  "fallback_public_key"):
        if data.get(field):
            result[field] = data[field]
    if data.get("state"):
        result["key_state"] = data["state"]
    if data.get("public_key"):
        result["confirmed"] = keypair_store.is_confirmed(data)
        result["host_keys"] = keypair_store.host_keys(data)
    grace = keypair_store.grace_keys(data)
    if grace:
        result["grace_keys"] = grace
        result["grace_public_key"], result["grace_until"] = grace[0]["public_key"], grace[0]["until"]
        result["grace_expiry_time"] = keypair_store.ssh_expiry_time(keypair_store.parse_time(grace[0]["until"]))
    due = store.next_rotation(data)
    if due:
        result["next_rotation"] = due
    if plan.message:
        result["msg"] = plan.message
    if return_private_key and data.get("private_key"):
        result["private_key"] = data["private_key"]
    return result


def hide_private_keys(module, plan, returning, extra=()):
    """Every private key seen goes into no_log_values, but the one returned on purpose (no_log task)."""
    returned = (plan.after or {}).get("private_key") if returning else None
    secrets = list(extra)
    for data in (plan.before, plan.after):
        for field in keypair_store.PRIVATE_FIELDS:
            secrets.append((data or {}).get(field))
    for secret in secrets:
        if secret and secret != returned:
            module.no_log_values.add(secret)


def diff_of(plan):
    def show(data):
        if not data:
            return "absent\n"
        lines = ["state: %s" % data.get("state", "active"), "fingerprint: %s" % (data.get("fingerprint") or "(a new key)"),
                 "confirmed by the host: %s" % ("yes" if keypair_store.is_confirmed(data) else "no")]
        if data.get("fallback_fingerprint"):
            lines.append("fallback_fingerprint: %s" % data["fallback_fingerprint"])
        for entry in keypair_store.grace_keys(data):
            lines.append("grace_fingerprint: %s (until %s)" % (entry["fingerprint"], entry["until"]))
        return "\n".join(lines) + "\n"

    return dict(before=show(plan.before), after=show(plan.after))


def main():
    module = vault_module(
        dict(
            tenant_id=dict(type="str", required=True),
            role=dict(type="str", required=True, choices=["admin", "tenant"]),
            state=dict(type="str", default="present", choices=list(keypair_store.STATES)),
            key_type=dict(type="str", choices=list(ssh_keys.KEY_TYPES)),
            fingerprint=dict(type="str"),
            bits=dict(type="int", default=4096),
            rotation_days=dict(type="int", default=90),
            force=dict(type="bool", default=False),
            grace_hours=dict(type="int", default=24),
            mount=dict(type="str", default="vps"),
            return_private_key=dict(type="bool", default=False),
            tenant_download=dict(type="bool", default=True),
        )
    )
    if not ssh_keys.HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib("cryptography"), exception=str(ssh_keys.CRYPTOGRAPHY_IMPORT_ERROR))
    p = module.params
    if p["return_private_key"] and not module.no_log:
        module.fail_json(msg="return_private_key: true needs no_log: true on the task, so that the key is never shown")
    try:
        client = get_client(p)
        keygen = None if not module.check_mode else keypair_store.placeholder_keygen
        store = keypair_store.KeypairStore(client, p["tenant_id"], p["role"], mount=p["mount"], keygen=keygen)
        plan = store.plan(p["state"], key_type=p["key_type"], bits=p["bits"], rotation_days=p["rotation_days"],
                          grace_hours=p["grace_hours"], force=p["force"], fingerprint=p["fingerprint"])
        hide_private_keys(module, plan, p["return_private_key"] and not module.check_mode)
        if plan.changed and not module.check_mode:
            store.commit(plan)
            hide_private_keys(module, plan, p["return_private_key"], store.discarded)
        elif plan.changed:
            plan.version = None
    except (ValidationError, VaultError, ssh_keys.SSHKeyError, keypair_store.KeypairError) as exc:
        module.fail_json(msg=str(exc))
    offer = None
    if (p["tenant_download"] and p["role"] == "tenant" and not module.check_mode and plan.version
            and plan.action in ("created", "rotated", "regenerated")):
        try:
            offer = tenant_download.make_offer(client, store.tenant_id, plan.after, plan.version,
                                               tenant_download.offer_hours(p["grace_hours"]), mount=p["mount"])
        except VaultError as exc:
            module.warn("%s: no self-service download offered (%s); the operator's download_key still works" % (store.where, exc))
    if p["tenant_download"] and p["role"] == "tenant" and not module.check_mode and plan.action in ("revoked", "deleted"):
        try:
            tenant_download.revoke_offer(client, store.tenant_id, mount=p["mount"])
        except VaultError as exc:
            module.warn("%s: a waiting self-service download could not be withdrawn (%s)" % (store.where, exc))
    result = result_of(plan, store, p["return_private_key"] and not module.check_mode, module.check_mode)
    if offer:
        result["download_offer_expires_at"] = offer["expires_at"]
    if module._diff:
        result["diff"] = diff_of(plan)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
