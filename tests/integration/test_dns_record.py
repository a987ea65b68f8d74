# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""penguinmails.vps.dns_record through ansible-playbook, against a real BIND9 (Debian named)."""
from __future__ import annotations

import base64
import json
import os

import dns.message
import dns.name
import dns.query
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.tsig
import dns.update
import dns.zone
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.lab.bind import Bind9, free_port
from tests.support.ansible_run import run_playbook

from ansible_collections.penguinmails.vps.plugins.module_utils import dns_update

ZONE = "example.test"
WRONG_SECRET = base64.b64encode(b"definitely-not-the-lab-key-secret").decode()


@pytest.fixture(scope="module")
def bind(tmp_path_factory):
    server = Bind9(str(tmp_path_factory.mktemp("bind")), zones=(ZONE, "other.test"))
    server.start()
    try:
        # BIND refuses an MX whose target inside the zone has no address (check-integrity).
        for host in ("mail", "backup", "mx1", "mx2"):
            direct_update(server, host, "A", "192.0.2.25")
        yield server
    finally:
        server.stop()
    assert server.proc is None and server.dir is None


# -- direct access to the server (independent of the module) ---------------------------------
def tsig_key(bind):
    return dns.tsig.Key(bind.tsig_name, bind.tsig_secret, bind.tsig_algorithm)


def fqdn(name):
    return ZONE + "." if name == "@" else "%s.%s." % (name, ZONE)


def lookup(bind, name, rtype):
    """(ttl, [rdata...]) of an RRset, queried over TCP straight from named."""
    query = dns.message.make_query(fqdn(name), rtype)
    response = dns.query.tcp(query, bind.address, port=bind.port, timeout=5)
    rrset = response.get_rrset(response.answer, dns.name.from_text(fqdn(name)), "IN", dns.rdatatype.from_text(rtype))
    return (rrset.ttl, list(rrset)) if rrset is not None else (None, [])


def texts(bind, name, rtype):
    return sorted(rdata.to_text() for rdata in lookup(bind, name, rtype)[1])


def txt_values(bind, name):
    return sorted(b"".join(rdata.strings).decode() for rdata in lookup(bind, name, "TXT")[1])


def zone_snapshot(bind):
    """The whole zone, by a TSIG-signed AXFR: SOA serial included, so any update shows."""
    zone = dns.zone.from_xfr(dns.query.xfr(bind.address, ZONE, port=bind.port, keyring=tsig_key(bind), timeout=5))
    return zone.to_text()


def direct_update(bind, name, rtype, *values, ttl=300, strings=None):
    """Add records with a plain dnspython update, as another tool would (TXT: the given strings)."""
    update = dns.update.UpdateMessage(ZONE, keyring=tsig_key(bind))
    if strings is not None:
        update.add(fqdn(name), ttl, dns.rdtypes.ANY.TXT.TXT(1, 16, strings))
    for value in values:
        update.add(fqdn(name), ttl, rtype, value)
    response = dns.query.tcp(update, bind.address, port=bind.port, timeout=5)
    assert response.rcode() == 0


# -- running the module through ansible-playbook ---------------------------------------------
def module_args(bind, **args):
    base = {
        "server": bind.address,
        "port": bind.port,
        "zone": ZONE,
        "key_name": bind.tsig_name,
        "key_secret": bind.tsig_secret,
    }
    base.update(args)
    return {key: value for key, value in base.items() if value is not None}


