# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backups of a tenant's mailboxes with restic (Debian's ``restic``), run on the controller.

A snapshot is the tar stream of the tenant's mail data (:mod:`maildir_sync`: messages, flags, UIDs; never
indexes, configuration or executables) read over SSH from the VPS and fed to ``restic backup --stdin``;
content-defined chunking deduplicates it against earlier snapshots. A restore is ``restic dump`` of a snapshot
fed to the same receiver a migration copy uses, so it lands in Dovecot's layout with its UIDs.

restic and the repository's credentials stay on the controller: the VPS only runs ``tar`` (backup) or the
receiver (restore), and the repository password never reaches it. The password is per tenant, in Vault at
``<vps mount>/<tenant>/backup`` (field ``restic_password``, made once with check-and-set ``cas=0``; the
repository URL is kept beside it), and goes to restic in its environment (``RESTIC_PASSWORD``), never in
an argument, a file or a message.

Repositories: ``sftp:user@host:/path`` (the lab's backup host; ``sftp_command`` sets the ssh command with its
key and known_hosts) or any other restic backend, e.g. ``s3:https://s3.example.com/bucket/<tenant>`` with its
credentials in ``env`` (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os
import re
import secrets
import subprocess

from ansible_collections.penguinmails.vps.plugins.module_utils import maildir_sync
from ansible_collections.penguinmails.vps.plugins.module_utils.maildir_sync import SyncError
from ansible_collections.penguinmails.vps.plugins.module_utils.timeutil import format_time, parse_time
from ansible_collections.penguinmails.vps.plugins.module_utils.validators import validate_tenant_id
from ansible_collections.penguinmails.vps.plugins.module_utils.vault_client import VaultCASConflict

STDIN_NAME = "mail.tar"
TAG = "penguinmails-mail"
RETENTION_KEYS = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
_MISSING_REPO_RE = re.compile(r"Is there a repository|unable to open config file|does not exist|repository not found",
                              re.IGNORECASE)
# Environment variables that would make restic read another password or repository than the one given.
_RESTIC_ENV = ("RESTIC_PASSWORD", "RESTIC_PASSWORD_FILE", "RESTIC_PASSWORD_COMMAND", "RESTIC_REPOSITORY",
               "RESTIC_REPOSITORY_FILE", "RESTIC_KEY_HINT")


def secret_path(tenant_id, mount="vps"):
    """``(mount, "<tenant>/backup")``: where the tenant's restic password lives."""
    return mount, "%s/backup" % validate_tenant_id(tenant_id)


def repository_for(template, tenant_id):
    """The tenant's repository: ``{tenant}`` in ``template`` replaced (one repository, one password per tenant)."""
    tenant_id = validate_tenant_id(tenant_id)
    if not template or "\n" in template:
        raise SyncError("backup_repository must be a restic repository (sftp:..., s3:..., a path)")
    return template.replace("{tenant}", tenant_id)


class BackupSecret(object):
    """The tenant's restic password and repository in Vault."""

    def __init__(self, client, tenant_id, mount="vps"):
        self.client = client
        self.tenant_id = validate_tenant_id(tenant_id)
        self.mount, self.path = secret_path(tenant_id, mount)

    def read(self):
        secret = self.client.read_or_none(self.mount, self.path)
        return secret.data if secret else None

    def ensure(self, repository, now=None):
        """The stored data, made once (``cas=0``: of two concurrent first runs, the second uses the first's)."""
        data = self.read()
        if data and data.get("restic_password"):
            return data, False
        data = {"restic_password": secrets.token_urlsafe(32), "repository": repository,
                "created_at": format_time(now or datetime.datetime.now(datetime.timezone.utc))}
        try:
            self.client.write(self.mount, self.path, data, cas=0)
        except VaultCASConflict:
            return self.read(), False
        return data, True


class Restic(object):
    """restic on one repository; the password goes in the environment only."""

    def __init__(self, repository, password, binary="restic", sftp_command=None, env=None, cache_dir=None):
        self.repository = repository
        self.password = password
        self.binary = binary
        self.sftp_command = sftp_command
        self.extra_env = dict(env or {})
        self.cache_dir = cache_dir

    def argv(self, *args):
        argv = [self.binary, "--repo", self.repository]
        if self.sftp_command:
            argv += ["--option", "sftp.command=%s" % self.sftp_command]
        if self.cache_dir:
            argv += ["--cache-dir", self.cache_dir]
        return argv + list(args)

    def env(self):
        env = dict((key, value) for key, value in os.environ.items() if key not in _RESTIC_ENV)
        env.update(self.extra_env)
        env["RESTIC_PASSWORD"] = self.password
        return env

    def run(self, *args, **kwargs):
        timeout = kwargs.get("timeout", 600)
        try:
            proc = subprocess.run(self.argv(*args), capture_output=True, timeout=timeout, env=self.env(), check=False,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise SyncError("restic %s did not finish within %d s" % (args[0], timeout))
        except OSError as exc:
            raise SyncError("cannot run %s: %s (install Debian's restic on the controller)" % (self.binary, exc.strerror))
        if proc.returncode != 0 and not kwargs.get("allow_fail"):
            raise SyncError("restic %s failed: %s" % (args[0], self.clean(proc.stderr)))
        return proc

    def clean(self, data):
        """The last line of restic's error output, without the password (restic never prints it; belt and braces)."""
        line = maildir_sync._last_line(data)
        return line.replace(self.password, "********") if self.password else line

    def exists(self, timeout=120):
        proc = self.run("cat", "config", allow_fail=True, timeout=timeout)
        if proc.returncode == 0:
            return True
        if _MISSING_REPO_RE.search(proc.stderr.decode("utf-8", "replace")):
            return False
        raise SyncError("restic cannot open %s: %s" % (self.repository, self.clean(proc.stderr)))

    def init(self, timeout=120):
        self.run("init", timeout=timeout)

    def snapshots(self, host, timeout=300):
        """The tenant's mail snapshots, oldest first: dicts with id, short_id, time, tags, paths."""
        proc = self.run("snapshots", "--json", "--host", host, "--tag", TAG, timeout=timeout)
        try:
            found = json.loads(proc.stdout.decode("utf-8") or "[]") or []
        except ValueError:
            raise SyncError("restic snapshots returned no JSON")
        return sorted(found, key=lambda item: item.get("time", ""))

    def backup(self, source_argv, feed, host, tags, deadline):
        """``source | restic backup --stdin``; restic's summary (snapshot_id, total_bytes_processed, data_added)."""
        argv = self.argv("backup", "--stdin", "--stdin-filename", STDIN_NAME, "--host", host, "--json", "--tag", TAG)
        for tag in tags:
            argv += ["--tag", tag]
        return maildir_sync.pipe(source_argv, argv, deadline, feed=feed, what="backup",
                                 target_env=self.env(), finished=lambda report: report.get("message_type") == "summary")

    def forget(self, host, retention, timeout=600, tag=TAG):
        """Apply ``retention`` ({last, hourly, daily, ...}: how many to keep) and prune; the ids removed.
        ``tag``: the kind of snapshot (the mail's by default; vault_snapshot passes its own)."""
        args = ["forget", "--json", "--host", host, "--tag", tag, "--prune"]
        for key in RETENTION_KEYS:
            if retention.get(key):
                args += ["--keep-%s" % key, str(int(retention[key]))]
        proc = self.run(*args, timeout=timeout)
        removed = []
        for line in proc.stdout.decode("utf-8", "replace").splitlines():
            line = line.strip()
            if not line.startswith("["):
                continue
            try:
                groups = json.loads(line)
            except ValueError:
                continue
            for group in groups or []:
                removed += [item.get("short_id") or item.get("id", "")[:8] for item in group.get("remove") or []]
        return removed

    def dump_argv(self, snapshot_id):
        return self.argv("dump", snapshot_id, "/" + STDIN_NAME)


def snapshot_view(snapshot, now):
    """What the playbooks report about a snapshot: id, time, age (the RPO of a restore), tags."""
    when = parse_time(snapshot.get("time"))
    tags = dict(tag.split("=", 1) for tag in snapshot.get("tags") or [] if "=" in tag)
    view = {
        "id": snapshot.get("short_id") or (snapshot.get("id") or "")[:8],
        "time": format_time(when) if when else snapshot.get("time", ""),
        "age_seconds": int((now - when).total_seconds()) if when else None,
        "messages": int(tags["messages"]) if tags.get("messages", "").isdigit() else None,
        "bytes": int(tags["bytes"]) if tags.get("bytes", "").isdigit() else None,
    }
    return view


def check_retention(retention):
    """The retention mapping, checked: keys of RETENTION_KEYS, whole numbers >= 0, at least one snapshot kept."""
    retention = dict(retention or {})
    for key, value in retention.items():
        if key not in RETENTION_KEYS:
            raise SyncError("retention: unknown key %r, choose among %s" % (key, ", ".join(RETENTION_KEYS)))
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SyncError("retention: %s must be a whole number of snapshots (0 or more)" % key)
    if retention and not any(retention.values()):
        raise SyncError("retention keeps no snapshot at all: set at least one of %s above 0" % ", ".join(RETENTION_KEYS))
    return retention
