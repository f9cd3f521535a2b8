"""Counters of one collector (:class:`Stats`), and the JSON status file they are written to.

The processor and its handlers update the counters; the app writes them to ``status.json``
every ``status_interval_s`` and logs them as the ``collector.stats`` line.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

# Parse errors are counted per reason; at most this many distinct reasons are kept apart.
MAX_REASONS = 64


def utc_date(ts_s: float) -> str:
    return datetime.fromtimestamp(ts_s, UTC).strftime("%Y-%m-%d")


@dataclass
class Stats:
    """What the status file and the ``collector.stats`` line report."""

    exchange: str
    symbol: str
    data_type: str
    started_at: float = field(default_factory=time.time)
    connected: bool = False
    last_frame_at: float | None = None
    frames: int = 0
    rows: int = 0
    bytes_raw: int = 0
    parse_errors: int = 0
    # per reason ("bad_value:price", "unknown_type", ...): why frames produced no rows
    parse_errors_by_reason: dict[str, int] = field(default_factory=dict)
    gaps: int = 0
    gap_size: int = 0
    reconnects: int = 0
    resyncs: int = 0
    duplicates: int = 0  # trades already written (a reconnect replays the last one)
    stray_ids: int = 0  # trade ids that fitted neither the sequence nor the next trade
    trade_id_resets: int = 0  # the trade ids started a new sequence
    error_frames: int = 0  # exchange error frames after the subscription was confirmed
    disk_full: bool = False  # writes are failing for lack of room (the feed is paused)
    status_failing: bool = False  # the last status write failed (logged once)
    last_trade_id: int | None = None
    today_date: str = ""
    today_gaps: int = 0
    today_reconnects: int = 0
    today_rows: int = 0
    hour_rows: int = 0  # rows of the current UTC hour (the open file's hour)
    # The bounds of the counters' current hour: the per-frame hot path compares them inline
    # and calls roll() only when a frame is outside them.
    hour_start_s: float = 0.0
    hour_end_s: float = 0.0

    def roll(self, now_s: float) -> None:
        """Start the hour's (and the day's) counters afresh when ``now_s`` left the hour."""
        if self.hour_start_s <= now_s < self.hour_end_s:
            return
        self.hour_start_s = now_s - now_s % 3600
        self.hour_end_s = self.hour_start_s + 3600
        self.hour_rows = 0
        d = utc_date(now_s)
        if d != self.today_date:
            self.today_date = d
            self.today_gaps = self.today_reconnects = self.today_rows = 0

    def add_gap(self, size: int, now_s: float) -> None:
        self.roll(now_s)
        self.gaps += 1
        self.today_gaps += 1
        self.gap_size += max(size, 0)

    def add_reconnect(self, now_s: float) -> None:
        self.roll(now_s)
        self.reconnects += 1
        self.today_reconnects += 1

    def add_rows(self, n: int, now_s: float) -> None:
        self.roll(now_s)
        self.rows += n
        self.today_rows += n
        self.hour_rows += n

    def add_parse_error(self, reason: str) -> None:
        """A frame (or a record of it) that produced no row, for ``reason``; past
        ``MAX_REASONS`` distinct reasons, new ones count as ``other``."""
        self.parse_errors += 1
        by = self.parse_errors_by_reason
        if reason not in by and len(by) >= MAX_REASONS:
            reason = "other"
        by[reason] = by.get(reason, 0) + 1

    def as_status(self, now_s: float, files: dict[str, str | None]) -> dict[str, Any]:
        self.roll(now_s)
        return {
            "exchange": self.exchange,
            "symbol": self.symbol,
            "data_type": self.data_type,
            "pid": os.getpid(),
            "started_at": self.started_at,
            "updated_at": now_s,
            "connected": self.connected,
            "last_frame_at": self.last_frame_at,
            "frames": self.frames,
            "rows": self.rows,
            "bytes_raw": self.bytes_raw,
            "parse_errors": self.parse_errors,
            "parse_errors_by_reason": dict(self.parse_errors_by_reason),
            "gaps": self.gaps,
            "gap_size": self.gap_size,
            "reconnects": self.reconnects,
            "resyncs": self.resyncs,
            "duplicates": self.duplicates,
            "stray_ids": self.stray_ids,
            "trade_id_resets": self.trade_id_resets,
            "error_frames": self.error_frames,
            "disk_full": self.disk_full,
            "last_trade_id": self.last_trade_id,
            "hour_rows": self.hour_rows,
            "today": {
                "date": self.today_date,
                "gaps": self.today_gaps,
                "reconnects": self.today_reconnects,
                "rows": self.today_rows,
            },
            "files": files,
        }


def write_status(path: Path, status: dict[str, Any]) -> None:
    """Atomically replace the status file (write a temp file, then rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(orjson.dumps(status, option=orjson.OPT_INDENT_2))
    os.replace(tmp, path)
