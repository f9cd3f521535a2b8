"""Files written by the real collector from the recorded captures (via the replay server) pass QA.

The recordings are from 2021 while the collector stamps files with today's clock, so the
plausibility window for exchange times is widened; the captures last 31 s of an hour, so the
silence limit is too; and a book row that comes from a bare REST snapshot carries today's
receive time before the 2021 exchange times of the diffs after it (whether a buffered diff
is left to stamp the first rows depends on timing), so exchange times may step back by the
years between. Every other threshold is the default.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ops.replay import ReplayThread
from qa.runner import check_file
from qa.settings import Thresholds
from tests.collector.harness import collector, write_config
from tests.collector.test_process_books import binance_done
from tests.conftest import CAPTURES

pytestmark = pytest.mark.slow

TH = replace(
    Thresholds(),
    plausible_window_h=24.0 * 366 * 10,
    max_silence_s={"trade": 3600.0, "book": 3600.0},
    backwards_tolerance_ms=1000.0 * 86400 * 366 * 10,
)


def _reports(c: Any) -> list[dict[str, Any]]:
    files = c.files("parsed")
    assert files
    return [check_file(p, TH) for p in files]


def _non_ok(report: dict[str, Any]) -> dict[str, str]:
    return {f["check"]: f["message"] for f in report["findings"] if f["severity"] != "ok"}


def test_coinbase_trades_from_the_recording_pass(tmp_path: Path, recorded: object) -> None:
    """SKL-USD matches: every check ok, and the raw file's trades equal the parsed rows."""
    with ReplayThread([CAPTURES["coinbase"]]) as r:
        cfg = write_config(tmp_path / "config.toml", "coinbase", r)
        with collector(tmp_path, "coinbase", "SKL-USD", "trade", cfg) as c:
            c.wait_for(lambda s: s.get("rows", 0) >= 53)
            assert c.stop() == 0

    reports = _reports(c)

    for rep in reports:
        assert _non_ok(rep) == {}, rep["file"]
    counts = [
        f["details"] for rep in reports for f in rep["findings"] if f["check"] == "raw_vs_parsed"
    ]
    assert sum(d["parsed_rows"] for d in counts) == 53
    assert all(d["raw_records"] == d["parsed_rows"] for d in counts)


def test_binance_book_from_the_recording_passes(tmp_path: Path, recorded: object) -> None:
    """NKNUSDT depth diffs on the REST snapshot: books never crossed, levels in order.

    Paced (the 30 s of diffs in 2 s), so the snapshot, asked for with the first diff, comes
    before most of them even on a loaded machine: diffs buffered before it make one book
    between them. Stopped once every diff is in, before the stream's end falls silent for
    the watchdog (a reconnect would be a gap in the file)."""
    with ReplayThread([CAPTURES["binance"]], speed=15.0) as r:
        cfg = write_config(tmp_path / "config.toml", "binance", r)
        with collector(tmp_path, "binance", "NKNUSDT", "book", cfg) as c:
            c.wait_for(lambda s: binance_done(c, s), timeout=30)
            assert c.stop() == 0

    reports = _reports(c)

    for rep in reports:
        assert _non_ok(rep) == {}, rep["file"]
    book = [f["details"] for rep in reports for f in rep["findings"] if f["check"] == "book"]
    assert sum(d["changes"] for d in book) >= 10