def run_tasks(bind, tmp_path, *tasks, args=()):
    """Run one dns_record task per dict in ``tasks``; return (CompletedProcess, [results])."""
    results_path = os.path.join(str(tmp_path), "results-%d.json" % len(os.listdir(str(tmp_path))))
    lines = ["- hosts: localhost", "  gather_facts: false", "  tasks:"]
    for index, task in enumerate(tasks):
        lines += [
            "    - name: dns record %d" % index,
            "      penguinmails.vps.dns_record: %s" % json.dumps(task),
            "      register: r%d" % index,
        ]
    lines += [
        "    - name: save results",
        "      ansible.builtin.copy:",
        "        content: \"{{ [%s] | to_json }}\"" % ", ".join("r%d" % index for index in range(len(tasks))),
        "        dest: %s" % results_path,
        "      check_mode: false",
        "      diff: false",
    ]
    result = run_playbook("\n".join(lines) + "\n", args=args, tmp_path=tmp_path)
    records = None
    if os.path.exists(results_path):
        with open(results_path) as handle:
            records = json.load(handle)
        os.unlink(results_path)
    return result, records


def ok(result, records):
    assert result.returncode == 0, result.stdout + result.stderr
    assert records is not None
    return records


def fatal(result):
    """The one fatal line of a failed run, parsed."""
    assert result.returncode != 0, result.stdout
    marker = "fatal: [localhost]: FAILED! => "
    assert result.stdout.count(marker) == 1, result.stdout
    start = result.stdout.index(marker) + len(marker)
    payload, _end = json.JSONDecoder().raw_decode(result.stdout[start:])
    assert "\n" not in payload["msg"]
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    return payload["msg"]


# -- the tests ---------------------------------------------------------------------------------
CASES = [
    ("A", "web-a", ["192.0.2.10", "192.0.2.11"], ["192.0.2.10", "192.0.2.11"]),
    ("AAAA", "web-aaaa", ["2001:db8:0:0::10"], ["2001:db8::10"]),
    ("MX", "mx-host", ["10 mail.example.test.", "20 backup.example.test"], ["10 mail.example.test.", "20 backup.example.test."]),
    ("CNAME", "alias", ["web-a.example.test"], ["web-a.example.test."]),
    ("TXT", "txt-plain", ["v=spf1 mx -all", 'quote " and \\ backslash'], ['"quote \\" and \\\\ backslash"', '"v=spf1 mx -all"']),
]


@pytest.mark.parametrize("rtype, name, values, on_server", CASES, ids=[case[0] for case in CASES])
def test_creates_then_second_run_is_unchanged(bind, tmp_path, rtype, name, values, on_server):
    task = module_args(bind, record=name, type=rtype, values=values, ttl=600)
    first = ok(*run_tasks(bind, tmp_path, task))[0]
    assert first["changed"] is True
    assert first["record"] == fqdn(name)
    assert first["before"] == {"ttl": None, "values": []}
    assert first["after"]["ttl"] == 600
    assert texts(bind, name, rtype) == sorted(on_server)
    assert lookup(bind, name, rtype)[0] == 600

    snapshot = zone_snapshot(bind)
    second = ok(*run_tasks(bind, tmp_path, task))[0]
    assert second["changed"] is False
    assert second["before"] == second["after"] == first["after"]
    assert zone_snapshot(bind) == snapshot


def test_check_mode_changes_nothing_and_diff_shows_rrsets(bind, tmp_path):
    direct_update(bind, "checked", "A", "192.0.2.1")
    snapshot = zone_snapshot(bind)
    task = module_args(bind, record="checked", type="A", values=["192.0.2.2"])
    result, records = run_tasks(bind, tmp_path, task, args=("--check", "--diff"))
    record = ok(result, records)[0]
    assert record["changed"] is True
    assert record["before"]["values"] == ["192.0.2.1"]
    assert record["after"] == {"ttl": 300, "values": ["192.0.2.2"]}
    assert zone_snapshot(bind) == snapshot
    assert texts(bind, "checked", "A") == ["192.0.2.1"]
    assert "-checked.example.test. 300 IN A 192.0.2.1" in result.stdout
    assert "+checked.example.test. 300 IN A 192.0.2.2" in result.stdout

    # The same with the real run: the diff is shown and the server now has the new RRset.
    result, records = run_tasks(bind, tmp_path, task, args=("--diff",))
    assert ok(result, records)[0]["changed"] is True
    assert "+checked.example.test. 300 IN A 192.0.2.2" in result.stdout
    assert texts(bind, "checked", "A") == ["192.0.2.2"]


