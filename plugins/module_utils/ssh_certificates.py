# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""OpenSSH certificates, ephemeral keys and key revocation lists (KRL), without ``ssh-keygen``.

* :func:`parse_certificate` reads an OpenSSH certificate line (``PROTOCOL.certkeys``): serial, type,
  key id, principals, validity, options, the certified key and the CA key that signed it.
* :func:`verify_certificate` checks one against trusted CA keys (signature, type, principal, time):
  how the controller recognises a host that presents a certificate of the host CA.
* :class:`EphemeralKey` is an Ed25519 key made in memory for one run; its private half only ever
  leaves the process as an ``ssh-agent`` message (see module_utils/ssh_agent.py).
* :func:`build_krl` writes a KRL (``PROTOCOL.krl``) that revokes certificate serials and key ids of
  given CA keys and explicit public keys. The output depends only on its input (sorted entries, the
  version and date given), so writing it again changes nothing.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import hashlib
import struct
import subprocess

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None
except ImportError as _exc:  # pragma: no cover - exercised by the sanity import test
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = _exc

USER_CERT, HOST_CERT = 1, 2
CERT_TYPE_NAMES = {USER_CERT: "user", HOST_CERT: "host"}
# certificate key type -> (plain key type, the public key fields after the nonce)
CERT_KEY_TYPES = {
    "ssh-ed25519-cert-v01@openssh.com": ("ssh-ed25519", ("string",)),
    "ssh-rsa-cert-v01@openssh.com": ("ssh-rsa", ("mpint", "mpint")),
    "ecdsa-sha2-nistp256-cert-v01@openssh.com": ("ecdsa-sha2-nistp256", ("string", "string")),
    "ecdsa-sha2-nistp384-cert-v01@openssh.com": ("ecdsa-sha2-nistp384", ("string", "string")),
    "ecdsa-sha2-nistp521-cert-v01@openssh.com": ("ecdsa-sha2-nistp521", ("string", "string")),
}
MAX_U64 = (1 << 64) - 1
KRL_MAGIC = b"SSHKRL\n\x00"
KRL_FORMAT_VERSION = 1
KRL_SECTION_CERTIFICATES = 1
KRL_SECTION_EXPLICIT_KEY = 2
KRL_SECTION_CERT_SERIAL_LIST = 0x20
KRL_SECTION_CERT_KEY_ID = 0x23


class CertificateError(ValueError):
    """A malformed certificate, key or KRL input (one line, no key material)."""


# -- wire format -------------------------------------------------------------------------------
class _Reader(object):
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, size):
        if size < 0 or self.pos + size > len(self.data):
            raise CertificateError("the certificate is truncated")
        chunk = self.data[self.pos:self.pos + size]
        self.pos += size
        return chunk

    def u32(self):
        return struct.unpack(">I", self.take(4))[0]

    def u64(self):
        return struct.unpack(">Q", self.take(8))[0]

    def string(self):
        return self.take(self.u32())

    def text(self):
        try:
            return self.string().decode("utf-8")
        except UnicodeDecodeError:
            raise CertificateError("the certificate holds a field that is not UTF-8")

    def done(self):
        return self.pos >= len(self.data)


def sshstr(data):
    if not isinstance(data, bytes):
        data = data.encode("utf-8")
    return struct.pack(">I", len(data)) + data


def _mpint(value):
    if value == 0:
        return sshstr(b"")
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    if raw[0] & 0x80:
        raw = b"\x00" + raw
    return sshstr(raw)


def _packed_strings(blob):
    reader, items = _Reader(blob), []
    while not reader.done():
        items.append(reader.text())
    return items


def _options(blob):
    """Critical options / extensions: name -> value (the value's inner string, '' for flags)."""
    reader, found = _Reader(blob), {}
    while not reader.done():
        name = reader.text()
        data = reader.string()
        inner = _Reader(data)
        found[name] = inner.text() if data else ""
    return found


