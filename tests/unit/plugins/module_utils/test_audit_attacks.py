# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The attack test (issue 16): tamper with an audit file the ways an attacker would, then run the verify
command - on the file alone and with the anchor (what syslog received: every event and the end-of-run
checkpoints) - for a plain SHA-256 chain and a keyed (HMAC-SHA256) one.

With the anchor, every attack fails verify and the first bad line is named. The table of results is
docs/audit.md's, between the attack-table markers: the test recomputes it and compares.
"""

from __future__ import annotations

import io
import json
import os
import re

import pytest

from ansible_collections.penguinmails.vps.plugins.module_utils import audit

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
KEY = "the-chain-key-kept-off-the-file"
RUNS = (5, 3)  # two runs: events 1-5, then 6-8; each ends with a checkpoint to syslog


def forge_chain(lines, start, label=None, chain_key=None):
    """Re-link ``lines[start:]`` the way an attacker without the key can: plain SHA-256."""
    prev = json.loads(lines[start - 1])["hash"] if start else audit.GENESIS_HASH
    for index in range(start, len(lines)):
        event = json.loads(lines[index])
        event["prev_hash"] = prev
        if label:
            event["hash_alg"] = label
        event["hash"] = audit.event_hash(event, chain_key)
        lines[index] = json.dumps(event, sort_keys=True)
        prev = event["hash"]
    return lines


def edit(lines, _key):
    event = json.loads(lines[3])
    event["status"] = "success" if event["status"] == "failure" else "failure"
    lines[3] = json.dumps(event, sort_keys=True)
    return lines


def edit_and_rehash(lines, _key):
    return forge_chain(edit(lines, _key), 3)


def downgrade(lines, key):
    if not key:
        return None  # a plain chain has nothing to downgrade
    return forge_chain(edit(lines, key), 3, label="sha256")


def delete(lines, _key):
    return lines[:3] + lines[4:]


def insert(lines, _key):
    forged = dict(json.loads(lines[2]), action="ssh_key_download", tenantId="t-victim")
    forged = audit.chain({k: v for k, v in forged.items() if k not in audit.CHAIN_FIELDS}, json.loads(lines[2])["hash"],
                         4, None, forged.get("chain_id"))
    if _key:
        forged["hash_alg"] = "hmac-sha256"  # looks keyed, but the attacker has no key
    return lines[:3] + [json.dumps(forged, sort_keys=True)] + lines[3:]


def reorder(lines, _key):
    return lines[:3] + [lines[4], lines[3]] + lines[5:]


def truncate_tail(lines, _key):
    return lines[:6]


def truncate_head(lines, _key):
    return lines[2:]


def replace_file(lines, _key):
    """A whole new file: the attacker's own events, chained from the genesis (plain SHA-256: no key)."""
    sink_lines = []
    prev, chain_id = audit.GENESIS_HASH, json.loads(lines[0])["chain_id"]
    for number in range(1, len(lines) + 1):
        event = audit.build_event("ssh_key_rotated", tenant_id="t%d" % number, details={"role": "admin"})
        linked = audit.chain(event, prev, number, None, chain_id)
        if _key:
            linked["hash_alg"] = "hmac-sha256"
        sink_lines.append(json.dumps(linked, sort_keys=True))
        prev = linked["hash"]
    return sink_lines


ATTACKS = [
    ("edit an event", edit),
    ("edit, then re-hash the rest without the key", edit_and_rehash),
    ("algorithm downgrade (re-hash as plain sha256)", downgrade),
    ("delete an event", delete),
    ("insert a forged event", insert),
    ("reorder two events", reorder),
    ("truncate the tail (last 2 events)", truncate_tail),
    ("truncate the head (first 2 events)", truncate_head),
    ("replace the whole file", replace_file),
]
# Expected first bad line, per (attack, chain, with anchor); None: verify passes (undetectable that way).
EXPECTED = {
    "edit an event": (4, 4, 4, 4),
    "edit, then re-hash the rest without the key": (None, 4, 4, 4),
    "algorithm downgrade (re-hash as plain sha256)": ("n/a", "n/a", 4, 4),
    "delete an event": (4, 4, 4, 4),
    "insert a forged event": (5, 4, 4, 4),
    "reorder two events": (4, 4, 4, 4),
    "truncate the tail (last 2 events)": (None, 7, None, 7),
    "truncate the head (first 2 events)": (1, 1, 1, 1),
    "replace the whole file": (None, 1, 1, 1),
}


