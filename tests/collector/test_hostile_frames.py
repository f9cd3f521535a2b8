"""Hostile frames end to end: a real collector against the replay server serving forged ones.

Each test fails on a collector that trusts the exchange: forged CSV rows, another symbol's
trades in this symbol's file, a book built on a level it could not read, a stream killed by
an error frame that did not answer our subscribe.
"""

from __future__ import annotations

import gzip

from ops.replay import ReplayThread, write_capture
from tests.collector.harness import collector, write_config


def binance_trade(i: int, symbol: str = "BTCUSDT", **over: object) -> dict[str, object]:
    data: dict[str, object] = {
        "e": "trade", "E": 1_700_000_000_000 + i, "s": symbol, "t": 1000 + i,
        "p": f"{42000 + i}.01000000", "q": "0.00100000", "T": 1_700_000_000_000 + i,
        "m": i % 2 == 0, "M": True,
    }  # fmt: skip
    data.update(over)
    return {"stream": "btcusdt@trade", "data": data}


def capture(tmp_path, frames: list[object], exchange: str = "binance"):
    addr = {
        "binance": "wss://stream.binance.com/stream",
        "coinbase": "wss://ws-feed.pro.coinbase.com",
    }[exchange]
    events: list[dict[str, object]] = [{"t": "connect", "conn": "c", "ts": 1.0, "addr": addr}]
    events += [
        {"t": "recv", "conn": "c", "ts": 1.0 + i / 1000, "data": f} for i, f in enumerate(frames)
    ]
    return write_capture(tmp_path / "cap.jsonl.gz", events, exchange=exchange)


def run(tmp_path, replay, exchange, symbol, data_type, until):
    cfg = write_config(tmp_path / "c.toml", exchange, replay)
    with collector(tmp_path, exchange, symbol, data_type, cfg) as c:
        c.wait_for(until)
        assert c.stop() == 0
    return c


