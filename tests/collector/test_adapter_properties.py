"""Property-based tests of every adapter's parse (issue 16): for any frame, parse returns
records whose every field passes the boundary grammar, or raises UnexpectedMessage.

Frames are the real message shapes (recordings, docs) with values replaced by hostile
strings, numbers and types, keys dropped and lists cut, plus arbitrary text and bytes. The
grammar checked here is written independently of collector/exchanges/base.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.common.errors import REASONS, UnexpectedMessage
from collector.exchanges import binance, bitfinex, bitstamp, coinbase
from collector.exchanges.base import Credentials, StreamSpec
from collector.model import (
    BookChecksum,
    BookUpdate,
    Control,
    L3Event,
    L3Snapshot,
    Trade,
)

TS_RECV_US = 1_700_000_000_123_456
MIN_MS, MAX_MS = 1_230_768_000_000, 4_102_444_800_000  # 2009-01-01 .. 2100-01-01
CREDS = Credentials("k", "c2VjcmV0", "p")
# No example database: the tests write nothing into the checkout (a failure prints its frame).
SETTINGS = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

POSITIVE = re.compile(r"(?=[0-9.]{1,40}\Z)(?=.*[1-9])[0-9]+(?:\.[0-9]+)?")
DECIMAL = re.compile(r"(?=[0-9.]{1,40}\Z)[0-9]+(?:\.[0-9]+)?")
# Bitfinex: JSON numbers as sent, exponent allowed, unsigned once the side is taken off.
BFX_POSITIVE = re.compile(r"(?=.{1,40}\Z)(?=[0-9.]*[1-9])[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
DIGIT_ID = re.compile(r"[0-9]{1,19}")
WORD = re.compile(r"[A-Za-z_]{0,32}")
CONTROL_KINDS = {"subscribed", "heartbeat", "error", "reconnect", "pause"}
L3_ACTIONS = {"add", "change", "delete", "match", "snapshot", "noop"}

# --- hostile values --------------------------------------------------------------------

HOSTILE_STRINGS = [
    "", " ", "0", "0.0", "00", "1", "1.", ".5", "0.-10000", "-1", "+1", "1e5", "1E-8", "NaN",
    "Infinity", "1\n2", "1,2", '1"', "1\r", "\x00", "٣", "１", "1" * 41, "9" * 25,
    "0.00000001", "123.45600000", "-0.5", "0001-01-01T00:00:00Z", "2021-04-17T16:43:37.089Z",
    "2021-02-30T00:00:00Z", "2099-12-31T23:59:59.999999999Z", "2100-01-01T00:00:00Z",
    "1641343695572693", "1000000", "99999999999999999999", "BTCUSDT", "ETHUSDT", "BTC-USD",
    "ETH-USD", "btcusd", "ethusd", "tBTCUSD", "tETHUSD", "btcusdt@trade", "ethusdt@trade",
    "live_trades_btcusd", "diff_order_book_ethusd", "buy", "sell", "bid", "filled", "STP,x",
    "d50ec984-77a8-460a-b958-66f114b0de9b", "D50EC984-77A8-460A-B958-66F114B0DE9B", "hb", "cs",
    "te", "tu", "trade", "aggTrade", "depthUpdate", "match", "open", "done", "change",
]  # fmt: skip
HOSTILE_INTS = [
    0, 1, -1, 2, 2**31 - 1, 2**31, -(2**31) - 1, 2**63 - 1, 2**63, -(2**63), 10**30,
    MIN_MS - 1, MIN_MS, MAX_MS - 1, MAX_MS, 1_700_000_000, 1_700_000_000_000_000,
]  # fmt: skip


def _nested(depth: int) -> Any:
    v: Any = []
    for _ in range(depth):
        v = [v]
    return v


hostile_str = st.one_of(
    st.sampled_from(HOSTILE_STRINGS),
    st.text(max_size=24),
    st.from_regex(r"-?[0-9]{0,4}\.?[0-9]{0,4}(?:[eE]-?[0-9]{1,2})?", fullmatch=True),
)
hostile = st.one_of(
    hostile_str,
    st.sampled_from(HOSTILE_INTS),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.lists(st.one_of(st.integers(), hostile_str), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    st.sampled_from([_nested(50), _nested(300)]),
)


@st.composite
def mutated(draw: st.DrawFn, template: Any) -> Any:
    """The template with some values replaced by hostile ones, keys dropped, lists cut."""

    def walk(v: Any) -> Any:
        if draw(st.integers(0, 11)) == 0:
            return draw(hostile)
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items() if draw(st.integers(0, 24)) != 0}
        if isinstance(v, list):
            items = [walk(x) for x in v]
            if draw(st.integers(0, 14)) == 0:
                items = items[: draw(st.integers(0, len(items)))]
            return items
        return v

    return walk(template)


def frames(templates: list[Any]) -> st.SearchStrategy[str | bytes]:
    """Mutated real shapes as JSON text (NaN and Infinity included), plus junk text/bytes."""
    shaped = st.sampled_from(templates).flatmap(mutated).map(json.dumps)
    deep = st.integers(1, 3000).map(lambda n: '{"a":' + "[" * n + "]" * n + "}")
    return st.one_of(
        shaped, shaped, shaped, shaped, st.text(max_size=60), st.binary(max_size=60), deep
    )


# --- the grammar, checked on every record -----------------------------------------------


def csv_safe(*values: str) -> None:
    for v in values:
        assert type(v) is str
        assert not set(v) & {"\n", "\r", ",", '"', "\x00"}, v


def plausible_ms(t: object, zero_ok: bool = True) -> None:
    assert type(t) is int
    assert (zero_ok and t == 0) or MIN_MS <= t < MAX_MS, t


def an_id(v: object) -> None:
    assert type(v) is int
    assert 0 <= v < 2**63, v


def check(rec: object, symbol: Callable[[str], bool], exchange: str) -> None:
    """Every field of ``rec`` passes the boundary grammar of ``exchange``."""
    pos = BFX_POSITIVE if exchange == "bitfinex" else POSITIVE
    oid = UUID if exchange == "coinbase" else DIGIT_ID
    if type(rec) is Trade:
        plausible_ms(rec.event_time_ms, zero_ok=False)
        plausible_ms(rec.trade_time_ms, zero_ok=False)
        assert symbol(rec.symbol), rec.symbol
        an_id(rec.trade_id)
        assert pos.fullmatch(rec.price), rec.price
        assert pos.fullmatch(rec.quantity), rec.quantity
        assert type(rec.is_buyer_maker) is bool
        csv_safe(rec.symbol, rec.price, rec.quantity)
    elif type(rec) is BookUpdate:
        assert symbol(rec.symbol), rec.symbol
        plausible_ms(rec.ts_ms)
        for price, qty in [*rec.bids, *rec.asks]:
            assert pos.fullmatch(price), price
            assert pos.fullmatch(qty) or (not rec.is_snapshot and re.fullmatch(r"0+(\.0+)?", qty))
            csv_safe(price, qty)
        for i in (rec.first_id, rec.last_id):
            assert i is None or (type(i) is int and 0 <= i < 2**63), i
    elif type(rec) is Control:
        assert rec.kind in CONTROL_KINDS
        assert type(rec.detail) is str
        assert rec.last_trade_id is None or (type(rec.last_trade_id) is int)
        if rec.last_trade_id is not None:
            an_id(rec.last_trade_id)
    elif type(rec) is L3Event:
        plausible_ms(rec.ts_ms)
        assert symbol(rec.symbol), rec.symbol
        assert rec.sequence is None or an_id(rec.sequence) is None
        assert rec.action in L3_ACTIONS
        assert rec.order_id == "" if rec.action == "noop" and not rec.order_id else True
        if rec.order_id:
            assert oid.fullmatch(rec.order_id), rec.order_id
        assert rec.side in ("B", "A", "")
        assert (
            rec.price == ""
            or pos.fullmatch(rec.price)
            or (rec.price == "0" and rec.action == "delete" and exchange == "bitfinex")
        ), rec.price
        assert (
            rec.size == ""
            or pos.fullmatch(rec.size)
            or (rec.action == "delete" and DECIMAL.fullmatch(rec.size))
        ), rec.size
        assert rec.trade_id is None or an_id(rec.trade_id) is None
        for o in (rec.maker_order_id, rec.taker_order_id):
            assert o == "" or oid.fullmatch(o), o
        assert WORD.fullmatch(rec.reason), rec.reason
        assert rec.ts_us is None or MIN_MS * 1000 <= rec.ts_us < MAX_MS * 1000
        csv_safe(rec.symbol, rec.order_id, rec.price, rec.size, rec.reason)
    elif type(rec) is L3Snapshot:
        assert symbol(rec.symbol)
        plausible_ms(rec.ts_ms, zero_ok=False)
        assert rec.sequence is None or an_id(rec.sequence) is None
        for order_id, side, price, size in rec.orders:
            assert oid.fullmatch(order_id), order_id
            assert side in ("B", "A")
            assert pos.fullmatch(price), price
            assert pos.fullmatch(size), size
            csv_safe(order_id, price, size)
        assert rec.ts_us is None or MIN_MS * 1000 <= rec.ts_us < MAX_MS * 1000
    elif type(rec) is BookChecksum:
        assert symbol(rec.symbol)
        plausible_ms(rec.ts_ms, zero_ok=False)
        assert rec.sequence is None or an_id(rec.sequence) is None
        assert type(rec.checksum) is int
        assert -(2**31) <= rec.checksum < 2**31
    else:
        pytest.fail(f"unexpected record {rec!r}")


def holds(parse: Callable[[Any], object], raw: str | bytes, symbol: Callable[[str], bool],
          exchange: str) -> None:  # fmt: skip
    """parse(raw) returns grammatical records or raises UnexpectedMessage, nothing else."""
    error: UnexpectedMessage | None = None
    try:
        out = parse(raw)
    except UnexpectedMessage as exc:
        error = exc
    if error is not None:
        assert error.reason in REASONS
        if error.reason in ("missing_field", "bad_value"):
            assert error.field
        return
    records = out if isinstance(out, list) else [out]
    for rec in records:
        check(rec, symbol, exchange)


def is_(expected: str) -> Callable[[str], bool]:
    return lambda s: s == expected


def fits(pattern: re.Pattern[str]) -> Callable[[str], bool]:
    return lambda s: pattern.fullmatch(s) is not None


# --- Binance ---------------------------------------------------------------------------

B_TRADE = {"e": "trade", "E": 1672515782136, "s": "BTCUSDT", "t": 12345, "p": "0.001",
           "q": "100", "T": 1672515782134, "m": True, "M": True}  # fmt: skip
B_AGG = {"e": "aggTrade", "E": 1633998523963, "s": "BTCUSDT", "a": 15683430, "p": "0.3528",
         "q": "58.0", "f": 1, "l": 2, "T": 1633998523963, "m": False, "M": True}  # fmt: skip
B_DEPTH = {"e": "depthUpdate", "E": 1633998523963, "s": "BTCUSDT", "U": 10, "u": 12,
           "b": [["0.35210000", "0.00000000"], ["0.352", "1"]], "a": [["0.36", "9.5"]]}  # fmt: skip
BINANCE = [
    {"stream": "btcusdt@trade", "data": B_TRADE},
    {"stream": "btcusdt@aggTrade", "data": B_AGG},
    {"stream": "btcusdt@depth", "data": B_DEPTH},
    {"stream": "btcusdt@depth@100ms", "data": B_DEPTH},
    {"stream": "btcusdt@bookTicker", "data": {"u": 1, "s": "BTCUSDT", "b": "1", "B": "2"}},
    {"stream": "!serverShutdown", "data": {"e": "serverShutdown", "E": 1}},
    B_TRADE,
    B_DEPTH,
    {"result": None, "id": 1},
    {"error": {"code": 2, "msg": "Invalid request"}, "id": 1},
    {"code": 3, "msg": "Invalid JSON"},
]
B_SNAPSHOT = [{"lastUpdateId": 42, "bids": [["1.0", "2.0"]], "asks": [["1.1", "3"]]}]


@pytest.mark.parametrize(
    "spec",
    [
        StreamSpec("BTCUSDT", "trade"),
        StreamSpec("BTCUSDT", "trade", options={"binance_trade_stream": "aggTrade"}),
        StreamSpec("BTCUSDT", "book"),
        StreamSpec("BTCUSDT", "book", options={"depth_update_speed_ms": 100}),
    ],
    ids=str,
)
@SETTINGS
@given(raw=frames(BINANCE))
def test_binance_make_parser(spec, raw):
    """The stream's parser: grammatical records of BTCUSDT only, or UnexpectedMessage."""
    p = binance.make_parser(spec)

    holds(lambda r: p(r, TS_RECV_US), raw, is_("BTCUSDT"), "binance")


