# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""penguinmails.vps.hostwind_vps through ansible-playbook, against the lab's Hostwinds simulator
and real lab hosts (network namespaces with sshd)."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.lab.hostwinds_sim import private_simulator
from tests.support.ansible_run import run_playbook

API_KEY = "hw-integration-key-5f3c2a9e"

PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: VPS
      penguinmails.vps.hostwind_vps:
{options}
      register: vps
    - name: Result
      ansible.builtin.debug:
        msg: "RESULT={{{{ vps | to_json }}}}"
"""


@pytest.fixture(scope="module")
def lab_key(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostwinds-key")
    key = base / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return str(key)


@pytest.fixture(scope="module")
def sim(tmp_path_factory, lab_key):
    base = tmp_path_factory.mktemp("hostwinds-integration")
    with private_simulator(base, API_KEY, lab_key + ".pub") as sim_process:
        yield sim_process


@pytest.fixture()
def hwsim(sim):
    sim.clean_slate()
    yield sim
    sim.clean_slate()


def vps(sim, tmp_path, args=(), env_key=API_KEY, **options):
    """Run one hostwind_vps task; return (CompletedProcess, module result or None)."""
    options.setdefault("api_url", sim.api_url)
    lines = "\n".join("        %s: %s" % (key, json.dumps(value)) for key, value in options.items())
    env = {"HOSTWINDS_API_KEY": env_key} if env_key else {}
    proc = run_playbook(PLAY.format(options=lines), env=env, args=args, tmp_path=tmp_path)
    match = re.search(r'"msg": "RESULT=(.*)"\s*$', proc.stdout, re.M)
    result = json.loads(json.loads('"%s"' % match.group(1))) if match else None
    return proc, result


def failure(proc):
    """The msg of the failed task, from the default callback's output."""
    match = re.search(r"FAILED! => (\{.*\})\s*$", proc.stdout, re.M | re.S)
    assert match, proc.stdout + proc.stderr
    return json.loads(match.group(1))


def netns_names():
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in listing.splitlines() if line.strip()]


NEW = dict(plan="1", location="2", image="debian-12")


