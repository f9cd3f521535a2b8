"""Normalized records that adapters produce and writers consume (frozen, slotted).

Prices and quantities stay the exchange's decimal strings; times are integers with the
unit in the name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

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
# The data types of the fleet: one parsed schema each.
DATA_TYPES = tuple(COLUMNS)

# The deepest top-N a book serves (collector/book.py keeps a sorted front of twice this).
MAX_BOOK_DEPTH = 128
DEFAULT_BOOK_DEPTH = 5  # [collector] book_depth

PriceLevel = tuple[str, str]  # (price, quantity) as the exchange's strings


class Trade(NamedTuple):
    """One trade. ``is_buyer_maker`` is True when the buyer's order was resting.

    Trade, BookUpdate and Control are NamedTuples: immutable, and about 4x cheaper to build
    than frozen dataclasses, which matters on the per-frame hot path.
    """

    event_time_ms: int
    symbol: str
    trade_id: int
    price: str
    quantity: str
    trade_time_ms: int
    is_buyer_maker: bool


class BookUpdate(NamedTuple):
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


# What a Control says; the processor handles every kind (collector/processor.py).
ControlKind = Literal["subscribed", "heartbeat", "error", "reconnect", "pause"]


class Control(NamedTuple):
    """A non-data frame the collector must act on.

    kind:
        ``subscribed``  the exchange confirmed the subscription
        ``heartbeat``   liveness only (``last_trade_id`` where the exchange gives it)
        ``error``       the exchange reports an error (``detail`` says why). Fatal only when it
                        answers our own subscribe request: before the subscription is confirmed,
                        and ``request_id`` is None (the exchange gives none) or our request's id
        ``reconnect``   the exchange asks us to reconnect (server shutdown, maintenance)
        ``pause``       the exchange announces maintenance (Bitfinex 20060, platform status 0):
                        expect silence (logged as a warning; the end of maintenance, Bitfinex
                        20061, is a ``reconnect``, and the watchdog covers a longer silence)
    ``request_id``: the id of the request an ``error`` or ``subscribed`` answers, where the
    exchange echoes one (Binance ``id``), else None.
    """

    kind: ControlKind
    detail: str = ""
    last_trade_id: int | None = None
    request_id: int | str | None = None


# (order_id, side "B"|"A", price, size) as the exchange's strings
L3Order = tuple[str, str, str, str]


@dataclass(frozen=True, slots=True)
class L3Event:
    """One order-level event: a row of the ``l3`` file, or a sequence-only marker.

    action:
        ``add``       an order rests on the book (an ``add`` for a known id moves/resizes it)
        ``change``    a resting order's size (and maybe price) changed
        ``delete``    an order left the book (``reason`` says why where the exchange does)
        ``match``     a trade against the resting order ``order_id`` (= ``maker_order_id``);
                      ``size`` is the matched size, which leaves the maker's remaining size
        ``snapshot``  one order of a (re)sync snapshot
        ``noop``      a sequenced message that does not touch the book (Coinbase
                      ``received``/``activate``, Bitfinex heartbeats): never written
    side: ``B`` (bid), ``A`` (ask) or ``""``. Prices and sizes are the exchange's strings
    (``""`` when absent); sizes are unsigned. ``ts_us`` is the exchange time in µs where the
    exchange gives one (Bitstamp ``microtimestamp``: the snapshot alignment key).
    """

    ts_ms: int
    symbol: str
    sequence: int | None
    action: str
    order_id: str
    side: str
    price: str
    size: str
    trade_id: int | None = None
    maker_order_id: str = ""
    taker_order_id: str = ""
    reason: str = ""
    ts_us: int | None = None


@dataclass(frozen=True, slots=True)
class L3Snapshot:
    """A whole order-level book (REST or in-stream): the start of a (re)sync.

    ``ts_ms`` 0 means the exchange gave no time (the receive time is used). ``sequence`` and
    ``ts_us`` are the alignment keys where the exchange has them.
    """

    symbol: str
    ts_ms: int
    sequence: int | None
    orders: Sequence[L3Order]
    ts_us: int | None = None


@dataclass(frozen=True, slots=True)
class BookChecksum:
    """The exchange's checksum of its book at this point of the stream (Bitfinex ``cs``)."""

    symbol: str
    ts_ms: int
    sequence: int | None
    checksum: int


Record = Trade | BookUpdate | Control | L3Event | L3Snapshot | BookChecksum
