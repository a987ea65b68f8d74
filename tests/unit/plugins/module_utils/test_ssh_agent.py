# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run's private ssh-agent keeps its keys as long as the run needs them (issue 20).

``lifetime`` 0 (the default) starts ``ssh-agent`` and ``ssh-add`` without ``-t``: the keys stay until the run ends,
when the watchdog removes the agent; N > 0 stays an explicit cap (``-t N``); a negative lifetime is refused. In
certificate mode the run certificate stays in the agent for its own validity (a cap shortens it) and is reused while
enough of it is left. Checked against OpenSSH's own ssh-agent and ssh-add, through the argv of the processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from ansible_collections.penguinmails.vps.plugins.action import ssh_agent as action
from ansible_collections.penguinmails.vps.plugins.module_utils import ssh_agent, ssh_ca, ssh_keys
from ansible_collections.penguinmails.vps.plugins.module_utils import ssh_certificates as sc

from tests.support.wait import wait_until


def argv_of(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as handle:
        return [part.decode() for part in handle.read().split(b"\0") if part]


def children_of(pid):
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as handle:
                fields = handle.read().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(name))
    return found


def agent_argv(agent):
    """The argv of the agent's ssh-agent (the child of its watchdog)."""
    agents = [pid for pid in children_of(agent["pid"]) if os.path.basename(argv_of(pid)[0]) == "ssh-agent"]
    assert len(agents) == 1, agents
    return argv_of(agents[0])


def listed(agent):
    """The public keys the agent holds (``ssh-add -L``)."""
    result = subprocess.run(["ssh-add", "-L"], env=dict(os.environ, SSH_AUTH_SOCK=agent["socket"]), capture_output=True,
                            text=True, check=False)
    assert result.returncode in (0, 1), result.stderr  # 1: "The agent has no identities."
    return [line.split()[1] for line in result.stdout.splitlines()] if result.returncode == 0 else []


@pytest.fixture
def ssh_add_calls(monkeypatch):
    """Every ssh-add command line the module runs (argv only: the private key goes on stdin and is not kept)."""
    calls = []
    real = subprocess.run

    def recording(argv, *args, **kwargs):
        if argv and argv[0] == "ssh-add" and "-l" not in argv and "-L" not in argv:
            calls.append(list(argv))
        return real(argv, *args, **kwargs)  # pylint: disable=subprocess-run-check  # the caller passes its own check

    monkeypatch.setattr(ssh_agent.subprocess, "run", recording)
    return calls


@pytest.fixture
def started(tmp_path):
    agents = []

    def start(lifetime=None, guarded=None):
        kwargs = {} if lifetime is None else {"lifetime": lifetime}
        agent = ssh_agent.start(guarded or os.getpid(), parent=str(tmp_path), **kwargs)
        agents.append(agent)
        return agent

    yield start
    for agent in agents:
        ssh_agent.stop(agent)


def test_the_default_lifetime_keeps_keys_until_the_run_ends(started, ssh_add_calls):
    assert ssh_agent.DEFAULT_LIFETIME == 0
    agent = started()
    assert agent["lifetime"] == 0
    argv = agent_argv(agent)
    assert argv[:2] == ["ssh-agent", "-D"] and "-t" not in argv, argv
    pair = ssh_keys.generate_keypair("ed25519")
    ssh_agent.add_key(agent, pair.private_key)
    ssh_agent.add_key(agent, ssh_keys.generate_keypair("ed25519").private_key, 0)
    assert ssh_add_calls == [["ssh-add", "-q", "-"], ["ssh-add", "-q", "-"]]
    assert pair.public_key.split()[1] in listed(agent) and len(listed(agent)) == 2
    assert ssh_agent.alive(agent)


def test_a_lifetime_above_zero_is_a_cap_for_the_agent_and_each_key(started, ssh_add_calls):
    agent = started(lifetime=900)
    argv = agent_argv(agent)
    assert argv[argv.index("-t") + 1] == "900", argv
    assert agent["lifetime"] == 900
    kept = ssh_keys.generate_keypair("ed25519")
    capped = ssh_keys.generate_keypair("ed25519")
    ssh_agent.add_key(agent, kept.private_key, 0)
    ssh_agent.add_key(agent, capped.private_key, 1)
    assert ssh_add_calls == [["ssh-add", "-q", "-"], ["ssh-add", "-q", "-t", "1", "-"]]
    # the capped key goes after its second; the other one stays (it carries no lifetime of its own)
    wait_until(lambda: capped.public_key.split()[1] not in listed(agent), 15, "the capped key to expire")
    assert listed(agent) == [kept.public_key.split()[1]]


def test_a_negative_lifetime_is_refused_and_starts_nothing(started, tmp_path):
    before = set(os.listdir(str(tmp_path)))
    for bad in (-1, "-60", "soon", None):
        with pytest.raises(ssh_agent.AgentError) as info:
            ssh_agent.start(os.getpid(), lifetime=bad, parent=str(tmp_path))
        assert "lifetime" in str(info.value)
    assert set(os.listdir(str(tmp_path))) == before
    agent = started()
    pair = ssh_keys.generate_keypair("ed25519")
    with pytest.raises(ssh_agent.AgentError) as info:
        ssh_agent.add_key(agent, pair.private_key, -1)
    assert pair.private_key not in str(info.value) and "-1" in str(info.value)
    assert listed(agent) == []
    assert ssh_agent.lifetime_options(0) == [] and ssh_agent.lifetime_options("120") == ["-t", "120"]