def _blob_of(line, allowed=None):
    if not isinstance(line, str) or not line.strip():
        raise CertificateError("empty key or certificate")
    parts = line.strip().split()
    # a known_hosts / authorized_keys style prefix is not accepted: type, base64, comment
    if len(parts) < 2 or (allowed is not None and parts[0] not in allowed):
        raise CertificateError("not an OpenSSH %s line" % ("certificate" if allowed is CERT_KEY_TYPES else "key"))
    try:
        blob = base64.b64decode(parts[1].encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise CertificateError("the base64 of the %s is invalid" % parts[0])
    reader = _Reader(blob)
    if reader.text() != parts[0]:
        raise CertificateError("the blob does not match its type %s" % parts[0])
    return parts[0], blob


def key_line(blob):
    """``type base64`` of a public key blob."""
    name = _Reader(blob).text()
    return "%s %s" % (name, base64.b64encode(blob).decode("ascii"))


def fingerprint_of_blob(blob):
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")


def public_key_blob(line):
    """The blob of a plain public key line (``type base64 [comment]``)."""
    _name, blob = _blob_of(line)
    return blob


# -- certificates ------------------------------------------------------------------------------
def parse_certificate(line):
    """The fields of an OpenSSH certificate line; raises CertificateError.

    Returns a dict: ``cert_key_type``, ``key_type``, ``serial`` (int), ``cert_type`` (user/host),
    ``key_id``, ``principals``, ``valid_after``/``valid_before`` (Unix seconds; 0 and 2**64-1 mean
    unbounded), ``critical_options``, ``extensions``, ``public_key`` (the certified key as a plain
    ``type base64`` line), ``fingerprint`` (of that key), ``ca_public_key``, ``ca_fingerprint``, and, for
    verification, ``signed_data`` and ``signature`` (bytes).
    """
    cert_key_type, blob = _blob_of(line, CERT_KEY_TYPES)
    plain_type, fields = CERT_KEY_TYPES[cert_key_type]
    reader = _Reader(blob)
    reader.string()  # type
    reader.string()  # nonce
    key_parts = [reader.string() for _field in fields]
    serial = reader.u64()
    cert_type = reader.u32()
    if cert_type not in CERT_TYPE_NAMES:
        raise CertificateError("unknown certificate type %d" % cert_type)
    key_id = reader.text()
    principals = _packed_strings(reader.string())
    valid_after, valid_before = reader.u64(), reader.u64()
    critical_options = _options(reader.string())
    extensions = _options(reader.string())
    reader.string()  # reserved
    signature_key = reader.string()
    signed_data = blob[:reader.pos]
    signature = reader.string()
    if not reader.done():
        raise CertificateError("the certificate has trailing data")
    plain = sshstr(plain_type) + b"".join(sshstr(part) for part in key_parts)
    return {
        "cert_key_type": cert_key_type,
        "key_type": plain_type,
        "serial": serial,
        "cert_type": CERT_TYPE_NAMES[cert_type],
        "key_id": key_id,
        "principals": principals,
        "valid_after": valid_after,
        "valid_before": valid_before,
        "critical_options": critical_options,
        "extensions": sorted(extensions),
        "public_key": key_line(plain),
        "fingerprint": fingerprint_of_blob(plain),
        "ca_public_key": key_line(signature_key),
        "ca_fingerprint": fingerprint_of_blob(signature_key),
        "signed_data": signed_data,
        "signature": signature,
    }


def summary(cert):
    """What may be shown, returned or audited about a parsed certificate (no signature bytes)."""
    return dict((key, value) for key, value in cert.items() if key not in ("signed_data", "signature"))


def is_certificate(line):
    return isinstance(line, str) and bool(line.strip()) and line.split()[0] in CERT_KEY_TYPES


def _verify_signature(ca_blob, signature_blob, data):
    """True when ``signature_blob`` (SSH signature format) is ``ca_blob``'s signature over ``data``."""
    if not HAS_CRYPTOGRAPHY:
        raise CertificateError("the Python library cryptography is needed to verify certificates")
    ca = _Reader(ca_blob)
    ca_type = ca.text()
    sig = _Reader(signature_blob)
    algorithm, raw = sig.text(), sig.string()
    try:
        if ca_type == "ssh-ed25519" and algorithm == "ssh-ed25519":
            ed25519.Ed25519PublicKey.from_public_bytes(ca.string()).verify(raw, data)
            return True
        if ca_type.startswith("ecdsa-sha2-") and algorithm == ca_type:
            curve_name = ca.text()
            curve, digest = {"nistp256": (ec.SECP256R1(), hashes.SHA256()), "nistp384": (ec.SECP384R1(), hashes.SHA384()),
                             "nistp521": (ec.SECP521R1(), hashes.SHA512())}[curve_name]
            point = ca.string()
            key = ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
            inner = _Reader(raw)
            r = int.from_bytes(inner.string(), "big")
            s = int.from_bytes(inner.string(), "big")
            key.verify(encode_dss_signature(r, s), data, ec.ECDSA(digest))
            return True
        if ca_type == "ssh-rsa" and algorithm in ("rsa-sha2-256", "rsa-sha2-512", "ssh-rsa"):
            e = int.from_bytes(ca.string(), "big")
            n = int.from_bytes(ca.string(), "big")
            digest = {"rsa-sha2-256": hashes.SHA256(), "rsa-sha2-512": hashes.SHA512(), "ssh-rsa": hashes.SHA1()}[algorithm]
            rsa.RSAPublicNumbers(e, n).public_key().verify(raw, data, padding.PKCS1v15(), digest)
            return True
    except (InvalidSignature, ValueError, KeyError, CertificateError):
        return False
    return False


def verify_certificate(line, ca_public_keys, cert_type, principal=None, now=0):
    """Check a certificate: signed by one of ``ca_public_keys``, of ``cert_type``, naming ``principal``
    (when given), valid at ``now`` (Unix seconds). Returns ``(parsed or None, reason)``; reason is '' when it
    is good."""
    try:
        cert = parse_certificate(line)
    except CertificateError as exc:
        return None, str(exc)
    trusted = set()
    for key in ca_public_keys or []:
        try:
            trusted.add(public_key_blob(key))
        except CertificateError:
            continue
    ca_blob = public_key_blob(cert["ca_public_key"])
    if ca_blob not in trusted:
        return cert, "signed by a CA that is not trusted (%s)" % cert["ca_fingerprint"]
    if not _verify_signature(ca_blob, cert["signature"], cert["signed_data"]):
        return cert, "the CA signature does not verify"
    if cert["cert_type"] != cert_type:
        return cert, "a %s certificate, not a %s certificate" % (cert["cert_type"], cert_type)
    if principal is not None and principal not in cert["principals"]:
        return cert, "not valid for %s (principals: %s)" % (principal, ", ".join(cert["principals"]) or "none")
    if now < cert["valid_after"]:
        return cert, "not valid yet"
    if now >= cert["valid_before"]:
        return cert, "expired"
    return cert, ""


def scan_host_certificates(address, port=22, timeout=10):
    """The host certificates ``address`` presents now (``ssh-keyscan -c``; [] when none or unreachable)."""
    argv = ["ssh-keyscan", "-c", "-T", str(int(timeout)), "-p", str(int(port)), address]
    try:
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=timeout * 4 + 5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    found = []
    for line in result.stdout.splitlines():
        parts = line.split()
        if line.startswith("#"):
            continue
        # `ssh-keyscan -c` prints "<type> <base64>" (older releases put the host name first)
        for index, part in enumerate(parts[:-1]):
            if part in CERT_KEY_TYPES:
                found.append("%s %s" % (part, parts[index + 1]))
                break
    return found


def trusted_host_certificate(address, ca_public_keys, port=22, now=0):
    """The first certificate ``address`` presents that the host CA keys vouch for (parsed), else None."""
    for line in scan_host_certificates(address, port):
        cert, reason = verify_certificate(line, ca_public_keys, "host", principal=address, now=now)
        if cert is not None and not reason:
            return cert
    return None


# -- ephemeral keys ----------------------------------------------------------------------------
class EphemeralKey(object):
    """An Ed25519 key made in memory. The private half is exposed only as ssh-agent message bytes."""

    __slots__ = ("_private", "raw_public", "public_key", "fingerprint")

    def __init__(self, comment="penguinmails-run"):
        if not HAS_CRYPTOGRAPHY:
            raise CertificateError("the Python library cryptography is needed to make an ephemeral key")
        self._private = ed25519.Ed25519PrivateKey.generate()
        public = self._private.public_key()
        self.raw_public = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        blob = sshstr("ssh-ed25519") + sshstr(self.raw_public)
        self.public_key = "%s %s" % (key_line(blob), comment)
        self.fingerprint = fingerprint_of_blob(blob)

    def __repr__(self):
        return "EphemeralKey(%s)" % self.fingerprint

    def _secret(self):
        raw = self._private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                          serialization.NoEncryption())
        return raw + self.raw_public  # OpenSSH's 64-byte Ed25519 private key: seed, then public key

    def agent_identity(self, comment):
        """The key part of SSH2_AGENTC_ADD_IDENTITY for the plain key."""
        return sshstr("ssh-ed25519") + sshstr(self.raw_public) + sshstr(self._secret()) + sshstr(comment)

    def agent_certificate_identity(self, certificate_line, comment):
        """The key part of SSH2_AGENTC_ADD_IDENTITY for the key with its certificate."""
        cert = parse_certificate(certificate_line)
        if cert["public_key"].split()[1] != self.public_key.split()[1]:
            raise CertificateError("the certificate is not for this key")
        _name, blob = _blob_of(certificate_line, CERT_KEY_TYPES)
        return (sshstr("ssh-ed25519-cert-v01@openssh.com") + sshstr(blob) + sshstr(self.raw_public)
                + sshstr(self._secret()) + sshstr(comment))


