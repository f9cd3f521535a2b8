"""Bitstamp adapter: every recorded frame, and live_orders frames built from the docs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collector.common.errors import UnexpectedMessage
from collector.exchanges import bitstamp
from collector.exchanges.base import StreamSpec
from collector.model import BookUpdate, Control, L3Event, L3Snapshot, Trade
from ops.replay import ReplayThread, write_capture
from tests.collector.harness import collector, write_config
from tests.conftest import read_events, recorded_frames

FIXTURES = json.loads((Path(__file__).parents[1] / "data/l3/bitstamp_live_orders.json").read_text())


def frame(name: str) -> str:
    return json.dumps(FIXTURES[name]["frame"])


def order(name: str) -> L3Event:
    [event] = bitstamp.parse(frame(name), 0)
    assert isinstance(event, L3Event)
    return event


class TestRecorded:
    def test_every_recorded_frame_parses(self, recorded):
        """All 747 recorded frames parse: 717 diffs, 10 trades, 20 subscription acks."""
        kinds: dict[str, int] = {}
        for raw in recorded_frames("bitstamp"):
            for rec in bitstamp.parse(raw, 0):
                kinds[type(rec).__name__] = kinds.get(type(rec).__name__, 0) + 1

        assert kinds == {"BookUpdate": 717, "Trade": 10, "Control": 20}

    def test_every_recorded_snapshot_parses(self, recorded):
        """The ten REST order_book bodies parse; ids are their microtimestamps."""
        snaps = [
            bitstamp.parse_snapshot(str(e["data"]), str(e["url"]).rsplit("/", 1)[1])
            for e in read_events(recorded["bitstamp"])
            if e["t"] == "http" and "/order_book/" in str(e["url"])
        ]

        assert len(snaps) == 10
        assert snaps[0].symbol == "sgbeur"
        assert (snaps[0].first_id, snaps[0].ts_ms) == (1641343695572693, 1641343695572)
        assert all(s.is_snapshot and s.bids and s.asks for s in snaps)

    def test_recorded_trade(self, recorded):
        trades = [
            r for raw in recorded_frames("bitstamp") for r in bitstamp.parse(raw, 0)
            if isinstance(r, Trade)
        ]  # fmt: skip

        assert trades[0] == Trade(
            1641343699596, "ethusd", 216000477, "3805.44", "0.07920000", 1641343699596, False
        )

    def test_recorded_diff(self):
        raw = (
            '{"data":{"timestamp":"1641343691","microtimestamp":"1641343691244908",'
            '"bids":[["1.15979","993.02588113"]],"asks":[["1.16601","0"]]},'
            '"channel":"diff_order_book_bateur","event":"data"}'
        )

        assert bitstamp.parse(raw, 0) == [
            BookUpdate(
                "bateur", 1641343691244, [("1.15979", "993.02588113")], [("1.16601", "0")],
                first_id=0, last_id=1641343691244908,
            )
        ]  # fmt: skip


class TestLiveOrders:
    def test_order_created_is_an_add(self):
        assert bitstamp.parse(frame("order_created"), 0) == [
            L3Event(
                1641343699596, "ethusd", None, "add", "1443875737346049", "A", "3805.44",
                "0.50000000", ts_us=1641343699596000,
            )
        ]  # fmt: skip

    def test_order_changed_and_deleted(self):
        changed = order("order_changed")
        deleted = order("order_deleted")

        assert (changed.action, changed.size, changed.ts_us) == (
            "change", "0.20000000", 1641343700001234,
        )  # fmt: skip
        assert (deleted.action, deleted.order_id) == ("delete", "1443875737346049")

    def test_group2_snapshot(self):
        body = json.dumps(FIXTURES["book_group2"]["body"])

        assert bitstamp.parse_l3_snapshot(body, "ethusd", 0) == L3Snapshot(
            "ethusd",
            1641343695681,
            None,
            [
                ("1443875731320832", "B", "3802.90", "0.60000000"),
                ("1443875731320833", "B", "3802.89", "3.23948640"),
                ("1443875731320840", "A", "3805.44", "1.00000000"),
            ],
            ts_us=1641343695681418,
        )

    def test_controls(self):
        assert bitstamp.parse(frame("subscribed"), 0) == [
            Control("subscribed", detail="live_orders_ethusd")
        ]
        assert bitstamp.parse(frame("request_reconnect"), 0) == [
            Control("reconnect", detail="bts:request_reconnect")
        ]
        assert bitstamp.parse(frame("error"), 0) == [
            Control("error", detail="None: Bad subscription string.")
        ]
        assert bitstamp.parse(frame("heartbeat"), 0) == [Control("heartbeat")]

    def test_unknown_event_is_loud(self):
        with pytest.raises(UnexpectedMessage, match="unknown bitstamp event"):
            bitstamp.parse('{"event":"order_teleported","channel":"live_orders_ethusd"}', 0)


class TestBuild:
    @pytest.mark.parametrize(
        ("data_type", "channel"),
        [("trade", "live_trades_btcusd"), ("book", "diff_order_book_btcusd"),
         ("l3", "live_orders_btcusd")],
    )  # fmt: skip
    def test_subscribe(self, data_type, channel):
        assert bitstamp.build_subscribe(StreamSpec("btcusd", data_type), 0) == [
            '{"event":"bts:subscribe","data":{"channel":"' + channel + '"}}'
        ]

    def test_snapshot_urls(self):
        spec = StreamSpec("btcusd", "l3")

        assert bitstamp.build_snapshot_url("http://h", spec, 100) == (
            "http://h/api/v2/order_book/btcusd"
        )
        assert bitstamp.build_l3_snapshot_url("http://h", spec) == (
            "http://h/api/v2/order_book/btcusd?group=2"
        )


class TestSnapshotWithoutMicrotimestamp:
    def test_book_syncs_on_the_whole_second(self, tmp_path):
        """A REST order_book body without `microtimestamp` (issue 16 item 4) syncs on
        `timestamp` * 1e6: diffs of the previous second are dropped, every later one is
        applied, book rows come out, and the snapshot is fetched once (no refetch loop)."""
        second = 1641343695
        snapshot = {"timestamp": str(second), "bids": [["100.0", "1.0"]],
                    "asks": [["101.0", "2.0"]]}  # fmt: skip

        def diff(mt: int, bids: list[list[str]], asks: list[list[str]]) -> dict[str, object]:
            data = {"timestamp": str(mt // 10**6), "microtimestamp": str(mt), "bids": bids,
                    "asks": asks}  # fmt: skip
            return {"data": data, "channel": "diff_order_book_btcusd", "event": "data"}

        frames = [
            diff(second * 10**6 - 1, [["99.0", "5.0"]], []),  # before the snapshot's second
            diff(second * 10**6 + 1, [], [["101.0", "0"], ["102.0", "3.0"]]),
            diff(second * 10**6 + 400_000, [["100.0", "1.5"]], []),
        ]
        events: list[dict[str, object]] = [
            {"t": "http", "conn": "rest", "ts": 1.0, "status": 200, "data": snapshot,
             "url": "https://www.bitstamp.net/api/v2/order_book/btcusd"},
            {"t": "connect", "conn": "c", "ts": 1.0, "addr": "wss://ws.bitstamp.net"},
        ]  # fmt: skip
        events += [{"t": "recv", "conn": "c", "ts": 1.0, "data": f} for f in frames]
        cap = write_capture(tmp_path / "bs.jsonl.gz", events, exchange="bitstamp")

        with ReplayThread([cap]) as r:
            cfg = write_config(tmp_path / "c.toml", "bitstamp", r)
            with collector(tmp_path, "bitstamp", "btcusd", "book", cfg) as c:
                c.wait_for(lambda st: st.get("frames", 0) >= 4 and st.get("rows", 0) > 0)
                assert c.stop() == 0

        rows = c.rows()
        assert [row[2:6] for row in rows[-2:]] == [
            ["B", "100.0", "1.5", "1"],
            ["A", "102.0", "3.0", "1"],
        ]
        assert not any(row[3] == "99.0" for row in rows)
        assert [e["t"] for e in c.raw_events()].count("http") == 1
        assert (c.status()["resyncs"], c.status()["parse_errors"]) == (0, 0)
