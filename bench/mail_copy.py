#!/usr/bin/env python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: the migration's mailbox copy (penguinmails.vps.mailbox_sync) vs a plain ``rsync -a`` of the same maildir.

Two lab hosts (network namespaces with a real sshd, tests/lab/hosts.py) on the lab network; the old one holds
--messages messages (default 10 000, 2-12 KiB each, flags in their names) in an INBOX and --folders folders, with
Dovecot's uidlists, under /mailu/mail. In the same run:

  ours    mailbox_sync's copy: find on both hosts, tar on the old host -> ssh -> (controller pipe) -> ssh -> the
          receiver on the new host (each file to tmp/, fsync, rename; flags, dates, uidlists)
  rsync   ``rsync -a`` run on the new host from the old one over ssh (one hop; the new host gets a bench key),
          into a directory of its own
  dsync   Dovecot's own replicator (what Mailu ships): ``doveadm backup -R`` on the new host, pulling over ssh from
          ``doveadm dsync-server`` on the old one (one hop, like rsync), both hosts running the lab's Mailu
          daemons; the old host's indexes are built before the first timed run (a live server has them)
  rerun   each again with nothing to copy (what a final delta costs when little arrived)
  delta   ours again with nothing to copy, the source listing only what changed since the copy (changed_since)

Reported: seconds, messages/s and MB/s (message bytes), median of --repeat runs (each on an emptied target),
and the load average (``/proc/loadavg``) before and after: the machine is shared, compare the ratios of one run.

    .venv/bin/python bench/mail_copy.py [--messages 10000] [--folders 5] [--repeat 3] [--no-dsync] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "collections"))

from ansible_collections.penguinmails.vps.plugins.module_utils import maildir_sync  # noqa: E402
from tests.lab.mail import MailLab  # noqa: E402

USER = "bench@bench.test"
DOVEADM = "doveadm -c /run/mailu-lab/etc/dovecot/dovecot.conf"
FLAGS = ["S", "RS", "FS", "", "S", "S", "DS"]


def known_hosts(host, path):
    import glob

    with open(path, "w") as handle:
        for pub in sorted(glob.glob(os.path.join(host["root"], "fs", "etc", "ssh", "ssh_host_*_key.pub"))):
            key_type, key = open(pub).read().split()[:2]
            handle.write("%s %s %s\n" % (host["ip"], key_type, key))
    return path


def fill(root, messages, folders):
    """``messages`` Maildir files under ``root`` (the old host's /mailu/mail); returns their total bytes."""
    rng = random.Random(13)
    mail_uid, mail_gid = 8, 8
    boxes = [""] + [".Folder%d" % n for n in range(folders)]
    total = 0
    lines = {box: [] for box in boxes}
    body = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 40).encode()
    for n in range(messages):
        box = boxes[n % len(boxes)] if n % 3 == 0 else ""
        size = rng.randint(2048, 12288)
        data = (b"From: a@b.test\r\nTo: %s\r\nSubject: message %d\r\nMessage-ID: <%d@bench>\r\n\r\n"
                % (USER.encode(), n, n)) + (body * (size // len(body) + 1))[:size]
        base = "%d.M%dP%d.bench,S=%d" % (1700000000 + n, n, 4242, len(data))  # S= is the size Dovecot trusts
        flags = FLAGS[n % len(FLAGS)]
        sub = "new" if n % 17 == 0 else "cur"
        name = base if sub == "new" else "%s:2,%s" % (base, flags)
        directory = os.path.join(root, USER, box, sub)
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, name)
        with open(path, "wb") as handle:
            handle.write(data)
        os.chown(path, mail_uid, mail_gid)
        total += len(data)
        lines[box].append("%d :%s" % (len(lines[box]) + 1, base))
    for box, entries in lines.items():
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(root, USER, box, sub), exist_ok=True)
        with open(os.path.join(root, USER, box, "dovecot-uidlist"), "w") as handle:
            handle.write("3 V1700000000 N%d\n" % (len(entries) + 1) + "\n".join(entries) + "\n")
        if box:
            open(os.path.join(root, USER, box, "maildirfolder"), "w").close()
    subprocess.run(["chown", "-R", "8:8", os.path.join(root, USER)], check=True)
    return total


def load():
    with open("/proc/loadavg") as handle:
        return " ".join(handle.read().split()[:3])


def start_mailu(host, password):
    """The lab's Mailu daemons on ``host`` with the bench account (dsync needs Dovecot's auth for the user)."""
    host.write_env("bench.test")
    host.add_dkim_key("bench.test")
    host.admin("bench", "bench.test", password, "create")
    host.start()


