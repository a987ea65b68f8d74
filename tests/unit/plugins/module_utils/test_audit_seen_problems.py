# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Issue 16, "what was seen": each problem as a test of module_utils/audit.py (written before the fix).

1. keyed chain downgrade, 2. invisible tail truncation, 3. events silently dropped after a damaged
last line, 5. redaction gaps. (4, alert mail TLS, and 6, Vault history, are integration tests:
tests/integration/test_audit_delivery.py and tests/integration/test_vault_history.py.)
"""

from __future__ import annotations

import io
import json
import secrets
import string

from ansible_collections.penguinmails.vps.plugins.module_utils import audit


def write_events(path, count, chain_key=None):
    sink = audit.FileSink(str(path), chain_key)
    return [sink.append(audit.build_event("ssh_key_rotated", tenant_id="t1", details={"role": "admin", "host": "h%d" % n}))
            for n in range(count)]


def relink(lines, start, chain_key=None, alg_for=lambda index: None):
    """Re-hash ``lines[start:]`` as an attacker would (plain SHA-256 unless given the key)."""
    prev = json.loads(lines[start - 1])["hash"] if start else audit.GENESIS_HASH
    for index in range(start, len(lines)):
        event = json.loads(lines[index])
        event["prev_hash"] = prev
        event["hash_alg"] = alg_for(index) or ("hmac-sha256" if chain_key else "sha256")
        event["hash"] = audit.event_hash(event, chain_key)
        lines[index] = json.dumps(event, sort_keys=True)
        prev = event["hash"]
    return lines


# -- 1. keyed chain downgrade ---------------------------------------------------------------
def test_keyed_chain_refuses_lines_rewritten_as_plain_sha256(tmp_path):
    path = tmp_path / "audit.jsonl"
    write_events(path, 5, chain_key="the-chain-key")
    lines = relink(path.read_text().splitlines(), 2)  # lines 3..5 edited and re-hashed without the key
    path.write_text("\n".join(lines) + "\n")
    result = audit.verify_file(str(path), chain_key="the-chain-key")
    assert not result.ok
    assert result.first_bad_line == 3
    assert "line 3: hash algorithm sha256" in result.summary()


# -- 2. tail truncation ---------------------------------------------------------------------
def test_truncated_tail_is_found_with_an_anchor(tmp_path):
    path = tmp_path / "audit.jsonl"
    events = write_events(path, 5)
    anchor = "%d:%s" % (events[-1]["seq"], events[-1]["hash"])
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:3]) + "\n")
    assert audit.verify_file(str(path)).ok  # the file alone cannot tell
    out = io.StringIO()
    assert audit.main(["verify", str(path), "--anchor", anchor], out=out) == 1
    assert "line 4:" in out.getvalue() and "removed from the end" in out.getvalue()


# -- 3. events silently dropped ---------------------------------------------------------------
def test_a_damaged_last_line_starts_a_new_segment_instead_of_dropping_events(tmp_path):
    path = tmp_path / "audit.jsonl"
    events = write_events(path, 3)
    with open(path, "ab") as handle:
        handle.write(b'{"action": "ssh_key_rot')  # a writer died in the middle of a line
    damaged = path.stat().st_size - len(path.read_bytes().rsplit(b"\n", 1)[0]) - 1
    later = write_events(path, 2)  # later events (later runs) must land in the file
    lines = path.read_text().splitlines()
    assert len(lines) == 3 + 1 + 1 + 2
    brk = json.loads(lines[4])
    assert brk["action"] == "chain_break" and brk["prev_hash"] == events[-1]["hash"] and brk["seq"] == 4
    assert brk["details"]["skipped_bytes"] == damaged + 1  # the fragment and the newline that closed it
    assert [json.loads(line)["hash"] for line in lines[5:]] == [e["hash"] for e in later]
    result = audit.verify_file(str(path))
    assert result.breaks and "line 5: chain break after line 3: %d bytes skipped" % (damaged + 1) in result.summary()


# -- 5. redaction gaps -----------------------------------------------------------------------
PEM = ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtz\n"
       "-----END OPENSSH PRIVATE KEY-----\n")


def test_a_private_key_used_as_a_mapping_key_is_redacted():
    out = json.dumps(audit.redact({PEM: "x", "nested": [{PEM: {"a": 1}}]}))
    assert "PRIVATE KEY" not in out and "b3BlbnNzaC1rZXktdjEAAAAABG5v" not in out


def test_a_16_character_random_password_is_redacted():
    rng = secrets.SystemRandom()
    for _unused in range(200):
        password = "".join(rng.choice(string.ascii_letters + string.digits) for _i in range(16))
        assert password not in json.dumps(audit.redact({"note": "new admin password %s set" % password}))


def test_a_password_with_punctuation_after_pw_is_redacted():
    out = json.dumps(audit.redact({"cmd": "mailu admin pw=Tr0ub4dor,&3;x! --mode update"}))
    assert "Tr0ub4dor" not in out and ",&3;x!" not in out


def test_a_passphrase_under_value_is_redacted():
    out = json.dumps(audit.redact({"env": [{"name": "SSH_PASSPHRASE", "value": "correct horse battery staple"}],
                                   "field": {"value": "correct horse battery staple"}}))
    assert "correct horse" not in out


def test_a_lower_case_hex_api_key_is_redacted():
    key = secrets.token_hex(20)
    out = json.dumps(audit.redact({"error": "hostwinds refused API=%s" % key, "raw": key}))
    assert key not in out
