# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The KV history on a real OpenBao: the retention vault_setup configures (issue 16, seen problem 6:
with max_versions 20, twenty writes by automation purged the oldest version) and the audited check
for a burst of writes to one path (penguinmails.vps.vault_history)."""

from __future__ import annotations

import json

from tests.support.ansible_run import run_playbook
from tests.support.receivers import Webhook

ROLE = """
- hosts: localhost
  gather_facts: false
  roles:
    - role: penguinmails.vps.vault_setup
"""


def write_versions(server, token, mount, path, count):
    """``count`` check-and-set writes to ``mount/path`` with ``token``, as a client of the automation policy."""
    status, body = server.request("GET", "/v1/%s/metadata/%s" % (mount, path), token=token)
    current = body["data"]["current_version"] if status == 200 else 0
    for number in range(count):
        payload = {"data": {"n": current + number + 1}, "options": {"cas": current + number}}
        server.api("POST", "/v1/%s/data/%s" % (mount, path), payload, token=token)


def test_automation_cannot_push_a_version_out_of_the_history(fresh_openbao, tmp_path):
    server = fresh_openbao
    setup = run_playbook(ROLE, env=server.env(), tmp_path=tmp_path)
    assert setup.returncode == 0, setup.stdout[-3000:]
    for mount in ("vps", "smtp", "dkim"):
        config = server.api("GET", "/v1/%s/config" % mount)["data"]
        assert config["max_versions"] == 500 and config["delete_version_after"] == "0s"
    automation = server.create_token(["automation"])
    write_versions(server, automation, "vps", "t1/record", 60)  # three times the former max_versions
    assert server.kv_get("vps", "t1/record", version=1, token=automation)["data"] == {"n": 1}
    metadata = server.api("GET", "/v1/vps/metadata/t1/record")["data"]
    assert metadata["current_version"] == 60 and len(metadata["versions"]) == 60
    # and automation can neither delete nor destroy nor lower the retention of a secret
    for method, path, payload in (("DELETE", "/v1/vps/metadata/t1/record", None),
                                  ("POST", "/v1/vps/destroy/t1/record", {"versions": [1]}),
                                  ("POST", "/v1/vps/delete/t1/record", {"versions": [1]}),
                                  ("POST", "/v1/vps/metadata/t1/record", {"max_versions": 1}),
                                  ("POST", "/v1/vps/config", {"max_versions": 1})):
        assert server.request(method, path, payload, token=automation)[0] == 403, (method, path)


def test_max_versions_0_is_refused_because_kv_reads_it_as_10(fresh_openbao, tmp_path):
    server = fresh_openbao
    proc = run_playbook(ROLE, env=server.env(), extra_vars={"vault_setup_max_versions": 0}, tmp_path=tmp_path)
    assert proc.returncode == 2
    assert "vault_setup_max_versions 0 means 10 versions in KV v2, not unlimited" in proc.stdout
    assert server.api("GET", "/v1/vps/config")["data"]["max_versions"] == 0  # nothing changed


def test_a_burst_of_writes_to_one_path_is_audited_and_alerted(fresh_openbao, tmp_path):
    server = fresh_openbao
    assert run_playbook(ROLE, env=server.env(), tmp_path=tmp_path).returncode == 0
    automation = server.create_token(["automation"])
    write_versions(server, automation, "vps", "tquiet/record", 3)
    write_versions(server, automation, "smtp", "tquiet/admin", 2)
    write_versions(server, automation, "vps", "tburst/admin_ssh", 25)  # more than the threshold of 20
    audit_file = tmp_path / "audit.jsonl"
    with Webhook() as hook:
        env = dict(server.env(automation), ANSIBLE_CALLBACKS_ENABLED="penguinmails.vps.audit",
                   PENGUINMAILS_AUDIT_FILE=str(audit_file), PENGUINMAILS_AUDIT_ALERT_WEBHOOK_URL=hook.url + "/alert")
        proc = run_playbook("- ansible.builtin.import_playbook: penguinmails.vps.vault_history\n", env=env,
                            tmp_path=tmp_path)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 2, out  # the job fails so that a scheduler shows it
        assert "vps/tburst/admin_ssh: 25 new versions" in out
        alerts = hook.events("/alert")
    events = [json.loads(line) for line in audit_file.read_text().splitlines()]
    bursts = [e for e in events if e["action"] == "vault_write_burst"]
    assert [(e["tenantId"], e["severity"], e["details"]["mount"], e["details"]["path"], e["details"]["new_versions"])
            for e in bursts] == [("tburst", "critical", "vps", "tburst/admin_ssh", 25)]
    assert [a["action"] for a in alerts] == ["vault_write_burst"]
    # a quiet day: no event, and the job succeeds
    quiet = run_playbook("- ansible.builtin.import_playbook: penguinmails.vps.vault_history\n",
                         env=dict(env, PENGUINMAILS_AUDIT_ALERT_WEBHOOK_URL=""),
                         extra_vars={"vault_history_burst_threshold": 30}, tmp_path=tmp_path)
    assert quiet.returncode == 0, quiet.stdout[-3000:]
