# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of penguinmails.vps.ssh_agent (documented in plugins/modules/ssh_agent.py).

Private keys go from Vault straight into the run's private ssh-agent (module_utils/ssh_agent.py):
they never become a task variable, a result or a file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible.plugins.action import ActionBase

from ansible_collections.penguinmails.vps.plugins.module_utils import ssh_agent, ssh_keys
from ansible_collections.penguinmails.vps.plugins.module_utils import host_keys as hk
from ansible_collections.penguinmails.vps.plugins.module_utils.keypair_store import is_confirmed
from ansible_collections.penguinmails.vps.plugins.module_utils.validators import (
    ValidationError,
    ssh_key_path,
    tenant_account,
    tenant_record_path,
    validate_tenant_id,
)
from ansible_collections.penguinmails.vps.plugins.module_utils.vault_client import (
    OPTION_SOURCES,
    VaultError,
    get_client,
    vault_argument_spec,
)

FACT = "penguinmails_ssh_agent"


def argument_spec():
    spec = vault_argument_spec()
    spec.update(
        state=dict(type="str", default="loaded", choices=["started", "loaded", "stopped"]),
        tenants=dict(type="list", elements="str", default=[]),
        roles=dict(type="list", elements="str", default=["admin"], choices=["admin", "tenant"]),
        lifetime=dict(type="int", default=ssh_agent.DEFAULT_LIFETIME),
        mount=dict(type="str", default="vps"),
        host_key_policy=dict(type="str", default="record", choices=["record", "strict"]),
        admin_user=dict(type="str", default="root"),
        addresses=dict(type="dict", default={}),
    )
    return spec


def _vault_options(args, task_vars):
    """Task arguments first, then the penguinmails_vault_* variables (as the lookup), then the environment."""
    options = {}
    for name in OPTION_SOURCES:
        value = args.get(name)
        if value is None:
            value = task_vars.get("penguinmails_vault_" + name)
        options[name] = value
    return options


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        validation, args = self.validate_argument_spec(argument_spec=argument_spec())
        del validation
        agent = task_vars.get(FACT) or None
        try:
            if args["state"] == "stopped":
                ssh_agent.stop(agent)
                result.update(changed=bool(agent), ansible_facts={FACT: {}})
                return result
            if not ssh_agent.alive(agent):
                # The agent guards the ansible-playbook process (the parent of this worker).
                agent = ssh_agent.start(os.getppid(), lifetime=args["lifetime"])
                result["changed"] = True
            result.update(agent=agent, ansible_facts={FACT: agent})
            if args["state"] == "loaded":
                result.update(self._load(agent, args, task_vars) if args["tenants"] else
                              dict(tenants={}, hosts={}, errors={}, host_keys_recorded=[]))
        except (ValidationError, VaultError, ssh_agent.AgentError, ssh_keys.SSHKeyError, hk.HostKeyError) as exc:
            result.update(failed=True, msg="ssh_agent: %s" % exc)
        return result

    def _load(self, agent, args, task_vars):
        """Load every tenant's keys; a tenant that fails is reported under ``errors`` and the others go on.

        Returns the result fields ``tenants`` (per tenant: address, account, admin_user, identity_files and
        fingerprints per role, host_key_fingerprints), ``hosts`` (per address: tenants, known_hosts file,
        ssh_args that connect with those tenants' admin keys and check the host key), ``errors`` and
        ``host_keys_recorded``.
        """
        client = get_client(_vault_options(args, task_vars))
        tenants, errors, recorded, host_keys_of = {}, {}, [], {}
        for tenant_id in args["tenants"]:
            try:
                tenant_id = validate_tenant_id(tenant_id)
                entry, keys, first_use = self._load_tenant(client, agent, tenant_id, args)
            except (ValidationError, VaultError, ssh_agent.AgentError, ssh_keys.SSHKeyError, hk.HostKeyError) as exc:
                errors[str(tenant_id)] = str(exc)
                continue
            tenants[tenant_id] = entry
            host_keys_of.setdefault(entry["address"], set()).update(keys)
            if first_use:
                recorded.append(tenant_id)
        hosts = {}
        for tenant_id, entry in sorted(tenants.items()):
            host = hosts.setdefault(entry["address"], {"tenants": [], "identity_files": []})
            host["tenants"].append(tenant_id)
            host["identity_files"] += entry["identity_files"].get("admin", [])
        for number, (address, host) in enumerate(sorted(hosts.items())):
            lines = [hk.known_hosts_line(address, key) for key in sorted(host_keys_of[address])]
            host["known_hosts"] = ssh_agent.write_known_hosts(agent, "host%d.known_hosts" % number, lines)
            host["ssh_args"] = " ".join(ssh_agent.ssh_options(agent, host["identity_files"], host["known_hosts"]))
            for tenant_id in host["tenants"]:
                tenants[tenant_id]["known_hosts"] = host["known_hosts"]
                tenants[tenant_id]["ssh_args"] = host["ssh_args"]
        return dict(tenants=tenants, hosts=hosts, errors=errors, host_keys_recorded=recorded)

    def _load_tenant(self, client, agent, tenant_id, args):
        record_mount, record_path = tenant_record_path(tenant_id, args["mount"])
        secret = client.read_or_none(record_mount, record_path)
        record = (secret.data if secret else None) or {}
        address = (args["addresses"] or {}).get(tenant_id) or record.get("vps_ip") or ""
        if not address:
            raise hk.HostKeyError("no host known: set vps_ip in %s/%s" % (record_mount, record_path))
        entry = {"address": address, "identity_files": {}, "fingerprints": {}, "account": tenant_account(tenant_id),
                 "admin_user": args["admin_user"]}
        for role in args["roles"]:
            entry["identity_files"][role], entry["fingerprints"][role] = self._load_role(client, agent, tenant_id, role, args)
        if not entry["identity_files"].get("admin") and "admin" in args["roles"]:
            raise ssh_agent.AgentError("no active admin key in Vault for %s: nothing can log in to its host" % tenant_id)
        keys = hk.recorded(record, address)
        first_use = False
        if not keys:
            if args["host_key_policy"] == "strict":
                raise hk.HostKeyError("no host key recorded for %s (%s): refusing to connect without checking it"
                                      % (tenant_id, address))
            keys = hk.scan(address, port=int(record.get("ssh_port") or 22))
            hk.record_first_use(client, record_mount, record_path, secret, keys, address)
            first_use = True
        entry["host_key_fingerprints"] = hk.fingerprints(keys)
        return entry, keys, first_use

    def _load_role(self, client, agent, tenant_id, role, args):
        """Add the current key (and the fallback, while the current one is unconfirmed) to the agent."""
        mount, path = ssh_key_path(tenant_id, role, args["mount"])
        secret = client.read_or_none(mount, path)
        data = (secret.data if secret else None) or {}
        files, prints = [], []
        pairs = [("current", data.get("private_key"), data.get("public_key"), data.get("fingerprint"))]
        if not is_confirmed(data):
            pairs.append(("fallback", data.get("fallback_private_key"), data.get("fallback_public_key"),
                          data.get("fallback_fingerprint")))
        for label, private_key, public_key, fingerprint in pairs:
            if not (private_key and public_key) or data.get("state", "active") != "active":
                continue
            ssh_agent.add_key(agent, private_key, args["lifetime"])
            files.append(ssh_agent.write_public(agent, "%s.%s.%s.pub" % (tenant_id, role, label), public_key))
            prints.append(fingerprint or ssh_keys.fingerprint(public_key))
        return files, prints
