# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of penguinmails.vps.ssh_agent (documented in plugins/modules/ssh_agent.py).

Private keys go from Vault straight into the run's private ssh-agent (module_utils/ssh_agent.py):
they never become a task variable, a result or a file. In certificate mode (docs/ssh-certificates.md)
the admin side has no stored key at all: an Ed25519 key made in memory and its certificate, signed by
the Vault SSH engine once per run (not per host), go to the agent; host keys are vouched for by the
host CA (``@cert-authority`` lines).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import time

from ansible.plugins.action import ActionBase

from ansible_collections.penguinmails.vps.plugins.module_utils import ssh_agent, ssh_keys
from ansible_collections.penguinmails.vps.plugins.module_utils import host_keys as hk
from ansible_collections.penguinmails.vps.plugins.module_utils import ssh_ca
from ansible_collections.penguinmails.vps.plugins.module_utils import ssh_certificates as sc
from ansible_collections.penguinmails.vps.plugins.module_utils.keypair_store import is_confirmed
from ansible_collections.penguinmails.vps.plugins.module_utils.validators import (
    ValidationError,
    ssh_key_path,
    tenant_account,
    tenant_record_path,
    validate_tenant_id,
)
from ansible_collections.penguinmails.vps.plugins.module_utils.vault_client import (
    VaultError,
    controller_vault_options,
    get_client,
    vault_argument_spec,
)

FACT = "penguinmails_ssh_agent"
CERT_FILE = "admin-run-cert.pub"
CERT_KEY_FILE = "admin-run-key.pub"
# A run certificate is signed again when less than this (or half its TTL) is left.
RENEW_MARGIN = 300
ERRORS = (ValidationError, VaultError, ssh_agent.AgentError, ssh_keys.SSHKeyError, hk.HostKeyError, sc.CertificateError,
          ssh_ca.CAError)


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
        ssh_auth=dict(type="str", default="record", choices=["record", "keys", "certificates", "both"]),
        user_ca_mount=dict(type="str", default=ssh_ca.DEFAULT_USER_CA_MOUNT),
        host_ca_mount=dict(type="str", default=ssh_ca.DEFAULT_HOST_CA_MOUNT),
        certificate_role=dict(type="str", default=ssh_ca.DEFAULT_ADMIN_ROLE),
        certificate_principal=dict(type="str", default=ssh_ca.DEFAULT_ADMIN_PRINCIPAL),
        certificate_ttl=dict(type="int", default=0),
    )
    return spec


def agent_seconds(lifetime, valid_before, now):
    """How long the agent keeps the run certificate and its key: the certificate's own validity bounds it (the
    certificate is signed again when it runs out, see ``_Run._reusable``); a ``lifetime`` > 0 caps it sooner, 0 does
    not. At least 1 second (the agent protocol's lifetime constraint)."""
    left = int(valid_before) - int(now)
    lifetime = ssh_agent.check_lifetime(lifetime)
    return max(1, min(lifetime, left) if lifetime else left)


