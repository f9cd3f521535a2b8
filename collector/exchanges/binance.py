"""Binance Spot: stream names, subscribe frames, parsers, listings (pure).

Docs: github.com/binance/binance-spot-api-docs `web-socket-streams.md`, `rest-api.md`,
`filters.md` (see shared/docs/exchanges.md §1).

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
| `/api/v3/exchangeInfo` | REST listings | Listing (see "Listings" below) | recorded 2021-10-11 |

Boundary (base.py grammar), as ``UnexpectedMessage`` reason [field]:

- frame: one JSON object (orjson: no RecursionError at any depth) → malformed; no known
  shape or event → unknown_type;
- `stream` a string → bad_value [stream]; make_parser: the stream's own, else another
  symbol's → foreign_symbol, an ignored stream of our symbol (bookTicker, kline..) → [], any
  other of ours → unknown_type; `data` an object → bad_value [data];
- `s`: make_parser: the stream's symbol → foreign_symbol; parse: fits `SYMBOL_PATTERN`;
- `E`, `T`: int ms in [2009, 2100); `t`, `a`, `U`, `u`, `lastUpdateId`: ints in [0, 2**63),
  `U` <= `u`; `p`, `q`: unsigned decimals > 0; `b`, `a`, `bids`, `asks`: rows
  `[price > 0, qty >= 0]` (snapshots: qty > 0); `m`: a boolean → bad_value [the field];
- a required field absent → missing_field [the field].

Quirks: the connection lives at most 24 h (proactive reconnect is a setting); the server pings
every 20 s and the websocket library answers; at most 5 incoming messages/s per connection, so
we send exactly one SUBSCRIBE per connection.

Options (``OPTIONS``; in the shared ``[collector]`` table, where they have always been):
``binance_trade_stream`` (trade | aggTrade), ``depth_update_speed_ms`` (1000 | 100) and
``snapshot_limit`` (levels of the REST snapshot, 1-5000).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple, TypedDict

import orjson

from collector.common.errors import UnexpectedMessage
from collector.exchanges.base import (
    MAX_ID,
    MAX_TIME_MS,
    MIN_TIME_MS,
    FieldWatch,
    IntOption,
    Notice,
    Option,
    OptionValue,
    Parse,
    StreamSpec,
    StrOption,
    bad_value,
    check_levels,
    excerpt,
    foreign_symbol,
    get,
    id_int,
    is_positive,
    load_object,
    positive,
    symbol_of,
    tell,
    text,
    time_ms,
    unknown_type,
)
from collector.exchanges.listing import Listing, ParsedListings, screen
from collector.model import BookUpdate, Control, Record, Trade

EXCHANGE = "binance"
# Production endpoints (the config file's [exchanges.binance] ws_url/rest_url override them).
DEFAULT_WS_URL = "wss://stream.binance.com:9443"
DEFAULT_REST_URL = "https://api.binance.com"
# Options (config keys of [collector], kept where they were before the registry).
TRADE_STREAM = StrOption(
    "binance_trade_stream", "trade", choices=("trade", "aggTrade"), table="collector"
)
DEPTH_SPEED_MS = IntOption("depth_update_speed_ms", 1000, table="collector", choices=(100, 1000))
SNAPSHOT_LIMIT = IntOption("snapshot_limit", 1000, table="collector", min_value=1, max_value=5000)
OPTIONS: tuple[Option, ...] = (TRADE_STREAM, DEPTH_SPEED_MS, SNAPSHOT_LIMIT)
# Market data needs no API key.
CREDENTIAL_ENV = None
read_credentials = None
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
        return f"{s}@{TRADE_STREAM.of(spec)}"
    if spec.data_type == "book":
        return f"{s}@depth@100ms" if DEPTH_SPEED_MS.of(spec) == 100 else f"{s}@depth"
    raise ValueError(f"binance has no data type {spec.data_type!r}")


def build_ws_url(base_url: str, spec: StreamSpec) -> str:
    # The combined endpoint wraps each event with its stream name; we subscribe over the socket
    # so that the server acknowledges the stream (an unknown one is refused with an error).
    return f"{base_url}/stream"


def build_subscribe(spec: StreamSpec, now_s: float) -> list[str]:
    msg = {"method": "SUBSCRIBE", "params": [stream_name(spec)], "id": 1}
    return [orjson.dumps(msg).decode()]


def options_from_subscribe(frame: str) -> dict[str, OptionValue]:
    """The options one of our SUBSCRIBE frames was built with: its stream name gives
    ``binance_trade_stream`` (``@trade`` / ``@aggTrade``) or ``depth_update_speed_ms``
    (``@depth`` / ``@depth@100ms``); ``{}`` for anything else."""
    try:
        msg = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return {}
    params = msg.get("params") if type(msg) is dict else None
    if type(params) is not list:
        return {}
    for stream in params:
        suffix = stream.partition("@")[2] if type(stream) is str else ""
        if suffix in TRADE_STREAM.choices:
            return {TRADE_STREAM.key: suffix}
        if suffix == "depth@100ms":
            return {DEPTH_SPEED_MS.key: 100}
        if suffix == "depth":
            return {DEPTH_SPEED_MS.key: 1000}
    return {}


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
    """``{"lastUpdateId":N,"bids":[[p,q]..],"asks":[..]}`` → a snapshot BookUpdate (ts 0).

    The body names no symbol: the caller's request did. Snapshot quantities are > 0.
    """
    msg = load_object(body)
    last = id_int(get(msg, "lastUpdateId", body), "lastUpdateId", body)
    return BookUpdate(
        symbol=symbol,
        ts_ms=0,
        bids=check_levels(get(msg, "bids", body), "bids", body, zero_ok=False),
        asks=check_levels(get(msg, "asks", body), "asks", body, zero_ok=False),
        is_snapshot=True,
        first_id=last,
        last_id=last,
    )


_GOOD_MAX = 1 << 14
_loads = orjson.loads
_new_tuple = tuple.__new__

# The documented fields of what we parse (web-socket-streams.md; `M` is documented as
# "ignore"): a frame with another field is parsed all the same and told to the parser's
# notice hook (base.FieldWatch).
FIELDS = FieldWatch(
    {
        "combined": ("stream", "data"),
        "trade": ("e", "E", "s", "t", "p", "q", "T", "m", "M"),
        "aggTrade": ("e", "E", "s", "a", "p", "q", "f", "l", "T", "m", "M"),
        "depthUpdate": ("e", "E", "s", "U", "u", "b", "a"),
        "serverShutdown": ("e", "E"),
        "ack": ("result", "id"),
    }
)
_EVENTS = frozenset({"trade", "aggTrade", "depthUpdate", "serverShutdown"})
# The trade fast path compares the field counts inline.
_TRADE_FIELDS = FIELDS.usual["trade"]
_COMBINED_FIELDS = FIELDS.usual["combined"]
_USUAL: dict[object, int] = {k: v for k, v in FIELDS.usual.items()}  # any `e` is looked up


class _Stream(NamedTuple):
    """What a stream's parser expects: its symbol, combined-stream name and payload event."""

    symbol: str  # BTCUSDT
    name: str  # btcusdt@trade
    prefix: str  # btcusdt (stream names use the lowercase symbol)
    event: str  # trade | aggTrade | depthUpdate


