# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""OpenSSH ``authorized_keys``: parse, serialize, compute the managed state, write it safely.

Runs on the managed host (target side): pure standard library, Python 3.8+.

* :func:`parse` reads a whole file into :class:`AuthorizedKeys`; ``parse(text).serialize() == text``
  for every text (lines are split on ``\\n`` only; blank, comment and unparseable lines are kept as
  they were, byte for byte).
* A key line is recognised the way sshd does it: ``keytype blob [comment]``, or the same after an
  options field (``opt,name="value with , and \\" in it"``). The blob must be base64 of an SSH
  key whose embedded type name equals ``keytype``.
* :func:`compute` returns the file that holds exactly the managed keys: current keys without an
  expiry, grace keys with ``expiry-time="YYYYMMDDHHMMZ"`` (sshd refuses them after that minute even
  if no job runs), revoked and expired keys removed, lines carrying the marker of keys no longer
  listed removed, unmanaged lines untouched unless ``exclusive``. The result is deterministic and a
  second computation on its own output changes nothing.
* With a ``serial`` (the Vault version the keys come from), the file remembers the highest serial
  applied for the marker in a comment line ``# penguinmails-serial <marker> <serial>``, and a request
  with a lower serial changes nothing (``Plan.stale``): a run that read Vault before another run
  rotated the key can never put older keys back after the newer ones were installed.
* :class:`KeyFile` reads and writes the file through directory file descriptors without following
  symlinks, atomically (temporary file in the same directory, ``os.replace``), owner the user and
  mode 0600, ``~/.ssh`` 0700. :func:`host_lock` serialises read-compute-write between concurrent runs
  on one host.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import contextlib
import datetime
import errno
import fcntl
import hashlib
import os
import re
import stat
import struct

KEY_TYPES = frozenset(
    [
        "ssh-rsa",
        "ssh-dss",
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ecdsa-sha2-nistp256@openssh.com",
        "sk-ssh-ed25519@openssh.com",
        "ssh-rsa-cert-v01@openssh.com",
        "ssh-dss-cert-v01@openssh.com",
        "ssh-ed25519-cert-v01@openssh.com",
        "ecdsa-sha2-nistp256-cert-v01@openssh.com",
        "ecdsa-sha2-nistp384-cert-v01@openssh.com",
        "ecdsa-sha2-nistp521-cert-v01@openssh.com",
        "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
        "sk-ssh-ed25519-cert-v01@openssh.com",
    ]
)

# The options sshd (OpenSSH 8.x/9.x) accepts in authorized_keys; any other makes sshd reject the line.
KNOWN_OPTIONS = frozenset(
    [
        "agent-forwarding",
        "cert-authority",
        "command",
        "environment",
        "expiry-time",
        "from",
        "no-agent-forwarding",
        "no-port-forwarding",
        "no-pty",
        "no-touch-required",
        "no-user-rc",
        "no-x11-forwarding",
        "permitlisten",
        "permitopen",
        "port-forwarding",
        "principals",
        "pty",
        "restrict",
        "tunnel",
        "user-rc",
        "verify-required",
        "x11-forwarding",
    ]
)

EXPIRY_OPTION = "expiry-time"
MAX_FILE_SIZE = 16 * 1024 * 1024
USER_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$"

_WS = " \t"
_OPT_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_KEY_RE = re.compile(r"([^ \t]+)[ \t]+([^ \t]+)(?:[ \t]+(.*))?\Z", re.S)
_KEYTYPE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9@._+-]*\Z")
_USER_RE = re.compile(USER_NAME_PATTERN[1:-1] + r"\Z")
_MARKER_RE = re.compile(r"[^\s#][^\s]{0,199}\Z")
_OPENSSH_TIME_RE = re.compile(r"(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})(\d{2})?)?Z?\Z")
_ISO_TIME_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6})\d*)?)?)?"
    r"(Z|[+-]\d{2}:?\d{2})?\Z"
)
UTC = datetime.timezone.utc


class AuthorizedKeysError(ValueError):
    """Bad input or an unsafe file; the one-line message is safe to show (keys are public)."""


def _show(value, limit=60):
    text = repr(value)
    if "PRIVATE KEY" in text:
        return "<a private key>"
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


