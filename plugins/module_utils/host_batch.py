# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every tenant's managed SSH access on one host in one call (target side, standard library only).

A fleet run (rotate_all, regenerate, migrate's ssh_access) used to call the host once per tenant and
role. :func:`apply` takes the entries of every tenant of the host at once:

* entries are validated first; a bad entry fails alone (its result carries ``failed`` and ``msg``),
  the others go on;
* under the host lock (:func:`authorized_keys.host_lock`) every ``authorized_keys`` file is opened and
  read once, the entries for it are applied one after the other (root's file holds the admin blocks
  of every tenant of the host, each under its own marker and serial), and the file is written once,
  atomically;
* principals files of SSH certificate mode (``AuthorizedPrincipalsFile``): a block per tenant in the
  admin account's file, one file per tenant account; each file written once, atomically.

Results are per entry (``name``): what :func:`authorized_keys.compute` decided, ``stale`` when the host
already holds a newer serial for the marker, ``user_created`` and so on.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import binascii
import errno
import os
import pwd
import re

from ansible_collections.penguinmails.vps.plugins.module_utils import authorized_keys as ak

GECOS_PREFIX = "penguinmails tenant "
OWNER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")
BLOCK_MARKER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.:@-]{0,199}\Z")
PRINCIPAL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,255}\Z")


class EntryError(ak.AuthorizedKeysError):
    """One entry cannot be applied; the message names it and the rule."""


def _result(entry):
    return dict(changed=False, failed=False, msg="", user=entry.get("user"), path=None, user_created=False, user_missing=False,
                added=[], removed=[], updated=[], expiring=[], stale=False, serial=None)


def _grace(entry):
    return [dict(key=g.get("key"), expires=g.get("expires") or entry.get("grace_until")) for g in entry.get("grace_keys") or []]


def validate_entry(entry):
    """Check one entry before the host is looked at (bad input changes nothing)."""
    ak.validate_user(entry.get("user"))
    ak.compute("", entry.get("keys") or [], _grace(entry), entry.get("revoked_keys") or [], entry.get("marker"),
               bool(entry.get("exclusive")), serial=entry.get("serial"))
    owner = entry.get("owner")
    if owner is not None and not OWNER_RE.match(owner):
        raise EntryError("invalid owner %r: a tenant id" % owner)


class Accounts(object):
    """passwd entries, created on demand (useradd) through ``run(argv)``; ``check_mode`` creates nothing."""

    def __init__(self, run, check_mode):
        self.run = run
        self.check_mode = check_mode

    def get(self, entry):
        """``(passwd entry or None, created)``; refuses an account of another tenant."""
        user, owner = entry["user"], entry.get("owner")
        try:
            found = pwd.getpwnam(user)
        except KeyError:
            if not entry.get("manage_user"):
                if entry.get("missing_user") == "ignore":
                    return None, False
                raise EntryError("user %s does not exist (set manage_user: true to create it)" % user)
            shell = entry.get("shell") or "/bin/bash"
            argv = ["useradd", "--create-home", "--user-group", "--password", "*", "--shell", shell]
            if owner:
                argv += ["--comment", GECOS_PREFIX + owner]
            if self.check_mode:
                return pwd.struct_passwd((user, "x", 0, 0, GECOS_PREFIX + (owner or ""), os.path.join("/home", user), shell)), True
            self.run(argv + ["--", user])
            return pwd.getpwnam(user), True
        if owner and found.pw_gecos != GECOS_PREFIX + owner:
            if found.pw_gecos.startswith(GECOS_PREFIX) or found.pw_gecos.strip():
                raise EntryError("account %s belongs to %r, not to tenant %s: refusing to share it" % (user, found.pw_gecos, owner))
        return found, False

    def adopt(self, entry, found):
        """Mark an unowned existing account as the tenant's (GECOS); True when it changed."""
        owner = entry.get("owner")
        if not owner or found.pw_gecos == GECOS_PREFIX + owner:
            return False
        if not self.check_mode:
            self.run(["usermod", "--comment", GECOS_PREFIX + owner, "--", entry["user"]])
        return True