def build_trail(tmp_path, chain_key):
    """An audit file of two runs and the syslog export of the same events and checkpoints (a new directory)."""
    directory = tmp_path / ("trail-%d" % len(list(tmp_path.glob("trail-*"))))
    directory.mkdir()
    tmp_path = directory
    path = tmp_path / ("keyed.jsonl" if chain_key else "plain.jsonl")
    sink = audit.FileSink(str(path), chain_key)
    syslog = audit.SyslogSink("udp://127.0.0.1:514")
    export = []
    number = 0
    for run in RUNS:
        for _unused in range(run):
            number += 1
            status = "failure" if number % 3 == 0 else "success"
            linked = sink.append(audit.build_event("ssh_key_rotated", status=status, tenant_id="t%d" % number,
                                                   details={"role": "admin", "mode": "auto"}))
            export.append(syslog.format(linked))
        export.append(syslog.format(audit.checkpoint_record(sink.tail(), sink.path, run)))
    anchor = tmp_path / ("syslog-%s.log" % ("keyed" if chain_key else "plain"))
    anchor.write_text("\n".join(export) + "\n")
    return path, anchor


def run_verify(path, chain_key, anchor=None):
    out = io.StringIO()
    argv = ["verify", str(path), "--json"] + (["--anchor", str(anchor)] if anchor else [])
    old = os.environ.get("PENGUINMAILS_AUDIT_CHAIN_KEY")
    os.environ["PENGUINMAILS_AUDIT_CHAIN_KEY"] = chain_key or ""
    try:
        code = audit.main(argv, out=out)
    finally:
        if old is None:
            os.environ.pop("PENGUINMAILS_AUDIT_CHAIN_KEY", None)
        else:
            os.environ["PENGUINMAILS_AUDIT_CHAIN_KEY"] = old
    return code, json.loads(out.getvalue())


def cell(outcome):
    if outcome == "n/a":
        return "n/a"
    return "passes (not detected)" if outcome is None else "**fails, line %d**" % outcome


def attack_table(tmp_path):
    rows = []
    for name, attack in ATTACKS:
        outcomes = []
        for chain_key in (None, KEY):
            original, anchor = build_trail(tmp_path, chain_key)
            lines = original.read_text().splitlines()
            tampered = attack(list(lines), chain_key)
            for with_anchor in (False, True):
                if tampered is None:
                    outcomes.append("n/a")
                    continue
                target = tmp_path / "tampered.jsonl"
                target.write_text("\n".join(tampered) + "\n")
                code, result = run_verify(target, chain_key, anchor if with_anchor else None)
                if code == 0:
                    outcomes.append(None)
                else:
                    assert code == 1, result["summary"]
                    outcomes.append(result["first_bad_line"])
        rows.append((name, tuple(outcomes)))
    return rows


def render(rows):
    lines = ["| attack (8 events, lines 1-8) | SHA-256 chain: file only | SHA-256 chain + anchor | "
             "HMAC chain (key): file only | HMAC chain + anchor |",
             "|---|---|---|---|---|"]
    for name, outcomes in rows:
        lines.append("| %s | %s |" % (name, " | ".join(cell(outcome) for outcome in outcomes)))
    return "\n".join(lines)


def test_untouched_trail_verifies_with_and_without_anchor(tmp_path):
    for chain_key in (None, KEY):
        path, anchor = build_trail(tmp_path, chain_key)
        assert run_verify(path, chain_key)[0] == 0
        code, result = run_verify(path, chain_key, anchor)
        assert code == 0 and result["anchors_checked"] == 8 + 2, result["summary"]


@pytest.mark.parametrize("name", [name for name, _attack in ATTACKS])
def test_every_attack_fails_verify_with_the_anchor_and_names_the_first_bad_line(tmp_path, name):
    attack = dict(ATTACKS)[name]
    for chain_key, column in ((None, 1), (KEY, 3)):
        original, anchor = build_trail(tmp_path, chain_key)
        tampered = attack(original.read_text().splitlines(), chain_key)
        if tampered is None:
            continue
        target = tmp_path / "tampered.jsonl"
        target.write_text("\n".join(tampered) + "\n")
        code, result = run_verify(target, chain_key, anchor)
        assert code == 1, result["summary"]
        assert result["first_bad_line"] == EXPECTED[name][column], result["summary"]
        assert result["summary"].startswith("FAILED against 10 anchor(s): first bad line %d: line %d:" % (
            EXPECTED[name][column], EXPECTED[name][column]))


def test_the_table_in_docs_audit_md_is_the_measured_one(tmp_path):
    rows = attack_table(tmp_path)
    assert dict(rows) == EXPECTED
    with open(os.path.join(REPO, "docs", "audit.md")) as handle:
        doc = handle.read()
    match = re.search(r"<!-- attack-table:begin -->\n(.*?)\n<!-- attack-table:end -->", doc, re.DOTALL)
    assert match, "docs/audit.md has no attack table"
    assert match.group(1).strip() == render(rows), "docs/audit.md differs from the measured table:\n" + render(rows)
