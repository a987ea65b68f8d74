# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""SSH certificate mode end to end: the lab's real OpenBao SSH engine as user CA and host CA, real sshd in lab hosts.

The module uses KV and SSH engine mounts of its own (set up with roles/vault_setup's ssh_ca tasks), so other tests
of the session never see its tenants, CA keys or revocations. Logins are tried with the OpenSSH client: sshd decides,
and its log says why it refused. Certificates the test signs for itself use a key in the test's own directory.
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

from ansible_collections.penguinmails.vps.plugins.module_utils import keypair_store, ssh_agent, ssh_ca, ssh_keys
from ansible_collections.penguinmails.vps.plugins.module_utils import ssh_certificates as sc
from ansible_collections.penguinmails.vps.plugins.module_utils import vault_client as vc
from ansible_collections.penguinmails.vps.plugins.module_utils.validators import tenant_account
from tests.support.ansible_run import REPO, VENV_BIN, ansible_env, ensure_collection_link, run_playbook
from tests.support.wait import wait_until

PLAYBOOKS = os.path.join(REPO, "playbooks")
PRINCIPAL = "penguinmails-admin"
PROBE = ["-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10",
         "-o", "LogLevel=ERROR", "-o", "ControlPath=none"]


class Certs(object):
    """The module's mounts, its playbook runner and its probes."""

    def __init__(self, lab, work):
        self.lab, self.work = lab, work
        suffix = uuid.uuid4().hex[:6]
        self.mount, self.user_ca, self.host_ca = "vpscrt%s" % suffix, "sshu%s" % suffix, "sshh%s" % suffix
        self.client = vc.get_client({"url": lab["vault"]["addr"], "token": lab["vault"]["token"]})
        self.client.hvac.sys.enable_secrets_engine("kv", path=self.mount, options={"version": "2"})
        self.probe_dir = os.path.join(work, "probe")
        os.makedirs(self.probe_dir, mode=0o700)
        self.audit_file = os.path.join(work, "audit.jsonl")
        self.inventory = os.path.join(work, "inventory.ini")
        with open(self.inventory, "w") as handle:  # no VPS in it: the collection reaches them itself
            handle.write("localhost ansible_connection=local ansible_python_interpreter=%s\n" % os.path.join(VENV_BIN, "python"))
        self.seed = int(os.environ.get("PM_CERT_SEED") or random.SystemRandom().randrange(1 << 30))
        self.rng = random.Random(self.seed)
        self.hosts = []

    def extra(self, **extra):
        extra.setdefault("penguinmails_vault_vps_mount", self.mount)
        extra.setdefault("penguinmails_ssh_user_ca_mount", self.user_ca)
        extra.setdefault("penguinmails_ssh_host_ca_mount", self.host_ca)
        extra.setdefault("penguinmails_python_interpreter", "/usr/bin/python3")
        return extra

    def env(self, **extra):
        return ansible_env(dict(self.lab.env(), ANSIBLE_CALLBACKS_ENABLED="penguinmails.vps.audit",
                                PENGUINMAILS_AUDIT_FILE=self.audit_file, PENGUINMAILS_AUDIT_USER="cert-test", **extra))

    def command(self, playbook, **extra):
        return [os.path.join(VENV_BIN, "ansible-playbook"), "-i", self.inventory, os.path.join(PLAYBOOKS, playbook + ".yml"),
                "-e", json.dumps(self.extra(**extra))]

    def play(self, playbook, expect_rc=0, **extra):
        ensure_collection_link()
        result = subprocess.run(self.command(playbook, **extra), env=self.env(), capture_output=True, text=True,
                                timeout=900, cwd=self.work, check=False, stdin=subprocess.DEVNULL)
        output = result.stdout + result.stderr
        if expect_rc is not None:
            assert result.returncode == expect_rc, output[-6000:]
        assert "Traceback" not in output and "PRIVATE KEY-----" not in output, output[-3000:]
        return result

    def own_play(self, text, expect_rc=0, env=None, **extra):
        """Run a playbook of the test's own (it may include the collection's task files by path)."""
        result = run_playbook(text, env=dict(self.lab.env(), ANSIBLE_CALLBACKS_ENABLED="penguinmails.vps.audit",
                                             PENGUINMAILS_AUDIT_FILE=self.audit_file, PENGUINMAILS_AUDIT_USER="cert-test",
                                             **(env or {})),
                              args=["-e", json.dumps(self.extra(**extra))], inventory=self.inventory, timeout=900,
                              tmp_path=self.work)
        output = result.stdout + result.stderr
        if expect_rc is not None:
            assert result.returncode == expect_rc, output[-6000:]
        return result

    def kill_at_task(self, playbook, task_number, **extra):
        """Run ``playbook`` and SIGKILL its process group when its ``task_number``-th task starts."""
        ensure_collection_link()
        proc = subprocess.Popen(self.command(playbook, **extra), env=self.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, cwd=self.work, start_new_session=True,
                                stdin=subprocess.DEVNULL)
        seen, output = 0, []
        for line in proc.stdout:
            output.append(line)
            if line.startswith("TASK ["):
                seen += 1
                if seen == task_number:
                    os.killpg(proc.pid, signal.SIGKILL)
                    break
        proc.wait(timeout=600)
        proc.stdout.close()
        return proc.returncode, "".join(output)

    def audit_events(self, action=None):
        if not os.path.exists(self.audit_file):
            return []
        events = [json.loads(line) for line in open(self.audit_file) if line.strip()]
        return [event for event in events if action is None or event["action"] == action]

    # -- the CA, as the test sees it -----------------------------------------------------------
    def ca(self, mount=None):
        return ssh_ca.CertificateAuthority(self.client, mount or self.user_ca)

    def probe_key(self):
        path = os.path.join(self.probe_dir, uuid.uuid4().hex[:12])
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "probe", "-f", path], check=True)
        return path

    def signed_key(self, principal=PRINCIPAL, role="admin", ttl=0):
        """A key of the test's own and a certificate Vault signs for it now (``path``, parsed certificate)."""
        path = self.probe_key()
        with open(path + ".pub") as handle:
            cert = self.ca().sign(role, handle.read(), cert_type="user", principals=[principal], ttl=ttl)
        with open(path + "-cert.pub", "w") as handle:
            handle.write(cert["certificate"] + "\n")
        return path, cert

    def login(self, key_path, user, ip, options=()):
        result = subprocess.run(["ssh", "-i", key_path] + PROBE + list(options) + ["%s@%s" % (user, ip), "id -un"],
                                capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False,
                                env={k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"})
        return result.returncode == 0 and result.stdout.strip() == user

    def key_login(self, private_key, user, ip):
        path = os.path.join(self.probe_dir, uuid.uuid4().hex)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(private_key)
        try:
            return self.login(path, user, ip)
        finally:
            os.unlink(path)

    def record(self, tenant):
        return self.client.read(self.mount, "%s/record" % tenant).data

    def admin(self, tenant):
        return self.client.read(self.mount, "%s/admin_ssh" % tenant)

    def reaches(self, tenant, ip):
        """The reachability invariant with modes: the mode the record names logs in as root now."""
        if ssh_ca.tenant_mode(self.record(tenant)) == "certificates":
            path, _cert = self.signed_key()
            return self.login(path, "root", ip)
        data = self.admin(tenant).data
        return any(self.key_login(data[field], "root", ip) for field in keypair_store.PRIVATE_FIELDS if data.get(field))


def sshd_log(host):
    with open(host["sshd_log"], errors="replace") as handle:
        return handle.read()


@pytest.fixture(scope="module")
def certs(lab, tmp_path_factory):
    work = str(tmp_path_factory.mktemp("certs"))
    env = Certs(lab, work)
    print("certificate test seed: %d" % env.seed)
    # The CAs, as roles/vault_setup sets them up (its ssh_ca tasks alone: the lab's policies stay as they are).
    setup = """
        - hosts: localhost
          gather_facts: false
          tasks:
            - name: The SSH CAs
              ansible.builtin.include_role:
                name: penguinmails.vps.vault_setup
                tasks_from: ssh_ca
              vars:
                vault_setup_ssh_user_ca_mount: %s
                vault_setup_ssh_host_ca_mount: %s
                vault_setup_tenants: [{tenant_id: crtTenant}]
        """ % (env.user_ca, env.host_ca)
    first = env.own_play(setup)
    assert "changed=0" not in first.stdout, first.stdout[-3000:]
    again = env.own_play(setup)
    assert "changed=0" in again.stdout, again.stdout[-3000:]  # a second run changes nothing
    try:
        yield env
    finally:
        for name in env.hosts:
            lab.destroy_host(name)


def bootstrap(certs, lab, name, tenant=None):
    """A lab host whose root accepts only the tenant's admin key from Vault (installed and confirmed by rotate)."""
    host = lab.create_host("%s%s" % (name, uuid.uuid4().hex[:4]))
    certs.hosts.append(host["name"])
    tenant = tenant or "crt%s%s" % (name[:3], uuid.uuid4().hex[:6])
    certs.client.write(certs.mount, "%s/record" % tenant, {"vps_ip": host["ip"], "domain": "%s.example.test" % tenant},
                       cas=0)
    pair = None
    for role in ("admin", "tenant"):
        pair_role = ssh_keys.generate_keypair("ed25519", comment="penguinmails-%s-%s" % (tenant, role))
        certs.client.write(certs.mount, "%s/%s_ssh" % (tenant, role),
                           keypair_store.record_created(pair_role, keypair_store.utcnow(), 90), cas=0)
        if role == "admin":
            pair = pair_role
    with open(os.path.join(host["root"], "fs", "root", ".ssh", "authorized_keys"), "w") as handle:
        handle.write("%s penguinmails:%s:admin\n" % (pair.public_key.rsplit(" ", 1)[0], tenant))
    certs.play("rotate", tenant_id=tenant)  # installs and confirms what Vault holds
    assert keypair_store.is_confirmed(certs.admin(tenant).data)
    return host, tenant


@pytest.fixture(scope="module")
def cert_tenant(certs, lab):
    """A tenant moved to certificate mode (by the first test, or here)."""
    host, tenant = bootstrap(certs, lab, "crtm")
    certs.play("ssh_auth", tenant_id=tenant, ssh_auth="certificates")
    return host, tenant


# ---------------------------------------------------------------------------------------------------
def test_keys_to_certificates_to_keys_never_loses_access(certs, lab):
    host, tenant = bootstrap(certs, lab, "mode")
    ip = host["ip"]
    stored = certs.admin(tenant).data
    lengths = {}

    def check(what):
        assert certs.reaches(tenant, ip), "after %s (seed %d): the mode the record names does not reach the host" % (
            what, certs.seed)

    def to_certificates_done():
        record, admin = certs.record(tenant), certs.admin(tenant).data
        assert record["ssh_auth"] == "certificates"
        assert admin["state"] == "revoked" and not any(admin.get(f) for f in keypair_store.PRIVATE_FIELDS)
        assert not certs.key_login(stored["private_key"], "root", ip)  # the stored key left the host
        path, cert = certs.signed_key()
        assert certs.login(path, "root", ip)
        assert "serial %d" % cert["serial"] in sshd_log(host)
        authorized = lab.host_exec(host["name"], ["cat", "/root/.ssh/authorized_keys"]).stdout
        assert not [line for line in authorized.splitlines() if ":admin" in line and not line.startswith("#")], authorized
        # the host key is vouched for by the host CA: strict checking with only the @cert-authority line
        known = os.path.join(certs.probe_dir, "ca-only-%s" % uuid.uuid4().hex[:6])
        with open(known, "w") as handle:
            for key in certs.ca(certs.host_ca).public_keys():
                handle.write("@cert-authority %s %s\n" % (ip, key))
        assert certs.login(path, "root", ip, ["-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + known,
                                              "-o", "GlobalKnownHostsFile=/dev/null"])

    def to_keys_done():
        record, admin = certs.record(tenant), certs.admin(tenant).data
        assert record["ssh_auth"] == "keys"
        assert admin["state"] == "active" and keypair_store.is_confirmed(admin)
        assert certs.key_login(admin["private_key"], "root", ip)
        path, cert = certs.signed_key()
        assert not certs.login(path, "root", ip)  # root stopped accepting this tenant's admin certificates
        wait_until(lambda: "serial %d" % cert["serial"] in sshd_log(host), 10, "sshd to log the refused certificate")

    # whole runs first: how many tasks each starts (the kill moments are drawn from that range)
    for target, done in (("certificates", to_certificates_done), ("keys", to_keys_done)):
        result = certs.play("ssh_auth", tenant_id=tenant, ssh_auth=target)
        lengths[target] = result.stdout.count("\nTASK [")
        check("a whole move to %s" % target)
        done()
    # then moves killed at random moments, each checked, then finished by the same command
    kills = 0
    for target, done in (("certificates", to_certificates_done), ("keys", to_keys_done)):
        for attempt in range(2):
            moment = certs.rng.randint(2, lengths[target])
            rc, _output = certs.kill_at_task("ssh_auth", moment, tenant_id=tenant, ssh_auth=target)
            kills += rc == -signal.SIGKILL
            check("a move to %s killed at task %d of %d" % (target, moment, lengths[target]))
        certs.play("ssh_auth", tenant_id=tenant, ssh_auth=target)
        check("the rerun of the move to %s" % target)
        done()
    assert kills >= 3, "only %d of 4 runs were killed before they ended" % kills
    moves = [e for e in certs.audit_events("ssh_auth_changed") if e["tenantId"] == tenant and e["status"] == "success"]
    assert {(e["details"]["new_mode"]) for e in moves} == {"certificates", "keys"}
    signed = [e for e in certs.audit_events("ssh_certificate_signed") if tenant in e["details"].get("tenants", [])]
    assert signed and all(e["details"]["principals"] == [PRINCIPAL] and int(e["details"]["ttl"]) <= 600
                          and e["details"]["serial"].isdigit() and e["userId"] == "cert-test" for e in signed)


def test_a_play_connects_with_the_certificate_and_no_admin_private_key_exists_but_in_the_agent(certs, cert_tenant):
    host, tenant = cert_tenant
    out = os.path.join(certs.work, "agent-%s.json" % uuid.uuid4().hex[:6])
    signed_before = len(certs.audit_events("ssh_certificate_signed"))
    # Ansible's temporary dirs of this run only (other sessions share the default ones)
    local_tmp, remote_tmp = os.path.join(certs.work, "local-tmp"), os.path.join(certs.work, "remote-tmp")
    certs.own_play("""
        - hosts: localhost
          gather_facts: false
          tasks:
            - name: Reach the tenant's VPS (certificate mode, from its record)
              ansible.builtin.include_tasks: %(tasks)s/admin_targets.yml
              vars:
                admin_targets: [{tenant_id: %(tenant)s, address: %(ip)s}]
                admin_targets_group: certhosts
        - hosts: certhosts
          gather_facts: false
          tasks:
            - name: Run a command as root on the VPS
              ansible.builtin.command: id -un
              register: r_whoami
              changed_when: false
            - name: A second task, a second connection, the same certificate
              ansible.builtin.ping:
            - name: What the agent holds
              ansible.builtin.command: ssh-add -L
              environment:
                SSH_AUTH_SOCK: "{{ hostvars['localhost'].penguinmails_ssh_agent.socket }}"
              delegate_to: localhost
              register: r_agent
              changed_when: false
            - name: Files of the run on the controller that hold a private key (agent dir, Ansible's temp dirs)
              ansible.builtin.command:
                argv: [grep, -rlE, -e, "PRIVATE KE[Y]-----", "{{ hostvars['localhost'].penguinmails_ssh_agent.directory }}",
                       "%(local_tmp)s", "%(remote_tmp)s"]
              delegate_to: localhost
              register: r_pem
              failed_when: r_pem.rc > 1 and r_pem.stdout | length > 0
              changed_when: false
            - name: The agent's directory
              ansible.builtin.find:
                paths: "{{ hostvars['localhost'].penguinmails_ssh_agent.directory }}"
                file_type: any
              delegate_to: localhost
              register: r_files
            - name: Keep the results
              ansible.builtin.copy:
                content: "{{ {'whoami': r_whoami.stdout, 'agent': r_agent.stdout_lines, 'pem': r_pem.stdout_lines,
                              'files': r_files.files | map(attribute='path') | map('basename') | list,
                              'cert': hostvars['localhost'].admin_targets_agent.certificate} | to_json }}"
                dest: %(out)s
                mode: "0600"
              delegate_to: localhost
        """ % {"tasks": os.path.join(PLAYBOOKS, "tasks"), "tenant": tenant, "ip": host["ip"], "out": out,
               "local_tmp": local_tmp, "remote_tmp": remote_tmp},
        # a control path of its own: no master connection of an earlier run is reused, this run authenticates
        env={"ANSIBLE_LOCAL_TEMP": local_tmp, "ANSIBLE_REMOTE_TMP": remote_tmp,
             "ANSIBLE_SSH_CONTROL_PATH_DIR": os.path.join(certs.work, "cp-%s" % uuid.uuid4().hex[:6])})
    with open(out) as handle:
        seen = json.load(handle)
    assert seen["whoami"] == "root"
    assert seen["pem"] == [], seen["pem"]
    kinds = sorted(line.split()[0] for line in seen["agent"])
    assert kinds == ["ssh-ed25519", "ssh-ed25519-cert-v01@openssh.com"], seen["agent"]  # the run's key, nothing stored
    assert all(name.endswith((".pub", ".known_hosts")) or name == "agent.sock" for name in seen["files"]), seen["files"]
    # Vault holds no admin private key in its current version; no earlier stored admin key logs in
    admin = certs.admin(tenant)
    assert admin.data["state"] == "revoked" and not any(admin.data.get(f) for f in keypair_store.PRIVATE_FIELDS)
    for version in range(1, admin.version + 1):
        old = certs.client.read(certs.mount, "%s/admin_ssh" % tenant, version=version).data
        for field in keypair_store.PRIVATE_FIELDS:
            if old.get(field):
                assert not certs.key_login(old[field], "root", host["ip"])
    # one signing for the run (two connections, two plays' worth of tasks), audited with what it allows
    signed = certs.audit_events("ssh_certificate_signed")[signed_before:]
    assert len(signed) == 1, signed
    details = signed[0]["details"]
    assert details["serial"] == seen["cert"]["serial"] and details["principals"] == [PRINCIPAL]
    assert 0 < int(details["ttl"]) <= 600 and details["key_id"].startswith("admin-") and details["cert_type"] == "user"
    accepted = [line for line in sshd_log(host).splitlines() if line.startswith("Accepted publickey for root")]
    assert any("CERT" in line and "serial %s" % details["serial"] in line for line in accepted), accepted


def test_the_certificate_is_refused_after_its_ttl(certs, cert_tenant):
    host, _tenant = cert_tenant
    key = sc.EphemeralKey()
    cert = certs.ca().sign("admin", key.public_key, principals=[PRINCIPAL], ttl=6)
    agent = ssh_agent.start(os.getpid(), lifetime=300, parent=certs.probe_dir)
    try:
        ssh_agent.add_ephemeral(agent, key, cert["certificate"], 300)  # the agent keeps it longer than its TTL
        cert_file = ssh_agent.write_public(agent, "c-cert.pub", cert["certificate"])

        def login():
            argv = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                    "-o", "IdentityAgent=" + agent["socket"], "-o", "IdentityFile=" + cert_file,
                    "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ControlPath=none",
                    "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", "root@%s" % host["ip"], "id -un"]
            result = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)
            return result.returncode == 0 and result.stdout.strip() == "root"

        assert login()
        wait_until(lambda: not login(), 90, "sshd to refuse the certificate after its TTL", interval=0.5)
        assert time.time() >= cert["valid_before"]
        wait_until(lambda: "expired" in sshd_log(host).split("serial %d" % cert["serial"], 1)[-1], 10,
                   "sshd to log the expired certificate")
    finally:
        ssh_agent.stop(agent)