def make_parser(spec: StreamSpec, notice: Notice | None = None) -> Parse:
    """The parser of one stream: a frame of another symbol raises ``foreign_symbol`` (the
    combined ``stream`` name or the payload's ``s``); a frame of another stream of the same
    symbol that we never subscribe to is ignored, any other is ``unknown_type``. A parsed
    frame with fields beyond the documented ones is told to ``notice``."""
    name = stream_name(spec)
    event = "depthUpdate" if spec.data_type == "book" else TRADE_STREAM.of(spec)
    if event not in ("trade", "aggTrade", "depthUpdate"):
        raise ValueError(f"binance has no trade stream {event!r}")
    expect = _Stream(spec.symbol, name, spec.symbol.lower(), event)
    symbol = spec.symbol
    # Decimal strings already seen to pass the grammar: prices and sizes repeat a lot, and a
    # set lookup costs a fifth of a regex match. Bounded; it never changes what is accepted.
    good: set[str] = set()

    def positive_seen(value: str) -> bool:
        if is_positive(value) is None:
            return False
        if len(good) >= _GOOD_MAX:
            good.clear()
        good.add(value)
        return True

    def parse_stream(raw: str | bytes, ts_recv_us: int) -> list[Record]:
        try:
            msg = _loads(raw)  # (load_object inlined: a call per frame saved)
        except orjson.JSONDecodeError:
            msg = None
        if type(msg) is not dict:
            msg = load_object(raw)  # raises what is wrong with it
        data = msg.get("data")
        # The hot path of `@trade` streams: accept a well-formed trade of our stream in one
        # expression; anything else takes the slow path, which says exactly what is wrong.
        if (
            type(data) is dict
            and data.get("e") == "trade"
            and msg.get("stream") == name
            and len(data) == _TRADE_FIELDS
            and len(msg) == _COMBINED_FIELDS
        ):
            try:
                e_ms, s, tid, p, q = data["E"], data["s"], data["t"], data["p"], data["q"]
                t_ms, m = data["T"], data["m"]
            except KeyError:
                pass
            else:
                if (
                    s == symbol
                    and type(e_ms) is int
                    and type(tid) is int
                    and type(t_ms) is int
                    and type(m) is bool
                    and type(p) is str
                    and type(q) is str
                    and MIN_TIME_MS <= e_ms < MAX_TIME_MS
                    and MIN_TIME_MS <= t_ms < MAX_TIME_MS
                    and 0 <= tid < MAX_ID
                    and (p in good or positive_seen(p))
                    and (q in good or positive_seen(q))
                ):
                    # (Trade's fields in order, built without NamedTuple's Python __new__)
                    return [_new_tuple(Trade, (e_ms, symbol, tid, p, q, t_ms, m))]
        records = _dispatch(msg, raw, expect)
        if notice is not None and records:
            # the field counts first (cheap); the fields only when a count is unusual
            d = msg if data is None else data
            if len(msg) != _COMBINED_FIELDS or (
                type(d) is dict and len(d) != _USUAL.get(d.get("e"), len(d))
            ):
                _tell_news(notice, msg, raw)
        return records

    return parse_stream