def test_the_watchdog_removes_the_agent_when_the_guarded_process_dies(started):
    guarded = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        agent = started(lifetime=0, guarded=guarded.pid)
        ssh_agent.add_key(agent, ssh_keys.generate_keypair("ed25519").private_key)
        agent_pid = [pid for pid in children_of(agent["pid"]) if os.path.basename(argv_of(pid)[0]) == "ssh-agent"][0]
        assert len(listed(agent)) == 1
    finally:
        guarded.send_signal(signal.SIGKILL)
        guarded.wait()
    wait_until(lambda: not os.path.exists(agent["directory"]), 30, "the watchdog to remove the agent's directory")
    wait_until(lambda: not ssh_agent._running(agent["pid"]) and not ssh_agent._running(agent_pid), 30,
               "the watchdog and the agent to end")
    assert not ssh_agent.alive(agent)


# -- certificate mode: the certificate's own validity bounds it in the agent ---------------------------------
class FakeCA(object):
    """Stands in for the Vault SSH engine: signs with a CA key of the test (ssh-keygen), as Vault answers."""

    signed = []
    directory = None

    def __init__(self, client, mount):
        self.mount = mount

    def sign(self, role, public_key, cert_type="user", principals=(), ttl=0, key_id=None):
        del cert_type, key_id
        ttl = int(ttl) or 600
        base = os.path.join(self.directory, "k%d" % len(FakeCA.signed))
        with open(base + ".pub", "w") as handle:
            handle.write(public_key.strip() + "\n")
        subprocess.run(["ssh-keygen", "-q", "-s", os.path.join(self.directory, "ca"), "-I", "run-%s" % role,
                        "-n", ",".join(principals), "-z", str(len(FakeCA.signed) + 1), "-V", "+%ds" % ttl, base + ".pub"],
                       check=True, capture_output=True)
        with open(base + "-cert.pub") as handle:
            line = handle.read().strip()
        cert = sc.summary(sc.parse_certificate(line))
        cert.update(certificate=line, issuer_id="test", ttl=cert["valid_before"] - int(time.time()))
        FakeCA.signed.append(cert)
        return cert


@pytest.fixture
def fake_ca(tmp_path, monkeypatch):
    pytest.importorskip("cryptography")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "ca")], check=True)
    monkeypatch.setattr(FakeCA, "signed", [])
    monkeypatch.setattr(FakeCA, "directory", str(tmp_path))
    monkeypatch.setattr(ssh_ca, "CertificateAuthority", FakeCA)
    handed = []
    real = ssh_agent.add_ephemeral

    def recording(agent, key, certificate, lifetime, **kwargs):
        handed.append(lifetime)
        return real(agent, key, certificate, lifetime, **kwargs)

    monkeypatch.setattr(ssh_agent, "add_ephemeral", recording)
    return handed


def run_args(lifetime, ttl=600):
    return {"user_ca_mount": "ssh-user-ca", "certificate_role": "admin", "certificate_principal": "penguinmails-admin",
            "certificate_ttl": ttl, "lifetime": lifetime}


def test_agent_seconds_is_the_certificate_validity_capped_by_a_lifetime():
    now = 1_000_000
    assert action.agent_seconds(0, now + 600, now) == 600  # 0 sets no cap of its own (it was 1 second before)
    assert action.agent_seconds(120, now + 600, now) == 120
    assert action.agent_seconds(3600, now + 600, now) == 600
    assert action.agent_seconds(0, now - 5, now) == 1  # the agent protocol needs a lifetime of at least 1 second
    with pytest.raises(ssh_agent.AgentError):
        action.agent_seconds(-1, now + 600, now)


def test_with_lifetime_zero_the_run_certificate_stays_for_its_validity_and_is_reused(started, fake_ca):
    agent = started()
    files = action._Run(None, agent, run_args(0)).certificate_files()
    assert [os.path.basename(path) for path in files] == [action.CERT_FILE, action.CERT_KEY_FILE]
    cert = agent["certificate"]
    assert len(FakeCA.signed) == 1 and 590 <= fake_ca[0] <= 600, fake_ca
    assert cert["agent_until"] == cert["valid_before"] or abs(cert["agent_until"] - cert["valid_before"]) <= 1
    kinds = subprocess.run(["ssh-add", "-L"], env=dict(os.environ, SSH_AUTH_SOCK=agent["socket"]), capture_output=True,
                           text=True, check=True).stdout.split()
    assert "ssh-ed25519-cert-v01@openssh.com" in kinds
    # a later call of the run reuses it while more than the margin is left ...
    assert action._Run(None, agent, run_args(0)).certificate_files() == files and len(FakeCA.signed) == 1
    # ... and signs a new one once it is about to run out (RENEW_MARGIN, or half its TTL)
    agent["certificate"] = dict(cert, valid_before=int(time.time()) + action.RENEW_MARGIN - 10)
    action._Run(None, agent, run_args(0)).certificate_files()
    assert len(FakeCA.signed) == 2 and agent["certificate"]["serial"] == str(FakeCA.signed[1]["serial"])


def test_a_lifetime_cap_shorter_than_the_certificate_bounds_it_and_forces_a_new_signing(started, fake_ca):
    agent = started()
    action._Run(None, agent, run_args(120)).certificate_files()
    cert = agent["certificate"]
    assert fake_ca == [120] and cert["agent_until"] < cert["valid_before"]
    # the agent forgets it after 120 s: less than the renewal margin, so a later call does not count on it
    action._Run(None, agent, run_args(120)).certificate_files()
    assert len(FakeCA.signed) == 2
    # a cap longer than the certificate changes nothing: its validity bounds it, and it is reused
    agent = started()
    action._Run(None, agent, run_args(7200)).certificate_files()
    assert 590 <= fake_ca[-1] <= 600
    action._Run(None, agent, run_args(7200)).certificate_files()
    assert len(FakeCA.signed) == 3
