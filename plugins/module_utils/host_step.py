# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host step of the SSH key lifecycle for every tenant of one host (controller side).

docs/ssh-key-lifecycle.md ("What a run does on the host"). For each tenant of the host:

1. read from Vault what the host must hold (current key, the fallback while the current admin key is
   unconfirmed, grace keys with their own expiry; the KV version is the serial) and, in certificate mode,
   the principals;
2. one call of the batch module on the host for all of them (``install``);
3. log in from the controller with every current key, from the run's ssh-agent, concurrently (bounded);
4. record the confirmation in Vault (check-and-set; the fallback goes);
5. one more call of the batch module for the tenants whose fallback went (``drop_fallback``);
6. per tenant: the audit events, the notices to send and, for a tenant that failed, the stage and one line.

A failure stays with its tenant: the fallback key stays valid until the new one is confirmed, so nobody is
locked out, and the host's other tenants go on. Nothing here holds a private key but on its way into the agent.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import concurrent.futures
import subprocess

from ansible_collections.penguinmails.vps.plugins.module_utils import keypair_store
from ansible_collections.penguinmails.vps.plugins.module_utils import ssh_agent
from ansible_collections.penguinmails.vps.plugins.module_utils import ssh_ca
from ansible_collections.penguinmails.vps.plugins.module_utils import ssh_keys
from ansible_collections.penguinmails.vps.plugins.module_utils.validators import (
    ValidationError,
    tenant_account,
    tenant_record_path,
    validate_tenant_id,
)
from ansible_collections.penguinmails.vps.plugins.module_utils.vault_client import (
    VaultCASConflict,
    VaultError,
    vault_argument_spec,
)

ROLES = ("admin", "tenant")
# What each stage is called in failures and audit events (failed_task), as the playbooks' tasks were.
STAGES = {
    "vault": "Read what the host must accept from Vault",
    "install": "Install the keys Vault holds now",
    "login": "Log in from the controller with every current key",
    "confirm": "Record in Vault that the host accepts the current keys",
    "drop_fallback": "Install again without the fallback key",
}
# What the result keeps of the batch module's answer per role.
HOST_FIELDS = ("user", "path", "user_created", "user_missing", "added", "removed", "updated", "expiring", "stale", "serial")
ERRORS = (ValidationError, VaultError, keypair_store.KeypairError, ssh_keys.SSHKeyError, ssh_agent.AgentError)


def argument_spec():
    spec = vault_argument_spec()
    spec.update(
        jobs=dict(type="list", elements="dict", required=True),
        agent=dict(type="dict", default={}),
        mount=dict(type="str", default="vps"),
        admin_user=dict(type="str", default="root"),
        tenant_shell=dict(type="str", default="/bin/bash"),
        marker_prefix=dict(type="str", default="penguinmails"),
        exclusive=dict(type="bool", default=False),
        fallback=dict(type="bool", default=True),
        allow_no_admin_key=dict(type="bool", default=False),
        ssh_auth=dict(type="str", default="record", choices=["record", "keys", "certificates", "both"]),
        admin_principal=dict(type="str", default=ssh_ca.DEFAULT_ADMIN_PRINCIPAL),
        tenant_certificates=dict(type="bool", default=True),
        ca_dir=dict(type="str", default="/etc/ssh/penguinmails"),
        verify=dict(type="bool", default=True),
        login_concurrency=dict(type="int", default=8),
        login_timeout=dict(type="int", default=10),
        audit_action=dict(type="str", default="ssh_key_rotated"),
        mode=dict(type="str", default="manual"),
    )
    return spec


class Tenant(object):
    """One tenant of the host: its job, what Vault holds for it, and how far it got."""

    def __init__(self, job):
        self.job = job
        self.tenant_id = str(job.get("tenant_id") or "")
        self.roles = [role for role in ROLES if role in (job.get("roles") or ROLES)]
        self.rotated = list(job.get("rotated_roles") or [])
        self.connection = job.get("connection") or {}
        self.account = self.connection.get("account") or ""
        self.mode = "keys"
        self.keys = {}  # role -> keypair_store.host_view
        self.installed, self.stale, self.verified, self.confirmed, self.superseded = [], [], [], [], {}
        self.host_results = {}  # role -> the batch module's last result for it (added, removed, user_created, ...)
        self.stage = None
        self.error = None

    @property
    def ok(self):
        return self.stage is None

    def fail(self, stage, error):
        if self.ok:
            self.stage, self.error = stage, " ".join(str(error).split())[:300]


