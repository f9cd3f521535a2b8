"""Security-master benchmark (issue "Security master").

The goals apply to the sync itself (in-process, lock + HTTP + parse + diff + commit).

Full sync of the recorded Binance exchangeInfo (1695 symbols) plus Coinbase /products (162)
served by the replay server, into an empty SQLite file, then a no-change re-sync. Goals:
first ≤ 2 s, re-sync ≤ 0.5 s with 0 rows written. Side by side in the same run: the floor of
a re-sync (HTTP GET + parse only, no database), and the same two syncs as real
``python -m secmaster sync`` processes (interpreter start included).
"""

from __future__ import annotations

import gzip
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from collector.common.logs import configure_logging
from collector.config import load_config
from collector.exchanges import binance, coinbase
from ops.replay import ReplayThread
from secmaster.poller import sync
from secmaster.settings import build_secmaster_settings
from tests.secmaster.listingkit import parse_listings

RECORDED = Path(__file__).resolve().parents[3] / "shared" / "data" / "recorded"
CAPTURES = [
    RECORDED / "binance-spot-2021-10-11.jsonl.gz",
    RECORDED / "coinbase-exchange-2021-04-17.jsonl.gz",
]
REPO = Path(__file__).resolve().parents[2]
GOAL_FIRST_S = 2.0
GOAL_RESYNC_S = 0.5
REPEATS = 5


def _config(tmp: Path, url: str) -> Path:
    path = tmp / "config.toml"
    path.write_text(
        f'data_dir = "{tmp / "data"}"\n[secmaster]\n'
        'exchanges = ["binance", "coinbase"]\n'
        "min_listings = { binance = 100, coinbase = 50 }\n"
        f'[exchanges.binance]\nrest_url = "{url}/binance"\n'
        f'[exchanges.coinbase]\nrest_url = "{url}/coinbase"\n',
        encoding="utf-8",
    )
    return path


def _dump(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT * FROM instrument ORDER BY id").fetchall()


def _rows_written(before: list[tuple[Any, ...]], after: list[tuple[Any, ...]]) -> int:
    """Rows inserted plus rows whose content changed, read from the database itself."""
    old = {r[0]: r for r in before}
    return sum(1 for r in after if old.get(r[0]) != r)


def _in_process(url: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-secmaster-") as d:
        tmp = Path(d)
        settings = build_secmaster_settings(load_config(_config(tmp, url)))
        db = tmp / "data" / "secmaster.sqlite"
        t0 = time.perf_counter()
        sync(settings, ["binance", "coinbase"], "bench")
        first_s = time.perf_counter() - t0
        after_first = _dump(db)
        resync: list[float] = []
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            sync(settings, ["binance", "coinbase"], "bench")
            resync.append(time.perf_counter() - t0)
        after = _dump(db)
        return {
            "first_s": first_s,
            "first_rows": float(len(after_first)),
            "resync_s": statistics.median(resync),
            "resync_max_s": max(resync),
            "resync_rows": float(_rows_written(after_first, after)),
        }


def _floor(url: str) -> float:
    """GET + parse of both bodies: what any re-sync must spend before touching the database."""
    times = []
    with httpx.Client() as client:
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            parse_listings(binance, client.get(f"{url}/binance/api/v3/exchangeInfo").content)
            parse_listings(coinbase, client.get(f"{url}/coinbase/products").content)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _subprocess(url: str) -> tuple[float, float, int, float]:
    """First sync and median no-change re-sync as real processes, plus the import floor."""
    with tempfile.TemporaryDirectory(prefix="bench-secmaster-") as d:
        tmp = Path(d)
        cfg = _config(tmp, url)
        argv = [
            sys.executable,
            "-m",
            "secmaster",
            "--config",
            str(cfg),
            "--log-level",
            "warning",
            "sync",
        ]
        t0 = time.perf_counter()
        subprocess.run(argv, cwd=REPO, check=True, capture_output=True)
        first_s = time.perf_counter() - t0
        before = _dump(tmp / "data" / "secmaster.sqlite")
        resync = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run(argv, cwd=REPO, check=True, capture_output=True)
            resync.append(time.perf_counter() - t0)
        written = _rows_written(before, _dump(tmp / "data" / "secmaster.sqlite"))
        imports = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import secmaster.cli"], cwd=REPO, check=True)
            imports.append(time.perf_counter() - t0)
        return first_s, statistics.median(resync), written, statistics.median(imports)


def main() -> None:
    configure_logging("warning")
    sizes = []
    for path in CAPTURES:
        with gzip.open(path, "rt") as f:
            for line in f:
                e = json.loads(line)
                if e["t"] == "http" and ("exchangeInfo" in e["url"] or "products" in e["url"]):
                    sizes.append(len(e["data"]))
    print(
        f"bodies: exchangeInfo {sizes[0] / 1e6:.2f} MB (1695 symbols), "
        f"/products {sizes[1] / 1e3:.0f} kB (162 products), over HTTP from the replay server"
    )
    with ReplayThread(CAPTURES) as replay:
        r = _in_process(replay.http_url)
        floor = _floor(replay.http_url)
        p_first, p_resync, p_written, p_import = _subprocess(replay.http_url)
    print(f"{'':34}{'measured':>10}{'goal':>8}{'goal/measured':>15}")
    print(
        f"{'first sync (empty db), in-process':34}{r['first_s']:>9.3f}s{GOAL_FIRST_S:>7.1f}s"
        f"{GOAL_FIRST_S / r['first_s']:>14.1f}x   rows written {int(r['first_rows'])}"
    )
    print(
        f"{'no-change re-sync (median of 5)':34}{r['resync_s']:>9.3f}s{GOAL_RESYNC_S:>7.1f}s"
        f"{GOAL_RESYNC_S / r['resync_s']:>14.1f}x   rows written {int(r['resync_rows'])}"
        f" (max {r['resync_max_s']:.3f} s)"
    )
    print(
        f"{'floor: GET + parse only':34}{floor:>9.3f}s{'':>8}"
        f"{'':>15}   re-sync / floor = {r['resync_s'] / floor:.2f}"
    )
    print(
        f"{'first sync, `python -m secmaster`':34}{p_first:>9.3f}s{'':>23}"
        "   (interpreter start and imports included)"
    )
    print(
        f"{'re-sync, `python -m secmaster`':34}{p_resync:>9.3f}s{'':>23}"
        f"   rows written {p_written} (median of 3)"
    )
    print(
        f"{'floor: start + import secmaster.cli':34}{p_import:>9.3f}s{'':>23}"
        f"   process re-sync - floor = {p_resync - p_import:.3f} s"
    )
    ok = (
        r["first_s"] <= GOAL_FIRST_S
        and r["resync_s"] <= GOAL_RESYNC_S
        and r["resync_rows"] == 0
        and p_written == 0
    )
    print(f"goals (in-process, 0 rows on re-sync): {'met' if ok else 'NOT met'}")
