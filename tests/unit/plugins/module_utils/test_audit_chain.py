# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Audit events: model, redaction, hash chain, verify command, concurrent appends."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.penguinmails.vps.plugins.module_utils import audit

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
AUDIT_PY = os.path.join(REPO, "plugins", "module_utils", "audit.py")

FAKE_PEM = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACDfakefakefakefakefakefakefakefakefakefakefakeAAAA\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)
FAKE_PKCS8 = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7fake\n-----END PRIVATE KEY-----"
FAKE_TOKEN = "hvs.CAESIFakeFakeFakeFakeFakeFakeFakeFake1234"
FAKE_JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0ZW5hbnQxIn0.c2lnbmF0dXJlZmFrZQ"


def make_event(action="ssh_key_rotated", **kwargs):
    kwargs.setdefault("tenant_id", "t1")
    kwargs.setdefault("details", {"mode": "manual", "role": "admin"})
    return audit.build_event(action, **kwargs)


# -- model -------------------------------------------------------------------------------
def test_event_has_the_seed_fields_and_defaults():
    event = make_event(user_id="ops", ip_address="203.0.113.7")
    assert set(event) == set(audit.EVENT_FIELDS)
    assert event["action"] == "ssh_key_rotated"
    assert event["tenantId"] == "t1" and event["userId"] == "ops" and event["ipAddress"] == "203.0.113.7"
    assert event["status"] == "success" and event["severity"] == "info"
    assert event["timestamp"].endswith("Z")


@pytest.mark.parametrize(
    "action,status,expected",
    [
        ("vps_migration_failed", "failure", "critical"),
        ("vps_migration_failed", "success", "critical"),
        ("ssh_key_rotated", "failure", "critical"),
        ("ssh_login_failed", "failure", "warning"),
        ("bulk_rotation_completed", "success", "info"),
    ],
)
def test_default_severity(action, status, expected):
    assert make_event(action, status=status)["severity"] == expected


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"action": "Bad Action"}, "invalid audit action"),
        ({"action": "../x"}, "invalid audit action"),
        ({"action": "ssh_key_rotated", "status": "ok"}, "invalid audit status"),
        ({"action": "ssh_key_rotated", "severity": "panic"}, "invalid audit severity"),
        ({"action": "ssh_key_rotated", "details": ["x"]}, "details must be a mapping"),
    ],
)
def test_invalid_events_are_refused(kwargs, message):
    with pytest.raises(audit.AuditError, match=message):
        audit.build_event(**kwargs)


def test_normalize_accepts_camel_case_and_option_names():
    one = audit.normalize_event({"action": "bulk_rotation_completed", "tenantId": None,
                                 "details": {"rotatedCount": 3, "failedCount": 1}})
    two = audit.normalize_event({"action": "ssh_key_downloaded", "tenant_id": "t2", "user_id": "alice"})
    assert two["action"] == "ssh_key_download"  # the earlier name, written under the specified one
    assert one["details"] == {"rotated_count": 3, "failed_count": 1}
    assert two["tenantId"] == "t2" and two["userId"] == "alice"


# -- redaction ---------------------------------------------------------------------------
def test_redaction_of_keys_and_values_nested():
    details = {
        "password": "hunter2hunter2",
        "smtp": {"username": "admin@example.com", "Password": "p4ss-w0rd!", "password_set": True},
        "keys": [{"private_key": FAKE_PEM, "public_key": "ssh-ed25519 AAAAC3Nza pub", "fingerprint": "SHA256:abc"}],
        "log": "vault said token=%s and the key was %s" % (FAKE_TOKEN, FAKE_PKCS8),
        "url": "https://bob:s3cr3tpass@hooks.example.com/x",
        "auth": "Authorization: Bearer %s" % FAKE_JWT,
        "api_key": "abcd1234efgh",
        "rotated_count": 3,
    }
    kept = audit.redact(details)
    text = json.dumps(kept)
    for secret in ("hunter2hunter2", "p4ss-w0rd!", "OPENSSH PRIVATE", "BEGIN PRIVATE KEY", FAKE_TOKEN, FAKE_JWT,
                   "s3cr3tpass", "abcd1234efgh", "fakefake"):
        assert secret not in text
    assert kept["smtp"]["username"] == "admin@example.com"
    assert kept["smtp"]["password_set"] is True
    assert kept["keys"][0]["public_key"] == "ssh-ed25519 AAAAC3Nza pub"
    assert kept["keys"][0]["fingerprint"] == "SHA256:abc"
    assert kept["rotated_count"] == 3
    assert kept["url"] == "https://bob:%s@hooks.example.com/x" % audit.REDACTED


