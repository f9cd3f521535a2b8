"""``python -m collector rebuild`` gives exactly the parsed files a live collector wrote.

Real collectors run against the replay server (recorded captures, every fault switch) and the
trade peer (restarts, kill -9); then the rebuild, a real ``python -m collector rebuild``
process, turns their raw files into parsed files under another data dir, which must be the
live files byte for byte once decompressed. The hour boundary is crossed in-process with the
live app's own files and pipeline (files.StreamFiles, app.build_pipeline), fed frames stamped
around the next full hour.
"""

from __future__ import annotations

import gzip
import math
import shutil
import signal
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector import handlers, rawfiles
from collector.effects import Effects, Lines
from collector.exchanges import ADAPTERS
from collector.exchanges.base import StreamSpec
from collector.processor import Processor
from collector.session import Frame
from collector.status import Stats
from ops.replay import ReplayThread
from tests.collector.harness import Collector, collector, write_config
from tests.collector.rebuildkit import (
    assert_rebuilds_exactly,
    live_trades,
    parsed_files,
    rebuild_cli,
)
from tests.collector.test_crash_loop import peer_config
from tests.collector.test_hostile_frames import binance_trade
from tests.collector.test_process_books import binance_done
from tests.collector.tradepeer import TradePeer
from tests.conftest import CAPTURES


def kinds(c: Collector) -> set[str]:
    return {str(e["t"]) for e in c.raw_events()}


class TestRecordedCaptures:
    # A skipped diff, a garbage frame, a stall and a dropped connection: the Binance book fault
    # run of tests/collector/test_process_rebuild.py.

    def test_binance_book_hostile_server_and_refused_requests(self, tmp_path, recorded):
        """Refused and broken handshakes, a 418 then a 429 on the snapshot, an oversized and
        a deeply nested frame, injected forged levels, a foreign symbol and non-UTF-8 bytes."""
        forged = orjson.dumps(
            {
                "stream": "nknusdt@depth@100ms",
                "data": {
                    "e": "depthUpdate",
                    "E": 1,
                    "s": "NKNUSDT",
                    "U": 1,
                    "u": 2,
                    "b": [["1\n2", "1"]],
                    "a": [],
                },
            }  # fmt: skip
        ).decode()
        foreign = forged.replace('"NKNUSDT"', '"ETHUSDT"').replace("1\\n2", "1.0")
        with ReplayThread([CAPTURES["binance"]]) as r:
            r.faults.reject_handshakes = 1
            r.faults.bad_handshakes = 1
            r.faults.bad_handshake = "garbage"
            r.faults.http_errors = 2
            r.faults.http_error_status = 418
            r.faults.http_retry_after_s = 1
            r.faults.oversized_after = 10
            r.faults.oversized_bytes = 300_000
            r.faults.nested_after = 20
            r.faults.nested_depth = 5_000
            r.faults.inject = ((25, forged), (40, foreign), (50, b"\xff\xfe\x00 not utf-8"))
            cfg = write_config(tmp_path / "c.toml", "binance", r)
            with collector(tmp_path, "binance", "NKNUSDT", "book", cfg) as c:
                c.wait_for(lambda s: binance_done(c, s) and s.get("resyncs", 0) >= 1, timeout=40)
                assert c.stop() == 0

        assert_rebuilds_exactly(c, tmp_path / "out")

        assert any(e.get("encoding") == "base64" for e in c.raw_events())
        assert sum(e["t"] == "disconnect" for e in c.raw_events()) >= 2

    def test_coinbase_books_with_a_dropped_connection(self, tmp_path, recorded):
        """level2_batch snapshots and updates of one product, a reconnect midway."""
        with ReplayThread([CAPTURES["coinbase"]]) as r:
            r.faults.drop_after = 300
            cfg = write_config(tmp_path / "c.toml", "coinbase", r)
            with collector(tmp_path, "coinbase", "SKL-USD", "book", cfg) as c:
                c.wait_for(lambda s: s.get("rows", 0) >= 20 and s.get("reconnects", 0) >= 1)
                assert c.stop() == 0

        assert_rebuilds_exactly(c, tmp_path / "out")

    def test_bitstamp_book_with_the_servers_reconnect_request(self, tmp_path, recorded):
        """bts:request_reconnect renews the connection; the book resyncs from REST."""
        with ReplayThread([CAPTURES["bitstamp"]]) as r:
            r.faults.reconnect_request_after = 30
            cfg = write_config(tmp_path / "c.toml", "bitstamp", r)
            with collector(tmp_path, "bitstamp", "ethusd", "book", cfg) as c:
                c.wait_for(lambda s: s.get("rows", 0) >= 10 and s.get("reconnects", 0) >= 1)
                assert c.stop() == 0

        assert_rebuilds_exactly(c, tmp_path / "out")


