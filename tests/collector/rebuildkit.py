"""Helpers of the rebuild tests: run ``python -m collector rebuild`` and compare its files with
the ones a live collector wrote from the same raw files."""

from __future__ import annotations

import gzip
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import orjson

from collector import app
from collector.config import load_config
from collector.files import StreamFiles
from collector.session import Frame
from collector.settings import build_collector_settings
from tests.collector.harness import Collector
from tests.conftest import REPO


def rebuild_cli(*args: object, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """``python -m collector rebuild ARGS`` in a real process."""
    return subprocess.run(
        [sys.executable, "-m", "collector", "rebuild", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def parsed_files(data_dir: Path) -> dict[str, bytes]:
    """Every closed parsed file under ``data_dir``: path relative to it → decompressed bytes."""
    return {
        str(p.relative_to(data_dir)): gzip.decompress(p.read_bytes())
        for p in sorted(data_dir.glob("*/*/*/parsed/*/*.csv.gz"))
    }


def assert_rebuilds_exactly(c: Collector, out: Path, config: Path | None = None) -> str:
    """Rebuild every raw file of the run's stream into ``out``: the same parsed files, the
    same bytes once decompressed. Returns the rebuild's summary line."""
    extra = [] if config is None else ["--config", config]
    done = rebuild_cli("--data_dir", out, *extra, c.stream_dir / "raw")
    assert done.returncode == 0, done.stderr
    live = parsed_files(c.workdir / "data")
    assert live, "the live run wrote no parsed file"
    rebuilt = parsed_files(out)
    assert sorted(rebuilt) == sorted(live)
    for name, data in live.items():
        assert rebuilt[name] == data, name
    return done.stdout


def live_trades(
    data_dir: Path,
    trades: Sequence[tuple[float, Mapping[str, object]]],
    *,
    symbol: str = "BTCUSDT",
    config_extra: str = "",
) -> Path:
    """What the live app writes for Binance trade frames received at the given times: its own
    files and pipeline (files.StreamFiles, app.build_pipeline) driven as its upkeep drives
    them (tick, then write, every 0.1 s of receive time), no socket. Returns the stream dir."""
    cfg = data_dir.parent / f"{data_dir.name}.toml"
    cfg.write_text(f'data_dir = "{data_dir}"\n[collector]\n{config_extra}\n')
    settings = build_collector_settings(
        load_config(cfg), exchange="binance", symbol=symbol, data_type="trade"
    )
    files = StreamFiles(settings)
    p = app.build_pipeline(settings, files)
    first = trades[0][0] if trades else time.time()
    p.processor.handle(Frame("connect", "c1", first - 0.5, addr="ws://127.0.0.1:9/stream"))
    flush_at = first
    for ts, trade in trades:
        while flush_at < ts:
            p.processor.tick(flush_at)
            files.write(files.raw.take(), files.parsed.take(), flush_at)
            flush_at += 0.1
        p.processor.handle(Frame("recv", "c1", ts, data=orjson.dumps(trade).decode()))
    p.processor.tick(flush_at, final=True)
    files.write(files.raw.take(), files.parsed.take(), flush_at)
    files.close()
    return files.dir
