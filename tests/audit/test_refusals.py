"""`smartexec refusals` and `ledger export --table refused_signals`: every signal a running engine
refused, with its time, account, field and reason, on a ledger the engine's inbox consumer wrote.

The rows are posted as any poster may (`Ledger.post_signal`; one written straight into the table
with a key named twice) and judged by the real consumer against the local venue; the venue's
clock is manual, so every recorded time is exact.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import datetime, timedelta, timezone

import pytest
from harness import Rig, a_signal, resting_venue, sqlite_only, until
from sqlalchemy import text

from engine.audit import read_engine
from engine.audit.refusals import Refusal, refused_signals
from engine.cli.main import main
from engine.ledger import Ledger
from engine.service.runner import consume_inbox

NOW = datetime(2024, 6, 12, 14, 0, tzinfo=timezone.utc)  # the resting venue's clock: 10:00 New York time
BAD_QTY = {"signal_id": "bad-qty", "symbol": "AAPL", "side": "buy", "qty": "ten", "price": "100.00"}
UNKNOWN = {"signal_id": "stop-loss", "symbol": "AAPL", "side": "buy", "qty": "5", "price": "100.00",
           "stop_loss": "99.00", "account": "alpha"}
TWICE = '{"price":"100.00","qty":"1","side":"buy","signal_id":"twice","symbol":"AAPL","qty":"1000"}'


def refused_by_a_running_engine(ledger: Ledger) -> None:
    """Five rows, a second apart: three the consumer refuses, one too old to trade, one traded."""
    ledger.post_signal(BAD_QTY, at=NOW - timedelta(seconds=4))
    ledger.post_signal(UNKNOWN, at=NOW - timedelta(seconds=3))
    with ledger.engine.begin() as conn:  # as a poster with database access may write it
        conn.execute(text("INSERT INTO inbox (signal_id, payload, received_at) VALUES ('twice', :p, :t)"),
                     {"p": TWICE, "t": (NOW - timedelta(seconds=2)).isoformat(sep=" ")})
    stale = a_signal("stale", qty=1, created_at=(NOW - timedelta(seconds=300)).isoformat()).as_facts()
    ledger.post_signal(stale, at=NOW - timedelta(seconds=1))
    ledger.post_signal(a_signal("good", qty=1).as_facts(), at=NOW)

    with resting_venue() as venue:
        rig = Rig(venue, ledger)

        async def consume() -> None:
            async with rig.running() as executor:
                consumer = asyncio.create_task(consume_inbox(executor, interval=0.05))
                try:
                    await until(lambda: ledger.pending_signals() == [], "every inbox row to be judged")
                finally:
                    consumer.cancel()

        asyncio.run(consume())


STALE_REASON = "signal is 300.0s old (older than SMART_EXECUTOR_SIGNAL_MAX_AGE 30s)"
BAD_QTY_REASON = "qty: expected a number (a plain ASCII decimal, no exponent), was 'ten'"
UNKNOWN_REASON = ("stop_loss: is not a signal field (the fields are signal_id, symbol, side, qty, price, stop, "
                  "target, created_at, expires_at, trail_pct, break_even, account)")


def canonical(payload: dict[str, str]) -> str:
    """The ledger's stored text of a posted payload (engine/ledger/codec.py: sorted keys, no spaces)."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))


