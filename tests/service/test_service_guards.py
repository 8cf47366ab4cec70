"""The post-fill guards, end to end: a fill that fails them is flattened at once, for exactly the
quantity filled, and the venue ends flat. P&L and R multiples are worked out by hand."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal as D

import pytest
from harness import Rig, rejections, signal_of, sqlite_only

from engine.core.domain import Leg, Mode

FLATTENED = ["FILLED", "REJECTED", "FLATTENED"]


def assert_flattened_at_market(rig: Rig, signal_id: str, *, qty: int, price: D) -> None:
    """One market order closed exactly `qty` at `price` and the venue holds nothing."""
    flatten = rig.venue.order(rig.coid(signal_id, Leg.FLATTEN))
    assert flatten is not None
    assert (flatten.type, flatten.side, flatten.qty) == ("market", "sell", qty)
    assert (flatten.status, flatten.filled_qty, flatten.filled_avg_price) == ("filled", qty, price)
    assert rig.venue.position(flatten.symbol) is None


# SMCI: signal 88.00, stop 87.00; the ask is 88.40 when the order arrives, the bid 88.30.
SLIPPAGE_CASES = {
    # The market entry fills at 88.40; exits from the signal: target 88.00 + 2 x 1.00 = 90.00,
    # so from the fill R/R = 1.60 / 1.40 = 1.14 fails as well.
    "legacy market entry": (Mode.LEGACY, {}, "slippage 0.45% > max 0.10%; reward/risk 1.14 < min 2.00",
                            D("90.00"), D("1.1428")),
    # A limit buffer wider than the slippage limit (88.00 x 1.005 = 88.44) lets the same fill
    # through; exits from the fill (target 88.40 + 2 x 1.40 = 91.20) pass: slippage alone refuses.
    "smart entry, wide buffer": (Mode.SMART, {"limit_buffer_regular": D("0.005")}, "slippage 0.45% > max 0.10%",
                                 D("91.20"), D("2.0000")),
}


@pytest.mark.parametrize("case", SLIPPAGE_CASES)
def test_slippage_rejection_flattens_the_filled_qty(
        make_rig: Callable[..., Rig], caplog: pytest.LogCaptureFixture, case: str) -> None:
    mode, settings, reason, target, reward_risk = SLIPPAGE_CASES[case]
    rig = make_rig("slippage_spike", **settings)
    lc = rig.settle(rig.submit(signal_of("slippage_spike"), mode=mode))

    assert rig.path(lc) == ["PENDING", "LIMIT_SUBMITTED", *FLATTENED]
    assert (lc.filled_qty, lc.filled_avg_price) == (10, D("88.40"))
    assert lc.slippage == D("0.004545")  # (88.40 - 88.00) / 88.00
    assert (lc.exit_stop, lc.exit_target, lc.reward_risk) == (D("87.00"), target, reward_risk)
    assert lc.reject_reason == reason
    # Flattened at the bid: (88.30 - 88.40) x 10 = -1.00; R = -0.10 / 1.40 = -0.0714..., floored
    assert (lc.exit_price, lc.realized_pnl, lc.r_multiple) == (D("88.30"), D("-1.00"), D("-0.0715"))
    assert rig.sent() == [rig.coid("scenario-slippage_spike", leg) for leg in (Leg.ENTRY, Leg.FLATTEN)]
    assert_flattened_at_market(rig, "scenario-slippage_spike", qty=10, price=D("88.30"))
    assert rejections(caplog.records) == [f"Smart executor rejected scenario-slippage_spike {reason}"]


@sqlite_only
def test_reward_risk_rejection_flattens(make_rig: Callable[..., Rig], caplog: pytest.LogCaptureFixture) -> None:
    """The signal's own target (70.50) is too close to the fill (69.98) for the stop (69.30):
    R/R = 0.52 / 0.68 = 0.76 < 2, although the fill is better than the signal (70.00)."""
    rig = make_rig("rr_reject")
    lc = rig.settle(rig.submit(signal_of("rr_reject")))

    reason = "reward/risk 0.76 < min 2.00"
    assert rig.path(lc) == ["PENDING", "LIMIT_SUBMITTED", *FLATTENED]
    assert (lc.limit_price, lc.filled_qty, lc.filled_avg_price) == (D("70.04"), 10, D("69.98"))
    assert (lc.exit_stop, lc.exit_target, lc.reward_risk) == (D("69.30"), D("70.50"), D("0.7647"))
    assert lc.reject_reason == reason
    # (69.95 - 69.98) x 10 = -0.30; R = -0.03 / 0.68 = -0.0441..., floored
    assert (lc.exit_price, lc.realized_pnl, lc.r_multiple) == (D("69.95"), D("-0.30"), D("-0.0442"))
    assert rig.sent() == [rig.coid("scenario-rr_reject", Leg.ENTRY), rig.coid("scenario-rr_reject", Leg.FLATTEN)]
    assert_flattened_at_market(rig, "scenario-rr_reject", qty=10, price=D("69.95"))
    assert rejections(caplog.records) == [f"Smart executor rejected scenario-rr_reject {reason}"]