def apply(entries, principals=(), run=None, check_mode=False, diff=False, lock_dir=ak.LOCK_DIR):
    """Apply every entry and principals item; returns ``(results by name, principal results by name, diffs)``.

    ``run(argv)`` runs a command on the host and raises on failure (useradd, usermod).
    """
    results, order = {}, []
    valid = []
    for index, entry in enumerate(entries):
        name = entry.get("name") or "entries[%d]" % index
        if name in results:
            raise ak.AuthorizedKeysError("entries[%d]: the name %s is used twice" % (index, name))
        results[name] = _result(entry)
        order.append(name)
        try:
            validate_entry(entry)
        except ak.AuthorizedKeysError as exc:
            results[name].update(failed=True, msg=str(exc))
            continue
        valid.append((name, entry))
    principal_results = {}
    diffs = []
    accounts = Accounts(run, check_mode)
    with ak.host_lock(directory=lock_dir):
        # Principals first: an entry that takes a tenant's stored admin keys away (certificate mode) names the
        # principals items it relies on in ``requires``, and is not applied when one of them failed.
        for index, item in enumerate(principals or ()):
            name = item.get("name") or "principals[%d]" % index
            try:
                principal_results[name] = _apply_principal(item, check_mode, diff, diffs)
            except (ak.AuthorizedKeysError, OSError) as exc:
                principal_results[name] = dict(changed=False, failed=True, msg=str(exc), path=item.get("path"))
        by_path, placed = {}, []
        for name, entry in valid:
            missing = [need for need in entry.get("requires") or [] if (principal_results.get(need) or {"failed": True})["failed"]]
            if missing:
                results[name].update(failed=True, msg="not applied: the principals item %s failed (%s)" % (
                    missing[0], (principal_results.get(missing[0]) or {}).get("msg") or "not given"))
                continue
            try:
                found, created = accounts.get(entry)
            except (ak.AuthorizedKeysError, OSError) as exc:
                results[name].update(failed=True, msg=str(exc))
                continue
            results[name]["user_created"] = created
            if found is None:
                results[name]["user_missing"] = True
                continue
            path = entry.get("path") or os.path.join(found.pw_dir, ".ssh", "authorized_keys")
            results[name]["path"] = path
            key = (path, found.pw_uid, found.pw_gid, not entry.get("path"))
            if key not in by_path:
                by_path[key] = []
                placed.append(key)
            by_path[key].append((name, entry, found, created))
        for key in placed:
            _apply_file(key, by_path[key], results, accounts, check_mode, diff, diffs)
    return dict((name, results[name]) for name in order), principal_results, diffs


def _apply_file(key, items, results, accounts, check_mode, diff, diffs):
    path, uid, gid, ssh_dir = key
    try:
        keyfile = ak.KeyFile(path, uid, gid, ssh_dir=ssh_dir).open()
    except ak.AuthorizedKeysError as exc:
        for name, _entry, _found, _created in items:
            results[name].update(failed=True, msg=str(exc))
        return
    try:
        text = keyfile.before
        applied = []
        for name, entry, found, created in items:
            result = results[name]
            try:
                if entry.get("owner") and not created:
                    foreign = ak.foreign_markers(text, entry.get("marker"))
                    if foreign:
                        raise EntryError("account %s holds keys of %s, not of tenant %s: refusing to share it"
                                         % (entry["user"], ", ".join(foreign), entry["owner"]))
                plan = ak.compute(text, entry.get("keys") or [], _grace(entry), entry.get("revoked_keys") or [],
                                  entry.get("marker"), bool(entry.get("exclusive")), serial=entry.get("serial"))
            except ak.AuthorizedKeysError as exc:
                result.update(failed=True, msg=str(exc))
                continue
            if not plan.stale:
                text = plan.after
            result.update(added=plan.added, removed=plan.removed, updated=plan.updated, expiring=plan.expiring,
                          stale=plan.stale, serial=plan.serial_before if plan.stale else entry.get("serial"),
                          changed=created or (plan.changed and not plan.stale))
            applied.append((name, entry, found))
        # Write when the content changes, or to fix owner/mode of a file that exists or will.
        fix = keyfile.needs_fix() and (keyfile.file_stat is not None or bool(text))
        if fix:
            for name, _entry, _found in applied:
                results[name]["changed"] = results[name]["changed"] or not results[name]["stale"]
        if (text != keyfile.before or fix) and applied and not check_mode:
            keyfile.write(text)
        if diff and text != keyfile.before:
            diffs.append(dict(before=keyfile.before, after=text, before_header=path, after_header=path))
    except ak.AuthorizedKeysError as exc:
        for name, _entry, _found, _created in items:
            if not results[name]["failed"]:
                results[name].update(failed=True, changed=False, msg=str(exc))
        return
    finally:
        keyfile.close()
    for name, entry, found in applied:
        try:
            if accounts.adopt(entry, found):
                results[name]["changed"] = True
        except (ak.AuthorizedKeysError, OSError) as exc:
            results[name].update(failed=True, msg=str(exc))