def _vault_options(args, task_vars):
    """Task arguments first, then the penguinmails_vault_* variables (as the lookup), then the environment; the run's
    Vault session (penguinmails.vps.vault_session) instead of a login of its own."""
    return controller_vault_options(args, task_vars)


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
            # 0 (the default): keys stay until the run ends; N > 0 caps them; a negative lifetime is refused.
            ssh_agent.check_lifetime(args["lifetime"])
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
                              dict(tenants={}, hosts={}, errors={}, host_keys_recorded=[], certificates_signed=[]))
                # The agent now describes the run certificate too (reused by later calls of the run).
                result.update(agent=agent, ansible_facts={FACT: agent})
        except ERRORS as exc:
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
        run = _Run(client, agent, args)
        tenants, errors, recorded, host_keys_of, ca_hosts = {}, {}, [], {}, set()
        for tenant_id in args["tenants"]:
            try:
                tenant_id = validate_tenant_id(tenant_id)
                entry, keys, first_use = self._load_tenant(client, agent, tenant_id, args, run)
            except ERRORS as exc:
                errors[str(tenant_id)] = str(exc)
                continue
            tenants[tenant_id] = entry
            host_keys_of.setdefault(entry["address"], set()).update(keys)
            if entry["ssh_auth"] != "keys":
                ca_hosts.add(entry["address"])
            if first_use:
                recorded.append(tenant_id)
        hosts = {}
        for tenant_id, entry in sorted(tenants.items()):
            host = hosts.setdefault(entry["address"], {"tenants": [], "identity_files": []})
            host["tenants"].append(tenant_id)
            for path in entry["identity_files"].get("admin", []):
                if path not in host["identity_files"]:
                    host["identity_files"].append(path)
        for address, host in sorted(hosts.items()):
            # One file per address, so a later load in the same run (another host) never replaces this one's.
            name = "host-%s" % hashlib.sha256(address.encode("utf-8")).hexdigest()[:16]
            lines = [hk.known_hosts_line(address, key) for key in sorted(host_keys_of[address])]
            if address in ca_hosts:
                # the run certificate first: sshd then accepts it at the first try
                host["identity_files"].sort(key=lambda path: os.path.basename(path) not in (CERT_FILE, CERT_KEY_FILE))
                ca_lines = run.cert_authority_lines(address)
                lines += ca_lines
                host["ca_known_hosts"] = ssh_agent.write_known_hosts(agent, name + ".ca.known_hosts", ca_lines)
            host["known_hosts"] = ssh_agent.write_known_hosts(agent, name + ".known_hosts", lines)
            host["ssh_args"] = " ".join(ssh_agent.ssh_options(agent, host["identity_files"], host["known_hosts"]))
            for tenant_id in host["tenants"]:
                tenants[tenant_id]["known_hosts"] = host["known_hosts"]
                tenants[tenant_id]["ssh_args"] = host["ssh_args"]
                if "ca_known_hosts" in host:
                    tenants[tenant_id]["ca_known_hosts"] = host["ca_known_hosts"]
        result = dict(tenants=tenants, hosts=hosts, errors=errors, host_keys_recorded=recorded,
                      certificates_signed=run.signed)
        if agent.get("certificate"):
            result["certificate"] = agent["certificate"]
        return result

    def _load_tenant(self, client, agent, tenant_id, args, run):
        record_mount, record_path = tenant_record_path(tenant_id, args["mount"])
        secret = client.read_or_none(record_mount, record_path)
        record = (secret.data if secret else None) or {}
        address = (args["addresses"] or {}).get(tenant_id) or record.get("vps_ip") or ""
        if not address:
            raise hk.HostKeyError("no host known: set vps_ip in %s/%s" % (record_mount, record_path))
        mode = ssh_ca.tenant_mode(record) if args["ssh_auth"] == "record" else args["ssh_auth"]
        entry = {"address": address, "identity_files": {}, "fingerprints": {}, "account": tenant_account(tenant_id),
                 "admin_user": args["admin_user"], "ssh_auth": mode}
        for role in args["roles"]:
            if role == "admin" and mode == "certificates":
                entry["identity_files"][role], entry["fingerprints"][role] = [], []
                continue
            entry["identity_files"][role], entry["fingerprints"][role] = self._load_role(client, agent, tenant_id, role, args)
        if "admin" in args["roles"] and mode != "keys":
            # after the stored keys, so files and fingerprints stay aligned (the host's list puts it first)
            entry["identity_files"]["admin"] = entry["identity_files"]["admin"] + run.certificate_files()
            entry["fingerprints"]["admin"] = entry["fingerprints"]["admin"] + [self._run_fingerprint(agent)] * 2
        if not entry["identity_files"].get("admin") and "admin" in args["roles"]:
            raise ssh_agent.AgentError("no active admin key in Vault for %s: nothing can log in to its host" % tenant_id)
        keys = hk.recorded(record, address)
        first_use = False
        entry["host_key_source"] = "record"
        if not keys and mode != "keys" and run.host_certificate(address, int(record.get("ssh_port") or 22)):
            # The host presents a certificate of the host CA for this address: the CA vouches for it.
            entry["host_key_source"] = "certificate"
        elif not keys:
            if args["host_key_policy"] == "strict":
                raise hk.HostKeyError("no host key recorded for %s (%s): refusing to connect without checking it"
                                      % (tenant_id, address))
            keys = hk.scan(address, port=int(record.get("ssh_port") or 22))
            hk.record_first_use(client, record_mount, record_path, secret, keys, address)
            first_use = True
            entry["host_key_source"] = "ssh-keyscan"
        entry["host_key_fingerprints"] = hk.fingerprints(keys)
        return entry, keys, first_use

    @staticmethod
    def _run_fingerprint(agent):
        return (agent.get("certificate") or {}).get("fingerprint", "")

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


