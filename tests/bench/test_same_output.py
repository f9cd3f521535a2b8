"""tests/bench/bench_collector.py's same-output floor compresses the very lines the pipeline
writes (its raw envelopes and CSV rows), and the check says so or fails."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import pytest

from tests.bench.bench_collector import (
    bench_pipeline,
    bench_same_output_floor,
    check_same_output,
    same_output,
    trade_frames,
)


def test_the_floor_writes_what_the_pipeline_wrote(tmp_path: Path) -> None:
    frames = trade_frames(300, start_id=7)
    now = time.time()
    bench_pipeline(frames, tmp_path / "d", now)
    envelopes, rows = same_output(frames, now)

    check_same_output(tmp_path / "d", envelopes, rows)  # raises on any difference

    assert len(envelopes) == len(rows) == 300
    assert rows[0].startswith("1700000000000,BTCUSDT,7,60000.00,0.00010000,1700000000000,True,")
    bench_same_output_floor(frames, envelopes, rows, tmp_path / "s.gz")
    # one flush (300 < FLUSH_EVERY): a raw member, then a rows member
    written = gzip.decompress((tmp_path / "s.gz").read_bytes()).decode()
    assert written == "".join(envelopes) + "".join(rows)


def test_a_floor_of_other_rows_is_refused(tmp_path: Path) -> None:
    frames = trade_frames(50)
    now = time.time()
    bench_pipeline(frames, tmp_path / "d", now)
    envelopes, rows = same_output(frames, now)
    constant = [
        f"1700000000000,BTCUSDT,{i},60000.00,0.10000000,1700000000000,True,1\n" for i in range(50)
    ]

    with pytest.raises(AssertionError, match=r"rows 50 \(equal: False\)"):
        check_same_output(tmp_path / "d", envelopes, constant)
    with pytest.raises(AssertionError, match=r"raw 50 lines \(equal: False\)"):
        check_same_output(tmp_path / "d", same_output(frames, now + 1)[0], rows)
