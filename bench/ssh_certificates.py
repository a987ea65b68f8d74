#!/usr/bin/env python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: connection set-up cost of SSH certificate mode vs stored admin keys over H lab hosts.

H lab hosts (network namespaces with a real sshd), one tenant each, a real OpenBao (dev server) with the KV mount and
the SSH CAs of roles/vault_setup. Every host accepts both ways in: root's authorized_keys holds the tenant's stored
admin key from Vault, and sshd trusts the user CA (principals file, KRL, host certificate), so the two runs differ
only in how the controller gets in. Host keys are recorded in the tenant records (no first contact in either mode).

One run = the collection's own path to the hosts: playbooks/tasks/admin_targets.yml (penguinmails.vps.ssh_agent loads
20 stored keys from Vault, or has one certificate signed; known_hosts per host) then ansible.builtin.ping on every
host (the first SSH connection authenticates). Each run gets a fresh SSH control directory, so every host is
authenticated anew. Timed: the whole ansible-playbook run and the ssh_agent task alone (from its timestamps). Runs
alternate between the modes; the median of --repeat is reported, with the ratio certificates/keys and the number of
certificates signed per run (the goal: one per run, not one per host).

    .venv/bin/python bench/ssh_certificates.py [--hosts 20] [--forks 10] [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "collections"))
sys.path.insert(0, REPO)

from ansible_collections.penguinmails.vps.plugins.module_utils import host_keys as hk  # noqa: E402
from ansible_collections.penguinmails.vps.plugins.module_utils import keypair_store, ssh_ca, ssh_keys  # noqa: E402
from ansible_collections.penguinmails.vps.plugins.module_utils import ssh_certificates as sc  # noqa: E402
from ansible_collections.penguinmails.vps.plugins.module_utils import vault_client as vc  # noqa: E402
from tests.lab import hosts as lab_hosts  # noqa: E402
from tests.lab import lab as lab_core  # noqa: E402
from tests.support.ansible_run import VENV_BIN, ansible_env, ensure_collection_link  # noqa: E402
from tests.support.openbao import OpenBao  # noqa: E402

MOUNT, USER_CA, HOST_CA, PRINCIPAL = "vps", "ssh-user-ca", "ssh-host-ca", "penguinmails-admin"

SETUP = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: The SSH CAs (roles/vault_setup)
      ansible.builtin.include_role:
        name: penguinmails.vps.vault_setup
        tasks_from: ssh_ca
"""

RUN = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Reach the tenants' hosts
      ansible.builtin.include_tasks: %(tasks)s/admin_targets.yml
      vars:
        admin_targets: %(targets)s
        admin_targets_group: bench
    - name: Keep what the agent did
      ansible.builtin.copy:
        content: "{{ {'errors': admin_targets_errors, 'signed': admin_targets_agent.certificates_signed | length} | to_json }}"
        dest: %(out)s
        mode: "0600"
- hosts: bench
  gather_facts: false
  tasks:
    - name: Ping (the first connection authenticates)
      ansible.builtin.ping:
"""


