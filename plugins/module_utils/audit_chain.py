# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The audit hash chain: linking events, verifying a file, and the anchors held elsewhere (stdlib only)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import hashlib
import hmac
import json
import os
import re
import socket
import uuid

from ansible_collections.penguinmails.vps.plugins.module_utils.audit_format import CHAIN_BREAK_ACTION, CHECKPOINT_ACTION, AuditError, _short, iso_timestamp
GENESIS_HASH = "0" * 64
CHAIN_FIELDS = ("chain_id", "seq", "prev_hash", "hash_alg", "hash")


# ---------------------------------------------------------------------------------------
# Hash chain
# ---------------------------------------------------------------------------------------
def canonical(event):
    """The bytes that are hashed: the event without ``hash``, as sorted compact JSON."""
    body = dict((k, v) for k, v in event.items() if k != "hash")
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def event_hash(event, chain_key=None):
    data = canonical(event)
    if chain_key:
        return hmac.new(_key_bytes(chain_key), data, hashlib.sha256).hexdigest()
    return hashlib.sha256(data).hexdigest()


def chain(event, prev_hash, seq, chain_key=None, chain_id=None):
    """Return a copy of ``event`` linked after ``prev_hash`` with ``seq``, ``chain_id``, ``hash_alg`` and ``hash``."""
    linked = copy.deepcopy(event)
    linked.pop("hash", None)
    if chain_id:
        linked["chain_id"] = chain_id
    linked["seq"] = seq
    linked["prev_hash"] = prev_hash
    linked["hash_alg"] = "hmac-sha256" if chain_key else "sha256"
    linked["hash"] = event_hash(linked, chain_key)
    return linked


def new_chain_id():
    """A fresh chain id (a file's chain keeps it for life; a new or rotated file starts a new one)."""
    return "c" + uuid.uuid4().hex[:16]


def _key_bytes(key):
    return key if isinstance(key, bytes) else str(key).encode("utf-8")


def _as_event(text):
    """The linked event a line holds, or None (damaged, not JSON, no chain fields)."""
    try:
        event = json.loads(text)
    except ValueError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("hash"), str) or "prev_hash" not in event:
        return None
    if isinstance(event.get("seq"), bool) or not isinstance(event.get("seq"), int):
        return None
    return event


# ---------------------------------------------------------------------------------------
# Verify
# ---------------------------------------------------------------------------------------
class VerifyResult(object):
    """What :func:`verify_lines` found.

    ``ok``: intact, no chain break, every anchor matched. ``breaks``: chain breaks the file sink
    recorded (damaged bytes skipped, accounted for by a ``chain_break`` event). ``problems``:
    ``line N: ...`` findings of tampering or damage, sorted by line; ``first_bad_line`` is the
    first of them. ``exit_code``: 0 intact, 1 tampered or unreadable, 3 intact apart from breaks.
    """

    def __init__(self, count=0, last_hash="", last_seq=None, findings=None, breaks=None, chain_ids=(), anchors=0):
        self.count = count
        self.last_hash = last_hash
        self.last_seq = last_seq
        self.findings = sorted(findings or [], key=lambda item: item[0])
        self.breaks = list(breaks or [])
        self.chain_ids = sorted(chain_ids)
        self.anchors = anchors

    @property
    def problems(self):
        return [("line %d: %s" % (line, text)) if line else text for line, text in self.findings]

    @property
    def first_bad_line(self):
        lines = [line for line, _text in self.findings if line]
        return min(lines) if lines else None

    @property
    def ok(self):
        return not self.findings and not self.breaks

    @property
    def exit_code(self):
        if self.findings:
            return 1
        return 3 if self.breaks else 0

    def anchor(self):
        """``SEQ:HASH`` of the last event: give it to a later ``verify --anchor``."""
        return "%s:%s" % (self.last_seq, self.last_hash) if self.last_hash else ""

    def summary(self):
        anchored = " against %d anchor(s)" % self.anchors if self.anchors else ""
        if self.findings:
            shown = self.problems[:5]
            more = " (+%d more)" % (len(self.problems) - 5) if len(self.problems) > 5 else ""
            breaks = "; chain breaks: %s" % "; ".join(self.breaks) if self.breaks else ""
            return "FAILED%s: first bad line %s: %s%s%s" % (anchored, self.first_bad_line, "; ".join(shown), more, breaks)
        if self.breaks:
            return "INTACT EXCEPT %d CHAIN BREAK(S)%s: %s; %d events, last hash %s (anchor %s)" % (
                len(self.breaks), anchored, "; ".join(self.breaks), self.count, self.last_hash, self.anchor())
        return "OK: %d events, chain intact%s, last hash %s (anchor %s)" % (
            self.count, anchored, self.last_hash, self.anchor())

    def as_dict(self):
        return {"ok": self.ok, "exit_code": self.exit_code, "count": self.count, "last_hash": self.last_hash,
                "last_seq": self.last_seq, "anchor": self.anchor(), "first_bad_line": self.first_bad_line,
                "problems": self.problems, "breaks": self.breaks, "chain_ids": self.chain_ids,
                "anchors_checked": self.anchors, "summary": self.summary()}


