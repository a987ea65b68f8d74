# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mailbox copy's planning and its receiver, on real directories (the hosts replaced by local shells)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile

import pytest

from ansible_collections.penguinmails.vps.plugins.module_utils import maildir_sync as ms

USER = "admin@x.test"


def local(name):
    return ms.Endpoint(name, argv=["sh", "-c"])


def write(root, rel, data=b"x", mtime=None):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
    if mtime:
        os.utime(path, (mtime, mtime))
    return path


def tree(root):
    found = []
    for base, _dirs, files in os.walk(root):
        found += [os.path.relpath(os.path.join(base, name), root) for name in files]
    return sorted(found)


@pytest.mark.parametrize("rel,kind", [
    ("%s/cur/1.M1.h:2,S" % USER, ("message", USER, "cur", "1.M1.h", "S")),
    ("%s/new/1.M1.h" % USER, ("message", USER, "new", "1.M1.h", None)),
    ("%s/.Archive/cur/2.M2.h:2,FS" % USER, ("message", USER + "/.Archive", "cur", "2.M2.h", "FS")),
    ("%s/.Archive/dovecot-uidlist" % USER, ("meta", USER + "/.Archive", "dovecot-uidlist")),
    ("%s/dovecot-uidlist" % USER, ("meta", USER, "dovecot-uidlist")),
    ("%s/subscriptions" % USER, ("meta", USER, "subscriptions")),
    ("%s/dovecot-uidvalidity.5f3a" % USER, ("meta", USER, "dovecot-uidvalidity.5f3a")),
])
def test_mail_data_is_recognised(rel, kind):
    assert ms.classify(rel) == kind


@pytest.mark.parametrize("rel", [
    "%s/dovecot.index" % USER, "%s/dovecot.index.cache" % USER, "%s/dovecot.list.index.log" % USER,
    "%s/tmp/1.M1.h" % USER, "%s/cur/../../etc/passwd" % USER, "../x@y.test/cur/1", "notanaddress/cur/1.M1.h",
    "%s/cur/.hidden" % USER, "%s/cur/1.M1.h:2,S!" % USER, "%s/.Archive/x/cur/1" % USER, "%s/sieve/x.sieve" % USER,
    "/%s/cur/1.M1.h" % USER, "%s/cur/1\nx" % USER,
])
def test_anything_else_never_moves(rel):
    assert ms.classify(rel) is None


def test_copy_takes_what_is_missing_and_the_uidlists_merge_only_adds():
    source = {"%s/cur/1.a:2,S" % USER: (10, 1.0), "%s/new/2.b" % USER: (20, 2.0), "%s/cur/3.c:2," % USER: (5, 3.0),
              "%s/dovecot-uidlist" % USER: (50, 4.0), "%s/.Sent/maildirfolder" % USER: (0, 5.0)}
    target = {"%s/cur/3.c:2,F" % USER: (5, 3.0), "%s/new/9.z" % USER: (7, 9.0)}
    copy = ms.plan(source, target, "copy")
    assert copy.copy == ["%s/cur/1.a:2,S" % USER, "%s/new/2.b" % USER, "%s/.Sent/maildirfolder" % USER,
                         "%s/dovecot-uidlist" % USER]  # messages first, Dovecot's files after them
    assert (copy.messages, copy.bytes, copy.meta, copy.present) == (2, 30, 2, 1)
    assert copy.renames == []  # 3.c has F on the target and nothing more on the source
    merge = ms.plan(source, target, "merge")
    assert "%s/dovecot-uidlist" % USER not in merge.copy  # the target's UIDs are never replaced after the switch
    # Flags: the union of both sides, the message moved to cur/.
    both = ms.plan({"%s/cur/3.c:2,RS" % USER: (5, 3.0)}, target, "merge")
    assert both.renames == [["%s/cur/3.c:2,F" % USER, "%s/cur/3.c:2,FRS" % USER]]
    seen = ms.plan({"%s/cur/9.z:2,S" % USER: (7, 9.0)}, target, "merge")
    assert seen.renames == [["%s/new/9.z" % USER, "%s/cur/9.z:2,S" % USER]]
    with pytest.raises(ms.SyncError, match="invalid mode"):
        ms.plan(source, target, "mirror")