# ---------------------------------------------------------------------------------------
# Lines
# ---------------------------------------------------------------------------------------
class KeyLine(object):
    """One key line: ``[options] keytype blob [comment]``.

    ``options`` is a tuple of ``(name, value)``; ``value`` is ``None`` for a flag such as
    ``no-pty`` and the unquoted string otherwise. ``raw`` is the line as read (``None`` for
    a line built here); equality ignores ``raw``.
    """

    __slots__ = ("options", "keytype", "blob", "comment", "raw")

    def __init__(self, keytype, blob, options=(), comment="", raw=None):
        self.keytype = keytype
        self.blob = blob
        self.options = tuple(options)
        self.comment = comment
        self.raw = raw

    def _ident(self):
        return (self.options, self.keytype, self.blob, self.comment)

    def __eq__(self, other):
        return isinstance(other, KeyLine) and self._ident() == other._ident()

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash(self._ident())

    def __repr__(self):
        return "KeyLine(%r)" % (self.render(),)

    @property
    def key(self):
        return "%s %s" % (self.keytype, self.blob)

    @property
    def text(self):
        return self.raw if self.raw is not None else self.render()

    def render(self):
        parts = []
        if self.options:
            parts.append(render_options(self.options))
        parts.append(self.keytype)
        parts.append(self.blob)
        if self.comment:
            parts.append(self.comment)
        return " ".join(parts)

    def option(self, name):
        """The value of option ``name`` (case-insensitive); ``True`` for a flag, ``None`` if absent."""
        for opt, value in self.options:
            if opt.lower() == name:
                return True if value is None else value
        return None

    def fingerprint(self):
        return fingerprint(self.blob)

    def has_marker(self, marker):
        return bool(marker) and self.comment.split(None, 1)[:1] == [marker]

    def summary(self):
        return {"fingerprint": self.fingerprint(), "key_type": self.keytype, "comment": self.comment}


class OtherLine(object):
    """A blank, comment or unparseable line, kept byte for byte."""

    __slots__ = ("raw", "kind")

    def __init__(self, raw, kind):
        self.raw = raw
        self.kind = kind  # "blank", "comment" or "invalid"

    @property
    def text(self):
        return self.raw

    def __eq__(self, other):
        return isinstance(other, OtherLine) and (self.raw, self.kind) == (other.raw, other.kind)

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash((self.raw, self.kind))

    def __repr__(self):
        return "OtherLine(%r, %r)" % (self.raw, self.kind)


class AuthorizedKeys(object):
    """A parsed file: its lines and whether the last one ended with a newline."""

    def __init__(self, lines=(), trailing_newline=True):
        self.lines = list(lines)
        self.trailing_newline = trailing_newline

    def serialize(self):
        if not self.lines:
            return ""
        return "\n".join(line.text for line in self.lines) + ("\n" if self.trailing_newline else "")

    def key_lines(self):
        return [line for line in self.lines if isinstance(line, KeyLine)]


