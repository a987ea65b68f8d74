# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""authorized_keys parser, serializer, compute() and the safe file writer."""
from __future__ import annotations

import base64
import datetime
import os
import stat
import struct
import subprocess

import pytest

from ansible_collections.penguinmails.vps.plugins.module_utils import authorized_keys as ak

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 11, 23, 10, 0, 30, tzinfo=UTC)
MARK = "penguinmails:t1:admin"


def make_key(seed, keytype="ssh-ed25519", comment=""):
    """A well-formed public key line (ed25519 layout: type string + 32 bytes)."""
    name = keytype.encode()
    body = bytes((seed * 7 + i) % 256 for i in range(32))
    blob = struct.pack(">I", len(name)) + name + struct.pack(">I", 32) + body
    text = "%s %s" % (keytype, base64.b64encode(blob).decode())
    return text + (" " + comment if comment else "")


A, B, C, D = (make_key(n, comment="k%d@x" % n) for n in range(1, 5))


def blob_of(key):
    return key.split()[1]


# ------------------------------------------------------------------ parsing
def test_parse_plain_key_line():
    line = ak.parse_line(A)
    assert isinstance(line, ak.KeyLine)
    assert (line.keytype, line.blob, line.comment, line.options) == ("ssh-ed25519", blob_of(A), "k1@x", ())


def test_parse_options_with_quoted_commas_and_escaped_quotes():
    raw = 'from="10.0.0.1,::1",command="echo \\"a, b\\"",no-pty,environment="X=1 2" ' + A
    line = ak.parse_line(raw)
    assert isinstance(line, ak.KeyLine)
    assert line.options == (("from", "10.0.0.1,::1"), ("command", 'echo "a, b"'), ("no-pty", None), ("environment", "X=1 2"))
    assert line.option("command") == 'echo "a, b"'
    assert line.option("no-pty") is True
    assert line.render() == raw
    assert ak.parse_line(line.render()) == line


def test_comment_with_spaces_and_no_comment():
    assert ak.parse_line(make_key(9) + "  two words here").comment == "two words here"
    assert ak.parse_line(make_key(9)).comment == ""


@pytest.mark.parametrize(
    "raw, kind",
    [
        ("", "blank"),
        ("   \t", "blank"),
        ("# a comment", "comment"),
        ("   # indented comment", "comment"),
        ("ssh-ed25519 not-base64!", "invalid"),
        ("ssh-rsa " + blob_of(A), "invalid"),  # blob says ssh-ed25519
        ('from="unterminated ' + A, "invalid"),
        ("garbage", "invalid"),
        ("bad option=noquotes " + A, "invalid"),
    ],
)
def test_non_key_lines_are_classified(raw, kind):
    line = ak.parse_line(raw)
    assert isinstance(line, ak.OtherLine) and line.kind == kind and line.text == raw


def test_real_keys_from_ssh_keygen_and_fingerprint(tmp_path):
    for keytype in ("ed25519", "ecdsa", "rsa"):
        path = tmp_path / keytype
        subprocess.run(["ssh-keygen", "-q", "-t", keytype, "-N", "", "-f", str(path), "-C", "real"], check=True)
        text = (tmp_path / (keytype + ".pub")).read_text()
        line = ak.parse_public_key(text)
        printed = subprocess.run(["ssh-keygen", "-lf", str(path) + ".pub"], check=True, capture_output=True, text=True)
        assert printed.stdout.split()[1] == line.fingerprint()


def test_file_round_trip_keeps_bytes():
    text = "# head\r\n" + A + "\n\n  garbage line \n" + 'no-pty ' + B + "\n" + "\udcff broken utf8\n" + C
    parsed = ak.parse(text)
    assert parsed.serialize() == text
    assert [type(line).__name__ for line in parsed.lines] == ["OtherLine", "KeyLine", "OtherLine", "OtherLine", "KeyLine", "OtherLine", "KeyLine"]
    assert parsed.trailing_newline is False


