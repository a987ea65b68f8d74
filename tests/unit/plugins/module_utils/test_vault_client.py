# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shared Vault client against a real OpenBao (tests/support/openbao.py)."""
from __future__ import annotations

import base64
import json
import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ansible_collections.penguinmails.vps.plugins.module_utils import vault_client as vc
from tests.support.openbao import free_port

SECRET = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key-but-secret\n-----END OPENSSH PRIVATE KEY-----"


def client_for(server, **options):
    options.setdefault("url", server.addr)
    if options.get("auth_method", "token") == "token":
        options.setdefault("token", server.token)
    return vc.get_client(options)


def test_read_field_version_list_metadata(openbao):
    openbao.kv_put("vps", "c1/admin_ssh", {"public_key": "ssh-rsa AAA1", "private_key": SECRET})
    openbao.kv_put("vps", "c1/admin_ssh", {"public_key": "ssh-rsa AAA2", "private_key": SECRET})
    client = client_for(openbao)
    latest = client.read("vps", "c1/admin_ssh")
    assert latest.version == 2
    assert latest.field("public_key") == "ssh-rsa AAA2"
    assert client.read("vps", "c1/admin_ssh", version=1).field("public_key") == "ssh-rsa AAA1"
    assert client.list("vps", "c1") == ["admin_ssh"]
    assert client.list("vps", "no-such-tenant") == []
    meta = client.metadata("vps", "c1/admin_ssh")
    assert meta["current_version"] == 2 and set(meta["versions"]) == {"1", "2"}


def test_missing_field_names_the_fields_but_no_values(openbao):
    openbao.kv_put("vps", "c2/admin_ssh", {"public_key": "pk", "private_key": SECRET})
    with pytest.raises(vc.VaultNotFound) as err:
        client_for(openbao).read("vps", "c2/admin_ssh").field("nope")
    assert "private_key, public_key" in str(err.value)
    assert SECRET not in str(err.value)


def test_write_with_cas(openbao):
    client = client_for(openbao)
    assert client.write("vps", "c3/record", {"vps_ip": "192.0.2.1"}, cas=0) == 1
    with pytest.raises(vc.VaultCASConflict, match="check-and-set conflict on write of vps/c3/record"):
        client.write("vps", "c3/record", {"vps_ip": "192.0.2.2"}, cas=0)
    assert client.write("vps", "c3/record", {"vps_ip": "192.0.2.2"}, cas=1) == 2
    assert openbao.kv_get("vps", "c3/record")["data"] == {"vps_ip": "192.0.2.2"}
    # History is kept: version 1 still readable.
    assert client.read("vps", "c3/record", version=1).data == {"vps_ip": "192.0.2.1"}


def test_not_found_message(openbao):
    with pytest.raises(vc.VaultNotFound) as err:
        client_for(openbao).read("vps", "nobody/admin_ssh")
    assert str(err.value) == "secret not found: vps/nobody/admin_ssh"


def test_bad_token_is_permission_denied_without_the_token(openbao):
    bad = "s.definitely-not-valid-token"
    with pytest.raises(vc.VaultPermissionDenied) as err:
        vc.get_client({"url": openbao.addr, "token": bad}).read("vps", "c1/admin_ssh")
    assert "permission denied for read of vps/c1/admin_ssh" in str(err.value)
    assert bad not in str(err.value)


def test_policy_limited_token(openbao):
    openbao.api("PUT", "/v1/sys/policies/acl/read-c5", {"policy": 'path "vps/data/c5/*" { capabilities = ["read"] }'})
    openbao.kv_put("vps", "c5/admin_ssh", {"public_key": "pk5"})
    openbao.kv_put("vps", "c6/admin_ssh", {"public_key": "pk6"})
    token = openbao.create_token(["read-c5"])
    client = vc.get_client({"url": openbao.addr, "token": token})
    assert client.read("vps", "c5/admin_ssh").data == {"public_key": "pk5"}
    with pytest.raises(vc.VaultPermissionDenied):
        client.read("vps", "c6/admin_ssh")