class TestTrades:
    def test_a_price_with_a_newline_forges_no_row(self, tmp_path):
        """`"p": "1\\n2,BTCUSDT,..."` would be a second CSV line: the frame gives no row, it
        stays in raw and is counted; every other trade is written."""
        forged = binance_trade(5, p="42000.01\n1700000000000,BTCUSDT,999999,1,1,1,True,1")
        frames = [binance_trade(i) for i in range(5)] + [forged]
        frames += [binance_trade(i) for i in range(6, 10)]
        with ReplayThread([capture(tmp_path, frames)]) as r:
            c = run(tmp_path, r, "binance", "BTCUSDT", "trade", lambda s: s.get("frames", 0) >= 11)

        rows = c.rows()
        assert [int(row[2]) for row in rows] == [1000 + i for i in range(10) if i != 5]
        assert all(len(row) == 8 for row in rows)
        text = b"".join(gzip.decompress(p.read_bytes()) for p in c.files("parsed")).decode()
        assert "999999" not in text
        status = c.status()
        assert status["parse_errors"] == 1
        assert sum(status["parse_errors_by_reason"].values()) == 1
        assert any("999999" in str(e.get("data")) for e in c.raw_events() if e["t"] == "recv")

    def test_another_symbols_trade_never_lands_in_this_file(self, tmp_path):
        """An ETHUSDT trade on the btcusdt@trade stream: counted, no row."""
        frames = [binance_trade(i) for i in range(4)] + [binance_trade(4, symbol="ETHUSDT")]
        frames += [binance_trade(i) for i in range(5, 8)]
        with ReplayThread([capture(tmp_path, frames)]) as r:
            c = run(tmp_path, r, "binance", "BTCUSDT", "trade", lambda s: s.get("frames", 0) >= 9)

        assert {row[1] for row in c.rows()} == {"BTCUSDT"}
        assert [int(row[2]) for row in c.rows()] == [1000 + i for i in range(8) if i != 4]
        assert c.status()["parse_errors_by_reason"] == {"foreign_symbol": 1}

    def test_a_stray_id_does_not_drop_the_trades_after_it(self, tmp_path):
        """One id 10**12 in the middle: no row for it, a raw marker, every later trade kept."""
        frames = [binance_trade(i) for i in range(5)] + [binance_trade(5, t=10**12)]
        frames += [binance_trade(i) for i in range(6, 12)]
        with ReplayThread([capture(tmp_path, frames)]) as r:
            c = run(tmp_path, r, "binance", "BTCUSDT", "trade", lambda s: s.get("rows", 0) >= 11)

        assert [int(row[2]) for row in c.rows()] == [1000 + i for i in range(12) if i != 5]
        strays = [e for e in c.raw_events() if e["t"] == "trade_stray"]
        assert [(e["trade_id"], e["last"]) for e in strays] == [(10**12, 1004)]
        assert c.status()["stray_ids"] == 1

    def test_ids_going_backwards_are_not_written_and_do_not_silence(self, tmp_path):
        """1000..1005, then 1001..1003 again, then 1006..: the repeats are duplicates."""
        frames = [binance_trade(i) for i in range(6)] + [binance_trade(i) for i in (1, 2, 3)]
        frames += [binance_trade(i) for i in range(6, 10)]
        with ReplayThread([capture(tmp_path, frames)]) as r:
            c = run(tmp_path, r, "binance", "BTCUSDT", "trade", lambda s: s.get("rows", 0) >= 10)

        assert [int(row[2]) for row in c.rows()] == list(range(1000, 1010))
        assert c.status()["duplicates"] == 3

    def test_a_new_trade_stream_after_a_restart_is_collected(self, tmp_path):
        """Trade ids first, then a run whose ids are far lower (binance_trade_stream changed):
        the second run writes its trades (a reset marker), it does not skip them all."""
        first = [binance_trade(i, t=3_000_000_000 + i) for i in range(5)]
        with ReplayThread([capture(tmp_path, first)]) as r:
            run(tmp_path, r, "binance", "BTCUSDT", "trade", lambda s: s.get("rows", 0) >= 5)
        (tmp_path / "cap.jsonl.gz").unlink()
        second = [binance_trade(i, t=2_000_000 + i) for i in range(6)]
        with ReplayThread([capture(tmp_path, second)]) as r:
            c = run(tmp_path, r, "binance", "BTCUSDT", "trade", lambda s: s.get("rows", 0) >= 6)

        ids = [int(row[2]) for row in c.rows()]
        assert ids == [3_000_000_000 + i for i in range(5)] + [2_000_000 + i for i in range(6)]
        resets = [e for e in c.raw_events() if e["t"] == "trade_reset"]
        assert [(e["last"], e["got"]) for e in resets] == [(3_000_000_004, 2_000_000)]


class TestErrorFrames:
    def test_an_error_after_the_subscription_reconnects_instead_of_dying(self, tmp_path):
        """`{"error":..}` mid-stream (no id of ours): counted, the connection is renewed, the
        collector keeps collecting and stops with 0 (before: exit 2, FATAL)."""
        frames = [binance_trade(i) for i in range(10)]
        with ReplayThread([capture(tmp_path, frames)]) as r:
            r.faults.inject = ((5, '{"error":{"code":-1,"msg":"Internal error"},"id":null}'),)
            c = run(tmp_path, r, "binance", "BTCUSDT", "trade", lambda s: s.get("rows", 0) >= 10)

        assert [int(row[2]) for row in c.rows()] == list(range(1000, 1010))
        status = c.status()
        assert status["error_frames"] == 1
        assert status["reconnects"] >= 1
        reasons = [e["reason"] for e in c.raw_events() if e["t"] == "disconnect"]
        assert reasons[0] == "reconnect requested: error frame: -1: Internal error"

    def test_an_error_right_after_the_ack_is_not_fatal(self, tmp_path):
        """An error frame after the ack (an id we never sent): counted, the collector goes on
        instead of exiting 2."""
        frames = [binance_trade(i) for i in range(6)]
        with ReplayThread([capture(tmp_path, frames)]) as r:
            r.faults.inject = ((0, '{"error":{"code":2,"msg":"Invalid request"},"id":7}'),)
            c = run(tmp_path, r, "binance", "BTCUSDT", "trade", lambda s: s.get("rows", 0) >= 6)

        assert c.status()["error_frames"] == 1
        assert [int(row[2]) for row in c.rows()] == list(range(1000, 1006))


