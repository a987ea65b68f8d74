# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""rotate_all as a sliced AWX job: 4 ansible-runner jobs at once over the 4 slices AWX makes of the inventory.

The lab: 60 sshd hosts (network namespaces) and 200 tenants (tenant i on host i % 60) under a private KV mount;
root on every host accepts exactly its tenants' Vault admin keys. The AWX inventory lists the 64 hosts (name,
ansible_host) and nothing else - no machine credential: the job template sets penguinmails_tenant_scope=inventory and
penguinmails_inventory_connection=false (docs/awx/configure_awx.yml). Each slice is laid out as AWX lays a job
(tests/support/awx.py): slice k gets the hosts [k-1::4] of the name-ordered list (AWX's get_script_data), the Vault
AppRole credential (automation policy) and the audit settings through the credential types' injectors, the audit
callback from the project's ansible.cfg. Then:

* every due tenant was rotated exactly once (its admin key, the one the invariant is about: two fingerprints in the KV history, the new one confirmed by
  its host), by the slice that holds its host, and the key generation of each slice was its own tenants' only;
* the slices' counts add up (rotated, skipped, failed, hosts updated), no slice failed, no CAS conflict anywhere;
* the reachability invariant holds on every host; the job events carry no secret.

Wall times, memory (PSS of the lab hosts and of the jobs' process trees) are printed (no timing assertion).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import jinja2
import pytest

from ansible_collections.penguinmails.vps.plugins.module_utils import keypair_store
from tests.support.ansible_run import REPO
from tests.support.awx import AwxJob, slice_hosts
from tests.support.fleet import Fleet

# 200 tenants over 60 hosts (tenant i on host i % 60: 20 hosts with four, 40 with three): the host step visits each
# host once for all its tenants (issue 20), so the extra tenants of a host cost little more than their Vault work.
HOSTS, TENANTS, SLICES = 60, 200, 4
FORKS = 16


def automation_policy(mount):
    """The shipped automation policy (roles/vault_setup) for the fleet's private mount."""
    with open(os.path.join(REPO, "roles", "vault_setup", "templates", "automation.hcl.j2")) as handle:
        environment = jinja2.Environment()
        environment.filters["bool"] = bool
        template = environment.from_string(handle.read())
    return template.render(vault_setup_mounts={"vps": mount, "smtp": "smtp", "dkim": "dkim"}, vault_setup_ssh_ca_enabled=False)


def approle(fleet, policy_text):
    """An AppRole bound to ``policy_text`` at a private auth mount; returns (mount, role_id, secret_id)."""
    hvac = fleet.client.hvac
    mount = "approle-%s" % uuid.uuid4().hex[:6]
    hvac.sys.enable_auth_method("approle", path=mount)
    name = "pm-%s" % mount
    hvac.sys.create_or_update_policy(name, policy_text)
    hvac.auth.approle.create_or_update_approle("automation", token_policies=[name], token_ttl="1h", mount_point=mount)
    role_id = hvac.auth.approle.read_role_id("automation", mount_point=mount)["data"]["role_id"]
    secret_id = hvac.auth.approle.generate_secret_id("automation", mount_point=mount)["data"]["secret_id"]
    return mount, role_id, secret_id


def pss_kb(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as handle:
            return next(int(line.split()[1]) for line in handle if line.startswith("Pss:"))
    except (OSError, StopIteration, ValueError):
        return 0


@pytest.fixture(scope="module")
def fleet(lab, tmp_path_factory):
    work = tmp_path_factory.mktemp("slicing")
    fleet = Fleet(lab, work)
    started = time.monotonic()
    try:
        fleet.create_hosts(HOSTS)
        fleet.seed_tenants(TENANTS, roles=("admin",))
        fleet.bootstrap()
        print("fleet: %d hosts, %d tenants in %.1fs" % (HOSTS, TENANTS, time.monotonic() - started))
        yield fleet
    finally:
        fleet.destroy()


def test_rotate_all_sliced_four_ways_rotates_each_tenant_once_in_the_slice_of_its_host(lab, fleet, tmp_path):
    mount, role_id, secret_id = approle(fleet, automation_policy(fleet.mount))
    audit_file = os.path.join(str(tmp_path), "audit.jsonl")
    inventory = dict((host["name"], {"ansible_host": host["ip"]}) for host in fleet.hosts)
    before = {(tenant, role): fleet.client.read(fleet.mount, "%s/%s_ssh" % (tenant, role)).data
              for tenant in fleet.tenants for role in ("admin",)}

    jobs = []
    for number in range(1, SLICES + 1):
        job = AwxJob(tmp_path, "slice%d" % number, job_id=100 + number)
        job.credential("vault_approle.yml", {"vault_addr": lab["vault"]["addr"], "role_id": role_id, "secret_id": secret_id,
                                             "auth_mount": mount})
        job.credential("audit.yml", {"audit_file": audit_file})
        job.inventory(inventory, slice_number=number, slice_count=SLICES)
        jobs.append(job)
    # The slices partition the hosts exactly as AWX does: round robin over the name-ordered list.
    names = sorted(inventory)
    assert [job.hosts for job in jobs] == [names[k::SLICES] for k in range(SLICES)]
    assert sorted(sum((job.hosts for job in jobs), [])) == names

    extra = {"penguinmails_tenant_scope": "inventory", "penguinmails_inventory_connection": False,
             "penguinmails_vault_vps_mount": fleet.mount, "penguinmails_python_interpreter": "/usr/bin/python3"}
    peak = {"jobs_pss_kb": 0}
    done = threading.Event()

    def sample():
        while not done.is_set():
            total = sum(pss_kb(pid) for pid in _job_pids(jobs))
            peak["jobs_pss_kb"] = max(peak["jobs_pss_kb"], total)
            done.wait(1.0)  # a sampling period, not a synchronisation

    def run(job):
        started = time.monotonic()
        job.run("rotate_all.yml", extra_vars=extra, survey_name="rotate_all", answers={"ssh_role": "admin"},
                forks=FORKS)
        return time.monotonic() - started

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=SLICES) as pool:
        walls = list(pool.map(run, jobs))
    total_wall = time.monotonic() - started
    done.set()
    sampler.join()
    hosts_memory = fleet.memory()
    print("slices: %s s each, %.1f s in all; peak PSS of the 4 jobs %.0f MiB; hosts %.0f MiB in %d processes"
          % (", ".join("%.1f" % wall for wall in walls), total_wall, peak["jobs_pss_kb"] / 1024.0,
             hosts_memory["pss_kb"] / 1024.0, hosts_memory["processes"]))

    for job in jobs:
        assert job.result.rc == 0 and job.result.status == "successful", job.stdout()[-4000:]

    # Each slice generated the keys of the tenants of its own hosts, and only those.
    owner = {}
    counts = []
    for job in jobs:
        (bulk,) = [event["event_data"]["res"] for event in job.events() if event.get("event") == "runner_on_ok"
                   and event["event_data"].get("task_action") == "penguinmails.vps.vault_ssh_bulk_rotate"]
        mine = sorted(tenant for tenant, host in fleet.tenants.items() if host["name"] in job.hosts)
        assert sorted(set(item["tenant_id"] for item in bulk["rotated"])) == mine
        assert bulk["failures"] == [] and bulk["tenants_considered"] == len(mine)
        for item in bulk["rotated"]:
            owner.setdefault(item["tenant_id"], set()).add(job.job_id)
        (line,) = [msg for msg in job.debug_messages() if isinstance(msg, list) and msg and str(msg[0]).startswith("rotated=")]
        counts.append(dict(part.split("=") for part in line[:4]))
    assert sorted(owner) == sorted(fleet.tenants) and all(len(slices) == 1 for slices in owner.values())
    # The counts of the slices add up to the whole.
    assert sum(int(c["rotated"]) for c in counts) == TENANTS
    assert sum(int(c["failed"]) for c in counts) == 0 and sum(int(c["skipped"]) for c in counts) == 0
    assert sum(int(c["hosts_updated"]) for c in counts) == HOSTS

    # Every key was rotated exactly once and its host confirmed the new one.
    for (tenant, role), old in before.items():
        path = "%s/%s_ssh" % (tenant, role)
        current = int(fleet.client.metadata(fleet.mount, path)["current_version"])
        fingerprints = []
        for version in range(1, current + 1):
            fingerprint = fleet.client.read(fleet.mount, path, version=version).data["fingerprint"]
            if not fingerprints or fingerprints[-1] != fingerprint:
                fingerprints.append(fingerprint)
        latest = fleet.client.read(fleet.mount, path).data
        assert fingerprints[0] == old["fingerprint"] and len(fingerprints) == 2, (tenant, role, fingerprints)
        assert latest["installed_fingerprint"] == latest["fingerprint"] and not latest.get("fallback_private_key")
    assert fleet.invariant_violations() == []

    # The audit: one bulk_rotation_completed per slice, whose counts add up; one ssh_key_rotated per key.
    with open(audit_file) as handle:
        events = [json.loads(line) for line in handle if line.strip()]
    bulk_events = [event for event in events if event["action"] == "bulk_rotation_completed"]
    assert len(bulk_events) == SLICES and sum(event["details"]["rotated_count"] for event in bulk_events) == TENANTS
    assert all(event["status"] == "success" and event["context"].get("awx_job_id") for event in bulk_events)
    rotated_events = [event for event in events if event["action"] == "ssh_key_rotated"]
    assert sorted((e["tenantId"], e["details"]["role"]) for e in rotated_events) == sorted(before)
    assert all(event["status"] == "success" for event in rotated_events)

    # One Vault login per slice, not one per task or host (penguinmails.vps.vault_session), each token revoked at the end.
    audit = _vault_audit(lab)
    paths = [entry["request"]["path"] for entry in audit if entry.get("type") == "request"]
    assert paths.count("auth/%s/login" % mount) == SLICES, [p for p in paths if p.startswith("auth/")]
    logged_in = set(entry["auth"]["accessor"] for entry in audit if entry.get("type") == "response" and not entry.get("error")
                    and entry["request"]["path"] == "auth/%s/login" % mount)
    revoked = set(entry["auth"]["accessor"] for entry in audit if entry.get("type") == "response" and not entry.get("error")
                  and entry["request"]["path"] == "auth/token/revoke-self")
    assert len(logged_in) == SLICES and logged_in <= revoked, (logged_in, revoked)

    # No CAS conflict reported anywhere, and no secret in any job event.
    secrets = [secret_id, lab["vault"]["token"]] + _private_key_lines(fleet)
    for job in jobs:
        for text in job.event_texts():
            assert "check-and-set conflict" not in text
            for value in secrets:
                assert value not in text


def _vault_audit(lab):
    """The lab OpenBao's audit log (file device), entry by entry."""
    with open(lab["vault"]["audit_log"]) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def test_slices_follow_awx_order_by_name():
    """AWX orders by name before slicing: slice 1 of 3 of h10, h2, h1, h3 is h1, h3 (not h10, h3)."""
    assert slice_hosts(["h10", "h2", "h1", "h3"], 1, 3) == ["h1", "h3"]
    assert slice_hosts(["h10", "h2", "h1", "h3"], 2, 3) == ["h10"]
    assert slice_hosts(["h10", "h2", "h1", "h3"], 3, 3) == ["h2"]
    assert slice_hosts(["b", "a"], 1, 1) == ["a", "b"]


def _job_pids(jobs):
    """The processes of the jobs: every process whose command line names a job's private data dir (ansible-playbook
    and its forks, ssh with the job's ControlPath dir, modules from the job's local temp dir)."""
    marks = [job.private_data_dir.encode() for job in jobs]
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/cmdline" % entry, "rb") as handle:
                    cmdline = handle.read()
            except OSError:
                continue
            if any(mark in cmdline for mark in marks):
                pids.append(int(entry))
    return pids


def _private_key_lines(fleet):
    """A line of the private part of every key any version of the fleet's records held."""
    lines = set()
    for tenant in fleet.tenants:
        for role in ("admin",):
            path = "%s/%s_ssh" % (tenant, role)
            for version in range(1, int(fleet.client.metadata(fleet.mount, path)["current_version"]) + 1):
                data = fleet.client.read(fleet.mount, path, version=version).data
                for field in keypair_store.PRIVATE_FIELDS:
                    body = [line for line in (data.get(field) or "").splitlines() if line and "PRIVATE KEY" not in line]
                    lines.update(body[2:-1])
    return sorted(line for line in lines if len(line) > 20 and not re.fullmatch(r"[A]+=*", line))
