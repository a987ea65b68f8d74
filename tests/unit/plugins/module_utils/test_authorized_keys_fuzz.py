# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Property tests (hypothesis) for the authorized_keys parser and compute()."""
from __future__ import annotations

import base64
import datetime
import os
import struct
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.penguinmails.vps.plugins.module_utils import authorized_keys as ak

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 11, 23, 10, 0, 30, tzinfo=UTC)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KEYTYPES = sorted(ak.KEY_TYPES)


@st.composite
def blobs(draw, keytype=None):
    keytype = keytype or draw(st.sampled_from(KEYTYPES))
    name = keytype.encode()
    body = draw(st.binary(min_size=0, max_size=80))
    return base64.b64encode(struct.pack(">I", len(name)) + name + body).decode()


@st.composite
def key_lines(draw, with_options=True, comment=True):
    keytype = draw(st.sampled_from(KEYTYPES))
    blob = draw(blobs(keytype))
    options = ()
    if with_options:
        values = st.none() | st.text(
            alphabet=st.characters(blacklist_characters="\n\r\0", blacklist_categories=("Cs",)), max_size=20
        ).filter(lambda v: not v.endswith("\\"))
        options = tuple(draw(st.lists(st.tuples(st.sampled_from(sorted(ak.KNOWN_OPTIONS)), values), max_size=4)))
    text = ""
    if comment:
        text = draw(st.text(alphabet=st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)), max_size=30))
        text = text.strip(" \t")
    return ak.KeyLine(keytype, blob, options, text)


# Lines that look like authorized_keys content: keys, options, quotes, comments and junk.
junk_line = st.lists(
    st.sampled_from(list(' \t\r#",=\\abcZ09+/-@.') + ["ssh-ed25519", "AAAA", "no-pty", "\udcff", "\u00e9"]),
    max_size=30,
).map("".join)
line_text = st.one_of(junk_line, key_lines().map(lambda line: line.render()))
file_text = st.lists(line_text, max_size=12).map("\n".join) | st.binary(max_size=200).map(
    lambda data: data.decode("utf-8", "surrogateescape")
)


@SETTINGS
@given(file_text)
def test_any_text_round_trips_byte_for_byte(text):
    assert ak.parse(text).serialize() == text


@SETTINGS
@given(st.binary(max_size=300))
def test_any_bytes_round_trip(data):
    text = data.decode("utf-8", "surrogateescape")
    assert ak.parse(text).serialize().encode("utf-8", "surrogateescape") == data


@SETTINGS
@given(key_lines())
def test_structured_key_line_round_trips(line):
    rendered = line.render()
    parsed = ak.parse_line(rendered)
    assert parsed == line
    assert parsed.render() == rendered


@SETTINGS
@given(st.text(max_size=120))
def test_parse_public_key_never_crashes(value):
    try:
        line = ak.parse_public_key(value)
    except ak.AuthorizedKeysError as exc:
        assert "\n" not in str(exc)
    else:
        assert line.keytype in ak.KEY_TYPES


@SETTINGS
@given(st.text(max_size=40) | st.none() | st.integers())
def test_parse_expiry_never_crashes(value):
    try:
        moment = ak.parse_expiry(value)
    except ak.AuthorizedKeysError:
        return
    assert moment.tzinfo is not None
    assert len(ak.format_expiry(moment)) == 13


@SETTINGS
@given(st.text(max_size=40))
def test_user_names_accepted_are_plain(name):
    try:
        ak.validate_user(name)
    except ak.AuthorizedKeysError:
        return
    assert "/" not in name and not name.startswith((".", "-")) and name.isascii() and name.strip() == name


managed = st.lists(key_lines(comment=False), min_size=0, max_size=4, unique_by=lambda line: line.blob)


@SETTINGS
@given(file_text, managed, st.booleans(), st.sampled_from([None, "penguinmails:t1:admin"]))
def test_compute_keeps_unmanaged_lines_and_is_idempotent(text, keys, exclusive, marker):
    current, grace, revoked = keys[:2], keys[2:3], keys[3:]
    grace_keys = [(line.render(), "2026-11-24T00:00:00Z") for line in grace]
    args = dict(
        keys=[line.render() for line in current],
        grace_keys=grace_keys,
        revoked_keys=[line.render() for line in revoked],
        marker=marker,
        exclusive=exclusive,
        now=NOW,
    )
    plan = ak.compute(text, **args)
    managed_blobs = set(line.blob for line in keys)

    def unmanaged(raw):
        line = ak.parse_line(raw)
        if isinstance(line, ak.KeyLine):
            return not exclusive and line.blob not in managed_blobs and not line.has_marker(marker)
        return not (exclusive and line.kind == "invalid")

    before = [line.text for line in ak.parse(text).lines]
    after = [line.text for line in ak.parse(plan.after).lines]
    kept = [raw for raw in before if unmanaged(raw)]
    # Unmanaged lines survive byte for byte, in order, and nothing else unmanaged appears.
    assert [raw for raw in after if unmanaged(raw)] == kept
    # Every current and grace key is there exactly once; revoked keys are gone.
    parsed_after = ak.parse(plan.after).key_lines()
    for line in current + grace:
        assert [k for k in parsed_after if k.blob == line.blob] and len([k for k in parsed_after if k.blob == line.blob]) == 1
    for line in grace:
        assert [k.option("expiry-time") for k in parsed_after if k.blob == line.blob] == ["202611240000Z"]
    for line in revoked:
        assert not [k for k in parsed_after if k.blob == line.blob]
    again = ak.compute(plan.after, **args)
    assert not again.changed and again.after == plan.after
    if not plan.changed:
        assert plan.after == text


@settings(max_examples=40, deadline=None)
@given(file_text, managed)
def test_keyfile_writes_only_its_own_path(text, keys):
    with tempfile.TemporaryDirectory() as top:
        home = os.path.join(top, "home")
        os.mkdir(home)
        os.mkdir(os.path.join(top, "beside"))
        path = os.path.join(home, ".ssh", "authorized_keys")
        with ak.KeyFile(path, os.getuid(), os.getgid(), ssh_dir=True) as keyfile:
            keyfile.write(text)
        with ak.KeyFile(path, os.getuid(), os.getgid(), ssh_dir=True) as keyfile:
            plan = ak.compute(keyfile.before, keys=[line.render() for line in keys], now=NOW)
            keyfile.write(plan.after)
        assert sorted(os.listdir(top)) == ["beside", "home"]
        assert os.listdir(home) == [".ssh"]
        assert os.listdir(os.path.join(home, ".ssh")) == ["authorized_keys"]
        assert os.listdir(os.path.join(top, "beside")) == []
        with open(path, "rb") as handle:
            assert handle.read() == plan.after.encode("utf-8", "surrogateescape")
