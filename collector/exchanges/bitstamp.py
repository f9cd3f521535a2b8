"""Bitstamp (WebSocket API v2): channel names, subscribe frames, parsers, listings (pure).

Docs: www.bitstamp.net/websocket/v2/ and www.bitstamp.net/api/ (see shared/docs/exchanges.md §3).

Coverage (channel → variants → action → evidence):

| channel | messages | action | evidence |
|---|---|---|---|
| `live_trades_<pair>` | `trade` | Trade (`type` 1: taker sold, buyer maker) | recorded |
| `diff_order_book_<pair>` | `data` | BookUpdate (ids 0..microtimestamp) | recorded |
| `/api/v2/order_book/<pair>` | REST snapshot | BookUpdate(is_snapshot) | recorded |
| `live_orders_<pair>` | `order_created`/`_changed`/`_deleted` | L3Event add/change/delete | docs |
| `/api/v2/order_book/<pair>?group=2` | REST, one row per order | L3Snapshot (ts_us) | docs |
| `/api/v2/order_book/<pair>` (l3 streams) | REST, QA's L2 view | L2View (microtimestamp) | docs |
| (all) | `bts:subscription_succeeded` | Control(subscribed) | recorded |
| (all) | `bts:request_reconnect` | Control(reconnect) | docs |
| (all) | `bts:error` | Control(error) → fatal | docs |
| (all) | `bts:heartbeat` (reply to ours) | Control(heartbeat) | docs |
| (all) | `bts:unsubscription_succeeded` | ignored ([]) | docs |
| `/api/v2/trading-pairs-info/` | REST listings | Listing (see "listings" below) | recorded |

Boundary (base.py grammar), as ``UnexpectedMessage`` reason [field]:

- frame: one JSON object → malformed; an `event` we do not know, or not on its channel kind
  → unknown_type; `channel` not a string → bad_value [channel];
- channel suffix: make_parser: the stream's channel; another pair's → foreign_symbol, another
  data type of our pair → unknown_type; parse: the suffix fits `SYMBOL_PATTERN`;
- `microtimestamp`: a string of digits, µs in [2009, 2100) → bad_value [microtimestamp]. REST
  snapshots without it use `timestamp` (a string of seconds) × 1_000_000 → [timestamp];
- `id`: int in [0, 2**63); `id_str`: digits below 2**63; `type`, `order_type`: the ints 0 or 1,
  never bools → bad_value [the field];
- `price_str`, `amount_str`: decimals > 0 (`order_deleted` amount >= 0); `bids`/`asks` rows
  `[price > 0, amount, (order_id)]`, amount > 0 in snapshots and >= 0 in diffs;
- a required field absent → missing_field [the field].

Quirks: there are no public sequence numbers, so books align on ``microtimestamp`` (never the
whole-second ``timestamp``, cryptofeed#1126): diffs/events with ``microtimestamp <=`` the REST
snapshot's are dropped, the rest applied, and a disconnect is the only visible gap. Trade ids
are shared by all pairs, so per-pair gaps are normal. Prices and amounts come as JSON numbers
and as ``*_str`` strings: the strings are used.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from collector.common.errors import BAD_VALUE, MISSING_FIELD, UnexpectedMessage
from collector.exchanges.base import (
    FieldWatch,
    L2View,
    Notice,
    Option,
    Parse,
    StreamSpec,
    bad_value,
    check_l3_orders,
    check_levels,
    decimal,
    excerpt,
    foreign_symbol,
    get,
    id_digits,
    id_int,
    load_object,
    positive,
    symbol_of,
    tell,
    text,
    time_us_digits,
    unknown_type,
    with_context,
)
from collector.exchanges.listing import Listing, ParsedListings, screen
from collector.model import BookUpdate, Control, L3Event, L3Snapshot, Record, Trade

EXCHANGE = "bitstamp"
# Production endpoints (the config file's [exchanges.bitstamp] ws_url/rest_url override them).
DEFAULT_WS_URL = "wss://ws.bitstamp.net"
DEFAULT_REST_URL = "https://www.bitstamp.net"
# Cloud regions it refuses (prefixes, see base.py): none known.
EXCLUDED_REGION_PREFIXES: tuple[str, ...] = ()
FATAL_HANDSHAKE_STATUS: Mapping[int, str] = {}
# No options beyond ws_url, rest_url, max_connection_age_s; public data needs no API key.
OPTIONS: tuple[Option, ...] = ()
CREDENTIAL_ENV = None
read_credentials = None
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
# Our subscribe frames do not depend on an option the parser needs.
options_from_subscribe = None
# The documented fields of what we parse (websocket/v2): the envelope, then `data` per event.
# A frame with another field is parsed all the same and told to the parser's notice hook
# (base.FieldWatch).
_ORDER = ("id", "id_str", "order_type", "datetime", "microtimestamp", "amount", "amount_str",
          "price", "price_str")  # fmt: skip
FIELDS = FieldWatch(
    {
        "envelope": ("event", "channel", "data"),
        "trade": (
            "id",
            "amount",
            "amount_str",
            "price",
            "price_str",
            "type",
            "timestamp",
            "microtimestamp",
            "buy_order_id",
            "sell_order_id",
        ),  # fmt: skip
        "data": ("timestamp", "microtimestamp", "bids", "asks"),
        "order_created": _ORDER,
        "order_changed": _ORDER,
        "order_deleted": _ORDER,
    }
)
_USUAL = FIELDS.usual
_ENVELOPE_FIELDS = _USUAL["envelope"]


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


def parse_l2_view(url: str, body: str | bytes) -> L2View | None:
    """A recorded ``order_book`` body (not ``group=2``) → L2View at its microtimestamp (in
    ms; None: another URL). A body without ``microtimestamp`` cannot be placed among the
    rows to the millisecond: it raises, and QA leaves that moment out."""
    if "/order_book/" not in url or "group=2" in url:
        return None
    msg = load_object(body)
    mt = time_us_digits(get(msg, "microtimestamp", body), "microtimestamp", body)
    return L2View(
        bids=tuple(check_levels(get(msg, "bids", body), "bids", body, zero_ok=False)),
        asks=tuple(check_levels(get(msg, "asks", body), "asks", body, zero_ok=False)),
        time_ms=mt // 1000,
    )


def build_l3_snapshot_url(rest_url: str, spec: StreamSpec) -> str:
    """Order-level book: ``group=2`` gives one ``[price, amount, order_id]`` row per order."""
    return f"{rest_url}/api/v2/order_book/{spec.symbol}?group=2"


def parse_snapshot(body: bytes | str, symbol: str) -> BookUpdate:
    """``{"timestamp","microtimestamp","bids":[[p,q]..],"asks":[..]}`` → snapshot BookUpdate.

    The alignment key (``first_id``/``last_id``) is ``microtimestamp``. The REST API does not
    always send it: then the whole-second ``timestamp`` is used conservatively: the key is
    just before that second starts, so every diff of that second is applied. Levels are
    absolute, so a diff the snapshot already contains re-sets the same value, while keying on
    the end of the second would drop diffs the snapshot may not contain.
    """
    msg = load_object(body)
    try:
        mt = _snapshot_time_us(msg, body)
        return BookUpdate(
            symbol=symbol,
            ts_ms=(mt + 1) // 1000 if "microtimestamp" not in msg else mt // 1000,
            bids=check_levels(get(msg, "bids", body), "bids", body, zero_ok=False),
            asks=check_levels(get(msg, "asks", body), "asks", body, zero_ok=False),
            is_snapshot=True,
            first_id=mt,
            last_id=mt,
        )
    except UnexpectedMessage as exc:
        raise with_context(exc, "bad order_book snapshot") from None


def parse_l3_snapshot(body: bytes | str, symbol: str, ts_recv_us: int) -> L3Snapshot:
    """``group=2`` body: rows ``[price, amount, order_id]`` → L3Snapshot aligned on ts_us
    (``microtimestamp``, else the start of the whole second ``timestamp``, as for L2)."""
    msg = load_object(body)
    try:
        mt = _snapshot_time_us(msg, body)
        orders = check_l3_orders(msg, body, _order_id, "[price, amount, order_id]")
        ts_ms = (mt + 1) // 1000 if "microtimestamp" not in msg else mt // 1000
        return L3Snapshot(symbol, ts_ms, None, orders, ts_us=mt)
    except UnexpectedMessage as exc:
        raise with_context(exc, "bad group=2 snapshot") from None


def _snapshot_time_us(msg: dict[str, Any], body: str | bytes) -> int:
    """The snapshot's alignment key in µs: ``microtimestamp``, else 1 µs before the second of
    ``timestamp`` begins (events with a key <= it are dropped, so all of that second stays)."""
    if "microtimestamp" in msg:
        return time_us_digits(msg["microtimestamp"], "microtimestamp", body)
    ts = get(msg, "timestamp", body)
    return time_us_digits(ts, "timestamp", body, unit_us=1_000_000) - 1


def make_parser(spec: StreamSpec, notice: Notice | None = None) -> Parse:
    """The parser of one stream: a frame of another pair's channel (the channel suffix)
    raises ``foreign_symbol``; one of another data type of the same pair ``unknown_type``.
    A parsed frame with fields beyond the documented ones is told to ``notice``."""
    own = channel(spec)

    def parse_stream(raw: str | bytes, ts_recv_us: int) -> list[Record]:
        return _parse(raw, own, notice)

    return parse_stream


def parse(raw: str | bytes, ts_recv_us: int) -> list[Record]:
    """One websocket frame of any pair → records (the pair only has to fit
    ``SYMBOL_PATTERN``). Collectors use :func:`make_parser`; this serves tools such as QA."""
    return _parse(raw, None)


def _parse(raw: str | bytes, own: str | None, notice: Notice | None = None) -> list[Record]:
    msg = load_object(raw)
    event = msg.get("event")
    try:
        records = _message(msg, event, raw, own)
    except UnexpectedMessage as exc:
        if exc.reason in (BAD_VALUE, MISSING_FIELD):
            raise with_context(exc, f"malformed bitstamp {text(event, 40)} frame") from None
        raise
    if notice is not None and records and type(event) is str and event in _EVENT_PREFIX:
        d = msg["data"]  # a data event that parsed: its `data` is an object
        if len(msg) != _ENVELOPE_FIELDS or len(d) != _USUAL[event]:
            tell(notice, raw, FIELDS.check("envelope", msg), FIELDS.check(event, d))
    return records


def _message(msg: dict[str, Any], event: object, raw: str | bytes, own: str | None) -> list[Record]:
    ch = msg.get("channel", "")
    if type(ch) is not str:
        raise bad_value("channel", ch, raw, "not a string")
    prefix = _EVENT_PREFIX.get(event) if type(event) is str else None
    if prefix is not None and ch.startswith(prefix):
        symbol = _symbol(ch, prefix, raw, own)
        d = get(msg, "data", raw, event)
        if type(d) is not dict:
            raise bad_value("data", d, raw, "not an object")
        mt = time_us_digits(get(d, "microtimestamp", raw, event), "microtimestamp", raw)
        if event == "trade":
            kind = get(d, "type", raw, event)
            if type(kind) is not int or kind not in (0, 1):
                raise bad_value("type", kind, raw, "not 0 (buy) or 1 (sell)")
            # `type` is the taker's side (exchanges.md §3): 1 = sell, so the buyer was the maker.
            return [
                Trade(
                    event_time_ms=mt // 1000,
                    symbol=symbol,
                    trade_id=id_int(get(d, "id", raw, event), "id", raw),
                    price=positive(get(d, "price_str", raw, event), "price_str", raw),
                    quantity=positive(get(d, "amount_str", raw, event), "amount_str", raw),
                    trade_time_ms=mt // 1000,
                    is_buyer_maker=kind == 1,
                )
            ]
        if event == "data":
            # No sequence numbers: a diff "covers" everything up to its microtimestamp
            # (first_id 0, last_id mt). The generic book then drops diffs with mt <= the
            # snapshot's and never sees a provable gap, which is the documented procedure.
            return [
                BookUpdate(
                    symbol=symbol,
                    ts_ms=mt // 1000,
                    bids=check_levels(get(d, "bids", raw, event), "bids", raw, zero_ok=True),
                    asks=check_levels(get(d, "asks", raw, event), "asks", raw, zero_ok=True),
                    first_id=0,
                    last_id=mt,
                )
            ]
        side = get(d, "order_type", raw, event)
        if type(side) is not int or side not in (0, 1):
            raise bad_value("order_type", side, raw, "not 0 (buy) or 1 (sell)")
        if "id_str" in d:
            oid = id_digits(d["id_str"], "id_str", raw)
        else:
            oid = str(id_int(get(d, "id", raw, event), "id", raw))
        action = _ORDER_ACTIONS[str(event)]
        # A deleted order's remaining amount may be 0 (filled); a live one's is > 0.
        size_check = decimal if action == "delete" else positive
        return [
            L3Event(
                ts_ms=mt // 1000,
                symbol=symbol,
                sequence=None,
                action=action,
                order_id=oid,
                side="B" if side == 0 else "A",
                price=positive(get(d, "price_str", raw, event), "price_str", raw),
                size=size_check(get(d, "amount_str", raw, event), "amount_str", raw),
                ts_us=mt,
            )
        ]
    if event == "bts:subscription_succeeded":
        if own is not None and ch != own:
            raise _not_ours(ch, own, raw)
        return [Control("subscribed", detail=ch)]
    if event == "bts:request_reconnect":
        return [Control("reconnect", detail="bts:request_reconnect")]
    if event == "bts:error":
        d = msg.get("data")
        if type(d) is dict:
            return [Control("error", detail=f"{text(d.get('code'))}: {text(d.get('message'))}")]
        return [Control("error", detail=text(d))]
    if event == "bts:heartbeat":
        return [Control("heartbeat")]
    if event == "bts:unsubscription_succeeded":
        return []
    raise unknown_type(f"unknown bitstamp event {text(event, 40)!r} on {ch[:60]!r}", raw, event)


def _symbol(ch: str, prefix: str, raw: str | bytes, own: str | None) -> str:
    """The pair of a channel name: the stream's own (make_parser), or any that fits."""
    pair = ch.removeprefix(prefix)
    if own is None:
        return symbol_of(pair, SYMBOL_PATTERN, "channel", raw)
    if ch != own:
        raise _not_ours(ch, own, raw)
    return pair


