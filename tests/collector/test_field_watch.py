"""Each adapter tells a frame of a known type with a field it does not know to its parser's
notice hook, still parses it, tells nothing for the documented shapes (every recorded and
documented frame), and names unknown types and missing fields: all of it as short, clean
names, whatever the exchange sends (issue 19, "Knowing that an exchange changed")."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.common.errors import UnexpectedMessage
from collector.exchanges import ADAPTERS, binance, bitfinex, bitstamp, coinbase
from collector.exchanges.base import Credentials, StreamSpec
from tests.collector.test_adapter_boundary import b_depth, b_trade, bs_trade, cb_match
from tests.conftest import CAPTURES, read_events

DATA = Path(__file__).parents[1] / "data" / "l3"
CREDS = Credentials("k", "c2VjcmV0", "p")
# What a notice detail and a new-kind key may hold: one line, no quote, nothing long.
CLEAN = re.compile(r"[A-Za-z0-9_@:\[\]?~.,+-]{1,1000}")


class Notices:
    def __init__(self) -> None:
        self.got: list[tuple[str, str | bytes]] = []

    def __call__(self, detail: str, raw: str | bytes) -> None:
        self.got.append((detail, raw))

    @property
    def details(self) -> list[str]:
        return [d for d, _ in self.got]


def parser(exchange: str, symbol: str, data_type: str, **options: Any) -> tuple[Any, Notices]:
    notices = Notices()
    spec = StreamSpec(symbol, data_type, options=options, credentials=CREDS)
    return ADAPTERS[exchange].make_parser(spec, notices), notices


def with_field(frame: str, path: tuple[str, ...], key: str, value: object = 1) -> str:
    msg = json.loads(frame)
    d = msg
    for p in path:
        d = d[p]
    d[key] = value
    return json.dumps(msg)


class TestUnexpectedFields:
    @pytest.mark.parametrize(
        ("exchange", "symbol", "data_type", "frame", "path", "detail"),
        [
            ("binance", "BTCUSDT", "trade", b_trade(), ("data",), "trade.X"),
            ("binance", "BTCUSDT", "trade", b_trade(), (), "combined.X"),
            ("binance", "BTCUSDT", "book", b_depth(), ("data",), "depthUpdate.X"),
            ("coinbase", "BTC-USD", "trade", cb_match(), (), "match.X"),
            ("bitstamp", "ethusd", "trade", bs_trade(), ("data",), "trade.X"),
            ("bitstamp", "ethusd", "trade", bs_trade(), (), "envelope.X"),
        ],
    )
    def test_a_new_field_is_told_and_the_frame_still_parsed(
        self, exchange, symbol, data_type, frame, path, detail
    ):
        p, notices = parser(exchange, symbol, data_type, depth_update_speed_ms=100)
        plain, _ = parser(exchange, symbol, data_type, depth_update_speed_ms=100)
        changed = with_field(frame, path, "X")

        records = p(changed, 0)

        assert records == plain(frame, 0)
        assert records
        assert notices.got == [(detail, changed)]

    def test_coinbase_full_and_heartbeat_fields(self):
        full = json.loads((DATA / "coinbase_full.json").read_text())
        p, notices = parser("coinbase", "BTC-USD", "l3")
        hb, hb_notices = parser("coinbase", "BTC-USD", "trade")

        p(with_field(json.dumps(full["open"]["frame"]), (), "queue_position"), 0)
        hb(with_field(json.dumps(full["heartbeat"]["frame"]), (), "lag_ms"), 0)

        assert notices.details == ["open.queue_position"]
        assert hb_notices.details == ["heartbeat.lag_ms"]

    def test_bitfinex_rows_longer_than_documented(self):
        fx = json.loads((DATA / "bitfinex_v2.json").read_text())
        trades, t_notices = parser("bitfinex", "BTCUSD", "trade")
        book, b_notices = parser("bitfinex", "BTCUSD", "book")
        sub = json.loads(fx["subscribed_trades"]["frame"])
        trades(json.dumps({**sub, "chanId": 7}), 0)
        book(fx["subscribed_p0"]["frame"], 0)

        [trade] = trades('[7,"te",[1,1574694478809,0.5,7245.3,"maker",9]]', 0)
        book("[224555,[7254.5,1,0.8,42]]", 0)

        assert (trade.trade_id, trade.price) == (1, "7245.3")  # type: ignore[union-attr]
        assert t_notices.details == ["te.TRADE[4],te.TRADE[5]"]
        assert b_notices.details == ["book.book[3]"]

    def test_hostile_field_names_give_short_clean_names(self):
        """A key with a newline, a comma, a dot, a quote or 10 kB; a thousand keys."""
        p, notices = parser("binance", "BTCUSDT", "trade")
        nasty = {"a\nb": 1, "c,d": 2, "e.f": 3, 'g"h': 4, "k" * 10_000: 5}
        many = {f"k{i}": i for i in range(1000)}

        p(
            json.dumps(
                {"stream": "btcusdt@trade", "data": {**json.loads(b_trade())["data"], **nasty}}
            ),
            0,
        )
        p(
            json.dumps(
                {"stream": "btcusdt@trade", "data": {**json.loads(b_trade())["data"], **many}}
            ),
            0,
        )

        first, second = notices.details
        assert first == "trade.a?b,trade.c?d,trade.e?f,trade.g?h," + "trade." + "k" * 40 + "~"
        assert len(second.split(",")) == 9
        assert second.endswith(",trade.+992")
        assert all(CLEAN.fullmatch(d) for d in notices.details)

    @settings(max_examples=200, deadline=None, database=None)
    @given(st.dictionaries(st.text(max_size=60), st.integers(), min_size=1, max_size=12))
    def test_any_new_keys_give_a_clean_bounded_detail(self, extra):
        p, notices = parser("coinbase", "BTC-USD", "trade")
        frame = {**json.loads(cb_match()), **extra}
        try:
            p(json.dumps(frame), 0)
        except UnexpectedMessage:
            return  # a documented field overwritten with a bad value
        for detail in notices.details:
            assert CLEAN.fullmatch(detail), detail
            assert len(detail.split(",")) <= 9


class TestDocumentedShapes:
    @pytest.mark.parametrize(
        ("exchange", "streams"),
        [
            ("binance", [("NKNUSDT", "book"), ("BLZETH", "book"), ("NKNUSDT", "trade")]),
            ("coinbase", [("BAND-GBP", "trade"), ("SKL-USD", "trade"), ("BTC-USD", "book")]),
            ("bitstamp", [("ethusd", "book"), ("ethusd", "trade"), ("usdtusd", "book")]),
        ],
    )
    def test_recorded_frames_tell_nothing(self, recorded, exchange, streams):
        frames = [str(e["data"]) for e in read_events(CAPTURES[exchange]) if e["t"] == "recv"]
        options = {"depth_update_speed_ms": 100, "binance_trade_stream": "aggTrade"}
        for symbol, data_type in streams:
            p, notices = parser(exchange, symbol, data_type, **options)
            parsed = 0
            for f in frames:
                try:
                    parsed += bool(p(f, 0))
                except UnexpectedMessage:
                    pass  # another symbol's, another channel's
            assert parsed
            assert notices.got == []

    @pytest.mark.parametrize(
        ("fixtures", "exchange", "symbol", "data_type"),
        [
            ("coinbase_full.json", "coinbase", "BTC-USD", "l3"),
            ("bitstamp_live_orders.json", "bitstamp", "ethusd", "l3"),
        ],
    )
    def test_documented_frames_tell_nothing(self, fixtures, exchange, symbol, data_type):
        fx = json.loads((DATA / fixtures).read_text())
        p, notices = parser(exchange, symbol, data_type)
        for entry in fx.values():
            if isinstance(entry, dict) and "frame" in entry:
                try:
                    p(json.dumps(entry["frame"]), 0)
                except UnexpectedMessage:
                    pass
        assert notices.got == []

    def test_bitfinex_documented_frames_tell_nothing(self):
        fx = json.loads((DATA / "bitfinex_v2.json").read_text())
        for data_type, sub, names in [
            ("l3", "subscribed_r0", ["r0_snapshot", "r0_update", "r0_delete", "checksum"]),
            ("book", "subscribed_p0", ["p0_snapshot", "p0_update", "p0_delete"]),
            ("trade", "subscribed_trades", ["trades_snapshot", "trades_te", "trades_tu"]),
        ]:
            p, notices = parser("bitfinex", "BTCUSD", data_type)
            p(fx[sub]["frame"], 0)
            for name in names:
                p(fx[name]["frame"], 0)
            assert notices.got == []


class TestNames:
    @pytest.mark.parametrize(
        ("parse", "frame"),
        [
            (binance.parse, '{"e":"%s"}'),
            (coinbase.parse, '{"type":"%s"}'),
            (bitstamp.parse, '{"event":"%s","channel":"x"}'),
        ],
    )
    @pytest.mark.parametrize(
        ("name", "key"),
        [
            ("teleport", "unknown_type:teleport"),
            ("a\\nb", "unknown_type:a?b"),
            ("x" * 10_000, "unknown_type:" + "x" * 40 + "~"),
            ("bts:hello", "unknown_type:bts:hello"),
        ],
    )
    def test_unknown_types_are_named_short_and_clean(
        self, parse: Callable[[str, int], object], frame: str, name: str, key: str
    ):
        with pytest.raises(UnexpectedMessage) as info:
            parse(frame % name, 0)

        assert (info.value.reason, info.value.field) == ("unknown_type", "")
        assert info.value.new_kind_key == key

    def test_a_missing_field_names_its_type(self):
        frame = json.loads(cb_match())
        del frame["price"]
        p = bitfinex.Parser(StreamSpec("BTCUSD", "trade"))
        p('{"event":"subscribed","channel":"trades","chanId":7,"symbol":"tBTCUSD"}', 0)

        with pytest.raises(UnexpectedMessage) as cb:
            coinbase.parse(json.dumps(frame), 0)
        with pytest.raises(UnexpectedMessage) as bf:
            p('[7,"te"]', 0)

        assert cb.value.new_kind_key == "missing_field:match.price"
        assert bf.value.new_kind_key == "missing_field:te.TRADE"
        assert UnexpectedMessage("x", reason="bad_value", field="p").new_kind_key is None

    def test_binance_options_come_from_our_own_subscribe(self):
        """QA replays a raw file with the options its collector had (its `send` frame)."""
        f = binance.options_from_subscribe

        assert f('{"method":"SUBSCRIBE","params":["btcusdt@aggTrade"],"id":1}') == {
            "binance_trade_stream": "aggTrade"
        }
        assert f('{"method":"SUBSCRIBE","params":["btcusdt@depth@100ms"],"id":1}') == {
            "depth_update_speed_ms": 100
        }
        assert f('{"method":"SUBSCRIBE","params":["btcusdt@depth"],"id":1}') == {
            "depth_update_speed_ms": 1000
        }
        assert f("not json") == f('{"params":5}') == f("[1]") == {}
