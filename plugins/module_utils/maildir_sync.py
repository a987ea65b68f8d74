# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Mailboxes from one VPS to another (or from a backup), in Dovecot's Maildir layout, through the controller.

Mailu keeps each account's mail in ``/mailu/mail/<address>/`` (Dovecot ``maildir:``, Maildir++ folders
``.<name>/``, ``mail_home`` the same directory). What moves is mail data only:

* messages: ``cur/`` and ``new/`` files of the INBOX and of every folder; a message's flags are in its name
  (``<unique>:2,<flags>``) and its received date (IMAP INTERNALDATE) is the file's mtime, both kept;
* Dovecot's per-mailbox ``dovecot-uidlist`` (the UIDs and UIDVALIDITY), ``dovecot-keywords``, ``maildirfolder``,
  and the account's ``subscriptions`` and ``dovecot-uidvalidity*``.

Never indexes or caches (``dovecot.index*``, ``dovecot.list.index*``: Dovecot rebuilds them), never ``tmp/``,
links, devices, executables, configuration or anything outside ``<address>/``: the source may be a compromised
host, so its stream is data to check, not to trust (:data:`RECEIVER` refuses any other member).

Two modes (:func:`plan`):

* ``copy`` (before the DNS switch, and a restore): every message the target lacks is added, and the source's
  ``dovecot-uidlist`` of each mailbox replaces the target's (whose indexes are dropped), so UIDs and
  UIDVALIDITY stay what the tenant's IMAP clients know;
* ``merge`` (the final delta, after the switch, while the target already receives mail): only what the target
  lacks is added; Dovecot gives the added messages new UIDs after its own, so neither side's mail is hidden.

In both, a message is known by its unique name (the part before ``:2,``); one held by both sides keeps the
union of both sides' flags (read here or there), and nothing is ever deleted on the target.

The stream runs ``ssh <source> tar`` -> ``ssh <target> python3 <receiver>`` with the two pipes joined by the
operating system (the controller does not copy the bytes). The receiver writes each file to ``tmp/`` and
renames it in place, as a delivering MTA does, so a live Dovecot never sees half a message.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import json
import re
import shlex
import subprocess
import threading
import time

DEFAULT_MAIL_ROOT = "/mailu/mail"
MODES = ("copy", "merge")
MESSAGE_DIRS = ("cur", "new")
# Files of Dovecot kept per mailbox (the INBOX is the account directory itself) and per account.
MAILBOX_META = ("dovecot-uidlist", "dovecot-keywords", "maildirfolder")
ACCOUNT_META = ("subscriptions",)
_UIDVALIDITY_RE = re.compile(r"dovecot-uidvalidity(\.[0-9a-f]{1,16})?\Z")
_ACCOUNT_RE = re.compile(r"[A-Za-z0-9!#$%&'*+=?^_`{|}~.-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?\Z")
_PART_RE = re.compile(r"[^/\x00-\x1f\x7f]{1,255}\Z")
_FLAGS_RE = re.compile(r"[A-Za-z]*\Z")
PROGRESS_EVERY = 500


class SyncError(Exception):
    """The copy could not be done (one line, no secret)."""


# ---------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------
def _part_ok(part):
    return bool(_PART_RE.match(part)) and part not in (".", "..")


def classify(rel):
    """What a path below the mail root is.

    ``("message", mailbox, sub, base, flags)`` (flags None for a name without ``:2,``), ``("meta", mailbox, name)``
    or None for anything that does not move. ``mailbox`` is ``<address>`` (INBOX) or ``<address>/.<folder>``.
    """
    if not isinstance(rel, str):
        return None
    parts = rel.split("/")
    if not parts or not _ACCOUNT_RE.match(parts[0]) or not all(_part_ok(part) for part in parts):
        return None
    account = parts[0]
    if len(parts) == 2:
        name = parts[1]
        if name in ACCOUNT_META or name in MAILBOX_META[:2] or _UIDVALIDITY_RE.match(name):
            return ("meta", account, name)
        return None
    if len(parts) == 3 and parts[1] in MESSAGE_DIRS:
        return _message(account, parts[1], parts[2])
    if len(parts) == 3 and parts[1].startswith(".") and parts[2] in MAILBOX_META:
        return ("meta", account + "/" + parts[1], parts[2])
    if len(parts) == 4 and parts[1].startswith(".") and parts[2] in MESSAGE_DIRS:
        return _message(account + "/" + parts[1], parts[2], parts[3])
    return None


