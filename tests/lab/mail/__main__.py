# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``python -m tests.lab.mail``: start one lab mail host a few times; print its start time and memory (JSON)."""

from __future__ import annotations

import json

from tests.lab.mail import measure

print(json.dumps(measure(), indent=2, sort_keys=True))