# ---------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------
def _decode_blob(keytype, blob):
    """Return the decoded key blob if it is base64 of an SSH key of type ``keytype``, else None."""
    try:
        data = base64.b64decode(blob.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None
    if len(data) < 4:
        return None
    (length,) = struct.unpack(">I", data[:4])
    if length > len(data) - 4:
        return None
    try:
        inner = data[4:4 + length].decode("ascii")
    except UnicodeDecodeError:
        return None
    return data if inner == keytype else None


def fingerprint(blob):
    """The ``SHA256:...`` fingerprint ssh-keygen prints for a base64 key blob."""
    digest = hashlib.sha256(base64.b64decode(blob.encode("ascii"))).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def _skip_options(text):
    """Split ``text`` after its options field the way sshd does; None if a quote is left open."""
    quoted = False
    i = 0
    length = len(text)
    while i < length:
        char = text[i]
        if not quoted and char in _WS:
            break
        if char == "\\" and i + 1 < length and text[i + 1] == '"':
            i += 2
            continue
        if char == '"':
            quoted = not quoted
        i += 1
    if quoted:
        return None
    return text[:i], text[i:]


def parse_options(text):
    """Parse ``name,name="value",...`` into a tuple of (name, value); raise AuthorizedKeysError."""
    options = []
    i = 0
    length = len(text)
    while True:
        match = _OPT_NAME_RE.match(text, i)
        if not match:
            raise AuthorizedKeysError("bad option name at %s" % _show(text[i:]))
        name = match.group()
        i = match.end()
        value = None
        if i < length and text[i] == "=":
            i += 1
            if i >= length or text[i] != '"':
                raise AuthorizedKeysError("the value of option %s must be in double quotes" % name)
            i += 1
            chars = []
            while True:
                if i >= length:
                    raise AuthorizedKeysError("unterminated quote in option %s" % name)
                char = text[i]
                if char == "\\" and i + 1 < length and text[i + 1] == '"':
                    chars.append('"')
                    i += 2
                    continue
                if char == '"':
                    i += 1
                    break
                chars.append(char)
                i += 1
            value = "".join(chars)
        options.append((name, value))
        if i == length:
            return tuple(options)
        if text[i] != ",":
            raise AuthorizedKeysError("options must be separated by ',' at %s" % _show(text[i:]))
        i += 1


def _check_option_value(name, value):
    if value is None:
        return
    if value.endswith("\\"):
        raise AuthorizedKeysError("the value of option %s cannot end with a backslash" % name)
    if "\n" in value or "\r" in value or "\0" in value:
        raise AuthorizedKeysError("the value of option %s cannot contain line breaks or NUL" % name)


def render_options(options):
    parts = []
    for name, value in options:
        if not _OPT_NAME_RE.fullmatch(name):
            raise AuthorizedKeysError("bad option name %s" % _show(name))
        if value is None:
            parts.append(name)
        else:
            _check_option_value(name, value)
            parts.append('%s="%s"' % (name, value.replace('"', '\\"')))
    return ",".join(parts)


def _parse_key(text, options, raw):
    match = _KEY_RE.match(text)
    if not match:
        return None
    keytype, blob, comment = match.group(1), match.group(2), match.group(3) or ""
    if not _KEYTYPE_RE.match(keytype) or _decode_blob(keytype, blob) is None:
        return None
    return KeyLine(keytype, blob, options, comment.strip(_WS), raw)


def parse_line(raw):
    """Classify one line (without its ``\\n``) as KeyLine or OtherLine."""
    text = raw[:-1] if raw.endswith("\r") else raw
    stripped = text.lstrip(_WS)
    if not stripped.strip():
        return OtherLine(raw, "blank")
    if stripped.startswith("#"):
        return OtherLine(raw, "comment")
    line = _parse_key(stripped, (), raw)
    if line is not None:
        return line
    split = _skip_options(stripped)
    if split is not None and split[0]:
        try:
            options = parse_options(split[0])
        except AuthorizedKeysError:
            options = None
        if options is not None:
            line = _parse_key(split[1].lstrip(_WS), options, raw)
            if line is not None:
                return line
    return OtherLine(raw, "invalid")


def parse(text):
    """Parse a whole file (str; decode bytes with ``surrogateescape`` to keep any byte)."""
    if text == "":
        return AuthorizedKeys([], trailing_newline=False)
    pieces = text.split("\n")
    trailing = pieces[-1] == ""
    if trailing:
        pieces.pop()
    return AuthorizedKeys([parse_line(piece) for piece in pieces], trailing_newline=trailing)


def parse_public_key(value, what="key"):
    """Validate a public key given by the user (``[options] type blob [comment]``) -> KeyLine."""
    if not isinstance(value, str):
        raise AuthorizedKeysError("%s %s: must be a string" % (what, _show(value)))
    if "-----BEGIN" in value and "PRIVATE KEY-----" in value:
        raise AuthorizedKeysError("%s is a private key; give the public key (ssh-keygen -y)" % what)
    text = value.strip()
    if not text:
        raise AuthorizedKeysError("%s is empty" % what)
    if "\n" in text or "\r" in text or "\0" in text:
        raise AuthorizedKeysError("%s %s: must be a single line" % (what, _show(value)))
    line = parse_line(text)
    if not isinstance(line, KeyLine):
        raise AuthorizedKeysError(
            "%s %s is not an OpenSSH public key ('[options] type base64 [comment]' with a valid base64 key blob)"
            % (what, _show(value))
        )
    if line.keytype not in KEY_TYPES:
        raise AuthorizedKeysError("%s %s: unsupported key type %s" % (what, _show(value), _show(line.keytype)))
    for name, option_value in line.options:
        if name.lower() not in KNOWN_OPTIONS:
            raise AuthorizedKeysError("%s %s: sshd does not know the option %s" % (what, _show(value), _show(name)))
        _check_option_value(name, option_value)
    line.raw = None
    return line


# ---------------------------------------------------------------------------------------
# Expiry times
# ---------------------------------------------------------------------------------------
def parse_expiry(value):
    """Parse an expiry as an aware UTC datetime.

    Accepts a datetime, ISO 8601 (``2026-11-24T10:00:00Z``, an offset, or no zone meaning UTC)
    or the OpenSSH form ``YYYYMMDD[HHMM[SS]][Z]`` (taken as UTC).
    """
    if isinstance(value, datetime.datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if not isinstance(value, str):
        raise AuthorizedKeysError("invalid expiry %s: must be a string" % _show(value))
    text = value.strip()
    try:
        match = _OPENSSH_TIME_RE.match(text)
        if match:
            parts = [int(part or 0) for part in match.groups()]
            return datetime.datetime(*parts, tzinfo=UTC)
        match = _ISO_TIME_RE.match(text)
        if match:
            parts = [int(part or 0) for part in match.groups()[:6]]
            parts.append(int((match.group(7) or "0").ljust(6, "0")))
            moment = datetime.datetime(*parts, tzinfo=UTC)
            zone = match.group(8)
            if zone and zone != "Z":
                sign = -1 if zone[0] == "-" else 1
                digits = zone[1:].replace(":", "")
                offset = datetime.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
                moment -= sign * offset
            return moment
    except (ValueError, OverflowError) as exc:
        raise AuthorizedKeysError("invalid expiry %s: %s" % (_show(value), exc))
    raise AuthorizedKeysError(
        "invalid expiry %s: use ISO 8601 UTC (2026-11-24T10:00:00Z) or YYYYMMDDHHMMZ" % _show(value)
    )


def expiry_minute(moment):
    """``moment`` in UTC rounded up to the minute: sshd accepts a key until that minute begins.

    Rounded up like ``vault_ssh_keypair``'s ``expiry_time``, so host and Vault agree on the value.
    """
    moment = parse_expiry(moment)
    if moment.second or moment.microsecond:
        moment = moment.replace(second=0, microsecond=0) + datetime.timedelta(minutes=1)
    return moment


def format_expiry(moment):
    """``expiry-time`` value for ``moment``: UTC, minute precision, rounded up."""
    return expiry_minute(moment).strftime("%Y%m%d%H%MZ")


# ---------------------------------------------------------------------------------------
# The managed state
# ---------------------------------------------------------------------------------------
class Plan(object):
    """What :func:`compute` decided: the new text and what changed.

    ``stale``: the file already holds the keys of a higher serial; nothing was changed.
    ``serial_before``: the serial the file held for the marker (None when it had none).
    """

    def __init__(self, before, after, added, removed, updated, expiring, stale=False, serial_before=None):
        self.before = before
        self.after = after
        self.added = added
        self.removed = removed
        self.updated = updated
        self.expiring = expiring
        self.stale = stale
        self.serial_before = serial_before

    @property
    def changed(self):
        return self.before != self.after


def validate_marker(marker):
    if marker is None or marker == "":
        return None
    if not isinstance(marker, str) or not _MARKER_RE.match(marker):
        raise AuthorizedKeysError(
            "invalid marker %s: 1-200 characters, no whitespace, not starting with '#'" % _show(marker)
        )
    return marker


def validate_user(name):
    if not isinstance(name, str) or not _USER_RE.match(name):
        raise AuthorizedKeysError("invalid user name %s: must match %s" % (_show(name), USER_NAME_PATTERN))
    return name


def _managed_line(key, marker, expiry):
    options = [(name, value) for name, value in key.options if name.lower() != EXPIRY_OPTION]
    if expiry is not None:
        options.append((EXPIRY_OPTION, format_expiry(expiry)))
    comment = key.comment
    if marker and not key.has_marker(marker):
        comment = marker + (" " + comment if comment else "")
    return KeyLine(key.keytype, key.blob, options, comment)


def _desired(keys, grace_keys, revoked_keys, marker, now):
    """Validate the inputs; return (desired lines by blob, blobs to remove with reason, expiring)."""
    desired = {}
    order = []
    remove = {}
    expiring = []
    seen = {}
    for index, value in enumerate(keys or ()):
        key = parse_public_key(value, "keys[%d]" % index)
        if key.blob not in desired:
            desired[key.blob] = _managed_line(key, marker, None)
            order.append(key.blob)
            seen[key.blob] = "keys"
    for index, entry in enumerate(grace_keys or ()):
        if isinstance(entry, (tuple, list)) and len(entry) == 2:
            value, expires = entry
        elif isinstance(entry, dict):
            value, expires = entry.get("key"), entry.get("expires")
        else:
            raise AuthorizedKeysError("grace_keys[%d] must be {key, expires}" % index)
        what = "grace_keys[%d]" % index
        key = parse_public_key(value, what)
        if expires is None or expires == "":
            raise AuthorizedKeysError("%s has no expiry (set expires or grace_until)" % what)
        moment = parse_expiry(expires)
        if key.blob in seen:
            raise AuthorizedKeysError("%s is also listed in %s" % (what, seen[key.blob]))
        seen[key.blob] = "grace_keys"
        if expiry_minute(moment) <= now:
            remove[key.blob] = "expired"
            continue
        desired[key.blob] = _managed_line(key, marker, moment)
        order.append(key.blob)
        expiring.append(
            {
                "fingerprint": key.fingerprint(),
                "expires": expiry_minute(moment).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "expiry_time": format_expiry(moment),
            }
        )
    for index, value in enumerate(revoked_keys or ()):
        what = "revoked_keys[%d]" % index
        key = parse_public_key(value, what)
        if key.blob in seen and seen[key.blob] != "revoked_keys":
            raise AuthorizedKeysError("%s is also listed in %s" % (what, seen[key.blob]))
        seen[key.blob] = "revoked_keys"
        remove[key.blob] = "revoked"
    return [(blob, desired[blob]) for blob in order], remove, expiring


SERIAL_TAG = "# penguinmails-serial"


def _serial_line(line, marker):
    """The serial of ``line`` if it is the serial comment of ``marker``, else None."""
    if not isinstance(line, OtherLine) or line.kind != "comment":
        return None
    parts = line.raw.split()
    if len(parts) == 4 and " ".join(parts[:2]) == SERIAL_TAG and parts[2] == marker and parts[3].isdigit():
        return int(parts[3])
    return None


def validate_serial(serial, marker):
    if serial is None:
        return None
    if isinstance(serial, bool) or not isinstance(serial, int) or serial < 0:
        raise AuthorizedKeysError("invalid serial %s: must be a non-negative integer" % _show(serial))
    if not marker:
        raise AuthorizedKeysError("a serial needs a marker")
    return serial


def compute(text, keys=(), grace_keys=(), revoked_keys=(), marker=None, exclusive=False, now=None, serial=None):
    """Return the :class:`Plan` that brings ``text`` (the current file) to the managed state.

    ``keys``: public keys valid now (no expiry). ``grace_keys``: ``{key, expires}`` dicts or
    ``(key, expires)`` pairs; written with ``expiry-time``, dropped once expired.
    ``revoked_keys``: removed. With ``marker`` every key line whose comment starts with it and
    whose key is not listed is removed too. With ``exclusive`` every other key line and every
    unparseable line is removed (blank and comment lines stay).
    Raises :class:`AuthorizedKeysError` for bad input before anything is decided.
    """
    now = parse_expiry(now) if now is not None else datetime.datetime.now(UTC)
    marker = validate_marker(marker)
    serial = validate_serial(serial, marker)
    desired_list, remove, expiring = _desired(keys, grace_keys, revoked_keys, marker, now)
    desired = dict(desired_list)
    current = parse(text)
    serial_before = None
    if serial is not None:
        found = [n for n in (_serial_line(line, marker) for line in current.lines) if n is not None]
        serial_before = max(found) if found else None
        if serial_before is not None and serial_before > serial:
            return Plan(text, text, [], [], [], [], stale=True, serial_before=serial_before)
    placed = set()
    lines = []
    added, removed, updated = [], [], []
    serial_placed = False
    for number, line in enumerate(current.lines, 1):
        if serial is not None and _serial_line(line, marker) is not None:
            if serial_placed or _serial_line(line, marker) != serial:
                removed.append({"fingerprint": None, "key_type": None, "comment": line.raw, "line": number, "reason": "serial"})
                if serial_placed:
                    continue
                line = OtherLine("%s %s %d" % (SERIAL_TAG, marker, serial), "comment")
            serial_placed = True
            lines.append(line)
            continue
        if isinstance(line, KeyLine):
            reason = None
            if line.blob in desired:
                if line.blob in placed:
                    reason = "duplicate"
                else:
                    placed.add(line.blob)
                    wanted = desired[line.blob]
                    if wanted.render() == line.raw:
                        lines.append(line)
                    else:
                        lines.append(wanted)
                        updated.append(dict(wanted.summary(), line=number))
                    continue
            elif line.blob in remove:
                reason = remove[line.blob]
            elif line.has_marker(marker):
                reason = "no longer listed"
            elif exclusive:
                reason = "exclusive"
            if reason:
                removed.append(dict(line.summary(), line=number, reason=reason))
                continue
        elif exclusive and line.kind == "invalid":
            removed.append({"fingerprint": None, "key_type": None, "comment": None, "line": number, "reason": "exclusive"})
            continue
        lines.append(line)
    if serial is not None and not serial_placed:
        lines.append(OtherLine("%s %s %d" % (SERIAL_TAG, marker, serial), "comment"))
        added.append({"fingerprint": None, "key_type": None, "comment": "serial %d" % serial})
    for blob, wanted in desired_list:
        if blob not in placed:
            lines.append(wanted)
            added.append(wanted.summary())
    if added or removed or updated:
        after = AuthorizedKeys(lines, trailing_newline=True).serialize()
    else:
        after = text
    return Plan(text, after, added, removed, updated, expiring, serial_before=serial_before)


def foreign_markers(text, marker):
    """Markers of the same family as ``marker`` (``family:...``) that belong to someone else.

    Used to refuse an account whose keys belong to another tenant: ``penguinmails:t2:tenant`` is
    foreign to ``penguinmails:t1:tenant``.
    """
    if not marker or ":" not in marker:
        return []
    family = marker.split(":", 1)[0] + ":"
    found = []
    for line in parse(text).lines:
        if isinstance(line, KeyLine) and line.comment:
            word = line.comment.split(None, 1)[0]
            if word.startswith(family) and word != marker and word not in found:
                found.append(word)
    return found


LOCK_DIR = "/run/penguinmails"


@contextlib.contextmanager
def host_lock(directory=LOCK_DIR, name="authorized_keys.lock"):
    """An exclusive lock for one read-compute-write of ``authorized_keys`` files on this host.

    The lock file lives in a root-only directory (created 0700; a symlink or a directory owned by
    someone else is refused), so no account can hold or redirect it.
    """
    try:
        os.mkdir(directory, 0o700)
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise AuthorizedKeysError("cannot create the lock directory %s: %s" % (directory, exc.strerror))
    st = os.lstat(directory)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) & 0o022:
        raise AuthorizedKeysError("refusing the lock directory %s: not a directory owned by this user and "
                                  "writable by it alone" % directory)
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(os.path.join(directory, name), flags, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------
# The file on the host
# ---------------------------------------------------------------------------------------
def _open_dir(path, dir_fd=None, follow=True):
    flags = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)
    if not follow:
        flags |= os.O_NOFOLLOW
    return os.open(path, flags, dir_fd=dir_fd)


class KeyFile(object):
    """An authorized_keys file of one user, opened without following symlinks.

    ``ssh_dir``: when True the parent directory is ``~/.ssh`` and is kept at 0700, owned by the
    user (created if missing); otherwise the parent directory must exist and is left alone.
    """

    def __init__(self, path, uid, gid, ssh_dir=False):
        if not os.path.isabs(path) or path.endswith("/"):
            raise AuthorizedKeysError("invalid path %s: must be an absolute file path" % _show(path))
        self.path = path
        self.uid = uid
        self.gid = gid
        self.ssh_dir = ssh_dir
        self.directory, self.name = os.path.split(path)
        self.dir_fd = None
        self.dir_missing = False
        self.before = ""
        self.file_stat = None
        self.dir_stat = None

    def _fail(self, what, exc=None):
        detail = ": %s" % (exc.strerror or exc) if exc is not None else ""
        return AuthorizedKeysError("%s %s%s" % (what, self.path, detail))

    def open(self):
        """Open the directory and read the file; a missing ~/.ssh or file reads as empty."""
        try:
            if self.ssh_dir:
                parent_fd = _open_dir(os.path.dirname(self.directory))
                try:
                    self.dir_fd = _open_dir(os.path.basename(self.directory), parent_fd, follow=False)
                finally:
                    os.close(parent_fd)
            else:
                self.dir_fd = _open_dir(self.directory)
        except OSError as exc:
            if exc.errno == errno.ENOENT and self.ssh_dir:
                self.dir_missing = True
                return self
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise self._fail("refusing to use a directory that is a symlink or not a directory for")
            raise self._fail("cannot open the directory of", exc)
        self.dir_stat = os.fstat(self.dir_fd)
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.name, flags, dir_fd=self.dir_fd)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return self
            if exc.errno == errno.ELOOP:
                raise self._fail("refusing to follow a symlink at")
            raise self._fail("cannot read", exc)
        try:
            self.file_stat = os.fstat(fd)
            if not stat.S_ISREG(self.file_stat.st_mode):
                raise self._fail("not a regular file:")
            if self.file_stat.st_size > MAX_FILE_SIZE:
                raise self._fail("file too large (over %d bytes):" % MAX_FILE_SIZE)
            chunks = []
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(fd)
        self.before = b"".join(chunks).decode("utf-8", "surrogateescape")
        return self

    def close(self):
        if self.dir_fd is not None:
            os.close(self.dir_fd)
            self.dir_fd = None

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc_info):
        self.close()

    def _meta_ok(self, st, mode):
        return st is not None and st.st_uid == self.uid and stat.S_IMODE(st.st_mode) == mode

    def needs_fix(self):
        """True when the owner or mode of the file (or of ~/.ssh) is wrong or ~/.ssh is missing."""
        if self.ssh_dir and (self.dir_missing or not self._meta_ok(self.dir_stat, 0o700)):
            return True
        return self.file_stat is not None and not (
            self._meta_ok(self.file_stat, 0o600) and self.file_stat.st_gid == self.gid
        )

    def write(self, text):
        """Write ``text`` atomically with owner uid:gid and mode 0600."""
        if self.ssh_dir:
            self._ensure_ssh_dir()
        data = text.encode("utf-8", "surrogateescape")
        tmp = ".%s.%s.tmp" % (self.name, binascii.hexlify(os.urandom(6)).decode("ascii"))
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(tmp, flags, 0o600, dir_fd=self.dir_fd)
        except OSError as exc:
            raise self._fail("cannot create a temporary file next to", exc)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fchown(fd, self.uid, self.gid)
                os.fchmod(fd, 0o600)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        except OSError as exc:
            try:
                os.unlink(tmp, dir_fd=self.dir_fd)
            except OSError:
                pass
            raise self._fail("cannot write", exc)
        try:
            os.fsync(self.dir_fd)
        except OSError as exc:
            raise self._fail("cannot sync the directory of", exc)

    def _ensure_ssh_dir(self):
        try:
            if self.dir_missing:
                parent_fd = _open_dir(os.path.dirname(self.directory))
                try:
                    name = os.path.basename(self.directory)
                    os.mkdir(name, 0o700, dir_fd=parent_fd)
                    self.dir_fd = _open_dir(name, parent_fd, follow=False)
                finally:
                    os.close(parent_fd)
                self.dir_missing = False
            os.fchown(self.dir_fd, self.uid, self.gid)
            os.fchmod(self.dir_fd, 0o700)
        except OSError as exc:
            raise self._fail("cannot prepare the directory of", exc)