def _tell_news(notice: Notice, msg: dict[str, Any], raw: str | bytes) -> None:
    """Tell ``notice`` the fields of a parsed frame beyond the documented ones."""
    if "stream" in msg:
        outer, data = FIELDS.check("combined", msg), msg.get("data")
    elif "result" in msg:
        outer, data = FIELDS.check("ack", msg), None
    else:
        outer, data = "", msg
    inner = ""
    if type(data) is dict:
        e = data.get("e")
        if type(e) is str and e in _EVENTS:
            inner = FIELDS.check(e, data)
    tell(notice, raw, outer, inner)


def parse(raw: str | bytes, ts_recv_us: int) -> list[Record]:
    """One websocket frame of any symbol → records (the symbol only has to fit
    ``SYMBOL_PATTERN``). Collectors use :func:`make_parser`; this serves tools such as QA."""
    return _dispatch(load_object(raw), raw, None)


def _dispatch(msg: dict[str, Any], raw: str | bytes, expect: _Stream | None) -> list[Record]:
    if "stream" in msg and "data" in msg:
        stream = msg["stream"]
        if type(stream) is not str:
            raise bad_value("stream", stream, raw, "not a string")
        if stream.startswith("!"):
            # an all-market stream: only `!serverShutdown` is known, and carries no data
            data = msg["data"]
            if type(data) is dict and data.get("e") == "serverShutdown":
                return [Control("reconnect", detail="serverShutdown")]
            raise unknown_type(f"stream {stream[:60]!r} is not this collector's", raw, stream)
        if expect is not None and stream != expect.name:
            if stream.partition("@")[0] != expect.prefix:
                raise foreign_symbol("stream", stream, expect.name, raw)
            if _is_ignored(stream):
                return []
            raise unknown_type(f"stream {stream[:60]!r} is not this collector's", raw, stream)
        elif expect is None and _is_ignored(stream):
            return []
        data = msg["data"]
        if type(data) is not dict:
            raise bad_value("data", data, raw, "not an object")
        return _event(data, raw, expect)
    if "e" in msg:
        return _event(msg, raw, expect)
    if "result" in msg and "id" in msg:
        return [Control("subscribed", detail=text(msg["result"]))]
    # An error echoes the id of the request it answers (request_id): only an answer to our
    # own SUBSCRIBE is fatal (the processor compares it with the ids it sent).
    rid = msg.get("id")
    request_id = rid if type(rid) is int or type(rid) is str else None
    if "error" in msg:
        err = msg["error"]
        if type(err) is dict:
            detail = f"{text(err.get('code'))}: {text(err.get('msg'))}"
            return [Control("error", detail=detail, request_id=request_id)]
        return [Control("error", detail=text(err), request_id=request_id)]
    if "code" in msg and "msg" in msg:
        detail = f"{text(msg['code'])}: {text(msg['msg'])}"
        return [Control("error", detail=detail, request_id=request_id)]
    raise unknown_type("unknown binance frame", raw, kind="")


