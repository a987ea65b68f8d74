# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""HostwindsClient against the lab's Hostwinds simulator (real HTTP on loopback, real lab hosts)."""

from __future__ import annotations

import socket
import os
import subprocess

import pytest
from hypothesis import assume, given, settings, strategies as st

from ansible_collections.penguinmails.vps.plugins.module_utils import hostwinds as hw
from tests.lab.hostwinds_sim import private_simulator

API_KEY = "hw-unit-key-0123456789abcdef"


def _no_sleep(_seconds):
    """Back-off sleeps of the client under test are skipped; the simulator answers at once."""


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostwinds-unit")
    key = base / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    with private_simulator(base, API_KEY, str(key) + ".pub") as sim_process:
        yield sim_process


@pytest.fixture()
def fresh(sim):
    """Every test starts with no instances, no faults and no counted calls."""
    sim.clean_slate()
    yield sim
    sim.clean_slate()


def client_for(sim, api_key=API_KEY, retries=3, url=None):
    return hw.HostwindsClient(url or sim.api_url, api_key, timeout=30, retries=retries, sleep=_no_sleep)


def create(client, name):
    return client.add_instance(name, template="debian-12", rid="1", location_id="2")


def test_empty_account_lists_nothing(fresh):
    client = client_for(fresh)
    assert client.get_instances() == []
    assert client.find_by_name("pm-none-1") is None


def test_wrong_api_key_is_refused_in_one_line_without_the_key(fresh):
    wrong = "wrong-key-zz9-secret"
    client = client_for(fresh, api_key=wrong)
    with pytest.raises(hw.HostwindsAPIError) as info:
        create(client, "pm-wrongkey-1")
    message = str(info.value)
    assert "refused the API key" in message and "Not Authorized" in message
    assert wrong not in message and "\n" not in message
    assert fresh.instances() == [] and fresh.creates("pm-wrongkey-1") == 0


def test_add_instance_builds_asynchronously_into_a_real_host(fresh):
    client = client_for(fresh)
    fresh.faults(hold_builds=True)
    answer = create(client, "pm-build-1")
    assert all("serviceid" not in item for item in answer)  # the API gives no id: find it by name
    building = client.find_by_name("pm-build-1")
    assert building["status"] != "active" and building["main_ip"] == ""
    fresh.faults(hold_builds=False)
    active = client.wait_active(building["serviceid"], timeout=120, interval=0.1)
    assert active["status"] == "active" and active["vm_state"] == "active"
    ips = client.get_instance_ips(active["serviceid"])
    assert [item["ip"] for item in ips if item.get("main")] == [active["main_ip"]]
    with socket.create_connection((active["main_ip"], 22), timeout=10) as sock:
        assert sock.recv(64).startswith(b"SSH-2.0-")
    assert fresh.creates("pm-build-1") == 1


def test_wait_active_times_out_with_a_rerun_hint_and_creates_nothing_more(fresh):
    client = client_for(fresh)
    fresh.faults(hold_builds=True)
    create(client, "pm-slow-1")
    sid = client.find_by_name("pm-slow-1")["serviceid"]
    with pytest.raises(hw.HostwindsTimeout) as info:
        client.wait_active(sid, timeout=0.5, interval=0.1)
    assert "pm-slow-1" in str(info.value) and "rerun" in str(info.value)
    assert fresh.creates("pm-slow-1") == 1


def test_failed_build_is_reported(fresh):
    client = client_for(fresh)
    fresh.faults(fail_build=1)
    create(client, "pm-broken-1")
    sid = client.find_by_name("pm-broken-1")["serviceid"]
    with pytest.raises(hw.HostwindsBuildFailed, match="pm-broken-1.*failed to build"):
        client.wait_active(sid, timeout=60, interval=0.1)


def test_reads_are_retried_after_server_errors(fresh):
    client = client_for(fresh, retries=3)
    fresh.faults(fail_reads=2)
    assert client.get_instances() == []
    assert fresh.calls()["actions"]["get_instances"] == 3


def test_reads_give_up_after_the_retries(fresh):
    client = client_for(fresh, retries=1)
    fresh.faults(fail_reads=5)
    with pytest.raises(hw.HostwindsTransportError, match="answered HTTP 503"):
        client.get_instances()
    assert fresh.calls()["actions"]["get_instances"] == 2


