"""The venue's order records and the requests that create or change them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from uuid import UUID

ZERO = Decimal(0)

# Statuses Alpaca lists under `status=closed`; everything else is open.
FINAL_STATUSES = frozenset({"filled", "canceled", "expired", "replaced", "rejected"})
ORDER_TYPES = ("market", "limit", "stop", "stop_limit", "trailing_stop")
TIMES_IN_FORCE = ("day", "gtc", "opg", "cls", "ioc", "fok")
ORDER_CLASSES = ("simple", "bracket", "oco", "oto", "mleg")
SIDES = ("buy", "sell")
# Times in force that trade only in an auction: the opening (`opg`) or the closing (`cls`) one.
AUCTION_TIFS = ("opg", "cls")


@dataclass(frozen=True)
class TakeProfit:
    limit_price: Decimal


@dataclass(frozen=True)
class StopLoss:
    stop_price: Decimal
    limit_price: Decimal | None = None


@dataclass(frozen=True)
class NewOrder:
    """A `POST /v2/orders` body, parsed but not yet judged against the account."""

    symbol: str
    side: str
    type: str
    time_in_force: str
    qty: Decimal | None = None
    notional: Decimal | None = None
    order_class: str = "simple"
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail_price: Decimal | None = None
    trail_percent: Decimal | None = None
    extended_hours: bool = False
    client_order_id: str | None = None
    take_profit: TakeProfit | None = None
    stop_loss: StopLoss | None = None


@dataclass(frozen=True)
class ReplaceOrder:
    """A `PATCH /v2/orders/{id}` body; None keeps the old value."""

    qty: Decimal | None = None
    time_in_force: str | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail: Decimal | None = None
    client_order_id: str | None = None


@dataclass(eq=False)
class SimOrder:
    """One order at the venue. Legs of bracket/OCO/OTO orders are SimOrders too.

    `working` says whether the order takes part in matching now; it is separate from `status`
    because Alpaca shows a live stop leg as `held` while it watches its stop price.
    """

    id: UUID
    client_order_id: str
    symbol: str
    asset_id: UUID
    side: str
    type: str
    time_in_force: str
    order_class: str
    qty: Decimal | None
    notional: Decimal | None
    limit_price: Decimal | None
    stop_price: Decimal | None
    extended_hours: bool
    position_intent: str | None
    created_at: datetime
    submitted_at: datetime
    updated_at: datetime
    seq: int
    status: str = "pending_new"
    filled_qty: Decimal = ZERO
    filled_value: Decimal = ZERO  # sum of price x qty over executions, for the average price
    filled_at: datetime | None = None
    expired_at: datetime | None = None
    expires_at: datetime | None = None
    canceled_at: datetime | None = None
    failed_at: datetime | None = None
    replaced_at: datetime | None = None
    replaced_by: UUID | None = None
    replaces: UUID | None = None
    legs: list[SimOrder] = field(default_factory=list)
    parent: SimOrder | None = field(default=None, repr=False)
    # Orders that cancel each other (an OCO pair, a bracket's exit legs); shared by its members.
    group: list[SimOrder] | None = field(default=None, repr=False)
    # A trailing stop: its trail (exactly one is set) and the high-water mark its stop follows.
    trail_price: Decimal | None = None
    trail_percent: Decimal | None = None
    hwm: Decimal | None = None
    working: bool = False
    triggered: bool = False  # a stop whose stop price has been reached
    cancel_due: datetime | None = None  # a held-back cancel completes at this time

    @property
    def is_open(self) -> bool:
        return self.status not in FINAL_STATUSES

    @property
    def remaining(self) -> Decimal:
        if self.qty is None:  # a notional order has no share count until it fills
            return ZERO if self.filled_qty else Decimal(1)
        return self.qty - self.filled_qty

    @property
    def filled_avg_price(self) -> Decimal | None:
        if not self.filled_qty:
            return None
        return self.filled_value / self.filled_qty

    @property
    def is_leg(self) -> bool:
        return self.parent is not None

    @property
    def is_stop_type(self) -> bool:
        return self.type in ("stop", "stop_limit", "trailing_stop")

    @property
    def is_auction(self) -> bool:
        return self.time_in_force in AUCTION_TIFS

    def family(self) -> list[SimOrder]:
        """This order and its legs."""
        return [self, *self.legs]
