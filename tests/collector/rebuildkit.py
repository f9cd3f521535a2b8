"""Helpers of the rebuild tests: run ``python -m collector rebuild`` and compare its files with
the ones a live collector wrote from the same raw files."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

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
