# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The audit trail of real operations, and a secret-leak scan of everything they print or write.

One seeded tenant in the lab (old VPS with sshd and the mail service, keys in OpenBao, DNS in BIND9)
goes through rotate, revoke, regenerate, download_key (twice), an SMTP rotation, recover_smtp, the
key-health report, a DKIM rotation, a migration that fails and its resumed run that completes, each run by ansible-playbook at -vvvv with the audit
callback on. The test asserts the exact audit events, then scans every stdout/stderr, the audit file
and every file the runs wrote for any private key (every KV version), password, token or TSIG secret
of the lab, then shows that the verify command accepts the file and refuses it after one edit.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.lab import seed
from tests.support.ansible_run import COLLECTIONS

AUDIT_MODULE = "ansible_collections.penguinmails.vps.plugins.module_utils.audit"
VERBOSE = ("-vvvv",)


@pytest.fixture()
def workdir(tmp_path):
    os.chmod(str(tmp_path), 0o700)
    return str(tmp_path)


def all_versions(client, mount, path):
    """Every stored version of a secret (the KV history keeps replaced keys and passwords)."""
    metadata = client.metadata(mount, path)
    current = int(metadata.get("current_version") or 0)
    found = []
    for version in range(1, current + 1):
        secret = client.read_or_none(mount, path, version=version)
        if secret:
            found.append(secret.data)
    return found


def secret_values(lab, tenant):
    """Every secret of the lab and the tenant, as substrings that must never be printed or logged."""
    client = seed.vault(lab)
    values = {"vault token": lab["vault"]["token"], "tsig secret": lab["dns"]["tsig_secret"],
              "hostwinds api key": lab["hostwinds"]["api_key"]}
    for role in ("admin", "tenant"):
        for index, data in enumerate(all_versions(client, "vps", "%s/%s_ssh" % (tenant.tenant_id, role))):
            if data.get("private_key"):
                body = [line for line in data["private_key"].splitlines() if line and "-----" not in line]
                values["%s key v%d" % (role, index + 1)] = body[0]
                values["%s key v%d (end)" % (role, index + 1)] = body[-1]
    for index, data in enumerate(all_versions(client, "smtp", "%s/admin" % tenant.tenant_id)):
        values["smtp password v%d" % (index + 1)] = data["password"]
    for selector in client.list("dkim", tenant["domain"]):
        dkim = client.read("dkim", "%s/%s" % (tenant["domain"], selector)).data["private_key"]
        values["dkim key %s" % selector] = [line for line in dkim.splitlines() if "-----" not in line][0]
    return values


def leaks(values, text):
    return sorted(name for name, value in values.items() if value and value in text)


def tenant_events(path, tenant):
    return [(event["action"], event["status"]) for event in seed.read_events(path)
            if event.get("tenantId") == tenant.tenant_id]