def _not_ours(ch: str, own: str, raw: str | bytes) -> UnexpectedMessage:
    """Another pair's channel is ``foreign_symbol``; another channel of our pair (a data type
    we did not subscribe to) ``unknown_type``. Pairs have no underscore."""
    if ch.rpartition("_")[2] != own.rpartition("_")[2]:
        return foreign_symbol("channel", ch, own, raw)
    return unknown_type(f"channel {ch[:60]!r} is not this collector's ({own})", raw, ch)


_EVENT_PREFIX = {
    "trade": "live_trades_",
    "data": "diff_order_book_",
    "order_created": "live_orders_",
    "order_changed": "live_orders_",
    "order_deleted": "live_orders_",
}


def _order_id(value: object, field: str, raw: str | bytes) -> str:
    """An order id of a group=2 row: a string of digits (docs) or an integer."""
    if type(value) is int:
        return str(id_int(value, field, raw))
    return id_digits(value, field, raw)


# Capabilities this exchange does not have (the ExchangeAdapter contract).
L3_CHECKSUM = False
check_spec = None
snapshot_weight = None
parse_checksum = None
book_checksum = None


# --- listings: GET /api/v2/trading-pairs-info/ ---------------------------------------------
#
# | Listing field | trading-pairs-info field | evidence |
# |---|---|---|
# | trading_pair | `url_symbol` (btcusd: the channel and REST name) | recorded 2022-01-05 (140) |
# | base / quote | `name` ("BTC/USD") split at its one "/" | recorded |
# | status | `trading` verbatim (Enabled, Disabled) | recorded (Enabled) + OpenAPI spec |
# | trading_enabled | `trading == "Enabled"` | recorded |
# | tick_size | 10^-`counter_decimals` (2 → 0.01) | recorded (integers) |
# | lot_size | 10^-`base_decimals` (8 → 0.00000001) | recorded (integers) |
# | min_notional | `minimum_order` ("20.0 USD") when its currency is the quote | recorded |
#
# `instant_and_market_orders` and `description` are not used. A pair missing from the list is
# a delisting. Names are untrusted: `parse_listing_body` screens every listing
# (`listing.screen`) against SYMBOL_PATTERN and the asset, status and decimal grammars; one
# that does not fit (a name without its "/", a minimum order in another currency, a precision
# out of range) is returned as refused, so the rest of the body still applies; a wrong JSON
# type is a broken body. The current OpenAPI spec also lists `/api/v2/markets/`; whether this
# endpoint is deprecated is unverified (exchanges.md §3).

