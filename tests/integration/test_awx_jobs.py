# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jobs of the wrapper project (docs/awx/project/) run the way AWX runs them, against the lab.

Each job is an ansible_runner.run() over a private data dir laid out as AWX lays it (tests/support/awx.py): the
project's playbook, an AWX inventory script, the environment and extra vars that the collection's credential types
(docs/awx/credential_types/*.yml) inject - rendered by AWX's rules from the files, not written by hand -, the survey
answers validated against docs/awx/surveys/*.yml, the audit callback enabled by the project's ansible.cfg and pointed
at a file by the Audit credential. Vault access is an AppRole bound to the shipped automation policy.

rotate, download_key and migrate run for a seeded tenant; each leaves what the playbook promises, its audit events
carry AWX's job id and user, and no job event (what AWX stores and shows) holds a secret of the lab.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import uuid

import jinja2
import jinja2.meta
import pytest
import yaml

from tests.integration.test_migrate import secrets_of
from tests.lab import seed
from tests.support.ansible_run import REPO, VENV_BIN
from tests.support.awx import AWX_DIR, PROJECT, AwxJob, credential_type, survey, survey_answers


def automation_policy():
    with open(os.path.join(REPO, "roles", "vault_setup", "templates", "automation.hcl.j2")) as handle:
        environment = jinja2.Environment()
        environment.filters["bool"] = bool
        return environment.from_string(handle.read()).render(
            vault_setup_mounts={"vps": "vps", "smtp": "smtp", "dkim": "dkim"}, vault_setup_ssh_ca_enabled=False)


@pytest.fixture(scope="module")
def automation(lab):
    """An AppRole bound to the automation policy: (auth mount, role_id, secret_id)."""
    hvac = seed.vault(lab).hvac
    mount = "approle-%s" % uuid.uuid4().hex[:6]
    hvac.sys.enable_auth_method("approle", path=mount)
    hvac.sys.create_or_update_policy("pm-awx-%s" % mount, automation_policy())
    hvac.auth.approle.create_or_update_approle("automation", token_policies=["pm-awx-%s" % mount], token_ttl="1h",
                                               mount_point=mount)
    role_id = hvac.auth.approle.read_role_id("automation", mount_point=mount)["data"]["role_id"]
    secret_id = hvac.auth.approle.generate_secret_id("automation", mount_point=mount)["data"]["secret_id"]
    return mount, role_id, secret_id


@pytest.fixture()
def tenant(lab):
    made = seed.seed_tenant(lab)
    yield made
    for item in seed.instances(lab):
        if item["srvrname"].startswith("pm-%s-" % made.tenant_id):
            seed.hostwinds(lab, "terminate", serviceid=item["serviceid"])


def job_for(lab, automation, tmp_path, name, job_id, audit_file, dns=False, hostwinds=False):
    mount, role_id, secret_id = automation
    job = AwxJob(tmp_path, name, job_id=job_id)
    job.credential("vault_approle.yml", {"vault_addr": lab["vault"]["addr"], "auth_mount": mount, "role_id": role_id,
                                         "secret_id": secret_id})
    job.credential("audit.yml", {"audit_file": audit_file})
    if hostwinds:
        job.credential("hostwinds.yml", {"api_key": lab["hostwinds"]["api_key"], "api_url": lab["hostwinds"]["url"]})
    if dns:
        job.credential("dns_tsig.yml", {"server": lab["dns"]["address"], "port": str(lab["dns"]["port"]),
                                        "key_name": lab["dns"]["tsig_name"], "key_secret": lab["dns"]["tsig_secret"],
                                        "key_algorithm": lab["dns"]["tsig_algorithm"]})
    job.inventory({})  # the tenant's VPS is found from its Vault record
    return job


def read_events(path):
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def assert_no_secret_in_events(job, secrets):
    texts = job.event_texts()
    assert texts, "the job left no events"
    for value in secrets:
        for text in texts:
            assert value not in text


def test_rotate_download_key_and_migrate_run_as_awx_jobs(lab, automation, tenant, tmp_path):
    tid = tenant.tenant_id
    client = seed.vault(lab)
    audit_file = os.path.join(str(tmp_path), "audit.jsonl")
    before = client.read("vps", "%s/admin_ssh" % tid).data

    # rotate: survey tenant_id, secret ssh, both keys, force (the seeded keys are not due).
    rotate = job_for(lab, automation, tmp_path, "rotate", 201, audit_file)
    rotate.run("rotate.yml", survey_name="rotate", answers={"tenant_id": tid, "force": "true"},
               extra_vars={"penguinmails_python_interpreter": "/usr/bin/python3"})
    assert rotate.result.rc == 0, rotate.stdout()[-4000:]
    after = client.read("vps", "%s/admin_ssh" % tid).data
    assert after["fingerprint"] != before["fingerprint"] and after["installed_fingerprint"] == after["fingerprint"]
    login = seed.ssh_admin(lab, tid, tenant["old_vps"]["ip"], "id -u", str(tmp_path))
    assert login.returncode == 0 and login.stdout.strip() == "0"
    rotated = [e for e in read_events(audit_file) if e["action"] == "ssh_key_rotated" and e["tenantId"] == tid]
    assert {e["details"]["role"] for e in rotated} == {"admin", "tenant"}
    assert all(e["status"] == "success" and e["userId"] == "alice" and e["context"]["awx_job_id"] == "201" for e in rotated), rotated

    # download_key: the wrapping token goes to the survey's directory (0600), never to the job's events.
    downloads = os.path.join(str(tmp_path), "downloads")
    download = job_for(lab, automation, tmp_path, "download", 202, audit_file)
    download.run("download_key.yml", survey_name="download_key", answers={"tenant_id": tid, "download_dir": downloads})
    assert download.result.rc == 0, download.stdout()[-4000:]
    token_file = os.path.join(downloads, "%s_tenant.wrap-token" % tid)
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    with open(token_file) as handle:
        token = handle.read().strip()
    unwrapped = client.hvac.sys.unwrap(token)["data"]["data"]
    assert unwrapped["private_key"] == client.read("vps", "%s/tenant_ssh" % tid).data["private_key"]

    # migrate: survey tenant_id and reason; Hostwinds and the DNS TSIG key from their credentials.
    migrate = job_for(lab, automation, tmp_path, "migrate", 203, audit_file, dns=True, hostwinds=True)
    lab_vars = dict((key, value) for key, value in seed.lab_vars(lab, tenant).items() if not key.startswith("migrate_dns_"))
    lab_vars["migrate_dns_zone"] = seed.dns_zone(lab)
    migrate.run("migrate.yml", survey_name="migrate", answers={"tenant_id": tid, "reason": "upgrade"}, extra_vars=lab_vars)
    assert migrate.result.rc == 0, migrate.stdout()[-6000:]
    record = seed.read_record(lab, tid)
    # an upgrade keeps the old VPS (wiped); only a compromise destroys it by default
    assert record["vps_ip"] != tenant["old_vps"]["ip"] and len(seed.instances_named(lab, tenant["old_vps"]["name"])) == 1
    assert seed.dns_query(lab, tenant["mail_host"] + ".", "A") == [record["vps_ip"]]
    completed = [e for e in read_events(audit_file) if e["action"] == "vps_migration_completed" and e["tenantId"] == tid]
    assert len(completed) == 1 and completed[0]["context"]["awx_job_id"] == "203"
    assert completed[0]["userAgent"].endswith(" awx-job/203")  # the specification's userAgent: the client and the job

    # No job event holds a secret: tokens, the AppRole secret id, API and TSIG keys, passwords, every private key.
    secrets = secrets_of(lab, tenant) + [automation[2], token, lab["dns"]["tsig_secret"], lab["hostwinds"]["api_key"]]
    for job in (rotate, download, migrate):
        assert_no_secret_in_events(job, secrets)


def test_credential_types_inject_only_what_awx_allows():
    """AWX drops ANSIBLE_* and its blocklist from credential injectors; every type's fields feed its injectors."""
    for name in sorted(os.listdir(os.path.join(AWX_DIR, "credential_types"))):
        definition = credential_type(name)
        fields = {field["id"] for field in definition["inputs"]["fields"]}
        assert set(definition["inputs"].get("required", [])) <= fields, name
        for kind in ("env", "extra_vars", "file"):
            for variable, template in (definition["injectors"].get(kind) or {}).items():
                assert not variable.startswith("ANSIBLE_"), (name, variable)
                names = set(jinja2.meta.find_undeclared_variables(jinja2.Environment().parse(template))) - {"tower"}
                assert names <= fields, (name, variable, names - fields)
    with open(os.path.join(PROJECT, "ansible.cfg")) as handle:
        assert "callbacks_enabled = penguinmails.vps.audit" in handle.read()


def test_surveys_refuse_what_awx_refuses():
    spec = survey("migrate")
    assert survey_answers(spec, {"tenant_id": "acme", "reason": "compromise"}) == {"tenant_id": "acme", "reason": "compromise"}
    for answers, rule in (({"reason": "upgrade"}, "tenant_id is required"), ({"tenant_id": "x" * 65}, "1 to 64"),
                          ({"tenant_id": "acme", "reason": "boredom"}, "reason must be one of")):
        with pytest.raises(ValueError, match=rule):
            survey_answers(spec, answers)
    assert survey_answers(survey("rotate"), {"tenant_id": "acme"})["force"] == "false"


def playbook_text(path):
    """A playbook and the playbooks it imports."""
    with open(path) as handle:
        text = handle.read()
    for name in re.findall(r"import_playbook: ([a-z_]+\.yml)", text):
        text += playbook_text(os.path.join(os.path.dirname(path), name))
    return text


def test_configure_awx_passes_syntax_check_with_awx_awx_and_covers_every_template():
    """configure_awx.yml against the awx.awx collection of the ansible bundle; every template's playbook and survey
    exists and every survey variable is one its playbook reads."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.pathsep.join(
        [os.path.join(REPO, "collections"), os.path.join(os.path.dirname(os.path.dirname(VENV_BIN)), "lib",
                                                         "python%d.%d" % sys.version_info[:2], "site-packages")]))
    check = subprocess.run([os.path.join(VENV_BIN, "ansible-playbook"), "--syntax-check",
                            os.path.join(AWX_DIR, "configure_awx.yml")], capture_output=True, text=True, env=env,
                           timeout=300, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    with open(os.path.join(AWX_DIR, "configure_awx.yml")) as handle:
        play = yaml.safe_load(handle)[0]
    templates = play["vars"]["awx_job_templates"]
    assert {t["playbook"] for t in templates} == {"migrate.yml", "rotate.yml", "revoke.yml", "regenerate.yml",
                                                  "download_key.yml", "rotate_all.yml", "report.yml", "backup.yml"}
    for template in templates:
        with open(os.path.join(PROJECT, template["playbook"])) as handle:
            (imported,) = yaml.safe_load(handle)
        collection_playbook = imported["ansible.builtin.import_playbook"].split(".")[-1]
        spec = survey(template["survey"])
        path = os.path.join(REPO, "playbooks", collection_playbook + ".yml")
        if collection_playbook == "backup" and not os.path.exists(path):
            continue  # penguinmails.vps.backup comes with issue 13
        text = playbook_text(path)
        for question in spec["spec"]:
            assert question["variable"] in text, (template["playbook"], question["variable"])
    assert all(template.get("sliced") for template in templates if template["playbook"] in ("rotate_all.yml", "backup.yml"))
    assert play["vars"]["awx_sliced_vars"] == {"penguinmails_tenant_scope": "inventory",
                                               "penguinmails_inventory_connection": False}
