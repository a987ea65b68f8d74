# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The redaction property test (issue 16): hypothesis builds nested details with generated secrets of the
known shapes - PEM and OpenSSH private keys, Vault tokens (hvs., s.), random passwords (16 to 40 letters and
digits, URL-safe tokens), a password with punctuation after ``pw=``, a passphrase under ``value``, hex keys
(lower and upper case) and base64 keys - placed as values, as mapping keys, inside free text and in lists,
under the detail fields an action keeps. Each event goes through AuditLog to every sink: the file, a real
UDP syslog listener, a real local HTTPS webhook (and alert webhook) and a real SMTP server for alerts. None of
the secrets may appear in anything a sink received.

The secret material comes from ``random.Random(seed)`` (hypothesis draws the seed and the structure), so
every secret is as random as a generated one; ``derandomize`` makes the examples the same on every run.
"""

from __future__ import annotations

import base64
import json
import random
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.penguinmails.vps.plugins.module_utils import audit, audit_redact
from tests.support.receivers import SmtpServer, SyslogReceiver, Webhook
from tests.support.tls import TestCA
from tests.support.wait import wait_until

ALNUM = string.ascii_letters + string.digits
PUNCTUATION = "!#$%&()*+,-./:;<>?@[]^_{|}~"
WORDS = ["correct", "horse", "battery", "staple", "river", "lantern", "quiet", "orbit", "maple", "violet"]


def pem(rng, kind):
    body = base64.b64encode(bytes(rng.getrandbits(8) for _unused in range(rng.randint(96, 300)))).decode()
    lines = "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
    return "-----BEGIN %sPRIVATE KEY-----\n%s\n-----END %sPRIVATE KEY-----\n" % (kind, lines, kind)


def openssh(rng):
    blob = b"openssh-key-v1\x00\x00\x00\x00\x04none" + bytes(rng.getrandbits(8) for _unused in range(rng.randint(120, 400)))
    body = base64.b64encode(blob).decode()
    lines = "\n".join(body[i:i + 70] for i in range(0, len(body), 70))
    return "-----BEGIN OPENSSH PRIVATE KEY-----\n%s\n-----END OPENSSH PRIVATE KEY-----\n" % lines


def secret_of(shape, rng):
    """(the secret as it appears, the material that must never be seen)."""
    if shape == "pem":
        value = pem(rng, rng.choice(["", "RSA ", "EC ", "ENCRYPTED "]))
        return value, value.splitlines()[1]
    if shape == "openssh":
        value = openssh(rng)
        return value, value.splitlines()[1]
    if shape == "vault_token":
        return "hvs." + "".join(rng.choice(ALNUM + "_-") for _unused in range(rng.randint(24, 90))), None
    if shape == "legacy_token":
        return "s." + "".join(rng.choice(ALNUM) for _unused in range(24)), None
    if shape == "password":
        return "".join(rng.choice(ALNUM) for _unused in range(rng.randint(16, 40))), None
    if shape == "urlsafe":
        return base64.urlsafe_b64encode(bytes(rng.getrandbits(8) for _unused in range(rng.randint(16, 32)))).decode().rstrip("="), None
    if shape == "pw_punctuation":
        password = "".join(rng.choice(ALNUM + PUNCTUATION) for _unused in range(rng.randint(8, 24)))
        return "pw=" + password, password
    if shape == "hex_lower":
        return "".join(rng.choice("0123456789abcdef") for _unused in range(rng.choice([32, 40, 64]))), None
    if shape == "hex_upper":
        return "".join(rng.choice("0123456789ABCDEF") for _unused in range(rng.choice([32, 40, 64]))), None
    if shape == "base64":
        return base64.b64encode(bytes(rng.getrandbits(8) for _unused in range(rng.randint(16, 48)))).decode(), None
    raise AssertionError(shape)


SHAPES = ["pem", "openssh", "vault_token", "legacy_token", "password", "urlsafe", "pw_punctuation", "hex_lower",
          "hex_upper", "base64"]
FILLER = st.lists(st.sampled_from(["login", "failed", "for", "host", "pm-acme-1", "at", "2026-11-23T10:44:12Z",
                                   "with", "error:", "(code", "42)", "admin@acme.example", "Rotate", "the", "key,"]),
                  max_size=6).map(" ".join)
SEPARATORS = st.sampled_from([" ", "\n", ": ", ", ", " (", "\t", "='", "\""])


@st.composite
def placed_secret(draw):
    """One secret placed somewhere in a small nested structure: (structure, [needles])."""
    shape = draw(st.sampled_from(SHAPES + ["passphrase"]))
    rng = random.Random(draw(st.integers(min_value=0, max_value=2 ** 64)))
    if shape == "passphrase":
        phrase = " ".join(rng.choice(WORDS) for _unused in range(4)) + " %d" % rng.randint(10, 99)
        holder = draw(st.sampled_from([{"value": phrase}, {"name": "SSH_PASSPHRASE", "value": phrase},
                                       [{"Name": "smtp_password", "Value": phrase}]]))
        return holder, [phrase]
    value, material = secret_of(shape, rng)
    needles = [value.strip()] + ([material] if material else [])
    where = draw(st.sampled_from(["value", "text", "key", "list", "deep"]))
    if where == "value":
        return value, needles
    text = draw(FILLER) + draw(SEPARATORS) + value + draw(SEPARATORS) + draw(FILLER)
    if where == "text":
        return text, needles
    if where == "key":
        return {value: draw(FILLER)}, needles
    if where == "list":
        return [draw(FILLER), text], needles
    return {"outer": [{"inner": text, value: 1}]}, needles


@st.composite
def details_with_secrets(draw):
    action = draw(st.sampled_from(sorted(audit.ACTIONS) + ["site_custom_action"]))
    fields = sorted(audit.detail_fields(action))
    details, needles = {}, []
    for _unused in range(draw(st.integers(min_value=1, max_value=4))):
        structure, found = draw(placed_secret())
        details[draw(st.sampled_from(fields + ["extra_field", "password", "note"]))] = structure
        needles.extend(found)
    context = {"task": draw(FILLER), "play": draw(FILLER)}
    if draw(st.booleans()):
        structure, found = draw(placed_secret())
        context["task"] = structure
        needles.extend(found)
    return action, details, context, needles


@pytest.fixture(scope="module")
def sinks(tmp_path_factory):
    directory = tmp_path_factory.mktemp("redaction-sinks")
    ca = TestCA(directory)
    with SyslogReceiver() as syslog, Webhook(tls=ca.server_context()) as hook, SmtpServer("plain") as smtp:
        log = audit.AuditLog(
            file_path=str(directory / "audit.jsonl"),
            syslog=audit.SyslogSink(syslog.address),
            webhook=audit.WebhookSink(hook.url + "/all", attempts=1, ca_path=ca.ca_path),
            alert_webhook=audit.WebhookSink(hook.url + "/alert", attempts=1, ca_path=ca.ca_path),
            email=audit.EmailSink("127.0.0.1", port=smtp.port, recipients=["ops@example.com"]),
        )
        yield log, syslog, hook, smtp, directory / "audit.jsonl"


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])
@given(case=details_with_secrets(), critical=st.booleans())
def test_no_generated_secret_reaches_any_sink(sinks, case, critical):
    log, syslog, hook, smtp, path = sinks
    action, details, context, needles = case
    before = (len(syslog.messages), len(hook.requests), len(smtp.messages), path.stat().st_size if path.exists() else 0)
    event = audit.build_event(action, status="failure" if critical else "success", tenant_id="acme",
                              severity="critical" if critical else "info", details=details)
    delivery = log.deliver(event, context)
    expected = ["file", "syslog", "webhook"] + (["alert webhook", "alert email"] if critical else [])
    assert delivery.accepted == expected and not delivery.failed, delivery.failed
    wait_until(lambda: len(syslog.messages) > before[0], 10, "the syslog message")
    received = {
        "file": path.read_bytes()[before[3]:].decode("utf-8"),
        "syslog": "\n".join(syslog.messages[before[0]:]),
        "webhook": b"\n".join(r["body"] for r in hook.requests[before[1]:]).decode("utf-8"),
        "mail": b"\n".join(m.original_content for m in smtp.messages[before[2]:]).decode("utf-8", "replace"),
    }
    for where, text in received.items():
        # JSON escapes newlines and quotes: compare against the decoded text as well
        decoded = text.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\").replace("\\t", "\t")
        for needle in needles:
            assert needle not in text and needle not in decoded, "%s leaked into %s" % (needle[:12] + "...", where)
    assert json.loads(received["file"].splitlines()[-1])["action"] == action


def test_vaults_request_id_is_kept_only_as_an_exact_uuid_under_its_own_key():
    """details.vault_request_id matches the event with Vault's own audit log; a UUID elsewhere (an AppRole
    secret_id looks the same) and anything but a UUID under that key stay redacted."""
    request_id = "0f6b8c2e-5d1a-4c3b-9a7e-2b4d6f8a1c3e"
    kept = audit_redact.redact({"vault_request_id": request_id, "secret_id": request_id, "note": request_id})
    assert kept["vault_request_id"] == request_id
    assert kept["secret_id"] == audit_redact.REDACTED and request_id not in kept["note"]
    forged = audit_redact.redact({"vault_request_id": "s.Abc123Xyz789Qwe456Rty0Uio " + request_id})
    assert request_id not in forged["vault_request_id"]
