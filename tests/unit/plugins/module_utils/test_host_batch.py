# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""host_batch: every tenant of a host in one call - one read and one atomic write per file, failures per entry."""

from __future__ import annotations

import os
import pwd

import pytest

from ansible_collections.penguinmails.vps.plugins.module_utils import authorized_keys as ak
from ansible_collections.penguinmails.vps.plugins.module_utils import host_batch, ssh_keys

ME = pwd.getpwuid(os.getuid()).pw_name


def key():
    return ssh_keys.generate_keypair("ed25519", comment="t").public_key


@pytest.fixture()
def keyfile(tmp_path):
    return str(tmp_path / "authorized_keys")


def entry(name, path, keys=(), **extra):
    item = dict(name=name, user=ME, path=path, keys=list(keys), marker="penguinmails:%s" % name, serial=1)
    item.update(extra)
    return item


def run_batch(tmp_path, entries, principals=(), **kwargs):
    calls = []
    results, principal_results, diffs = host_batch.apply(entries, principals, run=calls.append, lock_dir=str(tmp_path / "lock"),
                                                         **kwargs)
    return results, principal_results, diffs, calls


def test_every_tenant_of_the_file_in_one_write(tmp_path, keyfile, monkeypatch):
    writes = []
    real = ak.KeyFile.write

    def counting(self, text):
        writes.append(self.path)
        return real(self, text)

    monkeypatch.setattr(ak.KeyFile, "write", counting)
    keys = {name: key() for name in ("a:admin", "b:admin", "c:admin")}
    results, _p, _d, _c = run_batch(tmp_path, [entry(name, keyfile, [k]) for name, k in keys.items()])
    assert writes == [keyfile]
    assert all(results[name]["changed"] and not results[name]["failed"] for name in keys)
    text = open(keyfile).read()
    for name, public in keys.items():
        assert public.split()[1] in text and "penguinmails-serial penguinmails:%s 1" % name in text
    assert oct(os.stat(keyfile).st_mode & 0o777) == "0o600"
    # a second run changes nothing and writes nothing
    writes.clear()
    results, _p, _d, _c = run_batch(tmp_path, [entry(name, keyfile, [k]) for name, k in keys.items()])
    assert writes == [] and not any(r["changed"] for r in results.values())


def test_a_bad_entry_fails_alone(tmp_path, keyfile):
    good = key()
    results, _p, _d, _c = run_batch(tmp_path, [entry("bad:admin", keyfile, ["ssh-ed25519 not-base64!"]), entry("good:admin", keyfile, [good])])
    assert results["bad:admin"]["failed"] and "keys[0]" in results["bad:admin"]["msg"]
    assert not results["good:admin"]["failed"] and results["good:admin"]["changed"]
    assert good.split()[1] in open(keyfile).read()


def test_a_lower_serial_is_stale_and_changes_nothing(tmp_path, keyfile):
    new, old = key(), key()
    run_batch(tmp_path, [entry("a:admin", keyfile, [new], serial=5)])
    before = open(keyfile).read()
    results, _p, _d, _c = run_batch(tmp_path, [entry("a:admin", keyfile, [old], serial=4), entry("b:admin", keyfile, [key()], serial=1)])
    assert results["a:admin"]["stale"] and not results["a:admin"]["changed"] and results["a:admin"]["serial"] == 5
    after = open(keyfile).read()
    assert new.split()[1] in after and old.split()[1] not in after and after != before  # b was added


def test_grace_keys_each_keep_their_own_expiry(tmp_path, keyfile):
    current, first, second = key(), key(), key()
    grace = [dict(key=second, expires="2099-01-02T03:04:00Z"), dict(key=first, expires="2099-01-01T03:04:00Z")]
    results, _p, _d, _c = run_batch(tmp_path, [entry("a:tenant", keyfile, [current], grace_keys=grace)])
    text = open(keyfile).read()
    assert 'expiry-time="209901020304Z"' in text and 'expiry-time="209901010304Z"' in text
    assert len(results["a:tenant"]["expiring"]) == 2


