"""``python -m collector rebuild``: bad input is one line and exit 2 with nothing written;
hostile lines inside a raw file are counted and skipped, never a crash, never a row."""

from __future__ import annotations

import gzip
import shutil
import time
from pathlib import Path

import orjson
import pytest

from tests.collector.rebuildkit import live_trades, parsed_files, rebuild_cli
from tests.collector.test_hostile_frames import binance_trade


def trades_at(t0: float, ids: range) -> list[tuple[float, dict[str, object]]]:
    return [(t0 + i * 0.01, binance_trade(i)) for i in ids]


@pytest.fixture
def stream(tmp_path) -> Path:
    """A live-written Binance trade stream of one hour: its stream dir."""
    return live_trades(tmp_path / "data", trades_at(time.time(), range(40)))


def raw_of(stream: Path) -> Path:
    (path,) = sorted((stream / "raw").rglob("*.jsonl.gz"))
    return path


def refused(done, tmp_path: Path, what: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert what in done.stderr
    assert not (tmp_path / "out").exists()


class TestBadInput:
    def test_a_parsed_file_is_not_a_raw_file(self, tmp_path, stream):
        (parsed,) = sorted((stream / "parsed").rglob("*.csv.gz"))
        refused(rebuild_cli("--data_dir", tmp_path / "out", parsed), tmp_path, "not a raw file")

    def test_a_file_whose_lines_are_not_raw_events(self, tmp_path, stream):
        (parsed,) = sorted((stream / "parsed").rglob("*.csv.gz"))
        fake = raw_of(stream).with_name("20200101T000000.000Z_binance_BTCUSDT_trade.jsonl.gz")
        shutil.copy(parsed, fake)  # a CSV under a raw file's name

        refused(rebuild_cli("--data_dir", tmp_path / "out", fake), tmp_path, "first line")

    def test_bytes_that_are_not_gzip(self, tmp_path, stream):
        fake = raw_of(stream).with_name("20200101T000000.000Z_binance_BTCUSDT_trade.jsonl.gz")
        fake.write_bytes(b"\x00\x01 not gzip\n")

        refused(rebuild_cli("--data_dir", tmp_path / "out", fake), tmp_path, "not a raw file")

    def test_raw_files_of_two_streams(self, tmp_path, stream):
        other = live_trades(tmp_path / "data", trades_at(time.time(), range(5)), symbol="ETHUSDT")

        done = rebuild_cli("--data_dir", tmp_path / "out", raw_of(stream), raw_of(other))

        refused(done, tmp_path, "different streams")

    def test_an_unknown_exchange(self, tmp_path, stream):
        bogus = tmp_path / "data" / "kraken" / "XBTUSD" / "trade" / "raw" / "2024-01-01"
        bogus.mkdir(parents=True)
        f = bogus / "20240101T000000.000Z_kraken_XBTUSD_trade.jsonl.gz"
        f.write_bytes(gzip.compress(b'{"t":"resume","conn":"","ts":1.0}\n'))

        refused(rebuild_cli("--data_dir", tmp_path / "out", f), tmp_path, "unknown exchange")

    def test_an_output_inside_the_input_data_dir(self, tmp_path, stream):
        done = rebuild_cli("--data_dir", tmp_path / "data" / "rebuilt", stream / "raw")

        refused(done, tmp_path, "inside the input's data dir")
        assert not (tmp_path / "data" / "rebuilt").exists()

    def test_an_output_that_cannot_be_written(self, tmp_path, stream):
        blocker = tmp_path / "file"
        blocker.write_text("x")

        done = rebuild_cli("--data_dir", blocker / "out", stream / "raw")

        refused(done, tmp_path, "not writable")

    def test_a_file_whose_runs_first_file_is_gone(self, tmp_path):
        boundary = (int(time.time() // 3600) + 1) * 3600.0
        s = live_trades(tmp_path / "data", trades_at(boundary - 0.2, range(40)))
        first, second = sorted((s / "raw").rglob("*.jsonl.gz"))
        first.unlink()

        done = rebuild_cli("--data_dir", tmp_path / "out", second)

        refused(done, tmp_path, "the first file of its run is not on disk")

    def test_no_output_named(self, tmp_path, stream):
        refused(rebuild_cli(stream / "raw"), tmp_path, "--data_dir OUT is required")

    def test_the_collectors_own_command_line_still_works(self, tmp_path):
        done = rebuild_cli("--help")
        assert done.returncode == 0
        assert "--in-place" in done.stdout


def hostile_copy(raw: Path, lines: list[bytes], at: int) -> None:
    """Rewrite ``raw`` with ``lines`` inserted before its line ``at`` (one gzip member each
    side, as a writer's flushes)."""
    clean = gzip.decompress(raw.read_bytes()).splitlines(keepends=True)
    before, after = b"".join(clean[:at]), b"".join(clean[at:])
    middle = b"".join(x + b"\n" for x in lines)
    raw.write_bytes(gzip.compress(before) + gzip.compress(middle) + gzip.compress(after))


class TestHostileLines:
    def test_hostile_lines_are_counted_and_make_no_row(self, tmp_path):
        """Not JSON, not UTF-8, not an event, a field of the wrong type, bad base64, an
        unknown kind, a forged price, a second resume and start, a line of 2 MiB: each is
        skipped or refused by the adapter and counted; the rows are the clean file's."""
        trades = trades_at(time.time(), range(40))
        live_trades(tmp_path / "clean", trades, config_extra="max_message_size = 1024")
        dirty = live_trades(tmp_path / "data", trades, config_extra="max_message_size = 1024")
        forged = orjson.dumps(binance_trade(99, p="1\n2")).decode()
        hostile = [
            b"not json at all",
            b"\xff\xfe\x80 not utf-8",
            b"[1, 2, 3]",
            b'{"t": "recv", "conn": "c1", "ts": "soon", "data": "{}"}',
            b'{"t": "recv", "conn": "c1", "ts": 1.0, "data": "%%%", "encoding": "base64"}',
            b'{"t": "wormhole", "conn": "c1", "ts": 1.0}',
            orjson.dumps({"t": "recv", "conn": "c1", "ts": trades[10][0], "data": forged}),
            b'{"t": "resume", "conn": "", "ts": 1.0, "last_trade_id": 5, "file": null}',
            b'{"t": "start", "conn": "", "ts": 1.0, "run": {"book_depth": 1, "options": {}}}',
            b'{"t": "recv", "conn": "c1", "ts": 1.0, "data": "' + b"x" * (2 << 20) + b'"}',
        ]
        hostile_copy(raw_of(dirty), hostile, at=12)
        config = tmp_path / "data.toml"

        done = rebuild_cli("--config", config, "--data_dir", tmp_path / "out", dirty / "raw")

        assert done.returncode == 0, done.stderr
        (rebuilt,) = parsed_files(tmp_path / "out").values()
        (want,) = parsed_files(tmp_path / "clean").values()
        assert rebuilt == want
        assert (
            "raw lines skipped: bad_event=2, misplaced_resume=1, misplaced_start=1, "
            "not_an_event=1, not_json=2, too_long=1, unknown_kind=1" in done.stdout
        ), done.stdout
        assert "frames without rows: bad_value:p=1" in done.stdout

    def test_a_gzip_bomb_line_is_skipped(self, tmp_path):
        """A member inflating to 200 MiB of one line: skipped as too long (read in bounded
        pieces, and no more of it held than the longest line a collector writes)."""
        s = live_trades(tmp_path / "data", trades_at(time.time(), range(5)))
        raw = raw_of(s)
        bomb = gzip.compress(b"y" * (200 << 20) + b"\n", compresslevel=9)
        raw.write_bytes(raw.read_bytes() + bomb)

        done = rebuild_cli("--data_dir", tmp_path / "out", raw)

        assert done.returncode == 0, done.stderr
        assert "too_long=1" in done.stdout

    def test_a_crash_leftover_part_is_read_up_to_its_last_whole_member(self, tmp_path):
        s = live_trades(tmp_path / "data", trades_at(time.time(), range(20)))
        raw = raw_of(s)
        part = raw.with_name(raw.name + ".part")
        raw.rename(part)
        with open(part, "ab") as fh:
            fh.write(gzip.compress(b'{"t":"recv"}\n' * 100)[:-20])  # a torn last member

        done = rebuild_cli("--data_dir", tmp_path / "out", part)

        assert done.returncode == 0, done.stderr
        assert parsed_files(tmp_path / "out") == parsed_files(tmp_path / "data")
        assert "raw lines skipped" not in done.stdout


def test_a_fatal_error_frame_ends_its_run_as_it_did_live(tmp_path):
    """An error answering our subscribe made the live collector exit: what follows it in the
    same file (hostile, as no process wrote it) is not replayed, and the end is counted."""
    day = tmp_path / "data" / "binance" / "BTCUSDT" / "trade" / "raw" / "2024-01-01"
    day.mkdir(parents=True)
    ts = 1_704_067_200.5
    events = [
        {"t": "resume", "conn": "", "ts": ts, "last_trade_id": None, "file": None},
        {"t": "connect", "conn": "c1", "ts": ts, "addr": "ws://127.0.0.1:9/stream"},
        {"t": "send", "conn": "c1", "ts": ts, "addr": "ws://127.0.0.1:9/stream",
         "data": '{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}'},
        {"t": "recv", "conn": "c1", "ts": ts, "data": '{"error":{"code":2,"msg":"no"},"id":1}'},
    ]  # fmt: skip
    events += [
        {"t": "recv", "conn": "c1", "ts": ts + 1, "data": orjson.dumps(binance_trade(i)).decode()}
        for i in range(3)
    ]
    raw = day / "20240101T000000.500Z_binance_BTCUSDT_trade.jsonl.gz"
    raw.write_bytes(gzip.compress(b"".join(orjson.dumps(e) + b"\n" for e in events)))

    done = rebuild_cli("--data_dir", tmp_path / "out", raw)

    assert done.returncode == 0, done.stderr
    assert "fatal_error_frame=1" in done.stdout
    assert "1 hour(s) gave no row" in done.stdout
    assert parsed_files(tmp_path / "out") == {}
