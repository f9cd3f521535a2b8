"""The adapter boundary (issue 16 item 3): every exchange value is checked before it can
become a record; what fails raises UnexpectedMessage with a documented reason and field."""

from __future__ import annotations

import base64
import json

import pytest

from collector.common.errors import UnexpectedMessage
from collector.exchanges import binance, bitfinex, bitstamp, coinbase
from collector.exchanges.base import Credentials, StreamSpec
from collector.model import BookUpdate, Control, L3Snapshot, Trade
from tests.conftest import read_events, recorded_frames

CREDS = Credentials("k", base64.b64encode(b"secret").decode(), "p")


def b_trade(**fields: object) -> str:
    d = {"e": "trade", "E": 1672515782136, "s": "BTCUSDT", "t": 12345, "p": "0.001", "q": "100",
         "T": 1672515782134, "m": True, "M": True}  # fmt: skip
    d.update(fields)
    return json.dumps({"stream": "btcusdt@trade", "data": d})


def b_depth(**fields: object) -> str:
    d = {"e": "depthUpdate", "E": 1672515782136, "s": "BTCUSDT", "U": 10, "u": 12,
         "b": [["100.5", "0"]], "a": [["101", "2.5"]]}  # fmt: skip
    d.update(fields)
    return json.dumps({"stream": "btcusdt@depth@100ms", "data": d})


def cb_match(**fields: object) -> str:
    d = {"type": "match", "trade_id": 10, "maker_order_id": "a", "taker_order_id": "b",
         "side": "buy", "size": "0.5", "price": "100.10", "product_id": "BTC-USD",
         "sequence": 50, "time": "2021-04-17T16:43:37.089723Z"}  # fmt: skip
    d.update(fields)
    return json.dumps(d)


def cb_l2(changes: object, **fields: object) -> str:
    d = {"type": "l2update", "product_id": "BTC-USD", "changes": changes,
         "time": "2021-04-17T16:43:37.089723Z"}  # fmt: skip
    d.update(fields)
    return json.dumps(d)


def bs_trade(**fields: object) -> str:
    d = {"id": 216000477, "amount": 0.0792, "amount_str": "0.07920000", "price": 3805.44,
         "price_str": "3805.44", "type": 0, "timestamp": "1641343699",
         "microtimestamp": "1641343699596000", "buy_order_id": 1, "sell_order_id": 2}  # fmt: skip
    d.update(fields)
    return json.dumps({"data": d, "channel": "live_trades_ethusd", "event": "trade"})


def bitfinex_trades() -> bitfinex.Parser:
    p = bitfinex.Parser(StreamSpec("BTCUSD", "trade"))
    p('{"event":"subscribed","channel":"trades","chanId":7,"symbol":"tBTCUSD","pair":"BTCUSD"}', 0)
    return p


def reason(parse, frame: str | bytes) -> tuple[str, str]:
    with pytest.raises(UnexpectedMessage) as info:
        parse(frame, 0)
    return info.value.reason, info.value.field


class TestForgedCsvValues:
    def test_binance_price_with_newline_is_refused(self):
        """A trade price "1\\n2,3,..." would forge a CSV row: it is a bad value of `p`."""
        frame = b_trade(p="1\n1672515782136,BTCUSDT,999,1,1,1672515782136,True,1")

        assert reason(binance.parse, frame) == ("bad_value", "p")
        assert reason(binance.make_parser(StreamSpec("BTCUSDT", "trade")), frame) == (
            "bad_value",
            "p",
        )

    def test_coinbase_level_quantity_with_a_misplaced_sign_is_refused(self):
        """`0.-10000` is not a decimal: the l2update is refused, nothing reaches the book."""
        frame = cb_l2([["buy", "100.10", "0.-10000"]])

        assert reason(coinbase.parse, frame) == ("bad_value", "changes")

    def test_coinbase_placeholder_time_is_not_year_one(self):
        """Coinbase's placeholder `0001-01-01T00:00:00Z` is refused, never written as year 1."""
        frame = cb_match(time="0001-01-01T00:00:00Z")
        full = json.dumps({"type": "open", "time": "0001-01-01T00:00:00Z",
                           "product_id": "BTC-USD", "sequence": 1, "price": "1", "side": "buy",
                           "order_id": "d50ec984-77a8-460a-b958-66f114b0de9b",
                           "remaining_size": "1"})  # fmt: skip

        assert reason(coinbase.parse, frame) == ("bad_value", "time")
        assert reason(coinbase.parse_full, full) == ("bad_value", "time")

    def test_bitfinex_number_sent_as_a_string_is_refused(self):
        """Bitfinex prices are JSON numbers: a JSON string (here with a newline) is refused."""
        p = bitfinex_trades()

        assert reason(p, '[7,"te",[1,1574694478809,0.5,"7245.3\\n1,2"],1574694478810]') == (
            "bad_value",
            "PRICE",
        )

    def test_bitstamp_boolean_side_is_refused(self):
        """`type: true` equals 1 in Python; it is not a documented side."""
        assert reason(bitstamp.parse, bs_trade(type=True)) == ("bad_value", "type")