def test_txt_present_and_absent_never_touch_other_txt_records(bind, tmp_path):
    direct_update(bind, "@", "TXT", '"v=spf1 mx -all"', '"google-site-verification=abc"')
    direct_update(bind, "_dmarc", "TXT", '"v=DMARC1; p=none"')
    task = module_args(bind, record="@", type="TXT", values=["pm-verification=123"])
    record = ok(*run_tasks(bind, tmp_path, task))[0]
    assert record["changed"] is True
    assert record["after"]["values"] == sorted(["v=spf1 mx -all", "google-site-verification=abc", "pm-verification=123"])
    assert txt_values(bind, "@") == sorted(["v=spf1 mx -all", "google-site-verification=abc", "pm-verification=123"])

    # absent removes only the given value
    gone = module_args(bind, record=ZONE + ".", type="TXT", values=["google-site-verification=abc"], state="absent")
    first, second = ok(*run_tasks(bind, tmp_path, gone, gone))
    assert (first["changed"], second["changed"]) == (True, False)
    assert txt_values(bind, "@") == sorted(["v=spf1 mx -all", "pm-verification=123"])
    assert txt_values(bind, "_dmarc") == ["v=DMARC1; p=none"]

    # TXT absent without values, or replace=true, is refused before anything is sent
    snapshot = zone_snapshot(bind)
    assert "never deleted" in fatal(run_tasks(bind, tmp_path, module_args(bind, record="@", type="TXT", state="absent"))[0])
    assert "replace=true is not supported for TXT" in fatal(
        run_tasks(bind, tmp_path, module_args(bind, record="@", type="TXT", values=["x"], replace=True))[0]
    )
    assert zone_snapshot(bind) == snapshot


def rsa4096_dkim_value():
    key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode("ascii")


def test_dkim_4096_round_trips(bind, tmp_path):
    direct_update(bind, "dkim._domainkey", "TXT", '"v=DKIM1; k=rsa; p=OLDKEY"')
    value = rsa4096_dkim_value()
    assert len(value) > 700
    task = module_args(bind, record="dkim._domainkey", type="TXT", values=[value])
    record = ok(*run_tasks(bind, tmp_path, task))[0]
    assert record["changed"] is True

    rdatas = lookup(bind, "dkim._domainkey", "TXT")[1]
    new = [rdata for rdata in rdatas if b"OLDKEY" not in b"".join(rdata.strings)]
    assert len(rdatas) == 2 and len(new) == 1
    strings = new[0].strings
    assert b"".join(strings).decode("ascii") == value
    assert [len(chunk) for chunk in strings[:-1]] == [255] * (len(strings) - 1)
    assert 0 < len(strings[-1]) <= 255
    assert txt_values(bind, "dkim._domainkey") == sorted([value, "v=DKIM1; k=rsa; p=OLDKEY"])

    snapshot = zone_snapshot(bind)
    again = ok(*run_tasks(bind, tmp_path, task))[0]
    assert again["changed"] is False
    assert value in again["before"]["values"]
    assert zone_snapshot(bind) == snapshot


def test_txt_split_differently_by_another_tool_is_the_same_value(bind, tmp_path):
    value = rsa4096_dkim_value()
    data = value.encode("ascii")
    direct_update(bind, "s2._domainkey", "TXT", strings=[data[index:index + 200] for index in range(0, len(data), 200)])
    snapshot = zone_snapshot(bind)
    record = ok(*run_tasks(bind, tmp_path, module_args(bind, record="s2._domainkey", type="TXT", values=[value])))[0]
    assert record["changed"] is False
    assert zone_snapshot(bind) == snapshot
    # absent finds it too, whatever the split
    gone = module_args(bind, record="s2._domainkey", type="TXT", values=[value], state="absent")
    assert ok(*run_tasks(bind, tmp_path, gone))[0]["changed"] is True
    assert lookup(bind, "s2._domainkey", "TXT")[1] == []