@SETTINGS
@given(raw=frames(BINANCE))
def test_binance_parse(raw):
    holds(lambda r: binance.parse(r, TS_RECV_US), raw, fits(binance.SYMBOL_PATTERN), "binance")


@SETTINGS
@given(raw=frames(B_SNAPSHOT))
def test_binance_parse_snapshot(raw):
    holds(lambda r: binance.parse_snapshot(r, "BTCUSDT"), raw, is_("BTCUSDT"), "binance")


# --- Coinbase --------------------------------------------------------------------------

T = "2021-04-17T16:43:37.089723Z"
OID = "d50ec984-77a8-460a-b958-66f114b0de9b"
OID2 = "132fb6ae-456b-4654-b4e0-d681ac05cea1"
CB_MATCH = {"type": "match", "trade_id": 10, "maker_order_id": OID, "taker_order_id": OID2,
            "side": "buy", "size": "0.5", "price": "100.10", "product_id": "BTC-USD",
            "sequence": 50, "time": T}  # fmt: skip
COINBASE = [
    CB_MATCH,
    {**CB_MATCH, "type": "last_match"},
    {"type": "l2update", "product_id": "BTC-USD", "time": T,
     "changes": [["buy", "100.10", "0.00000000"], ["sell", "100.2", "1.5"]]},
    {"type": "snapshot", "product_id": "BTC-USD", "bids": [["100.1", "2"]],
     "asks": [["100.2", "0.5"]]},
    {"type": "heartbeat", "sequence": 90, "last_trade_id": 20, "product_id": "BTC-USD",
     "time": T},
    {"type": "subscriptions", "channels": [{"name": "matches", "product_ids": ["BTC-USD"]}]},
    {"type": "error", "message": "Failed to subscribe", "reason": "X is not a valid product"},
    {"type": "ticker", "product_id": "BTC-USD", "price": "1"},
]  # fmt: skip
CB_FULL = [
    *COINBASE,
    {"type": "received", "time": T, "product_id": "BTC-USD", "sequence": 10, "order_id": OID,
     "size": "1.34", "price": "502.1", "side": "buy", "order_type": "limit"},
    {"type": "open", "time": T, "product_id": "BTC-USD", "sequence": 10, "order_id": OID,
     "price": "200.2", "remaining_size": "1.00", "side": "sell"},
    {"type": "done", "time": T, "product_id": "BTC-USD", "sequence": 10, "price": "200.2",
     "order_id": OID, "reason": "filled", "side": "sell", "remaining_size": "0"},
    {"type": "change", "reason": "STP", "time": T, "sequence": 80, "order_id": OID,
     "side": "sell", "product_id": "BTC-USD", "old_size": "12.2", "new_size": "5.2",
     "price": "400.23"},
    {"type": "change", "reason": "modify_order", "time": T, "sequence": 2, "order_id": OID,
     "side": "buy", "product_id": "BTC-USD", "old_size": "80", "new_size": "80",
     "old_price": "7", "new_price": "6"},
    {"type": "change", "time": T, "sequence": 81, "order_id": OID, "product_id": "BTC-USD",
     "new_funds": "5.2", "old_funds": "12.2", "price": "400.23", "side": "buy"},
    {"type": "activate", "product_id": "BTC-USD", "timestamp": "1483736448.299000",
     "order_id": OID, "side": "buy", "size": "2"},
]  # fmt: skip
CB_L3_SNAPSHOT = [
    {"sequence": 3, "bids": [["295.96", "0.05088265", OID]], "asks": [["295.97", "5.7", OID2]]},
    {"sequence": 3, "time": T, "bids": [], "asks": [["295.97", "5.7", OID2]]},
]