class TestForeignSymbols:
    def test_binance_frame_of_another_symbol(self):
        """The combined stream name and the payload's `s` must both be the stream's."""
        p = binance.make_parser(StreamSpec("BTCUSDT", "trade"))
        other_stream = b_trade(s="ETHUSDT").replace("btcusdt@trade", "ethusdt@trade")

        assert reason(p, other_stream) == ("foreign_symbol", "")
        assert reason(p, b_trade(s="ETHUSDT")) == ("foreign_symbol", "")
        assert p(b_trade(), 0) == binance.parse(b_trade(), 0)

    def test_binance_unsubscribed_stream_of_our_symbol_is_ignored(self):
        """bookTicker of our symbol is ignored (as in the recordings); a trade on a book
        stream is not this stream's."""
        book = binance.make_parser(
            StreamSpec("BTCUSDT", "book", options={"depth_update_speed_ms": 100})
        )

        assert book('{"stream":"btcusdt@bookTicker","data":{"u":1}}', 0) == []
        assert reason(book, b_trade()) == ("unknown_type", "")
        assert book(b_depth(), 0) == binance.parse(b_depth(), 0)

    def test_coinbase_frame_and_heartbeat_of_another_product(self):
        """A heartbeat of another product would carry that product's last_trade_id."""
        p = coinbase.make_parser(StreamSpec("BTC-USD", "trade"))
        hb = ('{"type":"heartbeat","sequence":90,"last_trade_id":20,"product_id":"ETH-USD",'
              '"time":"2021-04-17T16:43:37.089723Z"}')  # fmt: skip

        assert reason(p, cb_match(product_id="ETH-USD")) == ("foreign_symbol", "")
        assert reason(p, hb) == ("foreign_symbol", "")
        assert p(cb_match(), 0) == coinbase.parse(cb_match(), 0)

    def test_coinbase_l3_parser_reads_the_full_channel(self):
        p = coinbase.make_parser(StreamSpec("BTC-USD", "l3", credentials=CREDS))
        done = json.dumps({"type": "done", "time": "2014-11-07T08:19:27.028459Z",
                           "product_id": "BTC-USD", "sequence": 10, "reason": "filled",
                           "order_id": "d50ec984-77a8-460a-b958-66f114b0de9b",
                           "side": "sell"})  # fmt: skip

        assert p(done, 0) == coinbase.parse_full(done, 0)
        assert reason(p, done.replace("BTC-USD", "ETH-USD")) == ("foreign_symbol", "")

    def test_bitstamp_channel_of_another_pair(self):
        p = bitstamp.make_parser(StreamSpec("ethusd", "trade"))

        assert reason(p, bs_trade().replace("live_trades_ethusd", "live_trades_btcusd")) == (
            "foreign_symbol",
            "",
        )
        assert reason(p, bs_trade().replace("live_trades_ethusd", "live_trades_ethusd\\n")) == (
            "foreign_symbol",
            "",
        )
        assert p(bs_trade(), 0) == bitstamp.parse(bs_trade(), 0)

    def test_bitfinex_subscribed_ack_of_another_symbol_does_not_take_its_channel(self):
        p = bitfinex.Parser(StreamSpec("BTCUSD", "trade"))
        ack = '{"event":"subscribed","channel":"trades","chanId":9,"symbol":"tETHUSD"}'

        assert reason(p, ack) == ("foreign_symbol", "")
        assert reason(p, '[9,"te",[1,1574694478809,0.5,7245.3]]') == ("foreign_symbol", "")

    def test_recorded_frames_of_the_stream_parse_as_with_parse(self, recorded):
        """make_parser gives exactly `parse`'s records for the stream's own recorded frames
        and refuses every other product's data frame as foreign."""
        p = coinbase.make_parser(StreamSpec("SKL-USD", "book"))
        own = foreign = 0
        for raw in recorded_frames("coinbase"):
            msg = json.loads(raw)
            if msg.get("product_id") in (None, "SKL-USD") or msg["type"] == "ticker":
                assert p(raw, 0) == coinbase.parse(raw, 0)
                own += 1
            else:
                assert reason(p, raw) == ("foreign_symbol", "")
                foreign += 1

        assert (own, foreign) == (2756, 7190)


