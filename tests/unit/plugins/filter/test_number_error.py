# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""number_error: one rule, one message, for decimal inputs such as migrate_copy_rate_mbps."""

from __future__ import annotations

import pytest

from ansible_collections.penguinmails.vps.plugins.filter.inputs import FilterModule, number_error


@pytest.mark.parametrize("value", [0.3, "0.3", 2, "12", " 1.5 "])
def test_a_positive_number_passes(value):
    assert number_error(value, "rate", minimum=0) == ""


@pytest.mark.parametrize("value,message", [
    ("abc", "rate must be a number, not 'abc'"),
    ("", "rate must be a number, not ''"),
    (True, "rate must be a number, not True"),
    (None, "rate must be a number, not None"),
    ("nan", "rate must be a number, not 'nan'"),
    ("inf", "rate must be a number, not 'inf'"),
    (0, "rate must be more than 0, not 0"),
    ("-1.5", "rate must be more than 0, not '-1.5'"),
])
def test_anything_else_names_the_rule(value, message):
    assert number_error(value, "rate", minimum=0) == message


def test_the_filter_is_registered():
    assert FilterModule().filters()["number_error"] is number_error
