# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared fixtures: a real OpenBao per session (KV v2 mounts vps, smtp, dkim)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import tempfile
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The collection is imported as ansible_collections.penguinmails.vps.* through the link in ./collections.
sys.path.insert(0, os.path.join(REPO, "collections"))
sys.path.insert(0, REPO)

from tests.support.ansible_run import ensure_collection_link  # noqa: E402
from tests.support.openbao import OpenBao, PrivateMounts  # noqa: E402

ensure_collection_link()

# Lab fixtures (OpenBao with audit, BIND9, Hostwinds simulator, lab hosts) live with the lab; every test's
# duration goes to tests/output/durations.tsv and durations_by_file.tsv (tests/support/durations.py).
pytest_plugins = ["tests.lab.fixtures", "tests.support.durations"]


BASETEMP_PREFIX = "pmt-"
BASETEMP_KEEP = 3
_OWN_BASETEMP = pytest.StashKey[str]()


def pytest_configure(config):
    """A short base temp dir: ssh puts ControlPath sockets and the lab puts agent sockets under the tests' tmp_path,
    and a Unix socket path has at most 107 bytes. pytest's default (/tmp/pytest-of-<user>/pytest-<n>) plus
    pytest-xdist's popen-gw<n> per worker left too little room for a test name and a socket name. Like pytest, only
    the newest few run dirs are kept (older ones go once untouched for a day: another session may be using one);
    a passing run removes its own at the end."""
    config.addinivalue_line("markers", "forged_audit_events: the test writes hand-made (forged, damaged) audit lines "
                                       "on purpose; they are not checked against the event schema")
    if getattr(config, "workerinput", None) is not None or config.option.basetemp:
        return  # an xdist worker gets its dir from the controller; an explicit --basetemp is the user's choice
    root = tempfile.gettempdir()
    old = []
    for entry in os.listdir(root):
        path = os.path.join(root, entry)
        try:
            info = os.lstat(path)
        except OSError:
            continue  # gone meanwhile
        if entry.startswith(BASETEMP_PREFIX) and stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid():
            old.append((info.st_mtime, path))
    old.sort()
    for mtime, path in old[:max(0, len(old) - (BASETEMP_KEEP - 1))]:
        if time.time() - mtime > 86400:  # not a dir another session may still be using
            shutil.rmtree(path, ignore_errors=True)
    config.option.basetemp = tempfile.mkdtemp(prefix=BASETEMP_PREFIX, dir=root)
    config.stash[_OWN_BASETEMP] = config.option.basetemp


def pytest_sessionfinish(session, exitstatus):
    own = session.config.stash.get(_OWN_BASETEMP, None)
    if own and exitstatus == 0 and getattr(session.config, "workerinput", None) is None:
        shutil.rmtree(own, ignore_errors=True)


@pytest.fixture(scope="session")
def openbao():
    """A running OpenBao dev server with the KV v2 mounts of DESIGN.md."""
    with OpenBao() as server:
        server.enable_kv()
        yield server


@pytest.fixture()
def private_vault(openbao):
    """The session OpenBao with this test's own KV v2 mounts vps-<id>, smtp-<id>, dkim-<id> (PrivateMounts in
    tests/support/openbao.py), disabled at teardown: for a test that lists or counts what a whole mount holds.
    The test passes ``private_vault.mounts`` (or .vps/.smtp/.dkim) to the code under test."""
    mounts = PrivateMounts(openbao).create()
    try:
        yield mounts
    finally:
        mounts.remove()


@pytest.fixture()
def fresh_openbao():
    """A private OpenBao for tests that seal, stop or otherwise break the server, or set up what is global to a
    server (policies, auth methods, identities, audit devices, the mounts' own configuration); a test that only
    needs data nobody else sees takes ``private_vault`` (about 0.6 s less per test)."""
    with OpenBao() as server:
        server.enable_kv()
        yield server


@pytest.fixture(autouse=True)
def _no_vault_env(monkeypatch):
    """Tests never inherit the developer's Vault settings."""
    for name in list(os.environ):
        if name.startswith("VAULT_"):
            monkeypatch.delenv(name, raising=False)
    from ansible_collections.penguinmails.vps.plugins.module_utils import vault_client

    vault_client.clear_client_cache()
    yield
    vault_client.clear_client_cache()


def _audit_schema_validator():
    import jsonschema

    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                           "audit-event.schema.json")) as handle:
        return jsonschema.Draft202012Validator(json.load(handle))


def audit_events_in(directory):
    """(file, line number, event) of every chained audit event written under ``directory`` (the file sink's lines:
    JSON objects with ``action`` and ``hash_alg``); files a test wrote in the old format on purpose are named
    ``*legacy*``."""
    for base, _dirs, files in os.walk(directory):
        for name in files:
            path = os.path.join(base, name)
            if "legacy" in name or os.path.islink(path) or not os.path.isfile(path) or os.path.getsize(path) > 64 << 20:
                continue
            try:
                with open(path, "rb") as handle:
                    if handle.read(1) != b"{":
                        continue
                    handle.seek(0)
                    lines = handle.read().decode("utf-8", "replace").splitlines()
            except OSError:
                continue
            for number, line in enumerate(lines, 1):
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict) and "action" in event and "hash_alg" in event:
                    yield path, number, event


@pytest.fixture(autouse=True)
def _audit_events_match_the_schema(request, tmp_path):
    """Every audit event a test makes (in its tmp_path) validates against the shipped docs/audit-event.schema.json."""
    yield
    if request.node.get_closest_marker("forged_audit_events"):
        return
    validator = _audit_schema_validator()
    wrong = []
    for path, number, event in audit_events_in(str(tmp_path)):
        for error in validator.iter_errors(event):
            wrong.append("%s:%d %s: %s" % (os.path.relpath(path, str(tmp_path)), number, event.get("action"), error.message))
    assert not wrong, "audit events that do not match docs/audit-event.schema.json:\n" + "\n".join(wrong[:20])
