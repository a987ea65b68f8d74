# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compare what modules really returned with what their RETURN documentation says.

``compare(module, results)`` takes the results of real runs of one module (dicts as Ansible registered them)
and returns a list of problems:

* a key returned but not documented (at any depth where RETURN documents a structure with ``contains``);
* a key documented ``returned: always`` (or ``success``) missing from a result that did not fail;
* a value whose type is not the documented one (``null`` aside: "None in check mode" is common);
* a key documented but never returned by any result (at any depth): the documentation promises something
  the module never does in these runs.

Ansible's common result keys (``changed``, ``failed``, ``msg``, ``diff``, ``invocation``, ...) are not expected in
RETURN; registered loop results are unpacked into their items.
"""

from __future__ import annotations

import ast
import os

import yaml

from tests.support.ansible_run import REPO

MODULE_DIR = os.path.join(REPO, "plugins", "modules")
# Keys Ansible itself adds or that every module may return (Ansible's "Common return values").
COMMON = {"changed", "failed", "skipped", "skip_reason", "msg", "diff", "invocation", "warnings", "deprecations",
          "exception", "attempts", "item", "ansible_loop_var", "ansible_index_var", "ansible_loop", "failed_when_result",
          "failed_when_suppressed_exception", "changed_when_result", "module_stdout", "module_stderr", "rc",
          "censored", "false_condition"}
TYPES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "list": (list,), "dict": (dict,),
         "complex": (dict, list)}


def returns_of(module):
    with open(os.path.join(MODULE_DIR, module + ".py")) as handle:
        tree = ast.parse(handle.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "RETURN":
            return yaml.safe_load(node.value.value) or {}
    raise AssertionError("%s has no RETURN" % module)


def items(results):
    """Registered results with loop results unpacked."""
    for result in results:
        if isinstance(result.get("results"), list) and "ansible_loop_var" not in result:
            yield from result["results"]
        else:
            yield result


def _type_ok(spec, value):
    if value is None or spec.get("type") in (None, "raw"):
        return True
    wanted = TYPES.get(spec["type"])
    if wanted is None:
        return True
    if spec["type"] in ("int", "float") and isinstance(value, bool):
        return False
    return isinstance(value, wanted)


def _walk(spec_map, value, path, seen, problems, check_always, top):
    keys = set(value)
    if top:
        keys = {key for key in keys if key not in COMMON and not key.startswith("_ansible")}
    for key in sorted(keys - set(spec_map)):
        problems.append("%s: returned but not documented" % (path + key))
    for key, spec in spec_map.items():
        spec = spec or {}
        where = path + key
        if key not in value:
            if check_always and str(spec.get("returned", "")).strip() in ("always", "success"):
                problems.append("%s: documented as returned %s, missing" % (where, spec.get("returned")))
            continue
        seen.add(where)
        item = value[key]
        if not _type_ok(spec, item):
            shown = str(item)[:60]
            problems.append("%s: documented as %s, returned %s (%r)" % (where, spec.get("type"), type(item).__name__, shown))
        contains = spec.get("contains")
        if not contains:
            continue
        if isinstance(item, dict) and spec.get("type") in ("dict", "complex", None):
            _walk(contains, item, where + ".", seen, problems, check_always, False)
        elif isinstance(item, list) and spec.get("type") in ("list", "complex"):
            for element in item:
                if isinstance(element, dict):
                    _walk(contains, element, where + "[].", seen, problems, check_always, False)


def documented_paths(spec_map, path=""):
    found = set()
    for key, spec in (spec_map or {}).items():
        found.add(path + key)
        spec = spec or {}
        if spec.get("contains"):
            suffix = "[]." if spec.get("type") == "list" else "."
            found |= documented_paths(spec["contains"], path + key + suffix)
    return found


def compare(module, results, never_returned_ok=()):
    """Problems of ``results`` (registered results of ``module``) against its RETURN; see the module docstring."""
    try:
        spec = returns_of(module)
    except yaml.YAMLError as exc:
        return ["%s: RETURN is not valid YAML: %s" % (module, str(exc).replace("\n", " "))]
    return compare_spec(module, spec, results, never_returned_ok)


def compare_spec(module, spec, results, never_returned_ok=()):
    """Problems of ``results`` against the RETURN mapping ``spec`` of ``module``."""
    problems, seen = [], set()
    count = 0
    for result in items(results):
        if result.get("skipped") or result.get("censored"):
            continue
        count += 1
        _walk(spec, result, "", seen, problems, check_always=not result.get("failed"), top=True)
    if not count:
        return ["%s: no result to compare (every run was skipped)" % module]
    never = documented_paths(spec) - seen - set(never_returned_ok)
    problems += ["%s: documented but never returned" % path for path in sorted(never)]
    # one line per problem, the first occurrence only
    unique = []
    for problem in problems:
        line = "%s.%s" % (module, problem)
        if line not in unique:
            unique.append(line)
    return unique
