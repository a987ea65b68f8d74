# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's backup host: a lab host (network namespace, private mounts, a real sshd with its SFTP subsystem) that
holds the tenants' restic repositories, as a storage box or a backup server would in production.

    info = backup_host(lab)         # created once per lab; {"name", "ip", "repository", "sftp_command", "vars", "root"}
    info["vars"]                    # the extra vars that point penguinmails.vps.backup and .migrate at it

The controller reaches it as root with the lab's controller key, and restic's ssh checks its host keys against a
known_hosts file made from the host's own public host keys (never StrictHostKeyChecking=no). Repositories are
``/root/restic/<tenant>`` on the host (its private /root).
"""

from __future__ import annotations

import glob
import os
import shlex

NAME = "backup"


def _known_hosts(lab, host):
    path = os.path.join(lab.state_dir, "backup_known_hosts")
    keys = []
    for pub in sorted(glob.glob(os.path.join(host["root"], "fs", "etc", "ssh", "ssh_host_*_key.pub"))):
        with open(pub) as handle:
            key_type, key = handle.read().split()[:2]
        keys.append("%s %s %s\n" % (host["ip"], key_type, key))
    with open(path, "w") as handle:
        handle.writelines(keys)
    return path


def backup_host(lab, name=NAME):
    """The lab's backup host (made at the first call; later calls return the same)."""
    existing = [host for host in lab.hosts() if host["name"] == name]
    host = existing[0] if existing else lab.create_host(name)
    known_hosts = _known_hosts(lab, host)
    sftp_command = " ".join(shlex.quote(part) for part in [
        "ssh", "-F", "/dev/null", "-i", lab.private_key, "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
        "-o", "BatchMode=yes", "-o", "UserKnownHostsFile=%s" % known_hosts, "-o", "StrictHostKeyChecking=yes",
        "root@%s" % host["ip"], "-s", "sftp"])
    repository = "sftp:root@%s:/root/restic/{tenant}" % host["ip"]
    return {
        "name": name,
        "ip": host["ip"],
        "root": os.path.join(host["root"], "fs", "root", "restic"),
        "repository": repository,
        "sftp_command": sftp_command,
        "vars": {"penguinmails_backup_repository": repository, "penguinmails_backup_sftp_command": sftp_command},
    }
