# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mailbox copy killed at random moments (issue 23): the rerun converges, Dovecot never sees a partial message,
nothing is copied twice, and the UIDs are the old host's.

Two lab hosts (network namespaces, real sshd); the new one runs the lab's Mailu daemons, so a live Dovecot reads
the mail between the kills (``doveadm fetch`` reads every message it lists). Each round, the test picks at random
(the seed is printed) what to kill with SIGKILL - the receiver on the new host, ``tar`` on the old host, or the
controller's ``ssh`` to the new host - the receiver's batch size, and after how many durable messages; the kill is
triggered by the receiver's own progress report, so it lands while the next batch is being written.
"""

from __future__ import annotations

import os
import random
import secrets
import shlex
import shutil
import signal

import pytest

from ansible_collections.penguinmails.vps.plugins.module_utils import maildir_sync as ms
from tests.lab import hosts as lab_hosts
from tests.lab.mail import MailLab
from tests.support.ansible_run import run_tasks

DOMAIN = "killcopy.test"
USER = "tenant@" + DOMAIN
DOVEADM = ["doveadm", "-c", "/run/mailu-lab/etc/dovecot/dovecot.conf"]
MESSAGES = 1500
FOLDERS = ("", ".Archive", ".Sent", ".Lists")
FLAGS = ("S", "RS", "FS", "", "S", "DS")
KILLS = ("receiver", "tar", "ssh")


def known_hosts(host, path):
    with open(path, "w") as handle:
        for name in sorted(os.listdir(os.path.join(host["root"], "fs", "etc", "ssh"))):
            if name.startswith("ssh_host_") and name.endswith("_key.pub"):
                with open(os.path.join(host["root"], "fs", "etc", "ssh", name)) as pub:
                    key_type, key = pub.read().split()[:2]
                handle.write("%s %s %s\n" % (host["ip"], key_type, key))
    return path


def fill(root, rng):
    """MESSAGES messages in the INBOX and folders of USER, with flags, dates and Dovecot's uidlists; {(box, base): name}."""
    made, lines = {}, {box: [] for box in FOLDERS}
    for number in range(MESSAGES):
        box = FOLDERS[number % len(FOLDERS)]
        data = (b"From: a@b.test\r\nTo: %s\r\nMessage-ID: <%d.kill@test>\r\nSubject: %d\r\n\r\n" % (USER.encode(), number, number)
                + os.urandom(rng.randint(1000, 9000)).hex().encode())
        base = "%d.M%dP77.old,S=%d" % (1_700_000_000 + number, number, len(data))
        sub = "new" if number % 11 == 0 else "cur"
        name = base if sub == "new" else "%s:2,%s" % (base, FLAGS[number % len(FLAGS)])
        path = os.path.join(root, USER, box, sub, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)
        os.utime(path, (1_600_000_000 + number, 1_600_000_000 + number))
        made[(box, base)] = name
        lines[box].append("%d :%s" % (len(lines[box]) + 1, base))
    for box, entries in lines.items():
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(root, USER, box, sub), exist_ok=True)
        with open(os.path.join(root, USER, box, "dovecot-uidlist"), "w") as handle:
            handle.write("3 V1650000000 N%d\n" % (len(entries) + 1) + "\n".join(entries) + "\n")
        if box:
            open(os.path.join(root, USER, box, "maildirfolder"), "w").close()
    with open(os.path.join(root, USER, "subscriptions"), "w") as handle:
        handle.write("V\t2\n\n" + "".join(box[1:] + "\n" for box in FOLDERS if box))
    for base, dirs, files in os.walk(os.path.join(root, USER)):
        for name in dirs + files:
            os.chown(os.path.join(base, name), 8, 8)
    return made


def messages(root):
    """{(box, base): [(sub, name)]} of the messages of USER visible to Dovecot (cur/ and new/)."""
    found = {}
    for box in FOLDERS:
        for sub in ("cur", "new"):
            directory = os.path.join(root, USER, box, sub)
            for name in os.listdir(directory) if os.path.isdir(directory) else []:
                found.setdefault((box, name.partition(":2,")[0]), []).append((sub, name))
    return found


def read(path):
    with open(path, "rb") as handle:
        return handle.read()


def processes(pids, marker):
    """The pids whose argv ``marker`` accepts."""
    found = []
    for pid in pids:
        try:
            argv = read("/proc/%d/cmdline" % pid).split(b"\0")
        except OSError:
            continue
        if marker(argv):
            found.append(pid)
    return found


