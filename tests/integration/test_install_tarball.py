# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection as a user gets it (issue 14): the tarball, installed with ansible-galaxy, on ansible-core alone.

* ``ansible-galaxy collection build`` of this checkout; the tarball's file list is checked against an
  allow-list (what a user needs), every tracked file a user needs is in it, and every document it ships
  links only to files it ships.
* For the lowest supported ansible-core (2.16) and the current one (2.19): a venv with ONLY that
  ansible-core and the installed collection's ``requirements.txt`` (cached under ``.build/install-venvs``,
  keyed by the Python, the ansible-core spec and the requirements' hash), then the README's quick-start
  step by step, from a project directory outside the checkout with its own ``HOME``, by FQCN, against a
  private lab (OpenBao, BIND9, the Hostwinds simulator, lab hosts): install the tarball, bootstrap Vault with
  the ``vault_setup`` role, the audit callback on, a first ``rotate``, then ``download_key``, ``report``,
  ``migrate`` and ``audit_verify``. No other collection is installed, so a task of another collection or a
  library missing from ``requirements.txt`` fails the run.
* ``recover_smtp`` and ``rotate_all`` run as well. No run prints a warning, and nothing is written inside the
  installed collection
  (``ansible-galaxy collection verify --offline`` and a listing before/after).

A private lab per ansible-core version: ``vault_setup`` turns on ``cas_required`` for the KV mounts, which must
not leak into the session's shared lab.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request

import pytest
import yaml

from tests.lab import lab as lab_core
from tests.lab import seed
from tests.lab.fixtures import Lab, make_state_dir
from tests.support.ansible_run import REPO, VENV_BIN

NAMESPACE, NAME = "penguinmails", "vps"
CORES = {"2.16": "ansible-core==2.16.*", "2.19": "ansible-core==2.19.*"}
VENV_CACHE = os.path.join(REPO, ".build", "install-venvs")
BASE_PYTHON = getattr(sys, "_base_executable", None) or sys.executable

# What a user of the collection needs, and nothing else ("*" stays within one directory).
ALLOWED = [
    "MANIFEST.json", "FILES.json", "README.md", "LICENSE", "CHANGELOG.md", "requirements.txt", "bindep.txt",
    "changelogs/changelog.yaml",
    "meta/runtime.yml", "meta/execution-environment.yml",
    "docs/*.md", "docs/audit-event.schema.json", "docs/awx/*.yml", "docs/awx/credential_types/*.yml", "docs/awx/surveys/*.yml",
    # the AWX wrapper project (docs/awx.md): a playbook per job template, its ansible.cfg and collection pin
    "docs/awx/project/*.yml", "docs/awx/project/ansible.cfg", "docs/awx/project/collections/requirements.yml",
    "playbooks/*.yml", "playbooks/tasks/*.yml", "playbooks/tasks/*/*.yml", "playbooks/templates/*.j2",
    "plugins/action/*.py", "plugins/callback/*.py", "plugins/doc_fragments/*.py", "plugins/filter/*.py",
    "plugins/filter/*.yml", "plugins/lookup/*.py", "plugins/module_utils/*.py", "plugins/modules/*.py",
    "plugins/test/*.py", "plugins/test/*.yml",
    "roles/*/README.md", "roles/*/defaults/main.yml", "roles/*/handlers/main.yml", "roles/*/meta/*.yml",
    "roles/*/tasks/*.yml", "roles/*/templates/*.j2", "roles/*/templates/*/*.j2", "roles/*/vars/main.yml",
    "roles/*/files/*",
]
# Kept in the repository on purpose (see build_ignore in galaxy.yml): tooling, tests, the lab, the benchmarks.
NOT_SHIPPED = ["Makefile", "ansible.cfg", "requirements-dev.txt", ".ansible-lint", ".gitignore", "galaxy.yml",
               "docs/lab.md", "docs/benchmarks.md", "changelogs/config.yaml", "changelogs/fragments/*", ".ci/*",
               "bench/*", "tests/*"]


def _glob_re(pattern):
    parts = [".*" if part == "**" else re.escape(part).replace(r"\*", "[^/]*") for part in pattern.split("/")]
    return re.compile("/".join(parts) + r"\Z")


def matches(path, patterns):
    return any(_glob_re(pattern).match(path) for pattern in patterns)


def run(cmd, env=None, cwd=None, timeout=900):
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)


