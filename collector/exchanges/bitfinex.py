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
| `book` | `[chan,"cs",CHECKSUM]` | BookChecksum (QA: parse_checksum) | docs (checksum) |
| (all) | `[chan,"hb"]` | Control(heartbeat) (+ L3Event noop carrying SEQ for l3) | docs |
| events | `info` 20051 / 20060 / 20061 | Control reconnect / pause / reconnect | docs, ws-general |
| events | `info` platform status 0 | Control(pause) | docs |
| events | `subscribed` / `conf` / `pong` | Control(subscribed) / [] / Control(heartbeat) | docs |
| events | `error` | Control(error) → fatal | docs |
| `/v2/conf/pub:list:pair:exchange` | REST listings | Listing (see "listings" below) | docs |

Boundary, as ``UnexpectedMessage`` reason [field] (field names as in the docs):

- frame: JSON (stdlib `json`: RecursionError, NaN/Infinity, bad UTF-8 and huge ints are
  caught), an event object or `[chanId, ...]` → malformed; an unknown event or trades
  message → unknown_type;
- `subscribed` must be ours (`symbol` → foreign_symbol, `channel`/`prec` → unknown_type);
  channel messages before it or of another channel id → foreign_symbol;
- numbers are JSON numbers, never JSON strings, kept as their exact text (<= 40 characters,
  exponent allowed: `1e-08`, `-2.5e-05` are written as sent, since the checksum hashes them
  so) → bad_value [PRICE / AMOUNT / ...];
- `PRICE` > 0 and unsigned (an R0 update's 0 deletes); `AMOUNT` signed, non-zero (the sign is
  the side); `ID`, `ORDER_ID`, `SEQ`, `COUNT` ints in [0, 2**63), `COUNT` 0 only outside
  snapshots; `MTS` int ms in [2009, 2100); `CHECKSUM` a signed 32-bit int;
- rows that are not `[ID, MTS, AMOUNT, PRICE]` → bad_value [TRADE]; not `[PRICE, COUNT,
  AMOUNT]` / `[ORDER_ID, PRICE, AMOUNT]` → bad_value [book].

Quirks: the conf flags append fields to every array message in the order ``[..., SEQ, MTS]``
(``SEQ_ALL`` 65536 is a per-connection sequence that heartbeats and checksums also consume;
``TIMESTAMP`` 32768 appends the time in ms); array lengths must never be hard-coded. Numbers
are JSON numbers: they are kept as the exact text sent (the checksum hashes amounts as sent).
Sizes are written unsigned; the sign gives the side (AMOUNT > 0 bid, < 0 ask). Frames carry a
channel id, not the symbol, so the parser is made per connection from the stream spec
(:func:`make_parser`) and learns the channel id from the ``subscribed`` event.

Options (``OPTIONS``, in ``[exchanges.bitfinex]``): ``book_len``, the orders (R0) or price
levels (P0) per side of a book subscription: 1, 25, 100 or 250.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

import orjson

from collector.common.errors import BAD_VALUE, FOREIGN_SYMBOL, MISSING_FIELD, UnexpectedMessage
from collector.exchanges.base import (
    MAX_DECIMAL_CHARS,
    MAX_ID,
    MAX_NOTICE_FIELDS,
    FieldWatch,
    IntOption,
    Notice,
    Option,
    StreamSpec,
    bad_value,
    excerpt,
    foreign_symbol,
    get,
    id_int,
    malformed,
    missing_field,
    notice_detail,
    tell,
    text,
    time_ms,
    unknown_type,
    with_context,
)
from collector.exchanges.listing import Listing, ParsedListings, screen
from collector.model import (
    BookChecksum,
    BookUpdate,
    Control,
    L3Event,
    L3Order,
    L3Snapshot,
    Record,
    Trade,
)

