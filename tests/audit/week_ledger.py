"""A week of trading for the monitoring report's checklist, equity and per-day figures.

Seven lifecycles over four UTC days (the third empty), written through the engine's own writer
with the facts the service records (sample_ledger._Builder):

  day    id  letter  mode    symbol  story                                                final
  12-01  1   K       smart   AAPL    fill 10 @ 100.02 (stop 99.00), the stop trails up    CLOSED  +9.80
                                     to 101.00 and is hit
  12-01  2   L       smart   MSFT    fill 5 @ 200.10 (stop 198.00), target 204.30 hit     CLOSED  +21.00
  12-02  3   M       smart   TSLA    the broker rejects the entry                         FAILED (refused)
  12-02  4   N       smart   NVDA    fill 20 @ 100.30: slippage 0.30 %, flattened 100.00  FLATTENED −6.00
  12-02  5   Q       legacy  CRWD    fill 10 @ 536.00: slippage 0.22 %, flattened 535.50  FLATTENED −5.00
  12-04  6   O       smart   AMD     fill 50 @ 150.03, validated at R/R 1.94, exits rest  EXITS_PLACED
  12-04  7   P       smart   META    the entry never reached the broker                   FAILED (error)
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sample_ledger import LEDGER_ID, Sample, _Builder

from engine.core.domain import Leg, Mode, client_order_id
from engine.ledger import Ledger, OrderUpdate, Writes

DAY1 = datetime(2026, 12, 1, 14, 30, tzinfo=timezone.utc)
DAY2 = DAY1 + timedelta(days=1)
DAY4 = DAY1 + timedelta(days=3)
S = timedelta(seconds=1)


def build_week(ledger: Ledger) -> Sample:
    sample = Sample(ledger.url, ledger)
    b = _Builder(ledger, sample)

    t = DAY1
    k = b.open("K", t, Mode.SMART, "100.05", symbol="AAPL", side="buy", qty=10, price="100.00", stop="99.00")
    b.submitted("K", k, t)
    b.filled("K", k, t + 2 * S, ("10", "100.02"))
    b.passed("K", k, t + 2 * S, "0.000200", "99.00", "102.06", "2.0000")
    b.exits("K", k, t + 3 * S)
    b.step("K", k, "stop_moved", t + timedelta(minutes=30), exit_stop="101.00", stop_was="99.00",
           stop_reason="trailing", high_water="101.50")
    # The engine's own r_multiple measures from the moved stop, which is beyond the fill: none.
    b.exit_filled("K", k, t + timedelta(hours=1), "101.00", "9.80", None, leg=Leg.STOP)

    t = DAY1 + timedelta(minutes=10)
    lc = b.open("L", t, Mode.SMART, "200.20", symbol="MSFT", side="buy", qty=5, price="200.00", stop="198.00")
    b.submitted("L", lc, t)
    b.filled("L", lc, t + S, ("5", "200.10"))
    b.passed("L", lc, t + S, "0.000500", "198.00", "204.30", "2.0000")
    b.exits("L", lc, t + 2 * S)
    b.exit_filled("L", lc, t + timedelta(hours=2), "204.30", "21.00", "2.0000")

    t = DAY2
    m = b.open("M", t, Mode.SMART, "250.25", symbol="TSLA", side="buy", qty=4, price="250.00", stop="245.00")
    refused = OrderUpdate(client_order_id(LEDGER_ID, "sig-M", Leg.ENTRY), "rejected", final=True)
    b.step("M", m, "rejected", t + S, source="stream", writes=Writes(updates=[refused]),
           reject_reason="broker rejected the entry (rejected)")

    t = DAY2 + timedelta(minutes=5)
    n = b.open("N", t, Mode.SMART, "100.10", symbol="NVDA", side="buy", qty=20, price="100.00", stop="98.00")
    b.submitted("N", n, t)
    b.filled("N", n, t + S, ("20", "100.30"))
    b.step("N", n, "guards_failed", t + S, writes=b.flatten_intent(n), slippage="0.003000", exit_stop="98.00",
           exit_target="104.90", reward_risk="2.0000", reject_reason="slippage 0.30% > max 0.10%")
    b.flattened("N", n, t + 2 * S, "100.00", "-6.00", "-0.1305")

    t = DAY2 + timedelta(minutes=15)
    q = b.open("Q", t, Mode.LEGACY, None, symbol="CRWD", side="buy", qty=10, price="534.82", stop="529.47",
               target="536.87")
    b.submitted("Q", q, t)
    b.filled("Q", q, t + S, ("10", "536.00"))
    b.step("Q", q, "guards_failed", t + S, writes=b.flatten_intent(q), slippage="0.002206", exit_stop="529.47",
           exit_target="536.87", reward_risk="0.1332",
           reject_reason="slippage 0.22% > max 0.10%; reward/risk 0.13 < min 2.00")
    b.flattened("Q", q, t + 2 * S, "535.50", "-5.00", "-0.0766")

    t = DAY4
    o = b.open("O", t, Mode.SMART, "150.15", symbol="AMD", side="buy", qty=50, price="150.00", stop="148.50")
    b.submitted("O", o, t)
    b.filled("O", o, t + S, ("50", "150.03"))
    b.passed("O", o, t + S, "0.000200", "148.50", "153.00", "1.9411")
    b.exits("O", o, t + 2 * S)

    t = DAY4 + timedelta(minutes=10)
    p = b.open("P", t, Mode.SMART, "80.08", symbol="META", side="buy", qty=3, price="80.00", stop="79.00")
    b.step("P", p, "rejected", t + 10 * S, reject_reason="the entry never reached the broker in time")
    return sample
