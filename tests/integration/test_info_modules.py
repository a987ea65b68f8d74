# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""vault_health_info, tenant_secrets_info and ssh_login_failures_info in real playbook runs
against a real OpenBao."""

from __future__ import annotations

import datetime
import json
import secrets
import textwrap

import pytest

from ansible_collections.penguinmails.vps.plugins.module_utils import keypair_store
from tests.support.ansible_run import run_playbook
from tests.support.openbao import free_port

NOW = "2026-06-01T12:00:00Z"


def run_module(module, args, env=None, tmp_path=None, check=False):
    """Run one module task with the json stdout callback; return (result, CompletedProcess)."""
    play = textwrap.dedent(
        """
        - hosts: localhost
          gather_facts: false
          tasks:
            - name: under test
              {module}: {args}
        """
    ).format(module=module, args=json.dumps(args))
    proc = run_playbook(play, env=dict(env or {}, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json"),
                        args=["--check"] if check else [], tmp_path=tmp_path)
    data = json.loads(proc.stdout)
    result = data["plays"][0]["tasks"][0]["hosts"]["localhost"]
    return result, proc


def days_before(days, hours=0):
    import datetime

    base = datetime.datetime(2026, 6, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)
    return (base - datetime.timedelta(days=days, hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def key(days_ago, state="active", **extra):
    data = {
        "private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nZmFrZQ==\n-----END OPENSSH PRIVATE KEY-----\n",
        "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFake test",
        "fingerprint": "SHA256:fakefingerprint%d" % days_ago,
        "key_type": "ed25519",
        "created_at": days_before(400),
        "last_rotated": days_before(days_ago),
        "rotation_policy": "90_days",
        "state": state,
    }
    data.update(extra)
    return data


def seed(bao, prefix):
    """Four tenants: ok, critical (expired admin), warning (due soon), critical (no admin key)."""
    ok, expired, due, bare = ("%s-%s" % (prefix, s) for s in ("ok", "exp", "due", "bare"))
    bao.kv_put("vps", "%s/admin_ssh" % ok, key(10))
    bao.kv_put("vps", "%s/tenant_ssh" % ok,
               key(20, downloaded_at=days_before(19), grace_public_key="ssh-ed25519 AAAAold", grace_until="2026-06-02T00:00:00Z"))
    bao.kv_put("vps", "%s/record" % ok, {"domain": "%s.example.com" % ok, "vps_ip": "203.0.113.10", "vps_id": "101"})
    bao.kv_put("smtp", "%s/admin" % ok, {"username": "admin@%s.example.com" % ok, "password": "smtp-Secret-123"})
    bao.kv_put("dkim", "%s.example.com/dkim" % ok, {"private_key": "x", "public_key": "y"})
    bao.kv_put("dkim", "%s.example.com/s2026" % ok, {"private_key": "x", "public_key": "y"})

    bao.kv_put("vps", "%s/admin_ssh" % expired, key(100))
    bao.kv_put("vps", "%s/tenant_ssh" % expired, key(5, state="revoked", revoked_at=days_before(1)))
    bao.kv_put("vps", "%s/record" % expired, {"domain": "%s.example.com" % expired})
    bao.kv_put("smtp", "%s/admin" % expired, {"username": "a", "password": "p"})
    bao.kv_put("dkim", "%s.example.com/dkim" % expired, {"private_key": "x"})

    bao.kv_put("vps", "%s/admin_ssh" % due, key(85))
    bao.kv_put("vps", "%s/record" % due, {"domain": "%s.example.com" % due})

    bao.kv_put("vps", "%s/tenant_ssh" % bare, key(1))
    return ok, expired, due, bare


def test_tenant_secrets_info_statuses_and_urgency(openbao, tmp_path):
    prefix = "ti" + secrets.token_hex(3)
    ok, expired, due, bare = seed(openbao, prefix)
    result, proc = run_module("penguinmails.vps.tenant_secrets_info",
                              {"tenant_ids": [ok, due, expired, bare], "now": NOW}, env=openbao.env(), tmp_path=tmp_path)
    assert not result.get("failed"), result
    tenants = result["tenants"]
    # most urgent first: the two critical ones (bare has no rotation date -> sorts first), then warning, then ok
    assert [t["tenant_id"] for t in tenants] == [bare, expired, due, ok]
    by_id = {t["tenant_id"]: t for t in tenants}
    assert [by_id[t]["urgency"] for t in (bare, expired, due, ok)] == ["critical", "critical", "warning", "ok"]

    good = by_id[ok]
    admin, tenant = good["keys"]["admin"], good["keys"]["tenant"]
    assert admin["status"] == "active" and admin["last_rotated"] == days_before(10)
    # planned: 90 days after the last rotation, less the tenant's spread offset (never later than the period)
    offset = keypair_store.due_offset_days(ok, "admin", 90)
    planned = datetime.datetime(2026, 8, 20, 12, tzinfo=datetime.timezone.utc) - datetime.timedelta(days=offset)
    assert admin["next_rotation"] == planned.strftime("%Y-%m-%dT%H:%M:%SZ") and admin["days_until_rotation"] == 80 - offset
    assert admin["age_days"] == 10 and admin["rotation_days"] == 90
    assert tenant["downloaded"] is True and tenant["in_grace"] is True and tenant["grace_until"] == "2026-06-02T00:00:00Z"
    assert good["smtp"] == {"present": True}
    assert good["dkim"] == {"domain": "%s.example.com" % ok, "selectors": ["dkim", "s2026"], "present": True}
    assert good["vps_ip"] == "203.0.113.10" and good["issues"] == []

    bad = by_id[expired]
    assert bad["keys"]["admin"]["status"] == "expired"
    assert "admin key rotation overdue by 10 day(s)" in bad["issues"]
    assert bad["keys"]["tenant"]["status"] == "revoked" and "tenant key revoked" in bad["issues"]

    soon = by_id[due]
    days = 5 - keypair_store.due_offset_days(due, "admin", 90)
    assert soon["keys"]["admin"]["days_until_rotation"] == days and soon["keys"]["admin"]["status"] == "active"
    assert soon["keys"]["tenant"]["status"] == "missing"
    due_issue = "admin key rotation due in %d day(s)" % days if days > 0 else "admin key rotation due now (the next scheduled run rotates it)"
    assert set(soon["issues"]) == {due_issue, "tenant key missing",
                                   "SMTP admin credentials missing", "no DKIM key for %s.example.com" % due}
    assert by_id[bare]["keys"]["admin"]["status"] == "missing"
    assert "tenant record missing" in by_id[bare]["issues"]

    summary = result["summary"]
    assert (summary["total"], summary["critical"], summary["warning"], summary["ok"]) == (4, 2, 1, 1)
    assert summary["keys_missing"] == 2 and summary["keys_revoked"] == 1 and summary["generated_at"] == NOW
    # nothing secret comes back
    for text in (json.dumps(result), proc.stdout):
        assert "PRIVATE KEY" not in text and "smtp-Secret-123" not in text


def test_tenant_secrets_info_lists_every_tenant_and_works_in_check_mode(private_vault, tmp_path):
    seed(private_vault, "all")  # into this test's own mounts on the session OpenBao
    mounts = {"vps_mount": private_vault.vps, "smtp_mount": private_vault.smtp, "dkim_mount": private_vault.dkim}
    result, _unused = run_module("penguinmails.vps.tenant_secrets_info", mounts, env=private_vault.env(), tmp_path=tmp_path, check=True)
    assert not result.get("failed"), result
    assert sorted(t["tenant_id"] for t in result["tenants"]) == ["all-bare", "all-due", "all-exp", "all-ok"]
    # evaluated at the real current time: the fixed 2026-06 dates are long past, so the admin keys have expired
    assert result["summary"]["total"] == 4 and result["changed"] is False


def test_tenant_secrets_info_errors(openbao, tmp_path):
    result, _unused = run_module("penguinmails.vps.tenant_secrets_info", {"tenant_ids": ["../etc"]}, env=openbao.env(), tmp_path=tmp_path)
    assert result["failed"] and result["msg"].startswith("invalid tenant id '../etc'")
    result, _unused = run_module("penguinmails.vps.tenant_secrets_info", {"now": "yesterday"}, env=openbao.env(), tmp_path=tmp_path)
    assert result["failed"] and "invalid now 'yesterday'" in result["msg"]
    denied = openbao.create_token(["default"])
    result, _unused = run_module("penguinmails.vps.tenant_secrets_info", {"tenant_ids": ["t1"]}, env=openbao.env(denied), tmp_path=tmp_path)
    assert result["failed"] and "permission denied" in result["msg"] and denied not in json.dumps(result)


def test_vault_health_info_unsealed_and_sealed(fresh_openbao, tmp_path):
    result, _unused = run_module("penguinmails.vps.vault_health_info", {}, env=fresh_openbao.env(), tmp_path=tmp_path)
    health = result["vault_health"]
    assert health["healthy"] is True and health["sealed"] is False and health["initialized"] is True
    assert health["standby"] is False and health["is_active"] is True
    assert health["version"] == "2.7.2" and health["cluster_name"]
    assert health["seal_type"] == "shamir" and health["storage_type"] == "inmem"
    assert health["unseal_threshold"] == 1 and health["ha_enabled"] is False
    assert health["ha_nodes"] and health["ha_nodes"][0]["active_node"] is True
    assert health["server_time_utc"].endswith("Z")

    fresh_openbao.seal()
    result, _unused = run_module("penguinmails.vps.vault_health_info", {}, env=fresh_openbao.env(), tmp_path=tmp_path, check=True)
    assert not result.get("failed"), result
    health = result["vault_health"]
    assert health["sealed"] is True and health["healthy"] is False and health["is_active"] is False
    assert health["ha_nodes"] is None and health["unseal_progress"] == 0


def test_vault_health_info_unreachable(tmp_path):
    url = "http://127.0.0.1:%d" % free_port()
    result, _unused = run_module("penguinmails.vps.vault_health_info", {"url": url, "token": "x", "retries": 0}, tmp_path=tmp_path)
    assert result["failed"] and result["msg"] == "cannot reach Vault at %s for health check: connection refused" % url


SYSLOG = """\
Jun  1 09:00:01 vps1 sshd[100]: Failed publickey for root from 198.51.100.4 port 40022 ssh2: ED25519 SHA256:AbCdEf
Jun  1 10:15:00 vps1 sshd[101]: Invalid user bob from 198.51.100.5 port 50000
Jun  1 10:15:02 vps1 sshd[101]: Failed password for invalid user bob from 198.51.100.5 port 50000 ssh2
Jun  1 10:16:00 vps1 sshd[102]: Accepted publickey for root from 192.0.2.1 port 1 ssh2: ED25519 SHA256:ok
Jun  1 10:17:00 vps1 sshd[103]: error: maximum authentication attempts exceeded for root from 2001:db8::7 port 2222 ssh2 [preauth]
Jun  1 10:18:00 vps1 CRON[104]: pam_unix(cron:session): session opened for user root
"""
ISO = "2026-06-01T11:00:00.123456+00:00 vps1 sshd[200]: Failed publickey for admin from 198.51.100.4 port 1 ssh2: RSA SHA256:Zz\n"


def test_ssh_login_failures_info_parses_syslog_and_iso_logs(tmp_path):
    auth = tmp_path / "auth.log"
    auth.write_text(SYSLOG)
    iso = tmp_path / "journal.log"
    iso.write_text(ISO)
    result, _unused = run_module("penguinmails.vps.ssh_login_failures_info",
                                 {"path": [str(auth), str(iso), str(tmp_path / "gone.log")]}, tmp_path=tmp_path)
    assert result["count"] == 5
    assert result["sources"] == {"198.51.100.4": 2, "198.51.100.5": 2, "2001:db8::7": 1}
    assert result["users"] == {"root": 2, "bob": 2, "admin": 1}
    assert result["invalid_user_count"] == 1 and result["failed_publickey_count"] == 2
    assert result["missing"] == [str(tmp_path / "gone.log")]
    first = result["failures"][0]
    assert first["kind"] == "failed" and first["method"] == "publickey" and first["user"] == "root"
    assert first["port"] == 40022 and first["key_type"] == "ED25519" and first["fingerprint"] == "SHA256:AbCdEf"
    assert first["time"].endswith("-06-01T09:00:01Z")
    assert result["failures"][-1]["time"] == "2026-06-01T11:00:00Z"
    assert result["failures"][2]["invalid_user"] is True and result["failures"][2]["method"] == "password"

    later, _unused = run_module("penguinmails.vps.ssh_login_failures_info",
                                {"path": [str(iso)], "since": "2026-06-01T10:59:00Z", "max_entries": 5}, tmp_path=tmp_path, check=True)
    assert later["count"] == 1 and later["truncated"] is False
    limited, _unused = run_module("penguinmails.vps.ssh_login_failures_info",
                                  {"path": [str(auth)], "max_entries": 2}, tmp_path=tmp_path)
    assert limited["count"] == 4 and len(limited["failures"]) == 2 and limited["truncated"] is True
    bad, _unused = run_module("penguinmails.vps.ssh_login_failures_info", {"path": [str(auth)], "since": "soon"}, tmp_path=tmp_path)
    assert bad["failed"] and "invalid since 'soon'" in bad["msg"]


@pytest.mark.parametrize("module", ["vault_health_info", "tenant_secrets_info", "ssh_login_failures_info"])
def test_ansible_doc_renders(module):
    import os
    import subprocess
    import sys

    from tests.support.ansible_run import ansible_env

    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-doc"), "-t", "module",
                           "penguinmails.vps." + module], capture_output=True, text=True, env=ansible_env(), timeout=120, check=False)
    assert proc.returncode == 0 and "RETURN VALUES" in proc.stdout, proc.stderr