def test_a_sync_copies_flags_dates_and_uidlists_then_a_rerun_moves_nothing(tmp_path):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    write(src, "%s/cur/100.M1.h:2,S" % USER, b"one", mtime=1_600_000_000)
    write(src, "%s/new/101.M2.h" % USER, b"two")
    write(src, "%s/.Archive/cur/102.M3.h:2,FR" % USER, b"three")
    write(src, "%s/.Archive/maildirfolder" % USER, b"")
    write(src, "%s/dovecot-uidlist" % USER, b"3 V1 N102\n100 :100.M1.h\n101 :101.M2.h\n")
    write(src, "%s/dovecot.index" % USER, b"index")  # never copied
    write(dst, "%s/cur/dovecot.index.stale" % USER, b"")
    write(dst, "%s/dovecot.index.log" % USER, b"stale index")
    result = ms.sync(local("old"), local("new"), "copy", root=src, target_root=dst)
    assert (result["messages"], result["bytes"], result["meta_files"], result["refused"]) == (3, 11, 2, 0)
    assert result["source"] == {"accounts": [USER], "mailboxes": 2, "messages": 3, "bytes": 11}
    assert "%s/dovecot.index.log" % USER not in tree(dst)  # dropped with the uidlist: Dovecot rebuilds it
    assert "%s/dovecot.index" % USER not in tree(dst)
    assert os.stat(os.path.join(dst, "%s/cur/100.M1.h:2,S" % USER)).st_mtime == 1_600_000_000  # INTERNALDATE kept
    assert os.stat(os.path.join(dst, "%s/cur/100.M1.h:2,S" % USER)).st_mode & 0o777 == 0o600
    assert not os.listdir(os.path.join(dst, USER, "tmp"))
    again = ms.sync(local("old"), local("new"), "copy", root=src, target_root=dst)
    assert again["changed"] is False and again["messages"] == 0 and again["already_present"] == 3
    # After the switch: new mail on both sides, a flag set on the old side; the new side's mail is kept.
    write(src, "%s/new/103.M4.h" % USER, b"late")
    os.rename(os.path.join(src, "%s/new/101.M2.h" % USER), os.path.join(src, "%s/cur/101.M2.h:2,S" % USER))
    write(dst, "%s/new/200.N1.h" % USER, b"arrived at the new VPS")
    uidlist = open(os.path.join(dst, "%s/dovecot-uidlist" % USER), "rb").read()
    merged = ms.sync(local("old"), local("new"), "merge", root=src, target_root=dst)
    assert (merged["messages"], merged["flag_updates"]) == (1, 1)
    assert "%s/new/200.N1.h" % USER in tree(dst) and "%s/cur/101.M2.h:2,S" % USER in tree(dst)
    assert open(os.path.join(dst, "%s/dovecot-uidlist" % USER), "rb").read() == uidlist


def test_check_mode_plans_and_moves_nothing(tmp_path):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    write(src, "%s/cur/100.M1.h:2,S" % USER, b"one")
    result = ms.sync(local("old"), local("new"), "copy", root=src, target_root=dst, check_mode=True)
    assert result["messages"] == 1 and result["changed"] is True and not os.path.exists(dst)


