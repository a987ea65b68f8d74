# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""migrate for a tenant in SSH certificate mode (issue 17), in the lab: the real OpenBao SSH engine as user CA and
host CA, the Hostwinds simulator building real sshd hosts, BIND9 and the mail daemons as in test_migrate.py.

The tenant is seeded as test_migrate.py seeds one (stored keys), moved to certificate mode by the collection's own
playbook (ssh_auth), then migrated (reason=upgrade). The new VPS must trust the user CA, accept the admin principal
for root, hold the KRL and present a host certificate for its own address, and root keeps no stored admin key. A
later play reaches it with strict host-key checking and a known_hosts that holds only the @cert-authority line; a
forged host key at that address is refused, by that play and by the collection's own connection (record + CA).
The CA mounts are the test's own (set up by roles/vault_setup's ssh_ca tasks), so no other test sees them.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest

from ansible_collections.penguinmails.vps.plugins.module_utils import ssh_ca
from ansible_collections.penguinmails.vps.plugins.module_utils import ssh_certificates as sc
from ansible_collections.penguinmails.vps.plugins.module_utils.validators import tenant_account
from tests.lab import seed
from tests.support.ansible_run import REPO, run_playbook
from tests.support.wait import wait_until

PRINCIPAL = "penguinmails-admin"
TASKS = os.path.join(REPO, "playbooks", "tasks")


@pytest.fixture(scope="module")
def ca_mounts(lab, tmp_path_factory):
    """User and host CA mounts of this module, as roles/vault_setup makes them."""
    work = str(tmp_path_factory.mktemp("migcerts-ca"))
    suffix = uuid.uuid4().hex[:6]
    mounts = {"penguinmails_ssh_user_ca_mount": "msshu%s" % suffix, "penguinmails_ssh_host_ca_mount": "msshh%s" % suffix}
    setup = run_playbook("""
        - hosts: localhost
          gather_facts: false
          tasks:
            - name: The SSH CAs
              ansible.builtin.include_role:
                name: penguinmails.vps.vault_setup
                tasks_from: ssh_ca
              vars:
                vault_setup_ssh_user_ca_mount: %(penguinmails_ssh_user_ca_mount)s
                vault_setup_ssh_host_ca_mount: %(penguinmails_ssh_host_ca_mount)s
        """ % mounts, env=lab.env(), tmp_path=work)
    assert setup.returncode == 0, (setup.stdout + setup.stderr)[-4000:]
    return mounts


@pytest.fixture()
def workdir(tmp_path):
    os.chmod(str(tmp_path), 0o700)
    return str(tmp_path)


@pytest.fixture()
def tenant(lab):
    made = seed.seed_tenant(lab)
    yield made
    for item in seed.instances(lab):
        if item["srvrname"].startswith("pm-%s-" % made.tenant_id):
            seed.hostwinds(lab, "terminate", serviceid=item["serviceid"])


def host_fs(lab, lab_host, inside):
    return os.path.join(lab.state_dir, "hosts", lab_host, "fs", inside.lstrip("/"))


def admin_versions(lab, tenant_id):
    """Every version of the tenant's stored admin key record (oldest first)."""
    client = seed.vault(lab)
    path = "%s/admin_ssh" % tenant_id
    current = int(client.metadata("vps", path)["current_version"])
    return [client.read_or_none("vps", path, version=number).data for number in range(1, current + 1)
            if client.read_or_none("vps", path, version=number)]


def host_ca_lines(lab, mounts, ip):
    client = seed.vault(lab)
    keys = ssh_ca.CertificateAuthority(client, mounts["penguinmails_ssh_host_ca_mount"]).public_keys()
    assert keys
    return ["@cert-authority %s %s" % (ip, sc.key_line(sc.public_key_blob(key))) for key in keys]