@pytest.mark.parametrize(
    "override, cause",
    [
        ({"key_secret": WRONG_SECRET}, "BADSIG"),
        ({"key_name": "no-such-key"}, "BADKEY"),
        ({"key_algorithm": "hmac-sha512"}, "BADKEY"),
    ],
    ids=["wrong-secret", "wrong-name", "wrong-algorithm"],
)
def test_wrong_tsig_key_is_one_clear_line_and_nothing_changes(bind, tmp_path, override, cause):
    snapshot = zone_snapshot(bind)
    for check in ((), ("--check",)):
        task = module_args(bind, record="denied", type="A", values=["192.0.2.99"], **override)
        result, _records = run_tasks(bind, tmp_path, task, args=check + ("-vvv",))
        msg = fatal(result)
        assert cause in msg and "NOTAUTH" in msg
        assert "TSIG" in msg
        assert WRONG_SECRET not in result.stdout + result.stderr
        assert bind.tsig_secret not in result.stdout + result.stderr
    assert zone_snapshot(bind) == snapshot
    assert lookup(bind, "denied", "A")[1] == []


def test_unreachable_server_is_one_line(bind, tmp_path):
    task = module_args(bind, record="nowhere", type="A", values=["192.0.2.1"], port=free_port(), timeout=3)
    msg = fatal(run_tasks(bind, tmp_path, task)[0])
    assert "cannot reach DNS server 127.0.0.1" in msg and "connection refused" in msg


@pytest.mark.parametrize(
    "args, expected",
    [
        ({"record": "bad-a", "type": "A", "values": ["999.1.1.1"]}, "invalid A value '999.1.1.1'"),
        ({"record": "bad-aaaa", "type": "AAAA", "values": ["192.0.2.1"]}, "must be an IPv6 address"),
        ({"record": "bad-mx", "type": "MX", "values": ["mail.example.test"]}, "must be 'PREFERENCE HOST'"),
        ({"record": "bad name", "type": "A", "values": ["192.0.2.1"]}, "invalid record"),
        ({"record": "www.elsewhere.test.", "type": "A", "values": ["192.0.2.1"]}, "is not inside zone"),
        ({"record": "x", "type": "A", "values": ["192.0.2.1"], "zone": "../etc"}, "invalid zone"),
        ({"record": "two", "type": "CNAME", "values": ["a.example.test", "b.example.test"]}, "exactly one value"),
        ({"record": "x", "type": "A", "values": ["192.0.2.1"], "key_secret": "not base64!"}, "not valid base64"),
        ({"record": "x", "type": "A", "values": ["192.0.2.1"], "ttl": -1}, "invalid ttl"),
        ({"record": "x", "type": "A"}, "needs at least one value"),
    ],
)
def test_invalid_input_is_refused_before_anything_is_sent(bind, tmp_path, args, expected):
    # The port is closed: a message about the input (not about the connection) proves nothing was sent.
    task = module_args(bind, port=free_port(), **args)
    msg = fatal(run_tasks(bind, tmp_path, task)[0])
    assert expected in msg
    assert "cannot reach" not in msg


def test_absent_removes_values_and_whole_rrsets(bind, tmp_path):
    direct_update(bind, "old", "A", "192.0.2.1", "192.0.2.2")
    direct_update(bind, "old", "MX", "10 mx1.example.test.", "20 mx2.example.test.")
    one_mx = module_args(bind, record="old", type="MX", values=["20 mx2.example.test."], state="absent")
    all_a = module_args(bind, record="old", type="A", state="absent")
    first = ok(*run_tasks(bind, tmp_path, one_mx, all_a))
    assert [record["changed"] for record in first] == [True, True]
    assert first[1]["after"] == {"ttl": None, "values": []}
    assert texts(bind, "old", "MX") == ["10 mx1.example.test."]
    assert texts(bind, "old", "A") == []
    second = ok(*run_tasks(bind, tmp_path, one_mx, all_a))
    assert [record["changed"] for record in second] == [False, False]


