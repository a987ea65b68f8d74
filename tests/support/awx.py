# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a playbook of the wrapper project (docs/awx/project/) the way AWX/AAP runs a job.

What AWX's RunJob does for a job, and what this module does the same way (AWX source: awx/main/tasks/jobs.py,
awx/main/models/credential/__init__.py ``CredentialType.inject_credential``, awx/main/models/inventory.py
``Inventory.get_script_data``):

* private data dir: ``project/`` (the project checkout; ansible-playbook runs in it, so its ansible.cfg applies),
  ``inventory/hosts`` (an executable script printing the inventory as JSON: enabled hosts ordered by name, slice
  ``k`` of ``n`` = ``hosts[k-1::n]``, groups keep only the slice's hosts, ``_meta.hostvars`` with
  ``remote_tower_enabled``/``remote_tower_id``), ``env/extravars`` (template extra vars + survey answers + the
  ``awx_*`` meta vars), files of credential ``file`` injectors in ``env/`` (mode 0660, ``tower.filename``),
  credential ``extra_vars`` injectors in a file of ``env/`` passed as ``-e @file``;
* environment: AWX's ANSIBLE_* settings (host key checking off, retry files off, ...), JOB_ID, INVENTORY_ID,
  AWX_PRIVATE_DATA_DIR, ANSIBLE_SSH_CONTROL_PATH_DIR, ANSIBLE_COLLECTIONS_PATH (the job's requirements_collections
  first, where the EE / project sync puts penguinmails.vps), and each credential's ``env`` injectors - except
  ANSIBLE_* and AWX's blocklist, which AWX refuses in credentials;
* ansible-runner with AWX's stdout callback (awx_display) writes every job event to ``artifacts/<ident>/job_events``.

Process isolation (the EE container) is the one difference: the job runs on this machine, with this checkout as
the EE's copy of the collection. Paths are host paths, not /runner/... ones.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import stat
import tempfile

import ansible_runner
import yaml
from jinja2 import sandbox

from tests.support.ansible_run import COLLECTIONS, REPO, VENV_BIN, ensure_collection_link

AWX_DIR = os.path.join(REPO, "docs", "awx")
PROJECT = os.path.join(AWX_DIR, "project")
# awx/main/constants.py ENV_BLOCKLIST (credentials may not set these)
ENV_BLOCKLIST = frozenset(("VIRTUAL_ENV", "PATH", "PYTHONPATH", "JOB_ID", "INVENTORY_ID", "INVENTORY_SOURCE_ID",
                           "INVENTORY_UPDATE_ID", "AD_HOC_COMMAND_ID", "REST_API_URL", "REST_API_TOKEN", "MAX_EVENT_RES",
                           "CALLBACK_QUEUE", "CALLBACK_CONNECTION", "CACHE", "JOB_CALLBACK_DEBUG", "INVENTORY_HOSTVARS",
                           "AWX_HOST", "PROJECT_REVISION", "SUPERVISOR_CONFIG_PATH"))
# AWX's default ANSIBLE_* settings, passed to every job (awx/settings/defaults.py)
AWX_ANSIBLE_SETTINGS = {"ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
                        "ANSIBLE_PARAMIKO_RECORD_HOST_KEYS": "False", "ANSIBLE_FORCE_COLOR": "False"}


def credential_type(name):
    with open(os.path.join(AWX_DIR, "credential_types", name)) as handle:
        return yaml.safe_load(handle)


def survey(name):
    with open(os.path.join(AWX_DIR, "surveys", name + ".yml")) as handle:
        return yaml.safe_load(handle)


def survey_answers(spec, answers):
    """Extra vars from survey ``answers`` as AWX validates them (required, text length, choices, defaults)."""
    values = {}
    for question in spec["spec"]:
        variable = question["variable"]
        value = answers.get(variable, question.get("default"))
        if value in (None, "") and question.get("required"):
            raise ValueError("survey: %s is required" % variable)
        if question["type"] in ("text", "textarea", "password") and value is not None:
            if not question.get("min", 0) <= len(str(value)) <= question.get("max", 1024):
                raise ValueError("survey: %s must be %s to %s characters" % (variable, question.get("min"), question.get("max")))
        if question["type"] == "multiplechoice" and value not in question["choices"]:
            raise ValueError("survey: %s must be one of %s" % (variable, question["choices"]))
        if value is not None:
            values[variable] = value
    return values


