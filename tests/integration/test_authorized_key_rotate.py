# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""authorized_key_rotate through ansible-playbook against a real sshd.

The "VPS" is a real sshd on 127.0.0.1:<free port> in a private mount namespace with its own
/etc (a copy, so users the module creates stay in the test), /root and /home. Ansible reaches it
over SSH, like a real host, so the module runs inside that namespace with the system Python.
Logins are tried with the OpenSSH client: sshd itself decides which key works.
"""
from __future__ import annotations

import datetime
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import time

import pytest

from ansible_collections.penguinmails.vps.plugins.module_utils import authorized_keys as ak
from tests.support.ansible_run import run_playbook
from tests.support.wait import wait_until

UTC = datetime.timezone.utc
MARK = "penguinmails:t1:admin"
TENANT = "tenant-0a1b2c3d"
SSH_OPTS = ["-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"]


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _keygen(path, comment):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path], check=True)
    with open(path + ".pub") as handle:
        return handle.read().strip()


class Host(object):
    """A real sshd in its own mount namespace (own /etc copy, /root, /home)."""

    def __init__(self, base):
        self.base = base
        self.etc = os.path.join(base, "etc")
        self.root = os.path.join(base, "root")
        self.home = os.path.join(base, "home")
        self.log = os.path.join(base, "sshd.log")
        self.port = _free_port()
        self.proc = None

    def start(self):
        subprocess.run(["cp", "-a", "/etc", self.etc], check=True)
        for path in (self.root, self.home):
            os.mkdir(path)
        os.chmod(self.root, 0o700)
        os.chmod(self.home, 0o755)
        os.chmod(self.base, 0o755)
        sshd_dir = os.path.join(self.base, "sshd")
        os.mkdir(sshd_dir, 0o755)
        hostkey = os.path.join(sshd_dir, "host_ed25519")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostkey], check=True)
        config = os.path.join(sshd_dir, "sshd_config")
        with open(config, "w") as handle:
            handle.write(
                "Port %d\nListenAddress 127.0.0.1\nHostKey %s\nPidFile none\nUsePAM no\nStrictModes yes\n"
                "PermitRootLogin prohibit-password\nPubkeyAuthentication yes\nPasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\nAuthorizedKeysFile .ssh/authorized_keys\nLogLevel DEBUG1\n"
                "Subsystem sftp internal-sftp\n" % (self.port, hostkey)
            )
        script = (
            "set -e; mount --bind {etc} /etc; mount --bind {root} /root; mount --bind {home} /home; "
            "mount -t tmpfs tmpfs /run; mkdir -p /run/sshd; exec /usr/sbin/sshd -D -e -f {config}"
        ).format(etc=self.etc, root=self.root, home=self.home, config=config)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("sshd exited with %s: %s" % (self.proc.returncode, self.read_log()))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(4).startswith(b"SSH-"):
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("sshd did not listen on port %d: %s" % (self.port, self.read_log()))
            time.sleep(0.05)  # polling interval, not synchronisation

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def read_log(self):
        with open(self.log, "rb") as handle:
            return handle.read().decode("utf-8", "replace")

    def host_path(self, path):
        """Where a path inside the host lives on the controller."""
        for inside, outside in (("/etc/", self.etc), ("/root/", self.root), ("/home/", self.home)):
            if path.startswith(inside):
                return os.path.join(outside, path[len(inside):])
        raise ValueError(path)

    def passwd(self, user):
        with open(os.path.join(self.etc, "passwd")) as handle:
            for line in handle:
                fields = line.rstrip("\n").split(":")
                if fields[0] == user:
                    return fields
        return None

    def ssh(self, key, user, command="id -un"):
        env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
        return subprocess.run(["ssh"] + SSH_OPTS + ["-i", key, "-p", str(self.port), "%s@127.0.0.1" % user, command],
                              capture_output=True, text=True, timeout=60, env=env, check=False)

    def can_login(self, key, user):
        result = self.ssh(key, user)
        return result.returncode == 0 and result.stdout.strip() == user


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    base = tmp_path_factory.mktemp("keys")
    names = ("ansible", "current", "grace", "revoked", "stale", "other", "admin_new", "admin_old", "tenant")
    return {name: (str(base / name), _keygen(str(base / name), name + "@test")) for name in names}


@pytest.fixture(scope="module")
def host(tmp_path_factory, keys):
    vps = Host(str(tmp_path_factory.mktemp("vps")))
    try:
        vps.start()
        ssh_dir = os.path.join(vps.root, ".ssh")
        os.mkdir(ssh_dir, 0o700)
        with open(os.path.join(ssh_dir, "authorized_keys"), "w") as handle:
            handle.write(keys["ansible"][1] + "\n")
        os.chmod(os.path.join(ssh_dir, "authorized_keys"), 0o600)
        yield vps
    finally:
        vps.stop()


@pytest.fixture()
def play(host, keys, tmp_path):
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        "vps ansible_host=127.0.0.1 ansible_port=%d ansible_user=root ansible_ssh_private_key_file=%s "
        "ansible_python_interpreter=/usr/bin/python3 ansible_ssh_common_args='%s'\n"
        % (host.port, keys["ansible"][0], " ".join(SSH_OPTS[2:]))
    )

    def run(tasks, args=(), env=None, play_body=None):
        playbook = "- hosts: vps\n  gather_facts: false\n" + (play_body or "  tasks:\n" + tasks)
        environment = {"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_SSH_ARGS": "-o ControlMaster=no"}
        environment.update(env or {})
        result = run_playbook(playbook, inventory=str(inventory), args=list(args), tmp_path=tmp_path, env=environment)
        try:
            # -v prints "Using <cfg> as config file" before the JSON report
            report = json.loads(result.stdout[result.stdout.find("{"):])
        except ValueError:
            raise AssertionError("no JSON from ansible-playbook (rc %s): %s %s" % (result.returncode, result.stdout, result.stderr))
        tasks_run = [task["hosts"]["vps"] for task in report["plays"][0]["tasks"]]
        return result, tasks_run

    return run


def _task(user, keys_=(), grace=(), revoked=(), extra="", ignore_errors=False):
    lines = ["  - ignore_errors: true"] if ignore_errors else ["  -"]
    lines[0] += "\n    penguinmails.vps.authorized_key_rotate:"
    lines += ["      user: %s" % user, "      marker: %s" % MARK]
    lines.append("      keys: %s" % json.dumps(list(keys_)))
    lines.append("      grace_keys: %s" % json.dumps([{"key": k, "expires": e} for k, e in grace]))
    lines.append("      revoked_keys: %s" % json.dumps(list(revoked)))
    lines += ["      %s" % line for line in extra.splitlines() if line]
    return "\n".join(lines) + "\n"


def _iso(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _snapshot(path):
    st = os.stat(path)
    with open(path, "rb") as handle:
        return handle.read(), st.st_ino, st.st_mtime_ns


def test_rotation_grace_expiry_and_revocation_on_root(host, keys, play):
    ak_path = host.host_path("/root/.ssh/authorized_keys")
    unmanaged = [
        "# ops: do not remove the break-glass key below",
        keys["ansible"][1],
        'from="127.0.0.0/8,::1",command="echo \\"hi, there\\"",no-pty ' + keys["other"][1],
        "this line is not a key  \t",
        "",
    ]
    with open(ak_path, "w") as handle:
        handle.write("\n".join(unmanaged[:2]) + "\n")
        handle.write(keys["grace"][1] + " " + MARK + "\n")  # the current key before this rotation
        handle.write(keys["revoked"][1] + "\n")
        handle.write(keys["stale"][1].split(" ")[0] + " " + keys["stale"][1].split(" ")[1] + " " + MARK + " old\n")
        handle.write("\n".join(unmanaged[2:]) + "\n")
    assert host.can_login(keys["grace"][0], "root") and host.can_login(keys["revoked"][0], "root")
    expires = datetime.datetime.now(UTC) + datetime.timedelta(hours=1)
    task = _task("root", [keys["current"][1]], [(keys["grace"][1], _iso(expires))], [keys["revoked"][1]])

    result, (first,) = play(task)
    assert result.returncode == 0, result.stdout + result.stderr
    assert first["changed"] is True
    assert [entry["fingerprint"] for entry in first["added"]] == [ak.fingerprint(keys["current"][1].split()[1])]
    assert sorted(entry["reason"] for entry in first["removed"]) == ["no longer listed", "revoked"]
    assert first["expiring"][0]["expiry_time"] == ak.format_expiry(expires)

    # sshd decides: current and grace keys log in, revoked and stale keys are refused.
    assert host.can_login(keys["current"][0], "root")
    assert host.can_login(keys["grace"][0], "root")
    assert not host.can_login(keys["revoked"][0], "root")
    assert not host.can_login(keys["stale"][0], "root")
    assert host.ssh(keys["other"][0], "root").stdout.strip() == "hi, there"

    with open(ak_path) as handle:
        content = handle.read()
    assert content.endswith("\n")
    lines = content[:-1].split("\n")
    assert [line for line in lines if line in unmanaged] == unmanaged  # byte for byte, in order
    st = os.stat(ak_path)
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0

    before = _snapshot(ak_path)
    result, (second,) = play(task)
    assert result.returncode == 0 and second["changed"] is False
    assert _snapshot(ak_path) == before

    # Time passes: the module wrote this line three minutes ago with an expiry two minutes ago.
    now = datetime.datetime.now(UTC)
    past = now - datetime.timedelta(minutes=2)
    with ak.KeyFile(ak_path, 0, 0, ssh_dir=True) as keyfile:
        plan = ak.compute(keyfile.before, [keys["current"][1]], [(keys["grace"][1], past)], [keys["revoked"][1]],
                          MARK, now=now - datetime.timedelta(minutes=3))
        keyfile.write(plan.after)
    assert 'expiry-time="%s" %s' % (ak.format_expiry(past), keys["grace"][1].split(" ")[0]) in plan.after
    log_offset = len(host.read_log())
    assert not host.can_login(keys["grace"][0], "root")  # refused by sshd itself: the line is still there
    # sshd's unprivileged child logs through its monitor, which may write after the client saw the refusal.
    wait_until(lambda: "expired" in host.read_log()[log_offset:], timeout=30, what="sshd to log the expired key")
    assert host.can_login(keys["current"][0], "root")

    # A later run removes the expired line.
    result, (third,) = play(_task("root", [keys["current"][1]], [(keys["grace"][1], _iso(past))], [keys["revoked"][1]]))
    assert result.returncode == 0 and third["changed"] is True
    assert [entry["reason"] for entry in third["removed"]] == ["expired"]
    with open(ak_path) as handle:
        assert keys["grace"][1].split(" ")[1] not in handle.read()


def test_tenant_user_check_mode_diff_and_revoke(host, keys, play):
    assert host.passwd(TENANT) is None
    task = _task(TENANT, [keys["current"][1]], extra="manage_user: true")

    result, (checked,) = play(task, ["--check"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert checked["changed"] is True and checked["user_created"] is True
    assert host.passwd(TENANT) is None
    assert not os.path.exists(host.host_path("/home/%s" % TENANT))

    result, (created,) = play(task, ["--diff"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert created["changed"] is True and created["user_created"] is True
    assert created["diff"]["before"] == ""
    assert keys["current"][1].split(" ")[1] in created["diff"]["after"]
    entry = host.passwd(TENANT)
    assert entry is not None and entry[5] == "/home/" + TENANT and entry[6] == "/bin/bash"
    uid = int(entry[2])
    ssh_dir = host.host_path("/home/%s/.ssh" % TENANT)
    path = os.path.join(ssh_dir, "authorized_keys")
    assert (stat.S_IMODE(os.stat(ssh_dir).st_mode), os.stat(ssh_dir).st_uid) == (0o700, uid)
    assert (stat.S_IMODE(os.stat(path).st_mode), os.stat(path).st_uid) == (0o600, uid)
    assert host.can_login(keys["current"][0], TENANT)
    assert not host.can_login(keys["grace"][0], TENANT)

    revoke = _task(TENANT, [], revoked=[keys["current"][1]])
    before = _snapshot(path)
    result, (dry,) = play(revoke, ["--check", "--diff"])
    assert result.returncode == 0 and dry["changed"] is True
    assert keys["current"][1].split(" ")[1] in dry["diff"]["before"]
    assert keys["current"][1].split(" ")[1] not in dry["diff"]["after"]
    assert _snapshot(path) == before  # check mode wrote nothing
    assert host.can_login(keys["current"][0], TENANT)

    result, (revoked,) = play(revoke)
    assert result.returncode == 0 and revoked["changed"] is True
    assert [entry["reason"] for entry in revoked["removed"]] == ["revoked"]
    assert not host.can_login(keys["current"][0], TENANT)  # at once


def test_bad_input_fails_clearly_and_changes_nothing(host, keys, play):
    path = host.host_path("/root/.ssh/authorized_keys")
    before = _snapshot(path)
    bad = _task("root", [keys["current"][1], "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBZ1r2W not-a-key"], ignore_errors=True)
    bad += _task("../etc", [keys["current"][1]], ignore_errors=True)
    bad += _task("root", [keys["current"][1]], revoked=[keys["current"][1]], ignore_errors=True)
    bad += _task("nosuchuser", [keys["current"][1]], ignore_errors=True)
    result, outcomes = play(bad)
    assert result.returncode == 0, result.stdout + result.stderr
    messages = [outcome.get("msg", "") for outcome in outcomes]
    assert all(outcome.get("failed") for outcome in outcomes), outcomes
    assert "keys[1]" in messages[0] and "not an OpenSSH public key" in messages[0]
    assert "invalid user name '../etc'" in messages[1]
    assert "revoked_keys[0] is also listed in keys" in messages[2]
    assert "user nosuchuser does not exist" in messages[3]
    assert all("\n" not in message and "Traceback" not in message for message in messages)
    assert _snapshot(path) == before
    assert host.passwd("nosuchuser") is None


def test_symlinked_authorized_keys_is_refused(host, keys, play):
    user = "tenant-5ymlink0"
    result, (created,) = play(_task(user, [keys["current"][1]], extra="manage_user: true"))
    assert result.returncode == 0 and created["changed"] is True
    ssh_dir = host.host_path("/home/%s/.ssh" % user)
    victim = host.host_path("/root/victim")
    with open(victim, "w") as handle:
        handle.write("root-only content\n")
    os.unlink(os.path.join(ssh_dir, "authorized_keys"))
    os.symlink("/root/victim", os.path.join(ssh_dir, "authorized_keys"))  # what a tenant could do
    result, (refused,) = play(_task(user, [keys["current"][1]], ignore_errors=True))
    assert refused.get("failed") is True
    assert "refusing to follow a symlink" in refused["msg"]
    with open(victim) as handle:
        assert handle.read() == "root-only content\n"
    assert os.path.islink(os.path.join(ssh_dir, "authorized_keys"))
    shutil.rmtree(ssh_dir)


def keys_task(tasks):
    """What the role's host step (penguinmails.vps.ssh_host_keys) did per role, as {"results": [...]} in role order,
    each with ssh_access_role, changed and the batch module's fields (user_created, added, removed, ...)."""
    task = [task for task in tasks if task.get("tenants")][-1]
    (tenant,) = task["tenants"].values()
    return {"results": [dict(done["host"], ssh_access_role=role, changed=done["host_changed"]) for role, done in tenant["roles"].items()]}


