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

The two hosts are listed at once, each over the one SSH connection the whole sync shares with it (:class:`Shared`).
The stream runs ``ssh <source> tar`` -> ``ssh <target> python3 <receiver>`` with the two pipes joined by the
operating system (the controller relays the bytes, it does not copy them; the VPSes never trust each other).
The receiver writes each file to the account's ``tmp/`` and makes them durable in batches (``BATCH_*``): one
``syncfs`` (or an ``fsync`` per file where there is none), the renames into ``cur/``/``new/``, an ``fsync`` of those
directories; Dovecot's files after every message. So a live Dovecot never sees half a message, a killed copy
leaves files in ``tmp/`` only (the next receiver removes those whose writer is gone), and a rerun goes on from
the last durable batch. Its JSON lines (one per batch) are the progress (:class:`Progress`).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
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
# The receiver makes a batch durable (one sync, the renames, the directories) at whichever comes first.
BATCH_FILES = 2000
BATCH_BYTES = 64 << 20
BATCH_SECONDS = 2.0
MAX_PROGRESS_LINES = 50
# A shared SSH connection left behind (a killed controller) closes itself after this long unused.
SHARE_IDLE_SECONDS = 60
# Seconds before the source's clock at its listing that the next changed_since starts.
CLOCK_MARGIN = 5.0


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
    return _classify(rel)


@functools.lru_cache(maxsize=1 << 18)
def _classify(rel):
    # Planning a sync asks about every path several times (listing, plan, summary): answered once per path.
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
def list_command(root, changed_since=None, clock=False):
    """Shell command that lists the regular files below ``root`` (``size mtime relpath`` NUL-terminated).

    ``changed_since`` (the host's epoch seconds): only files created, renamed or changed since (their ctime: a new
    message, a flag set, Dovecot's rewritten uidlist); ``clock``: first a ``clock <epoch>`` entry, the host's time
    before it lists (the ``changed_since`` of the next sync).
    """
    q = shlex.quote(root)
    newer = " -newerct @%.3f" % float(changed_since) if changed_since else ""
    first = "printf 'clock %s\\0' \"$(date +%s.%N)\"; " if clock else ""
    return ("%sif [ -d %s ]; then cd %s && find . -mindepth 1 -xdev -type f%s -printf '%%s %%T@ %%P\\0'; fi"
            % (first, q, q, newer))


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
batch_files = int(sys.argv[4]) if len(sys.argv) > 4 else BATCH_FILES
ACCOUNT = re.compile(r"[A-Za-z0-9!#$%&'*+=?^_`{|}~.-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?\Z")
PART = re.compile(r"[^/\x00-\x1f\x7f]{1,255}\Z")
FLAGS = re.compile(r"[A-Za-z]*\Z")
UIDV = re.compile(r"dovecot-uidvalidity(\.[0-9a-f]{1,16})?\Z")
MBOX_META = ("dovecot-uidlist", "dovecot-keywords", "maildirfolder")
TMP = re.compile(r"\.pm-([0-9]+)-[0-9]+\Z")
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
uid = gid = None
def owner():
    # The mail root (made on the first file, so an empty stream touches nothing) gives every file its owner.
    global uid, gid
    if uid is None:
        if not os.path.isdir(root):
            os.makedirs(root, 0o750)
        st = os.stat(root)
        uid, gid = st.st_uid, st.st_gid
made = set()
def mkdirs(path):
    owner()
    if path in made:
        return
    if not os.path.isdir(path):
        mkdirs(os.path.dirname(path))
        try:
            os.mkdir(path, 0o700)
            os.chown(path, uid, gid)
        except FileExistsError:
            pass
    made.add(path)
def maildir(mailbox):
    # A folder's account gets its INBOX too: Dovecot would deliver into an account directory without cur/new/tmp
    # of its own by a rename that fails (a tenant whose mail is all in folders).
    for box in {mailbox.split("/", 1)[0], mailbox}:
        for sub in ("cur", "new", "tmp"):
            mkdirs(os.path.join(root, box, sub))
    return os.path.join(root, mailbox)
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
try:
    import ctypes
    SYNCFS = ctypes.CDLL(None, use_errno=True).syncfs
