"""Builders for QA tests: data files laid out and compressed the way the collector writes them
(gzip members of a few thousand lines, level 6, ``.part`` then rename)."""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import orjson

from collector.model import COLUMNS

HOUR_MS = 3_600_000
# 2024-03-01T10:00:00Z
START_MS = 1_709_287_200_000


def stamp(start_ms: int) -> str:
    return datetime.fromtimestamp(start_ms / 1000, UTC).strftime("%Y%m%dT%H%M%SZ")


def parsed_path(
    data_dir: Path, exchange: str, symbol: str, data_type: str, start_ms: int = START_MS
) -> Path:
    day = datetime.fromtimestamp(start_ms / 1000, UTC).strftime("%Y-%m-%d")
    name = f"{stamp(start_ms)}_{exchange}_{symbol}_{data_type}.csv.gz"
    return data_dir / exchange / symbol / data_type / "parsed" / day / name


def raw_path(parsed: Path) -> Path:
    name = parsed.name.removesuffix(".csv.gz") + ".jsonl.gz"
    return parsed.parent.parent.parent / "raw" / parsed.parent.name / name


def write_members(path: Path, lines: Sequence[str], per_member: int = 2000) -> Path:
    """Write ``lines`` (with newlines) as gzip members of ``per_member`` lines, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    with open(part, "wb") as fh:
        for i in range(0, max(len(lines), 1), per_member):
            chunk = "".join(lines[i : i + per_member]).encode()
            fh.write(gzip.compress(chunk, compresslevel=6, mtime=0))
    part.rename(path)
    return path


def header(data_type: str) -> str:
    return ",".join(COLUMNS[data_type]) + "\n"


def trade_rows(
    n: int, *, start_ms: int = START_MS, symbol: str = "BTCUSDT", first_id: int = 1000
) -> list[str]:
    """``n`` good trades spread evenly over the hour starting at ``start_ms``."""
    rows = []
    span = (start_ms // HOUR_MS + 1) * HOUR_MS - start_ms
    for i in range(n):
        t = start_ms + (i * (span - 1000)) // max(n, 1) + 10
        price = f"{60000 + (i % 50) * 0.01:.2f}"
        qty = f"{0.001 + (i % 7) * 0.0005:.4f}"
        maker = "True" if i % 3 else "False"
        rows.append(f"{t + 1},{symbol},{first_id + i},{price},{qty},{t},{maker},{(t + 3) * 1000}\n")
    return rows


def book_rows(
    changes: int, *, depth: int = 5, start_ms: int = START_MS, symbol: str = "BTCUSDT"
) -> list[str]:
    """``changes`` good top-``depth`` books (bids descending, then asks ascending)."""
    rows = []
    step = (HOUR_MS - 2000) // max(changes, 1)
    for c in range(changes):
        t = start_ms + 10 + c * step
        mid = 60000 + (c % 20)
        for lvl in range(1, depth + 1):
            rows.append(f"{t},{symbol},B,{mid - lvl:.2f},{lvl * 0.1:.1f},{lvl},{(t + 2) * 1000}\n")
        for lvl in range(1, depth + 1):
            rows.append(f"{t},{symbol},A,{mid + lvl:.2f},{lvl * 0.1:.1f},{lvl},{(t + 2) * 1000}\n")
    return rows


def write_parsed(path: Path, data_type: str, rows: Sequence[str]) -> Path:
    return write_members(path, [header(data_type), *rows])


def write_raw(path: Path, events: Iterable[dict[str, object]]) -> Path:
    return write_members(path, [orjson.dumps(e).decode() + "\n" for e in events])


def binance_trade_frame(
    symbol: str,
    trade_id: int,
    t_ms: int,
    price: str = "60000.00",
    qty: str = "0.001",
    maker: bool = False,
) -> str:
    """A combined-stream ``<symbol>@trade`` frame (binance-spot-api-docs web-socket-streams.md)."""
    data = {
        "e": "trade",
        "E": t_ms + 1,
        "s": symbol,
        "t": trade_id,
        "p": price,
        "q": qty,
        "T": t_ms,
        "m": maker,
        "M": True,
    }
    return orjson.dumps({"stream": f"{symbol.lower()}@trade", "data": data}).decode()
