# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run ansible-playbook against this checkout, as an operator would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV_BIN = os.path.dirname(sys.executable)
COLLECTIONS = os.path.join(REPO, "collections")
LINK = os.path.join(COLLECTIONS, "ansible_collections", "penguinmails", "vps")


def ensure_collection_link():
    if not os.path.islink(LINK):
        os.makedirs(os.path.dirname(LINK), exist_ok=True)
        os.symlink("../../..", LINK)


def ansible_env(extra=None):
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("VAULT_", "ANSIBLE_", "HOSTWINDS_"))
    }
    env.update(
        {
            "ANSIBLE_CONFIG": os.path.join(REPO, "ansible.cfg"),
            "ANSIBLE_COLLECTIONS_PATH": COLLECTIONS,
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_LOCAL_TEMP": os.path.join(tempfile.gettempdir(), "pm-ansible-local"),
            "PATH": VENV_BIN + os.pathsep + os.environ.get("PATH", ""),
        }
    )
    env.update(extra or {})
    return env


def run_playbook(playbook, env=None, extra_vars=None, args=(), inventory=None, timeout=600, tmp_path=None):
    """Write ``playbook`` (YAML text) to a file and run it; return the CompletedProcess."""
    ensure_collection_link()
    if not tmp_path:  # a private dir for the playbook and inventory, gone after the run (not left in /tmp)
        with tempfile.TemporaryDirectory(prefix="pm-play-") as directory:
            return run_playbook(playbook, env, extra_vars, args, inventory, timeout, directory)
    directory = str(tmp_path)
    path = os.path.join(directory, "playbook.yml")
    with open(path, "w") as handle:
        handle.write(textwrap.dedent(playbook))
    if inventory is None:
        inventory = os.path.join(directory, "inventory.ini")
        with open(inventory, "w") as handle:
            handle.write("localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
    cmd = [os.path.join(VENV_BIN, "ansible-playbook"), "-i", inventory, path]
    for key, value in (extra_vars or {}).items():
        cmd += ["-e", "%s=%s" % (key, value)]
    cmd += list(args)
    return subprocess.run(cmd, env=ansible_env(env), capture_output=True, text=True, timeout=timeout, cwd=REPO, check=False)


RESULTS_TASK = """
    - name: Dump the registered results
      ansible.builtin.copy:
        content: >-
          {{ lookup('ansible.builtin.varnames', '^r_') | split(',') | map('extract', vars) | list
             | zip(lookup('ansible.builtin.varnames', '^r_') | split(',')) | map('reverse')
             | community.general.dict | to_json }}
        dest: %s
        mode: "0600"
      when: dump | default(true)
"""


def run_tasks(tasks, tmp_path, env=None, args=(), name="results"):
    """Run ``tasks`` (YAML, any indent) in one localhost play; return (registered ``r_*`` results, CompletedProcess)."""
    out = os.path.join(str(tmp_path), "%s-%s.json" % (name, uuid.uuid4().hex[:12]))
    body = textwrap.indent(textwrap.dedent(tasks).strip(), "    ")
    playbook = "- hosts: localhost\n  gather_facts: false\n  tasks:\n%s\n%s" % (body, RESULTS_TASK % out)
    result = run_playbook(playbook, env=env, args=args, tmp_path=tmp_path)
    results = {}
    if os.path.exists(out):
        with open(out) as handle:
            results = json.load(handle)
    return results, result
