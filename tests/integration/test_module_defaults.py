# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``module_defaults`` for ``group/penguinmails.vps.vault`` reaches the Vault modules, those with an action
plugin too (meta/runtime.yml action group; issue 14). No VAULT_* variable is set: the defaults are the only
way the modules can find Vault."""

from __future__ import annotations

from tests.support.ansible_run import run_tasks

TASKS = """
- {penguinmails.vps.vault_health_info: {}, register: r_health}
- {penguinmails.vps.tenant_record_info: {tenant_id: md1}, register: r_record}
- {penguinmails.vps.vault_ssh_keypair_info: {tenant_id: md1}, register: r_keys}
- {penguinmails.vps.ssh_agent: {tenants: [md1]}, register: r_agent}
- {penguinmails.vps.ssh_agent: {state: stopped}}
"""


def test_group_defaults_reach_every_kind_of_vault_module(openbao, tmp_path):
    play = "- module_defaults:\n    group/penguinmails.vps.vault:\n      url: %s\n      token: %s\n  block:\n" % (
        openbao.addr, openbao.token)
    tasks = play + "\n".join("    " + line for line in TASKS.strip().splitlines())
    results, proc = run_tasks(tasks, tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert results["r_health"]["vault_health"]["initialized"] is True
    assert results["r_record"]["exists"] is False
    assert set(results["r_keys"]["keys"]) == {"admin", "tenant"}
    assert results["r_agent"]["agent"] and "md1" in results["r_agent"]["errors"]


def test_without_the_defaults_the_modules_cannot_find_vault(openbao, tmp_path):
    results, proc = run_tasks("- {penguinmails.vps.vault_health_info: {}, register: r_health}", tmp_path)
    assert proc.returncode != 0 and "VAULT_ADDR" in proc.stdout, proc.stdout[-3000:]