@sqlite_only
def test_every_refusal_is_listed_with_its_time_account_field_and_reason(
        ledger: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    refused_by_a_running_engine(ledger)
    stale = ledger.find_by_signal("stale")
    assert stale is not None and stale.reject_reason == STALE_REASON

    engine = read_engine(ledger.url)
    try:
        with engine.connect() as conn:
            refusals = refused_signals(conn)
            since = refused_signals(conn, since=NOW - timedelta(seconds=2))
    finally:
        engine.dispose()

    [bad_qty, unknown, twice, too_old] = refusals
    assert bad_qty == Refusal("bad-qty", None, NOW - timedelta(seconds=4), BAD_QTY_REASON, canonical(BAD_QTY),
                              "inbox", "qty")
    # The account the row names, though the row was refused for another reason.
    assert unknown == Refusal("stop-loss", "alpha", NOW - timedelta(seconds=3), UNKNOWN_REASON, canonical(UNKNOWN),
                              "inbox", "stop_loss")
    # The stored text, as the records chain covers it: no JSON reader may trust this row.
    assert twice == Refusal("twice", None, NOW - timedelta(seconds=2),
                            "payload: not one JSON value (the key 'qty' appears twice in one object)", TWICE, "inbox",
                            "payload")
    assert (too_old.signal_id, too_old.account, too_old.received_at, too_old.reason, too_old.stage, too_old.field,
            too_old.lifecycle_id) == ("stale", "default", NOW, STALE_REASON, "engine", None, stale.id)
    assert json.loads(too_old.payload)["created_at"] == "2024-06-12T13:55:00+00:00"
    assert since == [twice, too_old]

    # The field has its column, so the reason loses its "field: " prefix there.
    assert run(capsys, ledger.url, "refusals").splitlines() == [
        "RECEIVED (UTC)       SIGNAL     ACCOUNT  STAGE   FIELD      REASON",
        "-------------------  ---------  -------  ------  ---------  -------------------------------------",
        "2024-06-12 13:59:56  bad-qty    -        inbox   qty        expected a number (a plain ASCII",
        "                                                            decimal, no exponent), was 'ten'",
        "2024-06-12 13:59:57  stop-loss  alpha    inbox   stop_loss  is not a signal field (the fields are",
        "                                                            signal_id, symbol, side, qty, price,",
        "                                                            stop, target, created_at, expires_at,",
        "                                                            trail_pct, break_even, account)",
        "2024-06-12 13:59:58  twice      -        inbox   payload    not one JSON value (the key 'qty'",
        "                                                            appears twice in one object)",
        "2024-06-12 14:00:00  stale      default  engine  -          signal is 300.0s old (older than",
        "                                                            SMART_EXECUTOR_SIGNAL_MAX_AGE 30s)",
    ]

    as_json = json.loads(run(capsys, ledger.url, "refusals", "--format", "json", "--since", "2024-06-12T13:59:58Z"))
    assert as_json == [
        {"signal_id": "twice", "account": None, "received_at": "2024-06-12T13:59:58+00:00",
         "reason": twice.reason, "payload": TWICE, "stage": "inbox", "field": "payload", "lifecycle_id": None},
        {"signal_id": "stale", "account": "default", "received_at": "2024-06-12T14:00:00+00:00",
         "reason": STALE_REASON, "payload": too_old.payload, "stage": "engine", "field": None,
         "lifecycle_id": stale.id}]

    exported = run(capsys, ledger.url, "ledger", "export", "--table", "refused_signals")
    assert exported == run(capsys, ledger.url, "refusals", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert [(r["signal_id"], r["account"], r["received_at"], r["stage"], r["field"], r["lifecycle_id"])
            for r in rows] == [
        ("bad-qty", "", "2024-06-12T13:59:56+00:00", "inbox", "qty", ""),
        ("stop-loss", "alpha", "2024-06-12T13:59:57+00:00", "inbox", "stop_loss", ""),
        ("twice", "", "2024-06-12T13:59:58+00:00", "inbox", "payload", ""),
        ("stale", "default", "2024-06-12T14:00:00+00:00", "engine", "", str(stale.id))]
    assert rows[2]["payload"] == TWICE


def run(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> str:
    """`smartexec ARGS --database-url URL`, in process; what it printed."""
    assert main([*args, "--database-url", url]) == 0
    return capsys.readouterr().out


@sqlite_only
def test_no_refusals_on_an_empty_ledger(ledger: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, ledger.url, "refusals") == "no refused signals\n"
    assert run(capsys, ledger.url, "refusals", "--format", "csv") == \
        "signal_id,account,received_at,reason,payload,stage,field,lifecycle_id\n"