def test_ssh_access_role_installs_vault_keys(host, keys, play, openbao):
    tenant = "acme0001-role"
    user = "tenant-acme0001-role"
    secret = "-----BEGIN OPENSSH PRIVATE KEY-----\nNOT-TO-BE-SEEN-0123456789\n-----END OPENSSH PRIVATE KEY-----\n"
    until = datetime.datetime.now(UTC) + datetime.timedelta(hours=2)
    admin = {"private_key": secret, "public_key": keys["admin_new"][1], "state": "active", "fingerprint": "x",
             "grace_public_key": keys["admin_old"][1], "grace_until": _iso(until)}
    openbao.kv_put("vps", tenant + "/admin_ssh", admin)
    openbao.kv_put("vps", tenant + "/tenant_ssh", {"private_key": secret, "public_key": keys["tenant"][1], "state": "active"})
    root_keys = host.host_path("/root/.ssh/authorized_keys")
    with open(root_keys, "w") as handle:
        handle.write(keys["ansible"][1] + "\n")
    body = "  roles:\n    - role: penguinmails.vps.ssh_access\n      ssh_access_tenant_id: %s\n" % tenant

    result, tasks = play(None, ["-v"], env=openbao.env(), play_body=body)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "NOT-TO-BE-SEEN" not in result.stdout + result.stderr
    installed = keys_task(tasks)["results"]
    assert [(item["ssh_access_role"], item["changed"], item["user_created"]) for item in installed] == [
        ("admin", True, False), ("tenant", True, True)]
    assert installed[0]["expiring"][0]["expiry_time"] == ak.format_expiry(until)
    assert host.can_login(keys["admin_new"][0], "root")
    assert host.can_login(keys["admin_old"][0], "root")  # grace
    assert host.can_login(keys["tenant"][0], user)
    assert not host.can_login(keys["tenant"][0], "root") and not host.can_login(keys["admin_new"][0], user)
    assert host.can_login(keys["ansible"][0], "root")  # unmanaged key kept

    result, tasks = play(None, env=openbao.env(), play_body=body)
    assert result.returncode == 0 and [item["changed"] for item in keys_task(tasks)["results"]] == [False, False]

    # The grace period ended in Vault (grace fields dropped) and the tenant key was revoked.
    del admin["grace_public_key"], admin["grace_until"]
    openbao.kv_put("vps", tenant + "/admin_ssh", admin)
    openbao.kv_put("vps", tenant + "/tenant_ssh", {"public_key": keys["tenant"][1], "state": "revoked"})
    result, tasks = play(None, env=openbao.env(), play_body=body)
    assert result.returncode == 0, result.stdout + result.stderr
    removed = [[entry["reason"] for entry in item["removed"] if entry["reason"] != "serial"] for item in keys_task(tasks)["results"]]
    assert removed == [["no longer listed"], ["revoked"]]
    assert not host.can_login(keys["admin_old"][0], "root")
    assert not host.can_login(keys["tenant"][0], user)
    assert host.can_login(keys["admin_new"][0], "root")

    # A revoked admin key is not removed unless asked: root keeps a way in.
    openbao.kv_put("vps", tenant + "/admin_ssh", dict(admin, state="revoked"))
    result, tasks = play(None, env=openbao.env(), play_body=body)
    assert result.returncode != 0
    assert any("without a managed key" in task.get("msg", "") for task in tasks)
    assert host.can_login(keys["admin_new"][0], "root")
