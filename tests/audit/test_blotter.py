"""The trade blotter (engine.audit.blotter) and `smartexec ledger trades`: one row per lifecycle, exact."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal as D

import pytest
from harness import sqlite_only
from sample_ledger import Sample
from week_ledger import build_week

from engine.audit import LifecycleFilter
from engine.audit.blotter import Trade, trades
from engine.cli import main
from engine.ledger import Ledger
from engine.ledger.schema import lifecycles


def utc(day: int, hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, second, tzinfo=timezone.utc)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_blotter_has_one_exact_row_per_lifecycle(sample: Sample) -> None:
    with sample.ledger.engine.connect() as conn:
        rows = trades(conn)
    fields = dict(account="default", side="buy")
    assert rows == [
        # R = P&L / (|entry - stop| x qty): A 110.60 / (5.53 x 10), B -196.00 / (1.96 x 100)
        Trade(1, "sig-A", symbol="CRWD", qty=D("10"), opened_at=utc(24, 14, 30), closed_at=utc(24, 16, 30),
              entry=D("535.00"), exit=D("546.06"), pnl=D("110.60"), r_multiple=D("2.0000"), state="CLOSED",
              reason=None, **fields),
        Trade(2, "sig-B", symbol="AAPL", qty=D("100"), opened_at=utc(24, 14, 40), closed_at=utc(24, 15, 40),
              entry=D("199.96"), exit=D("198.00"), pnl=D("-196.00"), r_multiple=D("-1.0000"), state="CLOSED",
              reason=None, **fields),
        Trade(3, "sig-C", symbol="MSFT", qty=D("5"), opened_at=utc(24, 14, 50), closed_at=utc(24, 14, 51, 1),
              entry=None, exit=None, pnl=None, r_multiple=None, state="CANCELED", reason="fill timeout", **fields),
        Trade(4, "sig-D", symbol="TSLA", qty=D("4"), opened_at=utc(24, 15, 0), closed_at=utc(24, 15, 0, 1),
              entry=None, exit=None, pnl=None, r_multiple=None, state="FAILED",
              reason="broker rejected the entry (rejected)", **fields),
        # -5.00 / (6.53 x 10) = -0.07657, floored as the ledger's ratios are
        Trade(5, "sig-E", symbol="CRWD", qty=D("10"), opened_at=utc(25, 14, 30), closed_at=utc(25, 14, 30, 2),
              entry=D("536.00"), exit=D("535.50"), pnl=D("-5.00"), r_multiple=D("-0.0766"), state="FLATTENED",
              reason="slippage 0.22% > max 0.10%; reward/risk 0.13 < min 2.00", **fields),
        Trade(6, "sig-F", symbol="NVDA", qty=D("20"), opened_at=utc(25, 14, 35), closed_at=utc(25, 17, 35),
              entry=D("100.05"), exit=D("104.20"), pnl=D("83.00"), r_multiple=D("2.0243"), state="CLOSED",
              reason=None, **fields),
        Trade(7, "sig-G", symbol="AMD", qty=D("50"), opened_at=utc(25, 14, 45), closed_at=utc(25, 14, 45, 3),
              entry=D("150.03"), exit=D("150.00"), pnl=D("-1.50"), r_multiple=D("-0.0197"), state="FLATTENED",
              reason="broker rejected the exits: insufficient qty 50 available", **fields),
        Trade(8, "sig-H", account="default", symbol="GOOG", side="sell", qty=D("10"), opened_at=utc(25, 14, 55),
              closed_at=None, entry=D("169.83"), exit=None, pnl=None, r_multiple=None, state="EXITS_PLACED",
              reason=None),
        Trade(9, "sig-J", symbol="META", qty=D("3"), opened_at=utc(27, 14, 30), closed_at=utc(27, 14, 30, 10),
              entry=None, exit=None, pnl=None, r_multiple=None, state="FAILED",
              reason="the entry never reached the broker in time", **fields),
    ]


@sqlite_only
def test_the_blotter_takes_the_filters_of_ledger_list(sample: Sample) -> None:
    with sample.ledger.engine.connect() as conn:
        def ids(**which: object) -> list[int]:
            return [t.lifecycle_id for t in trades(conn, LifecycleFilter(**which))]  # type: ignore[arg-type]

        assert ids(symbol="crwd") == [1, 5]
        assert ids(states=["flattened", "CLOSED"], mode="smart") == [1, 2, 7]
        assert ids(since=utc(25, 0, 0), until=utc(26, 0, 0)) == [5, 6, 7, 8]
        assert ids(signal_id="sig-H") == [8]


@sqlite_only
def test_r_is_measured_from_the_stop_the_guards_judged_not_the_moved_one(ledger: Ledger) -> None:
    build_week(ledger)
    with ledger.engine.connect() as conn:
        k = trades(conn, LifecycleFilter(signal_id="sig-K"))[0]
        stored = conn.execute(lifecycles.select().where(lifecycles.c.signal_id == "sig-K")).mappings().one()
    # The trailing stop moved to 101.00 before it was hit; the risk taken was 100.02 - 99.00 per share.
    assert (stored["exit_stop"], stored["r_multiple"]) == (D("101.00"), None)
    assert (k.entry, k.exit, k.pnl, k.r_multiple) == (D("100.02"), D("101.00"), D("9.80"), D("0.9607"))


@sqlite_only
def test_ledger_trades_as_csv(sample: Sample, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "ledger", "trades", "--format", "csv", "--symbol", "CRWD", "--database-url", sample.url)
    assert code == 0
    assert out.splitlines() == [
        "lifecycle_id,signal_id,account,symbol,side,qty,opened_at,closed_at,entry,exit,pnl,r_multiple,state,reason",
        "1,sig-A,default,CRWD,buy,10,2026-11-24T14:30:00+00:00,2026-11-24T16:30:00+00:00,535.00,546.06,110.60,"
        "2.0000,CLOSED,",
        "5,sig-E,default,CRWD,buy,10,2026-11-25T14:30:00+00:00,2026-11-25T14:30:02+00:00,536.00,535.50,-5.00,"
        "-0.0766,FLATTENED,slippage 0.22% > max 0.10%; reward/risk 0.13 < min 2.00",
    ]


@sqlite_only
def test_ledger_trades_as_json(sample: Sample, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "ledger", "trades", "--format", "json", "--state", "EXITS_PLACED,canceled",
                       "--database-url", sample.url)
    assert code == 0
    assert json.loads(out) == [
        {"lifecycle_id": 3, "signal_id": "sig-C", "account": "default", "symbol": "MSFT", "side": "buy", "qty": "5",
         "opened_at": "2026-11-24T14:50:00+00:00", "closed_at": "2026-11-24T14:51:01+00:00", "entry": None,
         "exit": None, "pnl": None, "r_multiple": None, "state": "CANCELED", "reason": "fill timeout"},
        {"lifecycle_id": 8, "signal_id": "sig-H", "account": "default", "symbol": "GOOG", "side": "sell",
         "qty": "10", "opened_at": "2026-11-25T14:55:00+00:00", "closed_at": None, "entry": "169.83", "exit": None,
         "pnl": None, "r_multiple": None, "state": "EXITS_PLACED", "reason": None},
    ]


@sqlite_only
def test_ledger_trades_as_a_table_fits_100_columns(sample: Sample, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "ledger", "trades", "--database-url", sample.url)
    assert code == 0
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert lines[0].split() == ["id", "opened", "(UTC)", "closed", "(UTC)", "symbol", "side", "qty", "entry", "exit",
                                "P&L", "R", "state"]
    assert lines[2].split() == ["1", "11-24", "14:30Z", "11-24", "16:30Z", "CRWD", "buy", "10", "535.00", "546.06",
                                "110.60", "2.00", "CLOSED"]
    flattened = next(n for n, line in enumerate(lines) if line.startswith(" 5 "))
    assert lines[flattened + 1] == "      slippage 0.22% > max 0.10%; reward/risk 0.13 < min 2.00"
    assert lines[-1] == "9 lifecycle(s), 5 closed, realised P&L -8.90 (gross: the ledger records no fees)"


@sqlite_only
def test_ledger_trades_refuses_an_unknown_state(sample: Sample, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "ledger", "trades", "--state", "closed,done", "--database-url", sample.url)
    assert (code, out) == (2, "")  # the same refusal as `ledger list --state`
    assert err.startswith("smartexec: --state: unknown state 'DONE'; valid: PENDING, LIMIT_SUBMITTED, ")