@pytest.mark.parametrize("data_type", ["trade", "book", "l3"])
@SETTINGS
@given(raw=frames(CB_FULL))
def test_coinbase_make_parser(data_type, raw):
    p = coinbase.make_parser(StreamSpec("BTC-USD", data_type, credentials=CREDS))

    holds(lambda r: p(r, TS_RECV_US), raw, is_("BTC-USD"), "coinbase")


@SETTINGS
@given(raw=frames(COINBASE))
def test_coinbase_parse(raw):
    holds(lambda r: coinbase.parse(r, TS_RECV_US), raw, fits(coinbase.SYMBOL_PATTERN), "coinbase")


@SETTINGS
@given(raw=frames(CB_FULL))
def test_coinbase_parse_full(raw):
    holds(
        lambda r: coinbase.parse_full(r, TS_RECV_US), raw, fits(coinbase.SYMBOL_PATTERN),
        "coinbase",
    )  # fmt: skip


@SETTINGS
@given(raw=frames(CB_L3_SNAPSHOT))
def test_coinbase_parse_l3_snapshot(raw):
    holds(
        lambda r: coinbase.parse_l3_snapshot(r, "BTC-USD", TS_RECV_US), raw, is_("BTC-USD"),
        "coinbase",
    )  # fmt: skip


