"""Pricing and post-fill guards: the seed's CRWD figures, both sides, and their invariants."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.core.domain import Side
from engine.core.pricing import (
    Exits,
    adverse_slippage,
    entry_limit,
    exits_from_fill,
    judge_fill,
    percent,
    ratio,
    reward_risk,
    tick_size,
    to_tick,
)

BUFFER = D("0.0005")
MAX_SLIPPAGE = D("0.001")
MIN_RR = D("2.0")


def smart_exits(fill: str, side: Side, stop: str | None, target: str | None = None) -> Exits:
    return exits_from_fill(
        D(fill), side,
        stop_level=None if stop is None else D(stop),
        target_level=None if target is None else D(target),
        default_stop_pct=D("0.01"), target_multiple=MIN_RR,
    )


class TestSeedFigures:
    """The CRWD trade from the product brief must come out to the cent."""

    def test_limit_entry_rests_at_535_09(self) -> None:
        assert entry_limit(D("534.82"), Side.BUY, BUFFER) == D("535.09")

    def test_fill_at_536_is_0_22_percent_adverse_and_rejected(self) -> None:
        slippage = adverse_slippage(D("536.00"), D("534.82"), Side.BUY)
        assert percent(slippage) == "0.22%"
        verdict = judge_fill(side=Side.BUY, signal_price=D("534.82"), fill_price=D("536.00"),
                             exits=smart_exits("536.00", Side.BUY, "529.47"),
                             max_slippage=MAX_SLIPPAGE, min_reward_risk=MIN_RR)
        assert not verdict.passed
        assert verdict.reasons == ("slippage 0.22% > max 0.10%",)

    def test_exits_from_the_fill_give_target_549_06_and_rr_2(self) -> None:
        exits = smart_exits("536.00", Side.BUY, "529.47")
        assert exits == Exits(stop=D("529.47"), target=D("549.06"))
        assert ratio(reward_risk(D("536.00"), exits, Side.BUY)) == D("2.0000")

    def test_legacy_exits_from_the_signal_give_rr_0_13_at_that_fill(self) -> None:
        legacy = Exits(stop=D("529.47"), target=D("536.87"))
        rr = reward_risk(D("536.00"), legacy, Side.BUY)
        assert f"{ratio(rr):.2f}" == "0.13"
        verdict = judge_fill(side=Side.BUY, signal_price=D("534.82"), fill_price=D("536.00"), exits=legacy,
                             max_slippage=MAX_SLIPPAGE, min_reward_risk=MIN_RR)
        assert verdict.reasons == ("slippage 0.22% > max 0.10%", "reward/risk 0.13 < min 2.00")


@pytest.mark.parametrize(
    ("side", "signal", "limit"),
    [
        (Side.BUY, "534.82", "535.09"),
        (Side.SELL, "534.82", "534.55"),  # short entry: 534.55259 rounds to the nearest cent
        (Side.BUY, "0.5123", "0.5126"),  # sub-dollar: hundredth-of-a-cent tick
        (Side.SELL, "0.5123", "0.5120"),
        (Side.BUY, "100.00", "100.05"),
    ],
)
def test_entry_limit_table(side: Side, signal: str, limit: str) -> None:
    assert entry_limit(D(signal), side, BUFFER) == D(limit)


@pytest.mark.parametrize(
    ("side", "fill", "stop", "target", "expected"),
    [
        (Side.BUY, "536.00", "529.47", None, Exits(D("529.47"), D("549.06"))),
        (Side.SELL, "533.64", "540.17", None, Exits(D("540.17"), D("520.58"))),  # short mirror
        (Side.BUY, "100.00", None, None, Exits(D("99.00"), D("102.00"))),  # default 1 % stop
        (Side.SELL, "100.00", None, None, Exits(D("101.00"), D("98.00"))),
        (Side.BUY, "100.00", "98.00", "110.00", Exits(D("98.00"), D("110.00"))),  # signal's own target
    ],
)
def test_exits_table(side: Side, fill: str, stop: str | None, target: str | None, expected: Exits) -> None:
    assert smart_exits(fill, side, stop, target) == expected


class TestGuards:
    def test_favourable_slippage_never_rejects(self) -> None:
        # A short filled above its signal is a better price: negative adverse slippage.
        slippage = adverse_slippage(D("536.00"), D("534.82"), Side.SELL)
        assert slippage < 0
        verdict = judge_fill(side=Side.SELL, signal_price=D("534.82"), fill_price=D("536.00"),
                             exits=smart_exits("536.00", Side.SELL, "540.00"),
                             max_slippage=MAX_SLIPPAGE, min_reward_risk=MIN_RR)
        assert verdict.passed, verdict.reasons

    def test_slippage_exactly_at_the_limit_passes(self) -> None:
        verdict = judge_fill(side=Side.BUY, signal_price=D("100.00"), fill_price=D("100.10"),
                             exits=smart_exits("100.10", Side.BUY, "99.00"),
                             max_slippage=MAX_SLIPPAGE, min_reward_risk=MIN_RR)
        assert verdict.passed and verdict.slippage == D("0.001")

    def test_fill_beyond_the_stop_is_invalid(self) -> None:
        exits = smart_exits("529.00", Side.BUY, "529.47")
        assert reward_risk(D("529.00"), exits, Side.BUY) is None
        verdict = judge_fill(side=Side.BUY, signal_price=D("534.82"), fill_price=D("529.00"), exits=exits,
                             max_slippage=MAX_SLIPPAGE, min_reward_risk=MIN_RR)
        assert verdict.reasons == ("fill 529.00 is at or beyond the stop 529.47",)

    def test_signal_target_too_close_fails_reward_risk(self) -> None:
        verdict = judge_fill(side=Side.BUY, signal_price=D("100.00"), fill_price=D("100.00"),
                             exits=smart_exits("100.00", Side.BUY, "99.00", "101.00"),
                             max_slippage=MAX_SLIPPAGE, min_reward_risk=MIN_RR)
        assert verdict.reasons == ("reward/risk 1.00 < min 2.00",)
        assert verdict.reward_risk == D("1.0000")


def test_tick_size_switches_at_one_dollar() -> None:
    assert tick_size(D("1.00")) == D("0.01")
    assert tick_size(D("0.9999")) == D("0.0001")
    assert to_tick(D("0.99996")) == D("1.00")


prices = st.decimals(min_value=D("0.0001"), max_value=D("100000"), places=6, allow_nan=False, allow_infinity=False)
sides = st.sampled_from(list(Side))


@given(prices)
def test_tick_rounding_is_nearest_and_idempotent(price: D) -> None:
    """Rounding moves a price by at most half a tick, in either direction, and is stable."""
    rounded = to_tick(price)
    assert abs(rounded - price) <= max(tick_size(price), tick_size(rounded)) / 2
    assert to_tick(rounded) == rounded
    assert rounded == rounded.quantize(tick_size(rounded))


@given(prices, sides, st.decimals(min_value=D("0"), max_value=D("0.01"), places=5))
def test_entry_limit_never_better_than_signal_by_more_than_half_a_tick(price: D, side: Side, buffer: D) -> None:
    """The limit lies on the buffer's side of the signal, up to half a tick of rounding."""
    limit = entry_limit(price, side, buffer)
    assert (limit - price) * side.sign >= -tick_size(price) / 2


