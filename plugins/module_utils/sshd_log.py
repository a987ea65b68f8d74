# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Failed SSH logins from an sshd log (syslog ``auth.log``, ``journalctl -o short-iso`` or ``sshd -E``).

Recognised lines (OpenSSH 7 to 9)::

    Failed publickey for root from 198.51.100.4 port 40022 ssh2: ED25519 SHA256:...
    Failed password for invalid user bob from 198.51.100.4 port 40022 ssh2
    Invalid user bob from 198.51.100.4 port 40022
    maximum authentication attempts exceeded for root from 198.51.100.4 port 40022 ssh2 [preauth]

Only user names, addresses, ports, methods and public key fingerprints are returned.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import re

from ansible_collections.penguinmails.vps.plugins.module_utils.timeutil import parse_time

_FAILED_RE = re.compile(
    r"Failed (?P<method>[a-z-]+) for (?P<invalid>invalid user )?(?P<user>\S*) from (?P<ip>[0-9A-Fa-f:.]+)"
    r" port (?P<port>\d+)(?: ssh2)?(?:: (?P<keytype>[A-Z0-9-]+) (?P<fingerprint>SHA256:\S+))?"
)
_INVALID_RE = re.compile(r"Invalid user (?P<user>\S*) from (?P<ip>[0-9A-Fa-f:.]+)(?: port (?P<port>\d+))?")
_MAXTRIES_RE = re.compile(
    r"maximum authentication attempts exceeded for (?P<invalid>invalid user )?(?P<user>\S*) from "
    r"(?P<ip>[0-9A-Fa-f:.]+) port (?P<port>\d+)"
)
_SYSLOG_TIME_RE = re.compile(r"^(?P<mon>[A-Z][a-z]{2}) +(?P<day>\d{1,2}) (?P<time>\d\d:\d\d:\d\d) ")
_ISO_TIME_RE = re.compile(r"^(?P<iso>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?) ")
_MONTHS = dict((m, i) for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1))


def _line_time(line, now):
    match = _ISO_TIME_RE.match(line)
    if match:
        return parse_time(match.group("iso"))
    match = _SYSLOG_TIME_RE.match(line)
    if match:
        # Classic syslog has no year nor zone: the controller's UTC year, or last year for a future date.
        try:
            hour, minute, second = (int(x) for x in match.group("time").split(":"))
            moment = datetime.datetime(now.year, _MONTHS[match.group("mon")], int(match.group("day")), hour, minute,
                                       second, tzinfo=datetime.timezone.utc)
        except (KeyError, ValueError):
            return None
        if moment > now + datetime.timedelta(days=1):
            moment = moment.replace(year=now.year - 1)
        return moment
    return None


def parse_line(line, now=None):
    """Return a failure dict for a failed-login line, or ``None``."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    for kind, pattern in (("failed", _FAILED_RE), ("invalid_user", _INVALID_RE), ("max_attempts", _MAXTRIES_RE)):
        match = pattern.search(line)
        if not match:
            continue
        groups = match.groupdict()
        moment = _line_time(line, now)
        return {
            "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None,
            "kind": kind,
            "method": groups.get("method") or ("none" if kind == "invalid_user" else None),
            "user": groups.get("user") or "",
            "invalid_user": kind == "invalid_user" or bool(groups.get("invalid")),
            "ip": groups.get("ip"),
            "port": int(groups["port"]) if groups.get("port") else None,
            "key_type": groups.get("keytype"),
            "fingerprint": groups.get("fingerprint"),
        }
    return None


def parse_lines(lines, since=None, now=None, max_entries=200):
    """Failures in ``lines`` (at or after ``since`` when their time is known) and their counts."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    failures = []
    for line in lines:
        if not any(word in line for word in ("Failed ", "Invalid user", "maximum authentication")):
            continue
        entry = parse_line(line.rstrip("\n"), now)
        if entry is None:
            continue
        if since is not None and entry["time"] is not None:
            moment = datetime.datetime.strptime(entry["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
            if moment < since:
                continue
        failures.append(entry)
    sources, users = {}, {}
    for entry in failures:
        sources[entry["ip"]] = sources.get(entry["ip"], 0) + 1
        users[entry["user"]] = users.get(entry["user"], 0) + 1
    return {
        "count": len(failures),
        "sources": sources,
        "users": users,
        "invalid_user_count": sum(1 for e in failures if e["kind"] == "invalid_user"),
        "failed_publickey_count": sum(1 for e in failures if e["kind"] == "failed" and e["method"] == "publickey"),
        "failures": failures[-max_entries:] if max_entries else [],
        "truncated": bool(max_entries) and len(failures) > max_entries,
    }
