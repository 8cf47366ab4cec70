"""Issue 15: the command line for an operator at a 100-column terminal: `--version`, an unreachable
venue in one line, a reader that goes away (`| head`) without a traceback, bad `--state` named,
`ledger list` / `show` with one clock and money to the tick, every `--help` within 100 columns,
`demo --database-url`, and progress on stderr for what is slow (the demo's lines are checked in
tests/service/test_service_cli.py, which plays it anyway).

The ledger is tests/audit's sample (nine lifecycles, one of every outcome), on SQLite.
"""

from __future__ import annotations

import argparse
import io
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from harness import SMARTEXEC, migrated_ledger, product_environment, sqlite_url

from engine.cli import main, progress
from engine.cli.main import build_parser
from engine.cli.text import amount, price

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "audit"))  # the auditor suite's sample ledger
from sample_ledger import build

WIDTH = 100
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sample_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("sample")
    with migrated_ledger(sqlite_url(folder)) as ledger:
        build(ledger)
    yield sqlite_url(folder)


def out_of(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def too_wide(text: str) -> list[str]:
    return [line for line in text.splitlines() if len(line) > WIDTH]


def test_version_is_the_installed_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"smartexec {version}\n"


def test_run_against_a_venue_nobody_listens_on_exits_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = subprocess.run([*SMARTEXEC, "run", "--venue", f"http://127.0.0.1:{port}", "--database-url",
                           sqlite_url(tmp_path)], cwd=tmp_path, env=product_environment(), capture_output=True,
                          text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"smartexec: venue http://127.0.0.1:{port} unreachable: connection refused\n"
    assert not (tmp_path / "ledger.db").exists()  # refused before anything was migrated


@pytest.mark.parametrize("command", [["ledger", "show", "sig-E"], ["ledger", "export", "--table", "transitions"]])
def test_a_reader_that_goes_away_ends_the_command_quietly(sample_url: str, tmp_path: Path,
                                                          command: list[str]) -> None:
    """`smartexec … | head -1` where head has read its line and gone before the rest is written."""
    process = subprocess.Popen([*SMARTEXEC, *command, "--database-url", sample_url], cwd=tmp_path,
                               env=product_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    errors: list[bytes] = []
    reader = threading.Thread(target=lambda: errors.append(process.stderr.read()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    process.stdout.close()  # gone before the command has written a byte: its first write fails
    assert process.wait(60) == 1
    reader.join(10)
    assert errors == [b""]


def test_an_unknown_state_names_the_field_and_the_valid_states(sample_url: str,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert out_of(capsys, "ledger", "list", "--state", "filled,BOGUS", "--database-url", sample_url) == (
        2, "", "smartexec: --state: unknown state 'BOGUS'; valid: PENDING, LIMIT_SUBMITTED, PARTIALLY_FILLED, "
               "CANCEL_REQUESTED, CANCELED, FAILED, FILLED, VALIDATED, REJECTED, EXITS_PLACED, REPROTECTING, "
               "EMULATING, EMULATED_EXIT, FLATTENED, CLOSED\n")
    code, out, _ = out_of(capsys, "ledger", "list", "--state", "flattened", "--database-url", sample_url)
    assert (code, out.splitlines()[-1]) == (0, "2 lifecycle(s)")  # a known state in any case is fine


def test_ledger_list_fits_100_columns_with_what_became_of_each_below_it(sample_url: str,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = out_of(capsys, "ledger", "list", "--database-url", sample_url)
    assert (code, err, too_wide(out)) == (0, "", [])
    assert out.splitlines()[:2] + out.splitlines()[10:13] == [
        "id  signal  symbol  side  qty  mode    state         created (UTC)",
        "--  ------  ------  ----  ---  ------  ------------  -----------------------",
        " 5  sig-E   CRWD    buy    10  legacy  FLATTENED     2026-11-25 14:30:00.000",
        "    filled 10 @ 536.00  slippage 0.221%  R/R 0.1332  P&L -5.00  R -0.0766  reason: slippage 0.22% >",
        "    max 0.10%; reward/risk 0.13 < min 2.00",
    ]


def test_ledger_show_one_clock_money_to_the_tick_within_100_columns(sample_url: str,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = out_of(capsys, "ledger", "show", "sig-E", "--database-url", sample_url)
    assert (code, err, too_wide(out)) == (0, "", [])
    lines = out.splitlines()
    assert lines[:8] == [
        "lifecycle   5  signal sig-E  (legacy)",
        "signal      buy 10 CRWD @ 534.82  stop 529.47  target 536.87",
        "state       FLATTENED  after 5 transition(s)",
        "entry       limit - (market)  filled 10 @ 536.00  slippage 0.221%",
        "exits       stop 529.47  target 536.87  R/R 0.1332",
        "outcome     exit 535.50  P&L -5.00  R -0.0766",
        "reason      slippage 0.22% > max 0.10%; reward/risk 0.13 < min 2.00",
        "times (UTC) created 2026-11-25 14:30:00.000  updated 2026-11-25 14:30:02.000",
    ]
    # Every heading with a time names the one zone; no time carries a zone of its own.
    assert [line.split("  ")[0] for line in lines if "(UTC)" in line] == ["times (UTC) created 2026-11-25 14:30:00.000",
                                                                         "seq", "at (UTC)"]
    assert "Z " not in out and "+00:00  " not in out
    assert lines[lines.index("Orders") + 1:lines.index("Orders") + 5] == [
        "order  leg      side  type    tif  qty  limit  stop  status  filled  avg price",
        "-----  -------  ----  ------  ---  ---  -----  ----  ------  ------  ---------",
        "en1    entry    buy   market  day   10  -      -     filled      10     536.00",
        "      client sx-t3stl3dg-sig-E-en1  broker b-E-en  updated 2026-11-25 14:30:01.000",
    ]
    assert lines[lines.index("Fills") + 3] == "2026-11-25 14:30:01.000  x-E-1         en1    entry      5  535.90"
    # A stored fact longer than the line wraps under its transition.
    assert "     exit_stop=529.47, exit_target=536.87, reject_reason=slippage 0.22% > max 0.10%; reward/risk" in lines


def test_money_is_padded_to_the_tick_and_never_rounded() -> None:
    assert [price(Decimal(v)) for v in ("123.8", "88", "0.5", "410.3583", "1234.5")] == \
        ["123.80", "88.00", "0.5000", "410.3583", "1,234.50"]
    assert [amount(Decimal(v)) for v in ("-1.0", "48.2", "0.125")] == ["-1.00", "48.20", "0.125"]
    assert price(None) == "-" and amount(None, "n/a") == "n/a"


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _commands(child, (*path, name))


def test_every_help_fits_100_columns(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", str(WIDTH))
    commands = list(_commands(build_parser()))
    assert len(commands) >= 15 and ("ledger", "export") in commands
    for command in commands:
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        assert too_wide(capsys.readouterr().out) == [], command


def test_demo_takes_a_sqlite_database_url_and_still_the_old_database_option(
        capsys: pytest.CaptureFixture[str]) -> None:
    from engine.cli.main import _demo_file

    assert out_of(capsys, "demo", "--database-url", "postgresql://u@db/x") == (
        2, "", "smartexec: --database-url: the demo recreates a SQLite file: expected sqlite:///PATH, was "
               "'postgresql://u@db/x'\n")
    parse = build_parser().parse_args
    assert _demo_file(parse(["demo", "--database-url", "sqlite:////tmp/d.db"])) == "/tmp/d.db"
    assert _demo_file(parse(["demo", "--database", "old.db"])) == "old.db"
    assert _demo_file(parse(["demo"])) == "smartexec-demo.db"


def test_a_slow_step_says_what_it_does_on_stderr_and_a_quick_one_says_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    said: list[str] = []
    noted = threading.Event()
    monkeypatch.setattr(progress, "note", lambda text: (said.append(text), noted.set()))
    with progress.slow("report: drawing the charts", after=0.01):
        assert noted.wait(10)
    with progress.slow("quick", after=60):
        pass
    assert said == ["report: drawing the charts…"]


def test_an_export_counts_its_rows_on_stderr_every_so_many(capsys: pytest.CaptureFixture[str]) -> None:
    import csv

    out = io.StringIO()
    rows = progress.CountingRows(out, "ledger export fills", every=2)
    csv.writer(rows).writerows([["id"], ["1"], ["2"], ["3"], ["4"], ["5"]])  # the header, then five rows
    assert out.getvalue() == "id\r\n1\r\n2\r\n3\r\n4\r\n5\r\n"
    assert capsys.readouterr().err == "smartexec: ledger export fills: 2 rows written\n" \
                                      "smartexec: ledger export fills: 4 rows written\n"


def test_an_export_to_a_pipe_writes_only_the_csv(sample_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = out_of(capsys, "ledger", "export", "--table", "lifecycles", "--database-url", sample_url)
    assert (code, err) == (0, "")
    assert out.splitlines()[0].startswith("id,") and len(out.splitlines()) == 10