def clear(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, exist_ok=True)
    os.chown(path, 8, 8)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--folders", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--compress", action="store_true", help="also time ours with compression on the wire")
    parser.add_argument("--no-dsync", action="store_true", help="leave Dovecot's dsync out (no Mailu daemons)")
    parser.add_argument("--json")
    args = parser.parse_args()
    keys = (["ours", "rsync", "ours_rerun", "ours_delta", "rsync_rerun"] + ([] if args.no_dsync else ["dsync", "dsync_rerun"])
            + (["ours_compressed"] if args.compress else []))
    results = {key: [] for key in keys}
    load_before = load()
    with MailLab() as lab:
        old, new = lab.host("mcold"), lab.host("mcnew")
        total = fill(old.path("/mailu/mail"), args.messages, args.folders)
        ssh_common = ["-i", lab.key, "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none"]
        ends = {}
        for host in (old, new):
            kh = known_hosts(host, os.path.join(lab.state_dir, "kh-%s" % host["name"]))
            args_text = " ".join(shlex.quote(part) for part in ssh_common + [
                "-o", "UserKnownHostsFile=%s" % kh, "-o", "StrictHostKeyChecking=yes"])
            ends[host["name"]] = maildir_sync.Endpoint(host["ip"], args_text)
        # rsync runs on the new host: give it a bench key (lab only) and the old host's host keys.
        ssh_dir = new.path("/root/.ssh")
        shutil.copy(lab.key, os.path.join(ssh_dir, "bench_key"))
        os.chmod(os.path.join(ssh_dir, "bench_key"), 0o600)
        shutil.copy(os.path.join(lab.state_dir, "kh-mcold"), os.path.join(ssh_dir, "bench_known_hosts"))
        rsync_ssh = ("ssh -i /root/.ssh/bench_key -o IdentitiesOnly=yes -o UserKnownHostsFile=/root/.ssh/bench_known_hosts"
                     " -o StrictHostKeyChecking=yes")
        rsync = ["rsync", "-a", "-e", rsync_ssh, "root@%s:/mailu/mail/" % old["ip"], "/mailu/mail-rsync/"]
        dsync = (DOVEADM.split() + ["backup", "-R", "-u", USER] + rsync_ssh.split()
                 + ["root@%s" % old["ip"], "%s dsync-server -u %s" % (DOVEADM, USER)])
        if not args.no_dsync:
            password = "Bench-" + os.urandom(6).hex()
            for host in (old, new):
                start_mailu(host, password)
            proc = old.exec(DOVEADM.split() + ["mailbox", "status", "-u", USER, "messages", "*"], timeout=600)
            assert proc.returncode == 0, proc.stderr
        # The delta lists what changed since a few seconds before the copy: the filled maildir must be older.
        time.sleep(maildir_sync.CLOCK_MARGIN + 1)
        for _round in range(args.repeat):
            clear(new.path("/mailu/mail"))
            started = time.monotonic()
            copied = maildir_sync.sync(ends["mcold"], ends["mcnew"], "copy", timeout=3600)
            results["ours"].append(time.monotonic() - started)
            assert copied["messages"] == args.messages, copied
            started = time.monotonic()
            report = maildir_sync.sync(ends["mcold"], ends["mcnew"], "merge", timeout=3600)
            results["ours_rerun"].append(time.monotonic() - started)
            assert report["messages"] == 0, report
            started = time.monotonic()
            report = maildir_sync.sync(ends["mcold"], ends["mcnew"], "merge", timeout=3600,
                                       changed_since=copied["source_time"])
            results["ours_delta"].append(time.monotonic() - started)
            assert report["messages"] == 0 and report["source"]["messages"] == 0, report
            if args.compress:
                clear(new.path("/mailu/mail"))
                started = time.monotonic()
                report = maildir_sync.sync(ends["mcold"], ends["mcnew"], "copy", timeout=3600, compress=True)
                results["ours_compressed"].append(time.monotonic() - started)
                assert report["messages"] == args.messages, report
            clear(new.path("/mailu/mail-rsync"))
            for key in ("rsync", "rsync_rerun"):
                started = time.monotonic()
                proc = new.exec(rsync, timeout=3600)
                results[key].append(time.monotonic() - started)
                assert proc.returncode == 0, proc.stderr
            if args.no_dsync:
                continue
            clear(new.path("/mailu/mail"))
            for key in ("dsync", "dsync_rerun"):
                started = time.monotonic()
                proc = new.exec(dsync, timeout=3600)
                results[key].append(time.monotonic() - started)
                assert proc.returncode == 0, proc.stderr
            proc = new.exec(DOVEADM.split() + ["-f", "flow", "mailbox", "status", "-u", USER, "messages", "*"])
            copied = sum(int(word.split("=")[1]) for word in proc.stdout.split() if word.startswith("messages="))
            assert copied == args.messages, proc.stdout + proc.stderr
    megabytes = total / 1e6
    summary = {"messages": args.messages, "message_bytes": total, "repeat": args.repeat, "load_before": load_before,
               "load_after": load()}
    print("mail copy of %d messages (%.1f MB of messages), median of %d runs; load average %s before, %s after"
          % (args.messages, megabytes, args.repeat, summary["load_before"], summary["load_after"]))
    print("%-12s %9s %12s %9s" % ("", "seconds", "messages/s", "MB/s"))
    for key in keys:
        seconds = statistics.median(results[key])
        summary[key] = {"seconds": round(seconds, 2), "messages_per_s": round(args.messages / seconds),
                        "mb_per_s": round(megabytes / seconds, 1)}
        rate = "" if key.endswith(("rerun", "delta")) else "%12d %9.1f" % (args.messages / seconds, megabytes / seconds)
        print("%-12s %9.2f %s" % (key, seconds, rate))
    print("ours/rsync: %.2fx the time (copy), %.2fx (rerun)" % (
        summary["ours"]["seconds"] / summary["rsync"]["seconds"],
        summary["ours_rerun"]["seconds"] / summary["rsync_rerun"]["seconds"]))
    print("ours (changed_since)/rsync rerun: %.2fx" % (summary["ours_delta"]["seconds"] / summary["rsync_rerun"]["seconds"]))
    if not args.no_dsync:
        print("ours/dsync: %.2fx the time (copy), %.2fx (rerun)" % (
            summary["ours"]["seconds"] / summary["dsync"]["seconds"],
            summary["ours_rerun"]["seconds"] / summary["dsync_rerun"]["seconds"]))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(summary, handle, indent=2)


if __name__ == "__main__":
    main()