# -- KRL ---------------------------------------------------------------------------------------
def parse_serial(value):
    """A certificate serial from an int, a decimal string or a ``0x``-hex string (Vault prints hex)."""
    text = str(value).strip().lower()
    try:
        serial = int(text, 16) if text.startswith("0x") else int(text, 10)
    except ValueError:
        raise CertificateError("invalid certificate serial %r: a decimal number or 0x<hex>" % (str(value)[:40],))
    if not 0 < serial <= MAX_U64:
        raise CertificateError("certificate serial %s is out of range" % text[:40])
    return serial


def build_krl(ca_public_keys, serials=(), key_ids=(), public_keys=(), version=0, generated=0, comment=""):
    """A KRL that revokes ``serials`` and ``key_ids`` of every CA in ``ca_public_keys`` and ``public_keys``."""
    cas = sorted(set(public_key_blob(key) for key in ca_public_keys or []))
    serial_list = sorted(set(parse_serial(serial) for serial in serials or []))
    ids = sorted(set(str(key_id) for key_id in key_ids or [] if str(key_id)))
    explicit = sorted(set(public_key_blob(key) for key in public_keys or []))
    if (serial_list or ids) and not cas:
        raise CertificateError("serials and key ids are revoked per CA: no CA key given")
    out = [KRL_MAGIC, struct.pack(">IQQQ", KRL_FORMAT_VERSION, int(version), int(generated), 0), sshstr(b""),
           sshstr(comment)]
    for ca in cas:
        if not (serial_list or ids):
            break
        section = sshstr(ca) + sshstr(b"")
        if serial_list:
            section += bytes([KRL_SECTION_CERT_SERIAL_LIST]) + sshstr(b"".join(struct.pack(">Q", s) for s in serial_list))
        if ids:
            section += bytes([KRL_SECTION_CERT_KEY_ID]) + sshstr(b"".join(sshstr(key_id) for key_id in ids))
        out.append(bytes([KRL_SECTION_CERTIFICATES]) + sshstr(section))
    if explicit:
        out.append(bytes([KRL_SECTION_EXPLICIT_KEY]) + sshstr(b"".join(sshstr(blob) for blob in explicit)))
    return b"".join(out)


