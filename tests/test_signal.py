"""A malformed signal is refused with the field named; nothing reaches the ledger."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

from engine.cli import main
from engine.core.domain import Leg, Side, Signal, client_order_id, ledger_prefix
from engine.core.errors import InvalidSignal
from engine.ledger import Ledger
from engine.ledger import database as db

GOOD: dict[str, Any] = {"signal_id": "crwd-1", "symbol": "CRWD", "side": "buy", "qty": 10, "price": "534.82",
                        "stop": "529.47"}


def test_a_good_signal_parses_to_decimals() -> None:
    s = Signal.parse(GOOD)
    assert (s.symbol, s.side, s.qty, s.price, s.stop, s.target) == ("CRWD", Side.BUY, D(10), D("534.82"),
                                                                     D("529.47"), None)


def test_floats_become_their_shortest_decimal() -> None:
    assert Signal.parse({**GOOD, "price": 534.82}).price == D("534.82")


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"symbol": None}, "symbol", "is required"),
        ({"symbol": "crwd!"}, "symbol", "not a ticker"),
        ({"signal_id": ""}, "signal_id", "is required"),
        ({"signal_id": "a b"}, "signal_id", "letters"),
        ({"qty": 0}, "qty", "greater than zero"),
        ({"qty": -5}, "qty", "greater than zero"),
        ({"qty": "1.5"}, "qty", "whole number"),
        ({"qty": None}, "qty", "is required"),
        ({"price": float("nan")}, "price", "finite"),
        ({"price": "NaN"}, "price", "finite"),
        ({"price": -1}, "price", "greater than zero"),
        ({"price": 0}, "price", "greater than zero"),
        ({"price": "abc"}, "price", "expected a number"),
        ({"price": True}, "price", "expected a number"),
        ({"stop": "540"}, "stop", "below the price"),
        ({"side": "sell", "stop": "520"}, "stop", "above the price"),
        ({"target": "500"}, "target", "above the price"),
        ({"side": "hold"}, "side", "buy or sell"),
        ({"side": None}, "side", "buy or sell"),
    ],
)
def test_bad_input_names_the_field(change: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(InvalidSignal) as caught:
        Signal.parse({**GOOD, **change})
    assert caught.value.field == field
    assert reason in caught.value.reason


def test_client_order_ids_are_deterministic_per_ledger_signal_leg_and_attempt() -> None:
    assert client_order_id("k3x9q0ab", "crwd-1", Leg.ENTRY) == "sx-k3x9q0ab-crwd-1-en1"
    assert client_order_id("k3x9q0ab", "crwd-1", Leg.FLATTEN, 2) == "sx-k3x9q0ab-crwd-1-fl2"
    # Another ledger on the same account never reuses this one's ids for the same signal.
    assert client_order_id("00000001", "crwd-1", Leg.ENTRY) != client_order_id("k3x9q0ab", "crwd-1", Leg.ENTRY)
    assert client_order_id("k3x9q0ab", "crwd-1", Leg.ENTRY).startswith(ledger_prefix("k3x9q0ab"))
    assert len(client_order_id("x" * 8, "x" * 64, Leg.TAKE_PROFIT, 999)) <= 128  # Alpaca's limit


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--qty", "0"], "qty: must be greater than zero"),
        (["--price", "NaN"], "price: must be a finite number"),
        (["--stop", "540"], "stop: must be below the price"),
        (["--side", "hold"], "side: must be buy or sell"),
    ],
)
def test_a_bad_signal_on_the_command_line_is_refused_and_nothing_is_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    """Prevents a malformed signal from reaching the inbox that a running engine consumes."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    db.upgrade(url)
    ledger = Ledger(url)
    try:
        ledger.post_signal(GOOD)  # already recorded: must survive untouched
        before = ledger.pending_signals()
        good_flags = {"--signal-id": "crwd-2", "--symbol": "CRWD", "--side": "buy", "--qty": "10",
                      "--price": "534.82", "--stop": "529.47"}
        argv = ["submit", "--database-url", url]
        for name, value in {**good_flags, **dict(zip(flags[::2], flags[1::2]))}.items():
            argv += [name, value]
        assert main(argv) == 2
        assert message in capsys.readouterr().err
        assert ledger.pending_signals() == before
    finally:
        ledger.close()
