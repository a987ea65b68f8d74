# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""SSH key generation and formats, checked against OpenSSH's own ssh-keygen."""
from __future__ import annotations

import os
import stat
import subprocess

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.penguinmails.vps.plugins.module_utils import ssh_keys


def keygen(*args, stdin=None):
    return subprocess.run(["ssh-keygen", *args], capture_output=True, text=True, input=stdin, check=True).stdout


def write(tmp_path, name, text, mode=0o600):
    path = tmp_path / name
    path.write_text(text if text.endswith("\n") else text + "\n")
    os.chmod(path, mode)
    return str(path)


@pytest.mark.parametrize("key_type,bits,expect", [("ed25519", None, "256 "), ("rsa", None, "4096 "), ("rsa", 2048, "2048 ")])
def test_generated_pair_matches_ssh_keygen(tmp_path, key_type, bits, expect):
    pair = ssh_keys.generate_keypair(key_type, bits=bits, comment="penguinmails-t1-tenant")
    assert pair.private_key.startswith("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    assert pair.private_key.rstrip().endswith("-----END OPENSSH PRIVATE KEY-----")
    assert pair.public_key.startswith(ssh_keys.SSH_KEY_NAMES[key_type] + " ")
    assert pair.public_key.endswith(" penguinmails-t1-tenant")
    priv = write(tmp_path, "id", pair.private_key)
    pub = write(tmp_path, "id.pub", pair.public_key, 0o644)
    # ssh-keygen reads our private key and derives the same public key.
    derived = keygen("-y", "-f", priv).split()
    assert derived[:2] == pair.public_key.split()[:2]
    # Fingerprint exactly as `ssh-keygen -lf` prints it, for the public and the private file.
    for path in (pub, priv):
        line = keygen("-l", "-E", "sha256", "-f", path)
        assert line.startswith(expect)
        assert line.split()[1] == pair.fingerprint
    assert repr(pair) == "KeyPair(%s, %s)" % (key_type, pair.fingerprint)
    assert pair.private_key not in repr(pair)


def test_fingerprint_of_keys_made_by_ssh_keygen(tmp_path):
    for key_type in ("ed25519", "ecdsa"):
        path = str(tmp_path / ("k_" + key_type))
        keygen("-q", "-t", key_type, "-N", "", "-C", "someone@host", "-f", path)
        with open(path + ".pub") as handle:
            public = handle.read().strip()
        expected = keygen("-l", "-E", "sha256", "-f", path + ".pub").split()[1]
        assert ssh_keys.fingerprint(public) == expected
        with open(path) as handle:
            assert ssh_keys.public_key_from_private(handle.read()).split()[:2] == public.split()[:2]
        assert ssh_keys.key_name(public) == " ".join(public.split()[:2])


def test_public_key_from_private_with_comment():
    pair = ssh_keys.generate_keypair("ed25519")
    assert ssh_keys.public_key_from_private(pair.private_key, comment="a  b") == pair.public_key + " a b"
    with pytest.raises(ssh_keys.SSHKeyError, match="cannot be parsed"):
        ssh_keys.public_key_from_private("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----")


@pytest.mark.parametrize(
    "line,message",
    [
        ("", "empty public key"),
        ("ssh-foo AAAA", "not an OpenSSH public key line"),
        ("ssh-ed25519", "not an OpenSSH public key line"),
        ("ssh-ed25519 !!notbase64", "base64 is invalid"),
        ("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIGx2", "does not match its type ssh-rsa"),
        ("ssh-rsa AAA=", "truncated"),
    ],
)
def test_bad_public_keys_are_refused(line, message):
    with pytest.raises(ssh_keys.SSHKeyError, match=message):
        ssh_keys.fingerprint(line)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_fingerprint_never_crashes_on_garbage(text):
    try:
        result = ssh_keys.fingerprint(text)
    except ssh_keys.SSHKeyError as exc:
        assert "\n" not in str(exc)
    else:
        assert result.startswith("SHA256:")


def test_bad_generation_requests():
    with pytest.raises(ssh_keys.SSHKeyError, match="unsupported key type 'dsa'"):
        ssh_keys.generate_keypair("dsa")
    with pytest.raises(ssh_keys.SSHKeyError, match="at least 2048 bits"):
        ssh_keys.generate_keypair("rsa", bits=1024)


def test_write_private_key_is_atomic_and_0600(tmp_path):
    pair = ssh_keys.generate_keypair("ed25519")
    dest = tmp_path / "tenant.key"
    dest.write_text("old content")
    os.chmod(dest, 0o644)
    os.umask(0o022)
    assert ssh_keys.write_private_key(str(dest), pair.private_key) == str(dest)
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    assert dest.read_text() == pair.private_key
    assert sorted(os.listdir(tmp_path)) == ["tenant.key"]  # no temporary file left behind
    keygen("-y", "-f", str(dest))  # a usable key for ssh
    with pytest.raises(ssh_keys.SSHKeyError, match="does not exist"):
        ssh_keys.write_private_key(str(tmp_path / "missing" / "k"), pair.private_key)
