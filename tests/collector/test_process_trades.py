"""The collector process end to end against the replay server: trades, faults, crashes.

Binance `@trade` is not in the recordings: the capture is built from the documentation
(web-socket-streams.md "Trade Streams"); Coinbase `matches` comes from the recording.
"""

from __future__ import annotations

import gzip
import signal
import time

import pytest

from ops.replay import ReplayThread, write_capture
from tests.collector.harness import collector, write_config
from tests.conftest import CAPTURES, read_events
from tests.ops.alert_sink import WatchedAlertSink

N_TRADES = 40


def binance_trade_capture(path, n=N_TRADES, symbol="BTCUSDT"):
    events = [{"t": "connect", "conn": "c", "ts": 1.0, "addr": "wss://stream.binance.com/stream"}]
    for i in range(n):
        data = {
            "e": "trade",
            "E": 1_700_000_000_000 + i,
            "s": symbol,
            "t": 1000 + i,
            "p": f"{42000 + i}.01000000",
            "q": "0.00100000",
            "T": 1_700_000_000_000 + i,
            "m": i % 2 == 0,
            "M": True,
        }
        events.append(
            {
                "t": "recv",
                "conn": "c",
                "ts": 1.0 + i / 1000,
                "data": {"stream": f"{symbol.lower()}@trade", "data": data},
            }
        )
    return write_capture(path, events, exchange="binance")


def expected_trade_rows(raw_events):
    """Rows rebuilt from the collector's own raw file: first occurrence of each trade id."""
    import json

    rows, seen = [], set()
    for ev in raw_events:
        if ev["t"] != "recv":
            continue
        try:
            msg = json.loads(ev["data"])
        except ValueError:
            continue
        d = msg.get("data", {}) if isinstance(msg, dict) else {}
        if d.get("e") != "trade" or d["t"] in seen:
            continue
        seen.add(d["t"])
        rows.append(
            [
                str(d["E"]),
                d["s"],
                str(d["t"]),
                d["p"],
                d["q"],
                str(d["T"]),
                str(d["m"]),
                str(int(ev["ts"] * 1_000_000)),
            ]
        )
    return rows


@pytest.fixture
def trades_replay(tmp_path):
    cap = binance_trade_capture(tmp_path / "trades.jsonl.gz")
    with ReplayThread([cap]) as r:
        yield r


def run_trades(tmp_path, replay, until_rows=N_TRADES, extra=""):
    cfg = write_config(tmp_path / "c.toml", "binance", replay, extra)
    with collector(tmp_path, "binance", "BTCUSDT", "trade", cfg) as c:
        c.wait_for(lambda s: s.get("rows", 0) >= until_rows)
        assert c.stop() == 0
        return c


class TestTrades:
    def test_binance_trades_exact_rows_and_raw_first(self, tmp_path, trades_replay):
        """Every frame is in raw; rows are exactly the documented fields, header first."""
        c = run_trades(tmp_path, trades_replay)

        raw = c.raw_events()
        # first the resume point found on disk (none: a fresh data dir), then the connection
        assert [e["t"] for e in raw[:4]] == ["resume", "connect", "send", "recv"]
        assert (raw[0]["last_trade_id"], raw[0]["file"]) == (None, None)
        assert raw[2]["data"] == '{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}'
        assert sum(1 for e in raw if e["t"] == "recv") == N_TRADES + 1  # + the ack
        rows = c.rows()
        assert rows == expected_trade_rows(raw)
        assert rows[0][:7] == [
            "1700000000000",
            "BTCUSDT",
            "1000",
            "42000.01000000",
            "0.00100000",
            "1700000000000",
            "True",
        ]
        header = gzip.decompress(c.files("parsed")[0].read_bytes()).decode().splitlines()[0]
        assert header == (
            "event_time,symbol,trade_id,price,quantity,trade_time,is_buyer_maker,local_time"
        )
        status = c.status()
        assert (status["rows"], status["gaps"], status["parse_errors"]) == (N_TRADES, 0, 0)
        assert (status["hour_rows"], status["today"]["rows"]) == (N_TRADES, N_TRADES)
        assert status["connected"] is False
        assert status["files"] == {"raw": None, "parsed": None}

    def test_coinbase_matches_from_the_recording(self, tmp_path, recorded):
        """last_match and match of one product become contiguous rows, maker side inverted."""
        import json

        expected = []
        for ev in read_events(CAPTURES["coinbase"]):
            if ev["t"] == "recv":
                m = json.loads(str(ev["data"]))
                if m.get("type") in ("match", "last_match") and m["product_id"] == "BAND-GBP":
                    expected.append(
                        (
                            str(m["trade_id"]),
                            m["price"],
                            m["size"],
                            "True" if m["side"] == "buy" else "False",
                        )
                    )
        with ReplayThread([CAPTURES["coinbase"]]) as r:
            cfg = write_config(tmp_path / "c.toml", "coinbase", r)
            with collector(tmp_path, "coinbase", "BAND-GBP", "trade", cfg) as c:
                c.wait_for(lambda s: s.get("rows", 0) >= len(expected))
                assert c.stop() == 0

        assert [(r[2], r[3], r[4], r[6]) for r in c.rows()] == expected
        assert c.status()["gaps"] == 0


