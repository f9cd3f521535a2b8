"""Coinbase Exchange (formerly Pro): subscribe frames, signing, parsers (pure).

Docs: docs.cdp.coinbase.com/exchange/websocket-feed/{overview,channels,authentication}
(see shared/docs/exchanges.md §2).

Coverage (channel → variants → action → evidence):

| channel | messages | action | evidence |
|---|---|---|---|
| `matches` | `last_match`, `match` | Trade (`side` is the maker's side) | recorded 2021-04-17 |
| `heartbeat` | `heartbeat` | Control(heartbeat, last_trade_id) | docs |
| `level2_batch` | `snapshot`, `l2update` | BookUpdate (no sequence numbers) | docs (same schema) |
| `level2` (auth)| `snapshot`, `l2update` | BookUpdate | recorded 2021-04-17 |
| (all) | `subscriptions` | Control(subscribed) | recorded 2021-04-17 |
| (all) | `error` | Control(error) → fatal | docs |
| `ticker`,`status` | not subscribed | ignored ([]) | recorded 2021-04-17 |

Quirks: a subscribe must arrive within 5 s of connecting; `level2`/`full` need an Exchange API key
since 2023-08-01 (signature = base64 HMAC-SHA256 of timestamp + "GET/users/self/verify" with the
base64-decoded secret); `l2update` carries no sequence, so a disconnect is the only visible gap.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from typing import Any

import orjson

from collector.errors import ConfigError, UnexpectedMessage
from collector.exchanges.base import StreamSpec, iso_to_ms, levels, load_object
from collector.model import BookUpdate, Control, L3Event, L3Snapshot, Record, Trade
from collector.settings import CollectorSettings, Credentials

EXCHANGE = "coinbase"
SYMBOL_PATTERN = re.compile(r"[A-Z0-9]{1,12}-[A-Z0-9]{1,12}")
DATA_TYPES = ("trade", "book", "l3")
# Fields of our own `send` frames that are credentials: redacted in the raw capture (the
# signature is derived from the secret; `timestamp` is kept).
SEND_SECRET_FIELDS: tuple[str, ...] = ("key", "passphrase", "signature")
TRADE_IDS_CONTIGUOUS = True
BOOK_SNAPSHOT_FROM_REST = False
_IGNORED_TYPES = frozenset({"ticker", "status"})


def channels(spec: StreamSpec) -> list[str]:
    """Channels of one collector; the authenticated ``level2`` when a key is configured."""
    if spec.data_type == "trade":
        return ["matches", "heartbeat"]
    if spec.data_type == "book":
        return ["level2" if spec.credentials else "level2_batch", "heartbeat"]
    if spec.data_type == "l3":
        if spec.credentials is None:
            raise ConfigError(
                "coinbase l3 (the `full` channel) needs COINBASE_API_KEY, COINBASE_API_SECRET "
                "and COINBASE_API_PASSPHRASE in the environment"
            )
        return ["full", "heartbeat"]
    raise ValueError(f"coinbase has no data type {spec.data_type!r}")


def build_ws_url(base_url: str, spec: StreamSpec) -> str:
    return base_url


def sign(credentials: Credentials, timestamp: str) -> str:
    """The websocket subscribe signature (authentication doc)."""
    try:
        secret = base64.b64decode(credentials.secret, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("COINBASE_API_SECRET is not valid base64") from None
    message = f"{timestamp}GET/users/self/verify".encode()
    return base64.b64encode(hmac.new(secret, message, hashlib.sha256).digest()).decode()


def build_subscribe(spec: StreamSpec, now_s: float) -> list[str]:
    msg: dict[str, Any] = {
        "type": "subscribe",
        "product_ids": [spec.symbol],
        "channels": channels(spec),
    }
    if spec.credentials is not None:
        timestamp = f"{now_s:.3f}"
        msg.update(
            key=spec.credentials.key,
            passphrase=spec.credentials.passphrase,
            timestamp=timestamp,
            signature=sign(spec.credentials, timestamp),
        )
    return [orjson.dumps(msg).decode()]


def parse(raw: str | bytes, ts_recv_us: int) -> list[Record]:
    """One websocket frame → records. Raises UnexpectedMessage on shapes we do not know."""
    msg = load_object(raw)
    kind = msg.get("type")
    try:
        if kind == "match" or kind == "last_match":
            t = iso_to_ms(msg["time"])
            # `side` is the maker's side: a resting buy order means the buyer was the maker.
            side = msg["side"]
            if side not in ("buy", "sell"):
                raise ValueError(f"side {side!r}")
            return [
                Trade(
                    event_time_ms=t,
                    symbol=msg["product_id"],
                    trade_id=int(msg["trade_id"]),
                    price=msg["price"],
                    quantity=msg["size"],
                    trade_time_ms=t,
                    is_buyer_maker=side == "buy",
                )
            ]
        if kind == "l2update":
            bids, asks = [], []
            for side, price, size in msg["changes"]:
                if side == "buy":
                    bids.append((price, size))
                elif side == "sell":
                    asks.append((price, size))
                else:
                    raise ValueError(f"side {side!r}")
            return [
                BookUpdate(
                    symbol=msg["product_id"], ts_ms=iso_to_ms(msg["time"]), bids=bids, asks=asks
                )
            ]
        if kind == "snapshot":
            # The snapshot has no time field (recorded); the writer uses the receive time.
            return [
                BookUpdate(
                    symbol=msg["product_id"],
                    ts_ms=0,
                    bids=levels(msg["bids"]),
                    asks=levels(msg["asks"]),
                    is_snapshot=True,
                )
            ]
        if kind == "heartbeat":
            return [Control("heartbeat", last_trade_id=int(msg["last_trade_id"]))]
        if kind == "subscriptions":
            return [Control("subscribed", detail=orjson.dumps(msg.get("channels")).decode())]
        if kind == "error":
            return [Control("error", detail=f"{msg.get('message')}: {msg.get('reason', '')}")]
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise UnexpectedMessage(
            f"malformed coinbase {kind} frame: {exc!r}", excerpt=str(raw)[:200]
        ) from exc
    if kind in _IGNORED_TYPES:
        return []
    raise UnexpectedMessage(f"unknown coinbase message type {kind!r}", excerpt=str(raw)[:200])


# --- `full` channel (order-level, L3) ---------------------------------------------------
#
# | channel | messages | action | evidence |
# |---|---|---|---|
# | `full` | `open` | L3Event add (`remaining_size`) | docs (channels: full) |
# | `full` | `done` | L3Event delete (`reason` filled/canceled; market orders: no price) | docs |
# | `full` | `match` | L3Event match on the maker order (maker's `side`) | docs |
# | `full` | `change` (STP `new_size`; modify_order `new_price`) | L3Event change | docs |
# | `full` | `change` with funds only (market orders) | L3Event noop | docs |
# | `full` | `received`, `activate` | L3Event noop (sequence only, no book effect) | docs |
# | `/products/<id>/book?level=3` | `sequence`, `[price, size, order_id]` | L3Snapshot | docs |

L3_SNAPSHOT_FROM_REST = True
L3_ALIGN = "sequence"
_SIDES = {"buy": "B", "sell": "A"}


def check_settings(settings: CollectorSettings) -> None:
    """Called at startup: `l3` (the `full` channel) is impossible without an API key."""
    if settings.data_type == "l3":
        channels(StreamSpec(settings.symbol, "l3", credentials=settings.credentials))


def build_l3_snapshot_url(rest_url: str, spec: StreamSpec) -> str:
    return f"{rest_url}/products/{spec.symbol}/book?level=3"


def build_l2_view_url(rest_url: str, spec: StreamSpec) -> str:
    """The aggregated book (``[price, size, num_orders]`` rows + ``sequence``) for QA."""
    return f"{rest_url}/products/{spec.symbol}/book?level=2"


def parse_l3_snapshot(body: bytes | str, symbol: str, ts_recv_us: int) -> L3Snapshot:
    """``{"sequence":N,"bids":[[price,size,order_id]..],"asks":[..]}`` → L3Snapshot.

    The docs give no time field for this body; when one is present (``time``) it is used,
    otherwise the receive time.
    """
    try:
        msg: Any = orjson.loads(body)
        orders = [(r[2], "B", r[0], r[1]) for r in msg["bids"]]
        orders += [(r[2], "A", r[0], r[1]) for r in msg["asks"]]
        for order in orders:
            if not all(isinstance(v, str) for v in order):
                raise ValueError(f"row {order!r} is not strings")
        ts_ms = iso_to_ms(msg["time"]) if "time" in msg else ts_recv_us // 1000
        return L3Snapshot(symbol, ts_ms, int(msg["sequence"]), orders)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError) as exc:
        raise UnexpectedMessage(f"bad level=3 book: {exc!r}", excerpt=str(body)[:200]) from exc


def parse_full(raw: str | bytes, ts_recv_us: int) -> list[Record]:
    """One frame of the `full` channel → records (L3Event rows, controls)."""
    msg = load_object(raw)
    kind = msg.get("type")
    try:
        if kind in _FULL_TYPES:
            return [_full_event(kind, msg)]
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise UnexpectedMessage(
            f"malformed coinbase {kind} frame: {exc!r}", excerpt=str(raw)[:200]
        ) from exc
    return parse(raw, ts_recv_us)


_FULL_TYPES = frozenset({"received", "open", "done", "match", "change", "activate"})


def _full_event(kind: str, msg: dict[str, Any]) -> L3Event:
    symbol = msg["product_id"]
    seq = msg.get("sequence")
    sequence = None if seq is None else int(seq)
    # `activate` carries `timestamp` (epoch seconds) instead of `time` in the docs' example
    ts_ms = iso_to_ms(msg["time"]) if "time" in msg else 0
    if kind == "open":
        return L3Event(
            ts_ms, symbol, sequence, "add", _s(msg, "order_id"), _side(msg), _s(msg, "price"),
            _s(msg, "remaining_size"),
        )  # fmt: skip
    if kind == "done":
        return L3Event(
            ts_ms, symbol, sequence, "delete", _s(msg, "order_id"), _side(msg),
            _opt(msg, "price"), _opt(msg, "remaining_size"), reason=_opt(msg, "reason"),
        )  # fmt: skip
    if kind == "match":
        maker = _s(msg, "maker_order_id")
        return L3Event(
            ts_ms, symbol, sequence, "match", maker, _side(msg), _s(msg, "price"),
            _s(msg, "size"), trade_id=int(msg["trade_id"]), maker_order_id=maker,
            taker_order_id=_s(msg, "taker_order_id"),
        )  # fmt: skip
    if kind == "change" and "new_size" in msg:
        price = _opt(msg, "new_price") or _opt(msg, "price")
        return L3Event(
            ts_ms, symbol, sequence, "change", _s(msg, "order_id"), _side(msg), price,
            _s(msg, "new_size"), reason=_opt(msg, "reason"),
        )  # fmt: skip
    # received / activate / a funds-only change of a market order: no effect on the book
    return L3Event(ts_ms, symbol, sequence, "noop", _opt(msg, "order_id"), "", "", "")


def _s(msg: dict[str, Any], key: str) -> str:
    value = msg[key]
    if not isinstance(value, str):
        raise ValueError(f"{key} = {value!r} is not a string")
    return value


def _opt(msg: dict[str, Any], key: str) -> str:
    return _s(msg, key) if msg.get(key) is not None else ""


def _side(msg: dict[str, Any]) -> str:
    return _SIDES[msg["side"]]


PARSERS = {"trade": parse, "book": parse, "l3": parse_full}