def test_a_principal_not_allowed_for_the_account_is_refused(certs, lab):
    host, tenant = bootstrap(certs, lab, "prnc", tenant="crtTenant")  # the tenant with a Vault role of its own
    certs.play("ssh_auth", tenant_id=tenant, ssh_auth="certificates")
    account = tenant_account(tenant)
    # Vault signs nothing the role does not allow
    path = certs.probe_key()
    with open(path + ".pub") as handle:
        public = handle.read()
    for role, principal in (("admin", "root"), ("admin", account), ("tenant-crtTenant", PRINCIPAL),
                            ("tenant-crtTenant", "root")):
        with pytest.raises(vc.VaultError) as info:
            certs.ca().sign(role, public, principals=[principal])
        assert "not a valid value for valid_principals" in str(info.value)
    # sshd takes a certificate only for an account whose principals file names it
    tenant_key, tenant_cert = certs.signed_key(principal=account, role="tenant-crtTenant")
    assert certs.login(tenant_key, account, host["ip"])
    assert not certs.login(tenant_key, "root", host["ip"])
    admin_key, _admin_cert = certs.signed_key()
    assert not certs.login(admin_key, account, host["ip"])
    assert certs.login(admin_key, "root", host["ip"])
    log = sshd_log(host)
    assert "serial %d" % tenant_cert["serial"] in log
    refused = [line for line in log.splitlines() if "for root" in line and "serial %d" % tenant_cert["serial"] in line]
    assert not any(line.startswith("Accepted") for line in refused), refused


