# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A tenant's Vault login: a userpass user, the identity entity ``tenant-<id>`` (metadata ``tenant_id``,
policy ``tenant``) and the alias that ties them, without ever taking over another tenant's identity.

Userpass user names are case-insensitive (Vault lower-cases them), so the login of ``Acme`` and of ``acme``
would be the same. Tenant ids that differ only by case are therefore one tenant: the second is refused
(:func:`validators.check_tenant_unique`, against the tenants of the KV mount and the existing tenant
entities). A login or alias that belongs to another entity is never rebound; a login that exists without
an alias (made by hand, or by someone else) is refused rather than adopted.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.penguinmails.vps.plugins.module_utils.validators import (
    ValidationError,
    check_tenant_unique,
    validate_mount,
    validate_tenant_id,
)

ENTITY_PREFIX = "tenant-"


class LoginError(Exception):
    """A rule refused the login (one line, no secret)."""


class Plan(object):
    def __init__(self):
        self.create_user = False
        self.update_password = False
        self.entity = None  # the entity body to write, or None
        self.entity_id = None
        self.create_alias = False
        self.login = None
        self.accessor = None

    @property
    def changed(self):
        return bool(self.create_user or self.update_password or self.entity is not None or self.create_alias)


class TenantLogins(object):
    def __init__(self, client, auth_mount="userpass", vps_mount="vps"):
        self.client = client
        self.auth_mount = validate_mount(auth_mount)
        self.vps_mount = vps_mount

    def accessor(self):
        methods = self.client.api("GET", "sys/auth", where="read of the auth methods")
        data = methods.get("data", methods)
        entry = data.get(self.auth_mount + "/")
        if not entry or entry.get("type") != "userpass":
            raise LoginError("no userpass auth method at %s/" % self.auth_mount)
        return entry["accessor"]

    def known_tenants(self):
        """Tenant ids of the KV mount and of the existing tenant entities."""
        names = [name.rstrip("/") for name in self.client.list(self.vps_mount, "")]
        listing = self.client.api_or_none("LIST", "identity/entity/name", where="list of identity entities") or {}
        for name in (listing.get("data") or {}).get("keys") or []:
            if name.startswith(ENTITY_PREFIX):
                names.append(name[len(ENTITY_PREFIX):])
        return names

    def plan(self, tenant_id, password, update_password="on_create", policies=("tenant",)):
        tenant_id = validate_tenant_id(tenant_id)
        if not password or len(password) < 12:
            raise ValidationError("the password of tenant %s must have 12 or more characters" % tenant_id)
        check_tenant_unique(tenant_id, self.known_tenants())
        plan = Plan()
        plan.login = tenant_id.lower()
        plan.accessor = self.accessor()
        entity_name = ENTITY_PREFIX + tenant_id
        entity = (self.client.api_or_none("GET", "identity/entity/name/%s" % entity_name,
                                          where="read of entity %s" % entity_name) or {}).get("data")
        plan.entity_id = (entity or {}).get("id")
        bound = (self.client.api("POST", "identity/lookup/entity",
                                 {"alias_name": plan.login, "alias_mount_accessor": plan.accessor},
                                 where="lookup of the login %s" % plan.login, retry=True) or {}).get("data")
        if bound and bound.get("id") != plan.entity_id:
            owner = (bound.get("metadata") or {}).get("tenant_id") or bound.get("name")
            raise LoginError("the login %s belongs to %s, not to tenant %s: refusing to rebind it" % (plan.login, owner, tenant_id))
        user = self.client.api_or_none("GET", "auth/%s/users/%s" % (self.auth_mount, plan.login),
                                       where="read of the login %s" % plan.login)
        if user is not None and not bound:
            raise LoginError("a login %s exists that is not bound to tenant %s: remove it, or bind it by hand if it is "
                             "that tenant's" % (plan.login, tenant_id))
        plan.create_user = user is None
        plan.update_password = user is not None and update_password == "always"
        wanted = {"metadata": {"tenant_id": tenant_id}, "policies": sorted(policies)}
        if entity is None or (entity.get("metadata") or {}) != wanted["metadata"] or sorted(entity.get("policies") or []) != wanted["policies"]:
            plan.entity = wanted
        plan.create_alias = not bound
        return plan

    def commit(self, tenant_id, password, plan, token_ttl="1h"):
        entity_name = ENTITY_PREFIX + validate_tenant_id(tenant_id)
        if plan.entity is not None:
            self.client.api("POST", "identity/entity/name/%s" % entity_name, plan.entity, where="write of entity %s" % entity_name)
        if plan.entity_id is None:
            plan.entity_id = self.client.api("GET", "identity/entity/name/%s" % entity_name,
                                             where="read of entity %s" % entity_name)["data"]["id"]
        if plan.create_user or plan.update_password:
            self.client.api("POST", "auth/%s/users/%s" % (self.auth_mount, plan.login),
                            {"password": password, "token_ttl": token_ttl}, where="write of the login %s" % plan.login)
        if plan.create_alias:
            self.client.api("POST", "identity/entity-alias",
                            {"name": plan.login, "canonical_id": plan.entity_id, "mount_accessor": plan.accessor},
                            where="alias of the login %s" % plan.login)