@pytest.mark.parametrize(
    "value, message",
    [
        ("", "is empty"),
        ("ssh-ed25519", "is not an OpenSSH public key"),
        ("ssh-ed25519 AAAA", "is not an OpenSSH public key"),
        (A + "\n" + B, "single line"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn", "is a private key"),
        ("frob " + A, "sshd does not know the option 'frob'"),
        (make_key(1, keytype="ssh-foo"), "unsupported key type"),
        (42, "must be a string"),
    ],
)
def test_bad_public_keys_are_rejected_clearly(value, message):
    with pytest.raises(ak.AuthorizedKeysError, match=message) as info:
        ak.parse_public_key(value)
    assert "\n" not in str(info.value)
    assert "b3Blbn" not in str(info.value)


# ------------------------------------------------------------------ expiry
@pytest.mark.parametrize(
    "value, expected",
    [
        ("2026-11-24T10:44:37Z", "202611241045Z"),
        ("2026-11-24T10:44:00.123456+00:00", "202611241045Z"),
        ("2026-11-24T12:44:00+02:00", "202611241044Z"),
        ("2026-11-24 10:44", "202611241044Z"),
        ("202611241044Z", "202611241044Z"),
        ("20261124104459", "202611241045Z"),
        ("20261124", "202611240000Z"),
        (datetime.datetime(2026, 11, 24, 10, 44, 59), "202611241045Z"),
    ],
)
def test_expiry_formats(value, expected):
    assert ak.format_expiry(value) == expected


@pytest.mark.parametrize("value", ["tomorrow", "2026-13-01T00:00:00Z", "2026-11-24T25:00Z", None, "1"])
def test_bad_expiry_is_one_line_error(value):
    with pytest.raises(ak.AuthorizedKeysError, match="invalid expiry"):
        ak.parse_expiry(value)


# ------------------------------------------------------------------ compute
def test_compute_full_rotation_state():
    before = "# keep me\n" + D + "\n" + B + "\n" + C + "\n"
    plan = ak.compute(
        before,
        keys=[A],
        grace_keys=[{"key": B, "expires": "2026-11-24T10:00:00Z"}],
        revoked_keys=[C],
        marker=MARK,
        now=NOW,
    )
    lines = plan.after.splitlines()
    assert lines[0] == "# keep me"
    assert lines[1] == D  # unmanaged, untouched
    assert lines[2] == 'expiry-time="202611241000Z" ' + B.replace("k2@x", MARK + " k2@x")
    assert lines[3] == A.replace("k1@x", MARK + " k1@x")
    assert len(lines) == 4
    assert [r["reason"] for r in plan.removed] == ["revoked"]
    assert plan.added[0]["fingerprint"] == ak.fingerprint(blob_of(A))
    assert plan.updated[0]["line"] == 3
    assert plan.expiring == [{"fingerprint": ak.fingerprint(blob_of(B)), "expires": "2026-11-24T10:00:00Z", "expiry_time": "202611241000Z"}]
    again = ak.compute(plan.after, keys=[A], grace_keys=[(B, "2026-11-24T10:00:00Z")], revoked_keys=[C], marker=MARK, now=NOW)
    assert not again.changed and again.after == plan.after


def test_expired_grace_key_is_removed_and_current_key_loses_expiry():
    before = 'expiry-time="203001010000Z" ' + A + "\n" + 'expiry-time="202611231000Z" ' + B + "\n"
    plan = ak.compute(before, keys=[A], grace_keys=[(B, "2026-11-23T10:00:00Z")], now=NOW)
    assert plan.after == A + "\n"
    assert [r["reason"] for r in plan.removed] == ["expired"]
    assert plan.expiring == []


def test_marker_removes_keys_no_longer_listed_only():
    before = (
        A + " " + "\n"
        + B.replace("k2@x", MARK + " old") + "\n"
        + C.replace("k3@x", "penguinmails:t2:admin") + "\n"
    )
    plan = ak.compute(before, keys=[A], marker=MARK, now=NOW)
    assert [r["reason"] for r in plan.removed] == ["no longer listed"]
    assert C.replace("k3@x", "penguinmails:t2:admin") in plan.after
    assert blob_of(B) not in plan.after


def test_unmanaged_lines_survive_byte_for_byte_without_trailing_newline():
    odd = ["#\tcomment\r", "   ", "not a key at all", 'from="x" ' + D + "   trailing  ", "\udcfe"]
    before = "\n".join(odd)
    plan = ak.compute(before, keys=[A], now=NOW)
    assert plan.after == before + "\n" + A + "\n"


def test_duplicates_of_a_managed_key_collapse_to_one():
    plan = ak.compute(A + "\n" + D + "\n" + A + "\n", keys=[A], now=NOW)
    assert plan.after == A + "\n" + D + "\n"
    assert plan.removed[0]["reason"] == "duplicate" and plan.removed[0]["line"] == 3


def test_exclusive_drops_other_keys_and_invalid_lines_but_keeps_comments():
    before = "# c\n" + D + "\ngarbage\n\n" + A + "\n"
    plan = ak.compute(before, keys=[A], exclusive=True, now=NOW)
    assert plan.after == "# c\n\n" + A + "\n"
    assert sorted(r["reason"] for r in plan.removed) == ["exclusive", "exclusive"]


def test_options_of_the_given_key_are_written_and_their_expiry_dropped():
    plan = ak.compute("", keys=['from="10.0.0.0/8",expiry-time="20200101" ' + A], now=NOW)
    assert plan.after == 'from="10.0.0.0/8" ' + A + "\n"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(keys=[A], revoked_keys=[A]), r"revoked_keys\[0\] is also listed in keys"),
        (dict(keys=[A], grace_keys=[(A, "2030-01-01")]), r"grace_keys\[0\] is also listed in keys"),
        (dict(grace_keys=[{"key": A}]), "has no expiry"),
        (dict(grace_keys=["x"]), "must be"),
        (dict(keys=[A, "ssh-ed25519 AAAAbad"]), r"keys\[1\]"),
        (dict(keys=[A], marker="two words"), "invalid marker"),
    ],
)
def test_bad_input_fails_before_anything(kwargs, message):
    with pytest.raises(ak.AuthorizedKeysError, match=message):
        ak.compute(A + "\n", now=NOW, **kwargs)