class HostStep(object):
    """The host step of one host. ``batch(module_args)`` calls the batch module on the host and returns its result."""

    def __init__(self, client, args, host, agent, batch, check_mode=False):
        self.client, self.args, self.host, self.agent, self.batch = client, args, host, agent or {}, batch
        self.check_mode = check_mode
        self.tenants = [Tenant(job) for job in args["jobs"]]
        self.diffs = []
        self.host_unreachable = False

    # -- the step ------------------------------------------------------------------------------
    def run(self):
        if isinstance(self.client, Exception):
            for tenant in self.tenants:
                tenant.fail("vault", self.client)
        for tenant in self.tenants:
            if tenant.ok:
                self._read(tenant)
        self._install([t for t in self.tenants if t.ok], "install", fallback=self.args["fallback"])
        if not self.check_mode and self.args["verify"]:
            self._logins([t for t in self.tenants if t.ok])
            for tenant in self.tenants:
                if tenant.ok:
                    self._confirm(tenant)
            again = [t for t in self.tenants if t.ok and t.confirmed]
            for tenant in again:
                self._read(tenant, tenant.confirmed)
            self._install([t for t in again if t.ok], "drop_fallback", fallback=False, roles_of=lambda t: t.confirmed)
        return self.result()

    def _read(self, tenant, roles=None):
        try:
            tenant_id = validate_tenant_id(tenant.tenant_id)
            if roles is None:
                record_mount, record_path = tenant_record_path(tenant_id, self.args["mount"])
                secret = self.client.read_or_none(record_mount, record_path)
                mode = self.args["ssh_auth"]
                tenant.mode = ssh_ca.tenant_mode(secret.data if secret else None) if mode == "record" else mode
                tenant.account = tenant.account or tenant_account(tenant_id)
            now = keypair_store.utcnow()
            for role in roles or tenant.roles:
                store = keypair_store.KeypairStore(self.client, tenant_id, role, mount=self.args["mount"])
                data, version = store.read()
                view = keypair_store.host_view(data, version, now)
                if role == "admin" and tenant.mode == "certificates":
                    view = dict(view, host_keys=[], grace_keys=[])
                tenant.keys[role] = view
            admin = tenant.keys.get("admin")
            if (roles is None and admin is not None and tenant.mode == "keys" and not admin["host_keys"]
                    and not self.args["allow_no_admin_key"]):
                raise keypair_store.KeypairError(
                    "the admin key of %s is %s in Vault; installing it would leave %s without a managed key"
                    % (tenant_id, "missing" if not admin["exists"] else admin.get("state") or "?", self.args["admin_user"]))
        except ERRORS as exc:
            tenant.fail("vault", exc)

    # -- the host ------------------------------------------------------------------------------
    def _entries(self, tenant, fallback, roles):
        prefix, entries, principals, requires = self.args["marker_prefix"], [], [], []
        if roles is None and tenant.mode != "keys":
            requires = self._principals(tenant, principals)
        elif roles is None:
            self._principals(tenant, principals)
        for role in roles or tenant.roles:
            view = tenant.keys[role]
            user = self.args["admin_user"] if role == "admin" else tenant.account
            entry = dict(name="%s:%s" % (tenant.tenant_id, role), user=user, manage_user=role == "tenant",
                         shell=self.args["tenant_shell"], keys=view["host_keys"] if fallback else view["host_keys"][:1],
                         grace_keys=view["grace_keys"], revoked_keys=view["revoked_keys"],
                         marker="%s:%s:%s" % (prefix, tenant.tenant_id, role), serial=int(view["version"] or 0),
                         exclusive=self.args["exclusive"], requires=requires if role == "admin" else [])
            if role == "tenant":
                entry["owner"] = tenant.tenant_id
            entries.append(entry)
            legacy = "tenant-%s" % tenant.tenant_id[:8]
            if role == "tenant" and roles is None and legacy != tenant.account:
                # the account older releases shared between tenants loses this tenant's key
                entries.append(dict(name="%s:legacy" % tenant.tenant_id, user=legacy, keys=[], missing_user="ignore",
                                    marker="%s:%s:tenant" % (prefix, tenant.tenant_id)))
        return entries, principals

    def _principals(self, tenant, principals):
        """Certificate mode: the admin principal in the admin account's file, the tenant's own principal file;
        stored keys only: both removed. Returns the names an admin entry must wait for."""
        ca_dir, present = self.args["ca_dir"].rstrip("/"), tenant.mode != "keys"
        names = []
        if "admin" in tenant.roles:
            name = "%s:admin-principal" % tenant.tenant_id
            principals.append(dict(name=name, path="%s/principals/%s" % (ca_dir, self.args["admin_user"]), kind="block",
                                   marker="penguinmails admin certificates for %s" % tenant.tenant_id,
                                   principal=self.args["admin_principal"], state="present" if present else "absent"))
            names.append(name)
        if "tenant" in tenant.roles:
            wanted = present and self.args["tenant_certificates"]
            principals.append(dict(name="%s:tenant-principal" % tenant.tenant_id, path="%s/principals/%s" % (ca_dir, tenant.account),
                                   kind="file", principal=tenant.account, state="present" if wanted else "absent"))
        return names

    def _install(self, tenants, stage, fallback, roles_of=None):
        if not tenants:
            return
        entries, principals, owner = [], [], {}
        for tenant in tenants:
            tenant_entries, tenant_principals = self._entries(tenant, fallback, roles_of(tenant) if roles_of else None)
            for item in tenant_entries + tenant_principals:
                owner[item["name"]] = tenant
            entries += tenant_entries
            principals += tenant_principals
        raw = self.batch(dict(entries=entries, principals=principals)) or {}
        if raw.get("unreachable"):
            self.host_unreachable = True
            for tenant in tenants:
                tenant.fail(stage, "host unreachable: %s" % (raw.get("msg") or "")[:200])
            return
        if raw.get("failed"):
            for tenant in tenants:
                tenant.fail(stage, raw.get("msg") or "the batch module failed")
            return
        if isinstance(raw.get("diff"), list):
            self.diffs += raw["diff"]
        results = dict(raw.get("entry_results") or {})
        results.update(raw.get("principal_results") or {})
        for name, tenant in owner.items():
            item = results.get(name) or {"failed": True, "msg": "no result for %s" % name}
            if item.get("failed"):
                tenant.fail(stage, item.get("msg") or "failed")
                continue
            role = name.split(":", 1)[1]
            if role in ROLES:
                tenant.host_results[role] = dict((k, item.get(k)) for k in HOST_FIELDS)
                if item.get("changed") and role not in tenant.installed:
                    tenant.installed.append(role)
                if item.get("stale") and stage == "install":
                    tenant.stale.append(role)

    # -- logins --------------------------------------------------------------------------------
    def _logins(self, tenants):
        checks = []
        for tenant in tenants:
            for role in tenant.roles:
                if role in tenant.stale or not tenant.keys[role]["host_keys"]:
                    continue  # a newer run wrote this role (it verifies it), or nothing to log in with
                checks.append((tenant, role))
        workers = max(1, min(int(self.args["login_concurrency"]), len(checks) or 1))
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            outcomes = list(pool.map(lambda check: self._login(*check), checks))
        for (tenant, role), error in zip(checks, outcomes):
            if error:
                tenant.fail("login", "%s key: %s" % (role, error))
            else:
                tenant.verified.append(role)

    def _identity(self, tenant, role):
        """The agent's public key file of the role's current key; loads the key from Vault into the agent when
        another run rotated it after this run loaded its keys (the newer key is what the host holds now)."""
        fingerprint = tenant.keys[role].get("fingerprint")
        files = (tenant.connection.get("identity_files") or {}).get(role) or []
        prints = (tenant.connection.get("fingerprints") or {}).get(role) or []
        if fingerprint in prints and prints.index(fingerprint) < len(files):
            return files[prints.index(fingerprint)]
        if not ssh_agent.alive(self.agent):
            raise ssh_agent.AgentError("the run's ssh-agent is not running")
        store = keypair_store.KeypairStore(self.client, tenant.tenant_id, role, mount=self.args["mount"])
        data, _version = store.read()
        if not data or data.get("fingerprint") != fingerprint or not data.get("private_key"):
            raise keypair_store.KeypairError("the current key changed again while this run verified it")
        ssh_agent.add_key(self.agent, data["private_key"], self.agent.get("lifetime") or ssh_agent.DEFAULT_LIFETIME)
        tenant.superseded[role] = "another run rotated it to %s after this run loaded its keys; that key was installed and " \
            "verified here, no rerun needed" % fingerprint
        return ssh_agent.write_public(self.agent, "%s.%s.newer.pub" % (tenant.tenant_id, role), data["public_key"])

    def _login(self, tenant, role):
        """None when a login with the role's current key succeeds, else one line saying why."""
        try:
            identity = self._identity(tenant, role)
        except ERRORS as exc:
            return str(exc)
        user = self.args["admin_user"] if role == "admin" else tenant.account
        address = tenant.job.get("address") or self.host["address"]
        argv = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "ControlPath=none",
                "-o", "ConnectTimeout=%d" % int(self.args["login_timeout"]),
                "-o", "IdentityAgent=%s" % self.agent.get("socket", ""), "-o", "IdentitiesOnly=yes",
                "-o", "IdentityFile=%s" % identity, "-o", "UserKnownHostsFile=%s" % tenant.connection.get("known_hosts", "/dev/null"),
                "-o", "StrictHostKeyChecking=yes", "-p", str(self.host["port"]), "%s@%s" % (user, address), "true"]
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  timeout=int(self.args["login_timeout"]) * 3, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return "ssh as %s@%s: %s" % (user, address, type(exc).__name__)
        if done.returncode == 0:
            return None
        lines = [line for line in done.stderr.decode("utf-8", "replace").splitlines() if line.strip()]
        return "ssh as %s@%s refused the current key (exit %d%s)" % (user, address, done.returncode,
                                                                     ": " + lines[-1][:200] if lines else "")

    # -- Vault confirmations --------------------------------------------------------------------
    def _confirm(self, tenant):
        for role in tenant.verified:
            store = keypair_store.KeypairStore(self.client, tenant.tenant_id, role, mount=self.args["mount"])
            fingerprint = tenant.keys[role].get("fingerprint")
            try:
                plan = store.plan("confirmed", fingerprint=fingerprint)
                if plan.changed:
                    store.commit(plan)
                    tenant.confirmed.append(role)
                elif plan.message and "changed since" in plan.message:
                    tenant.superseded.setdefault(role, self._newer(plan.before))
            except VaultCASConflict:
                # another run changed the record between this run's read and write: its own step confirms it
                tenant.superseded.setdefault(role, self._newer(None))
            except ERRORS as exc:
                tenant.fail("confirm", "%s key: %s" % (role, exc))
                return

    @staticmethod
    def _newer(data):
        fingerprint = (data or {}).get("fingerprint")
        return "another run rotated it%s while this run verified it; that run installs and confirms its key, no rerun needed" % (
            " to %s" % fingerprint if fingerprint else "")

    # -- what the playbook gets -----------------------------------------------------------------
    @staticmethod
    def answer(tenant_id, role, view, now=None):
        """The specification's answer to a rotation: the new fingerprint and how long the old key stays valid."""
        line = "rotated %s %s key: new fingerprint %s" % (tenant_id, role, view.get("fingerprint") or "?")
        graces = view.get("grace_keys") or []
        if not graces:
            return line + "; no earlier key stays valid"
        until = graces[0]["expires"]
        try:
            left = keypair_store.parse_time(until) - (now or keypair_store.utcnow())
            hours = max(0, int(round(left.total_seconds() / 3600.0)))
        except (TypeError, ValueError):
            return line + "; old key valid until %s" % until
        return line + "; Old key valid for %d hour%s (until %s)" % (hours, "" if hours == 1 else "s", until)

    def result(self):
        tenants, failures, events, notices, answers = {}, [], [], [], []
        for tenant in self.tenants:
            roles = {}
            for role in tenant.roles:
                view = tenant.keys.get(role) or {}
                roles[role] = dict(fingerprint=view.get("fingerprint") or "", vault_changed=role in tenant.rotated,
                                   host_changed=role in tenant.installed, stale=role in tenant.stale,
                                   verified=role in tenant.verified, confirmed=role in tenant.confirmed,
                                   superseded=tenant.superseded.get(role) or "", host=tenant.host_results.get(role) or {})
            entry = dict(ok=tenant.ok, stage=tenant.stage or "", error=tenant.error or "", mode=tenant.mode,
                         account=tenant.account, roles=roles, keys=tenant.keys)
            tenants[tenant.tenant_id] = entry
            if not tenant.ok:
                failures.append(dict(tenant_id=tenant.tenant_id, host=self.host["name"],
                                     error="%s: %s" % (STAGES.get(tenant.stage, tenant.stage), tenant.error)))
                events.append(dict(action=self.args["audit_action"], status="failure",
                                   severity="critical" if "admin" in tenant.roles else "warning",
                                   tenant_id=tenant.tenant_id,
                                   details=dict(roles=tenant.roles, host=self.host["name"], stage="host",
                                                failed_task=STAGES.get(tenant.stage, tenant.stage), error=tenant.error)))
                continue
            for role in tenant.roles:
                if role not in tenant.rotated and role not in tenant.installed:
                    continue
                if role in tenant.rotated and role not in tenant.stale and not tenant.superseded.get(role):
                    answers.append(self.answer(tenant.tenant_id, role, tenant.keys.get(role) or {}))
                events.append(dict(action=self.args["audit_action"], tenant_id=tenant.tenant_id, details=dict(
                    role=role, mode=self.args["mode"], host=self.host["name"], fingerprint=roles[role]["fingerprint"],
                    vault_changed=role in tenant.rotated, host_changed=role in tenant.installed,
                    superseded_by="a newer run" if role in tenant.stale or tenant.superseded.get(role) else "")))
            if "tenant" in tenant.rotated and "tenant" in tenant.keys:
                notices.append(dict(tenant_id=tenant.tenant_id, key=tenant.keys["tenant"],
                                    account=tenant.account, address=tenant.job.get("address") or self.host["address"]))
        changed = any(t.installed or t.confirmed for t in self.tenants)
        return dict(changed=changed, tenants=tenants, failures=failures, audit_events=events, notices=notices,
                    answers=answers, host_unreachable=self.host_unreachable,
                    superseded=["%s/%s: %s" % (t.tenant_id, role, why) for t in self.tenants for role, why in sorted(t.superseded.items())])
