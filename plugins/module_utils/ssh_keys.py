# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""SSH key pairs: generation, OpenSSH formats and fingerprints.

* :func:`generate_keypair` makes an RSA (4096 bits by default) or Ed25519 pair and returns the
  private key in the OpenSSH format (``-----BEGIN OPENSSH PRIVATE KEY-----``), the public key as
  one ``authorized_keys`` line and the SHA256 fingerprint exactly as ``ssh-keygen -lf`` prints it.
* :func:`fingerprint` and :func:`parse_public_key` work on public key lines without any library.
* :func:`write_private_key` writes a private key atomically (temporary file in the same directory,
  mode 0600, then ``os.replace``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import hashlib
import os
import struct
import tempfile

try:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None
except ImportError as _exc:  # pragma: no cover - exercised by the sanity import test
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = _exc

KEY_TYPES = ("rsa", "ed25519")
SSH_KEY_NAMES = {"rsa": "ssh-rsa", "ed25519": "ssh-ed25519"}
DEFAULT_RSA_BITS = 4096
MIN_RSA_BITS = 2048
_PUBLIC_KEY_TYPES = (
    "ssh-rsa",
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)


class SSHKeyError(ValueError):
    """Malformed key material or unsupported request; the message never holds key material."""


class KeyPair(object):
    """A generated pair. ``private_key`` is a secret: never log or return it by default."""

    __slots__ = ("key_type", "private_key", "public_key", "fingerprint")

    def __init__(self, key_type, private_key, public_key, fingerprint):
        self.key_type = key_type
        self.private_key = private_key
        self.public_key = public_key
        self.fingerprint = fingerprint

    def __repr__(self):
        return "KeyPair(%s, %s)" % (self.key_type, self.fingerprint)


def generate_keypair(key_type="rsa", bits=None, comment=""):
    """Generate a key pair; ``bits`` only applies to RSA (default 4096, minimum 2048)."""
    if not HAS_CRYPTOGRAPHY:
        raise SSHKeyError("the Python library cryptography is required to generate SSH keys")
    if key_type == "rsa":
        bits = DEFAULT_RSA_BITS if bits is None else int(bits)
        if bits < MIN_RSA_BITS:
            raise SSHKeyError("RSA keys need at least %d bits, not %d" % (MIN_RSA_BITS, bits))
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    elif key_type == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        raise SSHKeyError("unsupported key type %r: choose one of %s" % (key_type, ", ".join(KEY_TYPES)))
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode("ascii")
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    public = public.decode("ascii")
    if comment:
        public = "%s %s" % (public, _clean_comment(comment))
    return KeyPair(key_type, private, public, fingerprint(public))


def public_key_from_private(private_key, comment=""):
    """Derive the ``authorized_keys`` line from an OpenSSH (or PEM) private key."""
    if not HAS_CRYPTOGRAPHY:
        raise SSHKeyError("the Python library cryptography is required to read SSH keys")
    data = private_key.encode("ascii") if not isinstance(private_key, bytes) else private_key
    try:
        if b"OPENSSH PRIVATE KEY" in data:
            key = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, binascii.Error):
        raise SSHKeyError("the private key cannot be parsed (not an unencrypted OpenSSH or PEM key)")
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    public = public.decode("ascii")
    return "%s %s" % (public, _clean_comment(comment)) if comment else public


def _clean_comment(comment):
    return " ".join(str(comment).split())


def parse_public_key(line):
    """Split a public key line into ``(key_name, blob_bytes, comment)``.

    Options in front of the key (as in ``authorized_keys``) are not accepted here.
    """
    if not isinstance(line, str) or not line.strip():
        raise SSHKeyError("empty public key")
    parts = line.strip().split(None, 2)
    if len(parts) < 2 or parts[0] not in _PUBLIC_KEY_TYPES:
        raise SSHKeyError("not an OpenSSH public key line (expected '<type> <base64> [comment]')")
    try:
        blob = base64.b64decode(parts[1].encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise SSHKeyError("the public key's base64 is invalid")
    # The blob starts with the key type as an SSH string: it must agree with the prefix.
    if len(blob) < 4:
        raise SSHKeyError("the public key blob is truncated")
    (length,) = struct.unpack(">I", blob[:4])
    if blob[4:4 + length] != parts[0].encode("ascii"):
        raise SSHKeyError("the public key blob does not match its type %s" % parts[0])
    return parts[0], blob, parts[2] if len(parts) > 2 else ""


def fingerprint(public_key):
    """``SHA256:<base64 without padding>`` of the key blob, as ``ssh-keygen -lf`` prints it."""
    _name, blob, _comment = parse_public_key(public_key)
    digest = hashlib.sha256(blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def key_name(public_key):
    """The bare ``<type> <base64>`` of a public key line (no comment): what identifies a key."""
    name, blob, _comment = parse_public_key(public_key)
    return "%s %s" % (name, base64.b64encode(blob).decode("ascii"))


def write_private_key(path, private_key, mode=0o600):
    """Write ``private_key`` to ``path`` atomically with ``mode`` (0600 by default).

    The temporary file is created in the destination directory with mode 0600 from the start,
    so the key never exists on disk with wider permissions; ``os.replace`` then swaps it in.
    """
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise SSHKeyError("cannot write %s: directory %s does not exist" % (path, directory))
    text = private_key if private_key.endswith("\n") else private_key + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".pm-key-", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except Exception:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path
