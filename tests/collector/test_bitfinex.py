"""Bitfinex v2 adapter: frames built from the docs (tests/data/l3/bitfinex_v2.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collector.common.errors import UnexpectedMessage
from collector.exchanges import bitfinex
from collector.exchanges.base import StreamSpec
from collector.model import BookChecksum, BookUpdate, Control, L3Event, L3Snapshot, Trade

FIXTURES = json.loads((Path(__file__).parents[1] / "data/l3/bitfinex_v2.json").read_text())


def frame(name: str) -> str:
    value = FIXTURES[name]["frame"]
    assert isinstance(value, str)
    return value


def parser(data_type: str, subscribed: str | None = None) -> bitfinex.Parser:
    p = bitfinex.Parser(StreamSpec("BTCUSD", data_type, options={"book_len": 25}))
    if subscribed:
        assert p(frame(subscribed), 0)[0].kind == "subscribed"  # type: ignore[union-attr]
    return p


class TestRawBook:
    def test_snapshot_keeps_numbers_as_sent(self):
        """R0 snapshot: AMOUNT sign is the side, sizes unsigned, `-2.5e-05` kept as text."""
        p = parser("l3", "subscribed_r0")

        assert p(frame("r0_snapshot"), 0) == [
            L3Snapshot(
                "BTCUSD",
                1574694475039,
                1,
                [
                    ("34668224131", "B", "9500", "0.5"),
                    ("34668224132", "B", "9500", "0.25"),
                    ("34668224130", "B", "9499.5", "1.2"),
                    ("34668224150", "A", "9501", "0.01"),
                    ("34668224151", "A", "9502.1", "2.5e-05"),
                ],
            )
        ]

    def test_update_and_delete(self):
        p = parser("l3", "subscribed_r0")

        assert p(frame("r0_update"), 0) == [
            L3Event(1574694475100, "BTCUSD", 2, "add", "34668224140", "B", "9500.5", "0.3")
        ]
        assert p(frame("r0_delete"), 0) == [
            L3Event(1574694475200, "BTCUSD", 3, "delete", "34668224131", "B", "0", "1")
        ]

    def test_checksum_and_heartbeat_carry_the_sequence(self):
        """SEQ_ALL numbers heartbeats and checksums too, so l3 sees them as sequence marks."""
        p = parser("l3", "subscribed_r0")

        assert p(frame("checksum"), 0) == [BookChecksum("BTCUSD", 1574694475300, 4, -1234567890)]
        assert p(frame("heartbeat"), 0) == [
            Control("heartbeat"),
            L3Event(1574694490000, "BTCUSD", 5, "noop", "", "", "", ""),
        ]

    def test_frame_of_another_channel_is_loud(self):
        p = parser("l3", "subscribed_r0")

        with pytest.raises(UnexpectedMessage, match="not ours"):
            p("[999,[1,2,3],6,7]", 0)


class TestTrades:
    def test_te_only(self):
        """Snapshot and `tu` are dropped; `te` AMOUNT < 0 means the taker sold."""
        p = parser("trade", "subscribed_trades")

        assert p(frame("trades_snapshot"), 0) == []
        assert p(frame("trades_te"), 0) == [
            Trade(1574694478809, "BTCUSD", 401597396, "7245.3", "0.02", 1574694478809, True)
        ]
        assert p(frame("trades_te_buy"), 0) == [
            Trade(1574694478811, "BTCUSD", 401597397, "7245.4", "0.0015", 1574694478811, False)
        ]
        assert p(frame("trades_tu"), 0) == []
        assert p('[19111,"hb",1574694479999]', 0) == [Control("heartbeat")]


class TestPriceBook:
    def test_snapshot_update_delete(self):
        p = parser("book", "subscribed_p0")

        assert p(frame("p0_snapshot"), 0) == [
            BookUpdate(
                "BTCUSD", 1574698100000, [("7254.7", "3.3"), ("7254.6", "1.5")],
                [("7255.1", "0.25")], is_snapshot=True,
            )
        ]  # fmt: skip
        assert p(frame("p0_update"), 0) == [
            BookUpdate("BTCUSD", 1574698100100, [("7254.5", "0.8")], [])
        ]
        assert p(frame("p0_delete"), 0) == [
            BookUpdate("BTCUSD", 1574698100200, [], [("7255.1", "0")])
        ]


class TestEvents:
    @pytest.mark.parametrize(
        ("name", "expected"),
        [
            ("info", []),
            ("info_maintenance", [Control("pause", detail="platform status 0 (maintenance)")]),
            (
                "info_20051",
                [Control("reconnect", detail="20051: Stopping. Please try to reconnect")],
            ),
            ("conf_ok", []),
            ("pong", [Control("heartbeat")]),
            ("error", [Control("error", detail="10001: symbol: invalid")]),
        ],
    )
    def test_event(self, name, expected):
        assert parser("l3")(frame(name), 0) == expected

    def test_maintenance_codes(self):
        p = parser("l3")

        [start] = p(frame("info_20060"), 0)
        [end] = p(frame("info_20061"), 0)

        assert (start.kind, end.kind) == ("pause", "reconnect")  # type: ignore[union-attr]
        assert start.detail.startswith("20060: Entering in Maintenance mode")  # type: ignore[union-attr]

    def test_unknown_event_is_loud(self):
        with pytest.raises(UnexpectedMessage, match="unknown event"):
            parser("l3")('{"event":"teleport"}', 0)


class TestBuild:
    def test_l3_subscribe_sets_flags_first(self):
        msgs = bitfinex.build_subscribe(StreamSpec("BTCUSD", "l3", options={"book_len": 100}), 0)

        assert [json.loads(m) for m in msgs] == [
            {"event": "conf", "flags": 32768 + 65536 + 131072},
            {"event": "subscribe", "channel": "book", "symbol": "tBTCUSD", "prec": "R0",
             "freq": "F0", "len": "100"},
        ]  # fmt: skip

    def test_trade_and_book_subscribe(self):
        trade = bitfinex.build_subscribe(StreamSpec("BTCUSD", "trade"), 0)[1]
        book = bitfinex.build_subscribe(StreamSpec("ETH:USD", "book", options={"book_len": 25}), 0)[
            1
        ]

        assert json.loads(trade) == {"event": "subscribe", "channel": "trades", "symbol": "tBTCUSD"}
        assert json.loads(book)["prec"] == "P0"
        assert json.loads(book)["symbol"] == "tETH:USD"

    def test_ping(self):
        assert json.loads(bitfinex.build_ping(1.5)) == {"event": "ping", "cid": 1500}
