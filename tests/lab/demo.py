# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""`make demo`: bring the lab up, seed one tenant, migrate it with playbooks/migrate.yml, tear down.

    .venv/bin/python tests/lab/demo.py [--tenant acme] [--reason compromise] [--keep-output DIR]

Prints the old and new VPS, the migration steps with their durations (from the tenant record's
step times), the audit events of the run and the wall time. Exits non-zero when anything fails.
Never prints a secret (the lab's tokens and keys stay in the lab's 0600 state dir).
"""

from __future__ import annotations

import argparse
import datetime
import email
import email.policy
import os
import shutil
import sys
import tempfile
import time

if __package__ in (None, ""):  # run as a script: make `tests.lab` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tests.lab import lab as lab_core  # noqa: E402
from tests.lab import mail as lab_mail  # noqa: E402
from tests.lab import seed  # noqa: E402


def parse_time(text):
    return datetime.datetime.strptime(text.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z" if "." in text
                                      else "%Y-%m-%dT%H:%M:%S%z")


def step_lines(migration):
    """One line per step: its time from the first step and how long it took after the previous one."""
    ordered = sorted((migration.get("steps") or {}).items(), key=lambda item: item[1])
    lines = []
    first = previous = parse_time(ordered[0][1]) if ordered else None
    for name, stamp in ordered:
        moment = parse_time(stamp)
        lines.append("  %-18s +%5.1fs  (%4.1fs)" % (name, (moment - first).total_seconds(), (moment - previous).total_seconds()))
        previous = moment
    return lines


def notified(desc, record, tenant):
    """Whether the migration notice reached the tenant's mailbox on the new VPS."""
    root = os.path.join(desc["state_dir"], "hosts", seed.lab_host_name(desc, record.get("vps_id")), "fs", "mailu")
    for path in lab_mail.mailbox_messages(root, tenant["admin_user"]):
        with open(path, "rb") as handle:
            message = email.message_from_binary_file(handle, policy=email.policy.default)
        if "moved to a new VPS" in str(message["Subject"]):
            return True
    return False


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--tenant", default="acme")
    parser.add_argument("--reason", default="compromise", choices=["compromise", "failure", "upgrade"])
    parser.add_argument("--keep-output", help="copy the playbook output and audit file to this directory")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("demo: the lab needs root (network namespaces, mounts)", file=sys.stderr)
        return 2

    wall = time.monotonic()
    state_dir = tempfile.mkdtemp(prefix="pm-demo-lab-")
    workdir = tempfile.mkdtemp(prefix="pm-demo-")
    os.chmod(workdir, 0o700)
    code = 1
    try:
        print("== lab up")
        started = time.monotonic()
        desc = lab_core.up(state_dir, owner_pid=os.getpid())
        print("   OpenBao %s, BIND9 %s:%s (zone %s), Hostwinds simulator %s  [%.1fs]" % (
            desc["vault"]["addr"], desc["dns"]["address"], desc["dns"]["port"], ", ".join(desc["dns"]["zones"]),
            desc["hostwinds"]["url"], time.monotonic() - started))

        print("== seed tenant %s" % args.tenant)
        started = time.monotonic()
        tenant = seed.seed_tenant(desc, args.tenant)
        old = tenant["old_vps"]
        print("   domain %s, old VPS %s (serviceid %s) at %s, Mailu (Postfix, Dovecot, Rspamd) + DKIM + DNS + Vault  [%.1fs]" % (
            tenant["domain"], old["name"], old["serviceid"], old["ip"], time.monotonic() - started))

        print("== ansible-playbook penguinmails.vps.migrate -e tenant_id=%s -e reason=%s" % (args.tenant, args.reason))
        started = time.monotonic()
        audit_file = os.path.join(workdir, "audit.jsonl")
        proc = seed.run_migrate(desc, tenant, workdir, reason=args.reason, audit_file=audit_file)
        migrate_time = time.monotonic() - started
        with open(os.path.join(workdir, "migrate.out"), "w") as handle:
            handle.write(proc.stdout + proc.stderr)
        recap = [line for line in proc.stdout.splitlines() if "ok=" in line and "failed=" in line]
        for line in recap:
            print("   " + " ".join(line.split()))
        events = seed.read_events(audit_file)
        record = seed.read_record(desc, args.tenant) or {}
        if proc.returncode != 0:
            tail = [line for line in proc.stdout.splitlines() if "FAILED" in line or "fatal" in line]
            print("   migration FAILED (exit %s):" % proc.returncode)
            for line in tail[-5:]:
                print("   " + line[:300])
        else:
            last = record.get("last_migration") or {}
            print("   old VPS  %s  %s (serviceid %s)" % (old["name"], old["ip"], old["serviceid"]))
            print("   new VPS  %s  %s (serviceid %s)" % (record.get("vps_name"), record.get("vps_ip"), record.get("vps_id")))
            print("   steps (time from the first step, duration):")
            for line in step_lines(last):
                print(" " + line)
            print("   DNS now: %s A %s; %s MX %s" % (
                tenant["mail_host"], ", ".join(seed.dns_query(desc, tenant["mail_host"] + ".", "A")),
                tenant["domain"], ", ".join(seed.dns_query(desc, tenant["domain"] + ".", "MX"))))
            gone = not seed.instances_named(desc, old["name"])
            wiped = "yes" if (last.get("notes") or {}).get("old_vps_wiped") else "no"
            print("   old VPS wiped: %s, destroyed: %s" % (wiped, "yes" if gone else "NO"))
            rotated = (last.get("notes") or {}).get("rotated") or []
            print("   secrets replaced in Vault before the new VPS got anything: %s" % (", ".join(rotated) or "none (kept)"))
            note = "yes, mail in %s's mailbox on the new VPS" % tenant["admin_user"] if notified(desc, record, tenant) else "NO"
            print("   tenant notified: %s" % note)
        print("   audit events:")
        for event in events:
            print("     %s %-28s %-8s %-8s tenant=%s vps=%s from=%s" % (
                event.get("timestamp", "")[11:19], event.get("action"), event.get("status"), event.get("severity"),
                event.get("tenantId"), (event.get("details") or {}).get("vps_ip") or "-", event.get("ipAddress") or "-"))
        print("   playbook time %.1fs" % migrate_time)
        actions = [event.get("action") for event in events]
        ok = (proc.returncode == 0 and "vps_migration_completed" in actions and "smtp_credentials_recovered" in actions
              and "vps_migration_failed" not in actions)
        code = 0 if ok else 1
    except Exception as exc:  # one line, no secrets; the lab is torn down below
        print("demo failed: %s: %s" % (type(exc).__name__, str(exc).splitlines()[0] if str(exc) else ""), file=sys.stderr)
        code = 1
    finally:
        if args.keep_output:
            os.makedirs(args.keep_output, exist_ok=True)
            for name in ("migrate.out", "audit.jsonl"):
                if os.path.exists(os.path.join(workdir, name)):
                    shutil.copy(os.path.join(workdir, name), args.keep_output)
        print("== lab down")
        try:
            lab_core.down(state_dir)
        except Exception as exc:  # still report the run
            print("lab down failed: %s" % exc, file=sys.stderr)
            code = 1
        shutil.rmtree(workdir, ignore_errors=True)
    print("== %s, wall time %.1fs" % ("migration done" if code == 0 else "FAILED", time.monotonic() - wall))
    return code


if __name__ == "__main__":
    sys.exit(main())
