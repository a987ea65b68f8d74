# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""OpenSSH certificates, ephemeral keys in an agent and KRLs, checked against OpenSSH's own ssh-keygen and ssh-agent."""
from __future__ import annotations

import os
import subprocess
import time

import pytest

from ansible_collections.penguinmails.vps.plugins.module_utils import ssh_agent, ssh_ca
from ansible_collections.penguinmails.vps.plugins.module_utils import ssh_certificates as sc
from ansible_collections.penguinmails.vps.plugins.module_utils.validators import ValidationError


def keygen(*args):
    return subprocess.run(["ssh-keygen", *args], capture_output=True, text=True, check=False)


def make_key(tmp_path, name, key_type="ed25519"):
    path = str(tmp_path / name)
    extra = ["-b", "2048"] if key_type == "rsa" else []
    assert keygen("-q", "-t", key_type, *extra, "-N", "", "-C", name, "-f", path).returncode == 0
    with open(path + ".pub") as handle:
        return path, handle.read().strip()


def make_cert(tmp_path, ca, key, key_id="kid", principals="alice,bob", host=False, serial=42, validity="+1h"):
    args = ["-q", "-s", ca, "-I", key_id, "-n", principals, "-z", str(serial), "-V", validity]
    if host:
        args.append("-h")
    assert keygen(*args, key + ".pub").returncode == 0
    with open(key + "-cert.pub") as handle:
        return handle.read().strip()


@pytest.mark.parametrize("ca_type", ["ed25519", "ecdsa", "rsa"])
@pytest.mark.parametrize("key_type", ["ed25519", "ecdsa", "rsa"])
def test_parse_and_verify_certificates_made_by_ssh_keygen(tmp_path, ca_type, key_type):
    ca, ca_pub = make_key(tmp_path, "ca", ca_type)
    key, key_pub = make_key(tmp_path, "key", key_type)
    line = make_cert(tmp_path, ca, key, key_id="pm-test", principals="203.0.113.5,vps.example.net", host=True, serial=7)
    cert = sc.parse_certificate(line)
    listed = keygen("-L", "-f", key + "-cert.pub").stdout
    assert cert["cert_type"] == "host" and "host certificate" in listed
    assert cert["serial"] == 7 and "Serial: 7" in listed
    assert cert["key_id"] == "pm-test" and cert["principals"] == ["203.0.113.5", "vps.example.net"]
    assert cert["public_key"].split()[:2] == key_pub.split()[:2]
    assert cert["ca_public_key"].split()[:2] == ca_pub.split()[:2]
    assert cert["ca_fingerprint"] in keygen("-l", "-f", ca + ".pub").stdout
    now = int(time.time())
    assert sc.verify_certificate(line, [ca_pub], "host", "203.0.113.5", now)[1] == ""
    # each rule on its own
    other_ca, other_pub = make_key(tmp_path, "other", "ed25519")
    assert "not trusted" in sc.verify_certificate(line, [other_pub], "host", "203.0.113.5", now)[1]
    assert "not a user certificate" in sc.verify_certificate(line, [ca_pub], "user", "203.0.113.5", now)[1]
    assert "not valid for 198.51.100.1" in sc.verify_certificate(line, [ca_pub], "host", "198.51.100.1", now)[1]
    assert sc.verify_certificate(line, [ca_pub], "host", "203.0.113.5", now + 7200)[1] == "expired"
    assert sc.verify_certificate(line, [ca_pub], "host", "203.0.113.5", now - 7200)[1] == "not valid yet"


def test_a_certificate_whose_signature_was_tampered_with_does_not_verify(tmp_path):
    ca, ca_pub = make_key(tmp_path, "ca")
    key, _pub = make_key(tmp_path, "key")
    line = make_cert(tmp_path, ca, key, principals="root")
    import base64

    kind, blob = line.split()[:2]
    raw = bytearray(base64.b64decode(blob))
    raw[-5] ^= 0x01  # inside the signature
    forged = "%s %s" % (kind, base64.b64encode(bytes(raw)).decode())
    assert sc.verify_certificate(forged, [ca_pub], "user", "root", int(time.time()))[1] == "the CA signature does not verify"
    # a changed principal (signed data) does not verify either
    raw = bytearray(base64.b64decode(blob))
    index = bytes(raw).index(b"root")
    raw[index:index + 4] = b"toor"
    forged = "%s %s" % (kind, base64.b64encode(bytes(raw)).decode())
    assert sc.verify_certificate(forged, [ca_pub], "user", "toor", int(time.time()))[1] == "the CA signature does not verify"


@pytest.mark.parametrize("bad", ["", "ssh-ed25519 AAAA", "ssh-ed25519-cert-v01@openssh.com !!!", "not a cert"])
def test_garbage_is_refused_with_one_line(bad):
    with pytest.raises(sc.CertificateError) as info:
        sc.parse_certificate(bad)
    assert "\n" not in str(info.value)