def test_create_twice_gives_one_instance_reachable_by_ssh(hwsim, tmp_path, lab_key):
    first, created = vps(hwsim, tmp_path, name="pm-t1-1", wait_timeout=120, **NEW)
    assert first.returncode == 0, first.stdout + first.stderr
    assert created["changed"] is True and created["status"] == "active" and created["main_ip"]
    second, again = vps(hwsim, tmp_path, name="pm-t1-1", wait_timeout=120, **NEW)
    assert second.returncode == 0, second.stdout + second.stderr
    assert again["changed"] is False and again["serviceid"] == created["serviceid"]
    assert again["main_ip"] == created["main_ip"]
    assert hwsim.creates("pm-t1-1") == 1 and len(hwsim.instances_named("pm-t1-1")) == 1
    login = subprocess.run(
        ["ssh", "-i", lab_key, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "ConnectTimeout=20", "root@%s" % created["main_ip"], "id -u"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert login.returncode == 0, login.stderr
    assert login.stdout.strip() == "0"


def test_wrong_api_key_fails_clearly_and_changes_nothing(hwsim, tmp_path):
    wrong = "not-the-key-8d7e6f"
    proc = vps(hwsim, tmp_path, env_key=wrong, name="pm-t2-1", **NEW)[0]
    assert proc.returncode != 0
    result = failure(proc)
    assert "refused the API key" in result["msg"] and "\n" not in result["msg"]
    assert wrong not in proc.stdout + proc.stderr
    assert hwsim.instances() == [] and hwsim.calls()["add_instance"] == {}


def test_absent_terminates_and_destroys_the_host(hwsim, tmp_path):
    proc, created = vps(hwsim, tmp_path, name="pm-t3-1", wait_timeout=120, **NEW)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lab_host = hwsim.instances_named("pm-t3-1")[0]["lab_host"]
    netns = [host["netns"] for host in hwsim.hosts().list_hosts(hwsim.hosts_state_dir) if host["name"] == lab_host]
    assert len(netns) == 1 and netns[0] in netns_names()
    proc, gone = vps(hwsim, tmp_path, name="pm-t3-1", state="absent")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert gone["changed"] is True and gone["status"] == "absent" and gone["serviceid"] is None
    assert hwsim.instances_named("pm-t3-1") == []
    assert netns[0] not in netns_names()
    proc, again = vps(hwsim, tmp_path, name="pm-t3-1", state="absent")
    assert proc.returncode == 0 and again["changed"] is False


def test_rerun_after_wait_timeout_creates_nothing_new(hwsim, tmp_path):
    hwsim.faults(hold_builds=True)
    proc = vps(hwsim, tmp_path, name="pm-t4-1", wait_timeout=2, **NEW)[0]
    assert proc.returncode != 0
    result = failure(proc)
    assert "not active after 2s" in result["msg"] and "rerun" in result["msg"]
    assert result["changed"] is True and result["serviceid"]
    proc = vps(hwsim, tmp_path, name="pm-t4-1", wait_timeout=2, **NEW)[0]
    assert proc.returncode != 0 and failure(proc)["changed"] is False
    assert hwsim.creates("pm-t4-1") == 1
    hwsim.faults(hold_builds=False)
    proc, done = vps(hwsim, tmp_path, name="pm-t4-1", wait_timeout=120, **NEW)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert done["changed"] is False and done["status"] == "active" and done["main_ip"]
    assert done["serviceid"] == result["serviceid"]
    assert hwsim.creates("pm-t4-1") == 1 and len(hwsim.instances_named("pm-t4-1")) == 1


def test_lost_add_instance_answer_is_not_repeated(hwsim, tmp_path):
    hwsim.faults(drop_add_instance_response=1)
    proc, created = vps(hwsim, tmp_path, name="pm-t5-1", wait_timeout=120, **NEW)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert created["changed"] is True and created["status"] == "active"
    assert hwsim.creates("pm-t5-1") == 1


def test_check_mode_creates_nothing_and_diff_shows_the_change(hwsim, tmp_path):
    proc, result = vps(hwsim, tmp_path, args=("--check", "--diff"), name="pm-t6-1", **NEW)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert result["changed"] is True and result["serviceid"] is None
    assert '-    "state": "absent"' in proc.stdout and '+    "state": "present"' in proc.stdout
    assert hwsim.instances() == [] and hwsim.calls()["add_instance"] == {}
    vps(hwsim, tmp_path, name="pm-t6-1", wait_timeout=120, **NEW)
    proc, result = vps(hwsim, tmp_path, args=("--check",), name="pm-t6-1", state="absent")
    assert proc.returncode == 0 and result["changed"] is True
    assert len(hwsim.instances_named("pm-t6-1")) == 1
    assert hwsim.calls()["actions"].get("terminate", 0) == 0


def test_two_instances_with_the_name_fail_without_guessing(hwsim, tmp_path):
    hwsim.faults(hold_builds=True)
    hwsim.api("add_instance", template="debian-12", rid="1", location_id="2", srvrname="pm-t7-1", qty="2")
    sids = [inst["serviceid"] for inst in hwsim.instances_named("pm-t7-1")]
    proc = vps(hwsim, tmp_path, name="pm-t7-1", state="absent")[0]
    assert proc.returncode != 0
    message = failure(proc)["msg"]
    assert "2 Hostwinds instances are named 'pm-t7-1'" in message and all(str(sid) in message for sid in sids)
    assert len(hwsim.instances_named("pm-t7-1")) == 2


def test_power_states(hwsim, tmp_path):
    proc, started = vps(hwsim, tmp_path, name="pm-t8-1", state="started", wait_timeout=120, **NEW)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert started["changed"] is True and started["instance"]["vm_state"] == "active"
    proc, stopped = vps(hwsim, tmp_path, name="pm-t8-1", state="stopped")
    assert proc.returncode == 0 and stopped["changed"] is True and stopped["instance"]["vm_state"] == "stopped"
    proc, again = vps(hwsim, tmp_path, name="pm-t8-1", state="stopped")
    assert proc.returncode == 0 and again["changed"] is False
    proc, booted = vps(hwsim, tmp_path, name="pm-t8-1", state="started")
    assert proc.returncode == 0 and booted["changed"] is True and booted["instance"]["vm_state"] == "active"
    proc, rebooted = vps(hwsim, tmp_path, name="pm-t8-1", state="rebooted")
    assert proc.returncode == 0 and rebooted["changed"] is True
    assert hwsim.calls()["actions"]["reboot"] == 1 and hwsim.creates("pm-t8-1") == 1


def test_bad_input_fails_clearly_and_changes_nothing(hwsim, tmp_path):
    proc = vps(hwsim, tmp_path, name="bad name;rm")[0]
    assert proc.returncode != 0 and "invalid server name" in failure(proc)["msg"]
    proc = vps(hwsim, tmp_path, name="pm-t9-1", plan="1")[0]
    assert proc.returncode != 0 and "to create it set location, image" in failure(proc)["msg"]
    proc = vps(hwsim, tmp_path, args=("--check",), name="pm-t9-1", plan="1")[0]
    assert proc.returncode != 0 and "to create it set location, image" in failure(proc)["msg"]
    proc = vps(hwsim, tmp_path, name="pm-t9-1", state="stopped")[0]
    assert proc.returncode != 0 and "no instance of that name exists" in failure(proc)["msg"]
    proc = vps(hwsim, tmp_path, env_key=None, name="pm-t9-1", **NEW)[0]
    assert proc.returncode != 0 and "HOSTWINDS_API_KEY" in failure(proc)["msg"]
    assert hwsim.instances() == [] and hwsim.calls()["add_instance"] == {}


def test_api_key_option_never_reaches_the_output(hwsim, tmp_path):
    options = dict(NEW, name="pm-t10-1", wait_timeout=120, api_key=API_KEY)
    proc, result = vps(hwsim, tmp_path, args=("-vvv",), env_key=None, **options)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert result["changed"] is True and result["status"] == "active"
    assert API_KEY not in proc.stdout + proc.stderr


def test_a_failed_build_is_terminated_when_asked_and_reported_without_failing(hwsim, tmp_path):
    hwsim.faults(fail_build=1)
    proc, result = vps(hwsim, tmp_path, name="pm-failing-2", plan="1", location="2", image="debian-12",
                       failed_build="terminate", wait_timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert result["build_failed"] is True and result["changed"] is True and result["status"] == "terminated"
    assert result["failed_serviceid"] and hwsim.instances_named("pm-failing-2") == []
    # Without failed_build=terminate a failed build fails the task, naming it.
    hwsim.faults(fail_build=1)
    proc, result = vps(hwsim, tmp_path, name="pm-failing-3", plan="1", location="2", image="debian-12", wait_timeout=120)
    assert proc.returncode != 0 and "pm-failing-3" in proc.stdout and "failed to build" in proc.stdout
    # A rerun with failed_build=terminate clears it instead of failing on it forever.
    proc, result = vps(hwsim, tmp_path, name="pm-failing-3", plan="1", location="2", image="debian-12",
                       failed_build="terminate", wait_timeout=120)
    assert proc.returncode == 0 and result["build_failed"] is True and hwsim.instances_named("pm-failing-3") == []