# --- Bitstamp --------------------------------------------------------------------------

BS_ORDER = {"id": 1443875737346049, "id_str": "1443875737346049", "order_type": 1,
            "datetime": "1641343699", "microtimestamp": "1641343699596000", "amount": 0.5,
            "amount_str": "0.50000000", "price": 3805.44, "price_str": "3805.44"}  # fmt: skip
BITSTAMP = [
    {"data": {"id": 216000477, "amount": 0.0792, "amount_str": "0.07920000", "price": 3805.44,
              "price_str": "3805.44", "type": 0, "timestamp": "1641343699",
              "microtimestamp": "1641343699596000", "buy_order_id": 1, "sell_order_id": 2},
     "channel": "live_trades_btcusd", "event": "trade"},
    {"data": {"timestamp": "1641343691", "microtimestamp": "1641343691244908",
              "bids": [["1.15979", "993.02588113"]], "asks": [["1.16601", "0"]]},
     "channel": "diff_order_book_btcusd", "event": "data"},
    {"data": BS_ORDER, "channel": "live_orders_btcusd", "event": "order_created"},
    {"data": BS_ORDER, "channel": "live_orders_btcusd", "event": "order_changed"},
    {"data": {**BS_ORDER, "amount_str": "0"}, "channel": "live_orders_btcusd",
     "event": "order_deleted"},
    {"event": "bts:subscription_succeeded", "channel": "live_trades_btcusd", "data": {}},
    {"event": "bts:subscription_succeeded", "channel": "diff_order_book_btcusd", "data": {}},
    {"event": "bts:request_reconnect", "channel": "", "data": ""},
    {"event": "bts:error", "channel": "", "data": {"code": None, "message": "Bad."}},
    {"event": "bts:heartbeat", "channel": "", "data": {"status": "success"}},
]  # fmt: skip
BS_SNAPSHOT = [
    {"timestamp": "1641343695", "microtimestamp": "1641343695572693",
     "bids": [["3802.90", "0.6"]], "asks": [["3805.44", "1.0"]]},
    {"timestamp": "1641343695", "bids": [["3802.90", "0.6"]], "asks": []},
]  # fmt: skip
BS_L3_SNAPSHOT = [
    {"timestamp": "1641343695", "microtimestamp": "1641343695681418",
     "bids": [["3802.90", "0.6", "1443875731320832"]], "asks": [["3805.44", "1.0", 7]]},
]  # fmt: skip