def _event(d: dict[str, Any], raw: str | bytes, expect: _Stream | None) -> list[Record]:
    e = d.get("e")
    if e == "trade" or e == "aggTrade":
        if expect is not None and e != expect.event:
            raise unknown_type(f"{e} event on the {expect.name} stream", raw, e)
        symbol = _symbol(d, raw, expect, e)
        id_key = "t" if e == "trade" else "a"
        m = get(d, "m", raw, e)
        if type(m) is not bool:
            raise bad_value("m", m, raw, "not a boolean")
        return [
            Trade(
                time_ms(get(d, "E", raw, e), "E", raw),
                symbol,
                id_int(get(d, id_key, raw, e), id_key, raw),
                positive(get(d, "p", raw, e), "p", raw),
                positive(get(d, "q", raw, e), "q", raw),
                time_ms(get(d, "T", raw, e), "T", raw),
                m,
            )
        ]
    if e == "depthUpdate":
        if expect is not None and e != expect.event:
            raise unknown_type(f"{e} event on the {expect.name} stream", raw, e)
        symbol = _symbol(d, raw, expect, e)
        first = id_int(get(d, "U", raw, e), "U", raw)
        last = id_int(get(d, "u", raw, e), "u", raw)
        if first > last:
            raise bad_value("U", first, raw, f"after the final update id {last}")
        return [
            BookUpdate(
                symbol=symbol,
                ts_ms=time_ms(get(d, "E", raw, e), "E", raw),
                bids=check_levels(get(d, "b", raw, e), "b", raw, zero_ok=True),
                asks=check_levels(get(d, "a", raw, e), "a", raw, zero_ok=True),
                first_id=first,
                last_id=last,
            )
        ]
    if e == "serverShutdown":
        return [Control("reconnect", detail="serverShutdown")]
    if e in ("kline", "24hrTicker", "24hrMiniTicker"):
        return []
    raise unknown_type(f"unknown binance event {text(e, 40)!r}", raw, e)


def _symbol(d: dict[str, Any], raw: str | bytes, expect: _Stream | None, kind: str) -> str:
    s = get(d, "s", raw, kind)
    if expect is None:
        return symbol_of(s, SYMBOL_PATTERN, "s", raw)
    if s != expect.symbol:
        if type(s) is not str:
            raise bad_value("s", s, raw, "not a string")
        raise foreign_symbol("s", s, expect.symbol, raw)
    return expect.symbol