# ---------------------------------------------------------------------------------------------------------
# The tarball
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    out = tmp_path_factory.mktemp("tarball")
    proc = run([os.path.join(VENV_BIN, "ansible-galaxy"), "collection", "build", "--output-path", str(out), REPO],
               env=dict(os.environ, ANSIBLE_NOCOLOR="1"), cwd=str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [name] = [item for item in os.listdir(str(out)) if item.endswith(".tar.gz")]
    path = os.path.join(str(out), name)
    with tarfile.open(path) as archive:
        members = {member.name: member for member in archive.getmembers()}
        manifest = json.load(archive.extractfile("MANIFEST.json"))
        requirements = archive.extractfile("requirements.txt").read()
    files = sorted(name for name, member in members.items() if member.isfile())
    return {"path": path, "files": files, "manifest": manifest, "requirements": requirements}


def test_tarball_holds_only_what_a_user_needs(tarball):
    files = tarball["files"]
    unexpected = [path for path in files if not matches(path, ALLOWED)]
    assert not unexpected, "the tarball ships files a user does not need: %s" % unexpected
    shipped_but_ignored = [path for path in files if matches(path, NOT_SHIPPED)]
    assert not shipped_but_ignored, shipped_but_ignored
    assert not [path for path in files if "/reports/" in path or path.endswith((".pyc", ".tar.gz"))]

    # Everything of the collection that git tracks and a user needs is in it.
    tracked = run(["git", "ls-files"], cwd=REPO).stdout.split()
    missing = [path for path in tracked if matches(path, ALLOWED) and not matches(path, NOT_SHIPPED)
               and os.path.exists(os.path.join(REPO, path)) and path not in files]
    assert not missing, "tracked files missing from the tarball: %s" % missing
    for needed in ("README.md", "LICENSE", "CHANGELOG.md", "requirements.txt", "bindep.txt", "meta/runtime.yml",
                   "meta/execution-environment.yml", "changelogs/changelog.yaml"):
        assert needed in files, needed

    info = tarball["manifest"]["collection_info"]
    assert (info["namespace"], info["name"]) == (NAMESPACE, NAME)
    assert info["dependencies"] == {}, "a collection dependency cannot be installed here (no Galaxy): %s" % info["dependencies"]


def test_shipped_documents_link_only_to_shipped_files(tarball):
    """The README and the docs in the tarball point to files that are in it (or to the repository by URL),
    and no shipped file cites the repository's DESIGN.md."""
    files = set(tarball["files"])
    problems = []
    with tarfile.open(tarball["path"]) as archive:
        for path in sorted(files):
            if not path.endswith((".md", ".yml", ".py", ".j2")) or path == "CHANGELOG.md" or path.startswith("changelogs/"):
                continue
            text = archive.extractfile(path).read().decode("utf-8", "replace")
            if "DESIGN.md" in text:
                problems.append("%s cites DESIGN.md, which is not shipped" % path)
            for cited in sorted(set(re.findall(r"\bdocs/[A-Za-z0-9_./-]*[A-Za-z0-9_-]\.(?:md|yml)\b", text))):
                # The README names the repository-only docs of the lab and the benchmarks as such.
                if cited not in files and not (path == "README.md" and matches(cited, NOT_SHIPPED)):
                    problems.append("%s cites %s, which is not shipped" % (path, cited))
            if path.endswith(".md"):
                base = os.path.dirname(path)
                for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
                    if re.match(r"[a-z]+://|mailto:", target):
                        continue
                    resolved = os.path.normpath(os.path.join(base, target))
                    if resolved not in files and not any(name.startswith(resolved + "/") for name in files):
                        problems.append("%s links to %s, which is not shipped" % (path, target))
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------------------------------------
# A venv with only ansible-core and the collection's requirements.txt
# ---------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _locked(path):
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def user_venv(core_spec, requirements):
    """The venv `python3 -m venv venv && venv/bin/pip install ansible-core -r requirements.txt` makes (cached)."""
    python_version = run([BASE_PYTHON, "-c", "import sys; print(sys.version)"]).stdout.strip()
    key = hashlib.sha256(b"\0".join([python_version.encode(), core_spec.encode(), requirements])).hexdigest()[:16]
    path = os.path.join(VENV_CACHE, "%s-%s" % (core_spec.split("==")[1].replace("*", "x"), key))
    os.makedirs(VENV_CACHE, exist_ok=True)
    with _locked(path + ".lock"):
        if not os.path.exists(os.path.join(path, ".complete")):
            shutil.rmtree(path, ignore_errors=True)
            proc = run([BASE_PYTHON, "-m", "venv", path])
            assert proc.returncode == 0, proc.stderr
            req_file = path + ".requirements.txt"
            with open(req_file, "wb") as handle:
                handle.write(requirements)
            proc = run([os.path.join(path, "bin", "pip"), "install", "-q", core_spec, "-r", req_file])
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
            with open(os.path.join(path, ".complete"), "w") as handle:
                handle.write(core_spec + "\n")
    return path


# ---------------------------------------------------------------------------------------------------------
# The quick-start of the README, step by step
# ---------------------------------------------------------------------------------------------------------
PROJECT_CFG = """\
[defaults]
collections_path = ./collections
inventory = ./inventory.ini
callbacks_enabled = penguinmails.vps.audit
"""
PROJECT_INVENTORY = """\
localhost ansible_connection=local ansible_python_interpreter="{{ ansible_playbook_python }}"
"""
BOOTSTRAP_PLAYBOOK = """\
- name: Bootstrap Vault for penguinmails.vps
  hosts: localhost
  gather_facts: false
  roles:
    - role: penguinmails.vps.vault_setup
"""


class Project(object):
    """A user's project directory outside the checkout: its ansible.cfg, inventory, HOME and venv."""

    def __init__(self, root, venv, lab, log):
        self.root, self.venv, self.lab, self.log = root, venv, lab, log
        self.home = os.path.join(root, "home")
        os.makedirs(self.home, mode=0o700)
        self.outputs = []

    def env(self):
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("ANSIBLE_", "VAULT_", "HOSTWINDS_", "PENGUINMAILS_", "PYTHON", "VIRTUAL_ENV"))}
        path = [item for item in os.environ.get("PATH", "").split(os.pathsep)
                if item and os.path.realpath(item) != os.path.realpath(VENV_BIN)]
        env.update(self.lab.env())
        env.pop(lab_core.STATE_ENV, None)
        env.update(HOME=self.home, PATH=os.pathsep.join([os.path.join(self.venv, "bin")] + path), ANSIBLE_NOCOLOR="1")
        return env

    def run(self, *cmd, **kwargs):
        argv = [os.path.join(self.venv, "bin", cmd[0])] + list(cmd[1:])
        started = time.monotonic()
        proc = run(argv, env=self.env(), cwd=self.root, timeout=kwargs.get("timeout", 900))
        output = proc.stdout + proc.stderr
        self.outputs.append((" ".join(cmd[:3]), round(time.monotonic() - started, 1), output))
        with open(self.log, "a") as log:  # in pytest's tmp_path, for a look after a failure
            log.write("$ %s\n%s\n" % (" ".join(cmd), output))
        if kwargs.get("expect_rc", 0) is not None:
            assert proc.returncode == kwargs.get("expect_rc", 0), "%s\n%s" % (" ".join(cmd), output[-6000:])
        assert "Traceback" not in output, output[-6000:]
        warnings = [line for line in output.splitlines() if ("[WARNING]" in line or "[DEPRECATION WARNING]" in line)
                    and "no alert of this run can reach anyone" not in line]  # meant: this project sets no alert sink
        assert not warnings, "%s printed warnings:\n%s" % (" ".join(cmd), "\n".join(warnings))
        return proc

    def playbook(self, name, *extra):
        args = []
        for item in extra:
            args += ["-e", item]
        return self.run("ansible-playbook", name, *args)

    @property
    def collection(self):
        return os.path.join(self.root, "collections", "ansible_collections", NAMESPACE, NAME)


