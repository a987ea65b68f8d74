# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest

from ansible_collections.penguinmails.vps.plugins.module_utils import validators as v


@pytest.mark.parametrize("tenant", ["t1", "T", "a" * 64, "acme_co-2", "0abc"])
def test_valid_tenant_ids(tenant):
    assert v.validate_tenant_id(tenant) == tenant


@pytest.mark.parametrize(
    "tenant, reason",
    [
        ("../x", "path traversal"),
        ("a/b", "path traversal or '/'"),
        ("", "empty"),
        ("a" * 65, "longer than 64"),
        ("-a", "must match"),
        ("_a", "must match"),
        ("a.b", "must match"),
        ("t1\n", "whitespace or control characters"),
        ("t 1", "whitespace or control characters"),
        ("té", "must match"),
    ],
)
def test_invalid_tenant_ids_name_value_and_rule(tenant, reason):
    with pytest.raises(v.ValidationError) as err:
        v.validate_tenant_id(tenant)
    message = str(err.value)
    assert message.startswith("invalid tenant id %r" % tenant[:60]) or "invalid tenant id" in message
    assert reason in message
    assert "\n" not in message


def test_non_string_tenant_id():
    with pytest.raises(v.ValidationError, match="must be a string"):
        v.validate_tenant_id(None)


@pytest.mark.parametrize(
    "domain, expected",
    [("example.com", "example.com"), ("Mail.Example.COM.", "mail.example.com"), ("xn--bcher-kva.example", "xn--bcher-kva.example"),
     ("a-b.c0.io", "a-b.c0.io")],
)
def test_valid_domains_are_normalised(domain, expected):
    assert v.validate_domain(domain) == expected


@pytest.mark.parametrize(
    "domain, reason",
    [
        ("localhost", "two labels"),
        ("-a.com", "label '-a'"),
        ("a-.com", "label 'a-'"),
        ("a..com", "label ''"),
        ("../etc.com", "invalid domain '../etc.com'"),
        ("exa mple.com", "label 'exa mple'"),
        ("bücher.example", "IDNA"),
        ("example.123", "numeric"),
        ("a" * 64 + ".com", "1-63"),
        (".".join(["abcdefgh"] * 30) + ".com", "253"),
        ("", "non-empty"),
        ("a_b.com", "label 'a_b'"),
    ],
)
def test_invalid_domains(domain, reason):
    with pytest.raises(v.ValidationError) as err:
        v.validate_domain(domain)
    assert reason in str(err.value)


@pytest.mark.parametrize("selector", ["dkim", "s2024", "mail-1", "a"])
def test_valid_selectors(selector):
    assert v.validate_selector(selector) == selector


@pytest.mark.parametrize("selector", ["", "-x", "x-", "a.b", "../x", "a_b", "x" * 64, "s\n"])
def test_invalid_selectors(selector):
    with pytest.raises(v.ValidationError, match="invalid DKIM selector"):
        v.validate_selector(selector)


def test_path_builders_validate_every_part():
    assert v.ssh_key_path("t1", "admin") == ("vps", "t1/admin_ssh")
    assert v.ssh_key_path("t1", "tenant", mount="kv-vps") == ("kv-vps", "t1/tenant_ssh")
    assert v.tenant_record_path("t1") == ("vps", "t1/record")
    assert v.smtp_admin_path("t1") == ("smtp", "t1/admin")
    assert v.dkim_key_path("Example.com", "dkim") == ("dkim", "example.com/dkim")
    assert v.dkim_domain_path("example.com") == ("dkim", "example.com")
    with pytest.raises(v.ValidationError, match="invalid tenant id"):
        v.ssh_key_path("../x", "admin")
    with pytest.raises(v.ValidationError, match="invalid key role"):
        v.ssh_key_path("t1", "root")
    with pytest.raises(v.ValidationError, match="invalid Vault mount"):
        v.ssh_key_path("t1", "admin", mount="../sys")


@pytest.mark.parametrize(
    "path, expected",
    [
        ("vps/t1/admin_ssh", ("vps", "t1/admin_ssh")),
        ("/vps/t1/record/", ("vps", "t1/record")),
        ("vps", ("vps", "")),
        ("smtp/t1/admin", ("smtp", "t1/admin")),
        ("dkim/example.com", ("dkim", "example.com")),
        ("dkim/example.com/dkim", ("dkim", "example.com/dkim")),
        ("other/some/thing", ("other", "some/thing")),
    ],
)
def test_split_secret_path(path, expected):
    assert v.split_secret_path(path) == expected


@pytest.mark.parametrize(
    "path, reason",
    [
        ("vps/../x/admin_ssh", "path traversal"),
        ("vps/t1/../t2/admin_ssh", "segment '..'"),
        ("smtp/-bad/admin", "invalid tenant id"),
        ("dkim/../../sys", "invalid domain"),
        ("dkim/example.com/a.b", "invalid DKIM selector"),
        ("dkim/example.com/dkim/extra", "dkim/<domain>/<selector>"),
        ("other/a//b", "segment ''"),
        ("other/./b", "segment '.'"),
        ("", "must be 'mount/path'"),
        ("/", "must be 'mount/path'"),
        ("../sys/x", "invalid Vault mount"),
        ("vps/t1/admin ssh", "segment 'admin ssh'"),
    ],
)
def test_split_secret_path_rejects(path, reason):
    with pytest.raises(v.ValidationError) as err:
        v.split_secret_path(path)
    assert reason in str(err.value)


def test_split_secret_path_honours_mount_names():
    mounts = {"vps": "kv-vps"}
    with pytest.raises(v.ValidationError, match="invalid tenant id"):
        v.split_secret_path("kv-vps/../x", mounts)
    # "vps" is no longer a tenant mount: only generic segment rules apply.
    with pytest.raises(v.ValidationError, match="segment '-x'"):
        v.split_secret_path("vps/-x", mounts)
