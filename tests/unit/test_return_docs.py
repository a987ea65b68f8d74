# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The checker of tests/integration/test_module_returns.py finds each kind of mismatch (and only those)."""

from __future__ import annotations

import yaml

from tests.support.return_docs import compare_spec

SPEC = yaml.safe_load("""
name: {description: d, returned: always, type: str}
count: {description: d, returned: always, type: int}
token: {description: d, returned: when asked, type: str}
item_list:
  description: d
  returned: always
  type: list
  elements: dict
  contains:
    a: {description: d, type: str}
info:
  description: d
  returned: success
  type: dict
  contains:
    x: {description: d, type: bool}
""")
GOOD = {"changed": True, "msg": "ok", "invocation": {}, "name": "n", "count": 1, "token": "t",
        "item_list": [{"a": "1"}], "info": {"x": True}}


def test_a_result_that_matches_has_no_problem():
    assert compare_spec("m", SPEC, [GOOD]) == []


def test_each_kind_of_mismatch_is_found():
    results = [
        dict(GOOD, extra=1),                                          # undocumented key
        dict(GOOD, count="1"),                                        # wrong type
        {k: v for k, v in GOOD.items() if k != "name"},               # an always key missing
        dict(GOOD, item_list=[{"a": "1", "b": 2}]),                    # undocumented nested key (list of dicts)
        dict(GOOD, info={"x": True, "y": 1}),                         # undocumented nested key (dict)
        {"failed": True, "msg": "refused"},                           # a failure need not return the always keys
    ]
    problems = compare_spec("m", SPEC, results)
    assert problems == [
        "m.extra: returned but not documented",
        "m.count: documented as int, returned str ('1')",
        "m.name: documented as returned always, missing",
        "m.item_list[].b: returned but not documented",
        "m.info.y: returned but not documented",
    ]


def test_a_documented_key_never_returned_is_found_unless_excused():
    results = [{k: v for k, v in GOOD.items() if k != "token"}, dict(GOOD, info={})]
    assert compare_spec("m", SPEC, results[:1]) == ["m.token: documented but never returned"]
    assert compare_spec("m", SPEC, [results[1]]) == ["m.info.x: documented but never returned"]
    assert compare_spec("m", SPEC, results[:1], never_returned_ok=["token"]) == []


def test_loop_results_are_unpacked_and_skipped_ones_ignored():
    assert compare_spec("m", SPEC, [{"results": [GOOD, dict(GOOD, extra=1)], "changed": True}]) == [
        "m.extra: returned but not documented"]
    assert compare_spec("m", SPEC, [{"skipped": True}]) == ["m: no result to compare (every run was skipped)"]
