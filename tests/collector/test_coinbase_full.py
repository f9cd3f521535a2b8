"""Coinbase `full` channel (L3): frames built from the docs (tests/data/l3/coinbase_full.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collector.common.errors import ConfigError, UnexpectedMessage
from collector.exchanges import coinbase
from collector.exchanges.base import Credentials, StreamSpec
from collector.model import Control, L3Event, L3Snapshot

FIXTURES = json.loads((Path(__file__).parents[1] / "data/l3/coinbase_full.json").read_text())
T0 = 1415348367028  # 2014-11-07T08:19:27.028Z
KEY = Credentials(key="k", secret="c2VjcmV0", passphrase="p")


def frame(name: str) -> str:
    return json.dumps(FIXTURES[name]["frame"])


def full(name: str) -> L3Event:
    [event] = coinbase.parse_full(frame(name), 0)
    assert isinstance(event, L3Event)
    return event


class TestParseFull:
    def test_received_is_a_sequence_only_noop(self):
        """`received` does not touch the book but its sequence counts."""
        assert coinbase.parse_full(frame("received_limit"), 0) == [
            L3Event(T0, "BTC-USD", 10, "noop", "d50ec984-77a8-460a-b958-66f114b0de9b", "", "", "")
        ]

    def test_open_adds_remaining_size(self):
        assert coinbase.parse_full(frame("open"), 0) == [
            L3Event(
                T0, "BTC-USD", 10, "add", "d50ec984-77a8-460a-b958-66f114b0de9b", "A", "200.2",
                "1.00",
            )
        ]  # fmt: skip

    def test_done_deletes_with_reason(self):
        assert coinbase.parse_full(frame("done"), 0) == [
            L3Event(
                T0, "BTC-USD", 10, "delete", "d50ec984-77a8-460a-b958-66f114b0de9b", "A", "200.2",
                "0", reason="filled",
            )
        ]  # fmt: skip

    def test_done_of_market_order_has_no_price(self):
        ev = full("done_market")

        assert (ev.action, ev.side, ev.price, ev.size, ev.reason) == (
            "delete",
            "B",
            "",
            "",
            "filled",
        )

    def test_match_is_on_the_maker_order(self):
        """`side` is the maker's side: a sell maker is an ask order."""
        assert coinbase.parse_full(frame("match"), 0) == [
            L3Event(
                T0, "BTC-USD", 50, "match", "ac928c66-ca53-498f-9c13-a110027a60e8", "A",
                "400.23", "5.23512", trade_id=10,
                maker_order_id="ac928c66-ca53-498f-9c13-a110027a60e8",
                taker_order_id="132fb6ae-456b-4654-b4e0-d681ac05cea1",
            )
        ]  # fmt: skip

    def test_change_stp_sets_new_size(self):
        ev = full("change_stp")

        assert (ev.action, ev.price, ev.size, ev.reason, ev.sequence) == (
            "change", "400.23", "5.23512", "STP", 80,
        )  # fmt: skip

    def test_change_modify_order_uses_new_price(self):
        """cryptofeed#923: modify_order changes the price too."""
        ev = full("change_modify")

        assert (ev.symbol, ev.action, ev.side, ev.price, ev.size, ev.reason) == (
            "ETH-USD", "change", "B", "6", "80", "modify_order",
        )  # fmt: skip

    def test_change_of_funds_and_activate_are_noops(self):
        change = full("change_funds")
        activate = full("activate")

        assert (change.action, change.sequence) == ("noop", 81)
        assert (activate.action, activate.sequence, activate.ts_ms) == ("noop", None, 0)

    def test_controls_fall_through_to_parse(self):
        assert coinbase.parse_full(frame("heartbeat"), 0) == [
            Control("heartbeat", last_trade_id=20)
        ]
        assert coinbase.parse_full(frame("auth_error"), 0) == [
            Control("error", detail="Authentication Failed: invalid signature")
        ]

    def test_malformed_open_is_loud(self):
        bad = dict(FIXTURES["open"]["frame"], side="up")

        with pytest.raises(UnexpectedMessage, match="malformed coinbase open"):
            coinbase.parse_full(json.dumps(bad), 0)

    def test_stream_parsers_select_full_for_l3(self):
        """The stream's parser reads `full` messages for l3 only (PARSERS, the table of
        module parsers per data type, is gone: the processor uses make_parser)."""
        parse = {dt: coinbase.make_parser(StreamSpec("BTC-USD", dt)) for dt in ("trade", "l3")}

        assert parse["l3"](frame("open"), 0) == coinbase.parse_full(frame("open"), 0)
        with pytest.raises(UnexpectedMessage, match="unknown coinbase message type 'open'"):
            parse["trade"](frame("open"), 0)


class TestSnapshotAndSubscribe:
    def test_level3_book(self):
        body = json.dumps(FIXTURES["book_level3"]["body"])

        assert coinbase.parse_l3_snapshot(body, "BTC-USD", 1_700_000_000_123_456) == L3Snapshot(
            "BTC-USD",
            1_700_000_000_123,
            3,
            [
                ("3b0f1225-7f84-490b-a29f-0faef9de823a", "B", "295.96", "0.05088265"),
                ("da863862-25f4-4868-ac41-005d11ab0a5f", "A", "295.97", "5.72036512"),
            ],
        )

    def test_level3_url(self):
        spec = StreamSpec("BTC-USD", "l3", credentials=KEY)

        assert (
            coinbase.build_l3_snapshot_url("http://127.0.0.1:9", spec)
            == "http://127.0.0.1:9/products/BTC-USD/book?level=3"
        )

    def test_l3_subscribe_is_signed_full_and_heartbeat(self):
        [raw] = coinbase.build_subscribe(StreamSpec("BTC-USD", "l3", credentials=KEY), 1700000000.5)
        msg = json.loads(raw)

        assert msg["channels"] == ["full", "heartbeat"]
        assert msg["product_ids"] == ["BTC-USD"]
        assert (msg["key"], msg["passphrase"], msg["timestamp"]) == ("k", "p", "1700000000.500")
        assert msg["signature"] == coinbase.sign(KEY, "1700000000.500")

    def test_l3_without_credentials_is_a_config_error(self):
        with pytest.raises(ConfigError, match="COINBASE_API_KEY"):
            coinbase.build_subscribe(StreamSpec("BTC-USD", "l3"), 0.0)