class TestValues:
    @pytest.mark.parametrize(
        ("fields", "expected"),
        [
            ({"E": 1700000000}, ("bad_value", "E")),  # seconds, not ms
            ({"T": 4102444800000}, ("bad_value", "T")),  # 2100
            ({"t": 2**63}, ("bad_value", "t")),
            ({"t": -1}, ("bad_value", "t")),
            ({"t": 1.0}, ("bad_value", "t")),
            ({"t": "12345"}, ("bad_value", "t")),
            ({"m": 1}, ("bad_value", "m")),
            ({"p": "0"}, ("bad_value", "p")),
            ({"p": "-1"}, ("bad_value", "p")),
            ({"p": "1e5"}, ("bad_value", "p")),
            ({"p": "1" * 41}, ("bad_value", "p")),
            ({"p": "٣"}, ("bad_value", "p")),  # a digit of another script
            ({"q": 1}, ("bad_value", "q")),
            ({"q": "0.0"}, ("bad_value", "q")),
            ({"s": "BTC,USDT"}, ("bad_value", "s")),
        ],
    )
    def test_binance_trade_fields(self, fields, expected):
        assert reason(binance.parse, b_trade(**fields)) == expected

    def test_binance_missing_field_is_named(self):
        frame = json.dumps({"stream": "btcusdt@trade", "data": {"e": "trade", "E": 1}})

        assert reason(binance.parse, frame) == ("missing_field", "s")

    def test_binance_depth_levels(self):
        assert reason(binance.parse, b_depth(b=[["0", "1"]])) == ("bad_value", "b")
        assert reason(binance.parse, b_depth(a=[["1", "x"]])) == ("bad_value", "a")
        assert reason(binance.parse, b_depth(a="[]")) == ("bad_value", "a")
        assert reason(binance.parse, b_depth(U=13)) == ("bad_value", "U")
        assert binance.parse(b_depth(), 0) == [
            BookUpdate("BTCUSDT", 1672515782136, [("100.5", "0")], [("101", "2.5")],
                       first_id=10, last_id=12)
        ]  # fmt: skip

    def test_snapshot_levels_are_positive(self):
        body = '{"lastUpdateId":1,"bids":[["1.0","0"]],"asks":[]}'

        assert reason(lambda b, _: binance.parse_snapshot(b, "X"), body) == ("bad_value", "bids")

    @pytest.mark.parametrize(
        ("frame", "expected"),
        [
            ("not json", ("malformed", "")),
            (b"\xff\xfe", ("malformed", "")),
            ("[1, 2]", ("malformed", "")),
            ('{"e":"somethingNew"}', ("unknown_type", "")),
            ('{"hello":1}', ("unknown_type", "")),
            ('{"stream":5,"data":{}}', ("bad_value", "stream")),
            ('{"stream":"btcusdt@trade","data":[1]}', ("bad_value", "data")),
        ],
    )
    def test_binance_frames(self, frame, expected):
        assert reason(binance.parse, frame) == expected

    @pytest.mark.parametrize(
        ("fields", "expected"),
        [
            ({"trade_id": "10"}, ("bad_value", "trade_id")),
            ({"trade_id": True}, ("bad_value", "trade_id")),
            ({"side": "up"}, ("bad_value", "side")),
            ({"price": 100.1}, ("bad_value", "price")),
            ({"size": "0"}, ("bad_value", "size")),
            ({"time": "2021-04-17T16:43:37.089723"}, ("bad_value", "time")),  # no zone
            ({"time": "2021-13-17T16:43:37Z"}, ("bad_value", "time")),
            ({"time": "2021-04-17T16:43:37.089723Z\n"}, ("bad_value", "time")),
            ({"product_id": "BTC-USD\n"}, ("bad_value", "product_id")),
        ],
    )
    def test_coinbase_match_fields(self, fields, expected):
        assert reason(coinbase.parse, cb_match(**fields)) == expected

    def test_coinbase_missing_field_and_unknown_type(self):
        frame = json.loads(cb_match())
        del frame["price"]

        assert reason(coinbase.parse, json.dumps(frame)) == ("missing_field", "price")
        assert reason(coinbase.parse, '{"type":"teleport"}') == ("unknown_type", "")
        assert reason(coinbase.parse, cb_l2([["buy", "1"]])) == ("bad_value", "changes")

    def test_coinbase_order_ids_are_uuids(self):
        full = json.dumps({"type": "open", "time": "2014-11-07T08:19:27.028459Z",
                           "product_id": "BTC-USD", "sequence": 1, "price": "1", "side": "buy",
                           "order_id": "d50ec984,77a8", "remaining_size": "1"})  # fmt: skip
        body = '{"sequence":3,"bids":[["1","1","x\\ny"]],"asks":[]}'

        assert reason(coinbase.parse_full, full) == ("bad_value", "order_id")
        assert reason(lambda b, _: coinbase.parse_l3_snapshot(b, "BTC-USD", 0), body) == (
            "bad_value",
            "bids",
        )

    def test_bitstamp_fields(self):
        assert reason(bitstamp.parse, bs_trade(microtimestamp=1641343699596000)) == (
            "bad_value",
            "microtimestamp",
        )
        assert reason(bitstamp.parse, bs_trade(microtimestamp="1000000")) == (
            "bad_value",
            "microtimestamp",
        )
        assert reason(bitstamp.parse, bs_trade(id="216000477")) == ("bad_value", "id")
        assert reason(bitstamp.parse, bs_trade(price_str="3805,44")) == ("bad_value", "price_str")
        assert reason(bitstamp.parse, '{"event":"trade","channel":7}') == ("bad_value", "channel")

    @pytest.mark.parametrize(
        ("frame", "expected"),
        [
            ('[7,"te",[1,1574694478809,0,7245.3]]', ("bad_value", "AMOUNT")),  # no side
            ('[7,"te",[1,1574694478809,0.5,-7245.3]]', ("bad_value", "PRICE")),
            ('[7,"te",[1,1574694478809,0.5,true]]', ("bad_value", "PRICE")),
            ('[7,"te",[1,1574694478809,NaN,1]]', ("malformed", "")),
            ('[7,"te",[1.5,1574694478809,0.5,1]]', ("bad_value", "ID")),
            ('[7,"te",[1,1574694478,0.5,1]]', ("bad_value", "MTS")),
            ('[7,"te",[1,1574694478809,0.5]]', ("bad_value", "TRADE")),
            ('[7,"cs","123"]', ("bad_value", "CHECKSUM")),
            ('[7,"xx",[1]]', ("unknown_type", "")),
            ('"hb"', ("malformed", "")),
        ],
    )
    def test_bitfinex_trade_values(self, frame, expected):
        assert reason(bitfinex_trades(), frame) == expected

    def test_bitfinex_exponent_numbers_are_kept_as_sent(self):
        """Bitfinex numbers are JSON numbers: `1e-08` is kept as the exact text sent."""
        p = bitfinex_trades()

        assert p('[7,"te",[1,1574694478809,-1e-08,7245.3]]', 0) == [
            Trade(1574694478809, "BTCUSD", 1, "7245.3", "1e-08", 1574694478809, True)
        ]


