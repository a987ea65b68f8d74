# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""penguinmails.vps.vault through ansible-playbook, against a real OpenBao."""
from __future__ import annotations

import json
import re

import pytest

from tests.support.ansible_run import run_playbook
from tests.support.openbao import OpenBao, free_port

PRIVATE = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAAnot-real-but-secret\n-----END OPENSSH PRIVATE KEY-----\n"

PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Read
      ansible.builtin.debug:
        msg: "{{{{ {expr} }}}}"
"""


def play(expr):
    return PLAY.format(expr=expr)


@pytest.fixture(scope="module")
def seeded(openbao):
    openbao.kv_put("vps", "t1/admin_ssh", {"public_key": "ssh-ed25519 AAAAC3Nz t1-admin", "private_key": PRIVATE, "fingerprint": "SHA256:abc"})
    openbao.kv_put("vps", "t1/tenant_ssh", {"public_key": "ssh-ed25519 AAAAC3Nz t1-tenant", "private_key": PRIVATE, "fingerprint": "SHA256:def"})
    openbao.kv_put("dkim", "example.test/dkim", {"public_key": "p1"})
    openbao.kv_put("dkim", "example.test/s2024", {"public_key": "p2"})
    return openbao


def debug_msg(result):
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(r'"msg": (.*)\n}', result.stdout, re.S)
    assert match, result.stdout
    return json.loads(match.group(1))


def fatal_line(result):
    assert result.returncode != 0, result.stdout
    lines = [line for line in result.stdout.splitlines() if line.startswith("fatal: [localhost]")]
    assert len(lines) == 1, result.stdout
    return lines[0]


def assert_clean(result):
    """No traceback and no secret in anything the run printed."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert "OPENSSH PRIVATE KEY" not in output
    assert "root-token-for-tests" not in output


def test_reads_one_field(seeded):
    result = run_playbook(play("lookup('penguinmails.vps.vault', 'vps/t1/admin_ssh', field='public_key')"), env=seeded.env())
    assert debug_msg(result) == "ssh-ed25519 AAAAC3Nz t1-admin"
    assert_clean(result)


def test_many_terms_in_one_call(seeded):
    result = run_playbook(
        play("query('penguinmails.vps.vault', 'vps/t1/admin_ssh', 'vps/t1/tenant_ssh', field='fingerprint')"), env=seeded.env()
    )
    assert debug_msg(result) == ["SHA256:abc", "SHA256:def"]


def test_lists_dkim_selectors(seeded):
    result = run_playbook(play("lookup('penguinmails.vps.vault', 'dkim/example.test', operation='list')"), env=seeded.env())
    assert debug_msg(result) == ["dkim", "s2024"]


def test_options_from_variables(seeded):
    result = run_playbook(
        play("lookup('penguinmails.vps.vault', 'vps/t1/admin_ssh', field='fingerprint')"),
        extra_vars={"penguinmails_vault_url": seeded.addr, "penguinmails_vault_token": seeded.token},
    )
    assert debug_msg(result) == "SHA256:abc"


def test_missing_path_is_one_line(seeded):
    result = run_playbook(play("lookup('penguinmails.vps.vault', 'vps/t9/admin_ssh')"), env=seeded.env())
    line = fatal_line(result)
    assert "penguinmails.vps.vault: secret not found: vps/t9/admin_ssh" in line
    assert_clean(result)


def test_bad_token(seeded):
    result = run_playbook(play("lookup('penguinmails.vps.vault', 'vps/t1/admin_ssh')"), env=seeded.env(token="s.bad-token-value"))
    line = fatal_line(result)
    assert "permission denied for read of vps/t1/admin_ssh" in line
    assert "s.bad-token-value" not in result.stdout + result.stderr
    assert_clean(result)


def test_invalid_tenant_id(seeded):
    result = run_playbook(play("lookup('penguinmails.vps.vault', 'vps/' ~ tenant ~ '/admin_ssh')"), env=seeded.env(), extra_vars={"tenant": "../x"})
    line = fatal_line(result)
    assert "invalid Vault path 'vps/../x/admin_ssh': invalid tenant id: path traversal is not allowed" in line
    assert_clean(result)


def test_unreachable_vault():
    port = free_port()
    env = {"VAULT_ADDR": "http://127.0.0.1:%d" % port, "VAULT_TOKEN": "t"}
    result = run_playbook(play("lookup('penguinmails.vps.vault', 'vps/t1/admin_ssh', retries=0)"), env=env)
    line = fatal_line(result)
    assert "cannot reach Vault at http://127.0.0.1:%d for read of vps/t1/admin_ssh: connection refused" % port in line
    assert_clean(result)


def test_sealed_vault():
    with OpenBao() as server:
        server.enable_kv()
        server.seal()
        result = run_playbook(play("lookup('penguinmails.vps.vault', 'vps/t1/admin_ssh')"), env=server.env())
        line = fatal_line(result)
        assert "Vault at %s is sealed" % server.addr in line
        assert_clean(result)


def test_verbose_run_leaks_nothing(seeded):
    playbook = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Read a private key in a no_log task
      ansible.builtin.set_fact:
        key: "{{ lookup('penguinmails.vps.vault', 'vps/t1/admin_ssh', field='private_key') }}"
      no_log: true
    - name: Use it
      ansible.builtin.assert:
        that: key is search('BEGIN OPENSSH PRIVATE KEY')
        quiet: true
"""
    result = run_playbook(playbook, env=seeded.env(), args=["-vvvv"])
    assert result.returncode == 0, result.stdout
    assert_clean(result)