def find(what, old, new):
    """The processes of the copy to kill: the receiver on the new host, tar on the old one, the controller's ssh."""
    if what == "receiver":
        return processes(lab_hosts.netns_pids(new["netns"]), lambda argv: b"b64decode" in b" ".join(argv[:3]))
    if what == "tar":
        return processes(lab_hosts.netns_pids(old["netns"]), lambda argv: os.path.basename(argv[0]) == b"tar")
    return processes([int(name) for name in os.listdir("/proc") if name.isdigit()],
                     lambda argv: os.path.basename(argv[0]) == b"ssh" and b"root@" + new["ip"].encode() in argv
                     and any(b"b64decode" in part for part in argv))


@pytest.fixture(scope="module")
def lab():
    with MailLab() as mail_lab:
        old, new = mail_lab.host("kcold"), mail_lab.host("kcnew")
        new.write_env(DOMAIN)
        new.add_dkim_key(DOMAIN)
        proc = new.admin("tenant", DOMAIN, "Pw-" + secrets.token_hex(12), "create")
        assert proc.returncode == 0, proc.stderr
        new.start()
        ends = {}
        for host in (old, new):
            options = ["-i", mail_lab.key, "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "StrictHostKeyChecking=yes",
                       "-o", "UserKnownHostsFile=%s" % known_hosts(host, os.path.join(mail_lab.state_dir, "kh-" + host["name"]))]
            ends[host["name"]] = ms.Endpoint(host["ip"], " ".join(shlex.quote(option) for option in options))
        yield old, new, ends["kcold"], ends["kcnew"]


def dovecot_view(new):
    """{(box, base): (uid, size)} as the new host's Dovecot reads it; every message's text is read."""
    proc = new.exec(DOVEADM + ["-f", "tab", "fetch", "-u", USER, "mailbox uid guid size.physical text", "mailbox", "*", "ALL"],
                    timeout=300)
    assert proc.returncode == 0 and "Error" not in proc.stderr, proc.stderr[-2000:]
    proc = new.exec(DOVEADM + ["-f", "tab", "fetch", "-u", USER, "mailbox uid guid size.physical", "mailbox", "*", "ALL"],
                    timeout=300)
    assert proc.returncode == 0 and "Error" not in proc.stderr, proc.stderr[-2000:]
    view = {}
    for line in proc.stdout.splitlines()[1:]:
        mailbox, uid, guid, size = line.split("\t")
        box = "" if mailbox == "INBOX" else "." + mailbox
        assert (box, guid) not in view, "Dovecot lists %s twice in %s" % (guid, mailbox)
        view[(box, guid)] = (int(uid), int(size))
    return view


@pytest.fixture(scope="module")
def rng():
    seed = int.from_bytes(os.urandom(4), "big")
    print("seed %d" % seed)
    return random.Random(seed)


@pytest.fixture(scope="module")
def filled(lab, rng):
    """The old host's mail: {(box, base): name}, {(box, base): bytes}."""
    old = lab[0]
    made = fill(old.path("/mailu/mail"), rng)
    src_root = old.path("/mailu/mail")
    original = {key: read(os.path.join(src_root, USER, key[0], "new" if ":2," not in name else "cur", name))
                for key, name in made.items()}
    return made, original


