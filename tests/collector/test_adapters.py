"""Binance and Coinbase adapters on every recorded frame and on frames built from the docs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from collector.common.errors import ConfigError, UnexpectedMessage
from collector.exchanges import binance, coinbase
from collector.exchanges.base import Credentials, StreamSpec, iso_to_ms
from collector.model import BookUpdate, Control, Trade
from tests.conftest import recorded_frames


class TestRecorded:
    def test_every_binance_frame_parses_or_is_ignored(self, recorded):
        """All 265 recorded Binance frames parse; only depth and aggTrade produce records."""
        kinds: dict[str, int] = {}
        for frame in recorded_frames("binance"):
            for rec in binance.parse(frame, 0):
                kinds[type(rec).__name__] = kinds.get(type(rec).__name__, 0) + 1

        assert kinds == {"BookUpdate": 177, "Trade": 2}

    def test_every_coinbase_frame_parses_or_is_ignored(self, recorded):
        """All recorded Coinbase frames parse: 10 snapshots, 9719 l2updates, 107 trades."""
        kinds: dict[str, int] = {}
        for frame in recorded_frames("coinbase"):
            for rec in coinbase.parse(frame, 0):
                key = type(rec).__name__
                if isinstance(rec, BookUpdate) and rec.is_snapshot:
                    key = "snapshot"
                kinds[key] = kinds.get(key, 0) + 1

        assert kinds == {"snapshot": 10, "BookUpdate": 9719, "Trade": 107, "Control": 3}

    def test_coinbase_trade_ids_contiguous_in_recording(self, recorded):
        """Per product, last_match + matches form contiguous trade ids (exchanges.md §2)."""
        by_product: dict[str, list[int]] = {}
        for frame in recorded_frames("coinbase"):
            for rec in coinbase.parse(frame, 0):
                if isinstance(rec, Trade):
                    by_product.setdefault(rec.symbol, []).append(rec.trade_id)

        for ids in by_product.values():
            assert ids == list(range(ids[0], ids[0] + len(ids)))


class TestBinance:
    def test_trade_frame_from_docs(self):
        """`@trade` (web-socket-streams.md "Trade Streams"): t is the trade id, m buyer-maker."""
        frame = json.dumps(
            {
                "stream": "btcusdt@trade",
                "data": {
                    "e": "trade",
                    "E": 1672515782136,
                    "s": "BTCUSDT",
                    "t": 12345,
                    "p": "0.001",
                    "q": "100",
                    "T": 1672515782134,
                    "m": True,
                    "M": True,
                },
            }
        )

        assert binance.parse(frame, 7) == [
            Trade(1672515782136, "BTCUSDT", 12345, "0.001", "100", 1672515782134, True)
        ]

    def test_agg_trade_uses_aggregate_id(self):
        frame = (
            '{"stream":"nknusdt@aggTrade","data":{"e":"aggTrade","E":1633998523963,'
            '"s":"NKNUSDT","a":15683430,"p":"0.35280000","q":"58.00000000","f":19862790,'
            '"l":19862790,"T":1633998523963,"m":false,"M":true}}'
        )

        assert binance.parse(frame, 0) == [
            Trade(
                1633998523963,
                "NKNUSDT",
                15683430,
                "0.35280000",
                "58.00000000",
                1633998523963,
                False,
            )
        ]

    def test_subscribe_ack_error_and_shutdown(self):
        assert binance.parse('{"result":null,"id":1}', 0) == [Control("subscribed", "None")]
        assert binance.parse('{"error":{"code":2,"msg":"Invalid request"},"id":1}', 0) == [
            Control("error", "2: Invalid request", request_id=1)  # answers request 1
        ]
        assert binance.parse('{"e":"serverShutdown","E":1}', 0) == [
            Control("reconnect", "serverShutdown")
        ]

    def test_unknown_and_broken_frames_raise(self):
        with pytest.raises(UnexpectedMessage):
            binance.parse("not json", 0)
        with pytest.raises(UnexpectedMessage):
            binance.parse('{"e":"somethingNew"}', 0)
        with pytest.raises(UnexpectedMessage):
            binance.parse('{"stream":"x@trade","data":{"e":"trade","E":1}}', 0)

    def test_stream_names_and_subscribe(self):
        trade = StreamSpec("BTCUSDT", "trade")
        book = StreamSpec("BTCUSDT", "book", options={"depth_update_speed_ms": 100})

        assert binance.build_subscribe(trade, 0) == [
            '{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}'
        ]
        assert binance.stream_name(
            StreamSpec("BTCUSDT", "trade", options={"binance_trade_stream": "aggTrade"})
        ) == ("btcusdt@aggTrade")
        assert binance.stream_name(book) == "btcusdt@depth@100ms"
        assert binance.stream_name(StreamSpec("BTCUSDT", "book")) == "btcusdt@depth"
        assert binance.build_ws_url("wss://h:9443", trade) == "wss://h:9443/stream"

    def test_snapshot(self):
        body = '{"lastUpdateId":42,"bids":[["1.0","2.0"]],"asks":[["1.1","3"],["1.2","4"]]}'

        snap = binance.parse_snapshot(body, "X")

        assert snap == BookUpdate(
            "X",
            0,
            [("1.0", "2.0")],
            [("1.1", "3"), ("1.2", "4")],
            is_snapshot=True,
            first_id=42,
            last_id=42,
        )
        assert binance.snapshot_weight(1000) == 50
        assert binance.snapshot_weight(5000) == 250


class TestCoinbase:
    def test_match_side_is_makers(self):
        """`side` is the maker side: buy ⇒ the buyer was the maker (exchanges.md §2)."""
        frame = (
            '{"type":"match","trade_id":10,"maker_order_id":"a","taker_order_id":"b",'
            '"side":"buy","size":"0.5","price":"100.10","product_id":"BTC-USD",'
            '"sequence":50,"time":"2021-04-17T16:43:37.089723Z"}'
        )

        assert coinbase.parse(frame, 0) == [
            Trade(1618677817089, "BTC-USD", 10, "100.10", "0.5", 1618677817089, True)
        ]

    def test_iso_times_truncate_not_round(self):
        assert iso_to_ms("2021-04-17T16:43:37.089999Z") == 1618677817089
        assert iso_to_ms("2021-04-17T16:43:37Z") == 1618677817000
        assert iso_to_ms("2021-04-17T16:43:37.5+00:00") == 1618677817500

    def test_heartbeat_and_error(self):
        hb = (
            '{"type":"heartbeat","sequence":90,"last_trade_id":20,"product_id":"BTC-USD",'
            '"time":"2014-11-07T08:19:28.464459Z"}'
        )
        err = '{"type":"error","message":"Failed to subscribe","reason":"X is not a valid product"}'

        assert coinbase.parse(hb, 0) == [Control("heartbeat", last_trade_id=20)]
        assert coinbase.parse(err, 0) == [
            Control("error", "Failed to subscribe: X is not a valid product")
        ]

    def test_channels_depend_on_credentials(self):
        creds = Credentials("k", base64.b64encode(b"secret").decode(), "p")

        public = json.loads(coinbase.build_subscribe(StreamSpec("BTC-USD", "book"), 0)[0])
        signed = json.loads(
            coinbase.build_subscribe(
                StreamSpec("BTC-USD", "book", credentials=creds), 1700000000.0
            )[0]
        )

        assert public == {
            "type": "subscribe",
            "product_ids": ["BTC-USD"],
            "channels": ["level2_batch", "heartbeat"],
        }
        assert signed["channels"] == ["level2", "heartbeat"]
        expected = base64.b64encode(
            hmac.new(b"secret", b"1700000000.000GET/users/self/verify", hashlib.sha256).digest()
        ).decode()
        assert (signed["key"], signed["passphrase"], signed["timestamp"], signed["signature"]) == (
            "k",
            "p",
            "1700000000.000",
            expected,
        )

    def test_secret_that_is_not_base64_is_a_config_error(self):
        creds = Credentials("k", "***not base64***", "p")

        with pytest.raises(ConfigError, match="COINBASE_API_SECRET"):
            coinbase.build_subscribe(StreamSpec("BTC-USD", "book", credentials=creds), 0)

    def test_credentials_repr_hides_secret(self):
        assert "s3cr3t" not in repr(Credentials("k", "s3cr3t", "pp"))