EXCHANGE = "bitfinex"
# Production endpoints (the config file's [exchanges.bitfinex] ws_url/rest_url override them).
DEFAULT_WS_URL = "wss://api-pub.bitfinex.com/ws/2"
DEFAULT_REST_URL = "https://api-pub.bitfinex.com"
# Cloud regions it refuses (prefixes, see base.py): none known.
EXCLUDED_REGION_PREFIXES: tuple[str, ...] = ()
FATAL_HANDSHAKE_STATUS: Mapping[int, str] = {}
# Options of [exchanges.bitfinex] beyond ws_url, rest_url, max_connection_age_s.
BOOK_LEN = IntOption("book_len", 100, choices=(1, 25, 100, 250))
OPTIONS: tuple[Option, ...] = (BOOK_LEN,)
# Public data needs no API key.
CREDENTIAL_ENV = None
read_credentials = None
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
# Our subscribe frames do not depend on an option the parser needs.
options_from_subscribe = None

# The documented fields of the `subscribed` ack (ws-public-*): an ack with another field is
# parsed all the same and told to the parser's notice hook (base.FieldWatch). Array messages
# have positions, not names: a trade or book row longer than documented is told as its extra
# positions (``te.TRADE[4]``, ``book.book[3]``).
FIELDS = FieldWatch(
    {"subscribed": ("event", "channel", "chanId", "symbol", "pair", "prec", "freq", "len")}
)
TRADE_ROW = 4  # [ID, MTS, AMOUNT, PRICE]
BOOK_ROW = 3  # [PRICE, COUNT, AMOUNT] (P0) or [ORDER_ID, PRICE, AMOUNT] (R0)


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
            "len": str(BOOK_LEN.of(spec)),
        }
    raise ValueError(f"bitfinex has no data type {spec.data_type!r}")


def build_subscribe(spec: StreamSpec, now_s: float) -> list[str]:
    """The conf flags first (they apply to subscriptions made after them), then one subscribe."""
    conf = {"event": "conf", "flags": FLAGS[spec.data_type]}
    return [orjson.dumps(conf).decode(), orjson.dumps(subscription(spec)).decode()]


def build_ping(now_s: float) -> str:
    """A client ping; the server answers with ``pong`` and the same ``cid``."""
    return orjson.dumps({"event": "ping", "cid": int(now_s * 1000)}).decode()


class _Num(str):
    """The exact text of a JSON number with a fraction or exponent (``parse_float``): a str
    subclass, so a number can be told from a JSON string that looks like one."""

    __slots__ = ()


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


# Bitfinex numbers are JSON numbers, kept as the exact text sent (the checksum hashes them
# as sent; e.g. `-2.5e-05`, `1e-08`): JSON's own grammar, with the length bounded and at most
# a 3-digit exponent. The sign is only legal on AMOUNT (it is the side).
_SIGNED = re.compile(
    rf"(?=.{{1,{MAX_DECIMAL_CHARS}}}\Z)-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]{{1,3}})?"
)
_NONZERO = re.compile(r"-?(?=[0-9.]*[1-9])")


