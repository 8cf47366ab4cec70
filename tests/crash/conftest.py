"""Reports the crash matrix's size with the results, so a shrunken matrix shows in every run."""

from __future__ import annotations

import pytest

FAMILIES = {
    "crash matrix": "test_crash_matrix.py::test_crash_and_restart[",
    "crash matrix, market moves while down": "test_crash_market_moves.py::test_crash_then_the_market_moves[",
    "random kills": "test_crash_random_kills.py::test_random_kill_while_the_market_moves[",
    "random kills, emulated stop": "test_crash_random_kills.py::test_random_kill_while_an_emulated_stop_fires[",
}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for family, cell in FAMILIES.items():
        outcomes = {outcome: sum(1 for report in terminalreporter.stats.get(outcome, ())
                                 if getattr(report, "when", "call") == "call" and cell in report.nodeid)
                    for outcome in ("passed", "failed", "xfailed", "xpassed")}
        if any(outcomes.values()):
            terminalreporter.write_line(
                f"{family}: {sum(outcomes.values())} cells run, {outcomes['passed']} passed, "
                f"{outcomes['failed']} failed, {outcomes['xfailed']} xfailed, {outcomes['xpassed']} xpassed")