def test_check_mode_writes_nothing(tmp_path, keyfile):
    results, _p, _d, _c = run_batch(tmp_path, [entry("a:admin", keyfile, [key()])], check_mode=True)
    assert results["a:admin"]["changed"] and not os.path.exists(keyfile)


def test_diff_is_one_per_file(tmp_path, keyfile):
    _r, _p, diffs, _c = run_batch(tmp_path, [entry("a:admin", keyfile, [key()]), entry("b:admin", keyfile, [key()])], diff=True)
    assert len(diffs) == 1 and diffs[0]["before"] == "" and diffs[0]["after_header"] == keyfile


def test_a_missing_user_fails_or_is_ignored(tmp_path, keyfile):
    results, _p, _d, calls = run_batch(tmp_path, [
        dict(name="x:tenant", user="pm-no-such-user-x", keys=[key()], marker="penguinmails:x:tenant"),
        dict(name="y:legacy", user="pm-no-such-user-y", keys=[], marker="penguinmails:y:tenant", missing_user="ignore"),
    ])
    assert results["x:tenant"]["failed"] and "does not exist" in results["x:tenant"]["msg"]
    assert not results["y:legacy"]["failed"] and results["y:legacy"]["user_missing"]
    assert calls == []


def test_a_created_user_goes_through_useradd(tmp_path):
    _r, _p, _d, calls = run_batch(tmp_path, [dict(name="n:tenant", user="pm-new-user", keys=[key()], marker="penguinmails:n:tenant",
                                                  manage_user=True, owner="n")], check_mode=True)
    assert calls == []  # check mode creates nothing
    with pytest.raises(KeyError):
        pwd.getpwnam("pm-new-user")


def test_principals_block_and_file(tmp_path):
    directory = tmp_path / "principals"
    directory.mkdir()
    shared = str(directory / "root")
    with open(shared, "w") as handle:
        handle.write("# BEGIN penguinmails admin certificates for other\npenguinmails-admin\n# END penguinmails admin certificates for other\n")
    items = [dict(name="a:admin-principal", path=shared, kind="block", marker="penguinmails admin certificates for a",
                  principal="penguinmails-admin"),
             dict(name="a:tenant-principal", path=str(directory / "tenant-a"), kind="file", principal="tenant-a")]
    _r, principals, _d, _c = run_batch(tmp_path, [], items)
    assert all(p["changed"] and not p["failed"] for p in principals.values())
    text = open(shared).read()
    assert "for other" in text and "# BEGIN penguinmails admin certificates for a\npenguinmails-admin\n# END" in text
    assert open(str(directory / "tenant-a")).read() == "tenant-a\n"
    _r, principals, _d, _c = run_batch(tmp_path, [], items)
    assert not any(p["changed"] for p in principals.values())
    for item in items:
        item["state"] = "absent"
    run_batch(tmp_path, [], items)
    assert "for a" not in open(shared).read() and "for other" in open(shared).read()
    assert not os.path.exists(str(directory / "tenant-a"))


def test_an_entry_waits_for_its_principal(tmp_path, keyfile):
    """Certificate mode: a tenant's stored admin keys never leave before its principal is in place."""
    old = key()
    run_batch(tmp_path, [entry("a:admin", keyfile, [old])])
    missing = str(tmp_path / "no-such-dir" / "root")
    results, principals, _d, _c = run_batch(
        tmp_path, [entry("a:admin", keyfile, [], serial=2, requires=["a:admin-principal"])],
        [dict(name="a:admin-principal", path=missing, kind="block", marker="penguinmails admin certificates for a",
              principal="penguinmails-admin")])
    assert principals["a:admin-principal"]["failed"] and "not set up" in principals["a:admin-principal"]["msg"]
    assert results["a:admin"]["failed"] and "principals item a:admin-principal failed" in results["a:admin"]["msg"]
    assert old.split()[1] in open(keyfile).read()


def test_duplicate_names_are_refused(tmp_path, keyfile):
    with pytest.raises(ak.AuthorizedKeysError, match="used twice"):
        run_batch(tmp_path, [entry("a:admin", keyfile, [key()]), entry("a:admin", keyfile, [key()])])