class TestNesting:
    def test_binance_deeply_nested_result_does_not_recurse(self):
        """`str()` of a 1000-deep list raises RecursionError; the detail stays printable."""
        nested = "[" * 1000 + "]" * 1000

        [ack] = binance.parse('{"result":' + nested + ',"id":1}', 0)

        assert ack == Control("subscribed", "<unprintable>")

    def test_binance_nesting_past_orjson_limit_is_malformed(self):
        assert reason(binance.parse, '{"a":' + "[" * 5000 + "]" * 5000 + "}") == ("malformed", "")

    def test_bitfinex_deep_nesting_is_malformed_not_a_recursion_error(self):
        p = bitfinex_trades()

        assert reason(p, "[" * 100_000 + "]" * 100_000) == ("malformed", "")


class TestBitstampSnapshotWithoutMicrotimestamp:
    def test_book_snapshot_aligns_on_the_start_of_its_second(self, recorded):
        """Without `microtimestamp`, the key is 1 µs before `timestamp`'s second begins."""
        e = next(e for e in read_events(recorded["bitstamp"]) if e["t"] == "http"
                 and "/order_book/" in str(e["url"]))  # fmt: skip
        body = json.loads(str(e["data"]))
        del body["microtimestamp"]

        snap = bitstamp.parse_snapshot(json.dumps(body), "sgbeur")

        assert (snap.first_id, snap.last_id, snap.ts_ms) == (
            int(body["timestamp"]) * 1_000_000 - 1,
            int(body["timestamp"]) * 1_000_000 - 1,
            int(body["timestamp"]) * 1000,
        )
        assert len(snap.bids) == len(body["bids"])
        assert len(snap.asks) == len(body["asks"])

    def test_l3_snapshot_aligns_on_the_start_of_its_second(self):
        body = '{"timestamp":"1641343695","bids":[["3802.90","0.6","11"]],"asks":[]}'

        assert bitstamp.parse_l3_snapshot(body, "ethusd", 0) == L3Snapshot(
            "ethusd", 1641343695000, None, [("11", "B", "3802.90", "0.6")],
            ts_us=1641343694999999,
        )  # fmt: skip

    def test_a_diff_at_the_very_start_of_that_second_is_applied(self):
        """A diff stamped exactly T.000000 may postdate the snapshot: it is kept."""
        from collector.book import BookSync, Rows

        snap = bitstamp.parse_snapshot(
            '{"timestamp":"1641343695","bids":[["10.0","1.0"]],"asks":[["11.0","1.0"]]}', "x"
        )
        diff = BookUpdate("x", 1641343695000, [("10.5", "2.0")], [], first_id=0,
                          last_id=1641343695000000)  # fmt: skip
        sync = BookSync(depth=2, snapshot_from_rest=True)
        sync.feed(diff)

        rows = [v for v in sync.feed(snap) if isinstance(v, Rows)]

        assert rows[0].bids[0] == ("10.5", "2.0")

    def test_snapshot_without_any_time_is_a_missing_field(self):
        body = '{"bids":[],"asks":[]}'

        assert reason(lambda b, _: bitstamp.parse_snapshot(b, "x"), body) == (
            "missing_field",
            "timestamp",
        )


class TestCoinbaseSigning:
    @pytest.mark.parametrize("data_type", ["trade"])
    def test_public_channels_are_never_signed(self, data_type):
        """matches + heartbeat need no authentication: no key, passphrase or signature is sent
        even when COINBASE_API_* are set."""
        [raw] = coinbase.build_subscribe(StreamSpec("BTC-USD", data_type, credentials=CREDS), 1.0)

        assert json.loads(raw) == {
            "type": "subscribe",
            "product_ids": ["BTC-USD"],
            "channels": ["matches", "heartbeat"],
        }

    def test_channels_that_need_auth_are_signed(self):
        book = json.loads(
            coinbase.build_subscribe(StreamSpec("BTC-USD", "book", credentials=CREDS), 1.0)[0]
        )
        l3 = json.loads(
            coinbase.build_subscribe(StreamSpec("BTC-USD", "l3", credentials=CREDS), 1.0)[0]
        )

        assert (book["channels"][0], "signature" in book) == ("level2", True)
        assert (l3["channels"][0], "signature" in l3) == ("full", True)
