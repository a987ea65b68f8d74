# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The documents state what the code does (issue 21): the AWX schedules of docs/awx/configure_awx.yml in
docs/awx.md, and the KV history retention of roles/vault_setup in docs/operations.md."""

from __future__ import annotations

import os
import re

import yaml

from tests.support.ansible_run import REPO


def read(path):
    with open(os.path.join(REPO, path)) as handle:
        return handle.read()


def one_line(text):
    """Markdown text with its line breaks folded, so a phrase may wrap."""
    return re.sub(r"\s+", " ", text)


def awx_schedules():
    """``[(playbook, rrule)]`` of the schedules configure_awx.yml creates (template name -> its playbook)."""
    play = yaml.safe_load(read("docs/awx/configure_awx.yml"))[0]
    templates = dict((item["name"], item["playbook"]) for item in play["vars"]["awx_job_templates"])
    return [(templates[item["template"]][:-len(".yml")], item["rrule"]) for item in play["vars"]["awx_schedules"]]


def phrase(rrule):
    """How docs/awx.md words a schedule: ``daily at HH:MM UTC`` or ``hourly at N minutes past the hour``."""
    match = re.fullmatch(r"DTSTART:\d{8}T(\d\d)(\d\d)\d\dZ RRULE:FREQ=(DAILY|HOURLY);INTERVAL=1", rrule)
    assert match, "a schedule this test cannot word yet: %s" % rrule
    hour, minute, freq = match.groups()
    if freq == "DAILY":
        return "daily at %s:%s UTC" % (hour, minute)
    if int(minute) == 0:
        return "hourly on the hour"
    return "hourly at %d minute%s past the hour" % (int(minute), "" if int(minute) == 1 else "s")


def test_phrases():
    assert phrase("DTSTART:20260101T030000Z RRULE:FREQ=DAILY;INTERVAL=1") == "daily at 03:00 UTC"
    assert phrase("DTSTART:20260101T000500Z RRULE:FREQ=HOURLY;INTERVAL=1") == "hourly at 5 minutes past the hour"
    assert phrase("DTSTART:20260101T000000Z RRULE:FREQ=HOURLY;INTERVAL=1") == "hourly on the hour"


def test_awx_doc_states_every_schedule_of_configure_awx():
    schedules = awx_schedules()
    assert {name for name, _rrule in schedules} >= {"rotate_all", "backup"}
    doc = one_line(read("docs/awx.md"))
    for playbook, rrule in schedules:
        stated = "`%s` %s" % (playbook, phrase(rrule))
        assert stated in doc, "docs/awx.md does not say %r (configure_awx.yml: %s)" % (stated, rrule)
    # No other frequency is claimed for a scheduled playbook.
    for playbook, rrule in schedules:
        for claim in re.findall(r"`%s` ((?:daily|hourly|weekly)[^,.;)]*)" % re.escape(playbook), doc):
            assert claim.startswith(phrase(rrule)), "docs/awx.md: `%s` %s, but configure_awx.yml: %s" % (playbook, claim, rrule)


def test_operations_doc_states_the_kv_retention_of_vault_setup():
    defaults = yaml.safe_load(read("roles/vault_setup/defaults/main.yml"))
    kept = int(defaults["vault_setup_max_versions"])
    doc = one_line(read("docs/operations.md"))
    assert "`vault_setup_max_versions` (default %d)" % kept in doc
    # Every "KV keeps N versions" / "keeps the newest ... (N) versions" names the role's number.
    for claim in re.findall(r"KV keeps[^.|]*?\(?(\d+)\)? versions", doc):
        assert int(claim) == kept, "docs/operations.md says KV keeps %s versions; vault_setup keeps %d" % (claim, kept)
    assert re.search(r"KV keeps[^.|]*versions", doc), "the schedule table no longer says what KV keeps"
