# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""tenant_record, run by ansible-playbook against a real OpenBao: check mode, diff, CAS, resume."""
from __future__ import annotations

import itertools
import json
import textwrap
import uuid

from tests.support.ansible_run import run_playbook

_ids = itertools.count()


def tenant():
    return "rec%s%02d" % (uuid.uuid4().hex[:6], next(_ids))


def play(server, tasks, tmp_path, args=(), expect_rc=0):
    """Run ``tasks`` on localhost; each task registers r_<n>, all returned in order."""
    out = tmp_path / ("results-%d.json" % next(_ids))
    body = textwrap.indent(textwrap.dedent(tasks).strip(), "    ")
    playbook = """
- hosts: localhost
  gather_facts: false
  tasks:
%s
    - name: Dump results
      ansible.builtin.copy:
        content: >-
          {{ q('ansible.builtin.varnames', '^r_[0-9]+$') | map('extract', vars)
             | zip(q('ansible.builtin.varnames', '^r_[0-9]+$')) | map('reverse')
             | community.general.dict | default({}) | to_json }}
        dest: %s
        mode: "0600"
""" % (body, out)
    result = run_playbook(playbook, env=server.env(), args=args, tmp_path=tmp_path)
    assert result.returncode == expect_rc, result.stdout[-4000:] + result.stderr[-2000:]
    return (json.loads(out.read_text()) if out.exists() else {}), result


