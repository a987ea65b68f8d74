# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Vault's own recovery: Raft snapshots streamed into restic, restored from it, and the Raft health.

A backup is ``GET sys/storage/raft/snapshot`` (a gzip stream) read chunk by chunk and written into the stdin of
``restic backup --stdin``: the snapshot exists only in memory, one chunk at a time, and in the encrypted restic
repository; it never touches the controller's disk. The stream is checked while it passes (a whole gzip member,
its SHA-256 kept as a tag): a truncated stream kills restic before it can commit, so a broken snapshot is never
stored. A restore is ``restic dump`` streamed into ``PUT sys/storage/raft/snapshot`` (or ``snapshot-force`` for a
fresh cluster, whose keys differ).

The repository's password is NOT kept in Vault - a Vault that is lost could not give it back. The operator keeps it
beside the unseal keys (docs/vault-recovery.md) and hands it to the run (no_log); it reaches restic in its
environment only. The last backup's time comes from the repository itself (``restic snapshots --latest 1``): what
the repository holds is what a restore can use, a marker written elsewhere could say "backed up" of a snapshot
pruned or lost since.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import subprocess
import threading
import zlib

from ansible_collections.penguinmails.vps.plugins.module_utils import restic_backup
from ansible_collections.penguinmails.vps.plugins.module_utils.maildir_sync import SyncError
from ansible_collections.penguinmails.vps.plugins.module_utils.vault_client import VaultError

TAG = "penguinmails-vault"
STDIN_NAME = "vault.snap"
DEFAULT_NAME = "vault"
CHUNK = 1 << 16


class SnapshotError(Exception):
    """A snapshot or restore that did not complete (the message names what failed; never a secret)."""


def _headers(client):
    headers = {"X-Vault-Token": client.hvac.token or ""}
    if client.settings.get("namespace"):
        headers["X-Vault-Namespace"] = client.settings["namespace"]
    return headers


def _errors(response):
    try:
        errors = (response.json() or {}).get("errors") or []
    except ValueError:
        errors = []
    return ": " + "; ".join(str(error) for error in errors)[:300] if errors else ""


def _check_status(response, where):
    if response.status_code in (200, 204):
        return
    if response.status_code in (401, 403):
        raise VaultError("permission denied for %s (the token needs read and sudo on sys/storage/raft/snapshot, "
                         "update and sudo on snapshot-force; the root token or an operator policy)" % where,
                         status=response.status_code)
    if response.status_code == 503:
        raise VaultError("Vault at %s is sealed or unavailable for %s" % (response.url.split("/v1/")[0], where), status=503)
    raise VaultError("Vault refused %s (HTTP %s)%s" % (where, response.status_code, _errors(response)),
                     status=response.status_code)


# ---------------------------------------------------------------------------------------
# Raft health
# ---------------------------------------------------------------------------------------
def raft_health(client):
    """Voters, the leader's last index and autopilot's view, as far as the server and the token allow.

    ``None`` when the storage is not Raft (or the token may not read its configuration)."""
    try:
        config = client.api("GET", "sys/storage/raft/configuration", where="raft configuration")
    except VaultError:
        return None
    servers = ((config.get("data") or {}).get("config") or {}).get("servers") or []
    health = {
        "servers": [dict(node_id=s.get("node_id"), address=s.get("address"), leader=bool(s.get("leader")),
                         voter=bool(s.get("voter"))) for s in servers],
        "voters": sorted(s.get("node_id") for s in servers if s.get("voter")),
        "leader": next((s.get("node_id") for s in servers if s.get("leader")), None),
        "last_index": None,
        "autopilot": None,
    }
    try:
        state = client.api("GET", "sys/storage/raft/autopilot/state", where="raft autopilot state").get("data") or {}
    except VaultError:
        return health  # older servers, or a token without it: the configuration alone
    nodes = state.get("servers") or {}
    health["autopilot"] = {
        "healthy": bool(state.get("healthy")),
        "failure_tolerance": state.get("failure_tolerance"),
        "leader": state.get("leader"),
        "servers": dict((node_id, dict(healthy=bool(node.get("healthy")), status=node.get("status"),
                                       node_type=node.get("node_type"), last_index=node.get("last_index"),
                                       last_contact=node.get("last_contact")))
                        for node_id, node in sorted(nodes.items())),
    }
    leader = nodes.get(state.get("leader") or "") or {}
    health["last_index"] = leader.get("last_index")
    return health


