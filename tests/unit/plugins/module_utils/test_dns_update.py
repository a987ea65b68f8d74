# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""dns_update without a server: names, values, TXT splitting, the change plan, the UPDATE message."""
from __future__ import annotations

import base64

import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.penguinmails.vps.plugins.module_utils import dns_update as d
from ansible_collections.penguinmails.vps.plugins.module_utils.validators import ValidationError

SECRET = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
DKIM_4096 = "v=DKIM1; k=rsa; p=" + "MIICIjANBgkqhkiG9w0BAQEFAAOCAg8AMIICCgKCAgEA" + "x" * 692 + "IDAQAB"


# -- TXT splitting ---------------------------------------------------------------------------
def test_split_short_and_empty():
    assert d.split_txt("v=spf1 mx -all") == [b"v=spf1 mx -all"]
    assert d.split_txt("") == [b""]


@pytest.mark.parametrize("length, sizes", [(255, [255]), (256, [255, 1]), (510, [255, 255]), (600, [255, 255, 90])])
def test_split_at_255_bytes(length, sizes):
    assert [len(chunk) for chunk in d.split_txt("a" * length)] == sizes


def test_dkim_4096_split_is_deterministic_and_joins_back():
    first = d.split_txt(DKIM_4096)
    assert first == d.split_txt(DKIM_4096)
    assert all(len(chunk) == 255 for chunk in first[:-1])
    assert d.join_txt(first) == DKIM_4096


def test_split_counts_utf8_bytes_and_joins_across_a_cut_character():
    value = "é" * 200  # 400 bytes: the cut at 255 falls inside a character
    chunks = d.split_txt(value)
    assert [len(chunk) for chunk in chunks] == [255, 145]
    assert d.join_txt(chunks) == value


@given(st.text(max_size=2000))
def test_split_join_round_trip(value):
    chunks = d.split_txt(value)
    assert chunks and all(len(chunk) <= 255 for chunk in chunks)
    assert d.join_txt(chunks) == value
    assert d.split_txt(value) == chunks


def test_join_accepts_str_and_shows_bad_utf8_escaped():
    assert d.join_txt(["ab", b"cd"]) == "abcd"
    assert d.join_txt([b"\xff"]) == "\\xff"


# -- values -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "rtype, value, canonical",
    [
        ("A", " 192.0.2.1 ", "192.0.2.1"),
        ("AAAA", "2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("MX", "10 Mail.Example.Test", "10 mail.example.test."),
        ("MX", "  0   mx.example.test. ", "0 mx.example.test."),
        ("CNAME", "Target.Example.Test", "target.example.test."),
        ("CNAME", "s1._domainkey.sendgrid.net.", "s1._domainkey.sendgrid.net."),
        ("TXT", ' keep "spaces" ', ' keep "spaces" '),
        ("txt", "lower-case type", "lower-case type"),
    ],
)
def test_canonical_values(rtype, value, canonical):
    assert d.canonical_value(rtype, value) == canonical


@pytest.mark.parametrize(
    "rtype, value, message",
    [
        ("A", "999.1.1.1", "must be an IPv4 address"),
        ("A", "2001:db8::1", "must be an IPv4 address"),
        ("AAAA", "192.0.2.1", "must be an IPv6 address"),
        ("MX", "mail.example.test", "PREFERENCE HOST"),
        ("MX", "70000 mail.example.test", "PREFERENCE HOST"),
        ("MX", "10 bad_host!", "invalid MX exchange"),
        ("CNAME", "-bad.example.test", "invalid CNAME target"),
        ("CNAME", ".", "invalid CNAME target"),
        ("TXT", 5, "must be a string"),
        ("TXT", "x" * 60001, "longer than"),
        ("SRV", "x", "must be one of A, AAAA, MX, TXT, CNAME"),
    ],
)
def test_invalid_values(rtype, value, message):
    with pytest.raises(ValidationError, match=message):
        d.canonical_value(rtype, value)


def test_canonical_values_drop_duplicates_keep_order():
    assert d.canonical_values("A", ["192.0.2.2", "192.0.2.1", " 192.0.2.2"]) == ["192.0.2.2", "192.0.2.1"]
    assert d.canonical_values("A", None) == []
    assert d.canonical_values("A", "192.0.2.1") == ["192.0.2.1"]


@pytest.mark.parametrize(
    "rtype, value",
    [("A", "192.0.2.1"), ("AAAA", "2001:db8::1"), ("MX", "10 mail.example.test."), ("CNAME", "x.example.test."), ("TXT", DKIM_4096)],
)
def test_rdata_round_trip(rtype, value):
    rdata = d.value_to_rdata(rtype, value)
    assert d.rdata_to_value(rdata) == value


