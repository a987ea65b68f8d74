# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Vault health and the per-tenant secrets status behind vault_health_info, tenant_secrets_info
and the key-health report.

Nothing here returns secret material: only presence, states, dates and public fingerprints.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import re

from ansible_collections.penguinmails.vps.plugins.module_utils.validators import (
    SSH_KEY_ROLES,
    ValidationError,
    dkim_domain_path,
    smtp_admin_path,
    ssh_key_path,
    tenant_record_path,
    validate_tenant_id,
)
from ansible_collections.penguinmails.vps.plugins.module_utils.timeutil import (  # noqa: F401 - re-exported
    format_time,
    parse_time,
    utcnow,
)
from ansible_collections.penguinmails.vps.plugins.module_utils.vault_client import VaultError
from ansible_collections.penguinmails.vps.plugins.module_utils import keypair_store

DEFAULT_ROTATION_DAYS = 90
URGENCY_RANK = {"critical": 2, "warning": 1, "ok": 0}
_POLICY_RE = re.compile(r"^(\d{1,4})_days$")


# ---------------------------------------------------------------------------------------
# Vault health
# ---------------------------------------------------------------------------------------
def _sys_get(client, path, what):
    """GET an unauthenticated or lightly authenticated sys endpoint through the client's retries."""
    url = client.url + path

    def call():
        response = client.session.get(url, verify=client.verify, timeout=client.settings["timeout"],
                                      headers={"X-Vault-Token": client.hvac.token or ""})
        if response.status_code >= 400:
            response.raise_for_status()
        return response.json()

    return client._call(call, what)  # pylint: disable=protected-access


def vault_health(client):
    """Health, seal, storage and HA facts of the node at the client's address."""
    health = client.health()
    info = {
        "initialized": bool(health.get("initialized")),
        "sealed": bool(health.get("sealed")),
        "standby": bool(health.get("standby")),
        "performance_standby": bool(health.get("performance_standby")),
        "version": health.get("version"),
        "cluster_name": health.get("cluster_name"),
        "cluster_id": health.get("cluster_id"),
        "server_time_utc": _epoch_iso(health.get("server_time_utc")),
        "replication_performance_mode": health.get("replication_performance_mode"),
        "replication_dr_mode": health.get("replication_dr_mode"),
        "seal_type": None,
        "storage_type": None,
        "unseal_threshold": None,
        "unseal_shares": None,
        "unseal_progress": None,
        "ha_enabled": None,
        "is_active": None,
        "leader_address": None,
        "ha_nodes": None,
    }
    try:
        seal = _sys_get(client, "/v1/sys/seal-status", "seal status")
        info.update(seal_type=seal.get("type"), storage_type=seal.get("storage_type"),
                    unseal_threshold=seal.get("t"), unseal_shares=seal.get("n"), unseal_progress=seal.get("progress"))
    except (VaultError, ValueError):
        pass
    try:
        leader = _sys_get(client, "/v1/sys/leader", "leader status")
        info["ha_enabled"] = bool(leader.get("ha_enabled"))
        info["is_active"] = bool(leader.get("is_self")) if info["ha_enabled"] else not info["standby"] and not info["sealed"]
        info["leader_address"] = leader.get("leader_address") or None
    except (VaultError, ValueError):
        pass
    if not info["sealed"]:
        try:
            nodes = (_sys_get(client, "/v1/sys/ha-status", "HA status").get("data") or {}).get("nodes")
            if isinstance(nodes, list):
                info["ha_nodes"] = [
                    dict((k, n.get(k)) for k in ("hostname", "api_address", "cluster_address", "active_node", "version"))
                    for n in nodes if isinstance(n, dict)
                ]
        except (VaultError, ValueError):
            pass  # ha-status needs a privileged token; the rest stays useful
    info["healthy"] = info["initialized"] and not info["sealed"]
    return info