# ---------------------------------------------------------------------------------------
# Backup and restore
# ---------------------------------------------------------------------------------------
def _collect(stream, sink):
    for line in iter(stream.readline, b""):
        sink.append(line)
    stream.close()


def _summary(lines):
    for line in reversed(lines):
        try:
            report = json.loads(line.decode("utf-8"))
        except ValueError:
            continue
        if isinstance(report, dict) and report.get("message_type") == "summary":
            return report
    return None


def backup(client, restic, name, deadline, extra_tags=()):
    """Stream a Raft snapshot into ``restic backup --stdin``; the snapshot's facts and restic's summary."""
    where = "the Raft snapshot (sys/storage/raft/snapshot)"
    response = client._call(
        lambda: client.session.get(client.url + "/v1/sys/storage/raft/snapshot", headers=_headers(client),
                                   verify=client.verify, timeout=client.settings["timeout"], stream=True),
        where, retry=True)
    try:
        _check_status(response, where)
        argv = restic.argv("backup", "--stdin", "--stdin-filename", STDIN_NAME, "--host", name, "--json",
                           "--tag", TAG)
        for tag in extra_tags:
            argv += ["--tag", tag]
        return _feed_restic(response, restic, argv, deadline)
    finally:
        response.close()


def _feed_restic(response, restic, argv, deadline):
    digest = hashlib.sha256()
    gunzip = zlib.decompressobj(16 + zlib.MAX_WBITS)
    size = 0
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=restic.env())
    except OSError as exc:
        raise SnapshotError("cannot run %s: %s (install Debian's restic on the controller)" % (restic.binary, exc.strerror))
    out, err = [], []
    readers = [threading.Thread(target=_collect, args=(proc.stdout, out)),
               threading.Thread(target=_collect, args=(proc.stderr, err))]
    for thread in readers:
        thread.daemon = True
        thread.start()
    try:
        for chunk in response.iter_content(CHUNK):
            if deadline.left() <= 0:
                raise SnapshotError("the Vault snapshot did not finish within %d s" % deadline.seconds)
            if not chunk:
                continue
            if size == 0 and chunk[:2] != b"\x1f\x8b":
                raise SnapshotError("Vault did not answer with a snapshot (no gzip stream)")
            size += len(chunk)
            digest.update(chunk)
            if not gunzip.eof:
                gunzip.decompress(chunk)
            proc.stdin.write(chunk)
        if size == 0 or not gunzip.eof:
            raise SnapshotError("the Vault snapshot stream ended early (%d bytes, no end of gzip stream): nothing stored"
                                % size)
    except Exception as exc:  # pylint: disable=broad-except  # any break: restic must not commit a partial snapshot
        proc.kill()
        proc.wait()
        if isinstance(exc, SnapshotError):
            raise
        if isinstance(exc, BrokenPipeError):
            raise SnapshotError("restic stopped while the snapshot streamed: %s" % restic.clean(b"".join(err)))
        raise SnapshotError("the Vault snapshot stream broke (%s) after %d bytes: nothing stored" % (type(exc).__name__, size))
    proc.stdin.close()
    try:
        proc.wait(timeout=max(5.0, deadline.left()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise SnapshotError("restic did not finish within %d s" % deadline.seconds)
    for thread in readers:
        thread.join(timeout=10)
    summary = _summary(out)
    if proc.returncode != 0 or summary is None:
        raise SnapshotError("restic backup failed: %s" % (restic.clean(b"".join(err)) or "exit %s" % proc.returncode))
    return {"bytes": size, "sha256": "SHA256:" + digest.hexdigest()}, summary


def restore(client, restic, snapshot_id, force, deadline):
    """``restic dump`` of ``snapshot_id`` streamed into sys/storage/raft/snapshot(-force); the bytes sent."""
    endpoint = "sys/storage/raft/snapshot-force" if force else "sys/storage/raft/snapshot"
    try:
        proc = subprocess.Popen(restic.argv("dump", snapshot_id, "/" + STDIN_NAME), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=restic.env())
    except OSError as exc:
        raise SnapshotError("cannot run %s: %s (install Debian's restic on the controller)" % (restic.binary, exc.strerror))
    err = []
    reader = threading.Thread(target=_collect, args=(proc.stderr, err))
    reader.daemon = True
    reader.start()
    sent = [0]

    def body():
        while True:
            chunk = proc.stdout.read(CHUNK)
            if not chunk:
                return
            sent[0] += len(chunk)
            yield chunk

    where = "the restore (%s)" % endpoint
    try:
        # never retried: the body is a stream, and a restore is not a request to repeat blindly
        response = client._call(
            lambda: client.session.post(client.url + "/v1/" + endpoint, headers=_headers(client), data=body(),
                                        verify=client.verify, timeout=max(30.0, deadline.left())),
            where, retry=False)
    finally:
        proc.stdout.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
    if proc.returncode != 0:
        raise SnapshotError("restic dump of %s failed: %s" % (snapshot_id, restic.clean(b"".join(err))))
    _check_status(response, where)
    return sent[0]


def snapshots(restic, name, latest=None, timeout=300):
    """The Vault snapshots of ``name``, oldest first (``latest``: only the newest n)."""
    args = ["snapshots", "--json", "--host", name, "--tag", TAG]
    if latest:
        args += ["--latest", str(int(latest))]
    proc = restic.run(*args, timeout=timeout)
    try:
        found = json.loads(proc.stdout.decode("utf-8") or "[]") or []
    except ValueError:
        raise SnapshotError("restic snapshots returned no JSON")
    return sorted(found, key=lambda item: item.get("time", ""))


def snapshot_view(snapshot, now):
    """id, time, age_seconds, raft_index, vault_version of a Vault snapshot in the repository."""
    view = restic_backup.snapshot_view(snapshot, now)
    tags = dict(tag.split("=", 1) for tag in snapshot.get("tags") or [] if "=" in tag)
    view.pop("messages", None)
    view.pop("bytes", None)
    view["raft_index"] = int(tags["raft_index"]) if tags.get("raft_index", "").isdigit() else None
    view["vault_version"] = tags.get("vault_version")
    return view


def last_backup(restic, name, now, timeout=120):
    """The newest Vault snapshot's view, or None when the repository holds none (or does not exist yet)."""
    try:
        if not restic.exists(timeout=timeout):
            return None
        found = snapshots(restic, name, latest=1, timeout=timeout)
    except SyncError as exc:
        raise SnapshotError(str(exc))
    return snapshot_view(found[-1], now) if found else None


__all__ = ["SnapshotError", "raft_health", "backup", "restore", "snapshots", "snapshot_view", "last_backup",
           "TAG", "STDIN_NAME", "DEFAULT_NAME"]


# ---------------------------------------------------------------------------------------
# After a restore: the hosts' serials
# ---------------------------------------------------------------------------------------
SERIAL_TAG = "# penguinmails-serial"


def host_serials(text, marker_prefix, tenant_id):
    """``{role: highest serial}`` of the tenant's markers (``<prefix>:<tenant>:<role>``) in authorized_keys text."""
    found = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 4 and " ".join(parts[:2]) == SERIAL_TAG and parts[3].isdigit():
            prefix, _sep, rest = parts[2].partition(":")
            tenant, _sep, role = rest.rpartition(":")
            if prefix == marker_prefix and tenant == tenant_id and role:
                found[role] = max(found.get(role, 0), int(parts[3]))
    return found


def advance(client, mount, path, beyond, check_mode=False):
    """Write the latest data of ``mount/path`` again (check-and-set, unchanged) until its version is at least
    ``beyond``; ``(version before, version after, writes)``. A host refuses keys of a lower serial (the KV version)
    than it holds: after a restore, the versions written since the snapshot are lost in Vault but not on the host."""
    secret = client.read(mount, path)
    before = version = int(secret.version or 0)
    writes = 0
    while version < beyond:
        writes += 1
        if check_mode:
            version += 1
            continue
        version = int(client.write(mount, path, secret.data, cas=version))
    return before, version, writes
