# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Vault's own audit device is on after roles/vault_setup (its default), and a read of a private key is in Vault's
log: the path in clear, the key itself only as Vault's HMAC."""
from __future__ import annotations

import json
import re
import uuid

import pytest

from tests.support.ansible_run import run_playbook

SETUP = """
- hosts: localhost
  gather_facts: false
  roles:
    - role: penguinmails.vps.vault_setup
      vars:
        vault_setup_tenants: []
"""

READ_KEY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Make the admin key
      penguinmails.vps.vault_ssh_keypair: {tenant_id: %(tid)s, role: admin, key_type: ed25519}
    - name: Read it back (the private key too)
      penguinmails.vps.vault_ssh_keypair: {tenant_id: %(tid)s, role: admin, key_type: ed25519, return_private_key: true}
      no_log: true
"""


def _recap(stdout):
    match = re.search(r"localhost\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", stdout)
    assert match, stdout[-3000:]
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups())))


def _audit_entries(path):
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def test_audit_device_on_after_vault_setup_and_a_key_read_is_in_it(fresh_openbao, tmp_path):
    server = fresh_openbao  # declares the file audit device in its config, as the lab and an operator do
    first = run_playbook(SETUP, env=server.env(), tmp_path=tmp_path)
    assert first.returncode == 0, first.stdout[-3000:]
    devices = server.api("GET", "/v1/sys/audit")["data"]
    assert devices["file/"]["type"] == "file" and devices["file/"]["options"]["file_path"] == server.audit_log
    again = run_playbook(SETUP, env=server.env(), tmp_path=tmp_path)
    assert again.returncode == 0 and _recap(again.stdout)["changed"] == 0

    tid = "aud" + uuid.uuid4().hex[:8]
    result = run_playbook(READ_KEY % {"tid": tid}, env=server.env(), tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    private_key = server.kv_get("vps", "%s/admin_ssh" % tid)["data"]["private_key"]
    reads = [entry for entry in _audit_entries(server.audit_log)
             if entry.get("type") == "response" and entry["request"].get("path") == "vps/data/%s/admin_ssh" % tid
             and entry["request"].get("operation") == "read"
             and "private_key" in ((entry.get("response") or {}).get("data") or {}).get("data", {})]
    assert reads, "no read of the private key in Vault's audit log"
    assert all(entry["response"]["data"]["data"]["private_key"].startswith("hmac-sha256:") for entry in reads)
    assert all(entry["request"]["id"] for entry in reads)
    with open(server.audit_log) as handle:
        text = handle.read()
    body = "".join(private_key.strip().splitlines()[1:-1])
    assert body and body[:40] not in text.replace("\\n", "")


DOWNLOAD = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Make the tenant key
      penguinmails.vps.vault_ssh_keypair: {tenant_id: %(tid)s, role: tenant, key_type: ed25519}
    - name: Download it
      penguinmails.vps.vault_ssh_key_download: {tenant_id: %(tid)s, output: %(output)s, dest: %(dest)s}
      register: download
    - name: Keep the result
      ansible.builtin.copy:
        content: "{{ download.vault_request_id | to_json }}"
        dest: %(result)s
        mode: "0600"
"""


@pytest.mark.parametrize("output", ["file", "wrap"])
def test_a_key_download_returns_the_request_id_vaults_audit_log_has(openbao, tmp_path, output):
    """vault_ssh_key_download returns vault_request_id: the id Vault's own audit log gives the read that handed the
    private key out (output=file); a wrapped response has none (null)."""
    tid = "rid" + uuid.uuid4().hex[:8]
    (tmp_path / "out").mkdir(mode=0o700)
    values = {"tid": tid, "output": output, "dest": tmp_path / "out" / "key", "result": tmp_path / "rid.json"}
    result = run_playbook(DOWNLOAD % values, env=openbao.env(), tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    request_id = json.loads((tmp_path / "rid.json").read_text())
    if output == "wrap":
        assert request_id is None
        return
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", request_id), request_id
    (entry,) = [e for e in _audit_entries(openbao.audit_log) if e.get("type") == "response"
                and e["request"].get("id") == request_id]
    assert entry["request"]["path"] == "vps/data/%s/tenant_ssh" % tid and entry["request"]["operation"] == "read"
    assert "private_key" in entry["response"]["data"]["data"]
