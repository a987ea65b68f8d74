# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Property tests: no input makes a validator crash, accept a traversal, or build a path outside its mount."""
from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.penguinmails.vps.plugins.module_utils import validators as v

TENANT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
anything = st.one_of(st.text(max_size=300), st.binary(max_size=50), st.none(), st.integers(), st.lists(st.text(max_size=5), max_size=3))
PATH_PARTS = ["vps", "smtp", "dkim", "t1", "..", ".", "", "a/b", "x.y", "example.test", "dkim", "-", "é", " ", "\n"]
pathish = st.lists(st.sampled_from(PATH_PARTS), max_size=6).map("/".join)


def outcome(func, value):
    try:
        return func(value), None
    except v.ValidationError as exc:
        return None, str(exc)


@settings(max_examples=400, deadline=None)
@given(anything)
def test_tenant_id_accepts_exactly_the_pattern(value):
    result, error = outcome(v.validate_tenant_id, value)
    if isinstance(value, str) and TENANT_RE.fullmatch(value):
        assert result == value
    else:
        assert result is None and error.startswith("invalid tenant id") and "\n" not in error


@settings(max_examples=400, deadline=None)
@given(anything)
def test_domain_results_are_safe_names(value):
    result, error = outcome(v.validate_domain, value)
    if result is None:
        assert error.startswith("invalid domain") and "\n" not in error
    else:
        assert len(result) <= 253 and "/" not in result and ".." not in result
        assert all(1 <= len(label) <= 63 for label in result.split("."))


@settings(max_examples=400, deadline=None)
@given(anything)
def test_selector_is_one_label(value):
    result, error = outcome(v.validate_selector, value)
    if result is not None:
        assert re.fullmatch(r"[A-Za-z0-9-]{1,63}", result) and "." not in result
    else:
        assert error.startswith("invalid DKIM selector")


@settings(max_examples=600, deadline=None)
@given(st.one_of(pathish, st.text(max_size=120)))
def test_split_secret_path_never_escapes(value):
    result, error = outcome(v.split_secret_path, value)
    if result is None:
        assert error.startswith("invalid Vault path") and "\n" not in error
        return
    mount, rest = result
    segments = [mount] + (rest.split("/") if rest else [])
    assert all(segment not in ("", ".", "..") for segment in segments)
    assert all(not any(ch.isspace() for ch in segment) for segment in segments)
    if mount in ("vps", "smtp") and rest:
        assert TENANT_RE.fullmatch(segments[1])


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80), st.sampled_from(["admin", "tenant"]))
def test_ssh_key_path_is_under_the_tenant(tenant, role):
    try:
        mount, path = v.ssh_key_path(tenant, role)
    except v.ValidationError:
        assert not TENANT_RE.fullmatch(tenant)
        return
    assert mount == "vps" and path == "%s/%s_ssh" % (tenant, role)
