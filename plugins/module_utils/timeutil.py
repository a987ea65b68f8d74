# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""UTC time as the collection stores it in Vault (``YYYY-MM-DDTHH:MM:SSZ``): one parser, one formatter."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import re

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_FRACTION_RE = re.compile(r"^(.*T\d\d:\d\d:\d\d)\.(\d+)(.*)$")
_COMPACT_OFFSET_RE = re.compile(r"([+-]\d\d)(\d\d)$")


def utcnow(precise=False):
    """Now, in UTC, to the second (or to the microsecond with ``precise``)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return now if precise else now.replace(microsecond=0)


def format_time(moment, millis=False):
    """``moment`` as ISO 8601 UTC with a ``Z`` (milliseconds when asked)."""
    moment = moment.astimezone(datetime.timezone.utc)
    if millis:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (moment.microsecond // 1000)
    return moment.strftime(TIME_FORMAT)


def parse_time(text):
    """An ISO 8601 time (``Z``, ``+00:00`` or ``+0000``; naive means UTC) as an aware UTC datetime, else ``None``."""
    if isinstance(text, datetime.datetime):
        moment = text
    else:
        if not text or not isinstance(text, str):
            return None
        value = text.strip()
        if value[-1:] in ("Z", "z"):
            value = value[:-1] + "+00:00"
        value = _COMPACT_OFFSET_RE.sub(r"\1:\2", value) if "T" in value else value
        match = _FRACTION_RE.match(value)
        if match:  # fromisoformat before Python 3.11 wants exactly 3 or 6 fraction digits
            value = "%s.%s%s" % (match.group(1), (match.group(2) + "000000")[:6], match.group(3))
        try:
            moment = datetime.datetime.fromisoformat(value)
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc)