# A play of the operator's: the run certificate from the collection's agent, the host key checked with strict
# checking against (a) a known_hosts of the test's that holds only the @cert-authority line, (b) the collection's
# own known_hosts (the record's keys and the host CA). Each host's answer (or refusal) is written to OUT.<host>.
LATER_PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: The run certificate and the tenant's host (certificate mode, from the record)
      ansible.builtin.include_tasks: %(tasks)s/admin_targets.yml
      vars:
        admin_targets: [{tenant_id: %(tenant)s, address: %(ip)s}]
        admin_targets_group: collection_way
    - name: The same connection, but a known_hosts with only the @cert-authority line
      ansible.builtin.add_host:
        name: ca_only
        groups: ca_only_way
        ansible_host: %(ip)s
        ansible_user: root
        ansible_host_key_checking: true
        ansible_python_interpreter: /usr/bin/python3
        ansible_ssh_common_args: >-
          {{ admin_targets_agent.hosts['%(ip)s'].ssh_args
             | replace(admin_targets_agent.hosts['%(ip)s'].known_hosts, '%(known)s') }} -o GlobalKnownHostsFile=/dev/null
      when: admin_targets_errors | length == 0
- hosts: ca_only_way:collection_way
  gather_facts: false
  ignore_unreachable: true
  tasks:
    - name: Who am I on the new VPS
      ansible.builtin.command: id -un
      changed_when: false
      register: whoami
      when: inventory_hostname != 'localhost'
    - name: Keep the answer (or the refusal)
      ansible.builtin.copy:
        content: "{{ whoami | to_json }}"
        dest: "%(out)s.{{ inventory_hostname }}"
        mode: "0600"
      delegate_to: localhost
      when: inventory_hostname != 'localhost'
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Keep the errors of the collection's connection
      ansible.builtin.copy:
        content: "{{ admin_targets_errors | to_json }}"
        dest: "%(out)s"
        mode: "0600"