def test_replace_false_adds_and_ttl_change_keeps_other_txt(bind, tmp_path):
    direct_update(bind, "multi", "A", "192.0.2.1")
    add = module_args(bind, record="multi", type="A", values=["192.0.2.2"], replace=False)
    assert ok(*run_tasks(bind, tmp_path, add))[0]["changed"] is True
    assert texts(bind, "multi", "A") == ["192.0.2.1", "192.0.2.2"]
    exact = module_args(bind, record="multi", type="A", values=["192.0.2.3"])
    assert ok(*run_tasks(bind, tmp_path, exact))[0]["changed"] is True
    assert texts(bind, "multi", "A") == ["192.0.2.3"]

    direct_update(bind, "ttl", "TXT", '"keep-me"', ttl=300)
    task = module_args(bind, record="ttl", type="TXT", values=["new-value"], ttl=60)
    first, second = ok(*run_tasks(bind, tmp_path, task, task))
    assert (first["changed"], second["changed"]) == (True, False)
    ttl, _rdatas = lookup(bind, "ttl", "TXT")
    assert ttl == 60
    assert txt_values(bind, "ttl") == ["keep-me", "new-value"]


def test_concurrent_change_is_detected_by_the_prerequisites(bind):
    """The read-then-update window: an update planned on a stale read is refused as a whole."""
    client = dns_update.DnsClient(bind.address, port=bind.port, key_name=bind.tsig_name, key_secret=bind.tsig_secret)
    name = fqdn("raced")
    direct_update(bind, "raced", "TXT", '"first"')
    stale = client.read_rrset(name, "TXT")
    plan = dns_update.plan_change("TXT", "present", stale.values, stale.ttl, ["mine"])
    direct_update(bind, "raced", "TXT", '"theirs"')  # someone else, in between
    snapshot = zone_snapshot(bind)
    with pytest.raises(dns_update.DnsUpdateError, match=r"prerequisite failed \(NXRRSET\)"):
        client.send_update(ZONE, name, "TXT", stale, plan)
    assert zone_snapshot(bind) == snapshot
    assert txt_values(bind, "raced") == ["first", "theirs"]

    # A fresh run through ensure_record adds the value and keeps both others.
    result = dns_update.ensure_record(client, ZONE, "raced", "TXT", ["mine"])
    assert result["changed"] is True
    assert txt_values(bind, "raced") == ["first", "mine", "theirs"]


def test_zone_not_served_is_a_clear_error(bind, tmp_path):
    task = module_args(bind, zone="notserved.test", record="x", type="A", values=["192.0.2.1"])
    msg = fatal(run_tasks(bind, tmp_path, task)[0])
    assert "zone notserved.test" in msg and "REFUSED" in msg


def test_stop_leaves_nothing(tmp_path):
    server = Bind9(str(tmp_path), zones=("stop.test",))
    info = server.start()
    assert info["port"] and info["pid"] and info["zones"] == ["stop.test"]
    pid, directory = info["pid"], server.dir
    assert os.path.isdir(directory)
    server.stop()
    assert server.proc is None
    assert not os.path.exists("/proc/" + str(pid))
    assert not os.path.exists(directory)
    with pytest.raises(OSError):
        dns.query.tcp(dns.message.make_query("stop.test.", "SOA"), "127.0.0.1", port=info["port"], timeout=2)


def test_udp_transport_with_large_txt(bind, tmp_path):
    """Over UDP the large answer comes back truncated and is repeated over TCP; the update itself fits UDP."""
    value = rsa4096_dkim_value()
    task = module_args(bind, record="udp._domainkey", type="TXT", values=[value], protocol="udp")
    first, second = ok(*run_tasks(bind, tmp_path, task, task))
    assert (first["changed"], second["changed"]) == (True, False)
    assert txt_values(bind, "udp._domainkey") == [value]