def _raw_line(line):
    raw = line if isinstance(line, bytes) else str(line).encode("utf-8")
    return raw, len(raw) + (0 if raw.endswith(b"\n") else 1)


def verify_lines(lines, chain_key=None, first_prev_hash=GENESIS_HASH, anchors=None):
    """Check every link of a chain given as lines (bytes or str); return a :class:`VerifyResult`.

    ``first_prev_hash`` is the hash the first event must follow (the genesis hash for a new log,
    or the last hash of the previous file after a manual split); ``None`` accepts any start.
    With ``chain_key`` only HMAC-SHA256 lines verify (a line of another algorithm is a finding).
    ``anchors`` (see :func:`load_anchors`) are events and checkpoints a sink received: the file
    must hold each of them at its sequence number.
    """
    findings, breaks = [], []
    prev_hash, prev_seq = first_prev_hash, None
    count, last_line = 0, 0
    region_bytes, damaged = 0, []  # bytes and damaged lines since the last good event
    by_seq, by_hash, chain_ids = {}, {}, set()
    stop = False
    for number, line in enumerate(lines, 1):
        raw, size = _raw_line(line)
        text = raw.decode("utf-8", "replace").strip()
        if not text:
            region_bytes += size
            continue
        event = _as_event(text)
        if event is None:
            region_bytes += size
            damaged.append(number)
            continue
        count += 1
        if damaged:
            details = event.get("details") if isinstance(event.get("details"), dict) else {}
            if (event.get("action") == CHAIN_BREAK_ACTION and event.get("prev_hash") == prev_hash
                    and details.get("skipped_bytes", details.get("skippedBytes")) == region_bytes):  # either format
                breaks.append("line %d: chain break after line %d: %d bytes skipped (lines %s)" % (
                    number, last_line, region_bytes, _span(damaged)))
            else:
                for bad in damaged:
                    findings.append((bad, "not an audit event (damaged, or inserted) and no chain_break accounts for it"))
                prev_hash, prev_seq = "?", None
        damaged, region_bytes = [], 0
        alg = event.get("hash_alg") or "sha256"
        if chain_key and alg != "hmac-sha256":
            findings.append((number, "hash algorithm %s in a keyed chain: only hmac-sha256 lines verify "
                                     "(downgraded or forged)" % _short(alg, 20)))
        elif alg == "hmac-sha256" and not chain_key:
            findings.append((number, "HMAC chain: a chain key is needed (PENGUINMAILS_AUDIT_CHAIN_KEY)"))
            stop = True
            break
        elif event_hash(event, chain_key if alg == "hmac-sha256" else None) != event["hash"]:
            findings.append((number, "hash mismatch (the event was modified)"))
        if prev_hash is not None and prev_hash != "?" and event["prev_hash"] != prev_hash:
            if number == 1 or prev_seq is None and prev_hash == first_prev_hash:
                findings.append((number, "the first event does not follow %s (the beginning was removed, or the "
                                         "file was replaced)" % ("the genesis" if prev_hash == GENESIS_HASH else prev_hash[:12])))
            else:
                findings.append((number, "prev_hash does not match the previous event (an event was removed, "
                                         "inserted or reordered)"))
        seq = event["seq"]
        if prev_seq is not None and seq != prev_seq + 1:
            findings.append((number, "sequence %s follows %s" % (seq, prev_seq)))
        by_seq.setdefault(seq, (number, event["hash"]))
        by_hash.setdefault(event["hash"], number)
        chain_ids.add(event.get("chain_id"))
        prev_seq, prev_hash, last_line = seq, event["hash"], number
    if damaged and not stop:
        for bad in damaged:
            findings.append((bad, "not an audit event (a damaged tail: the next event starts a new segment)"))
    last = prev_hash if prev_hash not in (None, "?") else ""
    anchors = list(anchors or [])
    findings.extend(_check_anchors(anchors, by_seq, by_hash, chain_ids, last_line, prev_seq))
    return VerifyResult(count, last, prev_seq, findings, breaks, [c for c in chain_ids if c], len(anchors))


def _span(numbers):
    return "%d-%d" % (numbers[0], numbers[-1]) if len(numbers) > 1 else "%d" % numbers[0]


