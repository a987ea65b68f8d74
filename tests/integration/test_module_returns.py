# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""RETURN documents exactly what every module returns (issue 14).

Method: every module of plugins/modules runs here, for real, in the cases that change what it returns (create,
change, nothing to do, check mode, its optional outputs, a refusal), against the lab: OpenBao, BIND9, the
Hostwinds simulator, a lab host with sshd and the lab's mail host. Each task registers its result; the results
are compared with the module's RETURN by tests/support/return_docs.py, which reports, at every documented depth:
a key returned but not documented, a key documented ``returned: always`` but missing, a value of another type
than documented, and a key documented but never returned in any of the cases. ``NEVER_RETURNED_OK`` lists the
few documented keys these runs cannot provoke, each with the reason.

A module without cases here fails ``test_every_module_has_cases``: a new module comes with its cases.
"""

from __future__ import annotations

import json
import os
import secrets
import urllib.request

import pytest

from tests.lab import seed
from tests.support import return_docs
from tests.support.ansible_run import run_playbook, RESULTS_TASK
from tests.support.receivers import SmtpServer
from tests.support.mail_return_cases import mail_cases
from tests.support.vault_return_cases import vault_cases

MODULES = sorted(name[:-3] for name in os.listdir(return_docs.MODULE_DIR) if name.endswith(".py"))
# Documented keys no case here can return, and why.
NEVER_RETURNED_OK = {
}


def lab_api(lab, method, path, payload=None):
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(lab["vault"]["addr"] + path, data=data, method=method)
    request.add_header("X-Vault-Token", lab["vault"]["token"])
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"{}")


def run_cases(lab, tmp_path, plays, env=None, inventory=None, name="cases"):
    """Run ``plays`` (a playbook whose tasks register ``r_<module>__<case>``); return {module: [results]}."""
    out = str(tmp_path / ("%s.json" % name))
    # The registered variables of localhost (a host play hands its results over with delegate_facts).
    dump = "- hosts: localhost\n  gather_facts: false\n  tasks:\n" + (RESULTS_TASK % out)
    proc = run_playbook(plays + "\n" + dump, env=dict(lab.env(), **(env or {})), inventory=inventory,
                        tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    with open(out) as handle:
        registered = json.load(handle)
    found = {}
    for key, value in registered.items():
        module = key[2:].split("__", 1)[0]
        found.setdefault(module, []).append(value)
    return found


@pytest.fixture(scope="module")
def observed(lab, tmp_path_factory):
    """Every module run in its cases against the lab: {module: [registered results]}."""
    tmp = tmp_path_factory.mktemp("returns")
    os.chmod(str(tmp), 0o700)
    results = {}
    tenant = seed.seed_tenant(lab)
    with SmtpServer("plain") as relay:
        results.update(localhost_cases(lab, tmp, tenant, relay))
    results.update(host_cases(lab, tmp))
    results.update(mail_cases(lab, tmp, run_cases))
    vault = vault_cases(lab, tmp, run_cases)
    results["vault_health_info"] = results.get("vault_health_info", []) + vault.pop("vault_health_info")
    results.update(vault)
    return results


def test_every_module_has_cases(observed):
    assert sorted(set(MODULES) - set(observed)) == [], "modules without cases in this test"
    assert sorted(set(observed) - set(MODULES)) == []


@pytest.mark.parametrize("module", MODULES)
def test_return_documents_exactly_what_the_module_returns(observed, module):
    assert module in observed, "%s has no cases here" % module
    problems = return_docs.compare(module, observed[module], NEVER_RETURNED_OK.get(module, ()))
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------------------------------------
# The cases
# ---------------------------------------------------------------------------------------------------------
def localhost_cases(lab, tmp, tenant, relay):
    tid = tenant.tenant_id
    new = "rt" + secrets.token_hex(4)
    other = "rs" + secrets.token_hex(4)
    zone = seed.dns_zone(lab)
    dns = lab["dns"]
    password = seed.vault(lab).read("smtp", "%s/admin" % tid).data["password"]
    lab_api(lab, "POST", "/v1/sys/auth/%s" % ("up" + new), {"type": "userpass"})
    # SSH certificate mode: a KV mount of these cases (records, revocations) and CA mounts made by vault_ssh_ca
    lab_api(lab, "POST", "/v1/sys/mounts/kv%s" % new, {"type": "kv", "options": {"version": "2"}})
    lab_api(lab, "POST", "/v1/kv%s/data/%s/record" % (new, other), {"data": {"vps_ip": "192.0.2.7"}})
    audit_file = str(tmp / "audit.jsonl")
    log = tmp / "auth.log"
    log.write_text(
        "Jun  1 09:00:01 vps1 sshd[100]: Failed publickey for root from 198.51.100.4 port 40022 ssh2: ED25519 SHA256:AbCdEf\n"
        "Jun  1 10:15:00 vps1 sshd[101]: Invalid user bob from 198.51.100.5 port 50000\n"
        "Jun  1 10:15:02 vps1 sshd[101]: Failed password for invalid user bob from 198.51.100.5 port 50000 ssh2\n")
    values = dict(tid=tid, new=new, other=other, zone=zone, server=dns["address"], port=dns["port"],
                  key_name=dns["tsig_name"], key_algorithm=dns["tsig_algorithm"], domain=tenant["domain"],
                  ip=tenant["old_vps"]["ip"], user=tenant["admin_user"], relay_port=relay.port,
                  audit_file=audit_file, log=str(log), dest=str(tmp), auth_mount="up" + new,
                  long_txt="v=DKIM1; k=rsa; p=" + "A" * 400, faults=lab["hostwinds"]["base_url"] + "/lab/faults",
                  plan=seed.SIM_PLAN["plan"], location=seed.SIM_PLAN["location"], image=seed.SIM_PLAN["image"],
                  pubkey=_public_key(), old_ip=tenant["old_vps"]["ip"])
    plays = LOCALHOST_CASES
    for key, value in values.items():
        plays = plays.replace("@%s@" % key, str(value))
    env = {"ANSIBLE_CALLBACKS_ENABLED": "penguinmails.vps.audit", "PENGUINMAILS_AUDIT_FILE": audit_file,
           "PM_SMTP_PASSWORD": password, "PM_TSIG_SECRET": dns["tsig_secret"]}
    return run_cases(lab, tmp, plays, env=env, name="localhost")


LOCALHOST_CASES = """
- hosts: localhost
  gather_facts: false
  tasks:
    # --- vault_ssh_keypair: create, check mode, rotate (grace and fallback), confirm, private key, revoke,
    #     regenerate, absent, a refusal
    - {penguinmails.vps.vault_ssh_keypair: {tenant_id: "@new@", role: admin, key_type: ed25519}, register: r_vault_ssh_keypair__create}
    - {penguinmails.vps.vault_ssh_keypair: {tenant_id: "@new@", role: tenant, key_type: ed25519}, register: r_vault_ssh_keypair__create_tenant}
    - {penguinmails.vps.vault_ssh_keypair: {tenant_id: "@new@", role: admin, state: rotated, force: true},
       check_mode: true, register: r_vault_ssh_keypair__rotate_check}
    - {penguinmails.vps.vault_ssh_keypair: {tenant_id: "@new@", role: admin, state: rotated, force: true}, register: r_vault_ssh_keypair__rotate}
    - penguinmails.vps.vault_ssh_keypair:
        tenant_id: "@new@"
        role: admin
        state: confirmed
        fingerprint: "{{ r_vault_ssh_keypair__rotate.fingerprint }}"
      register: r_vault_ssh_keypair__confirm
    - {penguinmails.vps.vault_ssh_keypair: {tenant_id: "@new@", role: tenant, state: rotated, force: true},
       register: r_vault_ssh_keypair__rotate_tenant}
    - {penguinmails.vps.vault_ssh_keypair: {tenant_id: "@new@", role: admin, return_private_key: true},
       no_log: true, register: r_vault_ssh_keypair__private}
    - {penguinmails.vps.vault_ssh_keypair: {tenant_id: "@new@", role: tenant, state: revoked}, register: r_vault_ssh_keypair__revoke}
    - {penguinmails.vps.vault_ssh_keypair: {tenant_id: "@new@", role: tenant, state: regenerated}, register: r_vault_ssh_keypair__regenerate}
    - {penguinmails.vps.vault_ssh_keypair: {tenant_id: "@other@", role: tenant, key_type: ed25519}, register: r_vault_ssh_keypair__create_other}
    - {penguinmails.vps.vault_ssh_keypair: {tenant_id: "@other@", role: tenant, state: absent}, register: r_vault_ssh_keypair__absent}
    - {penguinmails.vps.vault_ssh_keypair: {tenant_id: "bad/id", role: tenant}, ignore_errors: true, register: r_vault_ssh_keypair__refused}

    # --- vault_ssh_keypair_info, vault_ssh_bulk_rotate
    - {penguinmails.vps.vault_ssh_keypair_info: {tenant_id: "@new@"}, register: r_vault_ssh_keypair_info__both}
    - {penguinmails.vps.vault_ssh_keypair_info: {tenant_id: "@other@", roles: [tenant]}, register: r_vault_ssh_keypair_info__missing}
    - {penguinmails.vps.vault_ssh_bulk_rotate: {tenants: ["@new@"], force: true, key_type: ed25519},
       check_mode: true, register: r_vault_ssh_bulk_rotate__check}
    - {penguinmails.vps.vault_ssh_bulk_rotate: {tenants: ["@new@"], force: true, key_type: ed25519}, register: r_vault_ssh_bulk_rotate__force}
    - {penguinmails.vps.vault_ssh_bulk_rotate: {tenants: ["@new@"]}, register: r_vault_ssh_bulk_rotate__nothing_due}

    # --- vault_ssh_key_download: wrap to a file, wrap returned, file, check mode, a second download refused
    - {penguinmails.vps.vault_ssh_key_download: {tenant_id: "@new@"}, check_mode: true, register: r_vault_ssh_key_download__check}
    - {penguinmails.vps.vault_ssh_key_download: {tenant_id: "@new@", dest: "@dest@/wrap-token"}, register: r_vault_ssh_key_download__wrap_dest}
    - {penguinmails.vps.vault_ssh_key_download: {tenant_id: "@new@"}, ignore_errors: true, register: r_vault_ssh_key_download__again}
    - {penguinmails.vps.vault_ssh_keypair: {tenant_id: "@new@", role: tenant, state: regenerated}}
    - {penguinmails.vps.vault_ssh_key_download: {tenant_id: "@new@", host: 192.0.2.10}, no_log: true, register: r_vault_ssh_key_download__wrap}
    - {penguinmails.vps.vault_ssh_keypair: {tenant_id: "@new@", role: tenant, state: regenerated}}
    - {penguinmails.vps.vault_ssh_key_download: {tenant_id: "@new@", output: file, dest: "@dest@/key"}, register: r_vault_ssh_key_download__file}

    # --- vault_tenant_key_download: the offer of a regenerated key (here with the lab's token), check mode, taken,
    #     a second attempt refused, a refused login
    - {penguinmails.vps.vault_ssh_keypair: {tenant_id: "@new@", role: tenant, state: regenerated}}
    - {penguinmails.vps.vault_tenant_key_download: {tenant_id: "@new@", dest: "@dest@/self.key"}, check_mode: true,
       register: r_vault_tenant_key_download__check}
    - {penguinmails.vps.vault_tenant_key_download: {tenant_id: "@new@", dest: "@dest@/self.key", host: 192.0.2.10},
       register: r_vault_tenant_key_download__taken}
    - {penguinmails.vps.vault_tenant_key_download: {tenant_id: "@new@", dest: "@dest@/self-again.key"}, ignore_errors: true,
       register: r_vault_tenant_key_download__again}
    - {penguinmails.vps.vault_tenant_key_download: {tenant_id: "@new@", dest: "@dest@/self-login.key", password: "not-the-password-0",
       userpass_mount: "@auth_mount@"}, ignore_errors: true, register: r_vault_tenant_key_download__login_refused}

    # --- tenant records and secrets
    - {penguinmails.vps.tenant_record_info: {tenant_id: "@tid@"}, register: r_tenant_record_info__found}
    - {penguinmails.vps.tenant_record_info: {tenant_id: "@other@"}, register: r_tenant_record_info__missing}
    - {penguinmails.vps.tenant_secrets_info: {tenant_ids: ["@tid@", "@new@"]}, register: r_tenant_secrets_info__some}
    # tenant_credentials_info: a key published by its writers; the seeded tenant (its record's address, a custom port)
    - {penguinmails.vps.tenant_credentials_info: {tenant_id: "@new@"}, register: r_tenant_credentials_info__published}
    - {penguinmails.vps.tenant_credentials_info: {tenant_id: "@tid@", ssh_port: 2222}, register: r_tenant_credentials_info__seeded}
    - {penguinmails.vps.tenant_secrets_info: {}, register: r_tenant_secrets_info__every}
    - {penguinmails.vps.vault_health_info: {}, register: r_vault_health_info__node}
    - {penguinmails.vps.vault_session: {}, register: r_vault_session__token_auth}
    - {penguinmails.vps.vault_session: {state: absent}, register: r_vault_session__absent}
    - {penguinmails.vps.vault_history_info: {}, register: r_vault_history_info__default}
    - {penguinmails.vps.vault_history_info: {burst_threshold: 1, window_hours: 1, path_prefix: "@new@/"}, register: r_vault_history_info__bursts}

    # --- vault_smtp_credentials: create, nothing due, check mode, rotate (with the secret key), the password
    - {penguinmails.vps.vault_smtp_credentials: {tenant_id: "@new@", username: "admin@@new@.example.com"}, register: r_vault_smtp_credentials__create}
    - {penguinmails.vps.vault_smtp_credentials: {tenant_id: "@new@", state: rotated}, register: r_vault_smtp_credentials__not_due}
    - {penguinmails.vps.vault_smtp_credentials: {tenant_id: "@new@", state: rotated, force: true},
       check_mode: true, register: r_vault_smtp_credentials__check}
    - {penguinmails.vps.vault_smtp_credentials: {tenant_id: "@new@", state: rotated, force: true, rotate_secret_key: true},
       register: r_vault_smtp_credentials__rotate}
    - {penguinmails.vps.vault_smtp_credentials: {tenant_id: "@new@", return_password: true},
       no_log: true, register: r_vault_smtp_credentials__password}

    # --- vault_tenant_login: create, again, check mode
    - {penguinmails.vps.vault_tenant_login: {tenant_id: "@new@", password: "Pw-@new@-long-enough", auth_mount: "@auth_mount@"},
       no_log: true, register: r_vault_tenant_login__create}
    - {penguinmails.vps.vault_tenant_login: {tenant_id: "@new@", password: "Pw-@new@-long-enough", auth_mount: "@auth_mount@"},
       no_log: true, register: r_vault_tenant_login__again}
    - {penguinmails.vps.vault_tenant_login: {tenant_id: "@other@", password: "Pw-@other@-long-enough", auth_mount: "@auth_mount@"},
       check_mode: true, no_log: true, register: r_vault_tenant_login__check}

    # --- dkim_vault_keys: the stored key, a generated one (check mode, then for real), a missing selector
    - {penguinmails.vps.dkim_vault_keys: {domain: "@domain@"}, register: r_dkim_vault_keys__list}
    - {penguinmails.vps.dkim_vault_keys: {domain: "@domain@", selector: s2, generate_missing: true},
       check_mode: true, register: r_dkim_vault_keys__generate_check}
    - {penguinmails.vps.dkim_vault_keys: {domain: "@domain@", selector: s2, generate_missing: true, key_size: 1024},
       register: r_dkim_vault_keys__generate}
    - {penguinmails.vps.dkim_vault_keys: {domain: "@domain@", selectors: [nope]}, ignore_errors: true, register: r_dkim_vault_keys__missing}

    # --- dns_record: create, unchanged, check mode, a long TXT, absent, a refused key
    - name: dns_record creates
      penguinmails.vps.dns_record:
        zone: "@zone@"
        record: "rt-@new@.@zone@"
        type: A
        values: [192.0.2.1]
        server: "@server@"
        port: @port@
        key_name: "@key_name@"
        key_secret: "{{ lookup('ansible.builtin.env', 'PM_TSIG_SECRET') }}"
        key_algorithm: "@key_algorithm@"
      register: r_dns_record__create
    - name: dns_record finds it unchanged
      penguinmails.vps.dns_record:
        zone: "@zone@"
        record: "rt-@new@.@zone@"
        type: A
        values: [192.0.2.1]
        server: "@server@"
        port: @port@
        key_name: "@key_name@"
        key_secret: "{{ lookup('ansible.builtin.env', 'PM_TSIG_SECRET') }}"
        key_algorithm: "@key_algorithm@"
      register: r_dns_record__unchanged
    - penguinmails.vps.dns_record:
        zone: "@zone@"
        record: "rt-@new@.@zone@"
        type: TXT
        values: ["@long_txt@"]
        server: "@server@"
        port: @port@
        key_name: "@key_name@"
        key_secret: "{{ lookup('ansible.builtin.env', 'PM_TSIG_SECRET') }}"
        key_algorithm: "@key_algorithm@"
      check_mode: true
      diff: true
      register: r_dns_record__txt_check
    - penguinmails.vps.dns_record:
        zone: "@zone@"
        record: "rt-@new@.@zone@"
        type: A
        state: absent
        server: "@server@"
        port: @port@
        key_name: "@key_name@"
        key_secret: "{{ lookup('ansible.builtin.env', 'PM_TSIG_SECRET') }}"
        key_algorithm: "@key_algorithm@"
      register: r_dns_record__absent
    - penguinmails.vps.dns_record:
        zone: "@zone@"
        record: "rt-@new@.@zone@"
        type: A
        values: [192.0.2.1]
        server: "@server@"
        port: @port@
        key_name: "@key_name@"
        key_secret: "c2VjcmV0LXRoYXQtaXMtd3Jvbmc="
        key_algorithm: "@key_algorithm@"
      ignore_errors: true
      register: r_dns_record__refused

    # --- smtp_check: every stage with DKIM verified against the lab DNS, check mode, a refused login
    - penguinmails.vps.smtp_check:
        host: "@ip@"
        username: "@user@"
        password: "{{ lookup('ansible.builtin.env', 'PM_SMTP_PASSWORD') }}"
        validate_certs: false
        dns_server: "@server@"
        dns_port: @port@
        dkim_selector: dkim
        fetch_timeout: 20
      register: r_smtp_check__full
    - penguinmails.vps.smtp_check:
        host: "@ip@"
        username: "@user@"
        password: "{{ lookup('ansible.builtin.env', 'PM_SMTP_PASSWORD') }}"
        validate_certs: false
      check_mode: true
      register: r_smtp_check__check
    - penguinmails.vps.smtp_check:
        host: "@ip@"
        username: "@user@"
        password: not-the-password
        validate_certs: false
        verify_dkim: false
      ignore_errors: true
      register: r_smtp_check__refused

    # --- notify_mail: accepted, check mode
    - name: notify_mail sends
      penguinmails.vps.notify_mail:
        host: 127.0.0.1
        port: @relay_port@
        security: none
        sender: ops@example.com
        to: [tenant@example.com]
        subject: A test
        body: Hello
      register: r_notify_mail__sent
    - name: notify_mail in check mode
      penguinmails.vps.notify_mail:
        host: 127.0.0.1
        port: @relay_port@
        security: none
        sender: ops@example.com
        to: [tenant@example.com]
        subject: A test
        body: Hello
      check_mode: true
      register: r_notify_mail__check

    # --- ssh_login_failures_info on the controller's copy of a log; a missing file
    - {penguinmails.vps.ssh_login_failures_info: {path: ["@log@"], since: "2000-01-01T00:00:00Z"}, register: r_ssh_login_failures_info__log}
    - {penguinmails.vps.ssh_login_failures_info: {path: ["@log@", "@dest@/missing.log"], max_entries: 1, since: "2000-01-01T00:00:00Z"},
       register: r_ssh_login_failures_info__truncated}

    # --- secret_file on the controller (mode, unchanged)
    - {penguinmails.vps.secret_file: {dest: "@dest@/secret", content: not-so-secret}, register: r_secret_file__write}
    - {penguinmails.vps.secret_file: {dest: "@dest@/secret", content: not-so-secret}, register: r_secret_file__unchanged}

    # --- hostwind_ssh_key: store, again, replace, remove
    - {penguinmails.vps.hostwind_ssh_key: {name: "rt-@new@", public_key: "@pubkey@"}, register: r_hostwind_ssh_key__add}
    - {penguinmails.vps.hostwind_ssh_key: {name: "rt-@new@", public_key: "@pubkey@"}, register: r_hostwind_ssh_key__again}
    - {penguinmails.vps.hostwind_ssh_key: {name: "rt-@new@", state: absent}, check_mode: true, register: r_hostwind_ssh_key__remove_check}
    - {penguinmails.vps.hostwind_ssh_key: {name: "rt-@new@", state: absent}, register: r_hostwind_ssh_key__remove}

    # --- hostwind_vps: check mode, create, found, power, a failed build terminated, absent
    - {penguinmails.vps.hostwind_vps: {name: "rt-@new@", plan: "@plan@", location: "@location@", image: "@image@"},
       check_mode: true, register: r_hostwind_vps__create_check}
    - {penguinmails.vps.hostwind_vps: {name: "rt-@new@", plan: "@plan@", location: "@location@", image: "@image@", wait_timeout: 120},
       register: r_hostwind_vps__create}
    - {penguinmails.vps.hostwind_vps: {name: "rt-@new@", plan: "@plan@", location: "@location@", image: "@image@"}, register: r_hostwind_vps__found}
    - {penguinmails.vps.hostwind_vps: {name: "rt-@new@", state: stopped, wait_timeout: 120}, register: r_hostwind_vps__stopped}
    - {penguinmails.vps.hostwind_vps: {name: "rt-@new@", state: started, wait_timeout: 120}, register: r_hostwind_vps__started}
    - {penguinmails.vps.hostwind_vps: {name: "rt-@new@", state: absent, wait_timeout: 120}, register: r_hostwind_vps__absent}
    - name: The simulator fails the next build
      ansible.builtin.uri: {url: "@faults@", method: POST, body_format: json, body: {fail_build: 1}}
    - {penguinmails.vps.hostwind_vps: {name: "rf-@new@", plan: "@plan@", location: "@location@", image: "@image@", failed_build: terminate,
          wait_timeout: 120},
       register: r_hostwind_vps__failed_build}
    - {penguinmails.vps.hostwind_vps: {name: "rf-@new@", state: absent}, register: r_hostwind_vps__gone}

    # --- tenant_record: create, unchanged, check mode with diff, query, a whole migration, a takeover, an abort
    - {penguinmails.vps.tenant_record: {tenant_id: "@new@", state: present, domain: "@new@.example.com", vps_id: 1, vps_ip: 192.0.2.1,
          vps_name: "pm-@new@-1", contact_email: "admin@@new@.example.com"},
       register: r_tenant_record__create}
    - {penguinmails.vps.tenant_record: {tenant_id: "@new@", state: present, vps_ip: 192.0.2.1}, register: r_tenant_record__unchanged}
    - {penguinmails.vps.tenant_record: {tenant_id: "@new@", state: present, region: r2},
       check_mode: true, diff: true, register: r_tenant_record__check}
    - {penguinmails.vps.tenant_record: {tenant_id: "@new@"}, register: r_tenant_record__query}
    - {penguinmails.vps.tenant_record: {tenant_id: "@new@", state: migrating, reason: upgrade, run_id: run1}, register: r_tenant_record__start}
    - {penguinmails.vps.tenant_record: {tenant_id: "@new@", state: migrating, run_id: run2, takeover: true}, register: r_tenant_record__takeover}
    - {penguinmails.vps.tenant_record: {tenant_id: "@new@", state: migrating, run_id: run2, step: provisioned, new_vps_id: 2, new_vps_ip: 192.0.2.2},
       register: r_tenant_record__provisioned}
    - {penguinmails.vps.tenant_record: {tenant_id: "@new@", state: migrating, run_id: run2, step: dns_switched, new_vps_id: 2, new_vps_ip: 192.0.2.2},
       register: r_tenant_record__switched}
    - {penguinmails.vps.tenant_record: {tenant_id: "@new@", state: migrated, run_id: run2}, register: r_tenant_record__migrated}
    - {penguinmails.vps.tenant_record: {tenant_id: "@new@", state: completed, run_id: run2}, register: r_tenant_record__completed}
    - {penguinmails.vps.tenant_record: {tenant_id: "@new@", state: completed}, register: r_tenant_record__nothing_in_progress}
    - {penguinmails.vps.tenant_record: {tenant_id: "@other@", state: present, domain: "@other@.example.com", vps_id: 3, vps_ip: 192.0.2.3},
       register: r_tenant_record__create_other}
    - {penguinmails.vps.tenant_record: {tenant_id: "@other@", state: migrating, reason: failure, run_id: run3},
       register: r_tenant_record__start_other}
    - {penguinmails.vps.tenant_record: {tenant_id: "@other@", state: migrating, run_id: run3, replace_server: true, notes: {account_key: rt}},
       register: r_tenant_record__replaced}
    - {penguinmails.vps.tenant_record: {tenant_id: "@other@", state: aborted, run_id: run3}, register: r_tenant_record__aborted}

    # --- ssh_agent (keys mode): start, load the seeded tenant (its host key recorded at the first contact), stop
    - {penguinmails.vps.ssh_agent: {state: started}, register: r_ssh_agent__started}
    - {penguinmails.vps.ssh_agent: {tenants: ["@tid@", "@other@"], roles: [admin, tenant]}, register: r_ssh_agent__loaded}
    - {penguinmails.vps.ssh_agent: {state: stopped}, register: r_ssh_agent__stopped}

    # --- SSH certificate mode: the CAs (set up, again, a rotation step by step), what they hold, signing host keys,
    #     revocations, a tenant's mode, and ssh_agent with the run certificate
    - penguinmails.vps.vault_ssh_ca:
        mount: "u@new@"
        roles: {admin: {allow_user_certificates: true, allowed_users: penguinmails-admin, default_user: penguinmails-admin,
                        ttl: 10m, key_id_format: "<role_name>-<token_display_name>"}}
      register: r_vault_ssh_ca__present
    - {penguinmails.vps.vault_ssh_ca: {mount: "h@new@", roles: {host: {allow_host_certificates: true, allowed_domains: "*"}}},
       register: r_vault_ssh_ca__present_host}
    - {penguinmails.vps.vault_ssh_ca: {mount: "u@new@", roles: {admin: {ttl: 600}}}, register: r_vault_ssh_ca__again}
    - {penguinmails.vps.vault_ssh_ca: {mount: "u@new@", state: rotated}, check_mode: true, register: r_vault_ssh_ca__rotate_check}
    - {penguinmails.vps.vault_ssh_ca: {mount: "u@new@", state: rotated}, register: r_vault_ssh_ca__rotated}
    - {penguinmails.vps.vault_ssh_ca: {mount: "u@new@", state: switched}, register: r_vault_ssh_ca__switched}
    - {penguinmails.vps.vault_ssh_ca: {mount: "u@new@", state: retired}, register: r_vault_ssh_ca__retired}
    - {penguinmails.vps.vault_ssh_ca: {mount: "kv@new@"}, ignore_errors: true, register: r_vault_ssh_ca__not_ssh}
    - {penguinmails.vps.vault_ssh_sign: {mount: "h@new@", principals: [192.0.2.7], keys: [{name: k, public_key: "@pubkey@", certificate: ""}]},
       check_mode: true, register: r_vault_ssh_sign__check}
    - {penguinmails.vps.vault_ssh_sign: {mount: "h@new@", principals: [192.0.2.7], keys: [{name: k, public_key: "@pubkey@", certificate: ""}]},
       register: r_vault_ssh_sign__signed}
    - penguinmails.vps.vault_ssh_sign:
        mount: "h@new@"
        principals: [192.0.2.7]
        keys: [{name: k, public_key: "@pubkey@", certificate: "{{ r_vault_ssh_sign__signed.certificates[0].certificate }}"}]
      register: r_vault_ssh_sign__kept
    - {penguinmails.vps.vault_ssh_revoke: {mount: "kv@new@", user_ca_mount: "u@new@", serials: ["0x10", "17"], key_ids: [admin-x],
                                           public_keys: ["@pubkey@"], reason: rt}, register: r_vault_ssh_revoke__added}
    - {penguinmails.vps.vault_ssh_revoke: {mount: "kv@new@", user_ca_mount: "u@new@", serials: ["16"]}, register: r_vault_ssh_revoke__again}
    - {penguinmails.vps.vault_ssh_revoke: {mount: "kv@new@", user_ca_mount: "u@new@", serials: ["18"]}, check_mode: true,
       register: r_vault_ssh_revoke__check}
    - {penguinmails.vps.vault_ssh_auth_mode: {tenant_id: "@other@", mount: "kv@new@", ssh_auth: certificates}, check_mode: true,
       register: r_vault_ssh_auth_mode__check}
    - {penguinmails.vps.vault_ssh_auth_mode: {tenant_id: "@other@", mount: "kv@new@", ssh_auth: certificates},
       register: r_vault_ssh_auth_mode__set}
    - {penguinmails.vps.vault_ssh_auth_mode: {tenant_id: "@other@", mount: "kv@new@", ssh_auth: certificates},
       register: r_vault_ssh_auth_mode__again}
    - {penguinmails.vps.vault_ssh_auth_mode: {tenant_id: "@new@", mount: "kv@new@", ssh_auth: keys}, ignore_errors: true,
       register: r_vault_ssh_auth_mode__no_record}
    - {penguinmails.vps.vault_ssh_ca_info: {tenant_id: "@other@", mount: "kv@new@", user_ca_mount: "u@new@", host_ca_mount: "h@new@",
                                            list_tenants: true}, register: r_vault_ssh_ca_info__all}
    - {penguinmails.vps.vault_ssh_ca_info: {tenant_id: "@other@", mount: "kv@new@", ssh_auth: keys, ca: auto},
       register: r_vault_ssh_ca_info__keys}
    - penguinmails.vps.ssh_agent:
        tenants: ["@tid@"]
        ssh_auth: certificates
        user_ca_mount: "u@new@"
        host_ca_mount: "h@new@"
      register: r_ssh_agent__certificates
    - {penguinmails.vps.ssh_agent: {state: stopped}, register: r_ssh_agent__stopped_again}

    # --- audit_event (the callback is on), then audit_verify of its file
    - {penguinmails.vps.audit_event: {action: ssh_key_rotated, tenant_id: "@tid@", details: {role: admin}}, register: r_audit_event__event}
    - penguinmails.vps.audit_event:
        events:
          - {action: ssh_key_rotated, tenant_id: "@tid@", details: {role: admin}}
          - {action: ssh_key_rotated, tenant_id: "@tid@", status: failure, details: {role: tenant, error: refused}}
      register: r_audit_event__events
    - {penguinmails.vps.audit_event: {events: []}, register: r_audit_event__no_events}
    # --- audit_sinks_info (the callback is on, the audit file only: unheard)
    - {penguinmails.vps.audit_sinks_info: {}, register: r_audit_sinks_info__file_only}
    - {penguinmails.vps.audit_verify: {path: "@audit_file@"}, register: r_audit_verify__intact}
    - {penguinmails.vps.audit_verify: {path: "@dest@/missing.jsonl"}, ignore_errors: true, register: r_audit_verify__missing}
