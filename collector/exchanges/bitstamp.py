"""Bitstamp (WebSocket API v2): channel names, subscribe frames, parsers (pure).

Docs: www.bitstamp.net/websocket/v2/ and www.bitstamp.net/api/ (see shared/docs/exchanges.md §3).

Coverage (channel → variants → action → evidence):

| channel | messages | action | evidence |
|---|---|---|---|
| `live_trades_<pair>` | `trade` | Trade (`type` 1: taker sold, buyer maker) | recorded |
| `diff_order_book_<pair>` | `data` | BookUpdate (ids 0..microtimestamp) | recorded |
| `/api/v2/order_book/<pair>` | REST snapshot | BookUpdate(is_snapshot) | recorded |
| `live_orders_<pair>` | `order_created`/`_changed`/`_deleted` | L3Event add/change/delete | docs |
| `/api/v2/order_book/<pair>?group=2` | REST, one row per order | L3Snapshot (ts_us) | docs |
| (all) | `bts:subscription_succeeded` | Control(subscribed) | recorded |
| (all) | `bts:request_reconnect` | Control(reconnect) | docs |
| (all) | `bts:error` | Control(error) → fatal | docs |
| (all) | `bts:heartbeat` (reply to ours) | Control(heartbeat) | docs |
| (all) | `bts:unsubscription_succeeded` | ignored ([]) | docs |

Quirks: there are no public sequence numbers, so books align on ``microtimestamp`` (never the
whole-second ``timestamp``, cryptofeed#1126): diffs/events with ``microtimestamp <=`` the REST
snapshot's are dropped, the rest applied, and a disconnect is the only visible gap. Trade ids
are shared by all pairs, so per-pair gaps are normal. Prices and amounts come as JSON numbers
and as ``*_str`` strings: the strings are used.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from collector.errors import UnexpectedMessage
from collector.exchanges.base import StreamSpec, levels, load_object
from collector.model import BookUpdate, Control, L3Event, L3Snapshot, Record, Trade

EXCHANGE = "bitstamp"
SYMBOL_PATTERN = re.compile(r"[a-z0-9]{4,20}")
DATA_TYPES = ("trade", "book", "l3")
# Fields of our own `send` frames that are credentials: redacted in the raw capture.
SEND_SECRET_FIELDS: tuple[str, ...] = ()
# Trade ids are global across pairs (exchanges.md §3): a per-pair jump is not a gap.
TRADE_IDS_CONTIGUOUS = False
BOOK_SNAPSHOT_FROM_REST = True
L3_SNAPSHOT_FROM_REST = True
L3_ALIGN = "time"

_CHANNEL_PREFIX = {"trade": "live_trades_", "book": "diff_order_book_", "l3": "live_orders_"}
_ORDER_ACTIONS = {"order_created": "add", "order_changed": "change", "order_deleted": "delete"}


def channel(spec: StreamSpec) -> str:
    try:
        return _CHANNEL_PREFIX[spec.data_type] + spec.symbol
    except KeyError:
        raise ValueError(f"bitstamp has no data type {spec.data_type!r}") from None


def build_ws_url(base_url: str, spec: StreamSpec) -> str:
    return base_url


def build_subscribe(spec: StreamSpec, now_s: float) -> list[str]:
    msg = {"event": "bts:subscribe", "data": {"channel": channel(spec)}}
    return [orjson.dumps(msg).decode()]


def build_ping(now_s: float) -> str:
    """The client heartbeat the docs offer to check that the connection is alive."""
    return '{"event":"bts:heartbeat"}'


def build_snapshot_url(rest_url: str, spec: StreamSpec, limit: int) -> str:
    """Full-depth L2 book (grouped by price); no trailing slash, as in the recording."""
    return f"{rest_url}/api/v2/order_book/{spec.symbol}"


def build_l2_view_url(rest_url: str, spec: StreamSpec) -> str:
    """The full L2 book (grouped by price, ``microtimestamp``) for QA's L3 cross-check."""
    return build_snapshot_url(rest_url, spec, 0)


def build_l3_snapshot_url(rest_url: str, spec: StreamSpec) -> str:
    """Order-level book: ``group=2`` gives one ``[price, amount, order_id]`` row per order."""
    return f"{rest_url}/api/v2/order_book/{spec.symbol}?group=2"


