# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fault injection against the SSH key lifecycle, through the public playbooks, against the lab.

Three lab hosts with two tenants each. Root on every host accepts only keys from Vault (the lab's own
key is removed after the bootstrap), so "a key of the current Vault record logs in" is decided by sshd
alone. Then: runs of rotate, rotate_all, revoke and regenerate killed (SIGKILL to the whole process group)
at random task boundaries, a tenant whose Vault path is denied, two concurrent rotations of one tenant,
two forced rotations without host contact. After each: the reachability invariant holds for every tenant
(docs/ssh-key-lifecycle.md), no PEM file is left on the controller, and the run's ssh-agent is gone.
The random choices come from a seed printed at the start (PM_FAULT_SEED reproduces a run).
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
import uuid

import pytest

from ansible_collections.penguinmails.vps.plugins.module_utils import keypair_store, ssh_keys
from ansible_collections.penguinmails.vps.plugins.module_utils import vault_client as vc
from tests.support.ansible_run import REPO, VENV_BIN, ansible_env, ensure_collection_link
from tests.support.agents import wait_agents_gone

PLAYBOOKS = os.path.join(REPO, "playbooks")
HOSTS, TENANTS_PER_HOST = 3, 2
SCAN_ROOTS = ("/tmp", "/var/tmp", "/dev/shm", os.path.expanduser("~/.ansible"))
SSH_PROBE = ["-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10",
             "-o", "LogLevel=ERROR"]


