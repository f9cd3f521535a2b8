"""Bitfinex (WebSocket v2): subscribe frames and a per-connection parser (pure).

Docs: docs.bitfinex.com/docs/{ws-general,ws-public,ws-websocket-checksum},
docs.bitfinex.com/reference/{ws-public-raw-books,ws-public-books,ws-public-trades}
(see shared/docs/exchanges.md §4). Not recorded: every shape below is built from the docs.

Coverage (channel → variants → action → evidence):

| channel | messages | action | evidence |
|---|---|---|---|
| `trades` | snapshot `[chan,[[ID,MTS,AMOUNT,PRICE]..]]` | ignored ([]), as tardis | docs |
| `trades` | `[chan,"te",[ID,MTS,AMOUNT,PRICE]]` | Trade (AMOUNT < 0: taker sold) | docs |
| `trades` | `[chan,"tu",[..]]` | ignored ([]): the same trade again | docs, blog |
| `book` P0 | snapshot / `[PRICE,COUNT,AMOUNT]` | BookUpdate (COUNT 0 deletes) | docs |
| `book` R0 | snapshot `[[ORDER_ID,PRICE,AMOUNT]..]` | L3Snapshot | docs (raw books) |
| `book` R0 | `[ORDER_ID,PRICE,AMOUNT]` | L3Event add (PRICE 0: delete) | docs (raw books) |
| `book` | `[chan,"cs",CHECKSUM]` | BookChecksum | docs (checksum) |
| (all) | `[chan,"hb"]` | Control(heartbeat) (+ L3Event noop carrying SEQ for l3) | docs |
| events | `info` 20051 / 20060 / 20061 | Control reconnect / pause / reconnect | docs, ws-general |
| events | `info` platform status 0 | Control(pause) | docs |
| events | `subscribed` / `conf` / `pong` | Control(subscribed) / [] / Control(heartbeat) | docs |
| events | `error` | Control(error) → fatal | docs |

Quirks: the conf flags append fields to every array message in the order ``[..., SEQ, MTS]``
(``SEQ_ALL`` 65536 is a per-connection sequence that heartbeats and checksums also consume;
``TIMESTAMP`` 32768 appends the time in ms); array lengths must never be hard-coded. Numbers
are JSON numbers: they are kept as the exact text sent (the checksum hashes amounts as sent).
Sizes are written unsigned; the sign gives the side (AMOUNT > 0 bid, < 0 ask). Frames carry a
channel id, not the symbol, so the parser is made per connection from the stream spec
(:func:`make_parser`) and learns the channel id from the ``subscribed`` event.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import orjson

from collector.errors import UnexpectedMessage
from collector.exchanges.base import StreamSpec
from collector.model import BookChecksum, BookUpdate, Control, L3Event, L3Snapshot, Record, Trade

EXCHANGE = "bitfinex"
# Pair names as in `conf/pub:list:pair:exchange` (BTCUSD, AVAX:USD); the `t` prefix is ours.
SYMBOL_PATTERN = re.compile(r"[A-Z0-9]{2,15}(?::[A-Z0-9]{2,15})?")
DATA_TYPES = ("trade", "book", "l3")
# Fields of our own `send` frames that are credentials: redacted in the raw capture.
SEND_SECRET_FIELDS: tuple[str, ...] = ()
# Trade ids are global across pairs.
TRADE_IDS_CONTIGUOUS = False
BOOK_SNAPSHOT_FROM_REST = False
L3_SNAPSHOT_FROM_REST = False
L3_ALIGN = "sequence"
# Book checksums (`cs`) are verified against the rebuilt book; a mismatch or a sequence gap
# needs a new subscription (the snapshot comes with it), so a resync reconnects.
L3_CHECKSUM = True

TIMESTAMP = 32768
SEQ_ALL = 65536
CHECKSUM = 131072
FLAGS = {"trade": TIMESTAMP, "book": TIMESTAMP, "l3": TIMESTAMP | SEQ_ALL | CHECKSUM}

INFO_RECONNECT = 20051  # server stopping/restarting: reconnect
INFO_MAINTENANCE_START = 20060  # pause until 20061 (at most ~120 s)
INFO_MAINTENANCE_END = 20061  # maintenance over: resubscribe everything


def build_ws_url(base_url: str, spec: StreamSpec) -> str:
    return base_url


def subscription(spec: StreamSpec) -> dict[str, str]:
    symbol = f"t{spec.symbol}"
    if spec.data_type == "trade":
        return {"event": "subscribe", "channel": "trades", "symbol": symbol}
    if spec.data_type in ("book", "l3"):
        return {
            "event": "subscribe",
            "channel": "book",
            "symbol": symbol,
            "prec": "R0" if spec.data_type == "l3" else "P0",
            "freq": "F0",
            "len": str(spec.book_len),
        }
    raise ValueError(f"bitfinex has no data type {spec.data_type!r}")


def build_subscribe(spec: StreamSpec, now_s: float) -> list[str]:
    """The conf flags first (they apply to subscriptions made after them), then one subscribe."""
    conf = {"event": "conf", "flags": FLAGS[spec.data_type]}
    return [orjson.dumps(conf).decode(), orjson.dumps(subscription(spec)).decode()]


def build_ping(now_s: float) -> str:
    """A client ping; the server answers with ``pong`` and the same ``cid``."""
    return orjson.dumps({"event": "ping", "cid": int(now_s * 1000)}).decode()


class Parser:
    """Parses the frames of one connection for one stream (symbol × data type).

    Deterministic state only: the channel id taken from the ``subscribed`` event.
    """

    def __init__(self, spec: StreamSpec) -> None:
        if spec.data_type not in DATA_TYPES:
            raise ValueError(f"bitfinex has no data type {spec.data_type!r}")
        self.symbol = spec.symbol
        self.data_type = spec.data_type
        self.flags = FLAGS[spec.data_type]
        self.chan_id: int | None = None

    def __call__(self, raw: str | bytes, ts_recv_us: int) -> list[Record]:
        try:
            # parse_float=str keeps each number's exact text ("0.1", "1e-8"); ints stay ints.
            msg: Any = json.loads(raw, parse_float=str)
        except ValueError as exc:
            raise UnexpectedMessage("frame is not JSON", excerpt=str(raw)[:200]) from exc
        try:
            if isinstance(msg, dict):
                return self._event(msg)
            if isinstance(msg, list) and len(msg) >= 2 and isinstance(msg[0], int):
                return self._channel(msg, ts_recv_us)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise UnexpectedMessage(
                f"malformed bitfinex frame: {exc!r}", excerpt=str(raw)[:200]
            ) from exc
        raise UnexpectedMessage("unknown bitfinex frame", excerpt=str(raw)[:200])

    # --- events ({"event": ...}) ----------------------------------------------------

    def _event(self, msg: dict[str, Any]) -> list[Record]:
        event = msg.get("event")
        if event == "info":
            code = msg.get("code")
            text = f"{code}: {msg.get('msg', '')}"
            if code in (INFO_RECONNECT, INFO_MAINTENANCE_END):
                return [Control("reconnect", detail=text)]
            if code == INFO_MAINTENANCE_START:
                return [Control("pause", detail=text)]
            if code is None:
                status = (msg.get("platform") or {}).get("status")
                if status == 0:
                    return [Control("pause", detail="platform status 0 (maintenance)")]
                return []
            return []  # other info codes are informational
        if event == "subscribed":
            self.chan_id = int(msg["chanId"])
            return [Control("subscribed", detail=orjson.dumps(msg).decode())]
        if event == "conf":
            if msg.get("status") not in (None, "OK"):
                return [Control("error", detail=f"conf refused: {msg}")]
            return []
        if event == "pong":
            return [Control("heartbeat")]
        if event == "error":
            return [Control("error", detail=f"{msg.get('code')}: {msg.get('msg')}")]
        if event == "unsubscribed":
            return []
        raise ValueError(f"unknown event {event!r}")

    # --- channel messages ([chanId, ...]) -------------------------------------------

    def _channel(self, msg: list[Any], ts_recv_us: int) -> list[Record]:
        if self.chan_id is not None and msg[0] != self.chan_id:
            raise ValueError(f"channel {msg[0]} is not ours ({self.chan_id})")
        body = msg[1]
        if body == "hb":
            seq, mts = _tail(msg, 2, self.flags)
            out: list[Record] = [Control("heartbeat")]
            if self.data_type == "l3" and seq is not None:
                out.append(
                    L3Event(mts or ts_recv_us // 1000, self.symbol, seq, "noop", "", "", "", "")
                )
            return out
        if body == "cs":
            seq, mts = _tail(msg, 3, self.flags)
            return [BookChecksum(self.symbol, mts or ts_recv_us // 1000, seq, int(msg[2]))]
        if self.data_type == "trade":
            return self._trade(msg)
        if not isinstance(body, list):
            raise ValueError(f"unexpected body {body!r}")
        seq, mts = _tail(msg, 2, self.flags)
        ts_ms = mts or ts_recv_us // 1000
        snapshot = not body or isinstance(body[0], list)
        if self.data_type == "l3":
            if snapshot:
                orders = [_raw_order(row) for row in body]
                return [L3Snapshot(self.symbol, ts_ms, seq, orders)]
            oid, side, price, size = _raw_order(body)
            action = "delete" if _num(body[1]) == "0" else "add"
            return [L3Event(ts_ms, self.symbol, seq, action, oid, side, price, size)]
        # book (P0): [PRICE, COUNT, AMOUNT]
        rows = body if snapshot else [body]
        bids: list[tuple[str, str]] = []
        asks: list[tuple[str, str]] = []
        for price, count, amount in (r[:3] for r in rows):
            a = _num(amount)
            level = (_num(price), "0" if int(count) == 0 else a.removeprefix("-"))
            (asks if a.startswith("-") else bids).append(level)
        return [
            BookUpdate(symbol=self.symbol, ts_ms=ts_ms, bids=bids, asks=asks, is_snapshot=snapshot)
        ]

    def _trade(self, msg: list[Any]) -> list[Record]:
        kind = msg[1]
        if isinstance(kind, list) or kind == "tu":
            return []  # the snapshot (past trades) and the repeated "tu" update
        if kind != "te":
            raise ValueError(f"unexpected trades message {kind!r}")
        tid, mts, amount, price = msg[2][:4]
        a = _num(amount)
        return [
            Trade(
                event_time_ms=int(mts),
                symbol=self.symbol,
                trade_id=int(tid),
                price=_num(price),
                quantity=a.removeprefix("-"),
                trade_time_ms=int(mts),
                # AMOUNT < 0: the taker sold, so the buyer was the maker
                is_buyer_maker=a.startswith("-"),
            )
        ]


def make_parser(spec: StreamSpec) -> Callable[[str | bytes, int], list[Record]]:
    """The parser of one stream; it learns the channel id from each `subscribed` event."""
    return Parser(spec)


def _tail(msg: list[Any], start: int, flags: int) -> tuple[int | None, int | None]:
    """The appended ``SEQ`` and ``MTS`` after position ``start``, as the conf flags add them."""
    extra = [v for v in msg[start:] if isinstance(v, int) and not isinstance(v, bool)]
    seq = mts = None
    if flags & SEQ_ALL and extra:
        seq = extra.pop(0)
    if flags & TIMESTAMP and extra:
        mts = extra[0]
    return seq, mts


def _num(value: object) -> str:
    """A JSON number as its text (floats arrive as strings via parse_float=str)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"not a number: {value!r}")
    return str(value)


def _raw_order(row: list[Any]) -> tuple[str, str, str, str]:
    oid, price, amount = row[:3]
    if not isinstance(oid, int):
        raise ValueError(f"order id {oid!r}")
    a = _num(amount)
    return str(oid), "A" if a.startswith("-") else "B", _num(price), a.removeprefix("-")