def slice_hosts(names, slice_number, slice_count):
    """AWX's slice ``slice_number`` (1-based) of ``slice_count``: ordered by name, ``[offset::slice_count]``."""
    ordered = sorted(names)
    if slice_count > 1 and slice_number > 0:
        return ordered[slice_number - 1::slice_count]
    return ordered


class AwxJob(object):
    """One job: ``AwxJob(base, 'rotate-1').credential('vault_approle.yml', inputs)...run('rotate.yml', ...)``."""

    def __init__(self, base, name, job_id=1):
        ensure_collection_link()
        self.job_id = job_id
        self.private_data_dir = os.path.join(str(base), name)
        for sub in ("env", "inventory", "artifacts", "cp", "requirements_collections"):
            os.makedirs(os.path.join(self.private_data_dir, sub), exist_ok=True)
        os.chmod(self.private_data_dir, 0o700)
        shutil.copytree(PROJECT, os.path.join(self.private_data_dir, "project"))
        self.env, self.safe_env, self.args, self.secret_inputs = {}, {}, [], []
        self.result = None

    # -- credentials: CredentialType.inject_credential ---------------------------------------------------------
    def credential(self, type_file, inputs):
        definition = credential_type(type_file)
        secret_fields = [f["id"] for f in definition["inputs"].get("fields", []) if f.get("secret")]
        self.secret_inputs += [value for key, value in inputs.items() if key in secret_fields and value]

        class TowerNamespace(object):
            pass

        tower = TowerNamespace()
        namespace, safe_namespace = {"tower": tower}, {"tower": tower}
        for field_name, value in inputs.items():
            if field_name in secret_fields:
                safe_namespace[field_name] = "**********"
            elif len(value):
                safe_namespace[field_name] = value
            if len(value):
                namespace[field_name] = value
        env = sandbox.ImmutableSandboxedEnvironment()
        injectors = definition.get("injectors") or {}
        for label, template in (injectors.get("file") or {}).items():
            data = env.from_string(template).render(**namespace)
            handle, path = tempfile.mkstemp(dir=os.path.join(self.private_data_dir, "env"))
            with os.fdopen(handle, "w") as out:
                out.write(data)
            os.chmod(path, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IWGRP)
            if "." not in label:
                tower.filename = path
            else:
                if not hasattr(tower, "filename"):
                    tower.filename = TowerNamespace()
                setattr(tower.filename, label.split(".")[1], path)
        for variable, template in (injectors.get("env") or {}).items():
            if variable.startswith("ANSIBLE_") or variable in ENV_BLOCKLIST:
                continue  # AWX logs "Ignoring prohibited env var" and goes on
            self.env[variable] = env.from_string(template).render(**namespace)
            self.safe_env[variable] = env.from_string(template).render(**safe_namespace)
        extra = dict((name, env.from_string(template).render(**namespace))
                     for name, template in (injectors.get("extra_vars") or {}).items())
        if extra:
            handle, path = tempfile.mkstemp(dir=os.path.join(self.private_data_dir, "env"))
            with os.fdopen(handle, "w") as out:
                yaml.safe_dump(extra, out)
            os.chmod(path, stat.S_IRUSR | stat.S_IRGRP)
            self.args += ["-e", "@%s" % path]
        return self

    # -- inventory: Inventory.get_script_data(hostvars=True, towervars=True, slice_number, slice_count) ----------
    def inventory(self, hosts, groups=None, slice_number=1, slice_count=1, inventory_vars=None):
        """``hosts``: {name: hostvars}; ``groups``: {group: [names]}. Writes inventory/hosts as AWX does."""
        chosen = slice_hosts(list(hosts), slice_number, slice_count)
        data = {"all": {"hosts": [], "children": []}, "_meta": {"hostvars": {}}}
        if inventory_vars:
            data["all"]["vars"] = inventory_vars
        grouped = set()
        for group, members in sorted((groups or {}).items()):
            data[group] = {"hosts": [name for name in members if name in chosen]}
            data["all"]["children"].append(group)
            grouped.update(members)
        data["all"]["hosts"] = [name for name in chosen if name not in grouped]
        for number, name in enumerate(chosen, 1):
            data["_meta"]["hostvars"][name] = dict(hosts[name], remote_tower_enabled="true", remote_tower_id=number)
        path = os.path.join(self.private_data_dir, "inventory", "hosts")
        with open(path, "w") as handle:
            os.chmod(path, stat.S_IRUSR | stat.S_IXUSR | stat.S_IWUSR)
            handle.write("#! %s\n# -*- coding: utf-8 -*-\nprint(%r)\n" % (os.path.join(VENV_BIN, "python"), json.dumps(data)))
        self.inventory_path, self.hosts = path, chosen
        return self

    # -- the run -----------------------------------------------------------------------------------------------
    def job_env(self):
        env = dict(AWX_ANSIBLE_SETTINGS)
        env.update({
            "JOB_ID": str(self.job_id), "INVENTORY_ID": "1", "PROJECT_REVISION": "0" * 40,
            "ANSIBLE_RETRY_FILES_ENABLED": "False", "MAX_EVENT_RES": "700000", "AWX_HOST": "https://awx.example.test",
            "AWX_PRIVATE_DATA_DIR": self.private_data_dir,
            "ANSIBLE_SSH_CONTROL_PATH_DIR": os.path.join(self.private_data_dir, "cp"),
            "ANSIBLE_COLLECTIONS_PATH": os.pathsep.join([os.path.join(self.private_data_dir, "requirements_collections"),
                                                         COLLECTIONS]),
            "PATH": VENV_BIN + os.pathsep + os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", "/root"),
            "ANSIBLE_LOCAL_TEMP": os.path.join(self.private_data_dir, "tmp"),
            # AWX's job has no ANSIBLE_CONFIG: ansible-playbook reads the project's ansible.cfg (its working
            # directory). The test's own environment (make test exports the checkout's) must not replace it.
            "ANSIBLE_CONFIG": os.path.join(self.private_data_dir, "project", "ansible.cfg"),
        })
        env.update(self.env)
        return env

    def run(self, playbook, extra_vars=None, survey_name=None, answers=None, forks=None, limit=None, user="alice"):
        """Run ``playbook`` of the project; returns the ansible_runner Runner (rc, status, events)."""
        values = {"awx_job_id": self.job_id, "awx_job_launch_type": "manual", "awx_user_name": user,
                  "awx_job_template_name": "penguinmails - %s" % playbook, "awx_inventory_name": "penguinmails-tenants",
                  "awx_project_revision": "0" * 40}
        values.update(extra_vars or {})
        if survey_name:
            values.update(survey_answers(survey(survey_name), answers or {}))
        with open(os.path.join(self.private_data_dir, "env", "extravars"), "w") as handle:
            yaml.safe_dump(values, handle)
        args = list(self.args)
        if forks:
            args.append("--forks=%d" % forks)
        if limit:
            args += ["-l", limit]
        self.result = ansible_runner.run(
            private_data_dir=self.private_data_dir, playbook=playbook, inventory=self.inventory_path,
            envvars=self.job_env(), cmdline=" ".join(args) or None, ident="job%d" % self.job_id, quiet=True,
            suppress_ansible_output=True, settings={"suppress_ansible_output": True})
        return self.result

    # -- what the job left ---------------------------------------------------------------------------------------
    def artifacts(self):
        return os.path.join(self.private_data_dir, "artifacts", "job%d" % self.job_id)

    def events(self):
        found = []
        for path in sorted(glob.glob(os.path.join(self.artifacts(), "job_events", "*.json"))):
            with open(path) as handle:
                found.append(json.load(handle))
        return found

    def event_texts(self):
        """Every job event file as text, and the job's stdout (what AWX stores and shows)."""
        texts = []
        for path in sorted(glob.glob(os.path.join(self.artifacts(), "job_events", "*.json"))):
            with open(path) as handle:
                texts.append(handle.read())
        stdout = os.path.join(self.artifacts(), "stdout")
        if os.path.exists(stdout):
            with open(stdout) as handle:
                texts.append(handle.read())
        return texts

    def stdout(self):
        path = os.path.join(self.artifacts(), "stdout")
        with open(path) as handle:
            return handle.read()

    def debug_messages(self):
        """The msg of every debug task result (runner_on_ok events of ansible.builtin.debug)."""
        found = []
        for event in self.events():
            data = event.get("event_data", {})
            if event.get("event") == "runner_on_ok" and data.get("task_action") in ("ansible.builtin.debug", "debug"):
                found.append(data.get("res", {}).get("msg"))
        return found
