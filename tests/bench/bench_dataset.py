"""Benchmark of the dataset merge: three host copies of a 1,000,000-trade hour → Parquet.

Side by side in one run, on the same three files (gzip members of 3,000 lines, as the
collector writes them; each copy misses a different 2% of the ids, so the union is whole
and no REST request is made):

- floor: polars ``read_csv`` of the three copies and one ``write_parquet`` (zstd) of their
  concatenation: reading and writing, nothing else;
- merge: ``ops.dataset`` building that hour from the three local copies (validation of
  every value, union by id, disagreement check, completeness, Parquet + records);
- peak RSS of a fresh process that builds the hour once.

Goal: merge <= 2x floor.
"""

from __future__ import annotations

import gzip
import io
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from collector.common import layout

ROWS = 1_000_000
PER_MEMBER = 3_000
START_MS = 1_709_287_200_000  # 2024-03-01T10:00:00Z
HEADER = "event_time,symbol,trade_id,price,quantity,trade_time,is_buyer_maker,local_time\n"
ROOT = Path(__file__).resolve().parents[2]
HOSTS = ("eu", "us", "ap")


def generate(root: Path) -> list[Path]:
    """Three copies of one BTCUSDT hour; copy k misses the ids with (i // 1000) % 50 == k."""
    rng = random.Random(7)
    rows = []
    price = 62000.0
    for i in range(ROWS):
        t = START_MS + (i * 3_599_000) // ROWS
        price = max(1.0, price + rng.choice((-0.01, 0.0, 0.01)) * rng.randint(0, 50))
        qty = 0.00001 * rng.randint(1, 100_000)
        maker = "True" if rng.random() < 0.5 else "False"
        rows.append((t, 3_500_000_000 + i, f"{price:.2f}", f"{qty:.5f}", maker))
    paths = []
    for k, host in enumerate(HOSTS):
        d = layout.stream_dir(root / host, "binance", "BTCUSDT", "trade") / layout.PARSED
        name = layout.stream_name("binance", "BTCUSDT", "trade")
        path = layout.file_path(d, START_MS / 1000, name, layout.PARSED_SUFFIX)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            lines = [HEADER]
            for i, (t, tid, p, q, m) in enumerate(rows):
                if (i // 1000) % 50 == k:
                    continue
                lines.append(f"{t},BTCUSDT,{tid},{p},{q},{t},{m},{t * 1000 + 5000 + k}\n")
                if len(lines) >= PER_MEMBER:
                    fh.write(gzip.compress("".join(lines).encode(), compresslevel=6, mtime=0))
                    lines = []
            fh.write(gzip.compress("".join(lines).encode(), compresslevel=6, mtime=0))
        layout.report_path(path).write_text('{"status": "ok"}')
        paths.append(path)
    return paths


def floor(paths: list[Path], out: Path) -> float:
    t0 = time.perf_counter()
    frames = [pl.read_csv(p) for p in paths]
    buf = io.BytesIO()
    pl.concat(frames).write_parquet(buf, compression="zstd", compression_level=3)
    out.write_bytes(buf.getvalue())
    return time.perf_counter() - t0


_BUILD = """
import resource, sys, time
from pathlib import Path
from collector.common.logs import configure_logging
from collector.config import load_config
from ops.dataset.__main__ import execute
from ops.dataset.settings import build_dataset_settings
from ops.dataset.store import LocalStore
configure_logging("warning")
root = Path(sys.argv[1])
settings = build_dataset_settings(load_config(root / "config.toml"))
sources = {h: LocalStore(root / h) for h in ("eu", "us", "ap")}
t0 = time.perf_counter()
sm = execute(settings, sources, LocalStore(root / sys.argv[2]), [int(sys.argv[3])],
             only_ready=False, now_s=time.time())
print(time.perf_counter() - t0, sm.rows, sm.rest_requests,
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def merge(root: Path, out: str) -> tuple[float, int, int, int]:
    proc = subprocess.run(
        [sys.executable, "-c", _BUILD, str(root), out, str(START_MS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    secs, rows, rest, rss = proc.stdout.strip().splitlines()[-1].split()
    return float(secs), int(rows), int(rest), int(rss)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-dataset-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        paths = generate(root)
        sizes = sum(p.stat().st_size for p in paths)
        print(f"generated 3 copies ({sizes / 1e6:.1f} MB gzip) in {time.perf_counter() - t0:.1f} s")
        (root / "config.toml").write_text(
            f'data_dir = "{root / "state"}"\n[dataset]\nbackfill = false\n'
        )
        floor_s = min(floor(paths, root / f"floor{i}.parquet") for i in range(3))
        runs = [merge(root, f"out{i}") for i in range(3)]
        merge_s = min(r[0] for r in runs)
        _, rows, rest, rss_kb = runs[0]
        assert rows == ROWS, rows
        assert rest == 0
        a = root / "out0/trade/exchange=binance/symbol=BTCUSDT/date=2024-03-01/10.parquet"
        b = root / "out1/trade/exchange=binance/symbol=BTCUSDT/date=2024-03-01/10.parquet"
        assert a.read_bytes() == b.read_bytes(), "two builds differ"
        ratio = merge_s / floor_s
        print(f"floor (polars read 3 CSV copies + write 1 Parquet): {floor_s:.3f} s")
        print(f"merge (ops.dataset, {rows} rows from 3 copies):    {merge_s:.3f} s")
        print(f"ratio merge/floor: {ratio:.2f}x (goal <= 2x) {'OK' if ratio <= 2 else 'OVER'}")
        print(f"peak RSS of the build process: {rss_kb / 1024:.0f} MB")


if __name__ == "__main__":
    main()