def test_krl_revokes_serials_key_ids_and_keys_as_ssh_keygen_reads_it(tmp_path):
    ca, ca_pub = make_key(tmp_path, "ca")
    ca2, ca2_pub = make_key(tmp_path, "ca2")
    certs = {}
    for name, serial, key_id in (("by_serial", 1001, "a"), ("by_id", 1002, "automation-x"), ("by_key", 1003, "c"),
                                 ("kept", 1004, "d")):
        key, _pub = make_key(tmp_path, name)
        make_cert(tmp_path, ca, key, key_id=key_id, serial=serial)
        certs[name] = key
    other, _pub = make_key(tmp_path, "other_ca_cert")
    make_cert(tmp_path, ca2, other, key_id="e", serial=1001)  # the same serial from the second CA key
    certs["other_ca"] = other
    with open(certs["by_key"] + ".pub") as handle:
        revoked_key = handle.read()
    data = sc.build_krl([ca_pub, ca2_pub], serials=["0x3e9"], key_ids=["automation-x"], public_keys=[revoked_key], version=5)
    krl = tmp_path / "revoked.krl"
    krl.write_bytes(data)

    def revoked(key):
        result = keygen("-Q", "-f", str(krl), key + "-cert.pub")
        assert result.returncode in (0, 1), result.stderr
        return result.returncode == 1

    assert revoked(certs["by_serial"]) and revoked(certs["by_id"]) and revoked(certs["by_key"])
    assert revoked(certs["other_ca"])  # serials are revoked for every CA key (both during a rotation)
    assert not revoked(certs["kept"])
    listing = keygen("-Q", "-l", "-f", str(krl)).stdout
    assert "KRL version 5" in listing and "serial: 1001" in listing and "id: automation-x" in listing
    # the same input gives the same bytes (a second run of ssh_krl changes nothing)
    assert sc.build_krl([ca2_pub, ca_pub], ["1001", "1001"], ["automation-x"], [revoked_key], version=5) == data
    entries = sc.describe_krl(data)
    assert len([line for line in entries if line.endswith("serial: 1001")]) == 2
    assert len([line for line in entries if line.startswith("key: ")]) == 1


def test_describe_krl_reads_what_ssh_keygen_writes(tmp_path):
    _ca, ca_pub = make_key(tmp_path, "ca")
    spec = tmp_path / "spec"
    spec.write_text("serial: 5\nserial: 7-9\nid: someone\n")
    krl = tmp_path / "k.krl"
    assert keygen("-k", "-f", str(krl), "-s", str(tmp_path / "ca.pub"), str(spec)).returncode == 0
    lines = sc.describe_krl(krl.read_bytes())
    serials = sorted(line.split("serial: ")[1] for line in lines if "serial: " in line)
    assert serials in (["5", "7", "8", "9"], ["5", "7-9"])
    assert any(line.endswith("id: someone") for line in lines)
    assert ca_pub  # the CA of the listing
    with pytest.raises(sc.CertificateError):
        sc.describe_krl(b"not a krl")


def test_empty_krl_is_valid_and_serials_need_a_ca(tmp_path):
    krl = tmp_path / "empty.krl"
    krl.write_bytes(sc.build_krl([]))
    assert keygen("-Q", "-l", "-f", str(krl)).returncode == 0
    with pytest.raises(sc.CertificateError):
        sc.build_krl([], serials=[1])
    for bad in ("0", "-3", "abc", str(1 << 64)):
        with pytest.raises(sc.CertificateError):
            sc.parse_serial(bad)
    assert sc.parse_serial("0xff") == 255 and sc.parse_serial(" 17 ") == 17


def test_ephemeral_key_and_certificate_reach_the_agent_but_no_file(tmp_path):
    ca, _ca_pub = make_key(tmp_path, "ca")
    key = sc.EphemeralKey(comment="run")
    assert "PRIVATE" not in repr(key) and key.fingerprint.startswith("SHA256:")
    pub = tmp_path / "eph.pub"
    pub.write_text(key.public_key + "\n")
    assert keygen("-q", "-s", ca, "-I", "run", "-n", "penguinmails-admin", "-V", "+5m", str(pub)).returncode == 0
    cert = (tmp_path / "eph-cert.pub").read_text().strip()
    agent = ssh_agent.start(os.getpid(), lifetime=60, parent=str(tmp_path))
    try:
        before = set(os.listdir(agent["directory"]))
        ssh_agent.add_ephemeral(agent, key, cert, 30)
        listed = subprocess.run(["ssh-add", "-L"], env=dict(os.environ, SSH_AUTH_SOCK=agent["socket"]), capture_output=True,
                                text=True, check=False).stdout.splitlines()
        kinds = sorted(line.split()[0] for line in listed)
        assert kinds == ["ssh-ed25519", "ssh-ed25519-cert-v01@openssh.com"]
        assert any(line.split()[1] == cert.split()[1] for line in listed)
        assert set(os.listdir(agent["directory"])) == before  # nothing written
        # a certificate of another key is refused before anything reaches the agent
        other = sc.EphemeralKey()
        with pytest.raises(sc.CertificateError):
            other.agent_certificate_identity(cert, "x")
        with pytest.raises(ssh_agent.AgentError):
            ssh_agent.add_ephemeral(agent, key, cert, 0)
    finally:
        ssh_agent.stop(agent)