def test_unreachable_vault_is_one_clear_line():
    port = free_port()
    started = time.monotonic()
    with pytest.raises(vc.VaultUnreachable) as err:
        vc.get_client({"url": "http://127.0.0.1:%d" % port, "token": "t", "retries": 1}).read("vps", "t1/admin_ssh")
    assert str(err.value) == (
        "cannot reach Vault at http://127.0.0.1:%d for read of vps/t1/admin_ssh: connection refused" % port
    )
    assert time.monotonic() - started < 5


def test_sealed_vault(fresh_openbao):
    client = client_for(fresh_openbao)
    fresh_openbao.seal()
    with pytest.raises(vc.VaultSealed) as err:
        client.read("vps", "t1/admin_ssh")
    assert "is sealed" in str(err.value)
    assert client.health()["sealed"] is True
    fresh_openbao.unseal()
    assert client.health()["sealed"] is False


def test_settings_resolution_from_environment(openbao):
    env = {"VAULT_ADDR": openbao.addr + "/", "VAULT_TOKEN": "tok", "VAULT_SKIP_VERIFY": "true", "VAULT_NAMESPACE": "ns1"}
    settings = vc.resolve_settings({}, env)
    assert settings["url"] == openbao.addr
    assert settings["token"] == "tok" and settings["validate_certs"] is False and settings["namespace"] == "ns1"
    explicit = vc.resolve_settings({"url": "https://x:8200", "token": "t2", "validate_certs": True}, env)
    assert explicit["url"] == "https://x:8200" and explicit["token"] == "t2" and explicit["validate_certs"] is True


@pytest.mark.parametrize(
    "options, message",
    [
        ({}, "no Vault address"),
        ({"url": "http://x"}, "needs a token"),
        ({"url": "http://x", "auth_method": "approle", "role_id": "r"}, "needs role_id and secret_id"),
        ({"url": "http://x", "auth_method": "jwt", "jwt": "j"}, "needs jwt and jwt_role"),
        ({"url": "http://x", "auth_method": "ldap"}, "invalid auth_method"),
        ({"url": "http://x", "token": "t", "timeout": "soon"}, "not a whole number"),
    ],
)
def test_settings_errors(options, message):
    with pytest.raises(vc.VaultConfigError, match=message):
        vc.resolve_settings(options, {"HOME": "/nonexistent"})


def test_token_file_fallback(tmp_path):
    (tmp_path / ".vault-token").write_text("from-file\n")
    assert vc.resolve_settings({"url": "http://x"}, {"HOME": str(tmp_path)})["token"] == "from-file"


def test_one_client_and_login_per_process_and_settings(openbao):
    first = client_for(openbao)
    assert client_for(openbao) is first
    assert first.logins == 1
    assert client_for(openbao, timeout=11) is not first


def test_approle_login_once_and_relogin_after_expiry(openbao):
    openbao.api("POST", "/v1/sys/auth/approle", {"type": "approle"}, ok=(200, 204, 400))
    openbao.api("PUT", "/v1/sys/policies/acl/vps-read", {"policy": 'path "vps/data/*" { capabilities = ["read"] }'})
    openbao.api("POST", "/v1/auth/approle/role/bench", {"token_policies": ["vps-read"], "token_ttl": "2s", "token_max_ttl": "2s"})
    role_id = openbao.api("GET", "/v1/auth/approle/role/bench/role-id")["data"]["role_id"]
    secret_id = openbao.api("POST", "/v1/auth/approle/role/bench/secret-id")["data"]["secret_id"]
    openbao.kv_put("vps", "c7/admin_ssh", {"public_key": "pk7"})
    client = vc.get_client({"url": openbao.addr, "auth_method": "approle", "role_id": role_id, "secret_id": secret_id})
    for dummy in range(5):
        assert client.read("vps", "c7/admin_ssh").data == {"public_key": "pk7"}
    assert client.logins == 1
    token = client.hvac.token
    # Let the short-lived token expire: the server then refuses it and the client logs in again.
    deadline = time.monotonic() + 10
    while openbao.request("GET", "/v1/auth/token/lookup-self", token=token)[0] == 200:
        assert time.monotonic() < deadline, "token did not expire"
        time.sleep(0.2)
    assert client.read("vps", "c7/admin_ssh").data == {"public_key": "pk7"}
    assert client.logins == 2