def test_add_instance_is_never_retried_when_its_answer_is_lost(fresh):
    client = client_for(fresh, retries=5)
    fresh.faults(drop_add_instance_response=1)
    with pytest.raises(hw.HostwindsTransportError):
        create(client, "pm-lost-1")
    assert fresh.creates("pm-lost-1") == 1
    assert client.wait_listed("pm-lost-1", timeout=30, interval=0.1)["srvrname"] == "pm-lost-1"


def test_two_instances_with_one_name_are_refused(fresh):
    client = client_for(fresh)
    fresh.faults(hold_builds=True)
    client.add_instance("pm-twin-1", template="debian-12", rid="1", location_id="2", qty=2)
    sids = sorted(inst["serviceid"] for inst in fresh.instances_named("pm-twin-1"))
    assert len(sids) == 2
    with pytest.raises(hw.HostwindsAmbiguousName) as info:
        client.find_by_name("pm-twin-1")
    assert all(str(sid) in str(info.value) for sid in sids)


def test_api_errors_are_one_line_and_never_echo_the_key(fresh):
    client = client_for(fresh)
    fresh.faults(error_next={"get_instances": "bad request for key %s\nsecond line" % API_KEY})
    with pytest.raises(hw.HostwindsAPIError) as info:
        client.get_instances()
    message = str(info.value)
    assert API_KEY not in message and "********" in message and "\n" not in message
    assert "get_instances" in message


def test_injected_create_error_changes_nothing(fresh):
    client = client_for(fresh)
    fresh.faults(error_next={"add_instance": "Insufficient funds"})
    with pytest.raises(hw.HostwindsAPIError, match="Insufficient funds"):
        create(client, "pm-poor-1")
    assert fresh.instances() == []


def test_unknown_serviceid_is_an_api_error(fresh):
    with pytest.raises(hw.HostwindsAPIError, match="valid serviceid"):
        client_for(fresh).get_instance(999)


def test_unreachable_api_fails_clearly(fresh):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = client_for(fresh, url="http://127.0.0.1:%d/cloud/api.php" % port, retries=2)
    with pytest.raises(hw.HostwindsTransportError) as info:
        client.get_instances()
    assert "connection refused" in str(info.value) and API_KEY not in str(info.value)
    with pytest.raises(hw.HostwindsTransportError, match="connection refused"):
        create(client, "pm-nowhere-1")


def test_power_actions_change_the_vm_state(fresh):
    client = client_for(fresh)
    create(client, "pm-power-1")
    sid = client.find_by_name("pm-power-1")["serviceid"]
    client.wait_active(sid, timeout=120, interval=0.1)
    client.shutdown(sid)
    assert client.get_instance(sid)["vm_state"] == "stopped"
    client.boot(sid)
    assert client.get_instance(sid)["vm_state"] == "active"
    client.reboot(sid)
    assert fresh.calls()["actions"]["reboot"] == 1


def test_terminate_destroys_the_lab_host(fresh):
    client = client_for(fresh)
    create(client, "pm-gone-1")
    sid = client.find_by_name("pm-gone-1")["serviceid"]
    client.wait_active(sid, timeout=120, interval=0.1)
    lab_host = fresh.instances_named("pm-gone-1")[0]["lab_host"]
    netns = [host["netns"] for host in fresh.hosts().list_hosts(fresh.hosts_state_dir) if host["name"] == lab_host]
    assert len(netns) == 1
    client.terminate(sid)
    client.wait_gone("pm-gone-1", timeout=30, interval=0.1)
    assert lab_host not in [host["name"] for host in fresh.hosts().list_hosts(fresh.hosts_state_dir)]
    assert netns[0] not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout.split()


def test_terminate_while_building_leaves_no_host(fresh):
    client = client_for(fresh)
    fresh.faults(hold_builds=True)
    create(client, "pm-early-1")
    sid = client.find_by_name("pm-early-1")["serviceid"]
    client.terminate(sid)
    fresh.faults(hold_builds=False)
    client.wait_gone("pm-early-1", timeout=30, interval=0.1)
    create(client, "pm-probe-1")  # builds went on after the release; the terminated one must not have built
    client.wait_active(client.find_by_name("pm-probe-1")["serviceid"], timeout=120, interval=0.1)
    lab_hosts = [host["name"] for host in fresh.hosts().list_hosts(fresh.hosts_state_dir)]
    assert "hw%d" % sid not in lab_hosts and len(lab_hosts) == 1