def test_signing_plan_keeps_a_valid_certificate_and_says_why_it_signs(tmp_path):
    ca, ca_pub = make_key(tmp_path, "ca")
    _ca2, ca2_pub = make_key(tmp_path, "ca2")
    key, key_pub = make_key(tmp_path, "host")
    cert = make_cert(tmp_path, ca, key, principals="203.0.113.5", host=True, validity="+400d")
    now = int(time.time())
    entry = {"name": "k", "public_key": key_pub, "certificate": cert}

    def reason(signing_key=ca_pub, principals=("203.0.113.5",), renew=30 * 86400, item=None, cert_type="host"):
        return ssh_ca.signing_plan([item or entry], signing_key, cert_type, list(principals), renew, now)[0]["reason"]

    assert reason() == "valid"
    assert reason(signing_key=ca2_pub) == "signed by another CA key"
    assert reason(principals=("198.51.100.7",)) == "other principals"
    assert reason(renew=500 * 86400) == "expires soon"
    assert reason(cert_type="user") == "a host certificate"
    assert reason(item=dict(entry, certificate="")) == "no certificate"
    _other, other_pub = make_key(tmp_path, "other")
    assert reason(item=dict(entry, public_key=other_pub)) == "the certificate is for another key"
    with pytest.raises(ValidationError):
        ssh_ca.signing_plan([{"name": "x"}], ca_pub, "host", ["a"], 0, now)


def test_role_comparison_ignores_what_vault_normalises():
    current = {"ttl": 600, "max_ttl": 3600, "allowed_users": "penguinmails-admin", "default_extensions": {"permit-pty": ""},
               "default_critical_options": {}, "allowed_extensions": "", "allow_user_certificates": True}
    wanted = ssh_ca.role_payload({"ttl": "10m", "max_ttl": "1h", "allowed_users": "penguinmails-admin",
                                  "default_extensions": {"permit-pty": ""}, "default_critical_options": {},
                                  "allowed_extensions": "", "allow_user_certificates": True})
    assert not ssh_ca.role_differs(current, wanted)
    assert ssh_ca.role_differs(current, dict(wanted, ttl="11m"))
    assert ssh_ca.role_differs(current, dict(wanted, allowed_users="root"))
    assert ssh_ca.role_differs(dict(current, default_critical_options=None), dict(wanted, default_critical_options={"source-address": "10.0.0.1"}))
    for bad in ("ten minutes", "5x"):
        with pytest.raises(ValidationError):
            ssh_ca.duration_seconds(bad)
    for bad in ("", "a,b", "x" * 300, "root\n"):
        with pytest.raises(ValidationError):
            ssh_ca.validate_principal(bad)


class FakeKV(object):
    """The two calls RevocationStore and ModeStore make, on a dict (versions counted like KV v2)."""

    def __init__(self):
        self.data = {}

    def read_or_none(self, mount, path):
        item = self.data.get((mount, path))
        if item is None:
            return None

        class Secret(object):
            pass

        secret = Secret()
        secret.data, secret.version = dict(item[0]), item[1]
        return secret

    def write(self, mount, path, data, cas=None):
        current = self.data.get((mount, path))
        version = current[1] if current else 0
        assert cas == version, "check-and-set on the version read"
        self.data[(mount, path)] = (dict(data), version + 1)
        return version + 1


def test_revocations_are_only_added_and_written_with_check_and_set():
    kv = FakeKV()
    store = ssh_ca.RevocationStore(kv, "vps", "ssh-user-ca")
    assert store.where == "vps/_ssh_ca/ssh-user-ca"
    new, version, added = store.plan(serials=["0x10", "16", "17"], key_ids=["admin-x"], reason="stolen")
    assert [entry["serial"] for entry in added["serials"]] == ["16", "17"] and version == 0
    store.commit(new, version)
    again, version, added = store.plan(serials=["17"], key_ids=["admin-x"])
    assert again is None and not any(added.values())
    assert store.lists() == {"serials": [16, 17], "key_ids": ["admin-x"], "public_keys": []}
    with pytest.raises(ValidationError):
        store.plan(key_ids=["a\nb"])


def test_the_mode_is_kept_in_the_record_and_needs_one():
    kv = FakeKV()
    store = ssh_ca.ModeStore(kv, "acme", "vps")
    with pytest.raises(ssh_ca.CAError):
        store.plan("certificates")
    kv.write("vps", "acme/record", {"vps_ip": "203.0.113.5"}, cas=0)
    record, version, new = store.plan("certificates")
    assert ssh_ca.tenant_mode(record) == "keys" and new["ssh_auth"] == "certificates" and new["vps_ip"] == "203.0.113.5"
    store.commit(new, version)
    assert store.plan("certificates")[2] is None
    with pytest.raises(ValidationError):
        store.plan("passwords")
    assert ssh_ca.tenant_mode({"ssh_auth": "weird"}) == "keys"