class Fleet(object):
    """The hosts, the tenants, the playbook runner and the checks."""

    def __init__(self, lab, work):
        self.lab, self.work = lab, work
        self.mount = "vpsfault%s" % uuid.uuid4().hex[:6]
        self.client = vc.get_client({"url": lab["vault"]["addr"], "token": lab["vault"]["token"]})
        self.client.hvac.sys.enable_secrets_engine("kv", path=self.mount, options={"version": "2"})
        self.probe_dir = os.path.join(work, "probe-keys")  # the test's own key files, outside the scan
        os.makedirs(self.probe_dir, mode=0o700)
        self.hosts, self.tenants = [], {}  # tenant -> host
        self.audit_file = os.path.join(work, "audit.jsonl")
        self.inventory = os.path.join(work, "inventory.ini")
        with open(self.inventory, "w") as handle:  # no VPS in it: the collection reaches them with Vault keys
            handle.write("localhost ansible_connection=local ansible_python_interpreter=%s\n" % os.path.join(VENV_BIN, "python"))
        self.seed = int(os.environ.get("PM_FAULT_SEED") or random.SystemRandom().randrange(1 << 30))
        self.rng = random.Random(self.seed)
        self.started = time.time()

    # -- runs ---------------------------------------------------------------------------
    def command(self, playbook, **extra):
        extra.setdefault("penguinmails_vault_vps_mount", self.mount)
        extra.setdefault("penguinmails_python_interpreter", "/usr/bin/python3")
        return [os.path.join(VENV_BIN, "ansible-playbook"), "-i", self.inventory, os.path.join(PLAYBOOKS, playbook + ".yml"),
                "-e", json.dumps(extra)]

    def env(self, token=None):
        extra = dict(self.lab.env(), ANSIBLE_CALLBACKS_ENABLED="penguinmails.vps.audit",
                     PENGUINMAILS_AUDIT_FILE=self.audit_file, PENGUINMAILS_AUDIT_USER="fault-test")
        if token:
            extra["VAULT_TOKEN"] = token
        return ansible_env(extra)

    def play(self, playbook, token=None, **extra):
        ensure_collection_link()
        return subprocess.run(self.command(playbook, **extra), env=self.env(token), capture_output=True, text=True,
                              timeout=900, cwd=self.work, check=False, stdin=subprocess.DEVNULL)

    def start(self, playbook, token=None, **extra):
        ensure_collection_link()
        return subprocess.Popen(self.command(playbook, **extra), env=self.env(token), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, cwd=self.work, start_new_session=True,
                                stdin=subprocess.DEVNULL)

    def kill_at_task(self, playbook, task_number, **extra):
        """Run ``playbook`` and SIGKILL its whole process group when the ``task_number``-th task starts."""
        proc = self.start(playbook, **extra)
        seen, output = 0, []
        for line in proc.stdout:
            output.append(line)
            if line.startswith("TASK ["):
                seen += 1
                if seen == task_number:
                    os.killpg(proc.pid, signal.SIGKILL)
                    break
        proc.wait(timeout=600)
        rest = proc.stdout.read() if proc.stdout else ""
        proc.stdout.close()
        # The run's watchdog stops its agent and removes the agent's directory once the run is gone.
        wait_agents_gone(proc.pid)
        return proc.returncode, "".join(output) + rest

    # -- checks --------------------------------------------------------------------------
    def admin_record(self, tenant):
        return self.client.read(self.mount, "%s/admin_ssh" % tenant)

    def can_login(self, private_key, user, ip):
        path = os.path.join(self.probe_dir, uuid.uuid4().hex)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(private_key)
        try:
            result = subprocess.run(["ssh", "-i", path] + SSH_PROBE + ["%s@%s" % (user, ip), "true"], capture_output=True,
                                    timeout=60, stdin=subprocess.DEVNULL, check=False,
                                    env={k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"})
            return result.returncode == 0
        finally:
            os.unlink(path)

    def invariant_violations(self):
        """Tenants for which no private key of the current admin record logs in as root."""
        bad = []
        for tenant, host in sorted(self.tenants.items()):
            data = self.admin_record(tenant).data
            keys = [data[field] for field in keypair_store.PRIVATE_FIELDS if data.get(field)]
            if not any(self.can_login(key, "root", host["ip"]) for key in keys):
                bad.append(tenant)
        return bad

    def check(self, what):
        bad = self.invariant_violations()
        assert not bad, "after %s (seed %d): no key of the current Vault record logs in for %s" % (what, self.seed, bad)
        leaked = pem_files(self.started, self.private_key_lines(), exclude=(self.probe_dir,), also=(self.work,))
        assert not leaked, "after %s (seed %d): private key files left on the controller: %s" % (what, self.seed, leaked)

    def private_key_lines(self):
        """A line of every private key any version of our tenants' records ever held (the scan looks for them)."""
        lines = set()
        for tenant in self.tenants:
            for role in ("admin", "tenant"):
                path = "%s/%s_ssh" % (tenant, role)
                for version in range(1, int(self.client.metadata(self.mount, path)["current_version"]) + 1):
                    secret = self.client.read_or_none(self.mount, path, version=version)
                    for field in keypair_store.PRIVATE_FIELDS:
                        key = (secret.data if secret else {}).get(field) or ""
                        body = [line for line in key.splitlines() if line and "PRIVATE KEY" not in line]
                        # The first lines of an OpenSSH key are the same for every key of a type: take the
                        # ones that hold the private part.
                        lines.update(line.encode() for line in body[2:-1])
        return lines

    def current_keys_log_in(self, tenant):
        record = self.admin_record(tenant).data
        return self.can_login(record["private_key"], "root", self.tenants[tenant]["ip"])


def pem_files(since, key_lines, exclude=(), also=()):
    """Files changed since ``since`` under the controller's temp dirs that hold one of our tenants' private keys
    (``key_lines``: a line of each). Test sessions' own dirs (pytest's, the labs') and ``exclude`` are skipped;
    ``also`` are scanned besides (the runs' working dir, which lies in this session's pytest dir).
    """
    found = []
    for root in SCAN_ROOTS + tuple(also):
        for directory, subdirs, files in os.walk(root):
            subdirs[:] = [d for d in subdirs
                          if not (d.startswith(("pytest-of-", "pmt-", "pm-lab-")) or os.path.join(directory, d) in exclude)]
            for name in files:
                path = os.path.join(directory, name)
                try:
                    if os.lstat(path).st_mtime < since - 1 or not os.path.isfile(path) or os.path.islink(path):
                        continue
                    with open(path, "rb") as handle:
                        data = handle.read(1 << 20)
                    if b"PRIVATE KEY-----" in data and any(line in data for line in key_lines):
                        found.append(path)
                except OSError:
                    continue
    return found


@pytest.fixture(scope="module")
def fleet(lab, tmp_path_factory):
    work = str(tmp_path_factory.mktemp("faults"))
    fleet = Fleet(lab, work)
    print("fault injection seed: %d" % fleet.seed)
    made = []
    try:
        for index in range(HOSTS):
            host = lab.create_host("flt%d%s" % (index, uuid.uuid4().hex[:4]))
            made.append(host["name"])
            fleet.hosts.append(host)
            publics = []
            for number in range(TENANTS_PER_HOST):
                tenant = "flt%d%d%s" % (index, number, uuid.uuid4().hex[:6])
                fleet.tenants[tenant] = host
                fleet.client.write(fleet.mount, "%s/record" % tenant, {"vps_ip": host["ip"], "domain": "%s.example.test" % tenant},
                                   cas=0)
                for role in ("admin", "tenant"):
                    pair = ssh_keys.generate_keypair("ed25519", comment="penguinmails-%s-%s" % (tenant, role))
                    fleet.client.write(fleet.mount, "%s/%s_ssh" % (tenant, role),
                                       keypair_store.record_created(pair, keypair_store.utcnow(), 90), cas=0)
                    if role == "admin":
                        publics.append("%s penguinmails:%s:admin" % (pair.public_key.rsplit(" ", 1)[0], tenant))
            # The bootstrap: root accepts the tenants' admin keys from Vault, and nothing else.
            keys_file = host["root"] + "/fs/root/.ssh/authorized_keys"
            with open(keys_file, "w") as handle:
                handle.write("\n".join(publics) + "\n")
        first = fleet.play("rotate_all")
        assert first.returncode == 0, first.stdout[-5000:]
        for tenant in fleet.tenants:
            data = fleet.admin_record(tenant).data
            assert keypair_store.is_confirmed(data), tenant
            assert fleet.client.read(fleet.mount, "%s/record" % tenant).data["host_keys"]
        fleet.check("the bootstrap")
        yield fleet
    finally:
        for name in made:
            lab.destroy_host(name)


def test_sigkill_at_random_moments_never_locks_admin_out(fleet):
    tenants = sorted(fleet.tenants)
    runs = [
        ("rotate", lambda t: dict(tenant_id=t, force=True)),
        ("rotate_all", lambda t: dict(force=True, ssh_role="admin")),
        ("revoke", lambda t: dict(tenant_id=t)),
        ("regenerate", lambda t: dict(tenant_id=t, ssh_role="admin")),
    ]
    # How many tasks a whole run of each playbook starts: the kill moments are drawn from that range.
    lengths = {}
    for name, args in runs:
        tenant = fleet.rng.choice(tenants)
        full = fleet.play(name, **args(tenant))
        assert full.returncode == 0, full.stdout[-4000:]
        lengths[name] = full.stdout.count("\nTASK [")
        fleet.check("a whole %s run" % name)
    kills = 0
    for round_number in range(12):
        name, args = runs[round_number % len(runs)]
        tenant = fleet.rng.choice(tenants)
        moment = fleet.rng.randint(1, lengths[name])
        rc, output = fleet.kill_at_task(name, moment, **args(tenant))
        kills += rc == -signal.SIGKILL
        fleet.check("%s killed at task %d of %d (round %d)" % (name, moment, lengths[name], round_number))
    assert kills >= 10, "only %d runs were killed before they ended" % kills
    # A plain rerun converges: every current key logs in, its fallback is gone.
    final = fleet.play("rotate_all")
    assert final.returncode == 0, final.stdout[-5000:]
    for tenant in tenants:
        data = fleet.admin_record(tenant).data
        assert fleet.current_keys_log_in(tenant) and "fallback_private_key" not in data, tenant


def test_a_tenant_whose_vault_path_is_denied_fails_alone(fleet):
    tenants = sorted(fleet.tenants)
    denied = fleet.rng.choice(tenants)
    policy = ('path "%(m)s/*" { capabilities = ["create", "read", "update", "patch", "list"] }\n'
              'path "%(m)s/data/%(t)s/*" { capabilities = ["read"] }\n') % {"m": fleet.mount, "t": denied}
    name = "deny-%s" % denied
    fleet.client.hvac.sys.create_or_update_policy(name=name, policy=policy)
    token = fleet.client.hvac.auth.token.create(policies=[name], ttl="1h")["auth"]["client_token"]
    before = {t: fleet.admin_record(t) for t in tenants}
    result = fleet.play("rotate_all", token=token, force=True)
    assert result.returncode == 2, result.stdout[-4000:]
    assert "%s (vault admin)" % denied in result.stdout and "permission denied" in result.stdout
    assert token not in result.stdout
    for tenant in tenants:
        after = fleet.admin_record(tenant)
        if tenant == denied:
            assert after.version == before[tenant].version
        else:  # every other tenant was rotated, installed and confirmed
            assert after.data["fingerprint"] != before[tenant].data["fingerprint"]
            assert keypair_store.is_confirmed(after.data) and fleet.current_keys_log_in(tenant)
    fleet.check("a rotate_all with one denied tenant")
    events = [json.loads(line) for line in open(fleet.audit_file) if line.strip()]
    failures = [e for e in events if e["action"] == "ssh_key_rotated" and e["status"] == "failure" and e["tenantId"] == denied]
    assert failures and failures[-1]["details"]["stage"] == "vault"
    # The same tenant, once allowed again, is rotated by the next run.
    assert fleet.play("rotate", tenant_id=denied, force=True).returncode == 0
    assert fleet.current_keys_log_in(denied)


def test_two_concurrent_rotations_of_one_tenant_keep_access(fleet):
    tenant = fleet.rng.choice(sorted(fleet.tenants))
    runs = [fleet.start("rotate", tenant_id=tenant, force=True), fleet.start("rotate", tenant_id=tenant, force=True)]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    assert all(run.returncode in (0, 2) for run in runs), outputs
    fleet.check("two concurrent rotations of %s" % tenant)
    again = fleet.play("rotate", tenant_id=tenant)
    assert again.returncode == 0, again.stdout[-4000:]
    assert fleet.current_keys_log_in(tenant)
    fleet.check("the rerun after two concurrent rotations")


def test_forced_rotations_without_host_contact_keep_the_confirmed_key(fleet):
    tenant = fleet.rng.choice(sorted(fleet.tenants))
    confirmed = fleet.admin_record(tenant).data
    for attempt in (1, 2):
        result = fleet.play("rotate", tenant_id=tenant, force=True, rotate_vault_only=True)
        assert result.returncode == 0, result.stdout[-4000:]
        data = fleet.admin_record(tenant).data
        assert not fleet.current_keys_log_in(tenant)
        assert data["fallback_private_key"] == confirmed["private_key"]
        fleet.check("forced rotation %d of %s without host contact" % (attempt, tenant))
    result = fleet.play("rotate", tenant_id=tenant)
    assert result.returncode == 0, result.stdout[-4000:]
    assert fleet.current_keys_log_in(tenant) and "fallback_private_key" not in fleet.admin_record(tenant).data
    assert not fleet.can_login(confirmed["private_key"], "root", fleet.tenants[tenant]["ip"]) or \
        confirmed["public_key"] in [g["public_key"] for g in fleet.admin_record(tenant).data.get("grace_keys", [])]