except (ImportError, OSError, AttributeError):
    SYNCFS = None
def sync_data(paths):
    # One syncfs for the whole batch (the data and inodes of every file written); fsync per file where there is none.
    if SYNCFS is None:
        return  # each file was fsynced as it was written
    fd = os.open(root, os.O_RDONLY)
    try:
        if SYNCFS(fd) == 0:
            return
    finally:
        os.close(fd)
    for path in paths:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
def sync_dirs(dirs):
    for d in sorted(dirs):
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
swept = set()
def sweep(tmpdir):
    # A killed receiver's files in tmp/ (never visible to Dovecot): removed once their writer is gone.
    if tmpdir in swept:
        return
    swept.add(tmpdir)
    for n in os.listdir(tmpdir):
        m = TMP.match(n)
        if not m or int(m.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(m.group(1)), 0)
            continue
        except ProcessLookupError:
            pass
        except OSError:
            continue
        try:
            os.unlink(os.path.join(tmpdir, n))
            done["stale_removed"] += 1
        except OSError:
            pass
done = {"messages": 0, "bytes": 0, "meta_files": 0, "skipped": 0, "refused": 0, "renamed": 0, "stale_removed": 0}
started = time.monotonic()
def progress(final=False):
    done["final"] = final
    done["seconds"] = round(time.monotonic() - started, 3)
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
batch, metas, batch_bytes, batch_started, serial = [], [], 0, time.monotonic(), 0
def commit(entries):
    # Data on disk first, then the names in cur/ and new/, then the directories: nothing visible before its data.
    if not entries:
        return
    sync_data([tmp for tmp, _final, _kind, _size in entries])
    dirs = set()
    for tmp, final, _kind, _size in entries:
        os.rename(tmp, final)
        dirs.add(os.path.dirname(final))
    sync_dirs(dirs)
    for _tmp, _final, kind, size in entries:
        if kind[0] == "message":
            done["messages"] += 1
            done["bytes"] += size
        else:
            done["meta_files"] += 1
            if kind[2] == "dovecot-uidlist":
                drop_indexes(kind[1])
    progress()
stream = tarfile.open(fileobj=sys.stdin.buffer, mode="r|*")
for member in stream:
    rel = member.name[2:] if member.name.startswith("./") else member.name
    kind = classify(rel) if member.isreg() else None
    if kind is None:
        done["refused"] += 1
        continue
    if kind[0] == "message":
        maildir(kind[1])
        if existing(kind[1], kind[3]):
            done["skipped"] += 1
            continue
        known[kind[1]].add(kind[3])
    else:
        if mode == "merge" and (kind[2] == "dovecot-uidlist" or os.path.exists(os.path.join(root, rel))):
            done["skipped"] += 1
            continue
        if kind[2] in MBOX_META:
            maildir(kind[1])
        else:
            mkdirs(os.path.join(root, kind[1]))
    final = os.path.join(root, rel)
    tmpdir = os.path.join(root, kind[1].split("/", 1)[0], "tmp")
    mkdirs(tmpdir)
    sweep(tmpdir)
    serial += 1
    tmp = os.path.join(tmpdir, ".pm-%d-%d" % (os.getpid(), serial))
    source = stream.extractfile(member)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    size = 0
    try:
        while True:
            chunk = source.read(1 << 20)
            if not chunk:
                break
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
            size += len(chunk)
        os.fchown(fd, uid, gid)
        if SYNCFS is None:
            os.fsync(fd)
    finally:
        os.close(fd)
    if size != member.size:
        raise SystemExit("short member %d of %d bytes" % (size, member.size))
    os.utime(tmp, (member.mtime, member.mtime))
    if kind[0] == "meta":
        metas.append((tmp, final, kind, size))
        continue
    batch.append((tmp, final, kind, size))
    batch_bytes += size
    if len(batch) >= batch_files or batch_bytes >= BATCH_BYTES or time.monotonic() - batch_started >= BATCH_SECONDS:
        commit(batch)
        batch, batch_bytes, batch_started = [], 0, time.monotonic()