# Trades with strays, forgeries, gaps and a held trade, Coinbase L3 with a sequence gap and
# Bitfinex L3 with a checksum mismatch: the fault runs of tests/collector/test_process_rebuild.py
# also rebuild through the CLI (one live run each, both checks).


class TestRuns:
    def test_restarts_inside_an_hour_and_a_kill_9(self, tmp_path):
        """Three runs of a feed whose ids go on meanwhile: two stopped cleanly (their files
        rebuild exactly), one killed with -9 (its parsed file lost the last flush that raw
        kept: the rebuild has every live row, and at most that flush more); the run after
        the kill resumes from the files on disk and rebuilds exactly."""
        with TradePeer(rate=1500.0) as peer:
            cfg = peer_config(tmp_path / "c.toml", peer)
            for _ in range(2):
                with collector(tmp_path, "binance", "BTCUSDT", "trade", cfg) as c:
                    c.wait_for(lambda s: s.get("rows", 0) >= 300)
                    assert c.stop() == 0
            killed = Collector(tmp_path, "binance", "BTCUSDT", "trade", cfg)
            killed.wait_for(lambda s: s.get("rows", 0) >= 300)
            killed.stop(signal.SIGKILL)
            killed_stems = {p.name.removesuffix(".jsonl.gz.part") for p in killed.files("raw")}
            with collector(tmp_path, "binance", "BTCUSDT", "trade", cfg) as c:
                c.wait_for(lambda s: s.get("rows", 0) >= 300)
                assert c.stop() == 0

        done = rebuild_cli("--data_dir", tmp_path / "out", c.stream_dir / "raw")

        assert done.returncode == 0, done.stderr
        live, rebuilt = parsed_files(tmp_path / "data"), parsed_files(tmp_path / "out")
        assert sorted(live) == sorted(rebuilt)
        assert len(live) >= 4
        for name, data in live.items():
            if any(stem in name for stem in killed_stems):
                assert rebuilt[name].startswith(data), name
            else:
                assert rebuilt[name] == data, name

    def test_the_hour_boundary_and_a_trade_held_across_it(self, tmp_path):
        """The live app's files and pipeline, fed frames around the next full hour (flushed
        and ticked as its flusher does): the hour cut falls where live cut it, and a trade
        held at the end of an hour (accepted by the tick after it, a `trade_accept` in the
        next hour's raw) lands in the earlier hour's file in both."""
        now = time.time()
        boundary = (math.floor(now / 3600) + 1) * 3600.0
        if boundary - now < 5:
            boundary += 3600.0
        stamped = [(boundary - 1.0 + i * 0.05, binance_trade(i)) for i in range(10)]
        stamped.append((boundary - 0.3, binance_trade(12)))  # held: is 1012 a stray?
        # after the hour: 1010, 1011, ... which would make 1012 a stray, had the tick not
        # accepted it (live decided by the clock: only the raw marker tells a rebuild)
        stamped += [(boundary + 0.2 + i * 0.05, binance_trade(i)) for i in range(10, 17)]
        stream_dir = live_trades(tmp_path / "data", stamped)

        done = rebuild_cli("--data_dir", tmp_path / "out", stream_dir / "raw")

        assert done.returncode == 0, done.stderr
        live, rebuilt = parsed_files(tmp_path / "data"), parsed_files(tmp_path / "out")
        assert len(live) == 2
        assert rebuilt == live
        first_hour = live[min(live)].decode().splitlines()
        assert first_hour[-1].split(",")[2] == "1012"  # the held trade, in its own hour
        raw = sorted((stream_dir / "raw").rglob("*.jsonl.gz"))
        second_raw = gzip.decompress(raw[1].read_bytes()).decode()
        assert '"t":"trade_accept"' in second_raw


class TestDeterminism:
    def test_two_rebuilds_give_the_same_bytes(self, tmp_path, recorded):
        """One file named alone and its whole directory: the same compressed bytes."""
        with ReplayThread([CAPTURES["binance"]]) as r:
            r.faults.drop_after = 60
            cfg = write_config(tmp_path / "c.toml", "binance", r)
            with collector(tmp_path, "binance", "NKNUSDT", "book", cfg) as c:
                c.wait_for(lambda s: binance_done(c, s) and s["reconnects"] >= 1, timeout=40)
                assert c.stop() == 0
        raw = c.files("raw")

        one = rebuild_cli("--data_dir", tmp_path / "a", raw[-1])
        every = rebuild_cli("--data_dir", tmp_path / "b", c.stream_dir / "raw")

        assert (one.returncode, every.returncode) == (0, 0), one.stderr + every.stderr
        a = sorted((tmp_path / "a").rglob("*.csv.gz"))
        b = {p.relative_to(tmp_path / "b"): p for p in (tmp_path / "b").rglob("*.csv.gz")}
        assert a
        for p in a:
            assert p.read_bytes() == b[p.relative_to(tmp_path / "a")].read_bytes()


