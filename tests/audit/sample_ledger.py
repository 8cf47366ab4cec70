"""A ledger with one lifecycle of every outcome, built through the engine's own writer.

Nine lifecycles over four UTC days (the third empty), each with the facts the service records:

  day        id  mode    symbol  story                                               final state
  11-24      A   smart   CRWD    fill 10 @ 535.00, exits, target hit at 546.06       CLOSED
  11-24      B   smart   AAPL    fill 100 @ 199.96, exits, stopped out at 198.00     CLOSED
  11-24      C   smart   MSFT    rests, times out, cancel confirmed                  CANCELED (missed)
  11-24      D   smart   TSLA    broker rejects the entry                            FAILED
  11-25      E   legacy  CRWD    market fill 5 @ 535.90 + 5 @ 536.10, guards fail,   FLATTENED
                                 flattened at 535.50
  11-25      F   legacy  NVDA    market fill 20 @ 100.05, exits, target hit 104.20   CLOSED
  11-25      G   smart   AMD     fill 50 @ 150.03, broker refuses the exits,         FLATTENED
                                 flattened at 150.00
  11-25      H   smart   GOOG    short 10 @ 170.00 filled at 169.83, exits placed    EXITS_PLACED
  11-27      J   smart   META    never reached the broker in time                    FAILED
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal as D
from typing import Any

from engine.core.domain import Leg, Mode, Side, Signal, client_order_id
from engine.core.lifecycle import Lifecycle
from engine.ledger import FillRecord, Ledger, OrderIntent, OrderUpdate, Writes

LEDGER_ID = "t3stl3dg"  # a ledger identity for orders that never reach a venue

DAY1 = datetime(2026, 11, 24, 14, 30, tzinfo=timezone.utc)
DAY2 = DAY1 + timedelta(days=1)
DAY4 = DAY1 + timedelta(days=3)


@dataclass
class Sample:
    url: str
    ledger: Ledger
    ids: dict[str, int] = field(default_factory=dict)  # letter -> lifecycle id
    rows: dict[tuple[str, str], int] = field(default_factory=dict)  # (letter, trigger) -> transition id


class _Builder:
    def __init__(self, ledger: Ledger, sample: Sample) -> None:
        self.ledger, self.sample = ledger, sample
        self.current: dict[str, Lifecycle] = {}  # each letter's lifecycle as last committed

    def open(self, letter: str, at: datetime, mode: Mode, limit: str | None, **signal: Any) -> Lifecycle:
        sig = Signal.parse({"signal_id": f"sig-{letter}", **signal})
        coid = client_order_id(LEDGER_ID, sig.signal_id, Leg.ENTRY)
        intent = (OrderIntent(coid, Leg.ENTRY, sig.side, "limit", "day", sig.qty, limit_price=D(limit)) if limit
                  else OrderIntent(coid, Leg.ENTRY, sig.side, "market", "day", sig.qty))
        facts = {"limit_price": D(limit)} if limit else {}
        lc, created = self.ledger.open_lifecycle(sig, mode=mode, extended_hours=False, at=at, facts=facts,
                                                 writes=Writes(intents=[intent]))
        assert created
        self.sample.ids[letter] = lc.id
        self.current[letter] = lc
        self._note(letter, "created")
        return lc

    def step(self, letter: str, lc: Lifecycle, trigger: str, at: datetime, source: str = "engine",
             writes: Writes | None = None, **facts: Any) -> None:
        self.current[letter], _ = self.ledger.record(self.current[letter], trigger, facts, at=at, source=source,
                                                     writes=writes)
        self._note(letter, trigger)

    def _note(self, letter: str, trigger: str) -> None:
        self.sample.rows[(letter, trigger)] = self.ledger.history(self.sample.ids[letter])[-1].id

    # --- composite steps with the order rows the service writes alongside -------------------------

    def submitted(self, letter: str, lc: Lifecycle, at: datetime) -> None:
        lc = self.current[letter]
        coid = client_order_id(LEDGER_ID, lc.signal_id, Leg.ENTRY)
        self.step(letter, lc, "submitted", at, entry_deadline=at + timedelta(seconds=60),
                  writes=Writes(updates=[OrderUpdate(coid, "new", broker_order_id=f"b-{letter}-en")]))

    def filled(self, letter: str, lc: Lifecycle, at: datetime, *executions: tuple[str, str]) -> None:
        lc = self.current[letter]
        coid = client_order_id(LEDGER_ID, lc.signal_id, Leg.ENTRY)
        qty = sum((D(q) for q, _ in executions), D(0))
        avg = sum((D(q) * D(p) for q, p in executions), D(0)) / qty
        fills = [FillRecord(coid, f"x-{letter}-{n}", D(q), D(p), at) for n, (q, p) in enumerate(executions, 1)]
        update = OrderUpdate(coid, "filled", filled_qty=qty, filled_avg_price=avg)
        self.step(letter, lc, "fill", at, source="stream", writes=Writes(updates=[update], fills=fills),
                  filled_qty=str(qty), filled_avg_price=str(avg.quantize(D("0.01"))), execution_id=f"x-{letter}-1")

    def exits(self, letter: str, lc: Lifecycle, at: datetime) -> None:
        """The OCO accepted: its take-profit (intended with guards_passed) and its stop leg."""
        lc = self.current[letter]
        coid = client_order_id(LEDGER_ID, lc.signal_id, Leg.TAKE_PROFIT)
        stop = OrderIntent(client_order_id(LEDGER_ID, lc.signal_id, Leg.STOP), Leg.STOP, Side(lc.side).opposite,
                           "stop", "gtc", lc.filled_qty, stop_price=lc.exit_stop)
        self.step(letter, lc, "exits_placed", at, broker_order_id=f"b-{letter}-tp", status="new",
                  writes=Writes(intents=[stop], updates=[OrderUpdate(coid, "new", broker_order_id=f"b-{letter}-tp")]))

    def passed(self, letter: str, lc: Lifecycle, at: datetime, slippage: str, stop: str, target: str,
               rr: str) -> None:
        lc = self.current[letter]
        coid = client_order_id(LEDGER_ID, lc.signal_id, Leg.TAKE_PROFIT)
        intent = OrderIntent(coid, Leg.TAKE_PROFIT, Side(lc.side).opposite, "limit", "gtc", lc.filled_qty,
                             limit_price=D(target), stop_price=D(stop))
        self.step(letter, lc, "guards_passed", at, writes=Writes(intents=[intent]), slippage=slippage,
                  exit_stop=stop, exit_target=target, reward_risk=rr)

    def exit_filled(self, letter: str, lc: Lifecycle, at: datetime, price: str, pnl: str, r: str,
                    leg: Leg = Leg.TAKE_PROFIT) -> None:
        lc = self.current[letter]
        coid = client_order_id(LEDGER_ID, lc.signal_id, leg)
        fill = FillRecord(coid, f"x-{letter}-exit", lc.filled_qty, D(price), at)
        update = OrderUpdate(coid, "filled", filled_qty=lc.filled_qty, filled_avg_price=D(price))
        self.step(letter, lc, "exit_filled", at, source="stream", writes=Writes(updates=[update], fills=[fill]),
                  exit_price=price, realized_pnl=pnl, r_multiple=r, exit_leg=leg.value)

    def flattened(self, letter: str, lc: Lifecycle, at: datetime, price: str, pnl: str, r: str) -> None:
        lc = self.current[letter]
        coid = client_order_id(LEDGER_ID, lc.signal_id, Leg.FLATTEN)
        fill = FillRecord(coid, f"x-{letter}-flat", lc.filled_qty, D(price), at)
        update = OrderUpdate(coid, "filled", broker_order_id=f"b-{letter}-fl", filled_qty=lc.filled_qty,
                             filled_avg_price=D(price))
        self.step(letter, lc, "flattened", at, source="stream", writes=Writes(updates=[update], fills=[fill]),
                  exit_price=price, realized_pnl=pnl, r_multiple=r)

    def flatten_intent(self, lc: Lifecycle) -> Writes:
        lc = self.current[lc.signal_id.removeprefix("sig-")]
        coid = client_order_id(LEDGER_ID, lc.signal_id, Leg.FLATTEN)
        return Writes(intents=[OrderIntent(coid, Leg.FLATTEN, Side(lc.side).opposite, "market", "day",
                                           lc.filled_qty)])


def build(ledger: Ledger) -> Sample:
    sample = Sample(ledger.url, ledger)
    b = _Builder(ledger, sample)
    s = timedelta(seconds=1)

    t = DAY1
    a = b.open("A", t, Mode.SMART, "535.09", symbol="CRWD", side="buy", qty=10, price="534.82", stop="529.47")
    b.submitted("A", a, t)
    b.filled("A", a, t + 3 * s, ("10", "535.00"))
    b.passed("A", a, t + 3 * s, "0.000337", "529.47", "546.06", "2.0000")
    b.exits("A", a, t + 4 * s)
    b.exit_filled("A", a, t + timedelta(hours=2), "546.06", "110.60", "2.0000")

    t = DAY1 + timedelta(minutes=10)
    bb = b.open("B", t, Mode.SMART, "200.10", symbol="AAPL", side="buy", qty=100, price="200.00", stop="198.00")
    b.submitted("B", bb, t)
    b.filled("B", bb, t + 2 * s, ("100", "199.96"))
    b.passed("B", bb, t + 2 * s, "-0.000200", "198.00", "203.88", "2.0000")
    b.exits("B", bb, t + 3 * s)
    b.exit_filled("B", bb, t + timedelta(hours=1), "198.00", "-196.00", "-1.0000", leg=Leg.STOP)

    t = DAY1 + timedelta(minutes=20)
    c = b.open("C", t, Mode.SMART, "400.20", symbol="MSFT", side="buy", qty=5, price="400.00", stop="396.00")
    b.submitted("C", c, t)
    b.step("C", c, "timeout", t + 60 * s, source="timer")
    b.step("C", c, "canceled", t + 61 * s, source="stream", reject_reason="fill timeout", status="canceled")

    t = DAY1 + timedelta(minutes=30)
    d = b.open("D", t, Mode.SMART, "250.13", symbol="TSLA", side="buy", qty=4, price="250.00", stop="245.00")
    refused = OrderUpdate(client_order_id(LEDGER_ID, "sig-D", Leg.ENTRY), "rejected", final=True)
    b.step("D", d, "rejected", t + s, source="stream", writes=Writes(updates=[refused]),
           reject_reason="broker rejected the entry (rejected)")

    t = DAY2
    e = b.open("E", t, Mode.LEGACY, None, symbol="CRWD", side="buy", qty=10, price="534.82", stop="529.47",
               target="536.87")
    b.submitted("E", e, t)
    b.filled("E", e, t + s, ("5", "535.90"), ("5", "536.10"))
    b.step("E", e, "guards_failed", t + s, writes=b.flatten_intent(e), slippage="0.002206", exit_stop="529.47",
           exit_target="536.87", reward_risk="0.1332",
           reject_reason="slippage 0.22% > max 0.10%; reward/risk 0.13 < min 2.00")
    b.flattened("E", e, t + 2 * s, "535.50", "-5.00", "-0.0766")

    t = DAY2 + timedelta(minutes=5)
    f = b.open("F", t, Mode.LEGACY, None, symbol="NVDA", side="buy", qty=20, price="100.00", stop="98.00",
               target="104.20")
    b.submitted("F", f, t)
    b.filled("F", f, t + s, ("20", "100.05"))
    b.passed("F", f, t + s, "0.000500", "98.00", "104.20", "2.0243")
    b.exits("F", f, t + 2 * s)
    b.exit_filled("F", f, t + timedelta(hours=3), "104.20", "83.00", "2.0243")

    t = DAY2 + timedelta(minutes=15)
    g = b.open("G", t, Mode.SMART, "150.08", symbol="AMD", side="buy", qty=50, price="150.00", stop="148.50")
    b.submitted("G", g, t)
    b.filled("G", g, t + s, ("50", "150.03"))
    b.passed("G", g, t + s, "0.000200", "148.50", "153.09", "2.0000")
    b.step("G", g, "exits_rejected", t + 2 * s, writes=b.flatten_intent(g),
           reject_reason="broker rejected the exits: insufficient qty 50 available")
    b.flattened("G", g, t + 3 * s, "150.00", "-1.50", "-0.0197")

    t = DAY2 + timedelta(minutes=25)
    h = b.open("H", t, Mode.SMART, "169.91", symbol="GOOG", side="sell", qty=10, price="170.00", stop="172.00",
               target="165.00")
    b.submitted("H", h, t)
    b.filled("H", h, t + s, ("10", "169.83"))
    b.passed("H", h, t + s, "0.001000", "172.00", "165.00", "2.2258")
    b.exits("H", h, t + 2 * s)

    t = DAY4
    j = b.open("J", t, Mode.SMART, "80.04", symbol="META", side="buy", qty=3, price="80.00", stop="79.00")
    b.step("J", j, "rejected", t + 10 * s, reject_reason="the entry never reached the broker in time")
    return sample
