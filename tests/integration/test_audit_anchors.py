# -*- coding: utf-8 -*-
# Issue 16 (anchors) and issue 14 (an entry point for verify): real runs with the audit callback send
# every event and an end-of-run checkpoint to a real syslog socket and a real webhook server; what they
# received is exported and given to `penguinmails.vps.audit_verify` (the playbook, as a user of an installed
# collection runs it), which then finds a cut-off end and a replaced file, naming the first bad line.

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from tests.support.ansible_run import COLLECTIONS, run_playbook
from tests.support.receivers import SyslogReceiver, Webhook
from tests.support.wait import wait_until

RUN = """
- hosts: localhost
  gather_facts: false
  tasks:
    - penguinmails.vps.audit_event: {action: ssh_key_rotated, tenant_id: "{{ item }}", details: {role: admin}}
      loop: %s
"""


def verify_playbook(tmp_path, audit_file, *anchors, env=None):
    extra = {"audit_file": str(audit_file)}
    if anchors:
        extra["audit_anchor"] = list(anchors) if len(anchors) > 1 else anchors[0]
    return run_playbook("- ansible.builtin.import_playbook: penguinmails.vps.audit_verify\n", env=env or {},
                        args=["-e", json.dumps(extra)], tmp_path=tmp_path)


def test_verify_against_syslog_and_webhook_finds_a_cut_off_end_and_a_replaced_file(tmp_path):
    audit_file = tmp_path / "audit.jsonl"
    with SyslogReceiver() as syslog, Webhook() as hook:
        env = {"ANSIBLE_CALLBACKS_ENABLED": "penguinmails.vps.audit", "PENGUINMAILS_AUDIT_FILE": str(audit_file),
               "PENGUINMAILS_AUDIT_SYSLOG": syslog.address, "PENGUINMAILS_AUDIT_WEBHOOK_URL": hook.url + "/audit"}
        for tenants in (["t1", "t2", "t3"], ["t4", "t5"]):
            proc = run_playbook(RUN % json.dumps(tenants), env=env, tmp_path=tmp_path)
            assert proc.returncode == 0, proc.stdout + proc.stderr
        wait_until(lambda: len(syslog.messages) == 5 + 2, 10, "5 events and 2 checkpoints over syslog")
        syslog_export = tmp_path / "syslog-export.log"
        syslog_export.write_text("\n".join(syslog.messages) + "\n")
        webhook_export = tmp_path / "webhook-bodies.jsonl"
        webhook_export.write_bytes(b"\n".join(hook.bodies("/audit")) + b"\n")
    checkpoints = [b for b in syslog.bodies() if b["action"] == "audit_checkpoint"]
    assert [c["details"]["seq"] for c in checkpoints] == [3, 5]

    good = verify_playbook(tmp_path, audit_file, str(syslog_export), str(webhook_export))
    assert good.returncode == 0, good.stdout[-3000:]
    assert "OK: 5 events, chain intact against 14 anchor(s)" in good.stdout

    # an attacker cuts the last run's events off: the file alone still verifies, the anchors do not
    lines = audit_file.read_text().splitlines()
    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join(lines[:3]) + "\n")
    assert verify_playbook(tmp_path, cut).returncode == 0
    for export in (syslog_export, webhook_export):
        bad = verify_playbook(tmp_path, cut, str(export))
        assert bad.returncode == 2, bad.stdout[-3000:]
        assert "first bad line 4: line 4: the file ends at seq 3 (line 3)" in bad.stdout
        assert "events were removed from the end" in bad.stdout

    # ... or replaces the whole file with a fresh chain of their own
    forged_file = tmp_path / "forged.jsonl"
    forge_env = {"ANSIBLE_CALLBACKS_ENABLED": "penguinmails.vps.audit", "PENGUINMAILS_AUDIT_FILE": str(forged_file)}
    assert run_playbook(RUN % json.dumps(["t1", "t2", "t3", "t4", "t5"]), env=forge_env, tmp_path=tmp_path).returncode == 0
    assert verify_playbook(tmp_path, forged_file).returncode == 0
    replaced = verify_playbook(tmp_path, forged_file, str(syslog_export))
    assert replaced.returncode == 2 and "first bad line 1: line 1: no anchor belongs to this file's chain" in replaced.stdout

    # the same from the command line of an installed collection (python3 -m, no Ansible run)
    cli = subprocess.run([sys.executable, "-m", "ansible_collections.penguinmails.vps.plugins.module_utils.audit",
                          "verify", str(cut), "--anchor", str(syslog_export)], capture_output=True, text=True,
                         timeout=60, check=False, env=dict(os.environ, PYTHONPATH=COLLECTIONS))
    assert cli.returncode == 1 and "first bad line 4" in cli.stdout


def test_verify_runs_from_an_installed_collection_without_the_checkout(tmp_path):
    """ansible-galaxy collection install of the built tarball, then the playbook and python3 -m by FQCN."""
    venv_bin = os.path.dirname(sys.executable)
    build_dir, install_dir = tmp_path / "build", tmp_path / "installed"
    # As a user runs it: none of the checkout's settings (its ansible.cfg puts ./collections, where this collection
    # already is, on the collections path, and ansible-galaxy would then install nothing).
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith("ANSIBLE_"))
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    build = subprocess.run([os.path.join(venv_bin, "ansible-galaxy"), "collection", "build", repo, "--output-path",
                            str(build_dir)], capture_output=True, text=True, timeout=300, check=False, cwd=str(tmp_path), env=env)
    assert build.returncode == 0, build.stdout + build.stderr
    tarball = next(build_dir.glob("penguinmails-vps-*.tar.gz"))
    install = subprocess.run([os.path.join(venv_bin, "ansible-galaxy"), "collection", "install", str(tarball), "-p",
                              str(install_dir)], capture_output=True, text=True, timeout=300, check=False, cwd=str(tmp_path), env=env)
    assert install.returncode == 0, install.stdout + install.stderr
    assert (install_dir / "ansible_collections" / "penguinmails" / "vps" / "MANIFEST.json").is_file(), install.stdout
    audit_file = tmp_path / "audit.jsonl"
    project = tmp_path / "project"
    project.mkdir()
    env.update(ANSIBLE_COLLECTIONS_PATH=str(install_dir), ANSIBLE_CALLBACKS_ENABLED="penguinmails.vps.audit",
               PENGUINMAILS_AUDIT_FILE=str(audit_file), PATH=venv_bin + os.pathsep + env.get("PATH", ""))
    (project / "play.yml").write_text(RUN % json.dumps(["t1", "t2"]))
    run = subprocess.run([os.path.join(venv_bin, "ansible-playbook"), "play.yml"], capture_output=True, text=True,
                         timeout=300, check=False, cwd=str(project), env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    verify = subprocess.run([os.path.join(venv_bin, "ansible-playbook"), "penguinmails.vps.audit_verify", "-e",
                             "audit_file=%s" % audit_file], capture_output=True, text=True, timeout=300, check=False,
                            cwd=str(project), env=env)
    assert verify.returncode == 0 and "OK: 2 events, chain intact" in verify.stdout, verify.stdout + verify.stderr
    cli = subprocess.run([sys.executable, "-m", "ansible_collections.penguinmails.vps.plugins.module_utils.audit",
                          "verify", str(audit_file)], capture_output=True, text=True, timeout=60, check=False,
                         cwd=str(project), env=dict(env, PYTHONPATH=str(install_dir)))
    assert cli.returncode == 0 and "OK: 2 events" in cli.stdout, cli.stdout + cli.stderr
    shutil.rmtree(str(build_dir))
