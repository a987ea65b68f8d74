# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The audit callback in real ansible-playbook runs, with real loopback receivers:
an HTTP webhook server, UDP and Unix syslog sockets and an SMTP server (aiosmtpd)."""

from __future__ import annotations

import base64
import email
import hashlib
import hmac
import json
import os
import secrets
import subprocess
import sys

import pytest
from aiosmtpd.controller import Controller

from tests.support.ansible_run import REPO, ansible_env, run_playbook
from tests.support.openbao import free_port, wait_until
from tests.support.receivers import MailSink, SyslogReceiver, Webhook

AUDIT_PY = os.path.join(REPO, "plugins", "module_utils", "audit.py")


CHECKPOINT = "audit_checkpoint"


def events_only(records):
    """Sink records without the end-of-run checkpoints."""
    return [r for r in records if r.get("action") != CHECKPOINT]


@pytest.fixture()
def smtp():
    handler = MailSink()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    handler.port = controller.port
    yield handler
    controller.stop()


@pytest.fixture()
def webhook():
    with Webhook() as hook:
        yield hook


@pytest.fixture()
def syslog_udp():
    with SyslogReceiver() as receiver:
        yield receiver


# -- helpers -----------------------------------------------------------------------------
def read_events(path):
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def verify(path, *args, env=None):
    return subprocess.run([sys.executable, AUDIT_PY, "verify", str(path)] + list(args), capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, **(env or {})), check=False)


def callback_env(audit_file, **extra):
    env = {"ANSIBLE_CALLBACKS_ENABLED": "penguinmails.vps.audit", "PENGUINMAILS_AUDIT_FILE": str(audit_file)}
    env.update(extra)
    return env


def fake_secrets():
    body = base64.b64encode(secrets.token_bytes(180)).decode()
    lines = "\n".join(body[i:i + 70] for i in range(0, len(body), 70))
    return {
        "private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\n%s\n-----END OPENSSH PRIVATE KEY-----\n" % lines,
        "key_line": body[:60],
        "password": "Pw-" + secrets.token_urlsafe(18),
        "token": "hvs." + secrets.token_urlsafe(30).replace("-", "x").replace("_", "y"),
        "wrap": "hvs." + secrets.token_urlsafe(30).replace("-", "x").replace("_", "y"),
        "short": "q" + secrets.token_hex(4),
    }


LIFECYCLE_PLAY = r"""
- name: Key lifecycle and a failing migration, with fake secrets
  hosts: localhost
  gather_facts: false
  vars:
    tenant_id: t1
  tasks:
    - name: Hold the fake secrets (no_log)
      ansible.builtin.set_fact:
        the_key: "{{ lookup('ansible.builtin.env', 'FAKE_PRIVATE_KEY') }}"
        the_password: "{{ lookup('ansible.builtin.env', 'FAKE_PASSWORD') }}"
        the_token: "{{ lookup('ansible.builtin.env', 'FAKE_TOKEN') }}"
        the_wrap: "{{ lookup('ansible.builtin.env', 'FAKE_WRAP') }}"
        the_short: "{{ lookup('ansible.builtin.env', 'FAKE_SHORT') }}"
      no_log: true

    - name: Use the secrets in a command (no_log)
      ansible.builtin.command: "printf '%s %s %s' '{{ the_password }}' '{{ the_token }}' '{{ the_short }}'"
      register: secret_output
      changed_when: false
      no_log: true

    - name: Download the tenant key
      penguinmails.vps.audit_event:
        action: ssh_key_downloaded
        tenant_id: "{{ tenant_id }}"
        ip_address: 198.51.100.20
        details:
          role: tenant
          wrapping_token: "{{ the_wrap }}"
          note: "unwrap with token={{ the_wrap }}"

    - name: Rotate the admin key (auto)
      penguinmails.vps.audit_event:
        action: ssh_key_rotated
        tenant_id: "{{ tenant_id }}"
        details: {mode: auto, role: admin, private_key: "{{ the_key }}", fingerprint: "SHA256:newfp"}

    - name: Rotate the tenant key (manual)
      penguinmails.vps.audit_event:
        action: ssh_key_rotated
        tenant_id: "{{ tenant_id }}"
        details: {mode: manual, role: tenant, output: "{{ secret_output.stdout | default('') }}"}
        redact_values: ["{{ the_short }}"]

    - name: Revoke the tenant key
      penguinmails.vps.audit_event:
        action: ssh_key_revoked
        tenant_id: "{{ tenant_id }}"
        details: {role: tenant, reason: "key in {{ the_key }}"}

    - name: Regenerate the tenant key
      penguinmails.vps.audit_event:
        action: ssh_key_regenerated
        tenant_id: "{{ tenant_id }}"
        details: {role: tenant}

    - name: Recover SMTP credentials
      penguinmails.vps.audit_event:
        action: smtp_credentials_recovered
        tenant_id: "{{ tenant_id }}"
        details:
          username: admin@t1.example.com
          new_vps_ip: 203.0.113.8
          recovery_type: vps_migration
          smtp:
            password: "{{ the_password }}"
          url: "https://admin:{{ the_password }}@mail.t1.example.com/admin"

    - name: Bulk rotation summary
      penguinmails.vps.audit_event:
        action: bulk_rotation_completed
        details: {rotatedCount: 4, failedCount: 1, vault_token: "{{ the_token }}"}

    - name: Failed logins collected
      penguinmails.vps.audit_event:
        action: ssh_login_failed
        status: failure
        tenant_id: "{{ tenant_id }}"
        ip_address: "{{ item }}"
        details: {count: 3}
      loop: [192.0.2.10, 192.0.2.11]

    - name: Migrate the tenant
      block:
        - name: Provision the new VPS (fails)
          ansible.builtin.fail:
            msg: provisioning failed for t1
        - name: Never reached
          penguinmails.vps.audit_event:
            action: vps_migration_completed
            tenant_id: "{{ tenant_id }}"
      rescue:
        - name: Audit the failed migration
          penguinmails.vps.audit_event:
            action: vps_migration_failed
            status: failure
            tenant_id: "{{ tenant_id }}"
            details:
              failed_task: "{{ ansible_failed_task.name }}"
              old_vps_ip: 203.0.113.7
              error: "{{ ansible_failed_result.msg }} (vault token {{ the_token }})"

    - name: A second tenant migrates fine
      penguinmails.vps.audit_event:
        action: vps_migration_completed
        tenant_id: t2
        ip_address: 203.0.113.9
        details: {reason: compromise, oldVpsIp: 203.0.113.7, newVpsIp: 203.0.113.9, secrets_recovered: [ssh_keys, smtp_creds, dkim_keys]}