def test_a_serial_put_in_the_krl_is_refused_at_once(certs, cert_tenant):
    host, _tenant = cert_tenant
    kept_key, _kept = certs.signed_key()
    revoked_key, revoked = certs.signed_key()
    assert certs.login(revoked_key, "root", host["ip"]) and certs.login(kept_key, "root", host["ip"])
    hex_serial = "0x%x" % revoked["serial"]  # as Vault prints it
    result = certs.play("ssh_ca", ca_operation="revoke", serials=hex_serial, reason="laptop stolen")
    assert "hosts updated 1" in result.stdout or "hosts updated" in result.stdout
    # no reload, no wait: sshd reads the KRL at the next login
    assert not certs.login(revoked_key, "root", host["ip"])
    assert certs.login(kept_key, "root", host["ip"])
    log = sshd_log(host).split("serial %d" % revoked["serial"])
    assert any("revoked" in part.lower() for part in log[1:]) or "revoked" in sshd_log(host).lower()
    event = certs.audit_events("ssh_certificate_revoked")[-1]
    assert event["status"] == "success" and event["details"]["serials"] == [str(revoked["serial"])]
    assert event["details"]["reason"] == "laptop stolen" and int(event["details"]["host_count"]) >= 1
    # a second revocation of the same serial changes nothing in Vault
    version = certs.client.read(certs.mount, "_ssh_ca/%s" % certs.user_ca).version
    certs.play("ssh_ca", ca_operation="revoke", serials=[str(revoked["serial"])])
    assert certs.client.read(certs.mount, "_ssh_ca/%s" % certs.user_ca).version == version


