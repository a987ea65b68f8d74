# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Issue 21: the events are the specification's (field names, action names, snake_case details, milliseconds,
userAgent, ipAddress = where the action came from), their JSON Schema is shipped and kept equal to the code, and a
chain that spans the old and the new format still verifies."""

from __future__ import annotations

import json
import os
import re

import jsonschema
import pytest
import yaml

from ansible_collections.penguinmails.vps.plugins.module_utils import audit, audit_format

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
SCHEMA_FILE = os.path.join(REPO, "docs", "audit-event.schema.json")


def schema():
    with open(SCHEMA_FILE) as handle:
        return json.load(handle)


def test_the_shipped_schema_is_the_one_the_code_writes():
    assert schema() == json.loads(json.dumps(audit_format.event_schema()))  # regenerate: see audit_format.event_schema


def test_the_collection_version_in_the_user_agent_is_galaxy_yml_s():
    with open(os.path.join(REPO, "galaxy.yml")) as handle:
        assert audit_format.COLLECTION_VERSION == yaml.safe_load(handle)["version"]


def test_an_event_has_the_specified_fields_and_validates():
    event = audit.build_event("ssh_key_download", tenant_id="550e8400", user_id="user-123", ip_address="203.0.113.42")
    assert list(event)[:7] == ["timestamp", "action", "tenantId", "userId", "ipAddress", "userAgent", "status"]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", event["timestamp"])
    assert re.match(r"^ansible-core/\S+ penguinmails\.vps/%s$" % re.escape(audit_format.COLLECTION_VERSION), event["userAgent"])
    assert event["ipAddress"] == "203.0.113.42" and event["status"] == "success"
    jsonschema.validate(event, schema())


def test_details_are_snake_case_and_the_earlier_names_are_mapped():
    event = audit.build_event("ssh_key_downloaded", details={"downloadedAt": "x", "wrapCreationPath": "vps/data/t/x"})
    assert event["action"] == "ssh_key_download"
    assert event["details"] == {"downloaded_at": "x", "wrap_creation_path": "vps/data/t/x"}
    completed = audit.build_event("vps_migration_completed", tenant_id="t1", vps_ip="198.51.100.9", details={
        "oldVpsIp": "198.51.100.1", "new_vps_ip": "198.51.100.9", "reason": "upgrade",
        "secrets_recovered": ["ssh_keys", "smtp_creds", "dkim_keys"]})
    assert completed["details"]["old_vps_ip"] == "198.51.100.1" and completed["details"]["vps_ip"] == "198.51.100.9"
    jsonschema.validate(completed, schema())


@pytest.mark.parametrize("action, details, missing", [
    ("vps_migration_completed", {"old_vps_ip": "a", "new_vps_ip": "b", "reason": "upgrade"}, "secrets_recovered"),
    ("vps_migration_failed", {"error": "boom"}, "old_vps_ip"),
    ("smtp_credentials_recovered", {"recovery_type": "vps_migration"}, "new_vps_ip"),
])
def test_the_specified_details_are_always_there_and_required_by_the_schema(action, details, missing):
    event = audit.build_event(action, status="failure" if "failed" in action else "success", details=details)
    assert event["details"][missing] is None  # not known to the caller: null, never absent
    jsonschema.validate(event, schema())
    del event["details"][missing]
    with pytest.raises(jsonschema.ValidationError, match=missing):
        jsonschema.validate(event, schema())


def test_an_undeclared_detail_or_a_microsecond_timestamp_does_not_validate():
    event = audit.build_event("ssh_key_rotated", details={"role": "admin"})
    jsonschema.validate(event, schema())
    for broken in (dict(event, timestamp="2026-11-23T10:44:12.123456Z"), dict(event, details={"rotatedCount": 1}),
                   dict(event, action="Bad-Action"), {k: v for k, v in event.items() if k != "userAgent"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema())


def test_a_given_timestamp_is_written_with_milliseconds():
    assert audit.build_event("ssh_key_rotated", timestamp="2026-11-23T10:44:12.123456Z")["timestamp"] == "2026-11-23T10:44:12.123Z"
    assert audit.build_event("ssh_key_rotated", timestamp="2026-11-23T10:44:12Z")["timestamp"] == "2026-11-23T10:44:12.000Z"


def test_the_user_agent_names_the_awx_job():
    assert audit_format.user_agent("42").endswith(" awx-job/42")
    assert "awx-job" not in audit_format.user_agent(None)


def test_ip_address_is_where_the_action_came_from():
    assert audit_format.origin_address({"SSH_CLIENT": "198.51.100.7 51234 22"}) == "198.51.100.7"
    assert audit_format.origin_address({"SSH_CONNECTION": "2001:db8::7 51234 2001:db8::1 22"}) == "2001:db8::7"
    assert audit_format.origin_address({}) is None
    assert audit_format.origin_address({"SSH_CLIENT": "$(reboot) 1 22"}) is None


def test_a_chain_that_spans_the_old_and_the_new_format_verifies(tmp_path):
    """A file written by an older release (camelCase, microseconds, no userAgent) and then by this one."""
    path = tmp_path / "audit.legacy.jsonl"
    old = {"timestamp": "2026-11-23T10:44:12.123456Z", "action": "ssh_key_downloaded", "tenantId": "t1",
           "userId": "ops", "ipAddress": "203.0.113.10", "status": "success", "severity": "info",
           "details": {"downloadedAt": "2026-11-23T10:44:12Z", "wrapCreationPath": "vps/data/t1/tenant_ssh"}}
    first = audit.chain(old, audit.GENESIS_HASH, 1, chain_id="c0123456789abcdef")
    path.write_text(json.dumps(first, sort_keys=True) + "\n")
    sink = audit.FileSink(str(path))
    sink.append(audit.build_event("ssh_key_download", tenant_id="t1"))
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["prev_hash"] == first["hash"]
    result = audit.verify_file(str(path))
    assert result.exit_code == 0, result.summary()
    jsonschema.validate(json.loads(lines[1]), schema())
