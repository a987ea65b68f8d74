# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The README's table "What is in it" names every playbook, role, module and plugin of the collection (issue 14)."""

from __future__ import annotations

import os
import re

from tests.support.ansible_run import REPO


def names_in(directory, suffix):
    path = os.path.join(REPO, directory)
    return {name[:-len(suffix)] for name in os.listdir(path) if name.endswith(suffix) and not name.startswith("_")}


def table_names(kind):
    """The backticked names of the table rows of ``kind`` (the prefix penguinmails.vps. dropped)."""
    with open(os.path.join(REPO, "README.md")) as handle:
        text = handle.read()
    section = text.split("## What is in it", 1)[1].split("\n## ", 1)[0]
    found = set()
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0] == kind:
            found |= {name.replace("penguinmails.vps.", "") for name in re.findall(r"`([^`]+)`", cells[1])}
    return found


def test_every_playbook_role_module_and_plugin_is_in_the_readme_table():
    expected = {
        "playbook": names_in("playbooks", ".yml"),
        "role": {name for name in os.listdir(os.path.join(REPO, "roles")) if not name.startswith(".")},
        "module": names_in("plugins/modules", ".py"),
        "callback": names_in("plugins/callback", ".py"),
        "lookup": names_in("plugins/lookup", ".py"),
        "filter": names_in("plugins/filter", ".yml"),  # one documentation file per filter
        "action": names_in("plugins/action", ".py"),
        "doc fragment": names_in("plugins/doc_fragments", ".py"),
    }
    problems = []
    for kind, names in sorted(expected.items()):
        listed = table_names(kind)
        if names - listed:
            problems.append("%s missing from the README table: %s" % (kind, sorted(names - listed)))
        if listed - names:
            problems.append("%s in the README table that do not exist: %s" % (kind, sorted(listed - names)))
    assert not problems, "\n".join(problems)