def test_txt_split_elsewhere_has_the_same_value():
    data = DKIM_4096.encode()
    other = dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, [data[i:i + 200] for i in range(0, len(data), 200)])
    assert d.rdata_to_value(other) == DKIM_4096
    assert other != d.value_to_rdata("TXT", DKIM_4096)


# -- names ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "record, fqdn",
    [
        ("www", "www.example.test."),
        ("@", "example.test."),
        ("", "example.test."),
        ("WWW", "www.example.test."),
        ("dkim._domainkey", "dkim._domainkey.example.test."),
        ("_dmarc", "_dmarc.example.test."),
        ("*.wild", "*.wild.example.test."),
        ("www.example.test", "www.example.test."),
        ("example.test", "example.test."),
        ("www.example.test.", "www.example.test."),
        ("a.b.example.test.", "a.b.example.test."),
    ],
)
def test_record_fqdn(record, fqdn):
    assert d.record_fqdn(record, "Example.Test.") == fqdn


@pytest.mark.parametrize(
    "record, message",
    [
        ("www.other.test.", "is not inside zone"),
        ("notexample.test.", "is not inside zone"),
        ("-www", "invalid record"),
        ("a..b", "invalid record"),
        ("a b", "invalid record"),
        ("w*", "invalid record"),
        ("a.*", "invalid record"),
        ("ünï", "IDNA"),
        ("x" * 64, "invalid record"),
        (".".join(["a" * 60] * 5), "longer than 253"),
    ],
)
def test_invalid_records(record, message):
    with pytest.raises(ValidationError, match=message):
        d.record_fqdn(record, "example.test")


@pytest.mark.parametrize("zone", ["../etc", "test", "exa mple.test", ""])
def test_invalid_zone(zone):
    with pytest.raises(ValidationError, match="invalid zone"):
        d.validate_zone(zone)


# -- the plan ---------------------------------------------------------------------------------
def test_plan_creates_with_default_ttl():
    plan = d.plan_change("A", "present", [], None, ["192.0.2.1"])
    assert plan == {"changed": True, "after": ["192.0.2.1"], "after_ttl": 3600, "add": ["192.0.2.1"], "remove": [],
                    "ttl_changed": False}


def test_plan_same_rrset_is_unchanged_and_keeps_ttl_when_none_given():
    plan = d.plan_change("A", "present", ["192.0.2.2", "192.0.2.1"], 300, ["192.0.2.1", "192.0.2.2"])
    assert plan["changed"] is False and plan["after_ttl"] == 300


def test_plan_replace_is_exact_for_non_txt():
    plan = d.plan_change("A", "present", ["192.0.2.1", "192.0.2.2"], 300, ["192.0.2.2", "192.0.2.3"])
    assert plan["add"] == ["192.0.2.3"] and plan["remove"] == ["192.0.2.1"]
    assert plan["after"] == ["192.0.2.2", "192.0.2.3"]


def test_plan_replace_false_only_adds():
    plan = d.plan_change("MX", "present", ["10 a."], 300, ["20 b."], replace=False)
    assert plan["after"] == ["10 a.", "20 b."] and plan["remove"] == []


def test_plan_txt_present_never_removes_other_values():
    plan = d.plan_change("TXT", "present", ["v=spf1 -all", "token"], 300, ["v=DKIM1; p=x"])
    assert plan["remove"] == [] and plan["add"] == ["v=DKIM1; p=x"]
    assert plan["after"] == ["v=spf1 -all", "token", "v=DKIM1; p=x"]


def test_plan_txt_absent_removes_only_given_values():
    plan = d.plan_change("TXT", "absent", ["v=spf1 -all", "token"], 300, ["token", "not-there"])
    assert plan["remove"] == ["token"] and plan["after"] == ["v=spf1 -all"] and plan["after_ttl"] == 300
    assert d.plan_change("TXT", "absent", ["v=spf1 -all"], 300, ["token"])["changed"] is False


def test_plan_absent_without_values_removes_the_rrset():
    plan = d.plan_change("A", "absent", ["192.0.2.1", "192.0.2.2"], 300, [])
    assert plan["after"] == [] and plan["after_ttl"] is None and plan["remove"] == ["192.0.2.1", "192.0.2.2"]
    assert d.plan_change("A", "absent", [], None, [])["changed"] is False


def test_plan_ttl_change():
    plan = d.plan_change("TXT", "present", ["a", "b"], 300, ["b"], ttl=60)
    assert plan["changed"] is True and plan["ttl_changed"] is True and plan["add"] == [] and plan["after_ttl"] == 60
    assert d.plan_change("TXT", "present", ["a"], 60, ["a"], ttl=60)["changed"] is False


