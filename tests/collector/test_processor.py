"""The processor fed frames directly (real settings, files and session objects, no sockets)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from collector import handlers
from collector.common.errors import FeedError
from collector.config import load_config
from collector.effects import Effects, Lines
from collector.exchanges import ADAPTERS
from collector.processor import Processor, envelope, frame_from_raw
from collector.session import Frame
from collector.settings import build_collector_settings
from collector.status import Stats


def processor(
    tmp_path: Path, exchange: str = "binance", symbol: str = "BTCUSDT", data_type: str = "trade"
) -> Processor:
    cfg = tmp_path / "c.toml"
    cfg.write_text('data_dir = "data"\n')
    s = build_collector_settings(
        load_config(cfg), exchange=exchange, symbol=symbol, data_type=data_type
    )
    adapter = ADAPTERS[exchange]
    effects = Effects(Lines(), Lines())
    stats = Stats(exchange, symbol, data_type)
    handler = handlers.for_stream(adapter, symbol, data_type, effects, stats, book_depth=5)
    return Processor(adapter, s.stream_spec(), handler, effects, stats)


SUB = '{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}'


def start(p: Processor) -> None:
    p.handle(Frame("connect", "c1", 1.0, addr="ws://x/stream"))
    p.handle(Frame("send", "c1", 1.0, data=SUB, addr="ws://x/stream"))


class TestErrorFrames:
    def test_an_error_answering_our_subscribe_is_fatal(self, tmp_path: Path) -> None:
        """`{"error":..,"id":1}` before the ack answers our SUBSCRIBE (id 1): FeedError."""
        p = processor(tmp_path)
        start(p)

        with pytest.raises(FeedError, match="rejected the subscription: 2: Invalid request"):
            p.handle(
                Frame("recv", "c1", 1.1, data='{"error":{"code":2,"msg":"Invalid request"},"id":1}')
            )

    def test_an_error_naming_another_request_is_not_fatal(self, tmp_path: Path) -> None:
        """Before the ack, an error echoing an id we never sent is counted, not fatal."""
        p = processor(tmp_path)
        start(p)

        is_data = p.handle(Frame("recv", "c1", 1.1, data='{"error":{"code":2,"msg":"x"},"id":7}'))

        assert is_data is False
        assert p.stats.error_frames == 1

    def test_after_the_ack_no_error_is_fatal(self, tmp_path: Path) -> None:
        """Once subscribed, even an error with our id only renews the connection."""
        p = processor(tmp_path)
        start(p)
        p.handle(Frame("recv", "c1", 1.1, data='{"result":null,"id":1}'))

        p.handle(Frame("recv", "c1", 1.2, data='{"error":{"code":2,"msg":"x"},"id":1}'))

        assert p.stats.error_frames == 1

    def test_an_ack_is_not_data_a_trade_is(self, tmp_path: Path) -> None:
        """handle() says which frames carried market data (only those reset the backoff)."""
        p = processor(tmp_path)
        start(p)
        trade = (
            '{"stream":"btcusdt@trade","data":{"e":"trade","E":1700000000000,"s":"BTCUSDT",'
            '"t":5,"p":"1.5","q":"2","T":1700000000000,"m":true,"M":true}}'
        )

        assert p.handle(Frame("recv", "c1", 1.1, data='{"result":null,"id":1}')) is False
        assert p.handle(Frame("recv", "c1", 1.2, data=trade)) is True


class TestRedaction:
    def test_send_frames_keep_no_credential(self, tmp_path: Path) -> None:
        """A Coinbase signed subscribe is written with key, passphrase and signature replaced."""
        from collector.processor import envelope

        frame = Frame(
            "send",
            "c1",
            1.0,
            data='{"type":"subscribe","key":"K","passphrase":"P","timestamp":"1.0","signature":"S"}',
            addr="wss://x",
        )

        import json

        line = json.loads(envelope(frame, ADAPTERS["coinbase"].SEND_SECRET_FIELDS))

        assert json.loads(line["data"]) == {
            "type": "subscribe",
            "key": "<redacted>",
            "passphrase": "<redacted>",
            "timestamp": "1.0",
            "signature": "<redacted>",
        }

    def test_binary_frames_are_kept_exactly(self, tmp_path: Path) -> None:
        """Bytes that are not UTF-8 survive as base64, marked as such."""
        import base64
        import json

        from collector.processor import envelope

        raw = bytes(range(256))
        line = json.loads(envelope(Frame("recv", "c1", 1.0, data=raw)))

        assert line["encoding"] == "base64"
        assert base64.b64decode(line["data"]) == raw


class TestControls:
    def test_a_maintenance_notice_is_logged_and_is_not_data(self, tmp_path: Path) -> None:
        """Bitfinex 20060 (`pause`) is a warning, not silence in the logs, and not data."""
        p = processor(tmp_path, "bitfinex", "BTCUSD")
        p.handle(Frame("connect", "c1", 1.0, addr="ws://x"))

        with capture_logs() as logs:
            is_data = p.handle(
                Frame("recv", "c1", 1.1, data='{"event":"info","code":20060,"msg":"pause"}')
            )

        assert is_data is False
        assert [e["event"] for e in logs] == ["ws.exchange_maintenance"]
        assert p.effects.reconnect_requests == 0

    def test_a_reconnect_notice_asks_the_effects_for_a_new_connection(self, tmp_path: Path) -> None:
        """Binance `serverShutdown`: a reconnect request (counted when run from a file)."""
        p = processor(tmp_path)
        start(p)

        p.handle(Frame("recv", "c1", 1.1, data='{"e":"serverShutdown","E":1700000000000}'))

        assert p.effects.reconnect_requests == 1


class TestReplay:
    def test_every_frame_kind_survives_its_raw_line(self, tmp_path: Path) -> None:
        """frame_from_raw inverts envelope: connect, send, recv (text and binary), http,
        disconnect."""
        frames = [
            Frame("connect", "c1", 1.5, addr="wss://x/stream"),
            Frame("send", "c1", 1.25, data=SUB, addr="wss://x/stream"),
            Frame("recv", "c1", 1.125, data='{"a":"\u00e9\\n"}'),
            Frame("recv", "c1", 1.0625, data=bytes(range(256))),
            Frame("http", "rest", 2.0, data='{"lastUpdateId":1}', addr="http://x/d", status=200),
            Frame("disconnect", "c1", 3.0, reason="closed by peer: bye"),
        ]

        again = [frame_from_raw(json.loads(envelope(f))) for f in frames]

        assert again == frames

    def test_a_marker_that_records_a_decision_is_repeated(self, tmp_path: Path) -> None:
        """`resume` read back sets where the trades start, and is written again."""
        p = processor(tmp_path)
        marker = {"t": "resume", "conn": "", "ts": 0.5, "last_trade_id": 4, "file": "f.csv.gz"}
        trade = (
            '{"stream":"btcusdt@trade","data":{"e":"trade","E":1700000000000,"s":"BTCUSDT",'
            '"t":5,"p":"1.5","q":"2","T":1700000000000,"m":true,"M":true}}'
        )

        p.replay(marker)
        p.replay({"t": "gap", "conn": "", "ts": 0.6, "kind": "trade_id"})  # an output: skipped
        p.handle(Frame("recv", "c1", 1.0, data=trade))

        assert isinstance(p.effects.raw, Lines)
        assert json.loads(p.effects.raw.lines[0]) == marker
        assert len(p.effects.raw.lines) == 2
        assert p.stats.last_trade_id == 5
        assert p.stats.rows == 1


T = "2021-04-17T10:00:00.000000Z"
T_MS = "1618653600000"
ASK, BID = "aaaaaaaa-0000-4000-8000-000000000001", "bbbbbbbb-0000-4000-8000-000000000002"
NEW = "cccccccc-0000-4000-8000-000000000003"
COINBASE_ACK = '{"type":"subscriptions","channels":[{"name":"full","product_ids":["BTC-USD"]}]}'


def full(kind: str, seq: int, **fields: object) -> Frame:
    """A Coinbase `full` frame (docs: channels, full), received at 1 + seq/1000 s."""
    msg = {"type": kind, "time": T, "product_id": "BTC-USD", "sequence": seq, **fields}
    return Frame("recv", "c1", 1.0 + seq / 1000, data=json.dumps(msg))


def l3_snapshot(seq: int, ask_size: str) -> Frame:
    """``/products/BTC-USD/book?level=3``: one bid, one ask."""
    body = {"sequence": seq, "time": T, "bids": [["99.00", "3", BID]],
            "asks": [["100.10", ask_size, ASK]]}  # fmt: skip
    return Frame("http", "rest", 1.0 + seq / 1000, data=json.dumps(body), addr="https://x/book")


def row(seq: int, action: str, oid: str, side: str, price: str, size: str, reason: str = "") -> str:
    local_us = str(int((1.0 + seq / 1000) * 1_000_000))
    return ",".join([T_MS, "BTC-USD", str(seq), action, oid, side, price, size, "", "", "",
                     reason, local_us]) + "\n"  # fmt: skip


class TestL3BadFrames:
    def test_an_unreadable_event_resyncs_from_a_new_snapshot(self, tmp_path: Path) -> None:
        """Coinbase `full`, synced: an `open` whose price is `0.-10` is counted under its
        reason, drops the book (a `resync` marker naming it, a second snapshot request, no
        row) and buffers what follows; the next snapshot rebuilds the book from its own
        rows."""
        p = processor(tmp_path, "coinbase", "BTC-USD", "l3")
        rows, raw = p.effects.rows, p.effects.raw
        assert isinstance(rows, Lines)
        assert isinstance(raw, Lines)
        p.handle(Frame("connect", "c1", 1.0, addr="wss://x"))
        p.handle(Frame("recv", "c1", 1.0, data=COINBASE_ACK))
        p.handle(l3_snapshot(101, "1.5"))
        p.handle(
            full("change", 102, order_id=ASK, side="sell", old_size="1.5", new_size="1",
                 price="100.10", reason="STP")
        )  # fmt: skip
        synced_rows = list(rows.lines)
        bad = full("open", 103, order_id=BID, price="0.-10", remaining_size="1", side="buy")

        p.handle(bad)
        p.handle(
            full("received", 104, order_id=NEW, size="1", price="101.00", side="sell",
                 order_type="limit")
        )  # fmt: skip
        after_bad = len(rows.lines)
        p.handle(l3_snapshot(104, "1"))
        p.handle(
            full("change", 105, order_id=ASK, side="sell", old_size="1", new_size="0.5",
                 price="100.10", reason="STP")
        )  # fmt: skip

        assert synced_rows == [
            row(101, "snapshot", BID, "B", "99.00", "3"),
            row(101, "snapshot", ASK, "A", "100.10", "1.5"),
            row(102, "change", ASK, "A", "100.10", "1", "STP"),
        ]
        assert after_bad == 3
        assert rows.lines[3:] == [
            row(104, "snapshot", BID, "B", "99.00", "3"),
            row(104, "snapshot", ASK, "A", "100.10", "1"),
            row(105, "change", ASK, "A", "100.10", "0.5", "STP"),
        ]
        events = [json.loads(line) for line in raw.lines]
        assert [e["t"] for e in events] == [
            "connect", "recv", "http", "recv", "recv", "resync", "recv", "http", "recv",
        ]  # fmt: skip
        assert events[4]["data"] == bad.data  # the unreadable frame is kept in raw
        assert events[5] == {
            "t": "resync", "conn": "c1", "ts": bad.ts, "reason": "bad_frame: bad_value:price",
        }  # fmt: skip
        assert (p.stats.resyncs, p.stats.gaps) == (1, 0)
        assert p.stats.parse_errors_by_reason == {"bad_value:price": 1}
        assert (p.effects.snapshot_requests, p.effects.reconnect_requests) == (2, 0)


@pytest.mark.parametrize(
    ("exchange", "symbol", "data_type", "waits"),
    [
        ("binance", "BTCUSDT", "trade", True),
        ("coinbase", "BTC-USD", "trade", True),
        ("binance", "BTCUSDT", "book", False),
        ("coinbase", "BTC-USD", "l3", False),
    ],
)
def test_only_trade_streams_let_quiet_frames_wait_for_the_flush(
    tmp_path: Path, exchange: str, symbol: str, data_type: str, waits: bool
) -> None:
    """The upkeep sets Session.deliver_by from this: a book's gap or first frame asks for a
    snapshot, which must not wait for the next flush."""
    assert processor(tmp_path, exchange, symbol, data_type).batch_quiet is waits
