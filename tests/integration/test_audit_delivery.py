# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Delivery of audit events in real ansible-playbook runs: never drop an event (damaged tail, a sink
that refuses, no sink at all), TLS for alert mail and webhooks, and credentials never in clear.

Issue 16, seen problems 3 (events silently dropped) and 4 (alert mail without TLS verification,
login over a plain connection); issue 14: the webhook's ``validate_certs`` and ``ca_path``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support.ansible_run import COLLECTIONS, REPO, run_playbook
from tests.support.receivers import SmtpServer, SyslogReceiver, Webhook
from tests.support.tls import TestCA
from tests.support.wait import wait_until

ONE_EVENT = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Audit a rotation
      penguinmails.vps.audit_event: {action: ssh_key_rotated, tenant_id: %s, details: {role: admin, mode: manual}}
    - name: A later task
      ansible.builtin.debug: {msg: after the audit point}
"""

CRITICAL_EVENT = """
- hosts: localhost
  gather_facts: false
  tasks:
    - penguinmails.vps.audit_event: {action: vps_migration_failed, status: failure, tenant_id: t1, details: {reason: failure}}
"""


def callback_env(audit_file, **extra):
    env = {"ANSIBLE_CALLBACKS_ENABLED": "penguinmails.vps.audit", "PENGUINMAILS_AUDIT_FILE": str(audit_file),
           "PENGUINMAILS_AUDIT_WEBHOOK_BACKOFF": "0.05"}
    env.update(extra)
    return env


def good_events(path):
    events = []
    with open(path, "rb") as handle:
        for raw in handle:
            try:
                events.append(json.loads(raw))
            except ValueError:
                continue
    return events


def verify(path, *args, env=None):
    """The verify command as an installed collection runs it: python3 -m ansible_collections...audit."""
    cmd = [sys.executable, "-m", "ansible_collections.penguinmails.vps.plugins.module_utils.audit", "verify", str(path)]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=60, check=False,
                          env=dict(os.environ, PYTHONPATH=COLLECTIONS, **(env or {})))


# -- seen problem 3: events silently dropped ---------------------------------------------------
def test_a_damaged_last_line_never_drops_the_events_of_later_runs(tmp_path):
    audit_file = tmp_path / "audit.jsonl"
    first = run_playbook(ONE_EVENT % "t1", env=callback_env(audit_file), tmp_path=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    with open(audit_file, "ab") as handle:
        handle.write(b'{"action": "ssh_key_revoked", "tenantId": "t1", "sta')  # a writer killed mid-line
    outputs = []
    for tenant in ("t2", "t3"):
        proc = run_playbook(ONE_EVENT % tenant, env=callback_env(audit_file), tmp_path=tmp_path)
        outputs.append(proc.stdout + proc.stderr)
        assert proc.returncode == 0, outputs[-1]
        assert "cannot write" not in outputs[-1]
    events = good_events(audit_file)
    assert [(e["action"], e.get("tenantId")) for e in events] == [
        ("ssh_key_rotated", "t1"), ("chain_break", None), ("ssh_key_rotated", "t2"), ("ssh_key_rotated", "t3")]
    assert events[1]["prev_hash"] == events[0]["hash"] and events[1]["severity"] == "critical"
    assert [e["seq"] for e in events] == [1, 2, 3, 4]
    result = verify(audit_file)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "line 3: chain break after line 1: 53 bytes skipped (lines 2)" in result.stdout  # 52 + its newline


# -- never drop an event: the policy -----------------------------------------------------------
def test_an_event_no_sink_accepted_fails_the_play(tmp_path):
    blocked = tmp_path / "not-a-file"
    blocked.mkdir()  # the file sink cannot open a directory for appending
    proc = run_playbook(ONE_EVENT % "t1", env=callback_env(blocked), tmp_path=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "audit event ssh_key_rotated reached no sink" in out
    assert "after the audit point" not in out  # the play stopped at the audit point


def test_a_failing_file_sink_warns_when_syslog_took_the_event(tmp_path):
    blocked = tmp_path / "not-a-file"
    blocked.mkdir()
    with SyslogReceiver() as syslog:
        proc = run_playbook(ONE_EVENT % "t1", env=callback_env(blocked, PENGUINMAILS_AUDIT_SYSLOG=syslog.address),
                            tmp_path=tmp_path)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out
        wait_until(lambda: any(b.get("action") == "ssh_key_rotated" for b in syslog.bodies()), 10, "the syslog copy")
    assert "audit file: event ssh_key_rotated not written" in out
    assert "after the audit point" in out
    # with on_sink_failure=fail the same run stops at the audit point
    with SyslogReceiver() as syslog:
        strict_env = callback_env(blocked, PENGUINMAILS_AUDIT_SYSLOG=syslog.address,
                                  PENGUINMAILS_AUDIT_ON_SINK_FAILURE="fail")
        strict = run_playbook(ONE_EVENT % "t1", env=strict_env, tmp_path=tmp_path)
    assert strict.returncode == 2 and "after the audit point" not in strict.stdout


EVENT_LIST = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Audit the three tenants of a host in one task
      penguinmails.vps.audit_event:
        events:
          - {action: ssh_key_rotated, tenant_id: t1, details: {role: admin, mode: auto}}
          - {action: ssh_key_rotated, tenant_id: t2, details: {role: admin, mode: auto}}
          - {action: ssh_key_rotated, tenant_id: t3, details: {role: admin, mode: auto}}
    - name: A later task
      ansible.builtin.debug: {msg: after the audit point}
"""