@pytest.mark.parametrize("data_type", ["trade", "book", "l3"])
@SETTINGS
@given(raw=frames(BITSTAMP))
def test_bitstamp_make_parser(data_type, raw):
    p = bitstamp.make_parser(StreamSpec("btcusd", data_type))

    holds(lambda r: p(r, TS_RECV_US), raw, is_("btcusd"), "bitstamp")


@SETTINGS
@given(raw=frames(BITSTAMP))
def test_bitstamp_parse(raw):
    holds(lambda r: bitstamp.parse(r, TS_RECV_US), raw, fits(bitstamp.SYMBOL_PATTERN), "bitstamp")


@SETTINGS
@given(raw=frames(BS_SNAPSHOT))
def test_bitstamp_parse_snapshot(raw):
    holds(lambda r: bitstamp.parse_snapshot(r, "btcusd"), raw, is_("btcusd"), "bitstamp")


@SETTINGS
@given(raw=frames(BS_L3_SNAPSHOT))
def test_bitstamp_parse_l3_snapshot(raw):
    holds(
        lambda r: bitstamp.parse_l3_snapshot(r, "btcusd", TS_RECV_US), raw, is_("btcusd"),
        "bitstamp",
    )  # fmt: skip


# --- Bitfinex --------------------------------------------------------------------------