LISTINGS_PATH = "/api/v2/trading-pairs-info/"
_MINIMUM_ORDER = re.compile(r"([0-9.]{1,40}) ([A-Z0-9]{1,20})")
# Decimals beyond this cannot be a price or size increment the grammar stores.
_MAX_DECIMALS = 19

# Raw shape (one entry of the body's list): `name` "BTC/USD", `url_symbol` "btcusd",
# `base_decimals` / `counter_decimals` integers, `minimum_order` "20.0 USD", `trading`
# Enabled | Disabled, `instant_and_market_orders`, `description`.


def build_listings_url(base_url: str) -> str:
    """The trading-pairs-info URL under a REST base URL (``https://www.bitstamp.net``)."""
    return base_url.rstrip("/") + LISTINGS_PATH


def parse_listing_body(body: str | bytes) -> ParsedListings:
    """Parse a body and screen every listing (``listing.screen``, ``SYMBOL_PATTERN``):
    listings that fit, and the refused ones with the reason.

    Raises:
        UnexpectedMessage: the body is not JSON, or not a list of pair objects.
    """
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _broken(f"not JSON ({exc})", body) from exc
    if not isinstance(doc, list):
        raise _broken("body is not a list", body)
    return screen([_listing(entry) for entry in doc], SYMBOL_PATTERN)