"""


def host_cases(lab, tmp):
    """Modules that run on a VPS: authorized_key_rotate, authorized_key_batch and the host step ssh_host_keys on a lab
    host (sshd, its own accounts), for a tenant with keys in the lab's Vault."""
    from ansible_collections.penguinmails.vps.plugins.module_utils import keypair_store
    from ansible_collections.penguinmails.vps.plugins.module_utils import vault_client as vc

    host = lab.create_host("rt" + secrets.token_hex(2))
    tenant = "rt" + secrets.token_hex(4)
    client = vc.get_client({"url": lab["vault"]["addr"], "token": lab["vault"]["token"]})
    for role in ("admin", "tenant"):
        store = keypair_store.KeypairStore(client, tenant, role)
        store.commit(store.plan("present", key_type="ed25519"))
    try:
        inventory = lab.inventory(tmp, [host])
        keys = [_public_key() for _index in range(3)]
        plays = HOST_CASES.replace("@host@", host["name"]).replace("@tenant@", tenant)
        for index, key in enumerate(keys):
            plays = plays.replace("@key%d@" % index, key)
        return run_cases(lab, tmp, plays, inventory=inventory, name="host")
    finally:
        lab.destroy_host(host["name"])


def _public_key():
    from ansible_collections.penguinmails.vps.plugins.module_utils import ssh_keys
    return ssh_keys.generate_keypair("ed25519", comment="rt").public_key.strip()


