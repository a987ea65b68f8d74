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

Slowest files first. Under pytest-xdist with ``--dist loadfile`` (make test) the whole files are handed out in
collection order, and by default xdist re-sorts them by their number of tests - which put the long lab files with
one to four tests (the slicing, leak-scan, certificate-migration, tarball tests) last, where one of them keeps one
worker busy long after the other ran out of work. So the files are ordered slowest first (the longest-processing-
time-first rule) by the seconds in ``tests/support/durations_by_file.tsv`` (the format of the output above; after a
whole ``make test`` refresh it with ``cp tests/output/durations_by_file.tsv tests/support/``), a file not listed
there counted as UNLISTED_SECONDS (integration) or 1 s (unit), and xdist's own re-sorting is turned off. The order
of the tests inside a file is kept. Without xdist nothing is reordered.
"""

from __future__ import annotations

import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUTPUT_DIR = os.path.join(REPO, "tests", "output")
PHASES = ("setup", "call", "teardown")
FILE_SECONDS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "durations_by_file.tsv")
UNLISTED_SECONDS = 60.0


def file_seconds(path=FILE_SECONDS):
    """{file (relative to the checkout): seconds} from a durations_by_file.tsv ({} when there is none)."""
    seconds = {}
    try:
        with open(path) as handle:
            for line in handle:
                fields = line.rstrip("\n").split("\t")
                if len(fields) == 4 and fields[0] != "seconds":
                    seconds[fields[3]] = float(fields[0])
    except (OSError, ValueError):
        return {}
    return seconds


def slowest_files_first(items, seconds):
    """``items`` reordered by whole files, slowest first (stable: ties and the tests inside a file keep their order)."""
    files = {}
    for item in items:
        files.setdefault(item.nodeid.split("::", 1)[0], []).append(item)

    def cost(path):
        if path in seconds:
            return seconds[path]
        return 1.0 if path.startswith("tests/unit/") else UNLISTED_SECONDS

    order = sorted(files, key=lambda path: -cost(path))  # sorted() is stable
    return [item for path in order for item in files[path]]


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
    if getattr(config, "workerinput", None) is None:
        # Only the process that sees every report writes: the xdist controller, or pytest itself without xdist.
        config.pluginmanager.register(Durations(config), "penguinmails-durations")
        # xdist's controller hands out whole files in the workers' collection order (below), not by test count.
        config.option.loadscopereorder = False


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    if getattr(config, "workerinput", None) is not None:  # an xdist worker: every worker orders alike
        items[:] = slowest_files_first(items, file_seconds())