"""


def later_play(lab, mounts, workdir, tenant_id, ip, name):
    known = os.path.join(workdir, "%s.known_hosts" % name)
    with open(known, "w") as handle:
        handle.write("".join(line + "\n" for line in host_ca_lines(lab, mounts, ip)))
    out = os.path.join(workdir, "%s.json" % name)
    inventory = os.path.join(workdir, "%s.ini" % name)
    with open(inventory, "w") as handle:
        handle.write("localhost ansible_connection=local ansible_python_interpreter=%s\n"
                     % os.path.join(REPO, ".venv", "bin", "python"))
    play = LATER_PLAY % {"tasks": TASKS, "tenant": tenant_id, "ip": ip, "known": known, "out": out}
    # a control directory per play: a master connection of an earlier play would skip the host-key check
    control = os.path.join(workdir, "cp-%s" % name)
    result = run_playbook(play, env=dict(lab.env(), ANSIBLE_CALLBACKS_ENABLED="penguinmails.vps.audit",
                                         PENGUINMAILS_AUDIT_FILE=os.path.join(workdir, "later-audit.jsonl"),
                                         ANSIBLE_SSH_CONTROL_PATH_DIR=control),
                          args=["-e", json.dumps(dict(mounts, penguinmails_python_interpreter="/usr/bin/python3"))],
                          inventory=inventory, tmp_path=workdir)
    output = result.stdout + result.stderr
    assert "PRIVATE KEY-----" not in output and "Traceback" not in output, output[-3000:]
    with open(known) as handle:
        known_lines = [line for line in handle.read().splitlines() if line.strip()]
    assert known_lines and all(line.startswith("@cert-authority %s " % ip) for line in known_lines)
    with open(out) as handle:
        seen = {"errors": json.load(handle), "hosts": {}}
    for name in ("ca_only", ip):
        if os.path.exists("%s.%s" % (out, name)):
            with open("%s.%s" % (out, name)) as handle:
                seen["hosts"][name] = json.load(handle)
    return seen, output


def test_a_tenant_in_certificate_mode_migrates_and_the_new_vps_is_trusted_through_the_cas(lab, workdir, ca_mounts, tenant):
    tid = tenant.tenant_id
    audit_file = os.path.join(workdir, "audit.jsonl")

    # The tenant moves to certificate mode with the collection's playbook (its stored admin key is then revoked).
    moved = seed.run_lab_playbook(lab, tenant, os.path.join(workdir, "mode"), "penguinmails.vps.ssh_auth",
                                  dict(ca_mounts, ssh_auth="certificates"),
                                  audit_file=os.path.join(workdir, "mode-audit.jsonl"))
    assert moved.returncode == 0, (moved.stdout + moved.stderr)[-5000:]
    assert seed.read_record(lab, tid)["ssh_auth"] == "certificates"
    assert admin_versions(lab, tid)[-1]["state"] == "revoked"

    # The migration.
    try:
        run = seed.run_migrate(lab, tenant, os.path.join(workdir, "migrate"), reason="upgrade", audit_file=audit_file,
                               extra_vars=ca_mounts, timeout=1800)
    except subprocess.TimeoutExpired as exc:
        partial = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        pytest.fail("migrate did not end within 1800 s:\n" + partial[-6000:])
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    assert "PRIVATE KEY-----" not in output
    record = seed.read_record(lab, tid)
    new_ip = record["vps_ip"]
    assert new_ip != tenant["old_vps"]["ip"] and record["ssh_auth"] == "certificates"
    assert "migration" not in record and record["last_migration"]["step"] == "old_vps_destroyed"
    (new,) = seed.instances_named(lab, record["vps_name"])
    new_host = seed.lab_host_name(lab, new["serviceid"])

    # Vault: the build key the migration issued is revoked again; no version but older ones holds a private key.
    versions = admin_versions(lab, tid)
    assert versions[-1]["state"] == "revoked" and not versions[-1].get("private_key")
    build_keys = [data for data in versions if data.get("private_key")]
    stored_public = {data["public_key"].split()[1] for data in versions if data.get("public_key")}
    assert len(build_keys) >= 2, "expected the seeded key and the migration's build key in the KV history"

    # The new VPS: no stored admin key for root, none of them logs in; the user CA, principals and KRL in place.
    with open(host_fs(lab, new_host, "/root/.ssh/authorized_keys")) as handle:
        authorized = handle.read()
    assert not [blob for blob in stored_public if blob in authorized], authorized
    assert not [line for line in authorized.splitlines() if ":%s:admin" % tid in line and not line.startswith("#")]
    for data in build_keys:
        login = seed.ssh_with_key(data["private_key"], new_ip, "true", workdir)
        assert login.returncode != 0, "a stored admin key still logs in to the new VPS"
    ca_dir = "/etc/ssh/penguinmails"
    with open(host_fs(lab, new_host, ca_dir + "/principals/root")) as handle:
        assert PRINCIPAL in handle.read().split()
    user_ca = ssh_ca.CertificateAuthority(seed.vault(lab), ca_mounts["penguinmails_ssh_user_ca_mount"]).public_keys()
    with open(host_fs(lab, new_host, ca_dir + "/user_ca_keys")) as handle:
        trusted = handle.read()
    assert user_ca and all(key.split()[1] in trusted for key in user_ca)
    assert os.path.getsize(host_fs(lab, new_host, ca_dir + "/revoked_keys.krl")) > 0
    # The tenant's stored key stays, for its own account.
    tenant_key = seed.vault(lab).read("vps", "%s/tenant_ssh" % tid).data
    with open(host_fs(lab, new_host, "/home/%s/.ssh/authorized_keys" % tenant_account(tid))) as handle:
        assert tenant_key["public_key"].split()[1] in handle.read()

    # The host certificate names the NEW VPS's address (not the controller's), and is presented by sshd.
    cert_files = [name for name in os.listdir(host_fs(lab, new_host, "/etc/ssh")) if name.endswith("-cert.pub")]
    assert cert_files
    for name in cert_files:
        shown = subprocess.run(["ssh-keygen", "-L", "-f", host_fs(lab, new_host, "/etc/ssh/" + name)],
                               capture_output=True, text=True, check=True).stdout
        principals = shown.split("Principals:", 1)[1].split("Critical Options:", 1)[0].split()
        assert principals == [new_ip], shown
    events = seed.read_events(audit_file)  # the migration's events
    mine = [e for e in events if e.get("tenantId") == tid]
    host_certs = [e for e in mine if e["action"] == "ssh_host_certificate_signed"]
    assert host_certs and all(e["details"]["principals"] == [new_ip] and e["details"].get("vps_ip") == new_ip for e in host_certs), \
        host_certs
    # One run certificate per run, audited where it is first used: the old VPS since preflight's RTO estimate reads the
    # mailbox size there, and it reaches the new VPS as well.
    signed = [e for e in mine if e["action"] == "ssh_certificate_signed"
              and e["details"].get("vps_ip") in (new_ip, tenant["old_vps"]["ip"])]
    assert signed and all(e["details"]["principals"] == [PRINCIPAL] for e in signed)
    revoked = [e for e in mine if e["action"] == "ssh_key_revoked" and e["details"].get("vps_ip") == new_ip]
    assert revoked and revoked[-1]["status"] == "success"
    assert [e["status"] for e in mine if e["action"] == "vps_migration_completed"] == ["success"]
    assert [e for e in mine if e["action"] == "vps_migration_failed"] == []
    # the first contact was recorded (Hostwinds reports no host-key fingerprint: trust on first use, audited)
    assert record["host_keys"][new_ip]
    assert [e["details"]["source"] for e in mine if e["action"] == "host_key_recorded" and e["details"].get("vps_ip") == new_ip] \
        == ["ssh-keyscan"]

    # A later play: strict host-key checking, a known_hosts with only the @cert-authority line, the run certificate.
    seen, play_output = later_play(lab, ca_mounts, workdir, tid, new_ip, "later")
    assert seen["errors"] == [], play_output[-3000:]
    assert {name: answer.get("stdout") for name, answer in seen["hosts"].items()} == {"ca_only": "root", new_ip: "root"}, \
        play_output[-3000:]

    # A forged host key at that address (certified by a CA of the attacker's) is refused by both connections.
    forged_ca = os.path.join(workdir, "forged_ca")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "forged", "-f", forged_ca], check=True)
    lab.host_exec(new_host, ["sh", "-c", "rm -f /etc/ssh/ssh_host_*; ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key"],
                  check=True)
    forged_pub = os.path.join(workdir, "forged_host.pub")
    with open(forged_pub, "w") as handle:
        handle.write(lab.host_exec(new_host, ["cat", "/etc/ssh/ssh_host_ed25519_key.pub"]).stdout)
    subprocess.run(["ssh-keygen", "-q", "-s", forged_ca, "-h", "-I", "forged", "-n", new_ip, forged_pub], check=True)
    with open(forged_pub[:-4] + "-cert.pub") as handle:
        forged_cert = handle.read()
    lab.host_exec(new_host, ["sh", "-c", "cat > /etc/ssh/ssh_host_ed25519_key-cert.pub"], input=forged_cert, check=True)
    lab.host_exec(new_host, ["sh", "-c", "sed -i '/ecdsa/d' /etc/ssh/sshd_config && "
                                         "printf 'HostCertificate /etc/ssh/ssh_host_ed25519_key-cert.pub\\n' "
                                         "> /etc/ssh/sshd_config.d/40-penguinmails-host-certificate.conf && /usr/sbin/sshd -t && "
                                         "kill -HUP $(cat /run/sshd.pid)"], check=True)
    forged_blob = forged_cert.split()[1]

    def presents_forged():
        scan = subprocess.run(["ssh-keyscan", "-c", "-T", "2", new_ip], capture_output=True, text=True, check=False)
        return forged_blob in scan.stdout

    wait_until(presents_forged, 30, "sshd to present the forged host certificate", interval=0.2)
    seen, play_output = later_play(lab, ca_mounts, workdir, tid, new_ip, "forged")
    assert seen["errors"] == [], play_output[-3000:]
    assert set(seen["hosts"]) == {"ca_only", new_ip}, play_output[-3000:]
    for name, answer in seen["hosts"].items():
        assert answer.get("unreachable") and "stdout" not in answer, (name, answer)
        assert "Host key verification failed" in answer.get("msg", ""), (name, answer)
    assert seed.read_record(lab, tid)["host_keys"][new_ip] == record["host_keys"][new_ip], "a forged key was recorded"
