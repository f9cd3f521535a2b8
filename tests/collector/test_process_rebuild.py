"""A live run's raw file, fed back through the processor, gives exactly that run's files.

The shape ``python -m collector rebuild`` needs: a real collector runs against the replay
server with faults (reconnects, gaps, resyncs, bad frames, binary frames, strays, a trade
held until the flusher's tick accepts it); then its raw lines — the frames, and the markers
that record its live decisions (``resume``, ``trade_accept``) — drive a fresh processor with
file-mode effects: no socket, no trio, no clock but the frames' ``ts``. The rows must be
the live parsed files' rows, byte for byte, and the raw lines written again (frames
re-enveloped, markers decided again) the live raw files' lines.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson

from collector import handlers
from collector.config import load_config
from collector.effects import Effects, Lines
from collector.exchanges import ADAPTERS
from collector.processor import Processor
from collector.settings import build_collector_settings
from collector.status import Stats
from ops.replay import ReplayThread
from tests.collector.harness import Collector, collector, write_config
from tests.collector.rebuildkit import assert_rebuilds_exactly
from tests.collector.test_hostile_frames import binance_trade, capture
from tests.collector.test_process_books import binance_done
from tests.collector.test_process_l3 import GOOD_CS, bitfinex_capture, run_coinbase_gap
from tests.conftest import CAPTURES


def file_lines(c: Collector, kind: str) -> list[str]:
    """Every line of the run's closed ``kind`` files in order (parsed: without headers)."""
    out: list[str] = []
    for path in c.files(kind):
        lines = gzip.decompress(path.read_bytes()).decode().splitlines(keepends=True)
        out += lines[1:] if kind == "parsed" else lines
    return out


def rebuild(c: Collector, config: Path) -> tuple[Effects, Stats]:
    """The run's raw lines through a new processor with file-mode effects."""
    s = build_collector_settings(
        load_config(config), exchange=c.exchange, symbol=c.symbol, data_type=c.data_type
    )
    adapter = ADAPTERS[s.exchange]
    effects = Effects(Lines(), Lines())
    stats = Stats(s.exchange, s.symbol, s.data_type)
    handler = handlers.for_stream(
        adapter, s.symbol, s.data_type, effects, stats, book_depth=s.book_depth
    )
    processor = Processor(adapter, s.stream_spec(), handler, effects, stats)
    for line in file_lines(c, "raw"):
        processor.replay(orjson.loads(line))
    return effects, stats


def assert_rebuilt(c: Collector, config: Path) -> Stats:
    effects, stats = rebuild(c, config)
    assert isinstance(effects.rows, Lines)
    assert isinstance(effects.raw, Lines)
    live_rows = file_lines(c, "parsed")
    assert live_rows
    assert effects.rows.lines == live_rows
    assert effects.raw.lines == file_lines(c, "raw")
    return stats


class TestTrades:
    def test_binance_trades_with_every_kind_of_trouble(self, tmp_path):
        """Strays, a forged price, another symbol, a gap, a binary frame, an error frame
        (reconnect: duplicates) and a last trade held until the tick accepts it."""
        frames: list[object] = [binance_trade(i) for i in range(5)]
        frames += [binance_trade(5, t=10**12), binance_trade(6), binance_trade(7)]
        frames += [binance_trade(8, p="1\n2"), binance_trade(9), binance_trade(10)]
        frames += [binance_trade(11, symbol="ETHUSDT"), binance_trade(12), binance_trade(13)]
        frames += [binance_trade(i) for i in range(15, 20)]  # 1014 never comes: a gap
        frames.append(binance_trade(20, t=1030))  # held: only the tick can accept it
        with ReplayThread([capture(tmp_path, frames)]) as r:
            r.faults.inject = (
                (3, b"\xff\xfe not utf-8"),
                (12, '{"error":{"code":-1,"msg":"Internal error"},"id":null}'),
            )
            cfg = write_config(tmp_path / "c.toml", "binance", r)
            with collector(tmp_path, "binance", "BTCUSDT", "trade", cfg) as c:
                c.wait_for(lambda s: s.get("last_trade_id") == 1030 and s["rows"] >= 17)
                assert c.stop() == 0

        stats = assert_rebuilt(c, cfg)
        assert_rebuilds_exactly(c, tmp_path / "out")  # and so does `collector rebuild`

        kinds = [e["t"] for e in c.raw_events()]
        assert {"resume", "trade_stray", "gap", "trade_accept", "disconnect"} <= set(kinds)
        assert any(e.get("encoding") == "base64" for e in c.raw_events())
        assert (stats.rows, stats.error_frames) == (c.status()["rows"], 1)

    def test_coinbase_matches_and_heartbeats(self, tmp_path, recorded):
        """The recorded Coinbase trades of one product, with a dropped connection."""
        with ReplayThread([CAPTURES["coinbase"]]) as r:
            r.faults.drop_after = 200
            cfg = write_config(tmp_path / "c.toml", "coinbase", r)
            with collector(tmp_path, "coinbase", "BAND-GBP", "trade", cfg) as c:
                c.wait_for(lambda s: s.get("rows", 0) >= 3 and s.get("reconnects", 0) >= 1)
                assert c.stop() == 0

        assert_rebuilt(c, cfg)


class TestBooks:
    def test_binance_book_with_a_bad_frame_and_a_dropped_connection(self, tmp_path, recorded):
        """REST snapshots (in raw as http frames), a resync after a frame it could not read,
        a gap and a new snapshot after the drop."""
        with ReplayThread([CAPTURES["binance"]]) as r:
            r.faults.skip_frames = (8,)  # a gap, when the book had synced before it (timing)
            r.faults.garbage_after = 15
            r.faults.stall_after = 30
            r.faults.stall_s = 1.0
            r.faults.drop_after = 31
            cfg = write_config(tmp_path / "c.toml", "binance", r)
            with collector(tmp_path, "binance", "NKNUSDT", "book", cfg) as c:
                c.wait_for(lambda st: binance_done(c, st) and st["reconnects"] >= 1, timeout=40)
                assert c.stop() == 0

        stats = assert_rebuilt(c, cfg)
        line = assert_rebuilds_exactly(c, tmp_path / "out")  # and so does `collector rebuild`

        assert stats.resyncs >= 1
        assert [e["t"] for e in c.raw_events()].count("http") >= 2
        assert {"start", "resync", "http", "disconnect"} <= {e["t"] for e in c.raw_events()}
        assert "frames without rows: malformed=1" in line


class TestL3:
    def test_coinbase_full_with_a_sequence_gap(self, tmp_path):
        """A skipped message: gap, a new REST snapshot, snapshot rows again."""
        c, cfg = run_coinbase_gap(tmp_path)

        assert_rebuilt(c, cfg)
        assert_rebuilds_exactly(c, tmp_path / "out")

    def test_bitfinex_checksum_mismatch_resubscribes(self, tmp_path):
        """In-stream snapshots: a wrong checksum reconnects, the new subscription resyncs."""
        cap = bitfinex_capture(tmp_path / "bf.jsonl.gz", GOOD_CS + 1)
        with ReplayThread([cap]) as r:
            cfg = write_config(tmp_path / "c.toml", "bitfinex", r)
            with collector(tmp_path, "bitfinex", "BTCUSD", "l3", cfg) as c:
                c.wait_for(lambda s: s.get("resyncs", 0) >= 1 and s.get("rows", 0) >= 10)
                assert c.stop() == 0

        assert_rebuilt(c, cfg)
        assert_rebuilds_exactly(c, tmp_path / "out")