def _message(mailbox, sub, name):
    if name.startswith("."):
        return None
    base, sep, flags = name.partition(":2,")
    if not base or (sep and not _FLAGS_RE.match(flags)):
        return None
    return ("message", mailbox, sub, base, flags if sep else None)


def message_name(base, flags):
    return base if flags is None else "%s:2,%s" % (base, "".join(sorted(set(flags))))


# ---------------------------------------------------------------------------------------
# Listings
# ---------------------------------------------------------------------------------------
def list_command(root):
    """Shell command that lists the regular files below ``root`` (``size mtime relpath`` NUL-terminated)."""
    q = shlex.quote(root)
    return ("if [ -d %s ]; then cd %s && find . -mindepth 1 -xdev -type f -printf '%%s %%T@ %%P\\0'; fi" % (q, q))


def parse_listing(data):
    """``{relpath: (size, mtime)}`` of the files that move (see :func:`classify`), from :func:`list_command`."""
    files = {}
    for entry in data.split(b"\0"):
        if not entry:
            continue
        try:
            size, mtime, rel = entry.decode("utf-8").split(" ", 2)
            size, mtime = int(size), float(mtime)
        except (UnicodeDecodeError, ValueError):
            continue
        if classify(rel):
            files[rel] = (size, mtime)
    return files


def summary(files):
    """Accounts, mailboxes, messages and bytes of a listing."""
    accounts, mailboxes, messages, size = set(), set(), 0, 0
    for rel, (length, _mtime) in files.items():
        kind = classify(rel)
        accounts.add(rel.split("/", 1)[0])
        if kind[0] == "message":
            mailboxes.add(kind[1])
            messages += 1
            size += length
    return {"accounts": sorted(accounts), "mailboxes": len(mailboxes), "messages": messages, "bytes": size}


# ---------------------------------------------------------------------------------------
# Planning (pure)
# ---------------------------------------------------------------------------------------
class Plan(object):
    """What a sync does: ``copy`` (relpaths to stream), ``renames`` ([from, to] on the target), counts."""

    def __init__(self, mode):
        self.mode = mode
        self.copy = []
        self.renames = []
        self.messages = 0
        self.bytes = 0
        self.meta = 0
        self.present = 0

    @property
    def changed(self):
        return bool(self.copy or self.renames)

    def result(self):
        return {"mode": self.mode, "messages": self.messages, "bytes": self.bytes, "meta_files": self.meta,
                "flag_updates": len(self.renames), "already_present": self.present}


def _index(files):
    found = {}
    for rel in files:
        kind = classify(rel)
        if kind and kind[0] == "message":
            found[(kind[1], kind[3])] = (rel, kind[2], kind[4])
    return found


def plan(source, target, mode):
    """Plan ``mode`` (``copy`` or ``merge``) from the ``source`` listing onto the ``target`` listing."""
    if mode not in MODES:
        raise SyncError("invalid mode %r: choose one of %s" % (mode, ", ".join(MODES)))
    planned = Plan(mode)
    have = _index(target)
    for rel in sorted(source):
        kind = classify(rel)
        if kind[0] == "meta":
            same = rel in target and target[rel][0] == source[rel][0] and int(target[rel][1]) == int(source[rel][1])
            if (mode == "copy" and not same) or (rel not in target and kind[2] != "dovecot-uidlist"):
                planned.copy.append(rel)
                planned.meta += 1
            continue
        _kind, mailbox, _sub, base, flags = kind
        known = have.get((mailbox, base))
        if known is None:
            planned.copy.append(rel)
            planned.messages += 1
            planned.bytes += source[rel][0]
            continue
        planned.present += 1
        there_rel, _there_sub, there_flags = known
        wanted = set(there_flags or "") | set(flags or "")
        if wanted != set(there_flags or "") or (flags is not None and there_flags is None):
            renamed = "%s/cur/%s" % (mailbox, message_name(base, "".join(wanted)))
            if renamed != there_rel:
                planned.renames.append([there_rel, renamed])
    # Metadata last: a uidlist names the messages before it.
    planned.copy.sort(key=lambda rel: (classify(rel)[0] == "meta", rel))
    return planned


