# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""requirements.txt lists every library the plugins import, and nothing else (issue 14).

Every ``import``/``from ... import`` of plugins/ (at any depth: optional imports inside ``try`` and functions
count) that is neither the standard library, ansible-core nor the collection itself must come from a
distribution named in requirements.txt; a requirement no plugin imports is flagged too (hvac needs requests:
the Vault client imports both itself). tests/integration/test_install_tarball.py then runs the collection
with exactly these libraries."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import sys

from tests.support.ansible_run import REPO

# What ansible-core itself brings (its own dependencies), which the collection may import without listing.
CORE = {"ansible", "ansible_collections", "jinja2", "yaml", "markupsafe", "packaging", "resolvelib"}


def imported_top_level_names():
    names = {}
    for base, _dirs, files in os.walk(os.path.join(REPO, "plugins")):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(base, name)
            with open(path) as handle:
                tree = ast.parse(handle.read(), path)
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    found = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found = [node.module]
                else:
                    continue
                for module in found:
                    names.setdefault(module.split(".")[0], set()).add(os.path.relpath(path, REPO))
    return names


def requirements():
    with open(os.path.join(REPO, "requirements.txt")) as handle:
        lines = [line.split("#")[0].strip() for line in handle]
    return {re.split(r"[<>=!~\[; ]", line)[0].lower() for line in lines if line}


def test_requirements_txt_lists_exactly_what_the_plugins_import():
    third_party = {name: where for name, where in imported_top_level_names().items()
                   if name not in sys.stdlib_module_names and name not in CORE and name != "__future__"}
    distributions = importlib.metadata.packages_distributions()
    needed = {}
    for name, where in third_party.items():
        assert name in distributions, "%s (imported by %s) is installed by no distribution here" % (name, sorted(where))
        for dist in distributions[name]:
            needed[dist.lower()] = sorted(where)
    listed = requirements()
    missing = {dist: where for dist, where in needed.items() if dist not in listed}
    assert not missing, "imported but not in requirements.txt: %s" % missing
    assert sorted(listed - set(needed)) == [], "in requirements.txt but imported by no plugin"
    assert "ansible-core" not in listed and "ansible" not in listed