def run(path, inventory, forks, env, extra):
    cmd = [os.path.join(VENV_BIN, "ansible-playbook"), "-i", inventory, "-f", str(forks), path, "-e", json.dumps(extra)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800, cwd=REPO, check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit("play failed:\n%s\n%s" % (proc.stdout[-4000:], proc.stderr[-2000:]))
    return elapsed, proc.stdout


def agent_task_seconds(stdout):
    """Seconds of the ssh_agent task, from ansible.posix.profile_tasks' per-task lines."""
    for line in stdout.splitlines():
        if "Load the tenants' admin keys into the run's private ssh-agent" in line and line.rstrip().endswith("s"):
            try:
                return float(line.rstrip().rsplit("-", 1)[-1].strip().rstrip("s"))
            except ValueError:
                continue
    return float("nan")


def trust_the_ca(state_dir, host, client, user_ca_keys):
    """What roles/ssh_access does in certificate mode, written directly (twenty ssh_auth runs would take long)."""
    etc_ssh = os.path.join(host["root"], "fs", "etc", "ssh")
    os.makedirs(os.path.join(etc_ssh, "penguinmails", "principals"), exist_ok=True)
    lab_hosts.write_file(os.path.join(etc_ssh, "penguinmails", "user_ca_keys"), "\n".join(user_ca_keys) + "\n")
    lab_hosts.write_file(os.path.join(etc_ssh, "penguinmails", "principals", "root"), PRINCIPAL + "\n")
    with open(os.path.join(etc_ssh, "penguinmails", "revoked_keys.krl"), "wb") as handle:
        handle.write(sc.build_krl(user_ca_keys))
    lines = ["TrustedUserCAKeys /etc/ssh/penguinmails/user_ca_keys",
             "AuthorizedPrincipalsFile /etc/ssh/penguinmails/principals/%u",
             "RevokedKeys /etc/ssh/penguinmails/revoked_keys.krl"]
    host_ca = ssh_ca.CertificateAuthority(client, HOST_CA)
    for key_type in ("ed25519", "ecdsa"):
        with open(os.path.join(etc_ssh, "ssh_host_%s_key.pub" % key_type)) as handle:
            cert = host_ca.sign("host", handle.read(), cert_type="host", principals=[host["ip"]])
        lab_hosts.write_file(os.path.join(etc_ssh, "ssh_host_%s_key-cert.pub" % key_type), cert["certificate"] + "\n")
        lines.append("HostCertificate /etc/ssh/ssh_host_%s_key-cert.pub" % key_type)
    lab_hosts.write_file(os.path.join(etc_ssh, "sshd_config.d", "40-penguinmails.conf"), "\n".join(lines) + "\n")
    check = lab_hosts.host_exec(state_dir, host["name"], ["/usr/sbin/sshd", "-t"], capture_output=True, text=True)
    if check.returncode != 0:
        raise SystemExit("sshd -t refused the certificate settings on %s: %s" % (host["name"], check.stderr))
    lab_hosts.host_exec(state_dir, host["name"], ["sh", "-c", 'kill -HUP "$(cat /run/sshd.pid)"'], check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--forks", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    ensure_collection_link()

    state_dir = tempfile.mkdtemp(prefix="pm-lab-bench-")
    work = tempfile.mkdtemp(prefix="pm-bench-certs-")
    server = OpenBao()
    try:
        server.start()
        server.enable_kv(MOUNT)
        client = vc.get_client({"url": server.addr, "token": server.token})
        env = ansible_env(dict(server.env(), ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks"))
        inventory = os.path.join(work, "inventory.ini")
        with open(inventory, "w") as handle:
            handle.write("localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
        setup = os.path.join(work, "setup.yml")
        with open(setup, "w") as handle:
            handle.write(SETUP)
        run(setup, inventory, args.forks, env, {})
        user_ca_keys = ssh_ca.CertificateAuthority(client, USER_CA).public_keys()

        lab_key = lab_core.controller_key(os.path.join(state_dir, "ssh", "id_ed25519"))
        with open(lab_key + ".pub") as handle:
            lab_pub = handle.read().strip()
        lab_hosts.ensure_network(state_dir, owner_pid=os.getpid())
        started = time.perf_counter()
        host_list = [lab_hosts.create_host(state_dir, "crt%02d" % i, [lab_pub]) for i in range(args.hosts)]
        print("%d lab hosts up in %.1f s" % (len(host_list), time.perf_counter() - started))
        targets = []
        for index, host in enumerate(host_list):
            tenant = "bench%02d" % index
            pair = ssh_keys.generate_keypair("ed25519", comment="penguinmails-%s-admin" % tenant)
            record = keypair_store.record_created(pair, keypair_store.utcnow(), 90)
            record["installed_fingerprint"] = record["fingerprint"]  # confirmed: no fallback key
            client.write(MOUNT, "%s/admin_ssh" % tenant, record, cas=0)
            client.write(MOUNT, "%s/record" % tenant, hk.with_keys({"vps_ip": host["ip"]}, host["ip"], hk.scan(host["ip"])),
                         cas=0)
            with open(os.path.join(host["root"], "fs", "root", ".ssh", "authorized_keys"), "w") as handle:
                handle.write("%s penguinmails:%s:admin\n" % (pair.public_key.rsplit(" ", 1)[0], tenant))
            trust_the_ca(state_dir, host, client, user_ca_keys)
            targets.append({"tenant_id": tenant, "address": host["ip"]})

        times = {"keys": [], "certificates": []}
        agent_times = {"keys": [], "certificates": []}
        signed = {"keys": [], "certificates": []}
        for number in range(args.repeat + 1):  # the first round warms up (interpreter discovery, page cache)
            for mode in ("keys", "certificates"):
                out = os.path.join(work, "out-%s-%d.json" % (mode, number))
                path = os.path.join(work, "run-%s-%d.yml" % (mode, number))
                with open(path, "w") as handle:
                    handle.write(RUN % {"tasks": os.path.join(REPO, "playbooks", "tasks"), "targets": json.dumps(targets),
                                        "out": out})
                run_env = dict(env, ANSIBLE_SSH_CONTROL_PATH_DIR=os.path.join(work, "cp-%s-%d" % (mode, number)))
                elapsed, stdout = run(path, inventory, args.forks, run_env,
                                      {"penguinmails_ssh_auth": mode, "penguinmails_python_interpreter": "/usr/bin/python3"})
                with open(out) as handle:
                    seen = json.load(handle)
                if seen["errors"]:
                    raise SystemExit("tenants not reached in %s mode: %s" % (mode, seen["errors"]))
                if number:
                    times[mode].append(elapsed)
                    agent_times[mode].append(agent_task_seconds(stdout))
                    signed[mode].append(seen["signed"])
        keys, certs = statistics.median(times["keys"]), statistics.median(times["certificates"])
        agent_keys, agent_certs = statistics.median(agent_times["keys"]), statistics.median(agent_times["certificates"])
        hosts = len(host_list)
        print("%d hosts, forks %d, median of %d runs each" % (hosts, args.forks, args.repeat))
        print("%-44s %10s %12s %14s" % ("mode", "run s", "ssh_agent s", "signed / run"))
        row = "%-44s %10.2f %12.2f %14s"
        print(row % ("stored keys (%d Vault reads, %d keys)" % (hosts, hosts), keys, agent_keys, max(signed["keys"])))
        print(row % ("certificates (one signing, one key)", certs, agent_certs, max(signed["certificates"])))
        print("certificates/keys ratio: %.2fx the whole run, %.2fx the ssh_agent task" % (certs / keys, agent_certs / agent_keys))
        print("per host: %.3f s (keys), %.3f s (certificates)" % (keys / hosts, certs / hosts))
        assert max(signed["certificates"]) == 1 and max(signed["keys"]) == 0, signed
    finally:
        try:
            lab_hosts.destroy_network(state_dir)
            lab_hosts.sweep_processes(state_dir)
        finally:
            server.stop()
            shutil.rmtree(state_dir, ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
