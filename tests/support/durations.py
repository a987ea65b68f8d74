# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every test's duration in a file (a pytest plugin, registered by tests/conftest.py).

At the end of a session the controller (the only process under pytest-xdist that sees every worker's reports,
through pytest_runtest_logreport) writes, under tests/output/ (gitignored, removed by ``make clean``):

``durations.tsv``          one line per test, slowest first:
                           seconds (setup+call+teardown), setup, call, teardown, outcome, worker, nodeid
``durations_by_file.tsv``  one line per test file, slowest first: seconds (sum of its tests), tests, worker(s), file

Seconds are wall seconds with three decimals. ``outcome`` is passed, failed, skipped, xfailed, xpassed or error (a
setup or teardown that failed); ``worker`` is the pytest-xdist worker (gw0, gw1, ...) or ``main`` without xdist.
Each session overwrites both files: after ``make test`` they hold the whole suite, after a run of one file that file.
"""

from __future__ import annotations

import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUTPUT_DIR = os.path.join(REPO, "tests", "output")
PHASES = ("setup", "call", "teardown")


def _worker(report):
    worker = getattr(report, "worker_id", None)
    if not worker:
        node = getattr(report, "node", None)
        gateway = getattr(node, "gateway", None)
        worker = getattr(gateway, "id", None)
    return worker or "main"


def _outcome(phases):
    """One outcome per test from the reports of its phases (as pytest's summary counts them)."""
    call = phases.get("call")
    for when in ("setup", "teardown"):
        report = phases.get(when)
        if report is not None and report.failed:
            return "error"
    if call is not None:
        if hasattr(call, "wasxfail"):
            return "xpassed" if call.passed else "xfailed"
        return call.outcome
    setup = phases.get("setup")
    if setup is not None and setup.skipped:
        return "xfailed" if hasattr(setup, "wasxfail") else "skipped"
    return "unknown"


class Durations:
    def __init__(self, config):
        self.config = config
        self.written = False
        self.tests = {}  # nodeid -> {"setup": report, "call": report, "teardown": report}; insertion order kept

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report):
        self.tests.setdefault(report.nodeid, {})[report.when] = report

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session):
        if not self.tests:
            return
        rows = []
        for nodeid, phases in self.tests.items():
            seconds = {when: getattr(phases.get(when), "duration", 0.0) or 0.0 for when in PHASES}
            worker = _worker(next(iter(phases.values())))
            rows.append((sum(seconds.values()), seconds, _outcome(phases), worker, nodeid))
        rows.sort(key=lambda row: (-row[0], row[4]))
        files = {}
        for total, _seconds, _outcome_, worker, nodeid in rows:
            entry = files.setdefault(nodeid.split("::", 1)[0], [0.0, 0, set()])
            entry[0] += total
            entry[1] += 1
            entry[2].add(worker)
        os.makedirs(OUTPUT_DIR, exist_ok=True)
        with open(os.path.join(OUTPUT_DIR, "durations.tsv"), "w") as handle:
            handle.write("seconds\tsetup\tcall\tteardown\toutcome\tworker\tnodeid\n")
            for total, seconds, outcome, worker, nodeid in rows:
                handle.write("%.3f\t%.3f\t%.3f\t%.3f\t%s\t%s\t%s\n" % (
                    total, seconds["setup"], seconds["call"], seconds["teardown"], outcome, worker, nodeid))
        with open(os.path.join(OUTPUT_DIR, "durations_by_file.tsv"), "w") as handle:
            handle.write("seconds\ttests\tworkers\tfile\n")
            for path, (total, count, workers) in sorted(files.items(), key=lambda item: (-item[1][0], item[0])):
                handle.write("%.3f\t%d\t%s\t%s\n" % (total, count, ",".join(sorted(workers)), path))
        self.written = True

    def pytest_terminal_summary(self, terminalreporter):
        if self.written:
            terminalreporter.write_line("every test's duration: %s (per file: durations_by_file.tsv)"
                                        % os.path.relpath(os.path.join(OUTPUT_DIR, "durations.tsv")))


def pytest_configure(config):
    # Only the process that sees every report writes: the xdist controller, or pytest itself without xdist.
    if getattr(config, "workerinput", None) is None:
        config.pluginmanager.register(Durations(config), "penguinmails-durations")