# ---------------------------------------------------------------------------------------
# Principals files (SSH certificate mode)
# ---------------------------------------------------------------------------------------
def _read(path):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise ak.AuthorizedKeysError("cannot read %s: %s" % (path, exc.strerror))
    with os.fdopen(fd, "r") as handle:
        return handle.read()


def _write_atomic(path, text, mode=0o644):
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, ".%s.%s.tmp" % (name, binascii.hexlify(os.urandom(6)).decode("ascii")))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _block_text(text, marker, principal):
    """``text`` with the ``# BEGIN marker`` .. ``# END marker`` block set to ``principal`` (None: removed);
    the same lines Ansible's blockinfile writes, so files written by either are read by both."""
    begin, end = "# BEGIN %s" % marker, "# END %s" % marker
    lines = (text or "").splitlines()
    kept, inside = [], False
    for line in lines:
        if line == begin:
            inside = True
            continue
        if inside and line == end:
            inside = False
            continue
        if not inside:
            kept.append(line)
    if principal is not None:
        kept += [begin, principal, end]
    return "\n".join(kept) + "\n" if kept else ""


def _apply_principal(item, check_mode, diff, diffs):
    """One principals item: ``kind`` block (a tenant's block in a shared file) or file (the whole file)."""
    path, kind, state = item.get("path") or "", item.get("kind") or "file", item.get("state") or "present"
    principal = item.get("principal") or ""
    if not os.path.isabs(path) or path.endswith("/"):
        raise EntryError("invalid principals path %r: an absolute file path" % path)
    if state not in ("present", "absent") or kind not in ("block", "file"):
        raise EntryError("invalid principals item %r: kind block|file, state present|absent" % item.get("name"))
    if state == "present" and not PRINCIPAL_RE.match(principal):
        raise EntryError("invalid principal %r" % principal)
    if kind == "block" and not BLOCK_MARKER_RE.match(item.get("marker") or ""):
        raise EntryError("invalid block marker %r" % item.get("marker"))
    if not os.path.isdir(os.path.dirname(path)):
        if state == "absent":
            return dict(changed=False, failed=False, msg="", path=path)
        raise EntryError("%s is missing: the certificate mode files are not set up on this host" % os.path.dirname(path))
    before = _read(path)
    if kind == "block":
        after = _block_text(before, item["marker"], principal if state == "present" else None)
        if state == "absent" and before is None:
            after = None
    else:
        after = principal + "\n" if state == "present" else None
    changed = after != before
    if changed and not check_mode:
        if after is None:
            os.unlink(path)
        else:
            _write_atomic(path, after)
    if diff and changed:
        diffs.append(dict(before=before or "", after=after or "", before_header=path, after_header=path))
    return dict(changed=changed, failed=False, msg="", path=path)
