"""Host copies for the dataset tests, written as a collector and QA would deliver them.

A "truth" of trades or book states is cut into host copies with holes; each copy is a
parsed CSV (gzip), its raw twin (with the collector's markers) and a QA report with the
verdict the test chooses, in the standard layout (collector.common.layout names them).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from collector.common import layout
from collector.model import COLUMNS, Trade

HOUR_MS = layout.HOUR_MS
H0 = 1_709_287_200_000  # 2024-03-01T10:00:00Z
DAY = "2024-03-01"


def truth_trades(symbol: str, hour_ms: int, first_id: int, n: int) -> list[Trade]:
    """``n`` trades with contiguous ids spread over the hour (event time = trade time, as
    REST gives it)."""
    step = HOUR_MS // n
    return [
        Trade(
            hour_ms + i * step,
            symbol,
            first_id + i,
            f"{100 + (i % 97) / 100:.2f}",
            f"0.{i % 9 + 1}",
            hour_ms + i * step,
            i % 3 == 0,
        )
        for i in range(n)
    ]


def stream_dir(data_dir: Path, exchange: str, symbol: str, data_type: str) -> Path:
    return layout.stream_dir(data_dir, exchange, symbol, data_type)


@dataclass
class Delivered:
    parsed: Path
    raw: Path
    report: Path | None


def write_copy(
    data_dir: Path,
    exchange: str,
    symbol: str,
    data_type: str,
    start_ms: int,
    lines: Iterable[str],
    *,
    verdict: str | None = "ok",
    raw_events: Iterable[dict[str, object]] = (),
) -> Delivered:
    """One parsed file (+ raw twin, + QA report unless ``verdict`` is None)."""
    d = stream_dir(data_dir, exchange, symbol, data_type)
    name = layout.stream_name(exchange, symbol, data_type)
    parsed = layout.file_path(d / layout.PARSED, start_ms / 1000, name, layout.PARSED_SUFFIX)
    parsed.parent.mkdir(parents=True, exist_ok=True)
    body = ",".join(COLUMNS[data_type]) + "\n" + "".join(line + "\n" for line in lines)
    parsed.write_bytes(gzip.compress(body.encode(), mtime=0))
    raw = layout.raw_twin(parsed)
    raw.parent.mkdir(parents=True, exist_ok=True)
    events = [{"t": "connect", "conn": "c1", "ts": start_ms / 1000, "addr": "ws://x"}]
    events += list(raw_events)
    raw.write_bytes(gzip.compress("".join(json.dumps(e) + "\n" for e in events).encode(), mtime=0))
    report = None
    if verdict is not None:
        report = layout.report_path(parsed)
        report.write_text(json.dumps({"status": verdict, "file": parsed.name}))
    return Delivered(parsed, raw, report)


def trade_line(t: Trade, local_us: int) -> str:
    return (
        f"{t.event_time_ms},{t.symbol},{t.trade_id},{t.price},{t.quantity},{t.trade_time_ms},"
        f"{t.is_buyer_maker},{local_us}"
    )


def write_trades(
    data_dir: Path,
    exchange: str,
    symbol: str,
    hour_ms: int,
    trades: Iterable[Trade],
    *,
    latency_us: int = 5_000,
    verdict: str | None = "ok",
    extra_lines: Iterable[str] = (),
) -> Delivered:
    lines = [trade_line(t, t.trade_time_ms * 1000 + latency_us) for t in trades]
    return write_copy(
        data_dir,
        exchange,
        symbol,
        "trade",
        hour_ms,
        [*lines, *extra_lines],
        verdict=verdict,
    )


def book_lines(symbol: str, local_us: int, ts_ms: int, mid: int, depth: int = 2) -> list[str]:
    """One complete top-N state around ``mid``."""
    out = [
        f"{ts_ms},{symbol},B,{mid - lvl}.0,1.{lvl},{lvl},{local_us}" for lvl in range(1, depth + 1)
    ]
    out += [
        f"{ts_ms},{symbol},A,{mid + lvl}.0,2.{lvl},{lvl},{local_us}" for lvl in range(1, depth + 1)
    ]
    return out