@given(prices, prices, sides)
def test_slippage_sign_follows_the_side(signal: D, fill: D, side: D) -> None:
    slippage = adverse_slippage(fill, signal, side)
    worse = (fill - signal) * side.sign > 0
    assert (slippage > 0) == worse
    assert adverse_slippage(fill, signal, side.opposite) == -slippage


@given(st.decimals(min_value=D("10"), max_value=D("1000"), places=2), sides,
       st.decimals(min_value=D("0.01"), max_value=D("5"), places=2),
       st.decimals(min_value=D("0.01"), max_value=D("50"), places=2),
       st.decimals(min_value=D("0.01"), max_value=D("50"), places=2))
def test_reward_risk_is_monotone_in_the_target(fill: D, side: Side, risk: D, reward_a: D, reward_b: D) -> None:
    stop = fill - side.sign * risk
    near, far = sorted([reward_a, reward_b])
    rr_near = reward_risk(fill, Exits(stop, fill + side.sign * near), side)
    rr_far = reward_risk(fill, Exits(stop, fill + side.sign * far), side)
    assert rr_near is not None and rr_far is not None
    assert rr_near <= rr_far


@given(st.decimals(min_value=D("1"), max_value=D("5000"), places=2), sides,
       st.decimals(min_value=D("0.001"), max_value=D("0.05"), places=4))
def test_computed_target_never_pulls_rr_below_the_multiple(fill: D, side: Side, stop_pct: D) -> None:
    exits = exits_from_fill(fill, side, stop_level=None, target_level=None, default_stop_pct=stop_pct,
                            target_multiple=MIN_RR)
    rr = reward_risk(fill, exits, side)
    if rr is not None:  # a stop that rounds onto the fill leaves no risk to measure
        assert rr >= MIN_RR