class _Run(object):
    """What one ``loaded`` call shares between its tenants: the run certificate (signed at most once,
    and reused from the agent's description while it is valid long enough) and the host CA keys."""

    def __init__(self, client, agent, args):
        self.client, self.agent, self.args = client, agent, args
        self.signed = []
        self._files = None
        self._error = None
        self._host_ca_keys = None

    def certificate_files(self):
        """[certificate file, ephemeral public key file] of the run; signs when there is none yet."""
        if self._error is not None:
            raise self._error
        if self._files is None:
            try:
                self._files = self._certificate()
            except ERRORS as exc:
                self._error = exc
                raise
        return self._files

    def _reusable(self, cert):
        if not cert or not os.path.exists(cert.get("identity_file", "")):
            return False
        wanted = (self.args["user_ca_mount"], self.args["certificate_role"], [self.args["certificate_principal"]])
        if (cert.get("mount"), cert.get("role"), cert.get("principals")) != wanted:
            return False
        margin = min(RENEW_MARGIN, max(1, int(cert.get("ttl") or 0) // 2))
        # The agent holds the certificate until it runs out, or until an explicit lifetime cap made it forget it sooner.
        until = min(int(cert.get("valid_before") or 0), int(cert.get("agent_until") or cert.get("valid_before") or 0))
        return until - time.time() > margin

    def _certificate(self):
        cert = self.agent.get("certificate")
        if self._reusable(cert):
            return [cert["identity_file"], cert["plain_identity_file"]]
        principal = ssh_ca.validate_principal(self.args["certificate_principal"])
        ca = ssh_ca.CertificateAuthority(self.client, self.args["user_ca_mount"])
        key = sc.EphemeralKey(comment="penguinmails-run")
        signed = ca.sign(self.args["certificate_role"], key.public_key, cert_type="user", principals=[principal],
                         ttl=self.args["certificate_ttl"])
        if signed["public_key"].split()[1] != key.public_key.split()[1] or principal not in signed["principals"]:
            raise sc.CertificateError("Vault returned a certificate for another key or principal")
        remaining = agent_seconds(self.args["lifetime"], signed["valid_before"], int(time.time()))
        ssh_agent.add_ephemeral(self.agent, key, signed["certificate"], remaining)
        del key
        cert_file = ssh_agent.write_public(self.agent, CERT_FILE, signed["certificate"])
        key_file = ssh_agent.write_public(self.agent, CERT_KEY_FILE, signed["public_key"] + " penguinmails-run")
        description = dict(
            (name, signed[name]) for name in ("serial", "key_id", "principals", "valid_after", "valid_before",
                                              "ca_fingerprint", "fingerprint", "public_key", "issuer_id"))
        description.update(identity_file=cert_file, plain_identity_file=key_file, mount=self.args["user_ca_mount"],
                           role=self.args["certificate_role"], ttl=signed["valid_before"] - int(time.time()),
                           serial=str(signed["serial"]), agent_until=int(time.time()) + remaining)
        self.agent["certificate"] = description
        self.signed.append(dict((name, description[name]) for name in (
            "serial", "key_id", "principals", "valid_after", "valid_before", "ttl", "ca_fingerprint", "fingerprint",
            "mount", "role")))
        return [cert_file, key_file]

    def host_ca_keys(self):
        if self._host_ca_keys is None:
            self._host_ca_keys = ssh_ca.CertificateAuthority(self.client, self.args["host_ca_mount"]).public_keys()
        return self._host_ca_keys

    def cert_authority_lines(self, address):
        return ["@cert-authority %s %s" % (address, sc.key_line(sc.public_key_blob(key))) for key in self.host_ca_keys()]

    def host_certificate(self, address, port):
        keys = self.host_ca_keys()
        return bool(keys) and sc.trusted_host_certificate(address, keys, port, now=int(time.time())) is not None
