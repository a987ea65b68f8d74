# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A private ``ssh-agent`` for one run: private keys go from Vault to the agent's memory, never to a disk.

:func:`start` makes a private directory (0700) and starts ``ssh-agent -D -a <dir>/agent.sock`` under a
small watchdog process in its own session. The watchdog waits for the process it guards (the
``ansible-playbook`` run) to end, however it ends (SIGKILL included), then kills the agent and removes
the directory. So no private key is ever at rest on the controller, and nothing of a killed run stays
readable. The keys stay as long as the run needs them: ``lifetime`` 0 (the default) sets no limit of
their own (the run's end is theirs: a sliced AWX job's host play may run for hours); a ``lifetime`` of
N > 0 seconds is a cap an operator may set (``-t N`` for the agent and for ``ssh-add``).

:func:`add_key` feeds one private key to ``ssh-add [-t <lifetime>] -`` on its standard input.
Connections select the key of a tenant with ``-o IdentityAgent=<socket> -o IdentitiesOnly=yes -o
IdentityFile=<public key file>`` (OpenSSH then signs with the agent's matching private key); the
public key files live in the same private directory. Runs on the controller only.

In certificate mode (docs/ssh-certificates.md) :func:`add_ephemeral` gives the agent a key made in
memory for this run and its Vault-signed certificate, over the agent protocol itself (the private
half goes from this process's memory to the agent's; no ``ssh-add``, no file); ``IdentityFile=<the
certificate file>`` then selects the certificate.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

SOCKET_NAME = "agent.sock"
# 0: a key stays until the run ends (the watchdog removes the agent then); N > 0: the agent forgets it after N seconds.
DEFAULT_LIFETIME = 0
# AF_UNIX paths are limited to 108 bytes.
MAX_SOCKET_PATH = 100

# The watchdog, run by the same Python: argv = pid to guard, parent directory, lifetime (0: no -t). It makes the private
# directory itself (so a run killed while starting it leaves nothing behind), starts the agent in it, prints
# "ready <directory>" once the agent's socket exists, and removes everything when the guarded process ends.
WATCHDOG = r"""
import os, select, shutil, signal, subprocess, sys, tempfile, time
guarded, parent, lifetime = int(sys.argv[1]), sys.argv[2], sys.argv[3]
directory = tempfile.mkdtemp(prefix="pm-agent-", dir=parent)
sock = os.path.join(directory, "agent.sock")
agent = subprocess.Popen(["ssh-agent", "-D", "-a", sock] + (["-t", lifetime] if int(lifetime) > 0 else []),
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
def cleanup(*_args):
    try:
        agent.kill()
        agent.wait()
    except OSError:
        pass
    shutil.rmtree(directory, ignore_errors=True)
    os._exit(0)
for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
    signal.signal(signum, cleanup)
try:
    pidfd = os.pidfd_open(guarded)
except (AttributeError, OSError):
    pidfd = None
deadline = time.monotonic() + 10
while not os.path.exists(sock) and agent.poll() is None and time.monotonic() < deadline:
    time.sleep(0.01)
try:
    print("ready %s" % directory, flush=True)
    sys.stdout.close()
except OSError:
    cleanup()
while agent.poll() is None:
    if pidfd is not None:
        if select.select([pidfd], [], [], 5.0)[0]:
            break
    else:
        try:
            os.kill(guarded, 0)
        except ProcessLookupError:
            break
        time.sleep(1.0)
cleanup()
"""


class AgentError(Exception):
    """The agent could not be started or fed; the message never holds key material."""


def _base_dir(parent):
    parent = parent or tempfile.gettempdir()
    if len(os.path.join(parent, "pm-agent-XXXXXXXX", SOCKET_NAME)) > MAX_SOCKET_PATH:
        parent = "/tmp"
    return parent


def check_lifetime(lifetime):
    """``lifetime`` as seconds: 0 (keys stay until the run ends) or a cap of N > 0 seconds; a negative one is refused."""
    try:
        value = int(lifetime)
    except (TypeError, ValueError):
        raise AgentError("the key lifetime must be a whole number of seconds (0: until the run ends)")
    if value < 0:
        raise AgentError("the key lifetime must be 0 (until the run ends) or a number of seconds, not %d" % value)
    return value


def lifetime_options(lifetime):
    """The ``-t`` option of ssh-agent and ssh-add for ``lifetime``: none for 0 (until the run ends)."""
    value = check_lifetime(lifetime)
    return ["-t", str(value)] if value else []


def start(guarded_pid, lifetime=DEFAULT_LIFETIME, parent=None):
    """Start a private agent that lives as long as ``guarded_pid``; returns {socket, directory, pid, lifetime}.

    ``lifetime`` 0 gives the agent no default key lifetime (keys stay until the guarded process ends), N > 0 caps
    every key at N seconds."""
    lifetime = check_lifetime(lifetime)
    if shutil.which("ssh-agent") is None or shutil.which("ssh-add") is None:
        raise AgentError("ssh-agent and ssh-add are needed on the controller (Debian: openssh-client)")
    watchdog = subprocess.Popen(
        [sys.executable, "-c", WATCHDOG, str(int(guarded_pid)), _base_dir(parent), str(lifetime)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
        close_fds=True,
    )
    line = watchdog.stdout.readline().decode("utf-8", "replace").strip()
    watchdog.stdout.close()
    directory = line[len("ready "):] if line.startswith("ready ") else ""
    sock = os.path.join(directory, SOCKET_NAME) if directory else ""
    if not sock or not os.path.exists(sock):
        stop({"directory": directory, "pid": watchdog.pid})
        raise AgentError("ssh-agent did not start")
    return {"socket": sock, "directory": directory, "pid": watchdog.pid, "lifetime": lifetime}


def alive(agent):
    """True when the agent of ``agent`` (a dict from :func:`start`) still answers."""
    sock = (agent or {}).get("socket")
    if not sock or not os.path.exists(sock):
        return False
    result = subprocess.run(["ssh-add", "-l"], env=_env(sock), stdin=subprocess.DEVNULL, capture_output=True, check=False)
    return result.returncode in (0, 1)  # 1: no identities


def _env(sock):
    env = dict((k, v) for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK", "SSH_AGENT_PID", "DISPLAY", "SSH_ASKPASS"))
    env["SSH_AUTH_SOCK"] = sock
    env["SSH_ASKPASS_REQUIRE"] = "never"
    return env


def add_key(agent, private_key, lifetime=DEFAULT_LIFETIME):
    """Load one private key into the agent (from stdin: never a file) until the run ends (``lifetime`` 0) or for
    ``lifetime`` seconds."""
    options = lifetime_options(lifetime)
    if not private_key or "PRIVATE KEY" not in private_key:
        raise AgentError("not a private key")
    data = private_key if private_key.endswith("\n") else private_key + "\n"
    result = subprocess.run(["ssh-add", "-q"] + options + ["-"], input=data.encode(), env=_env(agent["socket"]),
                            capture_output=True, check=False)
    if result.returncode != 0:
        raise AgentError("ssh-add refused a key (exit status %d)" % result.returncode)


# ssh-agent protocol (draft-miller-ssh-agent): the messages this module sends.
SSH_AGENT_FAILURE = 5
SSH_AGENT_SUCCESS = 6
SSH2_AGENTC_ADD_ID_CONSTRAINED = 25
SSH_AGENT_CONSTRAIN_LIFETIME = 1


def _agent_request(sock_path, message, timeout=10):
    """Send one message to the agent at ``sock_path``; returns the reply's type."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(timeout)
    try:
        conn.connect(sock_path)
        conn.sendall(struct.pack(">I", len(message)) + message)
        header = b""
        while len(header) < 4:
            chunk = conn.recv(4 - len(header))
            if not chunk:
                raise AgentError("the ssh-agent closed the connection")
            header += chunk
        (length,) = struct.unpack(">I", header)
        body = b""
        while len(body) < length:
            chunk = conn.recv(length - len(body))
            if not chunk:
                raise AgentError("the ssh-agent closed the connection")
            body += chunk
    except (OSError, socket.timeout) as exc:
        raise AgentError("cannot talk to the ssh-agent: %s" % type(exc).__name__)
    finally:
        conn.close()
    return body[:1]


def add_identity(agent, identity, lifetime):
    """Add one identity (the key part of SSH2_AGENTC_ADD_IDENTITY) for ``lifetime`` seconds (at least 1: a run
    certificate is bounded by its own validity)."""
    lifetime = int(lifetime)
    if lifetime < 1:
        raise AgentError("the key lifetime must be at least 1 second")
    message = (bytes([SSH2_AGENTC_ADD_ID_CONSTRAINED]) + identity + bytes([SSH_AGENT_CONSTRAIN_LIFETIME])
               + struct.pack(">I", lifetime))
    if _agent_request(agent["socket"], message) != bytes([SSH_AGENT_SUCCESS]):
        raise AgentError("the ssh-agent refused a key")


def add_ephemeral(agent, key, certificate, lifetime, comment="penguinmails run certificate"):
    """Give the agent the run's ephemeral key (an ssh_certificates.EphemeralKey) and its certificate.

    Both stay ``lifetime`` seconds at most. The plain key reaches a host whose authorized_keys holds
    the ephemeral public key (a VPS provisioned for this run); the certificate every host that trusts
    the user CA.
    """
    add_identity(agent, key.agent_identity(comment + " (key)"), lifetime)
    add_identity(agent, key.agent_certificate_identity(certificate, comment), lifetime)


def write_public(agent, name, public_key):
    """Write a public key file (an IdentityFile that selects the agent's key); returns its path."""
    if "/" in name or name.startswith("."):
        raise AgentError("invalid file name %r" % name)
    return _write(os.path.join(agent["directory"], name), public_key.strip() + "\n")


def write_known_hosts(agent, name, lines):
    """Write a known_hosts file (host keys from a tenant record) in the agent's directory; returns its path."""
    if "/" in name or name.startswith("."):
        raise AgentError("invalid file name %r" % name)
    return _write(os.path.join(agent["directory"], name), "".join(line.strip() + "\n" for line in lines))


def _write(path, text):
    tmp = "%s.%d.tmp" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)
    return path


def stop(agent):
    """Stop the watchdog (it kills the agent and removes the directory)."""
    pid = (agent or {}).get("pid")
    if pid:
        try:
            os.kill(int(pid), signal.SIGTERM)
        except (ProcessLookupError, PermissionError, ValueError):
            pass
    directory = (agent or {}).get("directory")
    if directory and os.path.basename(directory).startswith("pm-agent-"):
        deadline = time.monotonic() + 10
        while os.path.isdir(directory) and time.monotonic() < deadline and pid and _running(int(pid)):
            time.sleep(0.02)
        shutil.rmtree(directory, ignore_errors=True)


def _running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def ssh_options(agent, identity_files, known_hosts=None):
    """The ssh options that make a connection use exactly ``identity_files`` from the agent."""
    options = ["-o", "IdentityAgent=%s" % agent["socket"], "-o", "IdentitiesOnly=yes"]
    for path in identity_files:
        options += ["-o", "IdentityFile=%s" % path]
    if known_hosts:
        options += ["-o", "UserKnownHostsFile=%s" % known_hosts, "-o", "StrictHostKeyChecking=yes"]
    return options