HOST_CASES = """
- hosts: @host@
  gather_facts: false
  tasks:
    - penguinmails.vps.authorized_key_rotate:
        user: rtuser
        manage_user: true
        keys: ["@key0@"]
        grace_keys: [{key: "@key1@"}]
        grace_until: "2099-01-01T00:00:00Z"
        marker: "penguinmails:rt:admin"
        serial: 1
      check_mode: true
      register: rt_check
    - penguinmails.vps.authorized_key_rotate:
        user: rtuser
        manage_user: true
        keys: ["@key0@"]
        grace_keys: [{key: "@key1@"}]
        grace_until: "2099-01-01T00:00:00Z"
        marker: "penguinmails:rt:admin"
        serial: 1
      register: rt_create
    - penguinmails.vps.authorized_key_rotate:
        user: rtuser
        keys: ["@key2@"]
        revoked_keys: ["@key0@"]
        marker: "penguinmails:rt:admin"
        serial: 2
      register: rt_rotate
    - penguinmails.vps.authorized_key_rotate:
        user: rtuser
        keys: ["@key0@"]
        marker: "penguinmails:rt:admin"
        serial: 1
      register: rt_stale
    - penguinmails.vps.authorized_key_rotate:
        user: nosuchuser
        keys: ["@key2@"]
        missing_user: ignore
      register: rt_missing
    - penguinmails.vps.authorized_key_batch:
        entries:
          - {name: "rtb:admin", user: rtbatch, manage_user: true, keys: ["@key0@"], marker: "penguinmails:rtb:admin", serial: 1,
             requires: ["rtb:principal"]}
          - {name: "bad:admin", user: rtbatch, keys: ["not a key"], marker: "penguinmails:bad:admin"}
        principals:
          - {name: "rtb:principal", path: /root/rt-principals, kind: block, marker: "penguinmails admin certificates for rtb",
             principal: penguinmails-admin}
      check_mode: true
      diff: true
      register: rt_batch_check
    - penguinmails.vps.authorized_key_batch:
        entries:
          - {name: "rtb:admin", user: rtbatch, manage_user: true, keys: ["@key0@"], marker: "penguinmails:rtb:admin", serial: 1}
          - {name: "bad:admin", user: rtbatch, keys: ["not a key"], marker: "penguinmails:bad:admin"}
        principals:
          - {name: "rtb:principal", path: /root/rt-principals, kind: block, marker: "penguinmails admin certificates for rtb",
             principal: penguinmails-admin}
      register: rt_batch_create
    - penguinmails.vps.ssh_host_keys:
        jobs: [{tenant_id: "@tenant@", roles: [admin, tenant]}]
        verify: false
      register: rt_host_keys
    - penguinmails.vps.ssh_host_keys:
        jobs: [{tenant_id: "@tenant@", roles: [admin, tenant], rotated_roles: [tenant]}, {tenant_id: "../x", roles: [admin]}]
        verify: false
      check_mode: true
      diff: true
      register: rt_host_keys_check
    - {penguinmails.vps.ssh_krl: {path: /root/rt.krl, ca_keys: ["@key0@"], serials: ["5", "0x7"], key_ids: [rt], public_keys: ["@key1@"]},
       check_mode: true, diff: true, register: rt_krl_check}
    - {penguinmails.vps.ssh_krl: {path: /root/rt.krl, ca_keys: ["@key0@"], serials: ["5", "0x7"], key_ids: [rt], public_keys: ["@key1@"]},
       register: rt_krl_write}
    - {penguinmails.vps.ssh_krl: {path: /root/rt.krl, ca_keys: ["@key0@"], serials: ["7", "5"], key_ids: [rt], public_keys: ["@key1@"]},
       register: rt_krl_again}
    - {penguinmails.vps.ssh_krl: {path: /root/rt.krl, serials: ["5"]}, ignore_errors: true, register: rt_krl_no_ca}
    - name: Hand the results to localhost
      ansible.builtin.set_fact:
        r_ssh_krl__check: "{{ rt_krl_check }}"
        r_ssh_krl__write: "{{ rt_krl_write }}"
        r_ssh_krl__again: "{{ rt_krl_again }}"
        r_ssh_krl__no_ca: "{{ rt_krl_no_ca }}"
        r_authorized_key_rotate__check: "{{ rt_check }}"
        r_authorized_key_batch__check: "{{ rt_batch_check }}"
        r_authorized_key_batch__create: "{{ rt_batch_create }}"
        r_ssh_host_keys__install: "{{ rt_host_keys }}"
        r_ssh_host_keys__check_and_failure: "{{ rt_host_keys_check }}"
        r_authorized_key_rotate__create: "{{ rt_create }}"
        r_authorized_key_rotate__rotate: "{{ rt_rotate }}"
        r_authorized_key_rotate__missing: "{{ rt_missing }}"
        r_authorized_key_rotate__stale: "{{ rt_stale }}"
      delegate_to: localhost
      delegate_facts: true
"""