# --- listings: GET /api/v3/exchangeInfo ----------------------------------------------------
#
# | Listing field | exchangeInfo field | evidence |
# |---|---|---|
# | trading_pair | `symbol` | recorded 2021-10-11 (1695 symbols) |
# | status | `status` (TRADING, BREAK, HALT, END_OF_DAY, ...) | recorded (TRADING, BREAK) |
# | base / quote | `baseAsset` / `quoteAsset` | recorded |
# | tick_size | `PRICE_FILTER.tickSize` | recorded |
# | lot_size | `LOT_SIZE.stepSize` | recorded |
# | min_notional | `MIN_NOTIONAL.minNotional` | recorded |
# | min_notional | else `NOTIONAL.minNotional` (replaced MIN_NOTIONAL in 2023) | docs |
#
# Only `TRADING` means orders trade; `BREAK` is what a pair that is being wound down (or not
# yet open) shows, so it is a status, not a delisting. A symbol missing from the list is a
# delisting. Names are untrusted: `parse_listing_body` screens every listing
# (`listing.screen`) against SYMBOL_PATTERN and the asset, status and decimal grammars; one
# that does not fit is returned as refused (skipped, counted, alerted by the security
# master), so the rest of the body still applies; a wrong JSON type is a broken body.

LISTINGS_PATH = "/api/v3/exchangeInfo"


class RawFilter(TypedDict, total=False):
    filterType: str  # PRICE_FILTER | LOT_SIZE | MIN_NOTIONAL | NOTIONAL | ...
    tickSize: str  # PRICE_FILTER: price increment
    stepSize: str  # LOT_SIZE: quantity increment
    minNotional: str  # MIN_NOTIONAL / NOTIONAL: minimum price × quantity


class RawSymbol(TypedDict):
    symbol: str  # exchange-native pair, e.g. BTCUSDT
    status: str  # TRADING | BREAK | HALT | END_OF_DAY | CANCEL_ONLY
    baseAsset: str  # base asset, e.g. BTC
    quoteAsset: str  # quote asset, e.g. USDT
    filters: list[RawFilter]  # trading rules of the symbol


def build_listings_url(base_url: str) -> str:
    """The exchangeInfo URL under a REST base URL (``https://api.binance.com``)."""
    return base_url.rstrip("/") + LISTINGS_PATH


def parse_listing_body(body: str | bytes) -> ParsedListings:
    """Parse a body and screen every listing (``listing.screen``, ``SYMBOL_PATTERN``):
    listings that fit, and the refused ones with the reason.

    Raises:
        UnexpectedMessage: the body is not JSON, or not the exchangeInfo shape.
    """
    return screen(_listings(body), SYMBOL_PATTERN)