def test_a_new_vps_with_a_host_certificate_is_trusted_through_the_ca_and_a_forged_host_key_is_refused(certs, lab):
    host = lab.create_host("crtn%s" % uuid.uuid4().hex[:4])
    certs.hosts.append(host["name"])
    tenant = "crtnew%s" % uuid.uuid4().hex[:6]
    certs.client.write(certs.mount, "%s/record" % tenant, {"vps_ip": host["ip"], "ssh_auth": "certificates"}, cas=0)
    # The first contact of a new VPS (here over the lab's own key, as the provider's image would be reached): the
    # role trusts the user CA and has the host CA certify the host keys. The record holds no host key.
    inventory = lab.inventory(certs.work, [host], group="newvps")
    setup = run_playbook("""
        - hosts: newvps
          gather_facts: false
          roles:
            - role: penguinmails.vps.ssh_access
              ssh_access_tenant_id: %s
              ssh_access_roles: [admin]
        """ % tenant, env=dict(lab.env(), ANSIBLE_CALLBACKS_ENABLED="penguinmails.vps.audit",
                               PENGUINMAILS_AUDIT_FILE=certs.audit_file),
                         args=["-e", json.dumps(certs.extra())], inventory=inventory, tmp_path=certs.work)
    assert setup.returncode == 0, setup.stdout[-5000:]
    assert "host_keys" not in certs.record(tenant)
    host_events = [e for e in certs.audit_events("ssh_host_certificate_signed") if e["tenantId"] == tenant]
    assert host_events and all(e["details"]["principals"] == [host["ip"]] for e in host_events)
    # Strict host-key checking, nothing recorded: the known_hosts of the run holds only @cert-authority lines.
    out = os.path.join(certs.work, "kh-%s.json" % uuid.uuid4().hex[:6])
    play = """
        - hosts: localhost
          gather_facts: false
          tasks:
            - name: Reach the new VPS
              ansible.builtin.include_tasks: %(tasks)s/admin_targets.yml
              vars:
                admin_targets: [{tenant_id: %(tenant)s, address: %(ip)s}]
                admin_targets_group: newhosts
            - name: Keep what the controller trusted
              ansible.builtin.copy:
                content: "{{ {'errors': admin_targets_errors,
                              'known_hosts': lookup('file', admin_targets_agent.hosts['%(ip)s'].known_hosts) if admin_targets_errors | length == 0 else '',
                              'source': admin_targets_agent.tenants['%(tenant)s'].host_key_source | default('')} | to_json }}"
                dest: %(out)s
                mode: "0600"
        - hosts: newhosts
          gather_facts: false
          tasks:
            - name: Run a command on the new VPS
              ansible.builtin.command: id -un
              changed_when: false
              when: penguinmails_target is defined
        """ % {"tasks": os.path.join(PLAYBOOKS, "tasks"), "tenant": tenant, "ip": host["ip"], "out": out}
    certs.own_play(play, penguinmails_host_key_policy="strict")
    with open(out) as handle:
        seen = json.load(handle)
    lines = [line for line in seen["known_hosts"].splitlines() if line.strip()]
    assert seen["errors"] == [] and seen["source"] == "certificate", seen
    assert lines and all(line.startswith("@cert-authority %s " % host["ip"]) for line in lines), lines
    assert "host_keys" not in certs.record(tenant)
    # A forged host key: the VPS presents another key, certified by a CA of the attacker's.
    forged_ca = certs.probe_key()
    lab.host_exec(host["name"], ["sh", "-c", "rm -f /etc/ssh/ssh_host_*; ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key"],
                  check=True)
    forged_pub = os.path.join(certs.probe_dir, "forged_host.pub")
    with open(forged_pub, "w") as handle:
        handle.write(lab.host_exec(host["name"], ["cat", "/etc/ssh/ssh_host_ed25519_key.pub"]).stdout)
    subprocess.run(["ssh-keygen", "-q", "-s", forged_ca, "-h", "-I", "forged", "-n", host["ip"], forged_pub], check=True)
    with open(forged_pub[:-4] + "-cert.pub") as handle:
        lab.host_exec(host["name"], ["sh", "-c", "cat > /etc/ssh/ssh_host_ed25519_key-cert.pub"], input=handle.read(), check=True)
    lab.host_exec(host["name"], ["sh", "-c", "sed -i '/ecdsa/d' /etc/ssh/sshd_config && "
                                 "printf 'HostCertificate /etc/ssh/ssh_host_ed25519_key-cert.pub\\n' "
                                 "> /etc/ssh/sshd_config.d/40-penguinmails-host-certificate.conf && /usr/sbin/sshd -t && "
                                 "kill -HUP $(cat /run/sshd.pid)"], check=True)
    forged_blob = open(forged_pub[:-4] + "-cert.pub").read().split()[1]

    def presents_forged():
        scan = subprocess.run(["ssh-keyscan", "-c", "-T", "2", host["ip"]], capture_output=True, text=True, check=False)
        return forged_blob in scan.stdout

    wait_until(presents_forged, 30, "sshd to present the forged certificate", interval=0.2)
    refused = certs.own_play(play, expect_rc=None, penguinmails_host_key_policy="strict")
    with open(out) as handle:
        seen = json.load(handle)
    assert [e["tenant_id"] for e in seen["errors"]] == [tenant], seen
    assert "no host key recorded" in seen["errors"][0]["error"]
    assert "host_keys" not in certs.record(tenant), "a forged key was recorded"
    # and ssh itself, given the CA line alone, refuses the forged host key
    path, _cert = certs.signed_key()
    known = os.path.join(certs.probe_dir, "ca-only-forged")
    with open(known, "w") as handle:
        for key in certs.ca(certs.host_ca).public_keys():
            handle.write("@cert-authority %s %s\n" % (host["ip"], key))
    strict = ["ssh", "-i", path, "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
              "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + known, "-o", "GlobalKnownHostsFile=/dev/null",
              "-o", "ConnectTimeout=10", "-o", "ControlPath=none", "root@%s" % host["ip"], "true"]
    result = subprocess.run(strict, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)
    assert result.returncode != 0 and "Host key verification failed" in result.stderr, result.stderr
    assert "PRIVATE KEY-----" not in refused.stdout + refused.stderr