def test_a_copy_killed_at_random_moments_converges_without_partial_or_twice_copied_mail(lab, rng, filled):
    old, new, source, target = lab
    made, original = filled
    src_root, dst_root = old.path("/mailu/mail"), new.path("/mailu/mail")
    shutil.rmtree(os.path.join(dst_root, USER), ignore_errors=True)
    killed_rounds = 0
    for round_number in range(4):
        what = rng.choice(KILLS)
        batch = rng.randint(20, 120)
        remaining = MESSAGES - len(messages(dst_root))
        if remaining < 3 * batch:
            break
        after = rng.randint(0, (remaining - 2 * batch) // 2)  # at most half of what is left: the kill lands
        print("round %d: kill %s after %d more durable messages, batches of %d" % (round_number, what, after, batch))
        fired = []

        def kill(report, what=what, after=after):
            if fired or report.get("messages", 0) < after:
                return
            # tar may have sent everything already (the stream waits in the pipes): then the receiver is killed.
            for victim in (what, "receiver"):
                pids = find(victim, old, new)
                if pids:
                    for pid in pids:
                        os.kill(pid, signal.SIGKILL)
                    fired.append((victim, pids))
                    return

        try:
            result = ms.sync(source, target, "copy", root="/mailu/mail", timeout=600, on_report=kill, batch_files=batch)
            print("round %d: the copy finished before the kill landed (%s)" % (round_number, fired))
            assert result["messages"] == remaining
            break
        except ms.SyncError as exc:
            print("round %d: %s (killed %s)" % (round_number, exc, fired))
            assert fired and fired[0], "the copy failed without a kill: %s" % exc
            killed_rounds += 1
        # Whatever is visible is whole: byte for byte the old host's message, and Dovecot reads each one.
        visible = messages(dst_root)
        for key, names in visible.items():
            assert len(names) == 1, "%s is in the new maildir twice: %s" % (key, names)
            assert read(os.path.join(dst_root, USER, key[0], names[0][0], names[0][1])) == original[key], key
        view = dovecot_view(new)
        assert set(view) == set(visible)
        assert all(view[key][1] == len(original[key]) for key in view)
    assert killed_rounds >= 2
    # The rerun without a kill: what is missing, and only that.
    before = messages(dst_root)
    result = ms.sync(source, target, "copy", root="/mailu/mail", timeout=600)
    assert result["messages"] == MESSAGES - len(before)
    assert result["already_present"] == len(before)
    assert result["progress"]["messages"] == MESSAGES - len(before)
    copied = messages(dst_root)
    assert set(copied) == set(made)
    for key, names in copied.items():
        assert len(names) == 1, "%s is in the new maildir twice: %s" % (key, names)
        sub, name = names[0]
        path = os.path.join(dst_root, USER, key[0], sub, name)
        assert read(path) == original[key]
        assert set(name.partition(":2,")[2]) == set(made[key].partition(":2,")[2])  # flags
        assert os.stat(path).st_mtime == os.stat(os.path.join(src_root, USER, key[0], "new" if ":2," not in made[key]
                                                              else "cur", made[key])).st_mtime  # INTERNALDATE
    for box in FOLDERS:
        assert not [name for name in os.listdir(os.path.join(dst_root, USER, box, "tmp")) if name.startswith(".pm-")]
    # Dovecot: every message once, with the old host's UID.
    view = dovecot_view(new)
    assert set(view) == set(made)
    for box in FOLDERS:
        uidlist = read(os.path.join(src_root, USER, box, "dovecot-uidlist")).decode().splitlines()[1:]
        for line in uidlist:
            uid, base = line.split(" :")
            assert view[(box, base)][0] == int(uid), (box, base)
    again = ms.sync(source, target, "merge", root="/mailu/mail", timeout=600)
    assert again["changed"] is False and again["messages"] == 0


def test_the_operator_sees_the_progress_while_the_copy_runs_and_the_result_keeps_it(lab, tmp_path):
    old, new, source, target = lab
    total = ms.BATCH_FILES + 500  # more than one durable batch: at least one line before the end
    for number in range(total):
        path = os.path.join(old.path("/mailu/bulk"), "bulk@" + DOMAIN, "cur", "%d.M%dP9.old,S=6:2,S" % (number, number))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(b"bulk\r\n")
    results, proc = run_tasks("""
        - penguinmails.vps.mailbox_sync:
            source_host: "%s"
            source_ssh_args: "%s"
            target_host: "%s"
            target_ssh_args: "%s"
            mail_root: /mailu/bulk
            progress_interval: 1
          register: r_copy
    """ % (old.ip, " ".join(source.options), new.ip, " ".join(target.options)), tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    copied = results["r_copy"]
    assert copied["messages"] == total and copied["progress"]["messages"] == total
    assert copied["progress"]["total_messages"] == total and copied["progress"]["bytes"] == 6 * total
    shown = [line.split("] ", 1)[1] for line in proc.stdout.splitlines() if line.startswith("[localhost] mail copy: ")]
    # A line while it ran (the first durable batch), the last one when done; the result keeps what was shown.
    assert shown == copied["progress"]["lines"] and len(shown) >= 2, proc.stdout[-3000:]
    done_first = int(shown[0].split(": ", 1)[1].split("/", 1)[0])
    assert 0 < done_first < total and " s left" in shown[0], shown
    assert shown[-1].startswith("mail copy: %d/%d messages" % (total, total)) and shown[-1].endswith(", done"), shown
    assert len(os.listdir(os.path.join(new.path("/mailu/bulk"), "bulk@" + DOMAIN, "cur"))) == total
