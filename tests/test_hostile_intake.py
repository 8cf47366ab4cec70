"""Hostile input through every intake: the command line's flags, its JSON lines, raw inbox rows
consumed by a running engine, and the Python API.

One table of bad signals (each with the field its error must name). Through every intake each is
refused naming that field, with exit code 2 from the command line; nothing is recorded beyond the
refusal, nothing reaches the venue, and a good signal handed over right after it still trades.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import PRICE, STOP, SYMBOL, Rig, a_signal, migrated_ledger, resting_venue, sqlite_url, until
from sqlalchemy import text

from engine.broker.ratelimit import RateLimiter
from engine.cli import main
from engine.core.domain import Signal, parse_intake
from engine.core.errors import InvalidSignal
from engine.core.lifecycle import State
from engine.ledger import Ledger
from engine.service.runner import consume_inbox
from engine.sim import Venue

GOOD: dict[str, Any] = {"signal_id": "good", "symbol": SYMBOL, "side": "buy", "qty": "10", "price": str(PRICE),
                        "stop": str(STOP)}
DEEP = "[" * 100_000 + "]" * 100_000

# (a change to GOOD, or a whole payload when not a dict, and the field the error must name)
HOSTILE: list[tuple[str, Any, str]] = [
    ("an array", [GOOD], "signal"),
    ("a string", "buy CRWD", "signal"),
    ("null", None, "signal"),
    ("a number", 42, "signal"),
    ("a misspelt field", {"stop_loss": "99.00"}, "stop_loss"),
    ("a field in the wrong case", {"Price": "100.00"}, "Price"),
    ("Arabic-Indic digits", {"qty": "١٠"}, "qty"),
    ("an underscore in a number", {"qty": "1_0"}, "qty"),
    ("a ligature symbol", {"symbol": "ﬀ"}, "symbol"),
    ("twelve decimals", {"price": "100.123456789012"}, "price"),
    ("three decimals above $1", {"price": "100.001"}, "price"),
    ("five decimals below $1", {"price": "0.00001", "stop": None}, "price"),
    ("a stop with three decimals", {"stop": "99.001"}, "stop"),
    ("qty 10^400", {"qty": "1" + "0" * 400}, "qty"),
    ("a price of 1e309", {"price": "1e309"}, "price"),
    ("a price of 1e30", {"price": "1e30"}, "price"),
    ("an exponent", {"price": "1E2"}, "price"),
    ("hexadecimal", {"price": "0x64"}, "price"),
    ("an empty price", {"price": ""}, "price"),
    ("a blank price", {"price": "   "}, "price"),
    ("a negative price", {"price": "-100"}, "price"),
    ("a zero price", {"price": "0"}, "price"),
    ("NaN", {"price": "NaN"}, "price"),
    ("Infinity", {"price": "Infinity"}, "price"),
    ("a price above the bound", {"price": "2000000"}, "price"),
    ("a boolean price", {"price": True}, "price"),
    ("a list price", {"price": [100]}, "price"),
    ("an object price", {"price": {"value": 100}}, "price"),
    ("a zero qty", {"qty": "0"}, "qty"),
    ("a negative qty", {"qty": "-3"}, "qty"),
    ("a fractional qty", {"qty": "1.5"}, "qty"),
    ("a qty above the bound", {"qty": "2000000"}, "qty"),
    ("no qty", {"qty": None}, "qty"),
    ("no symbol", {"symbol": ""}, "symbol"),
    ("an injected symbol", {"symbol": "AAPL; DROP"}, "symbol"),
    ("a symbol too long", {"symbol": "TOOLONGSYMBOL"}, "symbol"),
    ("a numeric symbol", {"symbol": 123}, "symbol"),
    ("no signal id", {"signal_id": ""}, "signal_id"),
    ("a space in the id", {"signal_id": "a b"}, "signal_id"),
    ("an id too long", {"signal_id": "x" * 65}, "signal_id"),
    ("an accented id", {"signal_id": "évian"}, "signal_id"),
    ("a line break in the id", {"signal_id": "forged\nSmart executor rejected x"}, "signal_id"),
    ("a NUL in the id", {"signal_id": "a\x00b"}, "signal_id"),
    ("a numeric id", {"signal_id": 7}, "signal_id"),
    ("an unknown side", {"side": "hold"}, "side"),
    ("a full-width side", {"side": "ｂｕｙ"}, "side"),
    ("a stop above a buy", {"stop": "101.00"}, "stop"),
    ("a target below a buy", {"target": "99.50"}, "target"),
    ("a time in words", {"created_at": "yesterday"}, "created_at"),
    ("a time with no zone", {"created_at": "2026-11-24T15:00:00"}, "created_at"),
    ("an expiry before the signal", {"created_at": "2026-11-24T15:00:00Z", "expires_at": "2026-11-24T14:00:00Z"},
     "expires_at"),
    ("an unknown mode", {"mode": "aggressive"}, "mode"),
]
IDS = [name for name, _, _ in HOSTILE]


def payload(change: Any, signal_id: str = "bad") -> Any:
    if not isinstance(change, dict):
        return change
    merged = {**GOOD, "signal_id": signal_id, **change}
    return {key: value for key, value in merged.items() if value is not None or key in ("qty",)}


def test_the_table_is_long_enough() -> None:
    assert len(HOSTILE) >= 40 and len(set(IDS)) == len(IDS)


# --- the Python API -------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "change", "field"), HOSTILE, ids=IDS)
def test_the_python_api_refuses_naming_the_field(name: str, change: Any, field: str) -> None:
    with pytest.raises(InvalidSignal) as caught:
        parse_intake(payload(change))
    assert caught.value.field == field
    if field != "mode":
        with pytest.raises(InvalidSignal):
            Signal.parse(payload(change))
    assert parse_intake(payload({}, "good-after"))[0].signal_id == "good-after"


# --- the command line: flags and JSON lines --------------------------------------------------------


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[tuple[str, Ledger]]:
    url = sqlite_url(tmp_path)
    with migrated_ledger(url) as ledger:
        yield url, ledger


def submit_lines(url: str, text: str, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    return main(["submit", "--database-url", url])


FLAGGABLE = [(name, change, field) for name, change, field in HOSTILE
             if isinstance(change, dict) and field in GOOD and all(isinstance(v, str) for v in change.values())]


@pytest.mark.parametrize(("name", "change", "field"), FLAGGABLE, ids=[name for name, _, _ in FLAGGABLE])
def test_the_flags_refuse_naming_the_field_and_queue_nothing(
        name: str, change: dict[str, str], field: str, queue: tuple[str, Ledger],
        capsys: pytest.CaptureFixture[str]) -> None:
    url, ledger = queue
    flags = [item for key, value in payload(change).items() for item in (f"--{key.replace('_', '-')}", str(value))]
    assert main(["submit", *flags, "--database-url", url]) == 2
    assert f"smartexec: {field}: " in capsys.readouterr().err
    assert ledger.pending_signals() == []
    good = [item for key, value in payload({}, "good-after").items() for item in (f"--{key.replace('_', '-')}", value)]
    assert main(["submit", *good, "--database-url", url]) == 0
    assert [entry.payload["signal_id"] for entry in ledger.pending_signals()] == ["good-after"]


def test_an_unknown_flag_is_refused(queue: tuple[str, Ledger], capsys: pytest.CaptureFixture[str]) -> None:
    url, ledger = queue
    with pytest.raises(SystemExit) as caught:
        main(["submit", "--signal-id", "x", "--stop-loss", "99", "--database-url", url])
    assert caught.value.code == 2 and "--stop-loss" in capsys.readouterr().err
    assert ledger.pending_signals() == []


LINES = [*[(name, json.dumps(payload(change)), field) for name, change, field in HOSTILE],
         # The bad line follows a good one: the error names its line.
         ("not JSON", '{"signal_id": ', "stdin line 2"),
         ("nested a hundred thousand deep", DEEP, "stdin line 2"),
         ("a bare NaN", '{"signal_id": "bad", "symbol": "AAPL", "side": "buy", "qty": 10, "price": NaN}',
          "stdin line 2"),
         ("a JSON number with an exponent", json.dumps(GOOD).replace('"100.00"', "1e2"), "price"),
         # Python would read the last price and SQL's json_extract on the stored text the first.
         ("a key named twice", json.dumps(GOOD)[:-1] + ', "price": "90.00"}', "stdin line 2")]


@pytest.mark.parametrize(("name", "line", "field"), LINES, ids=[name for name, _, _ in LINES])
def test_json_lines_refuse_naming_the_field_and_queue_nothing(
        name: str, line: str, field: str, queue: tuple[str, Ledger], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    url, ledger = queue
    good = json.dumps(payload({}, "good-after"))
    assert submit_lines(url, f"{good}\n{line}\n", monkeypatch) == 2  # one bad line refuses the batch
    err = capsys.readouterr().err
    assert f"smartexec: {field}: " in err
    assert ledger.pending_signals() == []
    assert submit_lines(url, good + "\n", monkeypatch) == 0
    assert [entry.payload["signal_id"] for entry in ledger.pending_signals()] == ["good-after"]


# --- raw inbox rows consumed by a running engine -----------------------------------------------------


@pytest.fixture
def venue() -> Iterator[Venue]:
    with resting_venue() as venue:
        yield venue


def test_a_running_engine_refuses_every_hostile_row_and_trades_the_good_one_after_each(
        venue: Venue, tmp_path: Path) -> None:
    """Prevents one bad inbox row from stopping the consumer for good (it used to die on a price of
    1e30 or a row that is not an object, and the row stayed first in line after a restart)."""
    with migrated_ledger(sqlite_url(tmp_path)) as ledger:
        rig = Rig(venue, ledger)
        now = venue.clock.now()
        bad_ids, good_ids = [], []
        for n, (_, change, _) in enumerate(HOSTILE):
            bad_ids.append(ledger.post_signal(payload(change, f"bad-{n}"), at=now))  # as any poster may
            good_ids.append(ledger.post_signal(a_signal(f"good-{n}", qty=1).as_facts(), at=now))

        async def scenario() -> None:
            async with rig.running() as executor:
                executor.workers.limiter = RateLimiter(per_minute=60_000, burst=200)  # the venue's own limit is off
                consumer = asyncio.create_task(consume_inbox(executor, interval=0.05))
                try:
                    await until(lambda: ledger.pending_signals() == [], "every inbox row to be handled", timeout=60)
                    await until(lambda: all(ledger.find_by_signal(f"good-{n}") is not None
                                            and ledger.find_by_signal(f"good-{n}").state is State.LIMIT_SUBMITTED
                                            for n in range(len(HOSTILE))), "every good entry to rest", timeout=60)
                finally:
                    consumer.cancel()

        asyncio.run(scenario())
        for (name, _, field), entry_id in zip(HOSTILE, bad_ids):
            entry = ledger.inbox_entry(entry_id)
            assert entry["lifecycle_id"] is None and entry["error"].startswith(f"{field}: "), (name, entry["error"])
        assert all(ledger.inbox_entry(i)["error"] is None for i in good_ids)
        entries = {ledger.orders_of(lc.id)[0]["client_order_id"] for lc in ledger.load_open()}
        assert {sent.client_order_id for sent in venue.submissions()} == entries  # only the good ones
        assert len(ledger.load_open()) == len(HOSTILE)  # nothing recorded for a refused row


def test_an_inbox_row_naming_a_key_twice_is_refused_and_the_next_row_is_served(venue: Venue, tmp_path: Path) -> None:
    """Prevents a row that no reader may trust (Python would read the last of two equal keys, SQL the
    first) from being traded, or from stopping the consumer: written straight into the table, as a
    poster with database access may, it is refused with its reason."""
    with migrated_ledger(sqlite_url(tmp_path)) as ledger:
        rig = Rig(venue, ledger)
        now = venue.clock.now()
        twice = json.dumps(payload({}, "twice"))[:-1] + ', "qty": "1000"}'
        with ledger.engine.begin() as conn:
            bad = conn.execute(text("INSERT INTO inbox (signal_id, payload, received_at) VALUES ('twice', :p, :t) "
                                    "RETURNING id"), {"p": twice, "t": now.isoformat(sep=" ")}).scalar_one()
        good = ledger.post_signal(a_signal("after-twice", qty=1).as_facts(), at=now)

        async def scenario() -> None:
            async with rig.running() as executor:
                consumer = asyncio.create_task(consume_inbox(executor, interval=0.05))
                try:
                    await until(lambda: ledger.pending_signals() == [], "both inbox rows to be handled", timeout=30)
                finally:
                    consumer.cancel()

        asyncio.run(scenario())
        assert ledger.inbox_entry(bad)["error"] == (
            "payload: not one JSON value (the key 'qty' appears twice in one object)")
        assert ledger.find_by_signal("twice") is None
        assert ledger.inbox_entry(good)["error"] is None
        assert ledger.find_by_signal("after-twice") is not None
        assert [sent.client_order_id for sent in venue.submissions()] == [
            ledger.orders_of(ledger.find_by_signal("after-twice").id)[0]["client_order_id"]]
