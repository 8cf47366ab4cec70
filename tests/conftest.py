"""Shared fixtures: real ledgers on SQLite files and on the PostgreSQL server, migrated by Alembic
(see tests/harness/ledgers.py); and the crash matrix's size in the summary."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.ledger import Ledger

pytest.register_assert_rewrite("harness")  # its helpers assert: show the values when they fail
from harness import BACKENDS, database, migrated_ledger  # noqa: E402  (after the rewrite hook)


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database on each backend (not migrated)."""
    with database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def ledger(database_url: str) -> Iterator[Ledger]:
    with migrated_ledger(database_url) as ledger:
        yield ledger


# The crash matrix's size with the results, per backend, so a shrunken matrix shows in every run.
# Here rather than in tests/crash/: under pytest-xdist the controller, which writes the summary,
# collects nothing and so never loads a conftest.py below this one.
CRASH_FAMILIES = {
    "crash matrix": "test_crash_matrix.py::test_crash_and_restart[",
    "crash matrix, market moves while down": "test_crash_market_moves.py::test_crash_then_the_market_moves[",
    "random kills": "test_crash_random_kills.py::test_random_kill_while_the_market_moves[",
    "random kills, emulated stop": "test_crash_random_kills.py::test_random_kill_while_an_emulated_stop_fires[",
}
BACKEND_NAMES = [backend if isinstance(backend, str) else str(backend.values[0]) for backend in BACKENDS]


# CI runs every crash family on SQLite, and on PostgreSQL the random kills, the resume cells and
# the crash matrix's first cell at each crash point (every durable boundary once: 20 of its 59
# cells); the rest repeats on PostgreSQL only with SMART_EXECUTOR_CRASH_PG=all (each cell starts
# several `smartexec` processes; all of them would cost CI about 10 minutes more, past its 30).
PG_OPT_IN = ("test_crash_market_moves.py::", "test_crash_matrix.py::test_crash_free_reference[")
MATRIX_CELL = "test_crash_matrix.py::test_crash_and_restart[postgresql-"
PG_ALL = os.environ.get("SMART_EXECUTOR_CRASH_PG", "").strip().lower() == "all"


def _opted_out(items: list[pytest.Item]) -> list[pytest.Item]:
    if PG_ALL:
        return []
    left, points = [], set()
    for item in items:
        if "postgresql" not in item.nodeid:
            continue
        if any(part in item.nodeid for part in PG_OPT_IN):
            left.append(item)
        elif MATRIX_CELL in item.nodeid:
            point = item.nodeid.rsplit("-", 1)[1].rstrip("]")  # ids are scenario-point (tests/crash)
            if point in points:
                left.append(item)
            points.add(point)
    return left


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    left = _opted_out(items)
    if left:
        config.hook.pytest_deselected(items=left)
        chosen = {id(item) for item in left}
        items[:] = [item for item in items if id(item) not in chosen]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    outcomes = ("passed", "failed", "xfailed", "xpassed")
    for family, cell in CRASH_FAMILIES.items():
        for backend in BACKEND_NAMES:
            of_cell = re.compile(rf"{re.escape(cell)}(.*-)?{backend}[-\]]")
            counts = {outcome: sum(1 for report in terminalreporter.stats.get(outcome, ())
                                   if getattr(report, "when", "call") == "call" and of_cell.search(report.nodeid))
                      for outcome in outcomes}
            if not any(counts.values()) and backend == "postgresql" and not PG_ALL \
                    and any(part in cell for part in PG_OPT_IN):
                terminalreporter.write_line(f"{family} [{backend}]: not run (SMART_EXECUTOR_CRASH_PG=all runs it)")
            elif any(counts.values()):
                subset = (" (one per crash point; SMART_EXECUTOR_CRASH_PG=all runs every cell)"
                          if family == "crash matrix" and backend == "postgresql" and not PG_ALL else "")
                terminalreporter.write_line(
                    f"{family} [{backend}]: {sum(counts.values())} cells run, {counts['passed']} passed, "
                    f"{counts['failed']} failed, {counts['xfailed']} xfailed, {counts['xpassed']} xpassed{subset}")
