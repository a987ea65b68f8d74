#!/usr/bin/env python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: a whole migration (playbooks/migrate.yml, reason=upgrade) of a tenant whose mailbox holds --messages
messages, in the lab.

The lab is brought up, one tenant seeded (its old VPS runs the lab's Mailu daemons), then its mailbox gets
--messages extra messages (2-12 KiB, flags in their names, spread over --folders folders with Dovecot uidlists,
100 000 messages are about 0.7 GB) written straight into the old VPS's maildir. Then the migration runs as an
operator runs it. Reported: the fill size, the playbook's wall time, each step's time from the tenant record, the
cutover window (the DNS switch to the final delta done: the time the tenant's clients may see an incomplete
mailbox), the mailbox copy's own rate, and whether every message arrived (counted on the new VPS). The load average
is printed before and after: the machine is shared.

    .venv/bin/python bench/migrate_mailbox.py [--messages 100000] [--folders 5] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tests.lab import lab as lab_core  # noqa: E402
from tests.lab import seed  # noqa: E402
from tests.lab.demo import parse_time, step_lines  # noqa: E402

MAIL_UID = MAIL_GID = 8
FLAGS = ["S", "RS", "FS", "", "S", "S", "DS"]


def load():
    with open("/proc/loadavg") as handle:
        return " ".join(handle.read().split()[:3])


def fill(maildir, messages, folders, address):
    """``messages`` messages in ``folders`` new folders of the maildir ``maildir`` (each with its uidlist)."""
    rng = random.Random(23)
    boxes = [".Archive%d" % n for n in range(folders)]
    body = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 40).encode()
    entries = {box: [] for box in boxes}
    total = 0
    for box in [""] + boxes:  # the INBOX too: the seeded mailbox may not exist before its first delivery
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(maildir, box, sub), exist_ok=True)
    for n in range(messages):
        box = boxes[n % len(boxes)]
        size = rng.randint(2048, 12288)
        data = (b"From: a@b.test\r\nTo: %s\r\nSubject: archived %d\r\nMessage-ID: <%d@bench>\r\n\r\n"
                % (address.encode(), n, n)) + (body * (size // len(body) + 1))[:size]
        base = "%d.M%dP%d.bench,S=%d" % (1700000000 + n, n, 4343, len(data))
        path = os.path.join(maildir, box, "cur", "%s:2,%s" % (base, FLAGS[n % len(FLAGS)]))
        with open(path, "wb") as handle:
            handle.write(data)
        total += len(data)
        entries[box].append("%d :%s" % (len(entries[box]) + 1, base))
    for box, lines in entries.items():
        with open(os.path.join(maildir, box, "dovecot-uidlist"), "w") as handle:
            handle.write("3 V1700000001 N%d\n" % (len(lines) + 1) + "\n".join(lines) + "\n")
        open(os.path.join(maildir, box, "maildirfolder"), "w").close()
    # Mailu's mail root belongs to the mail user (a seeded host may not have one before its first delivery)
    subprocess.run(["chown", "%d:%d" % (MAIL_UID, MAIL_GID), os.path.dirname(maildir)], check=True)
    subprocess.run(["chown", "-R", "%d:%d" % (MAIL_UID, MAIL_GID), maildir], check=True)
    return total


def count(maildir, folders):
    found = 0
    for n in range(folders):
        for sub in ("cur", "new"):
            directory = os.path.join(maildir, ".Archive%d" % n, sub)
            if os.path.isdir(directory):
                found += len(os.listdir(directory))
    return found


def host_maildir(desc, serviceid, address):
    return os.path.join(desc["state_dir"], "hosts", seed.lab_host_name(desc, serviceid), "fs", "mailu", "mail", address.lower())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--messages", type=int, default=100000)
    parser.add_argument("--folders", type=int, default=5)
    parser.add_argument("--tenant", default="bulk")
    parser.add_argument("--timeout", type=int, default=3600)
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--keep-lab", action="store_true", help="leave the lab up (to look at a failure); labctl down later")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench: the lab needs root (network namespaces, mounts)", file=sys.stderr)
        return 2
    state_dir = tempfile.mkdtemp(prefix="pm-bench-lab-")
    workdir = tempfile.mkdtemp(prefix="pm-bench-migrate-")
    os.chmod(workdir, 0o700)
    figures = {"messages": args.messages, "load_before": load()}
    code = 1
    try:
        desc = lab_core.up(state_dir, owner_pid=os.getpid())
        tenant = seed.seed_tenant(desc, args.tenant)
        old_maildir = host_maildir(desc, tenant["old_vps"]["serviceid"], tenant["admin_user"])
        started = time.monotonic()
        figures["bytes"] = fill(old_maildir, args.messages, args.folders, tenant["admin_user"])
        figures["fill_seconds"] = round(time.monotonic() - started, 1)
        print("filled %d messages, %.1f MB in %d folders of %s on the old VPS in %.1fs (load %s)" % (
            args.messages, figures["bytes"] / 1e6, args.folders, tenant["admin_user"], figures["fill_seconds"], load()))

        started = time.monotonic()
        proc = seed.run_migrate(desc, tenant, workdir, reason="upgrade", timeout=args.timeout,
                                extra_vars={"migrate_mail_timeout": args.timeout})
        figures["playbook_seconds"] = round(time.monotonic() - started, 1)
        with open(os.path.join(workdir, "migrate.out"), "w") as handle:
            handle.write(proc.stdout + proc.stderr)
        record = seed.read_record(desc, args.tenant) or {}
        last = record.get("last_migration") or {}
        steps = {name: parse_time(stamp) for name, stamp in (last.get("steps") or {}).items()}
        if proc.returncode != 0 or "final_delta" not in steps:
            shutil.copy(os.path.join(workdir, "migrate.out"), "/tmp/bench-migrate-mailbox.out")
            print("migration FAILED (exit %s), its output: /tmp/bench-migrate-mailbox.out" % proc.returncode)
            for line in [line for line in proc.stdout.splitlines() if "FAILED" in line or "fatal" in line][-5:]:
                print("  " + line[:300])
            return 1
        for line in step_lines(last):
            print(line)
        copy = (steps["mail_copied"] - steps["dkim"]).total_seconds()
        figures.update({
            "copy_seconds": round(copy, 1),
            "copy_mb_per_s": round(figures["bytes"] / 1e6 / copy, 1) if copy > 0 else None,
            "cutover_seconds": round((steps["final_delta"] - steps["dns_switched"]).total_seconds(), 1),
            "arrived": count(host_maildir(desc, record.get("vps_id"), tenant["admin_user"]), args.folders),
            "load_after": load(),
        })
        print("playbook %.1fs; mailbox copy (dkim -> mail_copied) %.1fs = %s MB/s; cutover window (dns_switched -> "
              "final_delta) %.1fs; %d of %d messages on the new VPS; load %s -> %s" % (
                  figures["playbook_seconds"], figures["copy_seconds"], figures["copy_mb_per_s"],
                  figures["cutover_seconds"], figures["arrived"], args.messages, figures["load_before"], figures["load_after"]))
        code = 0 if figures["arrived"] == args.messages else 1
    finally:
        if args.json:
            with open(args.json, "w") as handle:
                json.dump(figures, handle, indent=2, sort_keys=True)
        if args.keep_lab:
            print("the lab stays up: %s" % state_dir)
        else:
            lab_core.down(state_dir)
        shutil.rmtree(workdir, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