def test_details_keep_only_the_fields_their_action_allows():
    details = {"role": "admin", "mode": "manual", "fingerprint": "SHA256:abc", "private_key": FAKE_PEM,
               "note": "free text", FAKE_PEM: 1}
    event = make_event(details=details)
    assert event["details"] == {"role": "admin", "mode": "manual", "fingerprint": "SHA256:abc", "dropped_fields": 3}
    # an action nobody declared keeps the generic fields only
    other = audit.build_event("site_backup_done", details={"host": "h1", "error": "none", "bucket": "b1"})
    assert other["details"] == {"host": "h1", "error": "none", "dropped_fields": 1}
    # every action the collection's playbooks emit is declared
    for action in ("ssh_key_rotated", "ssh_key_revoked", "ssh_key_regenerated", "ssh_key_download",
                   "bulk_rotation_completed", "vps_migration_completed", "vps_migration_failed",
                   "smtp_credentials_recovered", "smtp_password_rotated", "smtp_password_applied", "dkim_key_rotated",
                   "ssh_login_failed", "vault_write_burst", "chain_break", "host_key_recorded", "tenant_notified"):
        assert action in audit.ACTIONS


def test_random_looking_words_are_masked_but_public_material_is_kept():
    details = {
        "out": "generated Pw-YRkPvmF59iYdQe_UGG4N4poR for the admin",
        "pub": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeFakeFake0123456789abcd admin@t1",
        "fingerprint": "SHA256:Xk3mPq9ZrT5vW2yB8nC4dF6gH1jK7lL0oP3qR5sT8uV",
        "when": "2026-11-23T10:44:12.123456Z",
        "key": "4bc04b4dfa3e1c2b9f0e8d7c6b5a49382716a5b4c3d2e1f0a9b8c7d6e5f4a3b2",
        "task": "Provision_the_new_vps_for_tenant_t1",
    }
    out = audit.redact(details)
    assert out["out"] == "generated ******** for the admin"
    assert out["key"] == audit.REDACTED  # a hex string of 128 bits or more is a key (API, HMAC, secret id)
    for name in ("pub", "fingerprint", "when", "task"):
        assert out[name] == details[name]
    # ids in the event's own fields are not subject to the heuristic
    event = audit.build_event("ssh_key_rotated", tenant_id="TenantAbc1234567890xyz")
    assert event["tenantId"] == "TenantAbc1234567890xyz"


def test_no_log_values_are_masked_anywhere():
    event = make_event(details={"note": "the new value is Xy7-secret-value"}, no_log_values=["Xy7-secret-value"])
    assert "Xy7-secret-value" not in json.dumps(event)


@settings(max_examples=60, deadline=None)
@given(prefix=st.text(max_size=30), suffix=st.text(max_size=30), which=st.sampled_from([FAKE_PEM, FAKE_PKCS8, FAKE_TOKEN, FAKE_JWT]))
def test_secrets_embedded_in_any_text_are_redacted(prefix, suffix, which):
    out = audit.redact({"free": prefix + " " + which + " " + suffix, "list": [[which]]})
    text = json.dumps(out)
    assert which.strip() not in text
    assert "PRIVATE KEY-----\\n" not in text


# -- chain -------------------------------------------------------------------------------
def write_events(path, count, chain_key=None):
    sink = audit.FileSink(str(path), chain_key)
    return [sink.append(make_event(details={"n": n})) for n in range(count)]


def test_chain_links_and_verifies(tmp_path):
    path = tmp_path / "audit.jsonl"
    events = write_events(path, 4)
    assert events[0]["prev_hash"] == audit.GENESIS_HASH and events[0]["seq"] == 1
    for before, after in zip(events, events[1:]):
        assert after["prev_hash"] == before["hash"] and after["seq"] == before["seq"] + 1
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    result = audit.verify_file(str(path))
    assert result.ok and result.count == 4 and result.last_hash == events[-1]["hash"]


def test_chain_continues_across_sinks_and_runs(tmp_path):
    path = tmp_path / "audit.jsonl"
    write_events(path, 2)
    more = write_events(path, 2)
    assert more[0]["seq"] == 3
    assert audit.verify_file(str(path)).ok


def _edit(path, index, change):
    lines = path.read_text().splitlines()
    event = json.loads(lines[index])
    change(event)
    lines[index] = json.dumps(event, sort_keys=True)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "tamper,expected",
    [
        (lambda p: _edit(p, 1, lambda e: e.update(status="failure")), "line 2: hash mismatch"),
        (lambda p: _edit(p, 2, lambda e: e["details"].update(n=99)), "line 3: hash mismatch"),
        (lambda p: _edit(p, 0, lambda e: e.update(tenantId="t9")), "line 1: hash mismatch"),
    ],
)
@pytest.mark.forged_audit_events
def test_editing_one_event_fails_verify(tmp_path, tamper, expected):
    path = tmp_path / "audit.jsonl"
    write_events(path, 4)
    tamper(path)
    result = audit.verify_file(str(path))
    assert not result.ok
    assert expected in result.summary()