def test_simulator_restart_keeps_instances(fresh):
    client = client_for(fresh)
    fresh.faults(hold_builds=True)
    create(client, "pm-restart-1")
    sid = client.find_by_name("pm-restart-1")["serviceid"]
    fresh.stop(terminate=False)
    fresh.start()
    assert client.find_by_name("pm-restart-1")["serviceid"] == sid
    fresh.faults(hold_builds=False)
    assert client.wait_active(sid, timeout=120, interval=0.1)["main_ip"]
    assert fresh.creates("pm-restart-1") == 1


@pytest.mark.parametrize("name", ["", "-lead", "has space", "a" * 64, "semi;colon", "new\nline", "trailing\n"])
def test_invalid_names_are_refused_before_any_call(fresh, name):
    with pytest.raises(hw.HostwindsConfigError, match="invalid server name"):
        create(client_for(fresh), name)
    assert fresh.calls()["add_instance"] == {}


def test_settings_are_checked(fresh):
    with pytest.raises(hw.HostwindsConfigError, match="no Hostwinds API key"):
        hw.HostwindsClient(fresh.api_url, "")
    with pytest.raises(hw.HostwindsConfigError, match="api_url"):
        hw.HostwindsClient("ftp://example.com", API_KEY)
    with pytest.raises(hw.HostwindsConfigError, match="timeout"):
        hw.HostwindsClient(fresh.api_url, API_KEY, timeout=0)


def test_instance_summary_leaves_out_passwords():
    summary = hw.instance_summary({"serviceid": 1, "srvrname": "x", "password": "hunter2", "main_ip": "198.18.0.2"})
    assert "password" not in summary and summary["serviceid"] == 1
    assert hw.instance_summary(None) is None


@settings(max_examples=200, deadline=None)
@given(before=st.text(max_size=400), after=st.text(max_size=400))
def test_no_part_of_the_key_survives_in_an_api_error(before, after):
    assume(API_KEY[:4] not in before + after)
    # the answer check is a pure function of the decoded body: no HTTP needed for this property
    client = hw.HostwindsClient("http://127.0.0.1:9/cloud/api.php", API_KEY)
    body = [{"result": "error", "action": "Get Instances", "message": before + API_KEY + after}]
    with pytest.raises(hw.HostwindsAPIError) as info:
        client._check("get_instances", body, "Hostwinds API get_instances")
    message = str(info.value)
    assert API_KEY[:12] not in message and "\n" not in message and len(message) < 400


@given(name=st.from_regex(hw.NAME_RE, fullmatch=True))
def test_every_name_of_the_pattern_is_accepted(name):
    assert hw.validate_name(name) == name


def test_new_instances_get_account_keys_by_name_and_raw_keys_are_refused(fresh, tmp_path):
    """As at Hostwinds: add_instance's keys[] names SSH keys stored in the account (add_ssh_key)."""
    client = client_for(fresh)
    key = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    public = (tmp_path / "k.pub").read_text().strip()
    name = "pm-keys-%s" % os.urandom(3).hex()
    with pytest.raises(hw.HostwindsAPIError, match="not an SSH key of this account"):
        client.add_instance("pm-keys-1", template="debian-12", rid="1", location_id="2", keys=[name])
    with pytest.raises(hw.HostwindsConfigError, match="invalid Hostwinds SSH key name"):
        client.add_instance("pm-keys-1", template="debian-12", rid="1", location_id="2", keys=[public])
    assert fresh.instances() == []
    client.add_ssh_key(name, public)
    assert client.find_ssh_key(name)["key"] == public
    with pytest.raises(hw.HostwindsAPIError, match="already exists"):
        client.add_ssh_key(name, public)
    client.add_instance("pm-keys-1", template="debian-12", rid="1", location_id="2", keys=[name])
    active = client.wait_active(client.find_by_name("pm-keys-1")["serviceid"], timeout=120, interval=0.1)
    login = subprocess.run(["ssh", "-i", str(key), "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                            "root@%s" % active["main_ip"], "true"], capture_output=True, timeout=60, stdin=subprocess.DEVNULL, check=False)
    assert login.returncode == 0, login.stderr
    # The wire format: keys[] as an array (the simulator parses it as PHP does): the instance names the key.
    assert fresh.instances_named("pm-keys-1")[0]["ssh_keys"] == [name]
    client.delete_ssh_key(name)
    assert client.find_ssh_key(name) is None
