"""Binance Spot: stream names, subscribe frames, parsers (pure).

Docs: github.com/binance/binance-spot-api-docs `web-socket-streams.md`, `rest-api.md`
(see shared/docs/exchanges.md §1).

Coverage (channel → variants → action → evidence):

| channel | variant | action | evidence |
|---|---|---|---|
| `<s>@trade` | combined / raw | Trade (trade_id = `t`) | docs (not recorded) |
| `<s>@aggTrade` | combined / raw | Trade (trade_id = `a`) | recorded 2021-10-11 |
| `<s>@depth[@100ms]`| combined / raw | BookUpdate (U, u, E) | recorded 2021-10-11 |
| `/api/v3/depth` | REST snapshot | BookUpdate(is_snapshot) | recorded 2021-10-11 |
| `bookTicker`,`kline_*` | not subscribed | ignored ([]) | recorded 2021-10-11 |
| `{"result":null}` | SUBSCRIBE ack | Control(subscribed) | docs |
| `{"error":..}` | request error | Control(error) → fatal | docs |
| `serverShutdown` | event | Control(reconnect) | docs (CHANGELOG 2026-05) |

Quirks: the connection lives at most 24 h (proactive reconnect is a setting); the server pings
every 20 s and the websocket library answers; at most 5 incoming messages/s per connection, so
we send exactly one SUBSCRIBE per connection.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from collector.errors import UnexpectedMessage
from collector.exchanges.base import StreamSpec, levels, load_object
from collector.model import BookUpdate, Control, Record, Trade

EXCHANGE = "binance"
SYMBOL_PATTERN = re.compile(r"[A-Z0-9]{2,20}")
DATA_TYPES = ("trade", "book")
# Fields of our own `send` frames that are credentials: redacted in the raw capture.
SEND_SECRET_FIELDS: tuple[str, ...] = ()
# Trade ids of one symbol are contiguous (both `t` and the aggregate id `a`).
TRADE_IDS_CONTIGUOUS = True
# Book sync: diffs carry U/u and the snapshot comes from REST (`/api/v3/depth`).
BOOK_SNAPSHOT_FROM_REST = True
# Streams that share a connection with ours in recordings but that we never subscribe to.
_IGNORED_STREAM_SUFFIXES = (
    "@bookTicker",
    "@kline_",
    "@ticker",
    "@miniTicker",
    "@depth5",
    "@depth10",
    "@depth20",
    "@avgPrice",
)


_ignored_cache: dict[str, bool] = {}


def _is_ignored(stream: str) -> bool:
    """Whether a combined-stream name is one we never subscribe to (memoised: hot path)."""
    ignored = _ignored_cache.get(stream)
    if ignored is None:
        ignored = any(suffix in stream for suffix in _IGNORED_STREAM_SUFFIXES)
        if len(_ignored_cache) < 4096:
            _ignored_cache[stream] = ignored
    return ignored


def stream_name(spec: StreamSpec) -> str:
    """The stream of one collector, e.g. ``btcusdt@trade`` or ``btcusdt@depth@100ms``."""
    s = spec.symbol.lower()
    if spec.data_type == "trade":
        return f"{s}@{spec.trade_stream}"
    if spec.data_type == "book":
        return f"{s}@depth@100ms" if spec.depth_speed_ms == 100 else f"{s}@depth"
    raise ValueError(f"binance has no data type {spec.data_type!r}")


def build_ws_url(base_url: str, spec: StreamSpec) -> str:
    # The combined endpoint wraps each event with its stream name; we subscribe over the socket
    # so that the server acknowledges the stream (an unknown one is refused with an error).
    return f"{base_url}/stream"


def build_subscribe(spec: StreamSpec, now_s: float) -> list[str]:
    msg = {"method": "SUBSCRIBE", "params": [stream_name(spec)], "id": 1}
    return [orjson.dumps(msg).decode()]


def build_snapshot_url(rest_url: str, spec: StreamSpec, limit: int) -> str:
    return f"{rest_url}/api/v3/depth?symbol={spec.symbol}&limit={limit}"


def snapshot_weight(limit: int) -> int:
    """Request weight of `/api/v3/depth` for ``limit`` (rest-api.md, since 2023-10-19)."""
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    if limit <= 1000:
        return 50
    return 250


def parse_snapshot(body: bytes | str, symbol: str) -> BookUpdate:
    """``{"lastUpdateId":N,"bids":[[p,q]..],"asks":[..]}`` → a snapshot BookUpdate (ts 0)."""
    try:
        msg = orjson.loads(body)
        last = int(msg["lastUpdateId"])
        return BookUpdate(
            symbol=symbol,
            ts_ms=0,
            bids=levels(msg["bids"]),
            asks=levels(msg["asks"]),
            is_snapshot=True,
            first_id=last,
            last_id=last,
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError) as exc:
        raise UnexpectedMessage(f"bad depth snapshot: {exc}", excerpt=str(body)[:200]) from exc


def parse(raw: str | bytes, ts_recv_us: int) -> list[Record]:
    """One websocket frame → records. Raises UnexpectedMessage on shapes we do not know."""
    msg = load_object(raw)
    data = msg.get("data")
    if type(data) is dict and data.get("e") == "trade":  # the hot path of trade streams
        try:
            trade = Trade(
                data["E"], data["s"], data["t"], data["p"], data["q"], data["T"], data["m"]
            )
        except KeyError as exc:
            raise UnexpectedMessage(f"trade without {exc}", excerpt=str(raw)[:200]) from exc
        if (
            type(trade.event_time_ms) is int
            and type(trade.trade_id) is int
            and type(trade.trade_time_ms) is int
            and type(trade.is_buyer_maker) is bool
            and type(trade.price) is str
            and type(trade.quantity) is str
        ):
            return [trade]
        raise UnexpectedMessage("trade field of the wrong type", excerpt=str(raw)[:200])
    try:
        if "stream" in msg and "data" in msg:
            if _is_ignored(msg["stream"]):
                return []
            return _event(msg["data"], raw)
        if "e" in msg:
            return _event(msg, raw)
        if "result" in msg and "id" in msg:
            return [Control("subscribed", detail=str(msg["result"]))]
        if "error" in msg:
            err = msg["error"]
            return [Control("error", detail=f"{err.get('code')}: {err.get('msg')}")]
        if "code" in msg and "msg" in msg:
            return [Control("error", detail=f"{msg['code']}: {msg['msg']}")]
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise UnexpectedMessage(
            f"malformed binance frame: {exc!r}", excerpt=str(raw)[:200]
        ) from exc
    raise UnexpectedMessage("unknown binance frame", excerpt=str(raw)[:200])


def _event(d: dict[str, Any], raw: str | bytes) -> list[Record]:
    e = d.get("e")
    if e == "trade" or e == "aggTrade":
        trade = Trade(
            d["E"], d["s"], d["t" if e == "trade" else "a"], d["p"], d["q"], d["T"], d["m"]
        )
        # orjson gives ints and bools: check the types once instead of converting each field.
        if (
            type(trade.event_time_ms) is not int
            or type(trade.trade_id) is not int
            or type(trade.trade_time_ms) is not int
            or type(trade.is_buyer_maker) is not bool
            or type(trade.price) is not str
            or type(trade.quantity) is not str
        ):
            raise ValueError(f"trade field of the wrong type: {trade!r}")
        return [trade]
    if e == "depthUpdate":
        return [
            BookUpdate(
                symbol=d["s"],
                ts_ms=int(d["E"]),
                bids=levels(d["b"]),
                asks=levels(d["a"]),
                first_id=int(d["U"]),
                last_id=int(d["u"]),
            )
        ]
    if e == "serverShutdown":
        return [Control("reconnect", detail="serverShutdown")]
    if e in ("kline", "24hrTicker", "24hrMiniTicker"):
        return []
    raise UnexpectedMessage(f"unknown binance event {e!r}", excerpt=str(raw)[:200])