def test_editing_and_rehashing_one_event_breaks_the_next_link(tmp_path):
    path = tmp_path / "audit.jsonl"
    write_events(path, 3)

    def forge(event):
        event["status"] = "failure"
        event["hash"] = audit.event_hash(event)

    _edit(path, 0, forge)
    result = audit.verify_file(str(path))
    assert not result.ok and "line 2: prev_hash does not match" in result.summary()


def test_removed_and_reordered_events_fail_verify(tmp_path):
    path = tmp_path / "audit.jsonl"
    write_events(path, 4)
    lines = path.read_text().splitlines()
    (tmp_path / "removed.jsonl").write_text("\n".join(lines[:1] + lines[2:]) + "\n")
    (tmp_path / "swapped.jsonl").write_text("\n".join([lines[0], lines[2], lines[1], lines[3]]) + "\n")
    removed = audit.verify_file(str(tmp_path / "removed.jsonl"))
    swapped = audit.verify_file(str(tmp_path / "swapped.jsonl"))
    assert not removed.ok and "line 2: prev_hash does not match" in removed.summary()
    assert not swapped.ok and "sequence" in swapped.summary()


def test_hmac_chain_needs_the_key(tmp_path):
    path = tmp_path / "audit.jsonl"
    write_events(path, 2, chain_key="chain-key-1")
    assert audit.verify_file(str(path), chain_key="chain-key-1").ok
    assert not audit.verify_file(str(path)).ok
    assert not audit.verify_file(str(path), chain_key="other").ok
    # an attacker without the key cannot re-hash an edited event
    _edit(path, 1, lambda e: e.update(status="failure", hash=audit.event_hash(e)))
    assert not audit.verify_file(str(path), chain_key="chain-key-1").ok


def _append_many(path, count):
    sink = audit.FileSink(path)
    for n in range(count):
        sink.append(audit.build_event("ssh_key_rotated", tenant_id="p%d" % os.getpid(), details={"n": n}))


def test_concurrent_processes_keep_one_valid_chain(tmp_path):
    path = str(tmp_path / "audit.jsonl")
    procs = [multiprocessing.get_context("fork").Process(target=_append_many, args=(path, 25)) for _unused in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    result = audit.verify_file(path)
    assert result.ok, result.summary()
    assert result.count == 100


# -- the verify command -------------------------------------------------------------------
def run_verify(*args, env=None):
    return subprocess.run([sys.executable, AUDIT_PY, "verify"] + list(args), capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})), timeout=60, check=False)


