"""Reports the crash matrix's size with the results, so a shrunken matrix shows in every run."""

from __future__ import annotations

import pytest

CELL = "test_crash_matrix.py::test_crash_and_restart["


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    outcomes = {outcome: sum(1 for report in terminalreporter.stats.get(outcome, ())
                             if getattr(report, "when", "call") == "call" and CELL in report.nodeid)
                for outcome in ("passed", "failed")}
    if any(outcomes.values()):
        terminalreporter.write_line(f"crash matrix: {sum(outcomes.values())} cells run, {outcomes['passed']} passed, "
                                    f"{outcomes['failed']} failed")