RECEIVE_TIMES = st.floats(min_value=1.2e9, max_value=4.2e9, allow_nan=False)


def written_and_read_back(ts: float) -> list[object]:
    """The ``ts`` of a recv frame (the hot path's repr), an http frame (orjson) and a marker,
    as the processor writes them and the rebuild reads them."""
    raw = Lines()
    effects = Effects(raw, Lines())
    stats = Stats("binance", "BTCUSDT", "book")
    adapter = ADAPTERS["binance"]
    handler = handlers.for_stream(adapter, "BTCUSDT", "book", effects, stats, book_depth=5)
    proc = Processor(adapter, StreamSpec("BTCUSDT", "book"), handler, effects, stats)
    proc.handle(Frame("recv", "c1", ts, data='{"result":null,"id":1}'))
    proc.handle(Frame("http", "c1", ts, data="{}", addr="http://x/api/v3/depth"))
    effects.marker("start", ts, run={})
    counts: Counter[str] = Counter()
    return [rawfiles.decode(line.encode(), counts)["ts"] for line in raw.lines]  # type: ignore[index]


class TestReceiveTimes:
    @given(RECEIVE_TIMES)
    def test_every_ts_the_processor_writes_reads_back_as_the_same_double(self, ts):
        """So local_time (µs) and every hour cut come out the same in a rebuild."""
        assert written_and_read_back(ts) == [ts, ts, ts]

    @given(st.floats(allow_nan=False, allow_infinity=False))
    def test_any_double_round_trips_through_both_writers(self, x):
        """The two ways a ts is written (repr in the recv hot path, orjson elsewhere), for
        any double (the processor itself refuses times no clock gives)."""
        counts: Counter[str] = Counter()
        hot_path = f'{{"t":"recv","ts":{x!r}}}'.encode()
        assert rawfiles.decode(hot_path, counts) == {"t": "recv", "ts": x}
        assert rawfiles.decode(orjson.dumps({"t": "gap", "ts": x}), counts) == {"t": "gap", "ts": x}


@pytest.fixture(scope="module")
def depth3(tmp_path_factory):
    """A live Binance book run with book_depth = 3 (the default config says 5)."""
    tmp = tmp_path_factory.mktemp("depth3")
    with ReplayThread([CAPTURES["binance"]]) as r:
        cfg = write_config(tmp / "c.toml", "binance", r, "book_depth = 3")
        with collector(tmp, "binance", "NKNUSDT", "book", cfg) as c:
            c.wait_for(lambda s: binance_done(c, s), timeout=40)
            assert c.stop() == 0
    return c, cfg


def rewrite_first_line(raw: Path, first: bytes | None) -> None:
    lines = gzip.decompress(raw.read_bytes()).splitlines(keepends=True)
    raw.write_bytes(gzip.compress((b"" if first is None else first) + b"".join(lines[1:])))


class TestRunSettings:
    def test_the_runs_settings_come_from_its_first_line(self, depth3, tmp_path, recorded):
        """Rebuilt with the default config (book_depth 5): the run's 3 levels all the same."""
        c, _ = depth3

        assert_rebuilds_exactly(c, tmp_path / "out")

        first = c.raw_events()[0]
        assert (first["t"], first["run"]["book_depth"]) == ("start", 3)

    def test_a_run_recorded_before_start_markers_takes_the_config(self, depth3, tmp_path):
        """Without its `start` line the run opens with connection c1, and its settings are
        the config file's: the live config rebuilds it exactly, the default one does not."""
        c, cfg = depth3
        old = tmp_path / "data"
        shutil.copytree(c.workdir / "data", old)
        (raw,) = sorted(old.rglob("*.jsonl.gz"))
        rewrite_first_line(raw, None)

        same = rebuild_cli("--config", cfg, "--data_dir", tmp_path / "a", raw)
        default = rebuild_cli("--data_dir", tmp_path / "b", raw)

        assert (same.returncode, default.returncode) == (0, 0), same.stderr + default.stderr
        assert parsed_files(tmp_path / "a") == parsed_files(c.workdir / "data")
        assert parsed_files(tmp_path / "b") != parsed_files(c.workdir / "data")

    def test_settings_no_collector_could_have_run_with_are_refused(self, depth3, tmp_path):
        c, _ = depth3
        bad = tmp_path / "data"
        shutil.copytree(c.workdir / "data", bad)
        (raw,) = sorted(bad.rglob("*.jsonl.gz"))
        start = {"t": "start", "conn": "", "ts": 1.0, "run": {"book_depth": 10**9, "options": {}}}
        rewrite_first_line(raw, orjson.dumps(start) + b"\n")

        done = rebuild_cli("--data_dir", tmp_path / "out", raw)

        assert done.returncode == 2
        assert "book_depth = 1000000000 must be <=" in done.stderr
        assert not (tmp_path / "out").exists()
