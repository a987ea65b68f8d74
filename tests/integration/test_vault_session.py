# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""penguinmails.vps.vault_session against a real OpenBao: one AppRole login for a run, reused by the action plugins
and (through module_defaults) the modules, revoked at the end, never printed."""

from __future__ import annotations

import json
import re
import uuid

import pytest

from tests.support.ansible_run import run_playbook

PLAY = """
- hosts: localhost
  gather_facts: false
  module_defaults:
    group/penguinmails.vps.vault:
      auth_method: "{{ 'token' if penguinmails_vault_session | default({}) | penguinmails.vps.vault_session_token else omit }}"
      token: "{{ penguinmails_vault_session | default({}) | penguinmails.vps.vault_session_token or omit }}"
  tasks:
    - {penguinmails.vps.vault_session: {}, register: first}
    - {penguinmails.vps.vault_session: {}, register: again}
    - {penguinmails.vps.tenant_record_info: {tenant_id: nobody, mount: "@mount@"}, register: read}
    - {penguinmails.vps.vault_session: {state: absent}, register: ended}
    - ansible.builtin.copy:
        dest: "@out@"
        content: "{{ {'first': first.session, 'again': again.session, 'again_changed': again.changed, 'ended': ended.session,
                      'read_failed': read.failed | default(false), 'fact': penguinmails_vault_session} | to_json }}"
        mode: "0600"
"""


@pytest.fixture()
def approle(openbao):
    mount = "approle-%s" % uuid.uuid4().hex[:6]
    kv = "vps-%s" % uuid.uuid4().hex[:6]
    openbao.api("POST", "/v1/sys/auth/%s" % mount, {"type": "approle"})
    openbao.api("POST", "/v1/sys/mounts/%s" % kv, {"type": "kv", "options": {"version": "2"}})
    openbao.api("PUT", "/v1/sys/policies/acl/%s" % kv, {"policy": 'path "%s/*" { capabilities = ["read", "list"] }' % kv})
    openbao.api("POST", "/v1/auth/%s/role/run" % mount, {"token_policies": [kv], "token_ttl": "1h"})
    role_id = openbao.api("GET", "/v1/auth/%s/role/run/role-id" % mount)["data"]["role_id"]
    secret_id = openbao.api("POST", "/v1/auth/%s/role/run/secret-id" % mount)["data"]["secret_id"]
    yield dict(mount=mount, kv=kv, role_id=role_id, secret_id=secret_id)
    openbao.api("DELETE", "/v1/sys/auth/%s" % mount)
    openbao.api("DELETE", "/v1/sys/mounts/%s" % kv)


def test_one_login_reused_then_revoked_and_never_printed(openbao, approle, tmp_path):
    out = tmp_path / "out.json"
    env = {"VAULT_ADDR": openbao.addr, "VAULT_AUTH_METHOD": "approle", "VAULT_AUTH_MOUNT": approle["mount"],
           "VAULT_ROLE_ID": approle["role_id"], "VAULT_SECRET_ID": approle["secret_id"]}
    proc = run_playbook(PLAY.replace("@mount@", approle["kv"]).replace("@out@", str(out)), env=env, args=["-vvv"],
                        tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:]
    seen = json.loads(out.read_text())
    assert seen["first"]["method"] == "approle" and seen["first"]["accessor"]
    assert seen["again"].get("accessor") == seen["first"]["accessor"] and seen["again_changed"] is False, seen  # one login
    assert seen["read_failed"] is False  # the module used the session's token (the record is simply missing)
    assert seen["ended"] == {"revoked": True} and seen["fact"] == {}
    # the token is gone from Vault
    status, _body = openbao.request("POST", "/v1/auth/token/lookup-accessor", {"accessor": seen["first"]["accessor"]})
    assert status != 200
    # one login at the role, and no token in the output (-vvv)
    assert "secret_id" not in proc.stdout or approle["secret_id"] not in proc.stdout
    assert not re.search(r"\b(hvs|s)\.[A-Za-z0-9]{20,}", proc.stdout + proc.stderr)


def test_token_auth_needs_no_session_and_is_never_revoked(openbao, tmp_path):
    out = tmp_path / "out.json"
    token = openbao.create_token(["root"])
    proc = run_playbook(PLAY.replace("@mount@", "vps").replace("@out@", str(out)),
                        env={"VAULT_ADDR": openbao.addr, "VAULT_TOKEN": token}, tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:]
    seen = json.loads(out.read_text())
    assert seen["first"] == {} and seen["ended"] == {"revoked": False}
    assert openbao.request("GET", "/v1/auth/token/lookup-self", token=token)[0] == 200