class TestBooks:
    def test_an_unreadable_level_resyncs_instead_of_a_wrong_book(self, tmp_path):
        """A Coinbase `l2update` with quantity `0.-10000`: the book is dropped (a resync
        marker), the connection renewed, and no row ever carries the bad quantity."""
        snapshot = {"type": "snapshot", "product_id": "BTC-USD",
                    "bids": [["100.00", "1.0"], ["99.00", "2.0"]],
                    "asks": [["101.00", "1.0"], ["102.00", "2.0"]]}  # fmt: skip
        good = {"type": "l2update", "product_id": "BTC-USD", "time": "2021-04-17T10:00:00.1Z",
                "changes": [["buy", "100.50", "3.0"]]}  # fmt: skip
        bad = {"type": "l2update", "product_id": "BTC-USD", "time": "2021-04-17T10:00:00.2Z",
               "changes": [["sell", "101.00", "0.-10000"]]}  # fmt: skip
        frames = [{"type": "subscriptions", "channels": []}, snapshot, good, bad]
        with ReplayThread([capture(tmp_path, frames, "coinbase")]) as r:
            c = run(tmp_path, r, "coinbase", "BTC-USD", "book", lambda s: s.get("resyncs", 0) >= 1)

        assert all("0.-10000" not in row for row in c.rows())
        resyncs = [e for e in c.raw_events() if e["t"] == "resync"]
        assert resyncs[0]["reason"].startswith("bad_frame: ")
        assert c.status()["parse_errors"] >= 1


class TestHostileServer:
    def test_binary_non_utf8_and_nested_frames_are_kept_and_counted(self, tmp_path):
        """A binary frame of non-UTF-8 bytes and a 100k-deep JSON array: both in raw (the
        bytes exactly, base64), counted as malformed, no crash, every trade written."""
        import base64

        blob = b"\xff\xfe\x00binary\x80"
        frames = [binance_trade(i) for i in range(8)]
        with ReplayThread([capture(tmp_path, frames)]) as r:
            r.faults.inject = ((2, blob),)
            r.faults.nested_after = 4
            c = run(tmp_path, r, "binance", "BTCUSDT", "trade", lambda s: s.get("rows", 0) >= 8)

        recv = [e for e in c.raw_events() if e["t"] == "recv"]
        binary = [e for e in recv if e.get("encoding") == "base64"]
        assert [base64.b64decode(e["data"]) for e in binary] == [blob]
        assert c.status()["parse_errors_by_reason"] == {"malformed": 2}
        assert [int(row[2]) for row in c.rows()] == list(range(1000, 1008))

    def test_garbage_handshakes_are_retried_not_fatal(self, tmp_path):
        """Three garbage handshake replies: three failed attempts with backoff, then the
        stream is collected (before: an exception that ended the process)."""
        frames = [binance_trade(i) for i in range(5)]
        with ReplayThread([capture(tmp_path, frames)]) as r:
            r.faults.bad_handshakes = 3
            r.faults.bad_handshake = "garbage"
            c = run(tmp_path, r, "binance", "BTCUSDT", "trade", lambda s: s.get("rows", 0) >= 5)

        reasons = [e["reason"] for e in c.raw_events() if e["t"] == "disconnect"]
        assert len(reasons) >= 3
        assert all(not x.startswith("reconnect requested") for x in reasons[:3])

    def test_a_server_that_closes_after_every_ack_gets_growing_delays(self, tmp_path):
        """Flapping (closed right after each ack): the backoff is never reset by an ack, so
        the delays grow to the cap instead of reconnecting as fast as possible."""
        import time as _time

        frames = [binance_trade(i) for i in range(5)]
        with ReplayThread([capture(tmp_path, frames)]) as r:
            r.faults.drop_after = 0
            r.faults.ws_fault_connections = None
            cfg = write_config(tmp_path / "c.toml", "binance", r)
            cfg.write_text(cfg.read_text().replace("max_s = 0.2", "max_s = 1.6"))
            with collector(tmp_path, "binance", "BTCUSDT", "trade", cfg) as c:
                _time.sleep(6.0)
                assert c.stop() == 0

        delays = [e["retry_in_s"] for e in c.log_events() if e.get("event") == "ws.disconnected"]
        assert 4 <= len(delays) <= 12  # 0.05 s delays without a growing backoff: ~100
        assert max(delays) >= 0.8