def describe_krl(data):
    """What a KRL revokes, one line per entry (``ca <fp> serial: N``, ``ca <fp> id: X``, ``key: <fp>``...),
    sorted; raises CertificateError for something that is not a KRL."""
    if not data.startswith(KRL_MAGIC):
        raise CertificateError("not a KRL")
    reader = _Reader(data[len(KRL_MAGIC):])
    reader.u32()
    reader.u64()
    reader.u64()
    reader.u64()
    reader.string()
    reader.string()
    lines = []
    while not reader.done():
        section, body = reader.take(1)[0], _Reader(reader.string())
        if section == KRL_SECTION_CERTIFICATES:
            ca = body.string()
            body.string()
            prefix = "ca %s" % (fingerprint_of_blob(ca) if ca else "any")
            while not body.done():
                kind, sub = body.take(1)[0], _Reader(body.string())
                if kind == KRL_SECTION_CERT_SERIAL_LIST:
                    while not sub.done():
                        lines.append("%s serial: %d" % (prefix, sub.u64()))
                elif kind == 0x21:
                    lines.append("%s serial: %d-%d" % (prefix, sub.u64(), sub.u64()))
                elif kind == 0x22:
                    start, bitmap = sub.u64(), int.from_bytes(sub.string(), "big")
                    bit = 0
                    while bitmap >> bit:
                        if (bitmap >> bit) & 1:
                            lines.append("%s serial: %d" % (prefix, start + bit))
                        bit += 1
                elif kind == KRL_SECTION_CERT_KEY_ID:
                    while not sub.done():
                        lines.append("%s id: %s" % (prefix, sub.text()))
                else:
                    lines.append("%s section %d" % (prefix, kind))
        elif section == KRL_SECTION_EXPLICIT_KEY:
            while not body.done():
                lines.append("key: %s" % fingerprint_of_blob(body.string()))
        elif section == 5:
            while not body.done():
                lines.append("sha256: %s" % base64.b64encode(body.string()).decode("ascii").rstrip("="))
        elif section == 4:
            break
        else:
            lines.append("section %d" % section)
    return sorted(lines)