def test_verify_command_exit_codes(tmp_path):
    path = tmp_path / "audit.jsonl"
    write_events(path, 3)
    good = run_verify(str(path))
    assert good.returncode == 0 and "OK: 3 events" in good.stdout
    _edit(path, 1, lambda e: e.update(userId="mallory"))
    bad = run_verify(str(path))
    assert bad.returncode == 1 and "line 2: hash mismatch" in bad.stdout
    missing = run_verify(str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 1 and "cannot read" in missing.stdout
    usage = subprocess.run([sys.executable, AUDIT_PY], capture_output=True, text=True, timeout=60, check=False)
    assert usage.returncode == 2 and "usage" in usage.stdout


def test_verify_command_as_module_with_chain_key(tmp_path):
    path = tmp_path / "audit.jsonl"
    write_events(path, 2, chain_key="k-123")
    env = dict(os.environ, PENGUINMAILS_AUDIT_CHAIN_KEY="k-123", PYTHONPATH=os.path.join(REPO, "collections"))
    proc = subprocess.run(
        [sys.executable, "-m", "ansible_collections.penguinmails.vps.plugins.module_utils.audit", "verify", str(path)],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_verify_after_rotation_with_first_prev_hash(tmp_path):
    path = tmp_path / "audit.jsonl"
    events = write_events(path, 4)
    lines = path.read_text().splitlines()
    second = tmp_path / "audit.2.jsonl"
    second.write_text("\n".join(lines[2:]) + "\n")
    assert run_verify(str(second)).returncode == 1
    assert run_verify(str(second), "--first-prev-hash", events[1]["hash"]).returncode == 0
    assert run_verify(str(second), "--any-start").returncode == 0


# -- docs ----------------------------------------------------------------------------------
def render_detail_fields():
    lines = ["| action | detail fields besides the generic ones |", "|---|---|"]
    for action, (_severity, fields) in audit.ACTIONS.items():
        lines.append("| `%s` | %s |" % (action, ", ".join("`%s`" % field for field in fields) or "–"))
    return "\n".join(lines)


def test_docs_audit_md_lists_the_detail_fields_of_every_action():
    with open(os.path.join(REPO, "docs", "audit.md")) as handle:
        doc = handle.read()
    table = doc.split("<!-- detail-fields:begin -->\n", 1)[1].split("\n<!-- detail-fields:end -->", 1)[0]
    assert table.strip() == render_detail_fields(), render_detail_fields()
    assert "`%s`" % "`, `".join(audit.GENERIC_FIELDS[:-1]) in doc.replace("\n", " ")


def playbook_audit_points():
    """(file, action names, details keys) of every audit_event task in playbooks/ and roles/."""
    import glob
    import re

    import yaml

    sources = sorted(glob.glob(os.path.join(REPO, "playbooks", "**", "*.yml"), recursive=True)
                     + glob.glob(os.path.join(REPO, "roles", "**", "*.yml"), recursive=True))
    texts = dict((path, open(path).read()) for path in sources)
    found = []

    def names(expression):
        match = re.match(r"^\{\{\s*(\w+)(?:\s*\|\s*default\('(\w+)'\))?\s*\}\}$", expression)
        if not match:
            return [expression]
        candidates = [match.group(2)] if match.group(2) else []
        for text in texts.values():  # var: name, var: "{{ 'name' if ... }}"
            candidates += re.findall(r"\b%s:\s*['\"]?(?:\{\{\s*')?([a-z][a-z0-9_]+)" % match.group(1), text)
        assert candidates, "cannot tell which actions %s stands for" % expression
        return sorted(set(candidates))

    def walk(node, path):
        if isinstance(node, dict):
            args = node.get("penguinmails.vps.audit_event")
            # events: a list a plugin built (the fleet host step: tests/unit/plugins/module_utils/test_host_step.py
            # checks its fields against ACTIONS)
            if isinstance(args, dict) and "events" not in args:
                details = args.get("details") if isinstance(args.get("details"), dict) else {}
                found.append((os.path.relpath(path, REPO), names(str(args.get("action"))), sorted(details)))
            for value in node.values():
                walk(value, path)
        elif isinstance(node, list):
            for value in node:
                walk(value, path)

    for path, text in texts.items():
        walk(yaml.safe_load(text), path)
    return found


def test_every_audit_point_of_the_playbooks_is_declared_with_its_fields():
    points = playbook_audit_points()
    assert len(points) >= 15
    missing = []
    for path, actions, fields in points:
        for action in actions:
            if action not in audit.ACTIONS:
                missing.append("%s: action %s is not in ACTIONS" % (path, action))
                continue
            dropped = sorted(set(fields) - audit.detail_fields(action))
            if dropped:
                missing.append("%s: %s would drop %s: add them to ACTIONS" % (path, action, ", ".join(dropped)))
    assert not missing, "\n".join(missing)


# -- damaged tails ------------------------------------------------------------------------------
def test_a_last_event_without_its_newline_is_kept_and_closed(tmp_path):
    path = tmp_path / "audit.jsonl"
    write_events(path, 2)
    path.write_bytes(path.read_bytes().rstrip(b"\n"))  # the writer died between the JSON and its newline
    write_events(path, 1)
    assert [json.loads(line)["action"] for line in path.read_text().splitlines()] == ["ssh_key_rotated"] * 3
    assert audit.verify_file(str(path)).ok


def test_trailing_blank_lines_are_no_damage(tmp_path):
    path = tmp_path / "audit.jsonl"
    write_events(path, 2)
    with open(path, "ab") as handle:
        handle.write(b"\n\n")
    write_events(path, 1)
    result = audit.verify_file(str(path))
    assert result.ok and result.count == 3


def test_a_file_of_garbage_starts_a_chain_after_a_break_from_the_genesis(tmp_path):
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"not an event\n{\"half\": \n")
    write_events(path, 1)
    events = [json.loads(line) for line in path.read_text().splitlines()[2:]]
    assert [e["action"] for e in events] == ["chain_break", "ssh_key_rotated"]
    assert events[0]["prev_hash"] == audit.GENESIS_HASH and events[0]["details"]["skipped_bytes"] == 23
    result = audit.verify_file(str(path))
    assert result.exit_code == 3 and result.breaks == ["line 3: chain break after line 0: 23 bytes skipped (lines 1-2)"]


def test_a_chain_break_that_hides_more_than_it_says_is_reported(tmp_path):
    path = tmp_path / "audit.jsonl"
    write_events(path, 2)
    with open(path, "ab") as handle:
        handle.write(b"garbage\n")
    write_events(path, 1)
    lines = path.read_text().splitlines()
    lines.insert(2, "more garbage an attacker slipped in")
    path.write_text("\n".join(lines) + "\n")
    result = audit.verify_file(str(path))
    assert result.exit_code == 1 and result.first_bad_line == 3