def test_a_list_of_events_is_delivered_whole_and_fails_by_the_policy_of_each(tmp_path):
    """events: every event of the list is tried even after one was refused; the task then fails by the same
    rules as a single event, naming the event's index (issue 20)."""
    audit_file = tmp_path / "audit.jsonl"
    with Webhook() as hook:
        hook.fail["/all"] = [200, 500]  # the second event of the list is refused
        env = callback_env(audit_file, PENGUINMAILS_AUDIT_WEBHOOK_URL=hook.url + "/all",
                           PENGUINMAILS_AUDIT_WEBHOOK_ATTEMPTS="1", PENGUINMAILS_AUDIT_ON_SINK_FAILURE="fail")
        strict = run_playbook(EVENT_LIST, env=env, tmp_path=tmp_path)
        posted = [e["tenantId"] for e in hook.events("/all") if e["action"] == "ssh_key_rotated"]
    out = strict.stdout + strict.stderr
    assert strict.returncode == 2, out
    assert "events[1]: audit event ssh_key_rotated was refused by a sink (webhook" in out
    assert "on_sink_failure=fail stops here" in out and "more of the list" not in out
    assert "after the audit point" not in out
    assert posted == ["t1", "t2", "t3"]  # the third was still delivered after the second was refused
    events = [e for e in good_events(audit_file) if e["action"] == "ssh_key_rotated"]
    assert [(e["tenantId"], e["seq"]) for e in events] == [("t1", 1), ("t2", 2), ("t3", 3)]
    assert all(b["prev_hash"] == a["hash"] for a, b in zip(events, events[1:]))
    check = verify(audit_file)
    assert check.returncode == 0, check.stdout + check.stderr
    # on_sink_failure=warn (the default): a warning, and the play goes on
    with Webhook() as hook:
        hook.fail["/all"] = [200, 500]
        lenient = run_playbook(EVENT_LIST, env=callback_env(tmp_path / "lenient.jsonl", PENGUINMAILS_AUDIT_WEBHOOK_ATTEMPTS="1",
                                                            PENGUINMAILS_AUDIT_WEBHOOK_URL=hook.url + "/all"),
                               tmp_path=tmp_path)
    assert lenient.returncode == 0, lenient.stdout + lenient.stderr
    assert "audit webhook: event ssh_key_rotated not delivered" in lenient.stdout + lenient.stderr
    assert "after the audit point" in lenient.stdout
    # no sink took any of them (on_event_lost=fail, the default): the task fails, every event counted
    blocked = tmp_path / "not-a-file"
    blocked.mkdir()
    lost = run_playbook(EVENT_LIST, env=callback_env(blocked), tmp_path=tmp_path)
    assert lost.returncode == 2, lost.stdout + lost.stderr
    assert "events[0]: audit event ssh_key_rotated reached no sink (" in lost.stdout
    assert "(and 2 more of the list)" in lost.stdout and "after the audit point" not in lost.stdout