def _load(body: str | bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UnexpectedMessage("body is not JSON", excerpt=str(body)[:200]) from exc


def parse_snapshot(body: bytes | str, symbol: str) -> BookUpdate:
    """``{"timestamp","microtimestamp","bids":[[p,q]..],"asks":[..]}`` → snapshot BookUpdate."""
    msg = _load(body)
    try:
        mt = int(msg["microtimestamp"])
        return BookUpdate(
            symbol=symbol,
            ts_ms=mt // 1000,
            bids=levels(msg["bids"]),
            asks=levels(msg["asks"]),
            is_snapshot=True,
            first_id=mt,
            last_id=mt,
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise UnexpectedMessage(
            f"bad order_book snapshot: {exc!r}", excerpt=str(body)[:200]
        ) from exc


def parse_l3_snapshot(body: bytes | str, symbol: str, ts_recv_us: int) -> L3Snapshot:
    """``group=2`` body: rows ``[price, amount, order_id]`` → L3Snapshot aligned on ts_us."""
    msg = _load(body)
    try:
        mt = int(msg["microtimestamp"])
        orders = [(str(r[2]), "B", r[0], r[1]) for r in msg["bids"]]
        orders += [(str(r[2]), "A", r[0], r[1]) for r in msg["asks"]]
        for order in orders:
            if not all(isinstance(v, str) for v in order):
                raise ValueError(f"row {order!r} is not strings")
        return L3Snapshot(symbol, mt // 1000, None, orders, ts_us=mt)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise UnexpectedMessage(f"bad group=2 snapshot: {exc!r}", excerpt=str(body)[:200]) from exc


def parse(raw: str | bytes, ts_recv_us: int) -> list[Record]:
    """One websocket frame → records. Raises UnexpectedMessage on shapes we do not know."""
    msg = load_object(raw)
    event = msg.get("event")
    ch = msg.get("channel", "")
    try:
        if event == "trade" and ch.startswith("live_trades_"):
            d = msg["data"]
            mt = int(d["microtimestamp"])
            kind = d["type"]
            if kind not in (0, 1):
                raise ValueError(f"type {kind!r}")
            # `type` is the taker's side (exchanges.md §3): 1 = sell, so the buyer was the maker.
            return [
                Trade(
                    event_time_ms=mt // 1000,
                    symbol=ch.removeprefix("live_trades_"),
                    trade_id=int(d["id"]),
                    price=_str(d, "price_str"),
                    quantity=_str(d, "amount_str"),
                    trade_time_ms=mt // 1000,
                    is_buyer_maker=kind == 1,
                )
            ]
        if event == "data" and ch.startswith("diff_order_book_"):
            d = msg["data"]
            mt = int(d["microtimestamp"])
            # No sequence numbers: a diff "covers" everything up to its microtimestamp
            # (first_id 0, last_id mt). The generic book then drops diffs with mt <= the
            # snapshot's and never sees a provable gap, which is the documented procedure.
            return [
                BookUpdate(
                    symbol=ch.removeprefix("diff_order_book_"),
                    ts_ms=mt // 1000,
                    bids=levels(d["bids"]),
                    asks=levels(d["asks"]),
                    first_id=0,
                    last_id=mt,
                )
            ]
        if event in _ORDER_ACTIONS and ch.startswith("live_orders_"):
            d = msg["data"]
            mt = int(d["microtimestamp"])
            side = {0: "B", 1: "A"}[d["order_type"]]
            oid = d["id_str"] if "id_str" in d else str(d["id"])
            if not isinstance(oid, str):
                raise ValueError(f"id {oid!r}")
            return [
                L3Event(
                    ts_ms=mt // 1000,
                    symbol=ch.removeprefix("live_orders_"),
                    sequence=None,
                    action=_ORDER_ACTIONS[event],
                    order_id=oid,
                    side=side,
                    price=_str(d, "price_str"),
                    size=_str(d, "amount_str"),
                    ts_us=mt,
                )
            ]
        if event == "bts:subscription_succeeded":
            return [Control("subscribed", detail=str(ch))]
        if event == "bts:request_reconnect":
            return [Control("reconnect", detail="bts:request_reconnect")]
        if event == "bts:error":
            d = msg.get("data") or {}
            return [Control("error", detail=f"{d.get('code')}: {d.get('message')}")]
        if event == "bts:heartbeat":
            return [Control("heartbeat")]
        if event == "bts:unsubscription_succeeded":
            return []
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise UnexpectedMessage(
            f"malformed bitstamp {event} frame: {exc!r}", excerpt=str(raw)[:200]
        ) from exc
    raise UnexpectedMessage(f"unknown bitstamp event {event!r}", excerpt=str(raw)[:200])


def _str(d: dict[str, Any], key: str) -> str:
    value = d[key]
    if not isinstance(value, str):
        raise ValueError(f"{key} = {value!r} is not a string")
    return value


PARSERS = {"trade": parse, "book": parse, "l3": parse}