class TestFaults:
    def test_dropped_connection_reconnects_without_duplicates(self, tmp_path, trades_replay):
        trades_replay.faults.drop_after = 10

        c = run_trades(tmp_path, trades_replay)

        assert [int(r[2]) for r in c.rows()] == list(range(1000, 1000 + N_TRADES))
        assert c.status()["reconnects"] >= 1
        assert any(e["t"] == "disconnect" for e in c.raw_events())

    def test_stalled_feed_is_reconnected_by_the_watchdog(self, tmp_path, trades_replay):
        trades_replay.faults.stall_after = 5
        trades_replay.faults.stall_s = 30.0

        c = run_trades(tmp_path, trades_replay, extra="")

        reasons = [e["reason"] for e in c.raw_events() if e["t"] == "disconnect"]
        assert reasons[0] == "watchdog: silent for 2.0 s"
        assert len(c.rows()) == N_TRADES

    def test_skipped_frame_is_a_counted_gap_with_a_raw_marker(self, tmp_path, trades_replay):
        trades_replay.faults.skip_frames = (7,)

        c = run_trades(tmp_path, trades_replay, until_rows=N_TRADES - 1)

        ids = [int(r[2]) for r in c.rows()]
        assert 1007 not in ids
        assert len(ids) == N_TRADES - 1
        gaps = [e for e in c.raw_events() if e["t"] == "gap"]
        assert [(g["kind"], g["expected"], g["got"], g["size"]) for g in gaps] == [
            ("trade_id", 1007, 1008, 1)
        ]
        assert (c.status()["gaps"], c.status()["gap_size"]) == (1, 1)
        assert any(e.get("event") == "trade.gap" and e["size"] == 1 for e in c.log_events())

    def test_garbage_frame_stays_in_raw_and_is_counted(self, tmp_path, trades_replay):
        trades_replay.faults.garbage_after = 3

        c = run_trades(tmp_path, trades_replay)

        assert c.status()["parse_errors"] == 1
        assert trades_replay.faults.garbage_text in [e.get("data") for e in c.raw_events()]
        errors = [e for e in c.log_events() if e.get("event") == "frame.parse_error"]
        assert errors[0]["excerpt"].startswith("<html>")
        assert len(c.rows()) == N_TRADES

    def test_oversized_frame_closes_and_reconnects(self, tmp_path, trades_replay):
        trades_replay.faults.oversized_after = 3
        trades_replay.faults.oversized_bytes = 200_000

        c = run_trades(tmp_path, trades_replay, extra="max_message_size = 65536")

        reasons = [e["reason"] for e in c.raw_events() if e["t"] == "disconnect"]
        assert "MESSAGE_TOO_BIG" in reasons[0]
        assert [int(r[2]) for r in c.rows()] == list(range(1000, 1000 + N_TRADES))

    def test_rejected_handshake_honours_retry_after(self, tmp_path, trades_replay):
        trades_replay.faults.reject_handshakes = 1
        trades_replay.faults.reject_status = 429
        trades_replay.faults.reject_retry_after_s = 1

        t0 = time.monotonic()
        c = run_trades(tmp_path, trades_replay)

        assert time.monotonic() - t0 >= 1.0
        warn = [e for e in c.log_events() if e.get("event") == "ws.disconnected"]
        assert warn[0]["reason"] == "handshake rejected: HTTP 429"
        assert warn[0]["retry_in_s"] >= 1.0
        assert len(c.rows()) == N_TRADES

    def test_418_is_an_alert_level_line(self, tmp_path, trades_replay):
        trades_replay.faults.reject_handshakes = 1
        trades_replay.faults.reject_status = 418
        trades_replay.faults.reject_retry_after_s = 0

        c = run_trades(tmp_path, trades_replay)

        banned = [e for e in c.log_events() if e.get("event") == "ws.banned"]
        assert banned[0]["level"] == "error"
        assert banned[0]["alert"] is True

    def test_451_stops_with_exit_2_and_an_alert_naming_the_host_s_region(
        self, tmp_path, trades_replay
    ):
        """Binance.com answers HTTP 451 to a US address: no retry changes that, so the
        collector stops (exit 2, FATAL under supervisord) with one line and one critical
        alert naming the host and its region, instead of reconnecting forever."""
        trades_replay.faults.reject_handshakes = 1000
        trades_replay.faults.reject_status = 451
        trades_replay.faults.reject_retry_after_s = 0
        cfg = write_config(tmp_path / "c.toml", "binance", trades_replay)
        fleet = '[fleet]\nhosts = [{ id = "ohio-a", region = "us-east-2" }]\n'
        cfg.write_text('host_id = "ohio-a"\n' + cfg.read_text() + fleet)
        with WatchedAlertSink() as sink:
            env = {"SLACK_WEBHOOK_URL": f"{sink.url}/slack"}
            with collector(tmp_path, "binance", "BTCUSDT", "trade", cfg, env=env) as c:
                assert c.proc.wait(20) == 2
            alert = sink.wait_for(lambda t: "451" in t, 10.0)

        why = (
            "Binance.com refuses this location (HTTP 451: its terms exclude the US): host "
            "ohio-a (region us-east-2) cannot collect binance BTCUSDT trade; collect it from "
            "another region ([exchanges.binance] regions, python -m ops.fleet plan)"
        )
        assert f"collector: fatal: {why}\n" in c.logs()
        assert f"binance BTCUSDT trade stopped: {why}" in alert
        assert alert.startswith("[CRITICAL] collector: ")
        assert alert.endswith(" | host=ohio-a | region=us-east-2")
        # one attempt: refused is refused, nothing retried, no frame recorded
        assert [e["t"] for e in c.raw_events()] == ["resume"]
        assert len(sink.texts()) == 1


