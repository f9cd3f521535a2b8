"""Hourly gzip writers: exact hour cuts, .part while open, never overwrite, crash recovery."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from collector.files import StreamFiles
from collector.model import COLUMNS
from collector.settings import CollectorSettings
from collector.writer import HourlyGzipWriter, HourStamps, recover, valid_gzip_prefix

H = 1_795_600_800.0  # 2026-11-25T10:00:00Z


def read(path: Path) -> str:
    return gzip.decompress(path.read_bytes()).decode()


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


class TestHourlyGzipWriter:
    def test_lines_go_to_the_hour_they_were_received_in(self, tmp_path):
        """A line received at 10:59:59.9 and flushed after 11:00 stays in the 10:00 file."""
        w = HourlyGzipWriter(tmp_path, "x_Y_trade", ".csv.gz", header="h\n")

        w.add("a\n", H + 10)
        w.add("b\n", H + 3599.9)
        w.add("c\n", H + 3600.1)
        w.write(w.take(), now_s=H + 3600.5)
        w.close()

        assert files(tmp_path) == [
            "2026-11-25/20261125T100010.000Z_x_Y_trade.csv.gz",
            "2026-11-25/20261125T110000.100Z_x_Y_trade.csv.gz",
        ]
        assert read(tmp_path / "2026-11-25/20261125T100010.000Z_x_Y_trade.csv.gz") == "h\na\nb\n"
        assert read(tmp_path / "2026-11-25/20261125T110000.100Z_x_Y_trade.csv.gz") == "h\nc\n"

    def test_open_file_is_part_and_closes_at_hour_end_without_new_data(self, tmp_path):
        w = HourlyGzipWriter(tmp_path, "n", ".jsonl.gz")

        w.add("a\n", H + 5)
        w.write(w.take(), now_s=H + 6)
        open_files = files(tmp_path)
        w.write(w.take(), now_s=H + 3601)

        assert open_files == ["2026-11-25/20261125T100005.000Z_n.jsonl.gz.part"]
        assert files(tmp_path) == ["2026-11-25/20261125T100005.000Z_n.jsonl.gz"]
        assert w.current_part is None

    def test_each_flush_is_one_gzip_member_readable_while_open(self, tmp_path):
        w = HourlyGzipWriter(tmp_path, "n", ".jsonl.gz")
        for i in range(3):
            w.add(f"{i}\n", H + i)
            w.write(w.take(), now_s=H + i)

        assert w.current_part is not None
        assert read(w.current_part) == "0\n1\n2\n"

    def test_a_new_writer_in_the_same_second_never_overwrites(self, tmp_path):
        for _ in range(2):
            w = HourlyGzipWriter(tmp_path, "n", ".csv.gz")
            w.add("a\n", H)
            w.write(w.take(), now_s=H)
            w.close()

        assert files(tmp_path) == [
            "2026-11-25/20261125T100000.000Z_n-2.csv.gz",
            "2026-11-25/20261125T100000.000Z_n.csv.gz",
        ]

    def test_raw_and_parsed_share_the_stem_of_the_hour(self, tmp_path):
        stamps = HourStamps()
        raw = HourlyGzipWriter(tmp_path / "raw", "n", ".jsonl.gz", stamps=stamps)
        parsed = HourlyGzipWriter(tmp_path / "parsed", "n", ".csv.gz", stamps=stamps)

        raw.add("frame\n", H + 1)
        parsed.add("row\n", H + 7)
        raw.write(raw.take(), H + 8)
        parsed.write(parsed.take(), H + 8)

        assert raw.current_part is not None
        assert parsed.current_part is not None
        assert raw.current_part.name.split("_")[0] == parsed.current_part.name.split("_")[0]

    def test_unsynced_writes_are_readable_at_once_and_synced_by_sync_or_close(self, tmp_path):
        """fsync=False: the member is in the file (what kill -9 keeps) before any fsync."""
        w = HourlyGzipWriter(tmp_path, "n", ".jsonl.gz")
        w.add("a\n", H + 1)
        w.write(w.take(), now_s=H + 1, fsync=False)
        (part,) = tmp_path.rglob("*.part")
        assert read(part) == "a\n"
        assert w.unsynced
        w.sync()
        assert not w.unsynced
        w.add("b\n", H + 2)
        w.write(w.take(), now_s=H + 2, fsync=False)
        assert w.unsynced
        w.close()
        assert not w.unsynced
        assert read(tmp_path / "2026-11-25/20261125T100001.000Z_n.jsonl.gz") == "a\nb\n"

    def test_backlog_is_told_when_a_chunk_fills(self, tmp_path):
        told: list[int] = []
        w = HourlyGzipWriter(
            tmp_path, "n", ".jsonl.gz", on_backlog=lambda: told.append(1), backlog_lines=3
        )
        for i in range(7):
            w.add(f"{i}\n", H + 1)
        assert len(told) == 1  # when the chunk reached 3 lines (one wake-up is enough)
        w.write(w.take(), now_s=H + 1)
        for i in range(3):
            w.add(f"{i}\n", H + 1)
        assert len(told) == 2  # the next chunk
        w.close()


class TestRecover:
    def test_torn_last_member_is_cut_and_file_finalised(self, tmp_path):
        """After kill -9 mid-write, every completed flush is readable from a valid .gz."""
        part = tmp_path / "2026-11-25" / "20261125T100000.000Z_n.csv.gz.part"
        part.parent.mkdir()
        good = gzip.compress(b"one\n") + gzip.compress(b"two\n")
        part.write_bytes(good + gzip.compress(b"three\n")[:9])

        done = recover(tmp_path)

        final = tmp_path / "2026-11-25" / "20261125T100000.000Z_n.csv.gz"
        assert done == [final]
        assert read(final) == "one\ntwo\n"
        assert not part.exists()

    def test_part_without_a_complete_member_is_removed(self, tmp_path):
        part = tmp_path / "x.csv.gz.part"
        part.write_bytes(gzip.compress(b"abc")[:5])

        assert recover(tmp_path) == []
        assert list(tmp_path.iterdir()) == []

    def test_valid_prefix(self):
        a, b = gzip.compress(b"a"), gzip.compress(b"b")

        assert valid_gzip_prefix(a + b) == len(a) + len(b)
        assert valid_gzip_prefix(a + b[:-1]) == len(a)
        assert valid_gzip_prefix(b"garbage") == 0


def _digit_rows(n: int) -> list[str]:
    """Rows whose gzip differs between levels 5 and 6 (tiny inputs often compress alike)."""
    return [
        f"{1_700_000_000_000 + i * 37 % 1009},X,{i},{(i * 7919) % 100003}.{i % 97:02d}\n"
        for i in range(n)
    ]


class TestLevels:
    def test_each_member_is_compressed_at_the_writers_level(self, tmp_path):
        rows = _digit_rows(3000)
        body = "".join(rows).encode()
        assert gzip.compress(body, 5, mtime=0) != gzip.compress(body, 6, mtime=0)  # can fail
        w = HourlyGzipWriter(tmp_path, "n", ".csv.gz", header="h\n", level=5)

        for r in rows:
            w.add(r, H + 1)
        w.write(w.take(), now_s=H + 2)
        w.close()

        (path,) = tmp_path.rglob("*.csv.gz")
        assert path.read_bytes() == gzip.compress(b"h\n", 5, mtime=0) + gzip.compress(
            body, 5, mtime=0
        )

    def test_a_level_outside_gzips_is_refused(self, tmp_path):
        for bad in (-1, 10):
            with pytest.raises(ValueError, match=f"a gzip level is 0-9, not {bad}"):
                HourlyGzipWriter(tmp_path, "n", ".csv.gz", level=bad)

    def test_a_streams_raw_file_is_at_the_archive_level_and_its_csv_at_the_parsed_one(
        self, tmp_path
    ):
        """Raw files are the archive (zlib's default 6); the CSV, rebuildable from them, 5."""
        settings = CollectorSettings(
            exchange="binance",
            symbol="BTCUSDT",
            data_type="trade",
            data_dir=tmp_path,
            ws_url="ws://127.0.0.1:1",
            rest_url="http://127.0.0.1:1",
        )
        files = StreamFiles(settings)
        rows = _digit_rows(3000)
        for r in rows:
            files.raw.add(r, H + 1)
            files.parsed.add(r, H + 1)
        files.write(files.raw.take(), files.parsed.take(), H + 2, fsync=True)
        files.close()

        body = "".join(rows).encode()
        (raw,) = tmp_path.rglob("*.jsonl.gz")
        (csv,) = tmp_path.rglob("*.csv.gz")
        assert raw.read_bytes() == gzip.compress(body, 6, mtime=0)
        header = ",".join(COLUMNS["trade"]) + "\n"
        assert csv.read_bytes() == gzip.compress(header.encode(), 5, mtime=0) + gzip.compress(
            body, 5, mtime=0
        )