"""

EXPECTED = [
    ("ssh_key_download", "t1", "success", "info"),
    ("ssh_key_rotated", "t1", "success", "info"),
    ("ssh_key_rotated", "t1", "success", "info"),
    ("ssh_key_revoked", "t1", "success", "info"),
    ("ssh_key_regenerated", "t1", "success", "info"),
    ("smtp_credentials_recovered", "t1", "success", "info"),
    ("bulk_rotation_completed", None, "success", "info"),
    ("ssh_login_failed", "t1", "failure", "warning"),
    ("ssh_login_failed", "t1", "failure", "warning"),
    ("vps_migration_failed", "t1", "failure", "critical"),
    ("vps_migration_completed", "t2", "success", "info"),
]


# -- tests -------------------------------------------------------------------------------
def test_lifecycle_events_sinks_alerts_and_no_secrets_at_vvvv(tmp_path, webhook, syslog_udp, smtp):
    fake = fake_secrets()
    audit_file = tmp_path / "audit" / "events.jsonl"
    unix_path = str(tmp_path / "syslog.sock")
    env = callback_env(
        audit_file,
        PENGUINMAILS_AUDIT_WEBHOOK_URL=webhook.url + "/all",
        PENGUINMAILS_AUDIT_ALERT_WEBHOOK_URL=webhook.url + "/alert",
        PENGUINMAILS_AUDIT_WEBHOOK_SECRET="hook-signing-secret",
        PENGUINMAILS_AUDIT_SYSLOG=syslog_udp.address,
        PENGUINMAILS_AUDIT_ALERT_EMAIL_TO="ops@example.com,sec@example.com",
        PENGUINMAILS_AUDIT_ALERT_EMAIL_FROM="audit@penguinmails.test",
        PENGUINMAILS_AUDIT_SMTP_HOST="127.0.0.1",
        PENGUINMAILS_AUDIT_SMTP_PORT=str(smtp.port),
        PENGUINMAILS_AUDIT_USER="ops-alice",
        SSH_CLIENT="198.51.100.77 52022 22",  # the operator's end of the session the run was started in
        FAKE_PRIVATE_KEY=fake["private_key"],
        FAKE_PASSWORD=fake["password"],
        FAKE_TOKEN=fake["token"],
        FAKE_WRAP=fake["wrap"],
        FAKE_SHORT=fake["short"],
    )
    with SyslogReceiver(unix_path) as unix_syslog:
        proc = run_playbook(LIFECYCLE_PLAY, env=dict(env, PENGUINMAILS_AUDIT_SYSLOG=syslog_udp.address),
                            args=["-vvvv"], tmp_path=tmp_path)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        # a second, short run through the Unix syslog socket continues the same chain
        proc2 = run_playbook(
            """
            - hosts: localhost
              gather_facts: false
              tasks:
                - penguinmails.vps.audit_event: {action: ssh_key_rotated, tenant_id: t3, details: {mode: auto}}
            """,
            env=dict(env, PENGUINMAILS_AUDIT_SYSLOG=unix_path), args=["-vvvv"],
        )
        assert proc2.returncode == 0, proc2.stdout[-3000:] + proc2.stderr[-3000:]
        wait_until(lambda: len(unix_syslog.messages) == 2, 10, "the Unix syslog event and checkpoint")

    events = read_events(audit_file)
    assert [(e["action"], e["tenantId"], e["status"], e["severity"]) for e in events] == EXPECTED + [
        ("ssh_key_rotated", "t3", "success", "info")]
    assert [e["details"].get("mode") for e in events[1:3]] == ["auto", "manual"]
    assert events[6]["details"]["rotated_count"] == 4 and events[6]["details"]["failed_count"] == 1
    assert [e["ipAddress"] for e in events if e["action"] == "ssh_login_failed"] == ["192.0.2.10", "192.0.2.11"]
    assert events[9]["details"]["failed_task"] == "Provision the new VPS (fails)"
    assert all(e["userId"] == "ops-alice" for e in events)
    # The specification's fields: where the action came from (the audit point's, else the SSH session's), the client.
    assert events[0]["ipAddress"] == "198.51.100.20" and events[1]["ipAddress"] == "198.51.100.77"
    assert all(e["userAgent"].startswith("ansible-core/") and " penguinmails.vps/" in e["userAgent"] for e in events)
    assert events[0]["context"]["playbook"] == "playbook.yml" and events[0]["context"]["task"] == "Download the tenant key"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["prev_hash"] == "0" * 64
    assert all(b["prev_hash"] == a["hash"] for a, b in zip(events, events[1:]))
    assert oct(os.stat(audit_file).st_mode & 0o777) == "0o600"

    # every event reached the webhook (signed), syslog; alerts only the critical one; each run ended with
    # a checkpoint (the file's last seq and hash) to syslog and the webhook, never to the alert sinks
    all_hook = webhook.events("/all")
    assert [e["hash"] for e in events_only(all_hook)] == [e["hash"] for e in events]
    checkpoints = [r["details"] for r in all_hook if r["action"] == CHECKPOINT]
    assert [(c["seq"], c["hash"], c["chainId"]) for c in checkpoints] == [
        (len(EXPECTED), events[len(EXPECTED) - 1]["hash"], events[0]["chain_id"]),
        (len(events), events[-1]["hash"], events[0]["chain_id"])]
    assert checkpoints[0]["runEvents"] == len(EXPECTED) and checkpoints[1]["runEvents"] == 1
    for request in [r for r in webhook.requests if r["path"] == "/all"]:
        expected_sig = "sha256=" + hmac.new(b"hook-signing-secret", request["body"], hashlib.sha256).hexdigest()
        assert request["headers"]["X-Penguinmails-Signature"] == expected_sig
    assert [e["action"] for e in webhook.events("/alert")] == ["vps_migration_failed"]
    wait_until(lambda: len(syslog_udp.messages) == len(EXPECTED) + 1, 10, "the UDP syslog messages")
    assert [b["hash"] for b in events_only(syslog_udp.bodies())] == [e["hash"] for e in events[:-1]]
    assert syslog_udp.bodies()[-1]["details"]["hash"] == events[len(EXPECTED) - 1]["hash"]
    assert syslog_udp.messages[0].startswith("<86>1 ")  # authpriv.info
    assert syslog_udp.messages[9].startswith("<82>1 ")  # authpriv.crit
    assert unix_syslog.bodies()[0]["tenantId"] == "t3" and unix_syslog.bodies()[1]["action"] == CHECKPOINT
    assert len(smtp.messages) == 1
    mail = smtp.messages[0]
    assert sorted(mail.rcpt_tos) == ["ops@example.com", "sec@example.com"]
    parsed = email.message_from_bytes(mail.original_content)
    assert "CRITICAL vps_migration_failed tenant t1" in parsed["Subject"]

    # no private key, password or token anywhere: stdout, stderr, file, webhook, syslog, mail
    haystacks = {
        "stdout": proc.stdout + proc2.stdout,
        "stderr": proc.stderr + proc2.stderr,
        "audit file": audit_file.read_text(),
        "webhook": b"".join(r["body"] for r in webhook.requests).decode(),
        "syslog": "".join(syslog_udp.messages + unix_syslog.messages),
        "mail": b"".join(m.original_content for m in smtp.messages).decode(),
    }
    assert "ssh_key_rotated" in haystacks["stdout"] and "<redacted>" not in haystacks["audit file"]
    for where, text in haystacks.items():
        for name in ("password", "token", "wrap", "key_line", "short"):
            assert fake[name] not in text, "%s leaked into %s" % (name, where)
        assert "PRIVATE KEY-----" not in text, "a private key leaked into %s" % where

    # the chain verifies, and editing one event makes verify fail
    good = verify(audit_file)
    assert good.returncode == 0 and "OK: %d events" % len(events) in good.stdout
    lines = audit_file.read_text().splitlines()
    edited = json.loads(lines[9])
    edited["status"] = "success"
    lines[9] = json.dumps(edited, sort_keys=True)
    audit_file.write_text("\n".join(lines) + "\n")
    bad = verify(audit_file)
    assert bad.returncode == 1 and "line 10: hash mismatch" in bad.stdout


@pytest.mark.parametrize("stdout_callback", ["ansible.builtin.json", "ansible.builtin.minimal", "ansible.builtin.oneline"])
def test_works_beside_other_stdout_callbacks_and_in_check_mode(tmp_path, stdout_callback):
    audit_file = tmp_path / "audit.jsonl"
    proc = run_playbook(
        """
        - hosts: localhost
          gather_facts: false
          tasks:
            - name: Revoke
              penguinmails.vps.audit_event: {action: ssh_key_revoked, tenant_id: t5, details: {role: admin}}
        """,
        env=callback_env(audit_file, ANSIBLE_STDOUT_CALLBACK=stdout_callback),
        args=["--check"],
        tmp_path=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    if stdout_callback == "ansible.builtin.json":
        assert json.loads(proc.stdout)["stats"]["localhost"]["ok"] == 1
    (event,) = read_events(audit_file)
    assert event["action"] == "ssh_key_revoked" and event["tenantId"] == "t5"
    assert event["context"]["check_mode"] is True


def test_ini_configuration_and_hmac_chain(tmp_path):
    audit_file = tmp_path / "audit.jsonl"
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text(
        "[defaults]\ncollections_path = %s\ncallbacks_enabled = penguinmails.vps.audit\n"
        "[penguinmails_audit]\nfile = %s\nchain_key = ini-chain-key\n" % (os.path.join(REPO, "collections"), audit_file)
    )
    proc = run_playbook(
        """
        - hosts: localhost
          gather_facts: false
          tasks:
            - penguinmails.vps.audit_event: {action: ssh_key_downloaded, tenant_id: t6}
        """,
        env={"ANSIBLE_CONFIG": str(cfg)},
        tmp_path=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (event,) = read_events(audit_file)
    assert event["hash_alg"] == "hmac-sha256"
    assert verify(audit_file).returncode == 1
    assert verify(audit_file, env={"PENGUINMAILS_AUDIT_CHAIN_KEY": "ini-chain-key"}).returncode == 0


def test_webhook_retries_are_bounded(tmp_path, webhook):
    webhook.fail["/flaky"] = [500, 503]
    webhook.fail["/down"] = [503] * 10
    webhook.fail["/gone?token=abc123secret"] = [404] * 10
    audit_file = tmp_path / "audit.jsonl"
    play = """
        - hosts: localhost
          gather_facts: false
          tasks:
            - penguinmails.vps.audit_event: {action: vps_migration_failed, status: failure, tenant_id: t7}
        """
    flaky = run_playbook(play, env=callback_env(audit_file, PENGUINMAILS_AUDIT_WEBHOOK_URL=webhook.url + "/flaky",
                                                PENGUINMAILS_AUDIT_WEBHOOK_BACKOFF="0.05"))
    assert flaky.returncode == 0 and "not delivered" not in flaky.stdout + flaky.stderr
    down = run_playbook(play, env=callback_env(audit_file, PENGUINMAILS_AUDIT_ALERT_WEBHOOK_URL=webhook.url + "/down",
                                               PENGUINMAILS_AUDIT_WEBHOOK_ATTEMPTS="4",
                                               PENGUINMAILS_AUDIT_WEBHOOK_BACKOFF="0.05"))
    gone = run_playbook(play, env=callback_env(audit_file, PENGUINMAILS_AUDIT_WEBHOOK_URL=webhook.url + "/gone?token=abc123secret",
                                               PENGUINMAILS_AUDIT_WEBHOOK_BACKOFF="0.05"))
    paths = [r["path"].split("?")[0] for r in webhook.requests]
    assert paths.count("/flaky") == 3 + 1  # two refusals, the event, then the end-of-run checkpoint
    assert [e["action"] for e in webhook.events("/flaky")] == ["vps_migration_failed"] * 3 + [CHECKPOINT]
    assert paths.count("/down") == 4
    assert paths.count("/gone") == 2  # 404 is final: one try for the event, one for the checkpoint
    assert down.returncode == 0 and gone.returncode == 0  # a failing sink never fails the play
    down_out = down.stdout + down.stderr
    assert "audit alert webhook: event vps_migration_failed not delivered" in down_out
    assert "delivery failed after 4 attempts (HTTP 503)" in down_out
    gone_out = gone.stdout + gone.stderr
    assert "refused the event: HTTP 404" in gone_out and "abc123secret" not in gone_out
    # the file still has every event, chained
    assert [e["action"] for e in read_events(audit_file)] == ["vps_migration_failed"] * 3
    assert verify(audit_file).returncode == 0


def test_unreachable_sinks_warn_and_the_file_keeps_the_event(tmp_path):
    audit_file = tmp_path / "audit.jsonl"
    dead_port = free_port()
    proc = run_playbook(
        """
        - hosts: localhost
          gather_facts: false
          tasks:
            - penguinmails.vps.audit_event: {action: vps_migration_failed, status: failure, tenant_id: t8}
        """,
        env=callback_env(
            audit_file,
            PENGUINMAILS_AUDIT_ALERT_WEBHOOK_URL="http://127.0.0.1:%d/x" % dead_port,
            PENGUINMAILS_AUDIT_WEBHOOK_ATTEMPTS="2",
            PENGUINMAILS_AUDIT_WEBHOOK_BACKOFF="0.05",
            PENGUINMAILS_AUDIT_ALERT_EMAIL_TO="ops@example.com",
            PENGUINMAILS_AUDIT_SMTP_HOST="127.0.0.1",
            PENGUINMAILS_AUDIT_SMTP_PORT=str(dead_port),
            PENGUINMAILS_AUDIT_SMTP_PASSWORD="smtp-pass-xyz",
            PENGUINMAILS_AUDIT_SMTP_USERNAME="ops",
            PENGUINMAILS_AUDIT_SYSLOG=str(tmp_path / "no-such.sock"),
        ),
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "audit alert webhook: event vps_migration_failed not delivered: webhook http://127.0.0.1:%d/x: delivery failed after 2 attempts" % dead_port in out
    assert "audit alert email: event vps_migration_failed not delivered" in out
    assert "audit syslog: event vps_migration_failed not delivered" in out
    assert "smtp-pass-xyz" not in out
    assert [e["tenantId"] for e in read_events(audit_file)] == ["t8"]


def test_module_results_carrying_audit_event_and_invalid_ones(tmp_path):
    """Any module may return `audit_event`; a no_log audit_event task is recorded as hidden."""
    audit_file = tmp_path / "audit.jsonl"
    proc = run_playbook(
        """
        - hosts: localhost
          gather_facts: false
          vars:
            audit_event:
              action: ssh_key_rotated
              tenant_id: t9
              details: {mode: auto, secret_id: abc-secret-id-123}
          tasks:
            - name: A module result that carries audit_event
              ansible.builtin.debug:
                var: audit_event
            - name: Hidden by no_log
              penguinmails.vps.audit_event: {action: ssh_key_revoked, tenant_id: t9}
              no_log: true
        """,
        env=callback_env(audit_file),
        tmp_path=tmp_path,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    events = read_events(audit_file)
    assert [e["action"] for e in events] == ["ssh_key_rotated", "audit_event_hidden"]
    # secret_id is no detail field of ssh_key_rotated: dropped (counted), never written
    assert events[0]["tenantId"] == "t9" and events[0]["details"] == {"mode": "auto", "dropped_fields": 1}
    assert "abc-secret-id-123" not in audit_file.read_text()
    assert "its event was hidden from the callback" in out


def test_invalid_audit_event_from_a_module_is_recorded(tmp_path):
    audit_file = tmp_path / "audit.jsonl"
    proc = run_playbook(
        """
        - hosts: localhost
          gather_facts: false
          vars:
            audit_event: {action: "Not A Name", tenant_id: t1}
          tasks:
            - ansible.builtin.debug:
                var: audit_event
        """,
        env=callback_env(audit_file),
        tmp_path=tmp_path,
    )
    assert proc.returncode == 0
    (event,) = read_events(audit_file)
    assert event["action"] == "audit_event_invalid" and "invalid audit action" in event["details"]["error"]
    assert "returned an invalid audit_event" in proc.stdout + proc.stderr


def test_audit_event_argument_errors_fail_the_task(tmp_path):
    audit_file = tmp_path / "audit.jsonl"
    proc = run_playbook(
        """
        - hosts: localhost
          gather_facts: false
          tasks:
            - penguinmails.vps.audit_event: {action: "Bad Name"}
        """,
        env=callback_env(audit_file),
        tmp_path=tmp_path,
    )
    assert proc.returncode == 2
    assert "invalid audit action 'Bad Name'" in proc.stdout
    assert not audit_file.exists()


def test_a_list_of_events_in_one_task_is_chained_and_a_bad_one_delivers_none(tmp_path):
    audit_file = tmp_path / "audit.jsonl"
    proc = run_playbook(
        """
        - hosts: localhost
          gather_facts: false
          tasks:
            - name: Three tenants of a host in one task
              penguinmails.vps.audit_event:
                events:
                  - {action: ssh_key_rotated, tenant_id: t1, details: {role: admin, mode: auto, host: vps-1}}
                  - {action: ssh_key_rotated, tenant_id: t2, details: {role: tenant, mode: auto, host: vps-1}}
                  - {action: ssh_key_rotated, tenant_id: t3, status: failure, details: {roles: [admin], stage: host, error: refused}}
              register: many
            - name: Nothing to audit
              penguinmails.vps.audit_event:
                events: []
              register: empty_list
            - ansible.builtin.assert:
                that:
                  - many.audit_events | map(attribute='tenantId') | list == ['t1', 't2', 't3']
                  - many.audit_event.tenantId == 't3'
                  - empty_list.audit_events == [] and empty_list is not changed
            - name: One bad event of the list
              penguinmails.vps.audit_event:
                events:
                  - {action: ssh_key_rotated, tenant_id: t4}
                  - {action: "Bad Name", tenant_id: t5}
        """,
        env=callback_env(audit_file),
        tmp_path=tmp_path,
    )
    assert proc.returncode == 2, proc.stdout[-3000:]
    assert "events[1]: invalid audit action 'Bad Name': must match " in proc.stdout
    events = [event for event in read_events(audit_file) if event.get("action") == "ssh_key_rotated"]
    assert [(e["tenantId"], e["status"], e["severity"]) for e in events] == [
        ("t1", "success", "info"), ("t2", "success", "info"), ("t3", "failure", "critical")]
    assert events[0]["details"]["host"] == "vps-1" and events[2]["details"]["stage"] == "host"
    assert len(set(e["seq"] for e in events)) == 3
    # chained one after the other, each with the defaults and the context of a single event of that task
    assert all(b["prev_hash"] == a["hash"] and b["seq"] == a["seq"] + 1 for a, b in zip(events, events[1:]))
    assert all(e["userId"] and e["context"]["task"] == "Three tenants of a host in one task" for e in events)
    assert not [e for e in read_events(audit_file) if e.get("tenantId") in ("t4", "t5")]  # the bad list: none written
    check = verify(audit_file)
    assert check.returncode == 0, check.stdout + check.stderr


def test_ansible_doc_renders_the_callback_and_module():
    for kind, name in (("callback", "penguinmails.vps.audit"), ("module", "penguinmails.vps.audit_event")):
        proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-doc"), "-t", kind, name],
                              capture_output=True, text=True, env=ansible_env(), timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr
        assert "audit" in proc.stdout and "ERROR" not in proc.stderr