def test_ca_rotation_keeps_both_keys_trusted_during_the_overlap(certs, cert_tenant):
    host, tenant = cert_tenant
    ip = host["ip"]
    user_before = certs.ca().issuers()
    assert len(user_before) == 1
    old_key, old_cert = certs.signed_key()  # signed by the key that signs now

    def trusted_on_host():
        text = certs.lab.host_exec(host["name"], ["cat", "/etc/ssh/penguinmails/user_ca_keys"]).stdout
        return sorted(line.split()[1] for line in text.splitlines() if line.strip())

    def host_cert_ca():
        text = certs.lab.host_exec(host["name"], ["cat", "/etc/ssh/ssh_host_ed25519_key-cert.pub"]).stdout
        return sc.parse_certificate(text)["ca_fingerprint"]

    certs.play("ssh_ca", ca_operation="rotate")
    user_keys = certs.ca().issuers()
    host_keys = certs.ca(certs.host_ca).issuers()
    assert len(user_keys) == 2 and len(host_keys) == 2
    assert trusted_on_host() == sorted(issuer["public_key"].split()[1] for issuer in user_keys)
    assert certs.login(old_key, "root", ip)
    host_ca_before = host_cert_ca()

    certs.play("ssh_ca", ca_operation="switch")
    new_key, new_cert = certs.signed_key()
    assert new_cert["ca_fingerprint"] != old_cert["ca_fingerprint"]
    assert certs.login(new_key, "root", ip) and certs.login(old_key, "root", ip)  # the overlap: both trusted
    assert host_cert_ca() != host_ca_before  # the host certificate was signed again with the new host CA key
    assert certs.play("ssh_ca", ca_operation="refresh").returncode == 0  # the controller trusts the new host cert

    certs.play("ssh_ca", ca_operation="retire")
    assert len(certs.ca().issuers()) == 1 and certs.ca().issuers()[0]["fingerprint"] == new_cert["ca_fingerprint"]
    assert trusted_on_host() == [certs.ca().issuers()[0]["public_key"].split()[1]]
    assert not certs.login(old_key, "root", ip)  # the retired CA key's certificates are refused
    assert certs.login(new_key, "root", ip)
    assert certs.reaches(tenant, ip)
    steps = [e["details"]["step"] for e in certs.audit_events("ssh_ca_rotated") if e["status"] == "success"]
    assert steps[-3:] == ["added", "switched", "retired"]


def test_stored_tenant_keys_keep_rotating_for_a_tenant_in_certificate_mode(certs, cert_tenant, lab):
    host, tenant = cert_tenant
    account = tenant_account(tenant)
    before = certs.client.read(certs.mount, "%s/tenant_ssh" % tenant).data
    result = certs.play("rotate", tenant_id=tenant, force=True)
    after = certs.client.read(certs.mount, "%s/tenant_ssh" % tenant).data
    assert after["public_key"] != before["public_key"] and after["grace_public_key"] == before["public_key"]
    assert certs.key_login(after["private_key"], account, host["ip"])  # installed and verified through the certificate
    admin = certs.admin(tenant).data
    assert admin["state"] == "revoked" and not any(admin.get(f) for f in keypair_store.PRIVATE_FIELDS)  # not brought back
    authorized = lab.host_exec(host["name"], ["cat", "/root/.ssh/authorized_keys"]).stdout
    assert not [line for line in authorized.splitlines() if ":admin" in line and not line.startswith("#")], authorized
    path, _cert = certs.signed_key()
    assert certs.login(path, "root", host["ip"])
    assert "could not be rotated: none" in result.stdout