# -- seen problem 4: alert mail without TLS verification ------------------------------------------
@pytest.mark.parametrize("mode", ["starttls", "tls"])
def test_alert_mail_verifies_the_server_certificate(tmp_path, mode):
    ca = TestCA(tmp_path)
    env = callback_env(tmp_path / "audit.jsonl", PENGUINMAILS_AUDIT_ALERT_EMAIL_TO="ops@example.com",
                       PENGUINMAILS_AUDIT_SMTP_HOST="127.0.0.1", PENGUINMAILS_AUDIT_SMTP_SECURITY=mode,
                       PENGUINMAILS_AUDIT_SMTP_USERNAME="relay-user", PENGUINMAILS_AUDIT_SMTP_PASSWORD="relay-pass-123")
    with SmtpServer(mode, ca.server_context()) as smtp:
        env["PENGUINMAILS_AUDIT_SMTP_PORT"] = str(smtp.port)
        untrusted = run_playbook(CRITICAL_EVENT, env=env, tmp_path=tmp_path)
        assert untrusted.returncode == 0, untrusted.stdout + untrusted.stderr  # the file took the event
        assert smtp.messages == [] and smtp.auth_attempts == []  # no mail, no password to an unverified server
        assert "audit alert email: event vps_migration_failed not delivered" in untrusted.stdout + untrusted.stderr
        assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stdout + untrusted.stderr
        trusted = run_playbook(CRITICAL_EVENT, env=dict(env, PENGUINMAILS_AUDIT_SMTP_CA_PATH=ca.ca_path), tmp_path=tmp_path)
        assert trusted.returncode == 0, trusted.stdout + trusted.stderr
        assert len(smtp.messages) == 1 and [a[1:] for a in smtp.auth_attempts] == [("relay-user", "relay-pass-123")]


def test_credentials_never_go_over_a_plain_smtp_connection(tmp_path):
    env = callback_env(tmp_path / "audit.jsonl", PENGUINMAILS_AUDIT_ALERT_EMAIL_TO="ops@example.com",
                       PENGUINMAILS_AUDIT_SMTP_HOST="127.0.0.1",
                       PENGUINMAILS_AUDIT_SMTP_USERNAME="relay-user", PENGUINMAILS_AUDIT_SMTP_PASSWORD="relay-pass-123")
    with SmtpServer("plain") as smtp:  # offers AUTH without TLS
        env["PENGUINMAILS_AUDIT_SMTP_PORT"] = str(smtp.port)
        proc = run_playbook(CRITICAL_EVENT, env=env, tmp_path=tmp_path)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out
        assert smtp.auth_attempts == [] and smtp.messages == []
        assert "smtp_username needs smtp_security starttls or tls" in out
        assert "relay-pass-123" not in out
        # without credentials, a plain relay (smtp_security=none, the default) still gets the alert
        anonymous = run_playbook(CRITICAL_EVENT, env=dict(env, PENGUINMAILS_AUDIT_SMTP_USERNAME="",
                                                          PENGUINMAILS_AUDIT_SMTP_PASSWORD=""), tmp_path=tmp_path)
        assert anonymous.returncode == 0 and len(smtp.messages) == 1 and smtp.auth_attempts == []


# -- issue 14: the webhook with validate_certs and ca_path ----------------------------------------
def test_https_webhook_verifies_certificates_with_a_ca_path(tmp_path):
    ca = TestCA(tmp_path)
    with Webhook(tls=ca.server_context()) as hook:
        env = callback_env(tmp_path / "audit.jsonl", PENGUINMAILS_AUDIT_WEBHOOK_URL=hook.url + "/all",
                           PENGUINMAILS_AUDIT_WEBHOOK_ATTEMPTS="1")
        untrusted = run_playbook(ONE_EVENT % "t1", env=env, tmp_path=tmp_path)
        assert untrusted.returncode == 0
        assert "audit webhook: event ssh_key_rotated not delivered" in untrusted.stdout + untrusted.stderr
        assert [e.get("action") for e in hook.events("/all")] == []
        trusted = run_playbook(ONE_EVENT % "t2", env=dict(env, PENGUINMAILS_AUDIT_WEBHOOK_CA_PATH=ca.ca_path),
                               tmp_path=tmp_path)
        assert trusted.returncode == 0, trusted.stdout + trusted.stderr
        assert [(e["action"], e["tenantId"]) for e in hook.events("/all") if e["action"] != "audit_checkpoint"] == [
            ("ssh_key_rotated", "t2")]
        unverified = run_playbook(ONE_EVENT % "t3", env=dict(env, PENGUINMAILS_AUDIT_WEBHOOK_VALIDATE_CERTS="false"),
                                  tmp_path=tmp_path)
        assert unverified.returncode == 0
        assert [e["tenantId"] for e in hook.events("/all") if e["action"] != "audit_checkpoint"] == ["t2", "t3"]


