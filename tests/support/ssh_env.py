# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One tenant on one lab host: run the collection's SSH key playbooks and try logins with sshd deciding."""
from __future__ import annotations

import json
import os
import subprocess
import uuid

from ansible_collections.penguinmails.vps.plugins.module_utils import vault_client as vc
from ansible_collections.penguinmails.vps.plugins.module_utils.validators import tenant_account
from tests.support.ansible_run import REPO, VENV_BIN, ansible_env, ensure_collection_link

PLAYBOOKS = os.path.join(REPO, "playbooks")
SSH_OPTS = ["-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"]
OUTPUTS = []  # every playbook output of this module: checked for private keys at the end


def new_tenant(prefix):
    return "%s%s" % (prefix, uuid.uuid4().hex[:10])


def tenant_user(tenant_id):
    return tenant_account(tenant_id)


class Env(object):
    """One tenant on one lab host, with helpers to run the playbooks and try logins."""

    def __init__(self, lab, host, tenant_id, tmp_path, mount="vps"):
        self.lab, self.host, self.tenant_id, self.tmp, self.mount = lab, host, tenant_id, tmp_path, mount
        self.client = vc.get_client({"url": lab["vault"]["addr"], "token": lab["vault"]["token"]})
        self.inventory = lab.inventory(tmp_path, [host])
        self.audit_file = tmp_path / "audit.jsonl"
        self._n = 0

    def play(self, name, expect_rc=0, **extra):
        ensure_collection_link()
        extra.setdefault("penguinmails_vault_vps_mount", self.mount)
        cmd = [os.path.join(VENV_BIN, "ansible-playbook"), "-i", self.inventory, os.path.join(PLAYBOOKS, name + ".yml"),
               "-e", json.dumps(extra)]
        env = ansible_env(dict(self.lab.env(), ANSIBLE_CALLBACKS_ENABLED="penguinmails.vps.audit",
                               PENGUINMAILS_AUDIT_FILE=str(self.audit_file), PENGUINMAILS_AUDIT_USER="ops-test"))
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                                stdin=subprocess.DEVNULL)
        stdout, stderr = proc.communicate(timeout=600)
        self.last_pid = proc.pid  # the ansible-playbook process (its ssh-agent watchdogs guard it)
        result = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
        OUTPUTS.append(result.stdout + result.stderr)
        output = result.stdout[-6000:] + result.stderr[-3000:]
        if expect_rc is not None:
            assert result.returncode == expect_rc, output
        assert "Traceback" not in result.stdout + result.stderr, output
        return result

    def secret(self, role, version=None):
        return self.client.read(self.mount, "%s/%s_ssh" % (self.tenant_id, role), version=version)

    def key_file(self, private_key, name):
        self._n += 1
        path = str(self.tmp / ("%s-%d-%s.key" % (name, self._n, uuid.uuid4().hex[:8])))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(private_key)
        return path

    def user(self, role):
        return "root" if role == "admin" else tenant_user(self.tenant_id)

    def can_login(self, private_key, role):
        key = self.key_file(private_key, role)
        env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
        result = subprocess.run(["ssh", "-i", key] + SSH_OPTS + ["%s@%s" % (self.user(role), self.host["ip"]), "id -un"],
                                capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL, check=False)
        return result.returncode == 0 and result.stdout.strip() == self.user(role)

    def authorized_keys(self, role):
        home = "/root" if role == "admin" else "/home/" + tenant_user(self.tenant_id)
        result = self.lab.host_exec(self.host["name"], ["cat", home + "/.ssh/authorized_keys"])
        return result.stdout if result.returncode == 0 else ""

    def private_key_of(self, role, public_key):
        """The private key of ``public_key`` from the KV history (every version is kept)."""
        meta = self.client.metadata(self.mount, "%s/%s_ssh" % (self.tenant_id, role))
        for version in range(int(meta["current_version"]), 0, -1):
            data = self.secret(role, version).data
            if data.get("public_key") == public_key and data.get("private_key"):
                return data["private_key"]
        raise AssertionError("no private key for that public key in the history")

    def audit_events(self):
        if not self.audit_file.exists():
            return []
        return [json.loads(line) for line in self.audit_file.read_text().splitlines() if line.strip()]
