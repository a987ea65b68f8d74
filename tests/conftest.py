# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared fixtures: a real OpenBao per session (KV v2 mounts vps, smtp, dkim)."""

from __future__ import annotations

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The collection is imported as ansible_collections.penguinmails.vps.* through the link in ./collections.
sys.path.insert(0, os.path.join(REPO, "collections"))
sys.path.insert(0, REPO)

from tests.support.ansible_run import ensure_collection_link  # noqa: E402
from tests.support.openbao import OpenBao  # noqa: E402

ensure_collection_link()

# Lab fixtures (OpenBao with audit, BIND9, Hostwinds simulator, lab hosts) live with the lab.
pytest_plugins = ["tests.lab.fixtures"]


@pytest.fixture(scope="session")
def openbao():
    """A running OpenBao dev server with the KV v2 mounts of DESIGN.md."""
    with OpenBao() as server:
        server.enable_kv()
        yield server


@pytest.fixture()
def fresh_openbao():
    """A private OpenBao for tests that seal or otherwise break the server."""
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
