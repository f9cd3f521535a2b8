"""Normalized records that adapters produce and writers consume (frozen, slotted).

Prices and quantities stay the exchange's decimal strings; times are integers with the
unit in the name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

TRADE_COLUMNS = (
    "event_time",
    "symbol",
    "trade_id",
    "price",
    "quantity",
    "trade_time",
    "is_buyer_maker",
    "local_time",
)
BOOK_COLUMNS = ("timestamp", "symbol", "side", "price", "quantity", "level", "local_time")
L3_COLUMNS = (
    "timestamp",
    "symbol",
    "sequence",
    "action",
    "order_id",
    "side",
    "price",
    "size",
    "trade_id",
    "maker_order_id",
    "taker_order_id",
    "reason",
    "local_time",
)
COLUMNS = {"trade": TRADE_COLUMNS, "book": BOOK_COLUMNS, "l3": L3_COLUMNS}

PriceLevel = tuple[str, str]  # (price, quantity) as the exchange's strings


@dataclass(frozen=True, slots=True)
class Trade:
    """One trade. ``is_buyer_maker`` is True when the buyer's order was resting."""

    event_time_ms: int
    symbol: str
    trade_id: int
    price: str
    quantity: str
    trade_time_ms: int
    is_buyer_maker: bool


@dataclass(frozen=True, slots=True)
class BookUpdate:
    """An L2 change set, or a whole book when ``is_snapshot``.

    Quantities are absolute; "0" (any zero decimal) removes the level. ``first_id`` and
    ``last_id`` are the exchange's update ids where it has them (Binance ``U``/``u``; a
    snapshot's ``lastUpdateId`` in both).
    """

    symbol: str
    ts_ms: int
    bids: Sequence[PriceLevel]
    asks: Sequence[PriceLevel]
    is_snapshot: bool = False
    first_id: int | None = None
    last_id: int | None = None


@dataclass(frozen=True, slots=True)
class Control:
    """A non-data frame the session must act on.

    kind:
        ``subscribed``  the exchange confirmed the subscription
        ``heartbeat``   liveness only (``last_trade_id`` where the exchange gives it)
        ``error``       the exchange rejected us (``detail`` says why): fatal
        ``reconnect``   the exchange asks us to reconnect (server shutdown, maintenance)
    """

    kind: str
    detail: str = ""
    last_trade_id: int | None = None


Record = Trade | BookUpdate | Control
