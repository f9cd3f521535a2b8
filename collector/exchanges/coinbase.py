"""Coinbase Exchange (formerly Pro): subscribe frames, signing, parsers, listings (pure).

Docs: docs.cdp.coinbase.com/exchange/websocket-feed/{overview,channels,authentication},
docs.cdp.coinbase.com/exchange/reference/exchangerestapi_getproducts
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
| (any) | `time` = `0001-01-01T00:00:00Z` (Go's zero time) | refused: bad_value time | decision |
| `/products/<id>/book?level=2` | REST, QA's L2 view | L2View (sequence) | docs |
| `/products` | REST listings | Listing (see "Listings" below) | recorded 2021-04-17 |

Boundary (base.py grammar), as ``UnexpectedMessage`` reason [field]:

- frame: one JSON object with a string `type` → malformed / bad_value [type]; a type we do
  not know (`full` types are known only to `l3` parsers) → unknown_type;
- `product_id`: make_parser: the stream's, heartbeats included (their `last_trade_id` is their
  product's) → foreign_symbol; parse: fits `SYMBOL_PATTERN` → bad_value [product_id];
- `time`: strict ISO-8601 UTC in [2009, 2100) → bad_value [time]. The documented placeholder
  `0001-01-01T00:00:00Z` (Go's zero time) is refused, never written as year 1. Only where
  the docs have no time (`snapshot`, `activate`) is it absent: ts 0, the receive time is used;
- `trade_id`, `sequence`, `last_trade_id`: ints in [0, 2**63), never strings or bools;
- `price`, `size`, `remaining_size`, `new_size`, `new_price`: decimals > 0 (`done`'s
  `remaining_size` >= 0); `changes` rows `[buy|sell, price > 0, size >= 0]` → [changes];
  `bids`/`asks` rows `[price > 0, size > 0, (UUID)]` → [bids] / [asks];
- `side`: buy / sell; order ids: lowercase UUIDs; `reason`: a word (filled, canceled, STP,
  modify_order) → bad_value [the field];
- a required field absent → missing_field [the field].

Quirks: a subscribe must arrive within 5 s of connecting; `level2`/`full` need an Exchange API key
since 2023-08-01 (signature = base64 HMAC-SHA256 of timestamp + "GET/users/self/verify" with the
base64-decoded secret); `l2update` carries no sequence, so a disconnect is the only visible gap.

Credentials: ``CREDENTIAL_ENV`` names the variables (``COINBASE_API_KEY``, ``_SECRET``,
``_PASSPHRASE``); ``collector.settings`` reads them, :func:`read_credentials` validates (all or
none, no whitespace, the secret base64) with messages that never show a value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Any, TypedDict

import orjson

from collector.common.errors import BAD_VALUE, MISSING_FIELD, ConfigError, UnexpectedMessage
from collector.exchanges.base import (
    Credentials,
    FieldWatch,
    L2View,
    Notice,
    Option,
    Parse,
    StreamSpec,
    bad_value,
    check_l3_orders,
    check_levels,
    credentials_from,
    decimal,
    excerpt,
    foreign_symbol,
    get,
    id_int,
    iso_time_ms,
    load_object,
    positive,
    symbol_of,
    tell,
    text,
    unknown_type,
    with_context,
)
from collector.exchanges.listing import Listing, ParsedListings, screen
from collector.model import BookUpdate, Control, L3Event, L3Snapshot, Record, Trade

EXCHANGE = "coinbase"
# Production endpoints (the config file's [exchanges.coinbase] ws_url/rest_url override them).
DEFAULT_WS_URL = "wss://ws-feed.exchange.coinbase.com"
DEFAULT_REST_URL = "https://api.exchange.coinbase.com"
# Cloud regions it refuses (prefixes, see base.py): none known.
EXCLUDED_REGION_PREFIXES: tuple[str, ...] = ()
FATAL_HANDSHAKE_STATUS: Mapping[int, str] = {}
# No options beyond ws_url, rest_url, max_connection_age_s.
OPTIONS: tuple[Option, ...] = ()
# The API key's environment variables: key, secret (base64), passphrase.
CREDENTIAL_ENV = ("COINBASE_API_KEY", "COINBASE_API_SECRET", "COINBASE_API_PASSPHRASE")
SYMBOL_PATTERN = re.compile(r"[A-Z0-9]{1,12}-[A-Z0-9]{1,12}")
DATA_TYPES = ("trade", "book", "l3")
# Fields of our own `send` frames that are credentials: redacted in the raw capture (the
# signature is derived from the secret; `timestamp` is kept).
SEND_SECRET_FIELDS: tuple[str, ...] = ("key", "passphrase", "signature")
TRADE_IDS_CONTIGUOUS = True
BOOK_SNAPSHOT_FROM_REST = False
_IGNORED_TYPES = frozenset({"ticker", "status"})
# Our subscribe frames do not depend on an option the parser needs.
options_from_subscribe = None
# The documented fields of what we parse (channels page; `match` also carries the user and
# profile ids and fee rates of an authenticated subscriber's own orders): a frame with another
# field is parsed all the same and told to the parser's notice hook (base.FieldWatch).
_OWN = ("user_id", "profile_id")
_MATCH = ("type", "trade_id", "maker_order_id", "taker_order_id", "side", "size", "price",
          "product_id", "sequence", "time", *_OWN, "taker_user_id", "taker_profile_id",
          "maker_user_id", "maker_profile_id", "taker_fee_rate", "maker_fee_rate")  # fmt: skip
_FULL = ("type", "time", "product_id", "sequence", *_OWN)
FIELDS = FieldWatch(
    {
        "match": _MATCH,
        "last_match": _MATCH,
        "l2update": ("type", "product_id", "changes", "time"),
        "snapshot": ("type", "product_id", "bids", "asks"),
        "heartbeat": ("type", "sequence", "last_trade_id", "product_id", "time"),
        "subscriptions": ("type", "channels"),
        "received": (
            *_FULL,
            "order_id",
            "size",
            "price",
            "funds",
            "side",
            "order_type",
            "client_oid",
        ),  # fmt: skip
        "open": (*_FULL, "order_id", "price", "remaining_size", "side"),
        "done": (*_FULL, "order_id", "price", "remaining_size", "side", "reason"),
        "change": (
            *_FULL,
            "order_id",
            "side",
            "price",
            "old_size",
            "new_size",
            "old_price",
            "new_price",
            "old_funds",
            "new_funds",
            "reason",
        ),  # fmt: skip
        "activate": (
            "type",
            "product_id",
            "timestamp",
            *_OWN,
            "order_id",
            "stop_type",
            "side",
            "stop_price",
            "size",
            "funds",
            "taker_fee_rate",
            "private",
        ),  # fmt: skip
    },
    # the public feed's usual shapes (a match without the authenticated subscriber's fields)
    usual={"match": 10, "last_match": 10, "received": 9, "open": 8, "done": 9, "change": 10},
)
_USUAL = FIELDS.usual


# Channels that need a signed subscribe (since 2023-08-01); the others are public and are
# never signed, so no credential is sent where none is needed.
AUTH_CHANNELS = frozenset({"level2", "full", "level3"})


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


def read_credentials(values: Mapping[str, str]) -> Credentials | None:
    """The Exchange API key from the values of ``CREDENTIAL_ENV`` (None when none is set).

    Raises:
        ConfigError: incomplete, whitespace or control characters, or a secret that is not
            base64; naming the variable, never showing its value.
    """
    got = credentials_from(values, CREDENTIAL_ENV, "Coinbase")
    if got is None:
        return None
    try:
        base64.b64decode(got[1], validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("COINBASE_API_SECRET is not valid base64 (value not shown)") from None
    return Credentials(key=got[0], secret=got[1], passphrase=got[2])


def sign(credentials: Credentials, timestamp: str) -> str:
    """The websocket subscribe signature (authentication doc)."""
    try:
        secret = base64.b64decode(credentials.secret, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("COINBASE_API_SECRET is not valid base64") from None
    message = f"{timestamp}GET/users/self/verify".encode()
    return base64.b64encode(hmac.new(secret, message, hashlib.sha256).digest()).decode()


def build_subscribe(spec: StreamSpec, now_s: float) -> list[str]:
    """The subscribe frame; signed only when one of its channels needs authentication."""
    chans = channels(spec)
    msg: dict[str, Any] = {"type": "subscribe", "product_ids": [spec.symbol], "channels": chans}
    if spec.credentials is not None and AUTH_CHANNELS.intersection(chans):
        timestamp = f"{now_s:.3f}"
        msg.update(
            key=spec.credentials.key,
            passphrase=spec.credentials.passphrase,
            timestamp=timestamp,
            signature=sign(spec.credentials, timestamp),
        )
    return [orjson.dumps(msg).decode()]


def make_parser(spec: StreamSpec, notice: Notice | None = None) -> Parse:
    """The parser of one stream: ``full`` messages for ``l3``; a frame whose ``product_id``
    is not the stream's raises ``foreign_symbol`` (heartbeats included: their
    ``last_trade_id`` belongs to their product). A parsed frame with fields beyond the
    documented ones is told to ``notice``."""
    if spec.data_type not in DATA_TYPES:
        raise ValueError(f"coinbase has no data type {spec.data_type!r}")
    symbol, full = spec.symbol, spec.data_type == "l3"

    def parse_stream(raw: str | bytes, ts_recv_us: int) -> list[Record]:
        return _parse(raw, symbol, full, notice)

    return parse_stream


def parse(raw: str | bytes, ts_recv_us: int) -> list[Record]:
    """One websocket frame of any product → records (the product only has to fit
    ``SYMBOL_PATTERN``). Collectors use :func:`make_parser`; this serves tools such as QA."""
    return _parse(raw, None, False)


def _parse(
    raw: str | bytes, symbol: str | None, full: bool, notice: Notice | None = None
) -> list[Record]:
    msg = load_object(raw)
    kind = msg.get("type")
    if type(kind) is not str:
        if kind is None:
            raise unknown_type("coinbase frame without a type", raw, kind="")
        raise bad_value("type", kind, raw, "not a string")
    try:
        records = _message(msg, kind, raw, symbol, full)
    except UnexpectedMessage as exc:
        if exc.reason in (BAD_VALUE, MISSING_FIELD):
            raise with_context(exc, f"malformed coinbase {kind[:40]} frame") from None
        raise
    if notice is not None and records and len(msg) != _USUAL.get(kind, len(msg)):
        tell(notice, raw, FIELDS.unknown(kind, msg))
    return records


def _message(
    msg: dict[str, Any], kind: str, raw: str | bytes, symbol: str | None, full: bool
) -> list[Record]:
    if full and kind in _FULL_TYPES:
        return [_full_event(kind, msg, raw, symbol)]
    if kind == "match" or kind == "last_match":
        product = _product(msg, raw, symbol, kind)
        t = iso_time_ms(get(msg, "time", raw, kind), "time", raw)
        # `side` is the maker's side: a resting buy order means the buyer was the maker.
        side = _side(msg, raw, kind)
        return [
            Trade(
                event_time_ms=t,
                symbol=product,
                trade_id=id_int(get(msg, "trade_id", raw, kind), "trade_id", raw),
                price=positive(get(msg, "price", raw, kind), "price", raw),
                quantity=positive(get(msg, "size", raw, kind), "size", raw),
                trade_time_ms=t,
                is_buyer_maker=side == "B",
            )
        ]
    if kind == "l2update":
        product = _product(msg, raw, symbol, kind)
        changes = get(msg, "changes", raw, kind)
        if type(changes) is not list:
            raise bad_value("changes", changes, raw, "not a list")
        bids, asks = [], []
        for change in changes:
            if type(change) is not list or len(change) != 3:
                raise bad_value("changes", change, raw, "not [side, price, size]")
            side, price, size = change
            level = (positive(price, "changes", raw), decimal(size, "changes", raw))
            if side == "buy":
                bids.append(level)
            elif side == "sell":
                asks.append(level)
            else:
                raise bad_value("changes", side, raw, "side is not buy/sell")
        t = iso_time_ms(get(msg, "time", raw, kind), "time", raw)
        return [BookUpdate(symbol=product, ts_ms=t, bids=bids, asks=asks)]
    if kind == "snapshot":
        product = _product(msg, raw, symbol, kind)
        # The snapshot has no time field (recorded); the writer uses the receive time.
        return [
            BookUpdate(
                symbol=product,
                ts_ms=0,
                bids=check_levels(get(msg, "bids", raw, kind), "bids", raw, zero_ok=False),
                asks=check_levels(get(msg, "asks", raw, kind), "asks", raw, zero_ok=False),
                is_snapshot=True,
            )
        ]
    if kind == "heartbeat":
        if symbol is not None:
            _product(msg, raw, symbol, kind)
        last = id_int(get(msg, "last_trade_id", raw, kind), "last_trade_id", raw)
        return [Control("heartbeat", last_trade_id=last)]
    if kind == "subscriptions":
        return [Control("subscribed", detail=text(msg.get("channels"), 4000))]
    if kind == "error":
        return [
            Control("error", detail=f"{text(msg.get('message'))}: {text(msg.get('reason', ''))}")
        ]
    if kind in _IGNORED_TYPES:
        return []
    raise unknown_type(f"unknown coinbase message type {text(kind, 40)!r}", raw, kind)


def _product(msg: dict[str, Any], raw: str | bytes, symbol: str | None, kind: str) -> str:
    product = get(msg, "product_id", raw, kind)
    if symbol is None:
        return symbol_of(product, SYMBOL_PATTERN, "product_id", raw)
    if product != symbol:
        if type(product) is not str:
            raise bad_value("product_id", product, raw, "not a string")
        raise foreign_symbol("product_id", product, symbol, raw)
    return symbol


def _side(msg: dict[str, Any], raw: str | bytes, kind: str) -> str:
    side = get(msg, "side", raw, kind)
    if side == "buy":
        return "B"
    if side == "sell":
        return "A"
    raise bad_value("side", side, raw, "not buy/sell")


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
# Order ids are UUIDs (REST "Types": "Most identifiers are UUID"), lowercase with dashes as
# the feed sends them.
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# `done.reason` (filled, canceled) and `change.reason` (STP, modify_order): a word, so a new
# value is kept as sent but can never carry a comma, quote or newline into the CSV.
_REASON = re.compile(r"[A-Za-z_]{1,32}")


def check_spec(spec: StreamSpec) -> None:
    """Called at start-up: `l3` (the `full` channel) is impossible without an API key."""
    if spec.data_type == "l3":
        channels(spec)


def build_l3_snapshot_url(rest_url: str, spec: StreamSpec) -> str:
    return f"{rest_url}/products/{spec.symbol}/book?level=3"


def build_l2_view_url(rest_url: str, spec: StreamSpec) -> str:
    """The aggregated book (``[price, size, num_orders]`` rows + ``sequence``) for QA."""
    return f"{rest_url}/products/{spec.symbol}/book?level=2"


def parse_l2_view(url: str, body: str | bytes) -> L2View | None:
    """A recorded ``book?level=2`` body → L2View at its ``sequence`` (None: another URL, e.g.
    the ``level=3`` snapshot). Rows are ``[price, size, num_orders]``."""
    if "level=2" not in url:
        return None
    msg = load_object(body)
    return L2View(
        bids=tuple(check_levels(get(msg, "bids", body), "bids", body, zero_ok=False)),
        asks=tuple(check_levels(get(msg, "asks", body), "asks", body, zero_ok=False)),
        sequence=id_int(get(msg, "sequence", body), "sequence", body),
    )


def parse_l3_snapshot(body: bytes | str, symbol: str, ts_recv_us: int) -> L3Snapshot:
    """``{"sequence":N,"bids":[[price,size,order_id]..],"asks":[..]}`` → L3Snapshot.

    The docs give no time field for this body; when one is present (``time``) it is used,
    otherwise the receive time.
    """
    msg = load_object(body)
    orders = check_l3_orders(msg, body, _order_id, "[price, size, order_id]")
    ts_ms = iso_time_ms(msg["time"], "time", body) if "time" in msg else ts_recv_us // 1000
    sequence = id_int(get(msg, "sequence", body), "sequence", body)
    return L3Snapshot(symbol, ts_ms, sequence, orders)


def parse_full(raw: str | bytes, ts_recv_us: int) -> list[Record]:
    """One frame of the `full` channel of any product → records (L3Event rows, controls)."""
    return _parse(raw, None, True)


_FULL_TYPES = frozenset({"received", "open", "done", "match", "change", "activate"})


def _full_event(kind: str, msg: dict[str, Any], raw: str | bytes, symbol: str | None) -> L3Event:
    product = _product(msg, raw, symbol, kind)
    seq = msg.get("sequence")
    sequence = None if seq is None else id_int(seq, "sequence", raw)
    # `activate` carries `timestamp` (epoch seconds) instead of `time` in the docs' example:
    # no time (0), never a guess. A present `time` must be a real one: Coinbase's placeholder
    # `0001-01-01T00:00:00Z` (Go's zero time) is a bad value, not year 1.
    ts_ms = iso_time_ms(msg["time"], "time", raw) if "time" in msg else 0
    if kind == "open":
        return L3Event(
            ts_ms, product, sequence, "add", _oid(msg, "order_id", raw, kind),
            _side(msg, raw, kind), positive(get(msg, "price", raw, kind), "price", raw),
            positive(get(msg, "remaining_size", raw, kind), "remaining_size", raw),
        )  # fmt: skip
    if kind == "done":
        # market orders have no price; a filled order's remaining_size is "0"
        price = msg.get("price")
        size = msg.get("remaining_size")
        return L3Event(
            ts_ms, product, sequence, "delete", _oid(msg, "order_id", raw, kind),
            _side(msg, raw, kind), "" if price is None else positive(price, "price", raw),
            "" if size is None else decimal(size, "remaining_size", raw),
            reason=_reason(msg, raw),
        )  # fmt: skip
    if kind == "match":
        maker = _oid(msg, "maker_order_id", raw, kind)
        return L3Event(
            ts_ms, product, sequence, "match", maker, _side(msg, raw, kind),
            positive(get(msg, "price", raw, kind), "price", raw),
            positive(get(msg, "size", raw, kind), "size", raw),
            trade_id=id_int(get(msg, "trade_id", raw, kind), "trade_id", raw),
            maker_order_id=maker, taker_order_id=_oid(msg, "taker_order_id", raw, kind),
        )  # fmt: skip
    if kind == "change" and "new_size" in msg:
        if msg.get("new_price") is not None:
            price = positive(msg["new_price"], "new_price", raw)
        elif msg.get("price") is not None:
            price = positive(msg["price"], "price", raw)
        else:
            price = ""
        return L3Event(
            ts_ms, product, sequence, "change", _oid(msg, "order_id", raw, kind),
            _side(msg, raw, kind), price, positive(msg["new_size"], "new_size", raw),
            reason=_reason(msg, raw),
        )  # fmt: skip
    # received / activate / a funds-only change of a market order: no effect on the book
    oid = "" if msg.get("order_id") is None else _oid(msg, "order_id", raw, kind)
    return L3Event(ts_ms, product, sequence, "noop", oid, "", "", "")


def _order_id(value: object, field: str, raw: str | bytes) -> str:
    if type(value) is not str:
        raise bad_value(field, value, raw, "not a string")
    if _UUID.fullmatch(value) is None:
        raise bad_value(field, value, raw, "not a UUID")
    return value


def _oid(msg: dict[str, Any], key: str, raw: str | bytes, kind: str) -> str:
    return _order_id(get(msg, key, raw, kind), key, raw)


def _reason(msg: dict[str, Any], raw: str | bytes) -> str:
    reason = msg.get("reason")
    if reason is None:
        return ""
    if type(reason) is not str or _REASON.fullmatch(reason) is None:
        raise bad_value("reason", reason, raw, "not a word")
    return reason


# --- listings: GET /products ----------------------------------------------------------------
#
# | Listing field | /products field | evidence |
# |---|---|---|
# | trading_pair | `id` (BTC-USD) | recorded 2021-04-17 (162 products) |
# | base / quote | `base_currency` / `quote_currency` | recorded |
# | status | `status` verbatim (online, offline, delisted) | recorded (online) + docs |
# | trading_enabled | `status == "online"` and not `trading_disabled` | recorded + docs |
# | tick_size | `quote_increment` | recorded |
# | lot_size | `base_increment` | recorded |
# | min_notional | `min_market_funds` | recorded (string) |
#
# `trading_disabled` can be true while `status` still says `online` (a halt), so it is folded
# into `trading_enabled` rather than dropped. Fields removed in 2022-06 (`base_min_size`,
# `base_max_size`, `max_market_funds`) are not used. Names are untrusted: `parse_listing_body`
# screens every listing (`listing.screen`) against SYMBOL_PATTERN and the asset, status and
# decimal grammars; one that does not fit is returned as refused (skipped, counted, alerted
# by the security master), so the rest of the body still applies; a wrong JSON type is a
# broken body.

LISTINGS_PATH = "/products"


class RawProduct(TypedDict, total=False):
    id: str  # exchange-native product id, e.g. BTC-USD
    base_currency: str  # base asset
    quote_currency: str  # quote asset
    quote_increment: str  # price tick
    base_increment: str  # size increment
    min_market_funds: str  # minimum order value in quote currency
    status: str  # online | offline | delisted
    trading_disabled: bool  # a halt, even while status is online


def build_listings_url(base_url: str) -> str:
    """The /products URL under a REST base URL (``https://api.exchange.coinbase.com``)."""
    return base_url.rstrip("/") + LISTINGS_PATH


def parse_listing_body(body: str | bytes) -> ParsedListings:
    """Parse a body and screen every listing (``listing.screen``, ``SYMBOL_PATTERN``):
    listings that fit, and the refused ones with the reason.

    Raises:
        UnexpectedMessage: the body is not JSON, or not a list of products.
    """
    return screen(_listings(body), SYMBOL_PATTERN)


def _listings(body: str | bytes) -> list[Listing]:
    """A /products body → listings, in the order the exchange gives them (unscreened)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UnexpectedMessage(
            f"coinbase /products: not JSON ({exc})", excerpt=excerpt(body)
        ) from exc
    if not isinstance(doc, list):
        raise UnexpectedMessage("coinbase /products: body is not a list", excerpt=excerpt(body))
    out: list[Listing] = []
    for prod in doc:
        if not isinstance(prod, dict):
            raise UnexpectedMessage(
                "coinbase /products: entry is not an object", excerpt=repr(prod)[:200]
            )
        shown = repr(prod)[:200]
        status = _str_field(prod, "status", shown)
        disabled = prod.get("trading_disabled", False)
        if not isinstance(disabled, bool):
            raise UnexpectedMessage(
                "coinbase /products: 'trading_disabled' is not a boolean", excerpt=shown
            )
        out.append(
            Listing(
                exchange=EXCHANGE,
                trading_pair=_str_field(prod, "id", shown),
                base=_str_field(prod, "base_currency", shown),
                quote=_str_field(prod, "quote_currency", shown),
                status=status,
                trading_enabled=status == "online" and not disabled,
                tick_size=_opt_str(prod, "quote_increment", shown),
                lot_size=_opt_str(prod, "base_increment", shown),
                min_notional=_opt_str(prod, "min_market_funds", shown),
            )
        )
    return out


def _str_field(obj: Mapping[str, Any], key: str, shown: str) -> str:
    # An empty string is a shape the grammar refuses (one listing skipped), not a broken body.
    value = obj.get(key)
    if not isinstance(value, str):
        raise UnexpectedMessage(
            f"coinbase /products: field {key!r} missing or not a string", excerpt=shown
        )
    return value


def _opt_str(obj: Mapping[str, Any], key: str, shown: str) -> str | None:
    value = obj.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):  # a number or an object is not the documented shape
        raise UnexpectedMessage(f"coinbase /products: {key!r} is not a string", excerpt=shown)
    return value


# Capabilities this exchange does not have (the ExchangeAdapter contract).
L3_CHECKSUM = False
build_snapshot_url = None
snapshot_weight = None
parse_snapshot = None
parse_checksum = None
book_checksum = None


# --- trade backfill from REST (ops.dataset: ids every host missed) ------------------------
# `GET /products/<id>/trades?limit=&after=`: newest first, trades with ``trade_id < after``
# (the `CB-AFTER` header is the next cursor; we page with the lowest id received instead,
# which is the same). Public: 10 requests/s per IP. exchanges.md §2.
BACKFILL_PAGE_SIZE = 1000
BACKFILL_ASCENDING = False  # a page ends at the highest id asked for
BACKFILL_WEIGHT_PER_MIN = 600  # 10 requests/s


def build_trades_backfill_url(rest_url: str, spec: StreamSpec, first_id: int, last_id: int) -> str:
    """The page of trades from ``last_id`` down (``first_id`` bounds the page size)."""
    limit = max(1, min(BACKFILL_PAGE_SIZE, last_id - first_id + 1))
    return f"{rest_url}/products/{spec.symbol}/trades?limit={limit}&after={last_id + 1}"


def backfill_weight(spec: StreamSpec) -> int:
    return 1


def parse_backfill_trades(body: str | bytes, spec: StreamSpec) -> list[Trade]:
    """A backfill page (``[{time, trade_id, price, size, side}, ...]``) → the Trade records
    the matches channel gives for the same trades (``side`` is the maker's side)."""
    try:
        rows = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise bad_value("body", text(body, 60), body, "not JSON") from None
    if type(rows) is not list:
        raise bad_value("body", rows, body, "not a list of trades")
    out = []
    for r in rows:
        if type(r) is not dict:
            raise bad_value("body", r, body, "not a trade object")
        t = iso_time_ms(get(r, "time", body, "trade"), "time", body)
        side = get(r, "side", body, "trade")
        if side not in ("buy", "sell"):
            raise bad_value("side", side, body, "not buy/sell")
        out.append(
            Trade(
                event_time_ms=t,
                symbol=spec.symbol,
                trade_id=id_int(get(r, "trade_id", body, "trade"), "trade_id", body),
                price=positive(get(r, "price", body, "trade"), "price", body),
                quantity=positive(get(r, "size", body, "trade"), "size", body),
                trade_time_ms=t,
                is_buyer_maker=side == "buy",
            )
        )
    return out