def test_approle_bad_secret_id(openbao):
    openbao.api("POST", "/v1/sys/auth/approle", {"type": "approle"}, ok=(200, 204, 400))
    openbao.api("POST", "/v1/auth/approle/role/bad", {"token_policies": ["default"]})
    role_id = openbao.api("GET", "/v1/auth/approle/role/bad/role-id")["data"]["role_id"]
    with pytest.raises(vc.VaultAuthError) as err:
        vc.get_client({"url": openbao.addr, "auth_method": "approle", "role_id": role_id, "secret_id": "wrong-secret"})
    assert "approle login at %s failed" % openbao.addr in str(err.value)
    assert "wrong-secret" not in str(err.value)


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(private_key, claims):
    header = _b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(claims).encode())
    signature = private_key.sign(("%s.%s" % (header, payload)).encode(), padding.PKCS1v15(), hashes.SHA256())
    return "%s.%s.%s" % (header, payload, _b64(signature))


def test_jwt_login(openbao):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    openbao.api("POST", "/v1/sys/auth/jwt", {"type": "jwt"}, ok=(200, 204, 400))
    openbao.api("POST", "/v1/auth/jwt/config", {"jwt_validation_pubkeys": [pem]})
    openbao.api("PUT", "/v1/sys/policies/acl/vps-read", {"policy": 'path "vps/data/*" { capabilities = ["read"] }'})
    openbao.api(
        "POST",
        "/v1/auth/jwt/role/awx",
        {"role_type": "jwt", "user_claim": "sub", "bound_audiences": ["vault"], "token_policies": ["vps-read"]},
    )
    now = int(time.time())
    token = make_jwt(key, {"sub": "awx-job-1", "aud": "vault", "iat": now, "nbf": now - 5, "exp": now + 300})
    openbao.kv_put("vps", "c8/admin_ssh", {"public_key": "pk8"})
    client = vc.get_client({"url": openbao.addr, "auth_method": "jwt", "jwt": token, "jwt_role": "awx"})
    assert client.read("vps", "c8/admin_ssh").data == {"public_key": "pk8"}
    with pytest.raises(vc.VaultAuthError) as err:
        vc.get_client({"url": openbao.addr, "auth_method": "jwt", "jwt": token + "x", "jwt_role": "awx"})
    assert "jwt login" in str(err.value) and token not in str(err.value)


def test_response_wrapping_is_single_use(openbao):
    openbao.kv_put("vps", "c9/tenant_ssh", {"private_key": SECRET})
    client = client_for(openbao)
    info = client.wrap_read("vps", "c9/tenant_ssh", ttl="5m")
    assert info["ttl"] == 300 and info["token"]
    assert client.unwrap(info["token"])["data"]["private_key"] == SECRET
    with pytest.raises(vc.VaultError) as err:
        client.unwrap(info["token"])
    assert info["token"] not in str(err.value)
    wrapped = client.wrap({"hello": "world"}, ttl="1m")
    assert client.unwrap(wrapped["token"]) == {"hello": "world"}


def test_several_addresses_fail_over_to_a_live_node(openbao):
    dead = "http://127.0.0.1:%d" % free_port()
    openbao.kv_put("vps", "c10/admin_ssh", {"public_key": "pk10"})
    client = vc.get_client({"url": "%s, %s/" % (dead, openbao.addr), "token": openbao.token, "retries": 2})
    assert client.read("vps", "c10/admin_ssh").data == {"public_key": "pk10"}
    assert client.url == openbao.addr
    # A refused connection never reached Vault: even a plain write moves on to the live node.
    client._next_node()
    assert client.url == dead
    assert client.write("vps", "c10/record", {"vps_ip": "198.18.0.9"}) == 1
    assert client.url == openbao.addr