@pytest.mark.parametrize("name", ["root", "tenant-0a1b2c3d", "_svc", "a.b"])
def test_valid_user_names(name):
    assert ak.validate_user(name) == name


@pytest.mark.parametrize("name", ["", "-x", "../etc", "a/b", "a b", "x" * 33, "root\n", None])
def test_bad_user_names(name):
    with pytest.raises(ak.AuthorizedKeysError, match="invalid user name"):
        ak.validate_user(name)


# ------------------------------------------------------------------ the file
def test_keyfile_creates_ssh_dir_and_writes_atomically(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    path = str(home / ".ssh" / "authorized_keys")
    uid, gid = os.getuid(), os.getgid()
    with ak.KeyFile(path, uid, gid, ssh_dir=True) as keyfile:
        assert keyfile.before == "" and keyfile.dir_missing and keyfile.needs_fix()
        keyfile.write(A + "\n")
    assert stat.S_IMODE(os.stat(home / ".ssh").st_mode) == 0o700
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o600 and (st.st_uid, st.st_gid) == (uid, gid)
    assert open(path).read() == A + "\n"
    assert os.listdir(home / ".ssh") == ["authorized_keys"]  # no temporary file left
    with ak.KeyFile(path, uid, gid, ssh_dir=True) as keyfile:
        assert keyfile.before == A + "\n" and not keyfile.needs_fix()


def test_keyfile_fixes_mode_and_reads_raw_bytes(tmp_path):
    ssh = tmp_path / ".ssh"
    ssh.mkdir(mode=0o755)
    path = ssh / "authorized_keys"
    path.write_bytes(b"\xff\xfe junk\n")
    os.chmod(path, 0o644)
    with ak.KeyFile(str(path), os.getuid(), os.getgid(), ssh_dir=True) as keyfile:
        assert keyfile.needs_fix()
        keyfile.write(keyfile.before)
    assert path.read_bytes() == b"\xff\xfe junk\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(ssh).st_mode) == 0o700


def test_keyfile_refuses_symlinks(tmp_path):
    target = tmp_path / "secret"
    target.write_text("do not read me\n")
    home = tmp_path / "home"
    home.mkdir()
    (home / ".ssh").mkdir()
    os.symlink(str(target), str(home / ".ssh" / "authorized_keys"))
    with pytest.raises(ak.AuthorizedKeysError, match="refusing to follow a symlink"):
        ak.KeyFile(str(home / ".ssh" / "authorized_keys"), 0, 0, ssh_dir=True).open()
    other = tmp_path / "home2"
    other.mkdir()
    os.symlink(str(tmp_path), str(other / ".ssh"))
    with pytest.raises(ak.AuthorizedKeysError, match="symlink or not a directory"):
        ak.KeyFile(str(other / ".ssh" / "authorized_keys"), 0, 0, ssh_dir=True).open()
    assert target.read_text() == "do not read me\n"


def test_keyfile_refuses_fifo_and_relative_path(tmp_path):
    os.mkfifo(str(tmp_path / "authorized_keys"))
    with pytest.raises(ak.AuthorizedKeysError, match="not a regular file"):
        ak.KeyFile(str(tmp_path / "authorized_keys"), 0, 0).open()
    with pytest.raises(ak.AuthorizedKeysError, match="absolute"):
        ak.KeyFile("authorized_keys", 0, 0)