class TestConnectionLifetime:
    def test_connection_is_renewed_at_its_max_age(self, tmp_path, trades_replay):
        trades_replay.faults.stall_after = 5
        trades_replay.faults.stall_s = 60.0
        trades_replay.faults.ws_fault_connections = None
        extra = "[exchanges.binance]\nmax_connection_age_s = 0.5\n"
        cfg = write_config(tmp_path / "c.toml", "binance", trades_replay)
        cfg.write_text(cfg.read_text().replace("[exchanges.binance]\n", extra))
        with collector(tmp_path, "binance", "BTCUSDT", "trade", cfg) as c:
            c.wait_for(lambda s: s.get("reconnects", 0) >= 2)
            assert c.stop() == 0

        reasons = [e["reason"] for e in c.raw_events() if e["t"] == "disconnect"]
        assert reasons[:2] == ["max connection age 0.5 s reached"] * 2
        assert [int(r[2]) for r in c.rows()] == list(range(1000, 1005))

    def test_server_pings_are_answered(self, tmp_path):
        """The replay server drops a client whose pong is late; a silent feed stays open."""
        cap = binance_trade_capture(tmp_path / "t.jsonl.gz")
        with ReplayThread([cap], ping_interval_s=0.2, pong_timeout_s=0.5) as r:
            r.faults.stall_after = 5
            r.faults.stall_s = 3.0
            cfg = write_config(tmp_path / "c.toml", "binance", r)
            cfg.write_text(cfg.read_text().replace("trade_s = 2.0", "trade_s = 10.0"))
            with collector(tmp_path, "binance", "BTCUSDT", "trade", cfg) as c:
                c.wait_for(lambda s: s.get("rows", 0) >= N_TRADES, timeout=30)
                assert c.stop() == 0

        assert c.status()["reconnects"] == 0
        assert [e for e in c.raw_events() if e["t"] == "disconnect"] == []
        assert len(c.rows()) == N_TRADES


class TestRejectedSymbol:
    def test_binance_unknown_symbol_exits_2(self, tmp_path, recorded):
        with ReplayThread([CAPTURES["binance"]]) as r:
            cfg = write_config(tmp_path / "c.toml", "binance", r)
            with collector(tmp_path, "binance", "NOSUCHCOIN", "trade", cfg) as c:
                rc = c.proc.wait(20)

        assert rc == 2
        assert "collector: fatal: binance rejected the subscription: 2: Invalid request" in (
            c.logs()
        )

    def test_coinbase_unknown_product_exits_2(self, tmp_path, recorded):
        with ReplayThread([CAPTURES["coinbase"]]) as r:
            cfg = write_config(tmp_path / "c.toml", "coinbase", r)
            with collector(tmp_path, "coinbase", "NOPE-USD", "trade", cfg) as c:
                rc = c.proc.wait(20)

        assert rc == 2
        assert "NOPE-USD is not a valid product" in c.logs()