# -- no file (AWX): the run is chained in a private file that is not a sink ----------------------
def test_without_a_file_the_run_is_chained_for_syslog_and_needs_a_remote_sink(tmp_path):
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    loop = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Audit three rotations
      penguinmails.vps.audit_event: {action: ssh_key_rotated, tenant_id: "{{ item }}", details: {role: admin}}
      loop: [t1, t2, t3]
"""
    with SyslogReceiver() as syslog:
        proc = run_playbook(loop, env=callback_env("", PENGUINMAILS_AUDIT_SYSLOG=syslog.address, TMPDIR=str(private_tmp)),
                            tmp_path=tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        wait_until(lambda: len(syslog.messages) == 3, 10, "three syslog messages")
        bodies = syslog.bodies()
    assert [(b["tenantId"], b["seq"]) for b in bodies] == [("t1", 1), ("t2", 2), ("t3", 3)]
    assert all(b["prev_hash"] == a["hash"] for a, b in zip(bodies, bodies[1:]))
    assert not [b for b in bodies if b["action"] == "audit_checkpoint"]  # nothing on disk to anchor
    assert not [p for p in private_tmp.iterdir() if p.name.startswith("penguinmails-audit-")]  # removed at the end
    lost = run_playbook(loop, env=callback_env("", TMPDIR=str(private_tmp)), tmp_path=tmp_path)
    assert lost.returncode == 2 and "audit event ssh_key_rotated reached no sink (no sink is configured)" in lost.stdout


SINKS_PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Where do the alerts go
      penguinmails.vps.audit_sinks_info:
      register: alerts
    - name: Show it
      ansible.builtin.debug:
        msg: "SINKS={{ alerts.alert_sinks | join(',') }} UNHEARD={{ alerts.unheard }} CALLBACK={{ alerts.callback_enabled }}"
"""


@pytest.mark.parametrize("extra, sinks, warned", [
    (None, [], "the audit callback is not enabled"),
    ({}, [], "the audit callback writes the audit file only"),
    ({"PENGUINMAILS_AUDIT_SYSLOG": "127.0.0.1:9", "PENGUINMAILS_AUDIT_ALERT_EMAIL_TO": "ops@example.com"},
     ["alert email", "syslog"], None),
])
def test_a_run_whose_alerts_reach_no_one_says_so(tmp_path, extra, sinks, warned):
    """Issue 21, loud when unheard: a scheduled run with no alert sink warns at its start; one with a sink names it."""
    env = None if extra is None else callback_env(tmp_path / "audit.jsonl", **extra)
    proc = run_playbook(SINKS_PLAY, env=env, tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SINKS=%s UNHEARD=%s CALLBACK=%s" % (",".join(sinks), not sinks, extra is not None) in proc.stdout
    said = " ".join((proc.stdout + proc.stderr).split())
    if warned:
        assert "[WARNING]: no alert of this run can reach anyone: %s" % warned in said
    else:
        assert "[WARNING]" not in said


def test_the_scheduled_playbooks_say_where_their_alerts_go_first():
    """rotate (rotate_all), backup, report and vault_history start with tasks/alert_sinks.yml."""
    import yaml

    for name in ("rotate", "backup", "report", "vault_history"):
        with open(os.path.join(REPO, "playbooks", name + ".yml")) as handle:
            plays = yaml.safe_load(handle)
        local = [play for play in plays if play.get("hosts") == "localhost"][0]
        assert local["tasks"][0].get("ansible.builtin.include_tasks") == "tasks/alert_sinks.yml", name