BF_ACKS = {
    "trade": {"event": "subscribed", "channel": "trades", "chanId": 7, "symbol": "tBTCUSD",
              "pair": "BTCUSD"},
    "book": {"event": "subscribed", "channel": "book", "chanId": 7, "symbol": "tBTCUSD",
             "prec": "P0", "freq": "F0", "len": "25", "pair": "BTCUSD"},
    "l3": {"event": "subscribed", "channel": "book", "chanId": 7, "symbol": "tBTCUSD",
           "prec": "R0", "freq": "F0", "len": "25", "pair": "BTCUSD"},
}  # fmt: skip
BF_R0 = [
    [7, [[34668224131, 9500, 0.5], [34668224151, 9502.1, -2.5e-05]], 1, 1574694475039],
    [7, [34668224140, 9500.5, 0.3], 2, 1574694475100],
    [7, [34668224131, 0, 1], 3, 1574694475200],
    [7, "hb", 5, 1574694490000],
    [7, "cs", -1234567890, 4, 1574694475300],
]
BITFINEX = [
    *BF_ACKS.values(),
    *BF_R0,
    [7, "te", [401597396, 1574694478809, -0.02, 7245.3], 1574694478810],
    [7, "te", [401597397, 1574694478811, 2.5e-05, 7245.4]],
    [7, "tu", [401597396, 1574694478809, -0.02, 7245.3], 1574694479000],
    [7, [[401597395, 1574694478808, 0.005, 7245.3]], 1574694478900],
    [7, [[7254.7, 3, 3.3], [7255.1, 1, -0.25]], 1574698100000],
    [7, [7254.5, 1, 0.8], 1574698100100],
    [7, [7255.1, 0, -1], 1574698100200],
    {"event": "info", "version": 2, "platform": {"status": 1}},
    {"event": "info", "code": 20051, "msg": "Stopping. Please try to reconnect"},
    {"event": "conf", "status": "OK", "flags": 229376},
    {"event": "pong", "ts": 1511545528111, "cid": 1234},
    {"event": "error", "msg": "symbol: invalid", "code": 10001},
]  # fmt: skip


@pytest.mark.parametrize("data_type", ["trade", "book", "l3"])
@SETTINGS
@given(raw=frames(BITFINEX))
def test_bitfinex_make_parser(data_type, raw):
    """After our own subscribed ack, any frame: grammatical BTCUSD records or the error."""
    p = bitfinex.make_parser(StreamSpec("BTCUSD", data_type, options={"book_len": 25}))
    p(json.dumps(BF_ACKS[data_type]), TS_RECV_US)

    holds(lambda r: p(r, TS_RECV_US), raw, is_("BTCUSD"), "bitfinex")


@SETTINGS
@given(ack=mutated(BF_ACKS["l3"]).map(json.dumps), raw=frames(BITFINEX))
def test_bitfinex_mutated_subscription_then_any_frame(ack, raw):
    """A hostile ack first (it may be refused, or not ours), then any frame."""
    p = bitfinex.make_parser(StreamSpec("BTCUSD", "l3", options={"book_len": 25}))

    holds(lambda r: p(r, TS_RECV_US), ack, is_("BTCUSD"), "bitfinex")
    holds(lambda r: p(r, TS_RECV_US), raw, is_("BTCUSD"), "bitfinex")


def test_hostile_values_include_every_kind():
    """The strategies above reach each record type (a property test that only ever sees
    errors would prove nothing): each template parses to records when left intact."""
    seen: set[str] = set()
    for raw in map(json.dumps, BINANCE):
        seen.update(type(r).__name__ for r in binance.parse(raw, TS_RECV_US))
    for raw in map(json.dumps, CB_FULL):
        seen.update(type(r).__name__ for r in coinbase.parse_full(raw, TS_RECV_US))
    p = bitfinex.make_parser(StreamSpec("BTCUSD", "l3", options={"book_len": 25}))
    for raw in map(json.dumps, [BF_ACKS["l3"], *BF_R0]):
        seen.update(type(r).__name__ for r in p(raw, TS_RECV_US))

    assert seen == {"Trade", "BookUpdate", "Control", "L3Event", "L3Snapshot", "BookChecksum"}