class TestCrashSafety:
    def test_kill_9_then_restart_finalises_every_flushed_frame(self, tmp_path, trades_replay):
        """After kill -9 the next start renames leftovers; a restart starts new files."""
        trades_replay.faults.stall_after = 20  # half the trades, then silence
        cfg = write_config(tmp_path / "c.toml", "binance", trades_replay)
        with collector(tmp_path, "binance", "BTCUSDT", "trade", cfg) as c:
            c.wait_for(lambda s: s.get("rows", 0) >= 20 and s["files"]["parsed"])
            time.sleep(0.3)  # a couple more flush intervals
            c.proc.send_signal(signal.SIGKILL)
            c.proc.wait(10)
        parts = sorted(p.name for p in c.stream_dir.rglob("*.part"))
        assert len(parts) == 2

        trades_replay.faults.stall_after = None
        with collector(tmp_path, "binance", "BTCUSDT", "trade", cfg) as c2:
            c2.wait_for(lambda s: s.get("rows", 0) >= N_TRADES - 20)
            assert c2.stop() == 0

        assert list(c2.stream_dir.rglob("*.part")) == []
        assert len(c2.files("parsed")) == 2  # the recovered file and the new one
        assert any(e.get("event") == "file.recovered" for e in c2.log_events())
        ids = [int(r[2]) for r in c2.rows()]
        assert ids == list(range(1000, 1000 + N_TRADES))  # no loss, no duplicate

    def test_sigterm_finalises_files_and_exits_0(self, tmp_path, trades_replay):
        c = run_trades(tmp_path, trades_replay)

        assert list(c.stream_dir.rglob("*.part")) == []
        assert [e.get("event") for e in c.log_events()][-1] == "collector.stopped"

    def test_second_collector_for_the_same_stream_is_refused(self, tmp_path, trades_replay):
        trades_replay.faults.stall_after = 5
        cfg = write_config(tmp_path / "c.toml", "binance", trades_replay)
        with collector(tmp_path, "binance", "BTCUSDT", "trade", cfg) as c1:
            c1.wait_for(lambda s: s.get("rows", 0) >= 5)
            with collector(tmp_path, "binance", "BTCUSDT", "trade", cfg) as c2:
                rc = c2.proc.wait(20)
            assert c1.stop() == 0

        assert rc == 2
        assert f"another collector (pid {c1.proc.pid}) is already running" in c2.logs()


def cb_match(kind, trade_id, seq):
    """`matches` channel message (exchanges.md §2, docs: websocket-feed channels "matches")."""
    return {"type": kind, "trade_id": trade_id, "maker_order_id": f"m{trade_id}",
            "taker_order_id": f"t{trade_id}", "side": "buy", "size": "0.1", "price": "100.00",
            "product_id": "BTC-USD", "sequence": seq,
            "time": f"2021-04-17T10:00:{trade_id:02d}.000000Z"}  # fmt: skip


def cb_heartbeat(last_trade_id, seq):
    """`heartbeat` channel message (docs: websocket-feed channels "heartbeat")."""
    return {"type": "heartbeat", "sequence": seq, "last_trade_id": last_trade_id,
            "product_id": "BTC-USD", "time": "2021-04-17T10:00:30.000000Z"}  # fmt: skip


class TestCoinbaseHeartbeatGap:
    def test_trades_lost_between_heartbeats_are_a_gap_before_the_next_trade(self, tmp_path):
        """Heartbeat says 7 while we wrote 5; still 5 at the next heartbeat → gap 6..7 (once).
        A heartbeat ahead by a match that then arrives is no gap."""
        msgs = [cb_match("last_match", 1, 10)] + [cb_match("match", i, 10 + i) for i in range(2, 6)]
        msgs += [cb_heartbeat(5, 20), cb_heartbeat(7, 21), cb_heartbeat(7, 22)]
        msgs += [cb_match("match", 8, 30), cb_heartbeat(9, 31), cb_match("match", 9, 32),
                 cb_heartbeat(9, 33)]  # fmt: skip
        events = [
            {"t": "connect", "conn": "c", "ts": 1.0, "addr": "wss://ws-feed.pro.coinbase.com"}
        ]
        events += [{"t": "recv", "conn": "c", "ts": 1.0 + i / 100, "data": m}
                   for i, m in enumerate(msgs)]  # fmt: skip
        cap = write_capture(tmp_path / "cb.jsonl.gz", events, exchange="coinbase")
        with ReplayThread([cap]) as r:
            cfg = write_config(tmp_path / "c.toml", "coinbase", r)
            with collector(tmp_path, "coinbase", "BTC-USD", "trade", cfg) as c:
                c.wait_for(lambda s: s.get("frames", 0) >= len(msgs) + 1)
                assert c.stop() == 0

        assert [int(row[2]) for row in c.rows()] == [1, 2, 3, 4, 5, 8, 9]
        gaps = [e for e in c.raw_events() if e["t"] == "gap"]
        assert [(g["kind"], g["expected"], g["got"], g["size"]) for g in gaps] == [
            ("heartbeat", 6, 8, 2)
        ]
        assert (c.status()["gaps"], c.status()["gap_size"]) == (1, 2)