def receive(tmp_path, members):
    """Feed a hand-made tar stream (a compromised source) to the receiver."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as archive:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.SYMTYPE:
                info.linkname = "/etc/passwd"
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            archive.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    root = str(tmp_path / "dst")
    proc = subprocess.run(local("new").command(ms.receiver_command(root, "copy")), input=buf.getvalue(),
                          capture_output=True, check=True)
    return root, json.loads(proc.stdout.decode().splitlines()[-1])


def test_the_receiver_refuses_anything_but_mail_data(tmp_path):
    root, report = receive(tmp_path, [
        ("%s/cur/1.M1.h:2,S" % USER, tarfile.REGTYPE, b"mail"),
        ("%s/cur/2.M2.h:2,S" % USER, tarfile.SYMTYPE, b""),
        ("%s/../../../tmp/evil" % USER, tarfile.REGTYPE, b"x"),
        ("/etc/cron.d/evil", tarfile.REGTYPE, b"x"),
        ("%s/.profile" % USER, tarfile.REGTYPE, b"x"),
        ("%s/sieve/script.sieve" % USER, tarfile.REGTYPE, b"x"),
        ("%s/cur/3.M3.h" % USER, tarfile.CHRTYPE, b""),
    ])
    assert report["messages"] == 1 and report["refused"] == 6 and report["final"] is True
    assert tree(root) == ["%s/cur/1.M1.h:2,S" % USER]


def test_a_copy_that_runs_out_of_time_stops_and_says_what_moved(tmp_path):
    src = str(tmp_path / "src")
    write(src, "%s/cur/1.M1.h:2,S" % USER)
    slow = ms.Endpoint("old", argv=["sh", "-c", 'sleep 30; exec sh -c "$0"'])
    deadline = ms.Deadline(1)
    with pytest.raises(ms.SyncError, match=r"did not finish within 1 s \(0 messages"):
        ms.pipe(slow.command(ms.tar_command(src)), local("new").command(ms.receiver_command(str(tmp_path / "d"), "copy")),
                deadline, feed=b"")


def stream(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_600_000_000
            archive.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_the_receiver_makes_batches_durable_and_the_uidlist_last(tmp_path):
    root = str(tmp_path / "dst")
    members = [("%s/cur/%d.M%d.h:2,S" % (USER, n, n), b"m%d" % n) for n in range(5)]
    members.insert(2, ("%s/dovecot-uidlist" % USER, b"3 V1 N6\n"))  # a restore's stream may interleave it
    proc = subprocess.run(local("new").command(ms.receiver_command(root, "copy", batch_files=2)),
                          input=stream(members), capture_output=True, check=True)
    reports = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    # One report per durable batch of 2 messages, then the rest, then Dovecot's files, then the final one.
    expected = [(2, 0, False), (4, 0, False), (5, 0, False), (5, 1, False), (5, 1, True)]
    assert [(r["messages"], r["meta_files"], r["final"]) for r in reports] == expected
    assert sorted(tree(root)) == sorted(["%s/dovecot-uidlist" % USER] + [name for name, _data in members if "/cur/" in name])
    assert ms.receiver_command(root, "copy").split()[-1] == "receive"  # the default batch size is not on the line


def test_the_receiver_removes_what_a_killed_receiver_left_in_tmp(tmp_path):
    root = str(tmp_path / "dst")
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid whose process is gone
    left = write(root, "%s/tmp/.pm-%d-7" % (USER, gone.pid), b"half a mess")
    alive = write(root, "%s/tmp/.pm-%d-1" % (USER, os.getpid()), b"another receiver at work")
    dovecots = write(root, "%s/tmp/1600000000.M1P2.h" % USER, b"Dovecot's own")
    proc = subprocess.run(local("new").command(ms.receiver_command(root, "copy")),
                          input=stream([("%s/new/9.M9.h" % USER, b"new mail")]), capture_output=True, check=True)
    report = json.loads(proc.stdout.decode().splitlines()[-1])
    assert report["stale_removed"] == 1 and report["messages"] == 1
    assert not os.path.exists(left) and os.path.exists(alive) and os.path.exists(dovecots)


def test_a_compressed_stream_arrives_the_same(tmp_path):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    write(src, "%s/cur/1.M1.h:2,S" % USER, b"text " * 1000, mtime=1_600_000_000)
    write(src, "%s/dovecot-uidlist" % USER, b"3 V1 N2\n1 :1.M1.h\n")
    result = ms.sync(local("old"), local("new"), "copy", root=src, target_root=dst, compress=True)
    assert (result["messages"], result["bytes"], result["meta_files"]) == (1, 5000, 1)
    assert open(os.path.join(dst, "%s/cur/1.M1.h:2,S" % USER), "rb").read() == b"text " * 1000
    assert "gzip -1" in ms.tar_command(src, compress=True) and "gzip" not in ms.tar_command(src)


def test_an_empty_stream_touches_nothing(tmp_path):
    root = str(tmp_path / "dst")
    proc = subprocess.run(local("new").command(ms.receiver_command(root, "copy")), input=stream([]),
                          capture_output=True, check=True)
    assert json.loads(proc.stdout.decode())["final"] is True and not os.path.exists(root)


def test_progress_shows_done_of_total_rate_and_time_left():
    now = [100.0]
    shown = []
    progress = ms.Progress("mail copy", 1000, 10_000_000, show=shown.append, every=5, clock=lambda: now[0])
    now[0] = 102.0
    progress.update({"messages": 250, "bytes": 2_500_000})
    now[0] = 103.0
    progress.update({"messages": 300, "bytes": 3_000_000})  # within 5 s of the last line: not shown
    now[0] = 108.0
    progress.update({"messages": 800, "bytes": 8_000_000})
    now[0] = 110.0
    progress.update({"messages": 1000, "bytes": 10_000_000, "final": True})
    assert shown == ["mail copy: 250/1000 messages, 2.5/10.0 MB, 1.2 MB/s, 6 s left",
                     "mail copy: 800/1000 messages, 8.0/10.0 MB, 1.0 MB/s, 2 s left",
                     "mail copy: 1000/1000 messages, 10.0/10.0 MB, 1.0 MB/s, done"]
    assert progress.result() == {"total_messages": 1000, "total_bytes": 10_000_000, "messages": 1000, "bytes": 10_000_000,
                                 "seconds": 10.0, "messages_per_second": 100.0, "bytes_per_second": 1_000_000,
                                 "lines": shown}


def test_a_sync_reports_its_progress_and_returns_the_figures(tmp_path):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    for n in range(7):
        write(src, "%s/cur/%d.M%d.h:2,S" % (USER, n, n), b"x" * 100)
    shown, reports = [], []
    result = ms.sync(local("old"), local("new"), "copy", root=src, target_root=dst, show=shown.append,
                     on_report=reports.append, batch_files=3)
    assert [r["messages"] for r in reports] == [3, 6, 7, 7]
    assert shown[0].startswith("mail copy: 3/7 messages, 0.0/0.0 MB") and shown[-1].endswith("done")
    assert {key: result["progress"][key] for key in ("total_messages", "total_bytes", "messages", "bytes")} == \
        {"total_messages": 7, "total_bytes": 700, "messages": 7, "bytes": 700}
    assert result["progress"]["lines"] == shown and result["listing_seconds"] <= result["seconds"]


def test_a_shared_connection_comes_before_the_callers_ssh_options(tmp_path):
    endpoint = ms.Endpoint("203.0.113.5", "-o ControlPath=/elsewhere -i key", user="root", connect_timeout=7)
    assert endpoint.command("true")[:7] == ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "ControlPath=none"]
    with ms.Shared(endpoint, local("new")) as shared:
        directory = shared.directory
        argv = endpoint.command("true")
        assert argv[5:11] == ["-o", "ControlMaster=auto", "-o", "ControlPath=%s/c0" % shared.directory,
                              "-o", "ControlPersist=%d" % ms.SHARE_IDLE_SECONDS]
        assert oct(os.stat(shared.directory).st_mode & 0o777) == "0o700"
        assert argv[-3:] == ["root@203.0.113.5", "--", "true"]
    assert endpoint.control is None and not os.path.exists(directory)


@pytest.mark.parametrize("change,message", [
    ({"timeout": 0}, "timeout and connect_timeout must be at least 1 second"),
    ({"progress_interval": 0}, "progress_interval must be at least 1 second"),
    ({"target_host": "203.0.113.1"}, r"source_host and target_host are the same host \(203.0.113.1\)"),
])
def test_the_task_names_the_rule_that_failed(change, message):
    params = {"source_host": "203.0.113.1", "source_ssh_args": "", "target_host": "203.0.113.2", "target_ssh_args": "",
              "user": "root", "mail_root": "/mailu/mail", "mode": "copy", "timeout": 60, "connect_timeout": 5,
              "progress_interval": 5, "compress": False, "changed_since": None}
    params.update(change)
    with pytest.raises(ms.SyncError, match=message):
        ms.run_task(params)


def test_the_final_delta_lists_only_what_changed_on_the_source(tmp_path):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    for n in range(5):
        write(src, "%s/cur/%d.M%d.h:2," % (USER, n, n), b"old mail %d" % n)
    copied = ms.sync(local("old"), local("new"), "copy", root=src, target_root=dst)
    assert copied["messages"] == 5 and copied["source_time"] > 0
    since = copied["source_time"] + ms.CLOCK_MARGIN  # the source's clock when it listed
    os.unlink(os.path.join(dst, "%s/cur/0.M0.h:2," % USER))  # unchanged on the source: not listed again
    write(src, "%s/new/9.M9.h" % USER, b"arrived after the copy")
    os.rename(os.path.join(src, "%s/cur/1.M1.h:2," % USER), os.path.join(src, "%s/cur/1.M1.h:2,S" % USER))  # read there
    delta = ms.sync(local("old"), local("new"), "merge", root=src, target_root=dst, changed_since=since)
    assert delta["source"]["messages"] == 2  # the new message and the one whose flags changed, nothing else
    assert (delta["messages"], delta["flag_updates"]) == (1, 1)
    assert "%s/cur/1.M1.h:2,S" % USER in tree(dst) and "%s/new/9.M9.h" % USER in tree(dst)
    assert "%s/cur/0.M0.h:2," % USER not in tree(dst)
    full = ms.sync(local("old"), local("new"), "merge", root=src, target_root=dst)
    assert full["messages"] == 1 and "%s/cur/0.M0.h:2," % USER in tree(dst)


def test_an_account_with_mail_only_in_folders_gets_an_inbox_dovecot_can_deliver_to(tmp_path):
    """Seen in bench/migrate_mailbox.py: with every message in folders, the new VPS's INBOX had no new/, so
    Dovecot's first delivery (its rename from tmp/ to new/) failed and the migration's verify probe never arrived."""
    root = str(tmp_path / "dst")
    subprocess.run(local("new").command(ms.receiver_command(root, "copy")), capture_output=True, check=True,
                   input=stream([("%s/.Archive/cur/1.M1.h:2,S" % USER, b"archived"),
                                 ("%s/.Archive/maildirfolder" % USER, b"")]))
    for box in (USER, USER + "/.Archive"):
        assert all(os.path.isdir(os.path.join(root, box, sub)) for sub in ("cur", "new", "tmp")), box
