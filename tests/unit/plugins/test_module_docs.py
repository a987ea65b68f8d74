# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Conventions of every module's documentation (issue 14).

* Attributes come from the shared fragments in plugins/doc_fragments/attributes.py: a module sets only
  ``support`` and its own ``details``; the generic descriptions, ``platforms`` and ``membership`` are never
  written inline (they were, in two styles).
* The action group ``penguinmails.vps.vault`` of meta/runtime.yml, the modules that take the Vault
  connection options (fragment ``penguinmails.vps.vault``) and the modules documenting the ``action_group``
  attribute are one and the same set, so ``module_defaults: {group/penguinmails.vps.vault: ...}`` reaches every
  Vault module and no other.
* A module with an action plugin documents the ``action`` attribute.

The merged documentation is read the way users see it: ``ansible-doc --json`` on the collection.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess

import pytest
import yaml

from tests.support.ansible_run import REPO, VENV_BIN, ansible_env

MODULE_DIR = os.path.join(REPO, "plugins", "modules")
MODULES = sorted(name[:-3] for name in os.listdir(MODULE_DIR) if name.endswith(".py") and not name.startswith("_"))
FRAGMENT = "penguinmails.vps.attributes"
SUPPORT = {"full", "partial", "none", "N/A"}


def raw_documentation(name):
    with open(os.path.join(MODULE_DIR, name + ".py")) as handle:
        tree = ast.parse(handle.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "DOCUMENTATION":
            return yaml.safe_load(node.value.value)
    raise AssertionError("%s has no DOCUMENTATION" % name)


def vault_group():
    with open(os.path.join(REPO, "meta", "runtime.yml")) as handle:
        return set(yaml.safe_load(handle)["action_groups"]["vault"])


def _ansible_doc(names):
    return subprocess.run([os.path.join(VENV_BIN, "ansible-doc"), "--json", "-t", "module"]
                          + ["penguinmails.vps." + name for name in names],
                          env=ansible_env(), capture_output=True, text=True, timeout=300, cwd=REPO, check=False)


@pytest.fixture(scope="module")
def merged():
    """The documentation of every module after the fragments are applied, as ansible-doc renders it
    (a module whose documentation does not render maps to the error)."""
    proc = _ansible_doc(MODULES)
    if proc.returncode == 0 and "ERROR" not in proc.stderr:
        return {key.rsplit(".", 1)[-1]: value["doc"] for key, value in json.loads(proc.stdout).items()}
    docs = {}
    for name in MODULES:  # one at a time, so that one broken module fails its own tests only
        proc = _ansible_doc([name])
        ok = proc.returncode == 0 and "ERROR" not in proc.stderr
        docs[name] = json.loads(proc.stdout)["penguinmails.vps." + name]["doc"] if ok else proc.stderr.strip()
    return docs


def doc_of(merged, name):
    doc = merged[name]
    assert isinstance(doc, dict), "%s: ansible-doc cannot render it: %s" % (name, doc[-1000:])
    return doc


@pytest.mark.parametrize("name", MODULES)
def test_attributes_come_from_the_shared_fragments(name):
    raw = raw_documentation(name)
    fragments = raw.get("extends_documentation_fragment") or []
    assert FRAGMENT in fragments, "%s: extends_documentation_fragment lacks %s" % (name, FRAGMENT)
    for attribute, value in (raw.get("attributes") or {}).items():
        inline = sorted(set(value) & {"description", "membership", "platforms"})
        assert not inline, "%s: attribute %s writes %s inline; the fragment %s has them" % (name, attribute, inline, FRAGMENT)
    assert "action_group" not in (raw.get("attributes") or {}), "%s: use the fragment %s.action_group" % (name, FRAGMENT)


@pytest.mark.parametrize("name", MODULES)
def test_merged_attributes_are_complete(merged, name):
    attributes = doc_of(merged, name).get("attributes") or {}
    for required in ("check_mode", "diff_mode"):
        assert required in attributes, "%s: no %s attribute" % (name, required)
    for attribute, value in attributes.items():
        assert value.get("description"), "%s: attribute %s has no description" % (name, attribute)
        assert value.get("support") in SUPPORT, "%s: attribute %s support %r" % (name, attribute, value.get("support"))
    if "platform" in attributes:
        assert attributes["platform"].get("platforms"), name
    has_action_plugin = os.path.exists(os.path.join(REPO, "plugins", "action", name + ".py"))
    assert ("action" in attributes) == has_action_plugin, "%s: the action attribute must say whether plugins/action/%s.py exists" % (name, name)


def test_vault_action_group_is_every_vault_module_and_nothing_else(merged):
    group = vault_group()
    takes_vault_options = {name for name in MODULES
                           if "penguinmails.vps.vault" in (raw_documentation(name).get("extends_documentation_fragment") or [])}
    documented = {name for name in MODULES if "action_group" in (doc_of(merged, name).get("attributes") or {})}
    assert group == takes_vault_options, "meta/runtime.yml action group vault != modules with the Vault options"
    assert documented == group, "modules documenting the action_group attribute != the action group vault"
    for name in documented:
        assert doc_of(merged, name)["attributes"]["action_group"]["membership"] == ["penguinmails.vps.vault"], name
    assert all(os.path.exists(os.path.join(MODULE_DIR, name + ".py")) for name in group)