commit(batch)
commit(metas)
progress(True)
'''
for _name in ("BATCH_FILES", "BATCH_BYTES", "BATCH_SECONDS"):
    RECEIVER = RECEIVER.replace(_name, str(globals()[_name]))


def receiver_command(root, mode, action="receive", python="python3", batch_files=None):
    """The target's command: the receiver's source travels in the command line, base64 (nothing to install).

    ``batch_files``: files per durable batch (the default :data:`BATCH_FILES`; smaller only for tests).
    """
    code = base64.b64encode(RECEIVER.encode("utf-8")).decode("ascii")
    bootstrap = "import base64,sys;exec(base64.b64decode(sys.argv.pop(1)))"
    extra = (str(int(batch_files)),) if batch_files else ()
    return " ".join(shlex.quote(part) for part in (python, "-c", bootstrap, code, root, mode, action) + extra)


def tar_command(root, compress=False):
    """The source's command: a tar stream of the NUL-separated relative paths read on stdin.

    ``compress``: gzip's fastest level on the source (mail text shrinks to about a third; the receiver reads
    either), for links slower than the source can compress.
    """
    return ("cd %s && tar --null --no-recursion --ignore-failed-read --warning=no-file-changed%s -T - -cf -"
            % (shlex.quote(root), " --use-compress-program='gzip -1'" if compress else ""))


# ---------------------------------------------------------------------------------------
# Running it
# ---------------------------------------------------------------------------------------
class Endpoint(object):
    """One host reached with ``ssh [ssh_args] user@host`` (or a local command prefix for tests and benches).

    After :meth:`share`, the first command opens one SSH connection that every later command of the sync shares
    (a handshake costs more than listing a few thousand messages); :meth:`unshare` closes it.
    """

    def __init__(self, host, ssh_args="", user="root", port=None, connect_timeout=15, argv=None):
        self.host = host
        self.argv = argv
        self.control = None
        self.options = ["-o", "ConnectTimeout=%d" % connect_timeout] + shlex.split(ssh_args or "")
        if port:
            self.options += ["-p", str(port)]
        self.destination = "%s@%s" % (user, host)

    @property
    def ssh(self):
        # ssh takes the first value given for an option: the connection sharing comes before the caller's options.
        sharing = ["-o", "ControlMaster=auto", "-o", "ControlPath=%s" % self.control,
                   "-o", "ControlPersist=%d" % SHARE_IDLE_SECONDS] if self.control else ["-o", "ControlPath=none"]
        return ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes"] + sharing + self.options + [self.destination]

    def command(self, shell_command):
        if self.argv is not None:
            return list(self.argv) + [shell_command]
        return self.ssh + ["--", shell_command]

    def share(self, path):
        """Share one connection from now on: the next command opens it (socket ``path``, in a private directory)."""
        if self.argv is None:
            self.control = path

    def unshare(self):
        if not self.control:
            return
        path, self.control = self.control, None
        subprocess.run(["ssh", "-F", "/dev/null", "-o", "ControlPath=%s" % path, "-O", "exit", self.destination],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30,
                       check=False)

    def run(self, shell_command, data=None, timeout=300):
        try:
            proc = subprocess.run(self.command(shell_command), input=data, capture_output=True, timeout=timeout,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise SyncError("%s did not answer within %d s" % (self.host, timeout))
        if proc.returncode != 0:
            raise SyncError("%s: %s" % (self.host, _last_line(proc.stderr) or "exit %d" % proc.returncode))
        return proc.stdout


class Shared(object):
    """``with Shared(source, target):`` one SSH connection per host for what runs inside, closed at the end."""

    def __init__(self, *endpoints):
        self.endpoints = [endpoint for endpoint in endpoints if endpoint.argv is None]
        self.directory = None

    def __enter__(self):
        if self.endpoints:
            self.directory = tempfile.mkdtemp(prefix="pm-mailsync-")  # 0700: the sockets are this user's only
            for number, endpoint in enumerate(self.endpoints):
                endpoint.share(os.path.join(self.directory, "c%d" % number))
        return self

    def __exit__(self, *exc):
        _all([endpoint.unshare for endpoint in self.endpoints])
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None


def _last_line(data):
    lines = [line.strip() for line in (data or b"").decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def listing(endpoint, root, timeout=300):
    return parse_listing(endpoint.run(list_command(root), timeout=timeout))


def timed_listing(endpoint, root, changed_since=None, timeout=300):
    """``(files, clock)``: :func:`listing` (of what changed since ``changed_since``) and the host's time before it."""
    data = endpoint.run(list_command(root, changed_since=changed_since, clock=True), timeout=timeout)
    head, _sep, _rest = data.partition(b"\0")
    try:
        clock = float(head.decode("ascii").split(" ", 1)[1]) if head.startswith(b"clock ") else None
    except (UnicodeDecodeError, ValueError, IndexError):
        clock = None
    return parse_listing(data), clock


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


def _reader(stream, sink, on_line=None):
    for line in iter(stream.readline, b""):
        sink.append(line)
        if on_line is not None:
            on_line(line)


class Pipe(object):
    """``source | target`` joined by the operating system; started early (the SSH handshakes overlap the listings),
    fed and waited for by :meth:`finish`. ``on_report`` gets each JSON line of the target as it comes."""

    def __init__(self, source_argv, target_argv, what="copy", source_env=None, target_env=None, on_report=None,
                 fed=True):
        self.what = what
        self.on_report = on_report
        self.reports, self.src_err, self.dst_err = [], [], []
        self.src = subprocess.Popen(source_argv, stdin=subprocess.PIPE if fed else subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=source_env)
        try:
            self.dst = subprocess.Popen(target_argv, stdin=self.src.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        env=target_env)
        except OSError:
            self.src.kill()
            self.src.wait()
            raise
        self.src.stdout.close()
        self.threads = [threading.Thread(target=_reader, args=(self.dst.stdout, self.reports, self._line)),
                        threading.Thread(target=_reader, args=(self.src.stderr, self.src_err)),
                        threading.Thread(target=_reader, args=(self.dst.stderr, self.dst_err))]
        for thread in self.threads:
            thread.daemon = True
            thread.start()

    def _line(self, line):
        if self.on_report is None:
            return
        try:
            report = json.loads(line.decode("utf-8"))
        except ValueError:
            return
        if isinstance(report, dict):
            self.on_report(report)

    def kill(self):
        for proc in (self.src, self.dst):
            if proc.poll() is None:
                proc.kill()
            proc.wait()

    def finish(self, deadline, feed=None, finished=lambda report: report.get("final")):
        """Feed ``feed`` to the source's stdin, wait for both; the target's last JSON line."""
        if feed is not None:
            feeder = threading.Thread(target=_feed, args=(self.src.stdin, feed))
            feeder.daemon = True
            feeder.start()
            self.threads.append(feeder)
        try:
            self.dst.wait(timeout=deadline.left())
            self.src.wait(timeout=max(5.0, deadline.left()))
        except subprocess.TimeoutExpired:
            self.kill()
            last = _report(self.reports) or {}
            raise SyncError("the %s did not finish within %d s (%d messages, %d bytes moved so far; rerun to go on)"
                            % (self.what, deadline.seconds, last.get("messages", 0), last.get("bytes", 0)))
        for thread in self.threads:
            thread.join(timeout=10)
        report = _report(self.reports)
        if self.dst.returncode != 0 or report is None or not finished(report):
            raise SyncError("the receiving side of the %s failed: %s"
                            % (self.what, _last_line(b"".join(self.dst_err)) or "exit %s" % self.dst.returncode))
        if self.src.returncode != 0:
            raise SyncError("the sending side of the %s failed: %s"
                            % (self.what, _last_line(b"".join(self.src_err)) or "exit %s" % self.src.returncode))
        return report


def pipe(source_argv, target_argv, deadline, feed=None, what="copy", source_env=None, target_env=None,
         finished=lambda report: report.get("final"), on_report=None):
    """Run ``source | target`` (OS pipe); ``feed`` bytes go to the source's stdin. The target's last JSON line."""
    running = Pipe(source_argv, target_argv, what=what, source_env=source_env, target_env=target_env,
                   on_report=on_report, fed=feed is not None)
    return running.finish(deadline, feed=feed, finished=finished)


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


def _all(calls):
    """Run the calls at once (the two hosts' listings); their results in order, the first error raised."""
    results, errors = [None] * len(calls), [None] * len(calls)

    def run(index):
        try:
            results[index] = calls[index]()
        except Exception as exc:  # pylint: disable=broad-exception-caught
            errors[index] = exc

    threads = [threading.Thread(target=run, args=(index,)) for index in range(1, len(calls))]
    for thread in threads:
        thread.daemon = True
        thread.start()
    if calls:
        run(0)
    for thread in threads:
        thread.join()
    for error in errors:
        if error is not None:
            raise error
    return results


class Progress(object):
    """Messages and bytes done of a total, the rate and the time left; ``show`` gets a line at most every ``every`` s.

    The figures go into the result (``progress``), the lines to the operator while the copy runs.
    """

    def __init__(self, what, total_messages, total_bytes, show=None, every=3.0, clock=time.monotonic):
        self.what = what
        self.total_messages = total_messages
        self.total_bytes = total_bytes
        self.show = show
        self.every = every
        self.clock = clock
        self.started = clock()
        self.shown = None
        self.figures_shown = None
        self.messages = 0
        self.bytes = 0
        self.lines = []
        self.lock = threading.Lock()

    def update(self, report):
        with self.lock:
            self.messages = int(report.get("messages", 0))
            self.bytes = int(report.get("bytes", 0))
            now = self.clock()
            figures = (self.messages, self.bytes)
            if figures == self.figures_shown:
                return  # nothing new to say (Dovecot's files; the final report after the last batch)
            if self.shown is not None and now - self.shown < self.every and not report.get("final"):
                return
            self.figures_shown = figures
            self.shown = now
            line = self.line(now)
            self.lines.append(line)
        if self.show is not None:
            self.show(line)

    def eta(self, now):
        elapsed = now - self.started
        if not self.bytes or elapsed <= 0:
            return None
        if self.total_bytes:
            return max(0.0, (self.total_bytes - self.bytes) / (self.bytes / elapsed))
        return max(0.0, (self.total_messages - self.messages) / (self.messages / elapsed)) if self.messages else None

    def line(self, now):
        elapsed = max(now - self.started, 1e-6)
        eta = self.eta(now)
        return ("%s: %d/%d messages, %.1f/%.1f MB, %.1f MB/s, %s" % (
            self.what, self.messages, self.total_messages, self.bytes / 1e6, self.total_bytes / 1e6,
            self.bytes / 1e6 / elapsed, "done" if self.messages >= self.total_messages and self.bytes >= self.total_bytes
            else ("%d s left" % round(eta) if eta is not None else "time left unknown")))

    def result(self):
        seconds = max(self.clock() - self.started, 1e-6)
        return {"total_messages": self.total_messages, "total_bytes": self.total_bytes, "messages": self.messages,
                "bytes": self.bytes, "seconds": round(seconds, 3), "messages_per_second": round(self.messages / seconds, 1),
                "bytes_per_second": int(self.bytes / seconds), "lines": list(self.lines[-MAX_PROGRESS_LINES:])}


def _both_reports(first, second):
    if second is None:
        return first

    def both(report):
        first(report)
        second(report)
    return both


def sync(source, target, mode, root=DEFAULT_MAIL_ROOT, target_root=None, timeout=3600, check_mode=False, show=None,
         progress_every=3.0, on_report=None, batch_files=None, compress=False, changed_since=None):
    """Sync the mailboxes of ``source`` onto ``target`` (:class:`Endpoint`); a result dict.

    One SSH connection per host for the whole sync (:class:`Shared`), both hosts listed at once, then the stream;
    ``show`` gets the progress lines while it runs (see :class:`Progress`), the result keeps the figures;
    ``on_report`` each of the receiver's reports (a dict, one per durable batch) as it comes. ``changed_since``
    (the ``source_time`` of an earlier sync): the source lists only what changed since then (the final delta).
    """
    deadline = Deadline(timeout)
    target_root = target_root or root
    with Shared(source, target):
        listed = _all([
            lambda: timed_listing(source, root, changed_since=changed_since, timeout=max(1, int(deadline.left()))),
            lambda: listing(target, target_root, timeout=max(1, int(deadline.left())))])
        (source_files, source_time), target_files = listed[0], listed[1]
        planned = plan(source_files, target_files, mode)
        result = planned.result()
        result["source"] = summary(source_files)
        result["changed"] = planned.changed
        result["listing_seconds"] = round(deadline.elapsed(), 3)
        # A little before the source's clock when it listed: a file renamed while find ran is listed again next time.
        result["source_time"] = round(source_time - CLOCK_MARGIN, 3) if source_time else 0.0
        progress = Progress("mail copy", planned.messages, planned.bytes, show=show, every=progress_every)
        if not check_mode and planned.changed:
            result["flag_updates"] = apply_renames(target, target_root, planned.renames, deadline)
            if planned.copy:
                feed = b"".join(rel.encode("utf-8") + b"\0" for rel in planned.copy)
                report = pipe(source.command(tar_command(root, compress=compress)),
                              target.command(receiver_command(target_root, mode, batch_files=batch_files)),
                              deadline, feed=feed, on_report=_both_reports(progress.update, on_report))
                result["messages"] = report["messages"]
                result["bytes"] = report["bytes"]
                result["meta_files"] = report["meta_files"]
                result["refused"] = report["refused"]
                result["already_present"] += report["skipped"]
    result["progress"] = progress.result()
    result["seconds"] = round(deadline.elapsed(), 3)
    return result


def argument_spec():
    """The options of penguinmails.vps.mailbox_sync (the module and its action plugin)."""
    return dict(
        source_host=dict(type="str", required=True),
        source_ssh_args=dict(type="str", default=""),
        target_host=dict(type="str", required=True),
        target_ssh_args=dict(type="str", default=""),
        user=dict(type="str", default="root"),
        mail_root=dict(type="path", default=DEFAULT_MAIL_ROOT),
        mode=dict(type="str", default="copy", choices=list(MODES)),
        timeout=dict(type="int", default=3600),
        connect_timeout=dict(type="int", default=15),
        progress_interval=dict(type="int", default=5),
        compress=dict(type="bool", default=False),
        changed_since=dict(type="float"),
    )


def run_task(params, check_mode=False, show=None):
    """penguinmails.vps.mailbox_sync with validated ``params``: its result, or :class:`SyncError` with the reason."""
    if params["timeout"] < 1 or params["connect_timeout"] < 1:
        raise SyncError("timeout and connect_timeout must be at least 1 second")
    if params["progress_interval"] < 1:
        raise SyncError("progress_interval must be at least 1 second")
    if params["source_host"] == params["target_host"]:
        raise SyncError("source_host and target_host are the same host (%s)" % params["source_host"])
    source = Endpoint(params["source_host"], params["source_ssh_args"], params["user"],
                      connect_timeout=params["connect_timeout"])
    target = Endpoint(params["target_host"], params["target_ssh_args"], params["user"],
                      connect_timeout=params["connect_timeout"])
    try:
        result = sync(source, target, params["mode"], root=params["mail_root"], timeout=params["timeout"],
                      check_mode=check_mode, show=show, progress_every=params["progress_interval"],
                      compress=params["compress"], changed_since=params["changed_since"])
    except SyncError as exc:
        raise SyncError("mailbox copy %s -> %s: %s" % (params["source_host"], params["target_host"], exc))
    result.setdefault("refused", 0)
    return result


def receive_stream(source_argv, target, target_root, mode, timeout, env=None, show=None, total_messages=0,
                   total_bytes=0, progress_every=3.0):
    """Stream a tar of mail (e.g. ``restic dump``) from a local command into the target's receiver."""
    deadline = Deadline(timeout)
    progress = Progress("mail restore", total_messages, total_bytes, show=show, every=progress_every)
    report = pipe(source_argv, target.command(receiver_command(target_root, mode)), deadline, what="restore",
                  source_env=env, on_report=progress.update)
    report["seconds"] = round(deadline.elapsed(), 3)
    report["progress"] = progress.result()
    return report
