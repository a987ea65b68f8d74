# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""pytest fixtures for the lab (registered by tests/conftest.py).

``lab`` (session): the whole lab (tests/lab/lab.py) in a private state dir, torn down at the end
of the session whatever happens. It is the lab description (a dict, see ``labctl up --json``)
with helpers::

    lab["vault"]["addr"], lab["vault"]["token"], lab["dns"]["port"], lab["hostwinds"]["url"] ...
    lab.env()                                   # VAULT_ADDR/VAULT_TOKEN/HOSTWINDS_API_URL/HOSTWINDS_API_KEY
    host = lab.create_host("vps1")              # a host without the simulator (root key: the lab key)
    lab.ssh(host["ip"], "id -u")                # ssh as root with the lab key -> CompletedProcess
    lab.host_exec("vps1", ["useradd", "bob"])   # run inside the host (nsenter), -> CompletedProcess
    lab.inventory(tmp_path, [host])             # an INI inventory (localhost + the hosts)
    lab.hostwinds("add_instance", srvrname=...) # a raw API call; lab.hostwinds_lab("GET", "/lab/state")

``lab_host`` (function): one fresh host made directly with tests.lab.hosts.create_host, in a
private state dir with its own key pair, for tests that need only an sshd. Destroyed afterwards.

A part that cannot start makes the test fail (never skip), with or without CI=true.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from urllib.parse import urlencode

import pytest

from tests.lab import hosts as lab_hosts
from tests.lab import lab as lab_core


def _ssh(private_key, ip, command, user="root", timeout=60, check=False, options=()):
    argv = ["ssh", "-i", private_key] + list(lab_core.SSH_OPTIONS) + list(options) + ["%s@%s" % (user, ip)]
    argv += [command] if isinstance(command, str) else list(command)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=check, stdin=subprocess.DEVNULL)


def _inventory(directory, host_list, private_key, group="lab_hosts"):
    path = os.path.join(str(directory), "inventory.ini")
    lines = ["localhost ansible_connection=local ansible_python_interpreter=%s" % sys.executable, "", "[%s]" % group]
    common = " ".join(lab_core.SSH_OPTIONS[:4])
    for host in host_list:
        lines.append(
            "%s ansible_host=%s ansible_user=root ansible_ssh_private_key_file=%s "
            "ansible_python_interpreter=/usr/bin/python3 ansible_ssh_common_args='%s'"
            % (host["name"], host["ip"], private_key, common)
        )
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


class Lab(dict):
    """The lab description plus helpers."""

    @property
    def state_dir(self):
        return self["state_dir"]

    @property
    def private_key(self):
        return self["ssh"]["private_key"]

    @property
    def public_key(self):
        return self["ssh"]["public_key_text"]

    def env(self, **extra):
        env = {key: value for key, value in self["env"].items() if key != lab_core.STATE_ENV}
        env.update(extra)
        return env

    def refresh(self):
        self.update(lab_core.read_description(self.state_dir))
        return self

    def status(self):
        return lab_core.status(self.state_dir)

    # hosts (directly, without the simulator)
    def create_host(self, name, authorized_keys=None):
        return lab_hosts.create_host(self.state_dir, name, authorized_keys or [self.public_key])

    def destroy_host(self, name):
        lab_hosts.destroy_host(self.state_dir, name)

    def hosts(self):
        return lab_hosts.list_hosts(self.state_dir)

    def host(self, name):
        return lab_hosts.get_host(self.state_dir, name)

    def host_exec(self, name, argv, **kwargs):
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        kwargs.setdefault("timeout", 120)
        return lab_hosts.host_exec(self.state_dir, name, argv, **kwargs)

    def host_popen(self, name, argv, **kwargs):
        return lab_hosts.host_popen(self.state_dir, name, argv, **kwargs)

    def ssh(self, ip, command, key=None, **kwargs):
        return _ssh(key or self.private_key, ip, command, **kwargs)

    def inventory(self, directory, host_list, key=None, group="lab_hosts"):
        return _inventory(directory, host_list, key or self.private_key, group)

    # the Hostwinds simulator, raw (independent of the module under test)
    def hostwinds(self, action, api_key=None, **fields):
        fields.update(action=action, API=self["hostwinds"]["api_key"] if api_key is None else api_key)
        request = urllib.request.Request(self["hostwinds"]["url"], data=urlencode(fields).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def hostwinds_lab(self, method, path, payload=None):
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(self["hostwinds"]["base_url"] + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())


class LabHost(dict):
    """One lab host (the dict of tests.lab.hosts.create_host) with its key pair and helpers."""

    def __init__(self, host, state_dir, private_key):
        super().__init__(host)
        self.state_dir = state_dir
        self.private_key = private_key
        with open(private_key + ".pub") as handle:
            self.public_key = handle.read().strip()

    def exec(self, argv, **kwargs):
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        kwargs.setdefault("timeout", 120)
        return lab_hosts.host_exec(self.state_dir, self["name"], argv, **kwargs)

    def popen(self, argv, **kwargs):
        return lab_hosts.host_popen(self.state_dir, self["name"], argv, **kwargs)

    def ssh(self, command, key=None, **kwargs):
        return _ssh(key or self.private_key, self["ip"], command, **kwargs)

    def inventory(self, directory, group="lab_hosts"):
        return _inventory(directory, [self], self.private_key, group)

    def path(self, inside):
        """The controller-side path of a file in one of the host's private dirs (/root, /mailu, /var/log, ...)."""
        return os.path.join(self["root"], "fs", inside.lstrip("/"))


def make_state_dir():
    """A private lab state dir (outside pytest's rotating basetemp, so a live lab is never swept)."""
    return tempfile.mkdtemp(prefix="pm-lab-")


@pytest.fixture(scope="session")
def lab():
    """The whole lab for the session: OpenBao, BIND9, the Hostwinds simulator, the lab network."""
    state_dir = make_state_dir()
    try:
        yield Lab(lab_core.up(state_dir, owner_pid=os.getpid()))
    finally:
        lab_core.down(state_dir)


@pytest.fixture()
def lab_host():
    """A fresh lab host with a real sshd, made without the simulator; root logs in with its private_key."""
    state_dir = make_state_dir()
    try:
        key = os.path.join(state_dir, "ssh", "id_ed25519")
        lab_core.controller_key(key)
        lab_hosts.ensure_network(state_dir, owner_pid=os.getpid())
        with open(key + ".pub") as handle:
            host = lab_hosts.create_host(state_dir, "vps1", [handle.read()])
        yield LabHost(host, state_dir, key)
    finally:
        try:
            lab_hosts.destroy_network(state_dir)
            lab_hosts.sweep_processes(state_dir)
        finally:
            shutil.rmtree(state_dir, ignore_errors=True)