@pytest.mark.parametrize(
    "args, message",
    [
        (("TXT", "present", ["x"], True), "replace=true is not supported for TXT"),
        (("TXT", "absent", [], None), "never deleted"),
        (("A", "present", [], None), "at least one value"),
        (("CNAME", "present", ["a.", "b."], None), "exactly one value"),
        (("A", "latest", ["192.0.2.1"], None), "invalid state"),
    ],
)
def test_check_request_refuses(args, message):
    with pytest.raises(ValidationError, match=message):
        d.check_request(*args)


def test_plan_cname_cannot_grow_to_two_values():
    with pytest.raises(ValidationError, match="exactly one value"):
        d.plan_change("CNAME", "present", ["a."], 300, ["b."], replace=False)


def test_rrset_text_for_diff():
    text = d.rrset_text("x.example.test.", "TXT", 300, ['say "hi"', "a" * 300])
    lines = text.splitlines()
    assert lines[0] == 'x.example.test. 300 IN TXT "%s" "%s"' % ("a" * 255, "a" * 45)
    assert lines[1] == 'x.example.test. 300 IN TXT "say \\"hi\\""'
    assert d.rrset_text("x.", "A", 0, []) == ""


# -- client, without network --------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"key_name": "k"}, "given together"),
        ({"key_secret": SECRET}, "given together"),
        ({"key_name": "k", "key_secret": "not base64!"}, "not valid base64"),
        ({"key_name": "k", "key_secret": SECRET, "key_algorithm": "hmac-foo"}, "invalid key_algorithm"),
        ({"port": 0}, "invalid port"),
        ({"protocol": "tls"}, "invalid protocol"),
        ({"timeout": 0}, "invalid timeout"),
    ],
)
def test_client_refuses_bad_settings(kwargs, message):
    with pytest.raises(ValidationError, match=message) as info:
        d.DnsClient("127.0.0.1", **kwargs)
    assert "not base64!" not in str(info.value)


def test_update_pins_the_rrset_that_was_read():
    client = d.DnsClient("127.0.0.1", key_name="k", key_secret=SECRET)
    current = d.CurrentRRset(300, [("a", [d.value_to_rdata("TXT", "a")]), ("b", [d.value_to_rdata("TXT", "b")])])
    plan = d.plan_change("TXT", "absent", current.values, 300, ["b"])
    update = client.build_update("example.test", "x.example.test.", "TXT", current, plan)
    # dnspython keeps one RRset object per RR in update messages; on the wire they are just RRs.
    prereq = update.prerequisite
    assert all(rrset.rdclass == dns.rdataclass.IN and rrset.ttl == 0 for rrset in prereq)
    assert sorted(d.rdata_to_value(rdata) for rrset in prereq for rdata in rrset) == ["a", "b"]
    assert len(update.update) == 1
    deleted = update.update[0]
    assert deleted.deleting == dns.rdataclass.NONE and [d.rdata_to_value(r) for r in deleted] == ["b"]
    assert update.keyname == dns.name.from_text("k")


def test_update_of_a_new_rrset_requires_it_absent():
    client = d.DnsClient("127.0.0.1")
    plan = d.plan_change("A", "present", [], None, ["192.0.2.1"], ttl=60)
    update = client.build_update("example.test", "x.example.test.", "A", d.CurrentRRset(), plan)
    assert update.prerequisite[0].rdclass == dns.rdataclass.NONE
    assert update.prerequisite[0].rdtype == dns.rdatatype.A
    assert update.update[0].ttl == 60 and [r.to_text() for r in update.update[0]] == ["192.0.2.1"]
    assert update.keyname is None


def test_ttl_change_rewrites_the_rrset_keeping_server_rdatas():
    client = d.DnsClient("127.0.0.1")
    data = DKIM_4096.encode()
    theirs = dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, [data[i:i + 200] for i in range(0, len(data), 200)])
    current = d.CurrentRRset(300, [(DKIM_4096, [theirs])])
    plan = d.plan_change("TXT", "present", current.values, 300, ["new"], ttl=60)
    update = client.build_update("example.test", "x.example.test.", "TXT", current, plan)
    delete_all, added = update.update[0], update.update[1:]
    assert delete_all.deleting == dns.rdataclass.ANY and len(delete_all) == 0
    assert all(rrset.ttl == 60 and rrset.rdclass == dns.rdataclass.IN for rrset in added)
    assert [rdata for rrset in added for rdata in rrset] == [theirs, d.value_to_rdata("TXT", "new")]