def listing(root):
    """Every file and directory under ``root`` with its size and content hash (Python's own caches aside)."""
    found = {}
    for base, dirs, names in os.walk(root):
        dirs[:] = [item for item in dirs if item != "__pycache__"]
        for item in dirs:
            found[os.path.relpath(os.path.join(base, item), root) + "/"] = None
        for item in names:
            full = os.path.join(base, item)
            with open(full, "rb") as handle:
                found[os.path.relpath(full, root)] = hashlib.sha256(handle.read()).hexdigest()
    return found


@pytest.fixture()
def private_lab():
    state_dir = make_state_dir()
    try:
        yield Lab(lab_core.up(state_dir, owner_pid=os.getpid()))
    finally:
        lab_core.down(state_dir)


@pytest.mark.parametrize("core", sorted(CORES))
def test_quick_start_from_the_tarball(core, tarball, private_lab, tmp_path, request):
    lab = private_lab
    started = time.monotonic()
    venv = user_venv(CORES[core], tarball["requirements"])
    venv_seconds = time.monotonic() - started
    # A short path, like a user's: ssh's ControlPath (~/.ansible/cp/...) must fit a Unix socket path.
    root = tempfile.mkdtemp(prefix="pm-qs-")
    request.addfinalizer(lambda: shutil.rmtree(root, ignore_errors=True))
    assert not os.path.realpath(root).startswith(os.path.realpath(REPO) + os.sep)
    project = Project(root, venv, lab, log=str(tmp_path / "outputs.log"))

    # The venv holds ansible-core of that line and the collection's requirements, nothing else.
    probe = ("import ansible, importlib.metadata as m; print(ansible.__version__); "
             "print(' '.join(sorted(d.metadata['Name'].lower() for d in m.distributions())))")
    version, installed = project.run("python", "-c", probe).stdout.split("\n")[:2]
    assert version.startswith(core + "."), version
    assert "ansible-core" in installed.split() and "ansible" not in installed.split(), installed

    # A tenant the operator already has: keys, SMTP credentials, DKIM key and record in Vault, its VPS running Mailu.
    tenant = seed.seed_tenant(lab)
    tid = tenant.tenant_id

    # 1. Install the tarball into the project (ansible.cfg: collections_path, inventory, the audit callback).
    shutil.copy(tarball["path"], root)
    for name, text in (("ansible.cfg", PROJECT_CFG), ("inventory.ini", PROJECT_INVENTORY),
                       ("bootstrap_vault.yml", BOOTSTRAP_PLAYBOOK)):
        with open(os.path.join(root, name), "w") as handle:
            handle.write(text)
    project.run("ansible-galaxy", "collection", "install", os.path.basename(tarball["path"]))
    listed = project.run("ansible-galaxy", "collection", "list").stdout
    # Only the collection (ansible-core 2.19 lists its own internal ansible._protomatter too).
    others = [name for name in re.findall(r"^([a-z_]+\.[a-z_]+)\s+\d", listed, re.M) if not name.startswith("ansible.")]
    assert others == ["%s.%s" % (NAMESPACE, NAME)], listed
    # 2. pip install -r of the installed requirements.txt: the venv above was made from exactly this file.
    with open(os.path.join(project.collection, "requirements.txt"), "rb") as handle:
        assert handle.read() == tarball["requirements"]
    # The EE metadata leads ansible-builder to the same requirements (its introspection, as `ansible-builder build` does).
    introspect = run([os.path.join(VENV_BIN, "ansible-builder"), "introspect", os.path.join(root, "collections")])
    assert introspect.returncode == 0, introspect.stderr
    wanted = sorted(line.split("#")[0].strip() for line in tarball["requirements"].decode().splitlines()
                    if line.split("#")[0].strip())
    found = yaml.safe_load(introspect.stdout)
    assert sorted(item.split("#")[0].strip() for item in found["python"]) == wanted, introspect.stdout
    assert "openssh-clients [platform:rpm]" in [item.split("#")[0].strip() for item in found["system"]], introspect.stdout
    before = listing(project.collection)

    # 3. Bootstrap Vault with the vault_setup role (mounts, policies, auth; its idempotence is test_vault_policies').
    project.run("ansible-playbook", "bootstrap_vault.yml")
    mounts = lab_api(lab, "GET", "/v1/sys/mounts")
    assert mounts["vps/"]["options"]["version"] == "2"
    assert "automation" in lab_api(lab, "LIST", "/v1/sys/policies/acl")["keys"]

    # 4. A first rotation (the tenant's keys are new, so force=true), with the audit callback on.
    client = seed.vault(lab)
    old_admin = client.read("vps", "%s/admin_ssh" % tid).data["fingerprint"]
    # The tenant is told by mail, through the lab's relay: its own VPS (port 25, no TLS for the lab).
    relay = ["penguinmails_notify_smtp_host=%s" % tenant["old_vps"]["ip"], "penguinmails_notify_smtp_port=25",
             "penguinmails_notify_security=none"]
    project.playbook("penguinmails.vps.rotate", "tenant_id=%s" % tid, "force=true", *relay)
    admin = client.read("vps", "%s/admin_ssh" % tid).data
    assert admin["fingerprint"] != old_admin and admin["key_type"] == "ed25519"
    login = seed.ssh_admin(lab, tid, tenant["old_vps"]["ip"], "id -u", str(tmp_path))
    assert login.returncode == 0 and login.stdout.strip() == "0", login.stderr

    # 5. The tenant's key, once, as a wrapping token in ~/penguinmails-downloads (0600).
    project.playbook("penguinmails.vps.download_key", "tenant_id=%s" % tid)
    token_file = os.path.join(project.home, "penguinmails-downloads", "%s_tenant.wrap-token" % tid)
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    with open(token_file) as handle:
        unwrapped = lab_api(lab, "POST", "/v1/sys/wrapping/unwrap", token=handle.read().strip())
    assert unwrapped["data"]["public_key"] == client.read("vps", "%s/tenant_ssh" % tid).data["public_key"]

    # 6. The key-health report, into ~/penguinmails-reports by default.
    project.playbook("penguinmails.vps.report")
    with open(os.path.join(project.home, "penguinmails-reports", "key-health.md")) as handle:
        assert tid in handle.read()
    assert os.path.isfile(os.path.join(project.home, "penguinmails-reports", "key-health.html"))

    # 7. A whole migration (the lab's DNS, simulator plan and Mailu commands as an extra-vars file, 0600).
    vars_file = os.path.join(root, "lab-vars.json")
    values = seed.lab_vars(lab, tenant)
    values["migrate_ssh_key_tmpdir"] = root
    fd = os.open(vars_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(values, handle)
    project.playbook("penguinmails.vps.migrate", "tenant_id=%s" % tid, "reason=compromise", "@%s" % vars_file)
    record = seed.read_record(lab, tid)
    assert record["previous_vps_ip"] == tenant["old_vps"]["ip"] and record["vps_ip"] != tenant["old_vps"]["ip"]
    assert seed.dns_query(lab, tenant["mail_host"] + ".", "A") == [record["vps_ip"]]
    assert seed.instances_named(lab, tenant["old_vps"]["name"]) == []

    # The other scheduled and on-demand jobs run as cleanly: the Mailu admin account restored from Vault on the new
    # VPS, and the daily rotation (nothing is due), without a warning (no host-pattern or variable-storage noise).
    project.playbook("penguinmails.vps.recover_smtp", "tenant_id=%s" % tid, "@%s" % vars_file)
    daily = project.playbook("penguinmails.vps.rotate_all").stdout
    assert "rotated=0" in daily and "failed=0" in daily, daily[-3000:]

    # 8. The audit trail of every run above, verified (~/.ansible/penguinmails/audit.jsonl, the callback's default).
    audit_file = os.path.join(project.home, ".ansible", "penguinmails", "audit.jsonl")
    events = [json.loads(line) for line in open(audit_file) if line.strip()]
    actions = {event["action"] for event in events if event.get("tenantId") == tid}
    assert {"ssh_key_rotated", "ssh_key_download", "vps_migration_completed"} <= actions, actions
    assert all(event["status"] == "success" for event in events if event["action"] == "tenant_notified"), events
    verified = project.playbook("penguinmails.vps.audit_verify").stdout
    assert "OK: %d events, chain intact" % len(events) in verified, verified[-2000:]

    # Nothing was written inside the installed collection.
    assert listing(project.collection) == before
    # ansible-galaxy verify (FILES.json): the only extras allowed are Python's own bytecode caches, which the
    # interpreter writes when ansible-core imports the controller-side plugins (action, callback, lookup, filter).
    verify = project.run("ansible-galaxy", "collection", "verify", "--offline", "%s.%s" % (NAMESPACE, NAME), expect_rc=None)
    modified = re.findall(r"^\s{4}(\S.*)$", verify.stdout, re.M)
    assert [path for path in modified if "__pycache__" not in path.split("/")] == [], verify.stdout
    assert verify.returncode == (1 if modified else 0), verify.stdout + verify.stderr

    timings = ", ".join("%s %.1fs" % (what, seconds) for what, seconds, _output in project.outputs)
    print("\nansible-core %s: venv %.1fs; %s; total %.1fs" % (version, venv_seconds, timings, time.monotonic() - started))


def lab_api(lab, method, path, token=None, payload=None):
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(lab["vault"]["addr"] + path, data=data, method=method)
    request.add_header("X-Vault-Token", token or lab["vault"]["token"])
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.loads(response.read() or b"{}")
    return body.get("data", body)
