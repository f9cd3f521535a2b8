"""The data directory's layout (collector/common/layout.py): listing a data dir's files."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

from collector.common import layout

STEM = "20240301T100000.000Z_binance_BTCUSDT_trade"
DAY = "binance/BTCUSDT/trade/{kind}/2024-03-01"
PARSED = f"{DAY.format(kind='parsed')}/{STEM}.csv.gz"
REPORT = f"{DAY.format(kind='parsed')}/{STEM}.qa.json"
PARSED_PART = f"{DAY.format(kind='parsed')}/{STEM}-2.csv.gz.part"
RAW = f"{DAY.format(kind='raw')}/{STEM}.jsonl.gz"
RAW_PART = f"{DAY.format(kind='raw')}/{STEM}-2.jsonl.gz.part"
LEDGER = f"{DAY.format(kind='completeness')}/{STEM}.completeness.json"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """One stream's files of every kind, open and closed, two status files, and the data
    dir's own state (dot directories, one of them holding a parsed file deeper down)."""
    for rel in (
        PARSED,
        REPORT,
        PARSED_PART,
        RAW,
        RAW_PART,
        LEDGER,
        "binance/BTCUSDT/trade/status.json",
        "binance/BTCUSDT/trade/.lock",
        "coinbase/BTC-USD/l3/status.json",
        ".qa/run.lock",
        ".sync/ledger.sqlite",
        ".fleet/periodic/qa.json",
        f".rebuild/prev/{PARSED}",
    ):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    return tmp_path


def rel(root: Path, paths: Iterable[Path]) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in paths)


class TestListing:
    def test_stream_files_are_every_entry_at_the_depth_of_a_day_s_files(
        self, data_dir: Path
    ) -> None:
        """Open and closed files of every kind, and whatever else sits at that depth (here a
        directory of ``.rebuild``: names are for the callers to filter); nothing above it
        or below it."""
        found = layout.stream_files(data_dir)

        assert rel(data_dir, found) == sorted(
            [
                PARSED,
                REPORT,
                PARSED_PART,
                RAW,
                RAW_PART,
                LEDGER,
                ".rebuild/prev/binance/BTCUSDT/trade/parsed",
            ]
        )

    def test_stream_files_of_one_kind(self, data_dir: Path) -> None:
        """``kind`` keeps one directory of each stream: its reports and open files too."""
        found = layout.stream_files(data_dir, layout.PARSED)

        assert rel(data_dir, found) == sorted([PARSED, REPORT, PARSED_PART])

    def test_closed_files_leave_out_the_part_files(self, data_dir: Path) -> None:
        """Data files, QA reports and completeness records without ``.part``."""
        found = layout.closed_files(data_dir)

        assert rel(data_dir, found) == sorted([PARSED, REPORT, RAW, LEDGER])

    def test_open_files_are_the_part_files(self, data_dir: Path) -> None:
        found = layout.open_files(data_dir)

        assert rel(data_dir, found) == sorted([PARSED_PART, RAW_PART])

    def test_status_files_are_one_per_stream_directory(self, data_dir: Path) -> None:
        found = layout.status_files(data_dir)

        assert rel(data_dir, found) == [
            "binance/BTCUSDT/trade/status.json",
            "coinbase/BTC-USD/l3/status.json",
        ]
