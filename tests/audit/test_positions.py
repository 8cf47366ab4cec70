"""`smartexec positions`: what each lifecycle holds, what protects it, and its unrealised P&L at
the last quote the ledger recorded, on ledgers the real engine wrote against the local venue.

Prices are the scenario files' (engine/sim/scenarios/*.toml); the expected values are worked out
by hand in each test's docstring.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal as D
from typing import Any

import pytest
from harness import API_KEY, API_SECRET, PRODUCT, Rig, scenario_venue, signal_of, sqlite_only

from engine.audit import read_engine
from engine.audit.positions import Position, open_positions
from engine.cli.main import main
from engine.core.lifecycle import State
from engine.ledger import Ledger

T0 = datetime(2024, 6, 12, 14, 15, tzinfo=timezone.utc)  # the scenarios' start, 10:15 New York time


@contextmanager
def engine_on(ledger: Ledger, *scenarios: str, **settings: Any) -> Iterator[Rig]:
    """The engine, with the product defaults changed by `settings`, on a venue playing `scenarios`."""
    with scenario_venue(*scenarios) as venue:
        rig = Rig(venue, ledger, replace(PRODUCT, **settings), poll_interval=PRODUCT.poll_interval, verify_after=0.2)
        rig.start()
        try:
            yield rig
        finally:
            rig.stop()


def positions_of(url: str) -> list[Position]:
    engine = read_engine(url)
    try:
        with engine.connect() as conn:
            return open_positions(conn)
    finally:
        engine.dispose()


def shown(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(list(args)) == 0
    return capsys.readouterr().out


# On both backends: the reads compare booleans and group fills, which SQLite and PostgreSQL type apart.
def test_a_protected_position_and_a_filling_one_valued_at_the_quote_each_entry_was_priced_on(
        ledger: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    """With SMART_EXECUTOR_LIMIT_AT_QUOTE on, each entry's created row records the quote it was
    priced against. AAPL: buy 10 at 187.50, the ask 187.48 caps the limit, filled at 187.48; the
    pair rests at the venue: stop 185.00 (the signal's), target 187.48 + 2 x 2.48 = 192.44.
    Valued at the bid 187.45: (187.45 - 187.48) x 10 = -0.30.
    MSFT: buy 100 at 410.40, capped at the ask 410.36 where only 40 are offered: 40 filled, the
    rest works (the ask runs away), no exits yet. At the bid 410.33: (410.33 - 410.36) x 40 = -1.20.
    META: short 25 at 480.10, the bid 480.05 raises the limit, filled at 480.05; stop 483.00,
    target 480.05 - 2 x 2.95 = 474.15. A short closes at the ask 480.09: (480.05 - 480.09) x 25 = -1.00.
    Slow market INTC: an entry resting unfilled holds nothing and is no position."""
    with engine_on(ledger, "clean_fill", "partial_then_stall", "short_clean_fill", "slow_market",
                   limit_at_quote=True) as rig:
        aapl = rig.settle(rig.submit(signal_of("clean_fill")), State.EXITS_PLACED)
        msft = rig.settle(rig.submit(signal_of("partial_then_stall")), State.PARTIALLY_FILLED)
        meta = rig.settle(rig.submit(signal_of("short_clean_fill")), State.EXITS_PLACED)
        rig.settle(rig.submit(signal_of("slow_market")), State.LIMIT_SUBMITTED)

        positions = positions_of(ledger.url)
        table = shown(capsys, "positions", "--database-url", ledger.url)
        as_json = json.loads(shown(capsys, "positions", "--format", "json", "--database-url", ledger.url))
        as_csv = shown(capsys, "positions", "--format", "csv", "--database-url", ledger.url)

    assert positions == [
        Position(aapl.id, "scenario-clean_fill", "default", "AAPL", "long", D(10), D("187.48"), D("185.00"),
                 D("192.44"), "stop+target at venue", D("187.45"), D("-0.30"), positions[0].opened_at,
                 "EXITS_PLACED", T0),
        Position(msft.id, "scenario-partial_then_stall", "default", "MSFT", "long", D(40), D("410.36"), None, None,
                 "UNPROTECTED (entry filling)", D("410.33"), D("-1.20"), positions[1].opened_at,
                 "PARTIALLY_FILLED", T0),
        Position(meta.id, "scenario-short_clean_fill", "default", "META", "short", D(25), D("480.05"), D("483.00"),
                 D("474.15"), "stop+target at venue", D("480.09"), D("-1.00"), positions[2].opened_at,
                 "EXITS_PLACED", T0),
    ]
    assert [p.opened_at >= T0 for p in positions] == [True, True, True]  # the fills' venue times
    assert table.splitlines() == [
        "ID  SIGNAL          SYMBOL  QTY   ENTRY    STOP  TARGET    LAST  UNREAL  PROTECTION",
        "--  --------------  ------  ---  ------  ------  ------  ------  ------  ---------------------------",
        f" {aapl.id}  scenario-clea…  AAPL     10  187.48  185.00  192.44  187.45   -0.30  stop+target at venue",
        f" {msft.id}  scenario-part…  MSFT     40  410.36       -       -  410.33   -1.20  UNPROTECTED (entry filling)",
        f" {meta.id}  scenario-shor…  META    -25  480.05  483.00  474.15  480.09   -1.00  stop+target at venue",
    ]
    assert max(len(line) for line in table.splitlines()) <= 100
    assert as_json[1] == {
        "lifecycle_id": msft.id, "signal_id": "scenario-partial_then_stall", "account": "default", "symbol": "MSFT",
        "side": "long", "qty": "40", "entry": "410.36", "stop": None, "target": None,
        "protection": "UNPROTECTED (entry filling)", "last_price": "410.33", "unrealised_pnl": "-1.20",
        "opened_at": positions[1].opened_at.isoformat(), "state": "PARTIALLY_FILLED",
        "last_price_at": "2024-06-12T14:15:00+00:00"}
    assert as_csv.splitlines()[0] == ("lifecycle_id,signal_id,account,symbol,side,qty,entry,stop,target,protection,"
                                      "last_price,unrealised_pnl,opened_at,state,last_price_at")
    assert as_csv.splitlines()[2].startswith(f"{msft.id},scenario-partial_then_stall,default,MSFT,long,40,410.36,,,"
                                             "UNPROTECTED (entry filling),410.33,-1.20,")


@sqlite_only
def test_after_hours_the_engine_holds_the_stop_and_no_quote_is_recorded(
        ledger: Ledger, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """17:00, 20 DKNG bought at 60.00 (stop 58.20): no broker stop works before 09:30, the engine
    emulates the pair. No entry setting read a quote and no stop moved, so the ledger holds no
    quote: price and P&L are unknown, shown as "-". With --venue the venue's latest quote values
    it: 15 s on, the bid is 58.60, (58.60 - 60.00) x 20 = -28.00."""
    with engine_on(ledger, "after_hours_stop", extended_hours=True) as rig:
        lc = rig.settle(rig.submit(signal_of("after_hours_stop")), State.EMULATING)
        positions = positions_of(ledger.url)
        table = shown(capsys, "positions", "--database-url", ledger.url)
        rig.venue.advance(15.0)
        monkeypatch.setenv("APCA_API_KEY_ID", API_KEY)  # the venue's keys, as for `smartexec run --venue`
        monkeypatch.setenv("APCA_API_SECRET_KEY", API_SECRET)
        at_venue = json.loads(shown(capsys, "positions", "--format", "json", "--venue", rig.venue.rest_url,
                                    "--database-url", ledger.url))

    assert [(p.lifecycle_id, p.qty, str(p.entry), p.stop, p.target, p.protection, p.last_price, p.unrealised_pnl,
             p.state) for p in positions] == [(lc.id, D(20), "60", D("58.20"), D("63.60"), "emulated by engine", None,
                                               None, "EMULATING")]
    assert table.splitlines()[2] == f" {lc.id}  scenario-afte…  DKNG     20  60.00  58.20   63.60     -       -  " \
                                    "emulated by engine"
    assert [(p["last_price"], p["unrealised_pnl"], p["last_price_at"], p["protection"]) for p in at_venue] == [
        ("58.60", "-28.00", "2024-06-12T21:00:15+00:00", "emulated by engine")]


@sqlite_only
def test_no_positions_on_an_empty_ledger(ledger: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    assert shown(capsys, "positions", "--database-url", ledger.url) == "no open positions\n"
    assert shown(capsys, "positions", "--format", "json", "--database-url", ledger.url) == "[]\n"