class Parser:
    """Parses the frames of one connection for one stream (symbol × data type).

    Deterministic state only: the channel id taken from the ``subscribed`` event of our own
    subscription (its ``symbol``, ``channel`` and ``prec`` are checked). Channel messages
    before it, or of another channel id, are ``foreign_symbol``: they cannot be attributed to
    this stream.
    """

    def __init__(self, spec: StreamSpec, notice: Notice | None = None) -> None:
        if spec.data_type not in DATA_TYPES:
            raise ValueError(f"bitfinex has no data type {spec.data_type!r}")
        self.symbol = spec.symbol
        self.data_type = spec.data_type
        self.flags = FLAGS[spec.data_type]
        self.chan_id: int | None = None
        self._subscription = subscription(spec)
        self.notice = notice

    def __call__(self, raw: str | bytes, ts_recv_us: int) -> list[Record]:
        try:
            # parse_float keeps each number's exact text ("0.1", "1e-8"); ints stay ints.
            msg: Any = json.loads(raw, parse_float=_Num, parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:
            # ValueError: not JSON, not UTF-8, NaN/Infinity, an int of > 4300 digits;
            # RecursionError: nesting deeper than the interpreter's stack (json is recursive).
            raise malformed(f"frame is not JSON: {type(exc).__name__}", raw) from None
        try:
            if type(msg) is dict:
                return self._event(msg, raw)
            if type(msg) is list and len(msg) >= 2:
                return self._channel(msg, raw, ts_recv_us)
        except UnexpectedMessage as exc:
            if exc.reason in (BAD_VALUE, MISSING_FIELD):
                raise with_context(exc, "malformed bitfinex frame") from None
            raise
        raise malformed("unknown bitfinex frame (not an event or a channel message)", raw)

    # --- events ({"event": ...}) ----------------------------------------------------

    def _event(self, msg: dict[str, Any], raw: str | bytes) -> list[Record]:
        event = msg.get("event")
        if event == "info":
            code = msg.get("code")
            text_ = f"{text(code)}: {text(msg.get('msg', ''))}"
            if code in (INFO_RECONNECT, INFO_MAINTENANCE_END) and type(code) is int:
                return [Control("reconnect", detail=text_)]
            if code == INFO_MAINTENANCE_START and type(code) is int:
                return [Control("pause", detail=text_)]
            if code is None:
                platform = msg.get("platform")
                status = platform.get("status") if type(platform) is dict else None
                if status == 0 and type(status) is int:
                    return [Control("pause", detail="platform status 0 (maintenance)")]
                return []
            return []  # other info codes are informational
        if event == "subscribed":
            self._check_subscribed(msg, raw)
            self.chan_id = id_int(get(msg, "chanId", raw, event), "chanId", raw)
            if self.notice is not None:
                tell(self.notice, raw, FIELDS.unknown(event, msg))  # once per connection
            return [Control("subscribed", detail=text(msg, 4000))]
        if event == "conf":
            if msg.get("status") not in (None, "OK"):
                return [Control("error", detail=f"conf refused: {text(msg)}")]
            return []
        if event == "pong":
            return [Control("heartbeat")]
        if event == "error":
            return [Control("error", detail=f"{text(msg.get('code'))}: {text(msg.get('msg'))}")]
        if event == "unsubscribed":
            return []
        raise unknown_type(f"unknown event {text(event, 40)!r}", raw, event)

    def _check_subscribed(self, msg: dict[str, Any], raw: str | bytes) -> None:
        """A ``subscribed`` ack of another subscription must not give us its channel id."""
        sub = self._subscription
        symbol = get(msg, "symbol", raw, "subscribed")
        if symbol != sub["symbol"]:
            if type(symbol) is not str:
                raise bad_value("symbol", symbol, raw, "not a string")
            raise foreign_symbol("symbol", symbol, sub["symbol"], raw)
        if msg.get("channel") != sub["channel"] or (
            "prec" in sub and msg.get("prec", sub["prec"]) != sub["prec"]
        ):
            raise unknown_type(
                f"subscription {text(msg, 120)} is not this collector's", raw, msg.get("channel")
            )

    # --- channel messages ([chanId, ...]) -------------------------------------------

    def _channel(self, msg: list[Any], raw: str | bytes, ts_recv_us: int) -> list[Record]:
        chan = msg[0]
        if type(chan) is not int:
            raise malformed("unknown bitfinex frame (no channel id)", raw)
        if chan != self.chan_id:
            raise UnexpectedMessage(
                f"channel {chan} is not ours ({self.chan_id})",
                excerpt=excerpt(raw),
                reason=FOREIGN_SYMBOL,
            )
        body = msg[1]
        if body == "hb":
            seq, mts = _tail(msg, 2, self.flags, raw)
            out: list[Record] = [Control("heartbeat")]
            if self.data_type == "l3" and seq is not None:
                out.append(
                    L3Event(mts or ts_recv_us // 1000, self.symbol, seq, "noop", "", "", "", "")
                )
            return out
        if body == "cs":
            if len(msg) < 3:
                raise missing_field("CHECKSUM", raw, "cs")
            checksum = msg[2]
            if type(checksum) is not int or not -(2**31) <= checksum < 2**31:
                raise bad_value("CHECKSUM", checksum, raw, "not a signed 32-bit integer")
            seq, mts = _tail(msg, 3, self.flags, raw)
            return [BookChecksum(self.symbol, mts or ts_recv_us // 1000, seq, checksum)]
        if self.data_type == "trade":
            return self._trade(msg, raw)
        if type(body) is not list:
            raise unknown_type(f"unexpected book message {text(body, 40)!r}", raw, body)
        seq, mts = _tail(msg, 2, self.flags, raw)
        ts_ms = mts or ts_recv_us // 1000
        snapshot = not body or type(body[0]) is list
        records = self._book(body, raw, seq, ts_ms, snapshot)
        if self.notice is not None:
            tell(self.notice, raw, _longer_rows(body if snapshot else [body]))
        return records

    def _book(
        self, body: list[Any], raw: str | bytes, seq: int | None, ts_ms: int, snapshot: bool
    ) -> list[Record]:
        """A book message: P0 levels (book) or R0 orders (l3), snapshot or update."""
        if self.data_type == "l3":
            if snapshot:
                orders = [_raw_order(row, raw, snapshot=True) for row in body]
                return [L3Snapshot(self.symbol, ts_ms, seq, orders)]
            oid, side, price, size = _raw_order(body, raw, snapshot=False)
            action = "delete" if price == "0" else "add"
            return [L3Event(ts_ms, self.symbol, seq, action, oid, side, price, size)]
        # book (P0): [PRICE, COUNT, AMOUNT]
        rows = body if snapshot else [body]
        bids: list[tuple[str, str]] = []
        asks: list[tuple[str, str]] = []
        for row in rows:
            if type(row) is not list or len(row) < 3:
                raise bad_value("book", row, raw, "not [PRICE, COUNT, AMOUNT]")
            price = _price(row[0], "PRICE", raw)
            count = row[1]
            if type(count) is not int or not 0 <= count < MAX_ID:
                raise bad_value("COUNT", count, raw, "not a count")
            if count == 0 and snapshot:
                raise bad_value("COUNT", count, raw, "a deleted level in a snapshot")
            a = _amount(row[2], raw)
            level = (price, "0" if count == 0 else a.removeprefix("-"))
            (asks if a.startswith("-") else bids).append(level)
        return [
            BookUpdate(symbol=self.symbol, ts_ms=ts_ms, bids=bids, asks=asks, is_snapshot=snapshot)
        ]

    def _trade(self, msg: list[Any], raw: str | bytes) -> list[Record]:
        kind = msg[1]
        if type(kind) is list or kind == "tu":
            return []  # the snapshot (past trades) and the repeated "tu" update
        if kind != "te":
            raise unknown_type(f"unexpected trades message {text(kind, 40)!r}", raw, kind)
        if len(msg) < 3:
            raise missing_field("TRADE", raw, "te")
        row = msg[2]
        if type(row) is not list or len(row) < 4:
            raise bad_value("TRADE", row, raw, "not [ID, MTS, AMOUNT, PRICE]")
        tid, mts, amount, price = row[:4]
        a = _amount(amount, raw)
        t = time_ms(mts, "MTS", raw)
        if self.notice is not None and len(row) > TRADE_ROW:
            tell(self.notice, raw, _extra_positions("te", "TRADE", row, TRADE_ROW))
        return [
            Trade(
                event_time_ms=t,
                symbol=self.symbol,
                trade_id=id_int(tid, "ID", raw),
                price=_price(price, "PRICE", raw),
                quantity=a.removeprefix("-"),
                trade_time_ms=t,
                # AMOUNT < 0: the taker sold, so the buyer was the maker
                is_buyer_maker=a.startswith("-"),
            )
        ]


def make_parser(
    spec: StreamSpec, notice: Notice | None = None
) -> Callable[[str | bytes, int], list[Record]]:
    """The parser of one stream; it learns the channel id from each `subscribed` event. A
    parsed frame with fields beyond the documented ones is told to ``notice``."""
    return Parser(spec, notice)


def _extra_positions(kind: str, name: str, row: list[Any], documented: int) -> str:
    """The notice detail of a row longer than documented: its extra positions, e.g.
    ``te.TRADE[4]`` (``""`` for a row of the documented length)."""
    extra = len(row) - documented
    shown = range(documented, documented + min(extra, MAX_NOTICE_FIELDS))
    return notice_detail(kind, [f"{name}[{i}]" for i in shown], total=extra)


def _longer_rows(rows: list[Any]) -> str:
    """The notice detail of the first book row longer than documented (``""``: none)."""
    for row in rows:
        if type(row) is list and len(row) > BOOK_ROW:
            return _extra_positions("book", "book", row, BOOK_ROW)
    return ""


def _tail(
    msg: list[Any], start: int, flags: int, raw: str | bytes
) -> tuple[int | None, int | None]:
    """The appended ``SEQ`` and ``MTS`` after position ``start``, as the conf flags add them."""
    extra = [v for v in msg[start:] if type(v) is int]
    seq = mts = None
    if flags & SEQ_ALL and extra:
        seq = id_int(extra.pop(0), "SEQ", raw)
    if flags & TIMESTAMP and extra:
        mts = time_ms(extra[0], "MTS", raw)
    return seq, mts


def _number(value: object, field: str, raw: str | bytes) -> str:
    """A JSON number (never a JSON string, bool or null) as its exact text, in the grammar."""
    if type(value) is int:
        text_ = str(value)
    elif type(value) is _Num:
        text_ = str.__str__(value)
    else:
        raise bad_value(field, value, raw, "not a JSON number")
    if _SIGNED.fullmatch(text_) is None:
        raise bad_value(field, text_, raw, "not a number of the grammar")
    return text_


def _price(value: object, field: str, raw: str | bytes) -> str:
    """A price: > 0 (no sign)."""
    p = _number(value, field, raw)
    if p.startswith("-") or _NONZERO.match(p) is None:
        raise bad_value(field, p, raw, "not a positive price")
    return p


def _amount(value: object, raw: str | bytes) -> str:
    """AMOUNT: signed (the sign is the side), never zero (no side)."""
    a = _number(value, "AMOUNT", raw)
    if _NONZERO.match(a) is None:
        raise bad_value("AMOUNT", a, raw, "zero has no side")
    return a


def _raw_order(row: object, raw: str | bytes, *, snapshot: bool) -> tuple[str, str, str, str]:
    """``[ORDER_ID, PRICE, AMOUNT]``; PRICE 0 deletes (updates only)."""
    if type(row) is not list or len(row) < 3:
        raise bad_value("book", row, raw, "not [ORDER_ID, PRICE, AMOUNT]")
    oid = id_int(row[0], "ORDER_ID", raw)
    price = _number(row[1], "PRICE", raw)
    if price != "0" or snapshot:
        price = _price(row[1], "PRICE", raw)
    a = _amount(row[2], raw)
    return str(oid), "A" if a.startswith("-") else "B", price, a.removeprefix("-")


# --- checksums, for QA's L3 cross-check -------------------------------------------------


def parse_checksum(frame: str | bytes) -> int | None:
    """The ``CHECKSUM`` of a ``[chanId,"cs",CHECKSUM,...]`` frame, else None.

    Cheap on every other frame (a substring test first). The channel id is not checked: an
    l3 connection carries one subscription.
    """
    if isinstance(frame, bytes):
        if b'"cs"' not in frame:
            return None
    elif '"cs"' not in frame:
        return None
    msg = orjson.loads(frame)
    if type(msg) is list and len(msg) >= 3 and msg[1] == "cs" and type(msg[2]) is int:
        return int(msg[2])
    return None


def book_checksum(orders: Iterable[L3Order]) -> int:
    """The raw-book (R0) checksum of a book given as ``(order_id, side, price, size)``:
    signed CRC32 of ``id:amount`` of the top 25 bids and asks interleaved, orders sorted by
    price (best first) then id, amounts as sent (asks negative): docs ws-websocket-checksum.
    """
    bids: list[tuple[Decimal, int, str]] = []
    asks: list[tuple[Decimal, int, str]] = []
    for oid, side, price, size in orders:
        (bids if side == "B" else asks).append((Decimal(price), int(oid), size))
    top_bids = sorted(bids, key=lambda t: (-t[0], t[1]))[:25]
    top_asks = sorted(asks, key=lambda t: (t[0], t[1]))[:25]
    parts: list[str] = []
    for k in range(25):
        if k < len(top_bids):
            parts += [str(top_bids[k][1]), top_bids[k][2]]
        if k < len(top_asks):
            parts += [str(top_asks[k][1]), "-" + top_asks[k][2]]
    crc = zlib.crc32(":".join(parts).encode())
    return crc - (1 << 32) if crc >= (1 << 31) else crc


# Capabilities this exchange does not have (the ExchangeAdapter contract). Frames carry a
# channel id, not a symbol: there is no stateless parse (a parser is made per stream).
parse = None
check_spec = None
build_snapshot_url = None
snapshot_weight = None
parse_snapshot = None
build_l3_snapshot_url = None
parse_l3_snapshot = None
build_l2_view_url = None
parse_l2_view = None


# --- listings: GET /v2/conf/pub:list:pair:exchange -----------------------------------------
#
# Not recorded: built from docs.bitfinex.com/reference/rest-public-conf ("Configs": the listing
# request `pub:list:pair:exchange`, "a list of valid exchange trading pairs"; reply
# `[["BTCUSD","ETHUSD",...]]`) and docs.bitfinex.com/docs/ws-general ("Supported Pairs"), as
# summarised in exchanges.md §4; the test fixture is
# tests/data/listings/bitfinex_pub_list_pair_exchange.json.
#
# | Listing field | source | evidence |
# |---|---|---|
# | trading_pair | the list's entry (BTCUSD, TESTBTC:TESTUSD); subscribed as `t` + it | docs |
# | base / quote | 3 + 3 letters, or the two sides of its one ":" | docs, exchanges.md §4 |
# | status | `listed`: the list has no per-pair status (being in it means tradable) | docs |
# | trading_enabled | True (the same) | docs |
# | tick_size, lot_size, min_notional | None (prices have 5 significant digits, no tick) | docs |
#
# One request: `pub:info:pair` (min/max order size in the base currency, margin figures) has
# nothing that fits a Listing column (min_notional is in the quote currency), so it is not
# fetched. A pair missing from the list is a delisting. Names are untrusted: every entry is
# screened (`listing.screen`) against SYMBOL_PATTERN and the asset grammar; a name that is
# neither 3 + 3 letters nor BASE:QUOTE is refused (skipped, counted, alerted), so the rest of
# the body still applies; a body that is not `[[str, ...]]` is a broken body.

LISTINGS_PATH = "/v2/conf/pub:list:pair:exchange"
LISTED_STATUS = "listed"


def build_listings_url(base_url: str) -> str:
    """The exchange-pairs config URL under a REST base (``https://api-pub.bitfinex.com``)."""
    return base_url.rstrip("/") + LISTINGS_PATH


def parse_listing_body(body: str | bytes) -> ParsedListings:
    """Parse a ``pub:list:pair:exchange`` body and screen every listing (``listing.screen``,
    ``SYMBOL_PATTERN``): listings that fit, and the refused ones with the reason.

    Raises:
        UnexpectedMessage: the body is not JSON, or not ``[[name, ...]]`` of strings.
    """
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _broken(f"not JSON ({exc})", body) from exc
    if not (isinstance(doc, list) and len(doc) == 1 and isinstance(doc[0], list)):
        raise _broken("body is not [[pair, ...]]", body)
    names = doc[0]
    if not all(isinstance(n, str) for n in names):
        raise _broken("a pair is not a string", body)
    return screen([_listing(n) for n in names], SYMBOL_PATTERN)


def _listing(name: str) -> Listing:
    if ":" in name:
        base, _, quote = name.partition(":")
    elif len(name) == 6:
        base, quote = name[:3], name[3:]
    else:  # neither form: the empty assets make the screen refuse it, naming the pair
        base = quote = ""
    return Listing(
        exchange=EXCHANGE,
        trading_pair=name,
        base=base,
        quote=quote,
        status=LISTED_STATUS,
        trading_enabled=True,
    )


def _broken(what: str, raw: str | bytes) -> UnexpectedMessage:
    """A listings body that is not the documented shape (the poll fails, nothing changes)."""
    return UnexpectedMessage(f"bitfinex pub:list:pair:exchange: {what}", excerpt=excerpt(raw))


# Trade backfill (ops.dataset): not fillable by id. Trade ids are global across pairs (not
# contiguous per symbol), so the ids a stream missed cannot be named; `trades/<sym>/hist`
# serves time windows, which the dataset does not treat as a proof of completeness.
BACKFILL_PAGE_SIZE = 0
BACKFILL_ASCENDING = True
BACKFILL_WEIGHT_PER_MIN = 0
build_trades_backfill_url = None
backfill_weight = None
parse_backfill_trades = None