def test_seed_migrate_resume_complete(openbao, tmp_path):
    tid = tenant()
    tasks = """
        - name: Seed in check mode
          penguinmails.vps.tenant_record: {tenant_id: %(t)s, state: present, domain: acme.test, vps_id: 101, vps_ip: 198.18.0.2, vps_name: pm-%(t)s-1}
          check_mode: true
          register: r_1
        - name: Seed
          penguinmails.vps.tenant_record: {tenant_id: %(t)s, state: present, domain: acme.test, vps_id: 101, vps_ip: 198.18.0.2, vps_name: pm-%(t)s-1}
          register: r_2
        - name: Seed again
          penguinmails.vps.tenant_record: {tenant_id: %(t)s, state: present, domain: acme.test, vps_id: "101"}
          register: r_3
        - name: Start a migration
          penguinmails.vps.tenant_record: {tenant_id: %(t)s, state: migrating, reason: compromise}
          register: r_4
        - name: Provisioned
          penguinmails.vps.tenant_record: {tenant_id: %(t)s, state: migrating, step: provisioned, new_vps_id: 202, new_vps_ip: 198.18.0.3}
          register: r_5
    """ % {"t": tid}
    res, result = play(openbao, tasks, tmp_path, args=("--diff",))
    assert res["r_1"]["changed"] and res["r_1"]["exists"] and res["r_1"]["version"] == 0
    assert res["r_1"]["diff"]["before"] == {} and res["r_1"]["diff"]["after"]["vps_id"] == "101"
    assert res["r_2"]["changed"] and res["r_2"]["version"] == 1 and res["r_2"]["path"] == "vps/%s/record" % tid
    assert not res["r_3"]["changed"] and res["r_3"]["version"] == 1
    assert res["r_4"]["changed"] and not res["r_4"]["resumed"]
    assert res["r_4"]["migration"]["server_name"] == "pm-%s-2" % tid
    assert res["r_5"]["migration"]["new_vps_id"] == "202" and res["r_5"]["migration"]["step"] == "provisioned"
    assert "vps_id" in result.stdout  # --diff shows the record
    stored = openbao.kv_get("vps", "%s/record" % tid)
    assert stored["metadata"]["version"] == 3
    assert stored["data"]["vps_id"] == "101" and stored["data"]["migration"]["old_vps_name"] == "pm-%s-1" % tid

    # A second run resumes: same server name, no new version; a conflicting new id fails in one line.
    res, result = play(openbao, """
        - name: Resume
          penguinmails.vps.tenant_record: {tenant_id: %(t)s, state: migrating, reason: upgrade}
          register: r_1
        - name: Other id
          penguinmails.vps.tenant_record: {tenant_id: %(t)s, state: migrating, new_vps_id: 303}
          register: r_2
          ignore_errors: true
        - name: Switch before DNS
          penguinmails.vps.tenant_record: {tenant_id: %(t)s, state: migrated}
          register: r_3
          ignore_errors: true
    """ % {"t": tid}, tmp_path)
    assert res["r_1"]["resumed"] and not res["r_1"]["changed"] and res["r_1"]["version"] == 3
    assert res["r_1"]["migration"]["server_name"] == "pm-%s-2" % tid and res["r_1"]["migration"]["reason"] == "compromise"
    assert res["r_2"]["failed"] and "recorded new VPS id 202, not 303" in res["r_2"]["msg"]
    assert res["r_3"]["failed"] and "only after dns_switched" in res["r_3"]["msg"]
    assert openbao.kv_get("vps", "%s/record" % tid)["metadata"]["version"] == 3

    res, _unused = play(openbao, """
        - name: DNS switched
          penguinmails.vps.tenant_record: {tenant_id: %(t)s, state: migrating, step: dns_switched}
          register: r_1
        - name: Migrated (check mode)
          penguinmails.vps.tenant_record: {tenant_id: %(t)s, state: migrated}
          check_mode: true
          register: r_2
        - name: Migrated
          penguinmails.vps.tenant_record: {tenant_id: %(t)s, state: migrated}
          register: r_3
        - name: Migrated again
          penguinmails.vps.tenant_record: {tenant_id: %(t)s, state: migrated}
          register: r_4
        - name: Completed
          penguinmails.vps.tenant_record: {tenant_id: %(t)s, state: completed}
          register: r_5
        - name: Completed again
          penguinmails.vps.tenant_record: {tenant_id: %(t)s, state: completed}
          register: r_6
        - name: Query
          penguinmails.vps.tenant_record: {tenant_id: %(t)s}
          register: r_7
    """ % {"t": tid}, tmp_path)
    assert res["r_2"]["changed"] and res["r_2"]["record"]["vps_id"] == "202"
    assert res["r_3"]["changed"] and res["r_3"]["version"] == res["r_1"]["version"] + 1
    assert not res["r_4"]["changed"]
    assert res["r_5"]["changed"] and res["r_5"]["migration"] == {}
    assert not res["r_6"]["changed"]
    record = res["r_7"]["record"]
    assert not res["r_7"]["changed"]
    assert record["vps_id"] == "202" and record["vps_ip"] == "198.18.0.3" and record["vps_name"] == "pm-%s-2" % tid
    assert record["previous_vps_id"] == "101" and record["migration_reason"] == "compromise"
    assert record["last_migration"]["step"] == "record_updated" and "migration" not in record


def test_errors_are_one_line(openbao, tmp_path):
    res, result = play(openbao, """
        - name: Bad tenant
          penguinmails.vps.tenant_record: {tenant_id: "../x", state: present, domain: a.test}
          register: r_1
          ignore_errors: true
        - name: No reason
          penguinmails.vps.tenant_record: {tenant_id: %s, state: migrating}
          register: r_2
          ignore_errors: true
        - name: Query a missing record
          penguinmails.vps.tenant_record: {tenant_id: %s}
          register: r_3
    """ % (tenant(), tenant()), tmp_path)
    assert res["r_1"]["failed"] and res["r_1"]["msg"].startswith("invalid tenant id")
    assert res["r_2"]["failed"] and "needs a reason" in res["r_2"]["msg"]
    assert "\n" not in res["r_1"]["msg"] + res["r_2"]["msg"]
    assert not res["r_3"]["exists"] and res["r_3"]["record"] == {} and res["r_3"]["version"] == 0
    assert "Traceback" not in result.stdout + result.stderr