def _listing(entry: object) -> Listing:
    if not isinstance(entry, dict):
        raise _broken("entry is not an object", repr(entry))
    shown = repr(entry)[:200]
    name = _listing_str(entry, "name", shown)
    base, _, quote = name.partition("/")
    status = _listing_str(entry, "trading", shown)
    minimum = entry.get("minimum_order")
    if minimum is not None and not isinstance(minimum, str):
        raise _broken("'minimum_order' is not a string", shown)
    return Listing(
        exchange=EXCHANGE,
        trading_pair=_listing_str(entry, "url_symbol", shown),
        base=base,
        quote=quote,
        status=status,
        trading_enabled=status == "Enabled",
        tick_size=_increment(entry, "counter_decimals", shown),
        lot_size=_increment(entry, "base_decimals", shown),
        min_notional=None if minimum is None else _min_notional(minimum, quote),
    )


def _listing_str(entry: dict[str, Any], key: str, shown: str) -> str:
    # An empty string is a shape the grammar refuses (one listing skipped), not a broken body.
    value = entry.get(key)
    if not isinstance(value, str):
        raise _broken(f"{key!r} missing or not a string", shown)
    return value


def _increment(entry: dict[str, Any], key: str, shown: str) -> str | None:
    """10^-decimals as a decimal string; out of range → a text the grammar refuses."""
    value = entry.get(key)
    if value is None:
        return None
    if type(value) is not int:
        raise _broken(f"{key!r} is not an integer", shown)
    if not 0 <= value <= _MAX_DECIMALS:
        return f"1e-{value}"[:40]
    return "1" if value == 0 else "0." + "0" * (value - 1) + "1"


def _min_notional(minimum: str, quote: str) -> str:
    """The amount of ``"20.0 USD"`` when its currency is the quote; else the text as sent,
    which the decimal grammar refuses (a minimum in another currency is no min_notional)."""
    m = _MINIMUM_ORDER.fullmatch(minimum)
    return m.group(1) if m is not None and m.group(2) == quote else minimum


def _broken(what: str, raw: str | bytes) -> UnexpectedMessage:
    """A listings body that is not the documented shape (the poll fails, nothing changes)."""
    return UnexpectedMessage(f"bitstamp trading-pairs-info: {what}", excerpt=excerpt(raw))


# Trade backfill (ops.dataset): not fillable. `GET /api/v2/transactions/<pair>/?time=` serves
# only the last minute, hour or day, not an id range, and ids are global (not contiguous per
# pair), so the ids a stream missed cannot even be named.
BACKFILL_PAGE_SIZE = 0
BACKFILL_ASCENDING = True
BACKFILL_WEIGHT_PER_MIN = 0
build_trades_backfill_url = None
backfill_weight = None
parse_backfill_trades = None