def test_operations_leave_exact_events_and_no_secret_anywhere(lab, workdir):
    tenant = seed.seed_tenant(lab)
    host = {"name": tenant["old_vps"]["name"], "ip": tenant["old_vps"]["ip"]}
    audit_file = os.path.join(workdir, "audit.jsonl")
    key_file = os.path.join(workdir, "downloads", "tenant.key")
    os.makedirs(os.path.dirname(key_file), mode=0o700)
    outputs = {}

    def run(label, playbook, expect_rc=0, **extra):
        proc = seed.run_lab_playbook(lab, tenant, workdir, playbook, extra_vars=extra, audit_file=audit_file,
                                     args=VERBOSE, hosts=[host])
        outputs[label] = proc.stdout + proc.stderr
        if expect_rc == 0:
            assert proc.returncode == 0, "%s failed:\n%s" % (label, outputs[label][-5000:])
        else:
            assert proc.returncode != 0, "%s should have failed" % label
        return proc

    run("rotate", "penguinmails.vps.rotate", force=True)
    run("revoke", "penguinmails.vps.revoke")
    run("regenerate", "penguinmails.vps.regenerate")
    run("download", "penguinmails.vps.download_key", output="file", dest=key_file)
    refused = run("download again", "penguinmails.vps.download_key", expect_rc=2, output="file",
                  dest=key_file + ".2")
    assert "download" in refused.stdout and not os.path.exists(key_file + ".2")
    run("rotate smtp", "penguinmails.vps.rotate", secret_type="smtp", force=True)
    run("recover smtp", "penguinmails.vps.recover_smtp")
    run("report", "penguinmails.vps.report", report_dir=os.path.join(workdir, "reports"))
    run("rotate dkim", "penguinmails.vps.rotate", secret_type="dkim", force=True, dkim_new_selector="d20991231")
    # The migration fails from outside (Hostwinds refuses the order once), then the rerun completes.
    lab.hostwinds_lab("POST", "/lab/faults", {"error_next": {"add_instance": "Insufficient stock in this location"}})
    run("failed migration", "penguinmails.vps.migrate", expect_rc=2, reason="failure")
    run("migration", "penguinmails.vps.migrate", reason="failure")  # resumes the recorded one and completes

    assert tenant_events(audit_file, tenant) == [
        ("host_key_recorded", "success"),
        ("ssh_key_rotated", "success"), ("ssh_key_rotated", "success"), ("tenant_notified", "failure"),
        ("ssh_key_revoked", "success"), ("tenant_notified", "failure"),
        ("ssh_key_regenerated", "success"), ("tenant_notified", "failure"),
        ("ssh_key_download", "success"), ("ssh_key_download", "failure"),
        ("smtp_password_rotated", "success"), ("smtp_password_applied", "success"),
        ("smtp_credentials_recovered", "success"),
        ("dkim_key_rotated", "success"),
        ("provider_ssh_key_added", "success"), ("vps_migration_failed", "failure"),
        ("host_key_recorded", "success"), ("provider_ssh_key_removed", "success"),
        ("mail_copied", "success"), ("mail_delta_copied", "success"),
        ("vps_migration_completed", "success"), ("smtp_credentials_recovered", "success"),
        ("tenant_notified", "success"),
    ]
    events = seed.read_events(audit_file)
    failed = [event for event in events if event["action"] == "vps_migration_failed"]
    assert failed and failed[0]["severity"] == "critical"
    assert seed.read_record(lab, tenant.tenant_id)["dkim_selector"] == "d20991231"  # the migration kept it
    rotated = [event for event in events if event["action"] == "ssh_key_rotated"]
    assert sorted(event["details"]["role"] for event in rotated) == ["admin", "tenant"]

    # The downloaded key is the one place a private key may be written: 0600, and the Vault key.
    assert oct(os.stat(key_file).st_mode & 0o777) == "0o600"
    with open(key_file) as handle:
        downloaded = handle.read()
    assert downloaded == seed.vault(lab).read("vps", "%s/tenant_ssh" % tenant.tenant_id).data["private_key"]

    # The scan: every output at -vvvv, the audit file, and every other file the runs left.
    values = secret_values(lab, tenant)
    assert len(values) >= 10
    for label, text in outputs.items():
        assert not leaks(values, text), "%s printed %s" % (label, leaks(values, text))
    for directory, _dirs, files in os.walk(workdir):
        for name in files:
            path = os.path.join(directory, name)
            if path == key_file or name == "lab-vars.json":  # the download itself; the lab's own settings
                continue
            with open(path, errors="replace") as handle:
                found = leaks(values, handle.read())
            assert not found, "%s holds %s" % (path, found)

    # No detail field of these operations was dropped by the allow-lists.
    assert not [event for event in events if "dropped_fields" in event["details"]]

    # The verify command (as an installed collection runs it) accepts the chain and refuses it after one
    # edited event; the anchor it printed then also finds the last events cut off.
    verify = [sys.executable, "-m", AUDIT_MODULE, "verify", audit_file]
    env = dict(os.environ, PYTHONPATH=COLLECTIONS)
    good = subprocess.run(verify, capture_output=True, text=True, timeout=60, check=False, env=env)
    assert good.returncode == 0, good.stdout + good.stderr
    anchor = good.stdout.rsplit("(anchor ", 1)[1].rstrip(")\n")
    with open(audit_file) as handle:
        kept = handle.read().splitlines()
    cut = os.path.join(workdir, "cut.jsonl")
    with open(cut, "w") as handle:
        handle.write("\n".join(kept[:-2]) + "\n")
    truncated = subprocess.run([sys.executable, "-m", AUDIT_MODULE, "verify", cut, "--anchor", anchor],
                               capture_output=True, text=True, timeout=60, check=False, env=env)
    assert truncated.returncode == 1 and "first bad line %d" % (len(kept) - 1) in truncated.stdout
    with open(audit_file) as handle:
        lines = handle.read().splitlines()
    edited = json.loads(lines[2])
    edited["status"] = "success" if edited["status"] != "success" else "failure"
    lines[2] = json.dumps(edited, sort_keys=True)
    with open(audit_file, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    bad = subprocess.run(verify, capture_output=True, text=True, timeout=60, check=False, env=env)
    assert bad.returncode == 1 and "line 3" in bad.stdout