def _check_anchors(anchors, by_seq, by_hash, chain_ids, last_line, last_seq):
    if not anchors:
        return []
    findings = []
    unique, seen = [], set()
    for anchor in anchors:  # an event copy and a checkpoint of the same event are one anchor
        identity = (anchor.get("chain_id"), anchor.get("seq"), anchor["hash"])
        if identity not in seen:
            seen.add(identity)
            unique.append(anchor)
    mine = [a for a in unique if a.get("chain_id") is None or a.get("chain_id") in chain_ids]
    if not mine:
        ids = sorted(set(a["chain_id"] for a in anchors if a.get("chain_id")))
        return [(1, "no anchor belongs to this file's chain %s (anchored chains: %s): the file was replaced, "
                    "or the anchors are another controller's" % (
                        ",".join(sorted(c for c in chain_ids if c)) or "-", ", ".join(ids[:3]) or "-"))]
    first_seq = min(by_seq) if by_seq else None
    tail, head = None, None
    for anchor in mine:
        seq, wanted = anchor.get("seq"), anchor["hash"]
        where = anchor.get("source") or "anchor"
        if seq is None:
            if wanted not in by_hash:
                findings.append((last_line + 1, "the anchor hash %s... (%s) is not in the file: events were removed "
                                                "from the end, or rewritten" % (wanted[:12], where)))
            continue
        if seq in by_seq:
            line, found = by_seq[seq]
            if found != wanted:
                findings.append((line, "seq %d differs from the anchor (%s): the event was replaced or the chain "
                                       "rewritten" % (seq, where)))
        elif last_seq is None or seq > last_seq:
            if tail is None or seq > tail[0]:
                tail = (seq, where)
        elif first_seq is not None and seq < first_seq:
            if head is None or seq < head[0]:
                head = (seq, where)
        else:
            later = [s for s in by_seq if s > seq]
            findings.append((by_seq[min(later)][0] if later else last_line + 1,
                             "seq %d of the anchor (%s) is missing: an event was removed" % (seq, where)))
    if tail:
        findings.append((last_line + 1, "the file ends at seq %s (line %d) but the anchor (%s) has seq %d: events "
                                        "were removed from the end" % (last_seq, last_line, tail[1], tail[0])))
    if head:
        findings.append((1, "the anchor (%s) has seq %d, before the file's first event (seq %d): the beginning "
                            "was removed" % (head[1], head[0], first_seq)))
    return findings


def verify_file(path, chain_key=None, first_prev_hash=GENESIS_HASH, anchors=None):
    try:
        with open(path, "rb") as handle:
            return verify_lines(handle, chain_key, first_prev_hash, anchors)
    except (IOError, OSError) as exc:
        return VerifyResult(findings=[(0, "cannot read %s: %s" % (path, exc.strerror or type(exc).__name__))])


# ---------------------------------------------------------------------------------------
# Anchors: copies of events and checkpoints held by another sink, or a hash written down
# ---------------------------------------------------------------------------------------
_ANCHOR_HASH_RE = re.compile(r"^(?:(\d+):)?([0-9a-f]{64})\Z")


def checkpoint_record(tail, path, run_events=0, user=None):
    """The checkpoint sent to syslog and webhooks at the end of a run (not itself chained)."""
    event, _end = tail
    return {
        "timestamp": iso_timestamp(), "action": CHECKPOINT_ACTION, "tenantId": None, "userId": user,
        "ipAddress": None, "status": "success", "severity": "info",
        "details": {"chainId": event.get("chain_id"), "seq": event["seq"], "hash": event["hash"],
                    "hashAlg": event.get("hash_alg"), "file": path, "controller": socket.gethostname() or None,
                    "runEvents": run_events},
    }


def anchors_from_text(text, source="anchors"):
    """Anchors found in a sink's export: one event or checkpoint per line, as JSON lines, RFC 5424 or
    classic syslog lines (the JSON body after the header), or a webhook receiver's JSON bodies."""
    found = []
    decoder = json.JSONDecoder()
    for number, line in enumerate(text.splitlines(), 1):
        start = line.find("{")
        if start < 0:
            continue
        try:
            record, _end = decoder.raw_decode(line[start:])
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        where = "%s line %d" % (source, number)
        details = record.get("details") if isinstance(record.get("details"), dict) else {}
        if record.get("action") == CHECKPOINT_ACTION and isinstance(details.get("seq"), int) and details.get("hash"):
            found.append({"seq": details["seq"], "hash": str(details["hash"]), "chain_id": details.get("chainId"),
                          "source": where + " (checkpoint)"})
        elif isinstance(record.get("seq"), int) and isinstance(record.get("hash"), str) and "prev_hash" in record:
            found.append({"seq": record["seq"], "hash": record["hash"], "chain_id": record.get("chain_id"),
                          "source": where})
    return found


def load_anchors(spec):
    """Anchors from ``SEQ:HASH``, a bare ``HASH`` or the path of a sink export (see :func:`anchors_from_text`)."""
    spec = str(spec).strip()
    match = _ANCHOR_HASH_RE.match(spec)
    if match:
        return [{"seq": int(match.group(1)) if match.group(1) else None, "hash": match.group(2), "chain_id": None,
                 "source": "given %s" % (spec if len(spec) < 24 else spec[:20] + "...")}]
    try:
        with open(spec, "r", encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except (IOError, OSError) as exc:
        raise AuditError("cannot read the anchor source %s: %s" % (spec, exc.strerror or type(exc).__name__))
    found = anchors_from_text(text, os.path.basename(spec))
    if not found:
        raise AuditError("the anchor source %s holds no audit event or checkpoint" % spec)
    return found
