# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Polling with a deadline: how the lab and the tests wait for a condition (never a fixed sleep)."""

from __future__ import annotations

import time


def wait_until(predicate, timeout, what, interval=0.05):
    """Poll ``predicate`` until it returns a truthy value (returned); raise TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(interval)