def _listings(body: str | bytes) -> list[Listing]:
    """An exchangeInfo body → listings, in the order the exchange gives them (unscreened)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UnexpectedMessage(
            f"binance exchangeInfo: not JSON ({exc})", excerpt=excerpt(body)
        ) from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("symbols"), list):
        raise UnexpectedMessage("binance exchangeInfo: no 'symbols' list", excerpt=excerpt(body))
    out: list[Listing] = []
    for sym in doc["symbols"]:
        if not isinstance(sym, dict):
            raise UnexpectedMessage(
                "binance exchangeInfo: symbol entry is not an object", excerpt=repr(sym)[:200]
            )
        shown = repr(sym)[:200]
        filters = sym.get("filters")
        if not isinstance(filters, list):
            raise UnexpectedMessage("binance exchangeInfo: 'filters' is not a list", excerpt=shown)
        status = _str_field(sym, "status", shown)
        out.append(
            Listing(
                exchange=EXCHANGE,
                trading_pair=_str_field(sym, "symbol", shown),
                base=_str_field(sym, "baseAsset", shown),
                quote=_str_field(sym, "quoteAsset", shown),
                status=status,
                trading_enabled=status == "TRADING",
                tick_size=_filter_value(filters, ("PRICE_FILTER",), "tickSize", shown),
                lot_size=_filter_value(filters, ("LOT_SIZE",), "stepSize", shown),
                min_notional=_filter_value(
                    filters, ("MIN_NOTIONAL", "NOTIONAL"), "minNotional", shown
                ),
            )
        )
    return out


def _str_field(obj: Mapping[str, Any], key: str, shown: str) -> str:
    # An empty string is a shape the grammar refuses (one listing skipped), not a broken body.
    value = obj.get(key)
    if not isinstance(value, str):
        raise UnexpectedMessage(
            f"binance exchangeInfo: symbol field {key!r} missing or not a string", excerpt=shown
        )
    return value


def _filter_value(filters: list[Any], types: tuple[str, ...], key: str, shown: str) -> str | None:
    for wanted in types:
        for f in filters:
            if isinstance(f, dict) and f.get("filterType") == wanted:
                value = f.get(key)
                if isinstance(value, str):
                    return value
                if value is not None:  # a number or an object is not the documented shape
                    raise UnexpectedMessage(
                        f"binance exchangeInfo: {wanted}.{key} is not a string", excerpt=shown
                    )
    return None


# Capabilities this exchange does not have (the ExchangeAdapter contract).
L3_SNAPSHOT_FROM_REST = False
L3_ALIGN = "sequence"
L3_CHECKSUM = False
check_spec = None
build_l3_snapshot_url = None
parse_l3_snapshot = None
build_l2_view_url = None
parse_l2_view = None
parse_checksum = None
book_checksum = None


# --- trade backfill from REST (ops.dataset: ids every host missed) ------------------------
# `GET /api/v3/historicalTrades?symbol=&fromId=&limit=` (ids from `fromId` up, oldest first;
# weight 25, no API key since 2023-07) or, for `binance_trade_stream = "aggTrade"`,
# `GET /api/v3/aggTrades?symbol=&fromId=&limit=` (weight 4). rest-api.md; exchanges.md §1.
BACKFILL_PAGE_SIZE = 1000
BACKFILL_ASCENDING = True  # a page starts at the lowest id asked for
BACKFILL_WEIGHT_PER_MIN = 6000  # REQUEST_WEIGHT per minute per IP (since 2023-08-25)


def build_trades_backfill_url(rest_url: str, spec: StreamSpec, first_id: int, last_id: int) -> str:
    """The page of trades from ``first_id`` up (``last_id`` bounds the page size)."""
    path = "aggTrades" if TRADE_STREAM.of(spec) == "aggTrade" else "historicalTrades"
    limit = max(1, min(BACKFILL_PAGE_SIZE, last_id - first_id + 1))
    return f"{rest_url}/api/v3/{path}?symbol={spec.symbol}&fromId={first_id}&limit={limit}"


def backfill_weight(spec: StreamSpec) -> int:
    """Request weight of one backfill page."""
    return 4 if TRADE_STREAM.of(spec) == "aggTrade" else 25


def parse_backfill_trades(body: str | bytes, spec: StreamSpec) -> list[Trade]:
    """A backfill page → the Trade records the collector writes for the same trades.

    historicalTrades rows: ``id, price, qty, quoteQty, time, isBuyerMaker, isBestMatch``;
    aggTrades rows: ``a, p, q, f, l, T, m, M``. REST has no event time: ``event_time`` is the
    trade time. Every value passes the same boundary grammar as a websocket frame.
    """
    try:
        rows = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise bad_value("body", text(body, 60), body, "not JSON") from None
    if type(rows) is not list:
        raise bad_value("body", rows, body, "not a list of trades")
    agg = TRADE_STREAM.of(spec) == "aggTrade"
    keys = ("a", "p", "q", "T", "m") if agg else ("id", "price", "qty", "time", "isBuyerMaker")
    out = []
    for r in rows:
        if type(r) is not dict:
            raise bad_value("body", r, body, "not a trade object")
        tid, price, qty, t, maker = (get(r, k, body, "trade") for k in keys)
        if type(maker) is not bool:
            raise bad_value(keys[4], maker, body, "not a boolean")
        ms = time_ms(t, keys[3], body)
        out.append(
            Trade(
                ms,
                spec.symbol,
                id_int(tid, keys[0], body),
                positive(price, keys[1], body),
                positive(qty, keys[2], body),
                ms,
                maker,
            )
        )
    return out


# Where Binance.com may be collected from (placement, ops/placement.py): it answers HTTP 451
# "restricted location" to US addresses (its terms of use exclude the US; Binance.US is another
# venue), so no stream of it is placed in a us-* cloud region unless [exchanges.binance]
# regions says otherwise.
EXCLUDED_REGION_PREFIXES: tuple[str, ...] = ("us-",)
FATAL_HANDSHAKE_STATUS: Mapping[int, str] = {
    451: "Binance.com refuses this location (HTTP 451: its terms exclude the US)",
}