# ---------------------------------------------------------------------------------------
# The receiver (runs on the target with the system python3, standard library only)
# ---------------------------------------------------------------------------------------
RECEIVER = r'''
import json, os, re, sys, tarfile, time
root, mode, action = sys.argv[1], sys.argv[2], sys.argv[3]
ACCOUNT = re.compile(r"[A-Za-z0-9!#$%&'*+=?^_`{|}~.-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?\Z")
PART = re.compile(r"[^/\x00-\x1f\x7f]{1,255}\Z")
FLAGS = re.compile(r"[A-Za-z]*\Z")
UIDV = re.compile(r"dovecot-uidvalidity(\.[0-9a-f]{1,16})?\Z")
MBOX_META = ("dovecot-uidlist", "dovecot-keywords", "maildirfolder")
def classify(rel):
    parts = rel.split("/")
    if not parts or not ACCOUNT.match(parts[0]) or not all(PART.match(p) and p not in (".", "..") for p in parts):
        return None
    if len(parts) == 2:
        n = parts[1]
        if n in ("subscriptions", "dovecot-uidlist", "dovecot-keywords") or UIDV.match(n):
            return ("meta", parts[0], n)
        return None
    if len(parts) == 3 and parts[1] in ("cur", "new"):
        return message(parts[0], parts[1], parts[2])
    if len(parts) == 3 and parts[1].startswith(".") and parts[2] in MBOX_META:
        return ("meta", parts[0] + "/" + parts[1], parts[2])
    if len(parts) == 4 and parts[1].startswith(".") and parts[2] in ("cur", "new"):
        return message(parts[0] + "/" + parts[1], parts[2], parts[3])
    return None
def message(mailbox, sub, name):
    base, sep, flags = name.partition(":2,")
    if name.startswith(".") or not base or (sep and not FLAGS.match(flags)):
        return None
    return ("message", mailbox, sub, base, flags if sep else None)
if not os.path.isdir(root):
    os.makedirs(root, 0o750)
st = os.stat(root)
uid, gid = st.st_uid, st.st_gid
def mkdirs(path):
    if os.path.isdir(path):
        return
    mkdirs(os.path.dirname(path))
    os.mkdir(path, 0o700)
    os.chown(path, uid, gid)
def maildir(mailbox):
    base = os.path.join(root, mailbox)
    for sub in ("cur", "new", "tmp"):
        mkdirs(os.path.join(base, sub))
    return base
known = {}
def existing(mailbox, base):
    if mailbox not in known:
        bases = set()
        for sub in ("cur", "new"):
            try:
                names = os.listdir(os.path.join(root, mailbox, sub))
            except OSError:
                continue
            bases.update(n.partition(":2,")[0] for n in names)
        known[mailbox] = bases
    return base in known[mailbox]
def drop_indexes(mailbox):
    account = mailbox.split("/", 1)[0]
    for d in (os.path.join(root, mailbox), os.path.join(root, account)):
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for n in names:
            if n.startswith("dovecot.index") or (d.endswith(account) and n.startswith("dovecot.list.index")):
                try:
                    os.unlink(os.path.join(d, n))
                except OSError:
                    pass
done = {"messages": 0, "bytes": 0, "meta_files": 0, "skipped": 0, "refused": 0, "renamed": 0}
def progress(final=False):
    done["final"] = final
    sys.stdout.write(json.dumps(done) + "\n")
    sys.stdout.flush()
if action == "rename":
    for old, new in json.load(sys.stdin):
        a, b = classify(old), classify(new)
        if not a or not b or a[0] != "message" or b[0] != "message" or a[1] != b[1] or a[3] != b[3]:
            done["refused"] += 1
            continue
        src = os.path.join(root, old)
        if os.path.exists(src):
            maildir(b[1])
            os.rename(src, os.path.join(root, new))
            done["renamed"] += 1
    progress(True)
    sys.exit(0)
stream = tarfile.open(fileobj=sys.stdin.buffer, mode="r|")
for member in stream:
    rel = member.name[2:] if member.name.startswith("./") else member.name
    kind = classify(rel) if member.isreg() else None
    if kind is None:
        done["refused"] += 1
        continue
    if kind[0] == "message":
        box = maildir(kind[1])
        if existing(kind[1], kind[3]):
            done["skipped"] += 1
            continue
        known[kind[1]].add(kind[3])
        final = os.path.join(root, rel)
    else:
        if mode == "merge" and (kind[2] == "dovecot-uidlist" or os.path.exists(os.path.join(root, rel))):
            done["skipped"] += 1
            continue
        box = maildir(kind[1]) if kind[2] in MBOX_META else os.path.join(root, kind[1])
        mkdirs(box)
        final = os.path.join(root, rel)
    tmp = os.path.join(root, kind[1].split("/", 1)[0], "tmp", ".pm-%d-%d" % (os.getpid(), done["messages"] + done["meta_files"]))
    mkdirs(os.path.dirname(tmp))
    source = stream.extractfile(member)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    size = 0
    with os.fdopen(fd, "wb") as out:
        while True:
            chunk = source.read(1 << 20)
            if not chunk:
                break
            out.write(chunk)
            size += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    os.chown(tmp, uid, gid)
    os.utime(tmp, (member.mtime, member.mtime))
    os.rename(tmp, final)
    if kind[0] == "message":
        done["messages"] += 1
        done["bytes"] += size
        if done["messages"] % PROGRESS_EVERY == 0:
            progress()
    else:
        done["meta_files"] += 1
        if kind[2] == "dovecot-uidlist":
            drop_indexes(kind[1])
progress(True)
'''.replace("PROGRESS_EVERY", str(PROGRESS_EVERY))