def _epoch_iso(value):
    try:
        return format_time(datetime.datetime.fromtimestamp(int(value), datetime.timezone.utc))
    except (TypeError, ValueError, OverflowError, OSError):
        return None


# ---------------------------------------------------------------------------------------
# Rotation policy
# ---------------------------------------------------------------------------------------
def rotation_days(policy):
    """Days of a ``<n>_days`` rotation policy, or ``None`` when it is not of that form."""
    match = _POLICY_RE.match(str(policy or ""))
    return int(match.group(1)) if match else None


def _days_between(later, earlier):
    return int((later - earlier).total_seconds() // 86400)


# ---------------------------------------------------------------------------------------
# Tenant secrets status
# ---------------------------------------------------------------------------------------
def key_status(data, role, now, due_soon_days=14, default_days=DEFAULT_ROTATION_DAYS, tenant_id=None):
    """The status of one SSH key record (``None`` = missing); no secret field is returned.

    ``next_rotation`` is the planned moment, spread per tenant (keypair_store.due_offset_days, never later than the
    period); the key is ``expired`` only once the whole period has passed."""
    if data is None:
        return {"present": False, "status": "missing", "role": role, "issues": ["%s key missing" % role]}
    issues = []
    policy = data.get("rotation_policy") or "%d_days" % default_days
    days = rotation_days(policy)
    if days is None:
        issues.append("%s key: unknown rotation policy %r, %d days assumed" % (role, str(policy)[:40], default_days))
        days = default_days
    created = parse_time(data.get("created_at"))
    last = parse_time(data.get("last_rotated")) or created
    deadline = last + datetime.timedelta(days=days) if last else None
    offset = keypair_store.due_offset_days(tenant_id, role, days) if tenant_id else 0
    next_rotation = deadline - datetime.timedelta(days=offset) if deadline else None
    grace_until = parse_time(data.get("grace_until"))
    revoked = str(data.get("state") or "active") == "revoked"
    if revoked:
        status = "revoked"
    elif deadline is None or now >= deadline:
        status = "expired"
    else:
        status = "active"
    days_until = _days_between(next_rotation, now) if next_rotation else None
    if status == "revoked":
        issues.append("%s key revoked" % role)
    elif next_rotation is None:
        issues.append("%s key has no rotation date" % role)
    elif status == "expired":
        issues.append("%s key rotation overdue by %d day(s)" % (role, _days_between(now, deadline)))
    elif days_until is not None and days_until <= 0:
        issues.append("%s key rotation due now (the next scheduled run rotates it)" % role)
    elif days_until is not None and days_until < due_soon_days:
        issues.append("%s key rotation due in %d day(s)" % (role, days_until))
    result = {
        "present": True,
        "role": role,
        "status": status,
        "state": data.get("state") or "active",
        "fingerprint": data.get("fingerprint"),
        "key_type": data.get("key_type"),
        "created_at": format_time(created) if created else None,
        "last_rotated": format_time(last) if last else None,
        "age_days": _days_between(now, last) if last else None,
        "rotation_policy": policy,
        "rotation_days": days,
        "next_rotation": format_time(next_rotation) if next_rotation else None,
        "days_until_rotation": days_until,
        "grace_until": format_time(grace_until) if grace_until else None,
        "in_grace": bool(data.get("grace_public_key")) and grace_until is not None and now < grace_until,
        "revoked_at": data.get("revoked_at"),
        "issues": issues,
    }
    if role == "tenant":
        result["downloaded"] = bool(data.get("downloaded_at"))
        result["downloaded_at"] = data.get("downloaded_at")
    return result


def urgency(tenant):
    """``critical``, ``warning`` or ``ok`` for one tenant's status."""
    admin, tenant_key = tenant["keys"]["admin"], tenant["keys"]["tenant"]
    if admin["status"] in ("missing", "revoked", "expired") or tenant_key["status"] == "expired":
        return "critical"
    if tenant["issues"]:
        return "warning"
    return "ok"


def _sort_key(tenant):
    """Most urgent first: level, then no usable admin key, then the soonest (or most overdue) rotation."""
    days = [k["days_until_rotation"] for k in tenant["keys"].values()
            if k.get("days_until_rotation") is not None and k["status"] != "revoked"]
    soonest = min(days) if days else 10 ** 6
    if tenant["keys"]["admin"]["status"] in ("missing", "revoked"):
        soonest = -10 ** 6
    return (-URGENCY_RANK[tenant["urgency"]], soonest, tenant["tenant_id"])


def tenant_status(client, tenant_id, mounts, now, due_soon_days=14):
    validate_tenant_id(tenant_id)
    keys = {}
    for role in SSH_KEY_ROLES:
        secret = client.read_or_none(*ssh_key_path(tenant_id, role, mounts["vps"]))
        keys[role] = key_status(secret.data if secret else None, role, now, due_soon_days, tenant_id=tenant_id)
    issues = []
    for role in SSH_KEY_ROLES:
        issues.extend(keys[role]["issues"])
    record = client.read_or_none(*tenant_record_path(tenant_id, mounts["vps"]))
    record_data = record.data if record else {}
    domain = record_data.get("domain") or None
    smtp = client.read_or_none(*smtp_admin_path(tenant_id, mounts["smtp"]))
    smtp_present = bool(smtp and smtp.data.get("password"))
    if not smtp_present:
        issues.append("SMTP admin credentials missing")
    selectors = []
    if not record:
        issues.append("tenant record missing")
    elif not domain:
        issues.append("tenant record has no domain")
    else:
        try:
            selectors = [s.rstrip("/") for s in client.list(*dkim_domain_path(domain, mounts["dkim"]))]
        except ValidationError:
            issues.append("tenant record domain is not a valid domain")
        if domain and not selectors:
            issues.append("no DKIM key for %s" % domain)
    tenant = {
        "tenant_id": tenant_id,
        "domain": domain,
        "vps_ip": record_data.get("vps_ip"),
        "migrated_at": record_data.get("migrated_at"),
        # A tenant without a contact address is never told of a rotation or a migration (listed by the report).
        "notified": bool(str(record_data.get("contact_email") or "").strip()),
        "keys": keys,
        "smtp": {"present": smtp_present},
        "dkim": {"domain": domain, "selectors": selectors, "present": bool(selectors)},
        "issues": issues,
    }
    tenant["urgency"] = urgency(tenant)
    return tenant


def list_tenants(client, vps_mount):
    """Tenant ids below the vps mount (folders whose name is a valid tenant id)."""
    tenants = []
    for name in client.list(vps_mount, ""):
        name = name.rstrip("/")
        try:
            tenants.append(validate_tenant_id(name))
        except ValidationError:
            continue
    return sorted(set(tenants))


def tenants_report(client, tenant_ids=None, mounts=None, now=None, due_soon_days=14):
    """Status of every tenant (or of ``tenant_ids``), most urgent first, and a summary."""
    mounts = dict({"vps": "vps", "smtp": "smtp", "dkim": "dkim"}, **(mounts or {}))
    now = now or utcnow()
    ids = [validate_tenant_id(t) for t in tenant_ids] if tenant_ids else list_tenants(client, mounts["vps"])
    tenants = sorted((tenant_status(client, t, mounts, now, due_soon_days) for t in ids), key=_sort_key)
    summary = {"total": len(tenants), "generated_at": format_time(now)}
    for level in ("critical", "warning", "ok"):
        summary[level] = sum(1 for t in tenants if t["urgency"] == level)
    for status in ("active", "expired", "revoked", "missing"):
        summary["keys_%s" % status] = sum(1 for t in tenants for k in t["keys"].values() if k["status"] == status)
    summary["without_contact"] = sorted(t["tenant_id"] for t in tenants if not t["notified"])
    return tenants, summary