def receiver_command(root, mode, action="receive", python="python3"):
    """The target's command: the receiver's source travels in the command line, base64 (nothing to install)."""
    code = base64.b64encode(RECEIVER.encode("utf-8")).decode("ascii")
    bootstrap = "import base64,sys;exec(base64.b64decode(sys.argv.pop(1)))"
    return " ".join(shlex.quote(part) for part in (python, "-c", bootstrap, code, root, mode, action))


def tar_command(root):
    """The source's command: a tar stream of the NUL-separated relative paths read on stdin."""
    return ("cd %s && tar --null --no-recursion --ignore-failed-read --warning=no-file-changed -T - -cf -"
            % shlex.quote(root))


# ---------------------------------------------------------------------------------------
# Running it
# ---------------------------------------------------------------------------------------
class Endpoint(object):
    """One host reached with ``ssh [ssh_args] user@host`` (or a local command prefix for tests and benches)."""

    def __init__(self, host, ssh_args="", user="root", port=None, connect_timeout=15, argv=None):
        self.host = host
        self.argv = argv
        self.ssh = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "ControlPath=none",
                    "-o", "ConnectTimeout=%d" % connect_timeout] + shlex.split(ssh_args or "")
        if port:
            self.ssh += ["-p", str(port)]
        self.ssh.append("%s@%s" % (user, host))

    def command(self, shell_command):
        if self.argv is not None:
            return list(self.argv) + [shell_command]
        return self.ssh + ["--", shell_command]

    def run(self, shell_command, data=None, timeout=300):
        try:
            proc = subprocess.run(self.command(shell_command), input=data, capture_output=True, timeout=timeout,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise SyncError("%s did not answer within %d s" % (self.host, timeout))
        if proc.returncode != 0:
            raise SyncError("%s: %s" % (self.host, _last_line(proc.stderr) or "exit %d" % proc.returncode))
        return proc.stdout


def _last_line(data):
    lines = [line.strip() for line in (data or b"").decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def listing(endpoint, root, timeout=300):
    return parse_listing(endpoint.run(list_command(root), timeout=timeout))


class Deadline(object):
    def __init__(self, seconds, clock=time.monotonic):
        self.clock = clock
        self.started = clock()
        self.until = self.started + seconds
        self.seconds = seconds

    def left(self):
        return max(0.0, self.until - self.clock())

    def elapsed(self):
        return self.clock() - self.started


def _reader(stream, sink):
    for line in iter(stream.readline, b""):
        sink.append(line)


def pipe(source_argv, target_argv, deadline, feed=None, what="copy", source_env=None, target_env=None,
         finished=lambda report: report.get("final")):
    """Run ``source | target`` (OS pipe); ``feed`` bytes go to the source's stdin. The target's last JSON line."""
    src = subprocess.Popen(source_argv, stdin=subprocess.PIPE if feed is not None else subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=source_env)
    try:
        dst = subprocess.Popen(target_argv, stdin=src.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=target_env)
    except OSError:
        src.kill()
        src.wait()
        raise
    src.stdout.close()
    reports, src_err, dst_err = [], [], []
    threads = [threading.Thread(target=_reader, args=(dst.stdout, reports)),
               threading.Thread(target=_reader, args=(src.stderr, src_err)),
               threading.Thread(target=_reader, args=(dst.stderr, dst_err))]
    if feed is not None:
        threads.append(threading.Thread(target=_feed, args=(src.stdin, feed)))
    for thread in threads:
        thread.daemon = True
        thread.start()
    try:
        dst.wait(timeout=deadline.left())
        src.wait(timeout=max(5.0, deadline.left()))
    except subprocess.TimeoutExpired:
        for proc in (src, dst):
            proc.kill()
            proc.wait()
        last = _report(reports) or {}
        raise SyncError("the %s did not finish within %d s (%d messages, %d bytes moved so far; rerun to go on)"
                        % (what, deadline.seconds, last.get("messages", 0), last.get("bytes", 0)))
    for thread in threads:
        thread.join(timeout=10)
    report = _report(reports)
    if dst.returncode != 0 or report is None or not finished(report):
        raise SyncError("the receiving side of the %s failed: %s"
                        % (what, _last_line(b"".join(dst_err)) or "exit %s" % dst.returncode))
    if src.returncode != 0:
        raise SyncError("the sending side of the %s failed: %s"
                        % (what, _last_line(b"".join(src_err)) or "exit %s" % src.returncode))
    return report


def _feed(stdin, data):
    try:
        stdin.write(data)
    except (BrokenPipeError, OSError):
        pass
    finally:
        try:
            stdin.close()
        except OSError:
            pass


def _report(lines):
    for line in reversed(lines):
        try:
            return json.loads(line.decode("utf-8"))
        except ValueError:
            continue
    return None


def apply_renames(target, root, renames, deadline):
    if not renames:
        return 0
    data = json.dumps(renames).encode("utf-8")
    out = target.run(receiver_command(root, "merge", "rename"), data=data, timeout=max(1, int(deadline.left())))
    report = _report(out.splitlines()) or {}
    return report.get("renamed", 0)


def sync(source, target, mode, root=DEFAULT_MAIL_ROOT, target_root=None, timeout=3600, check_mode=False):
    """Sync the mailboxes of ``source`` onto ``target`` (:class:`Endpoint`); a result dict."""
    deadline = Deadline(timeout)
    target_root = target_root or root
    source_files = listing(source, root, timeout=max(1, int(deadline.left())))
    target_files = listing(target, target_root, timeout=max(1, int(deadline.left())))
    planned = plan(source_files, target_files, mode)
    result = planned.result()
    result["source"] = summary(source_files)
    result["changed"] = planned.changed
    if check_mode or not planned.changed:
        result["seconds"] = round(deadline.elapsed(), 3)
        return result
    result["flag_updates"] = apply_renames(target, target_root, planned.renames, deadline)
    if planned.copy:
        feed = b"".join(rel.encode("utf-8") + b"\0" for rel in planned.copy)
        report = pipe(source.command(tar_command(root)), target.command(receiver_command(target_root, mode)),
                      deadline, feed=feed)
        result["messages"] = report["messages"]
        result["bytes"] = report["bytes"]
        result["meta_files"] = report["meta_files"]
        result["refused"] = report["refused"]
        result["already_present"] += report["skipped"]
    result["seconds"] = round(deadline.elapsed(), 3)
    return result


def receive_stream(source_argv, target, target_root, mode, timeout, env=None):
    """Stream a tar of mail (e.g. ``restic dump``) from a local command into the target's receiver."""
    deadline = Deadline(timeout)
    report = pipe(source_argv, target.command(receiver_command(target_root, mode)), deadline, what="restore",
                  source_env=env)
    report["seconds"] = round(deadline.elapsed(), 3)
    return report
