"""Counters of one collector (:class:`Stats`), and the JSON status file they are written to.

The processor and its handlers update the counters; the app writes them to ``status.json``
every ``status_interval_s`` and logs them as the ``collector.stats`` line.

What every websocket frame was (``frames_by_kind``, the kinds of ``errors.FRAME_KINDS``) costs
a data frame nothing: the other kinds are counted where they happen (off the hot path), and
``parsed`` is what is left of ``frames``. What is new in the stream (an unknown type, an
unexpected or missing field) is counted by key in ``new_kinds`` (bounded like the reasons).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from collector.common.errors import CONTROL, FRAME_KINDS, IGNORED, PARSED, UNEXPECTED_FIELD

# Parse errors are counted per reason; at most this many distinct reasons are kept apart.
MAX_REASONS = 64
# Past MAX_REASONS distinct reasons (or new kinds), new ones count under this key.
OTHER = "other"


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
    # frames of each kind but `parsed` (errors.FRAME_KINDS; see frames_by_kind())
    frame_kinds: dict[str, int] = field(default_factory=dict)
    # receive time of the last frame of each kind but parsed/control/ignored
    kind_last_at: dict[str, float] = field(default_factory=dict)
    # what is new in the stream, by key ("unknown_type:teleport", "unexpected_field:trade.X",
    # "missing_field:match.price"): frames seen, and the receive time of the last one
    new_kinds: dict[str, int] = field(default_factory=dict)
    last_new_kind_at: float | None = None
    disk_full: bool = False  # writes are failing for lack of room (the feed is paused)
    status_failing: bool = False  # the last status write failed (logged once)
    last_trade_id: int | None = None
    today_date: str = ""
    today_gaps: int = 0
    today_reconnects: int = 0
    # rows counted before the current day / UTC hour began (today_rows, hour_rows: what
    # came after; derived, so that the per-row hot path increments one counter, `rows`)
    rows_before_today: int = 0
    rows_before_hour: int = 0
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
        self.rows_before_hour = self.rows
        d = utc_date(now_s)
        if d != self.today_date:
            self.today_date = d
            self.today_gaps = self.today_reconnects = 0
            self.rows_before_today = self.rows

    @property
    def hour_rows(self) -> int:
        """Rows of the current UTC hour (the open file's hour)."""
        return self.rows - self.rows_before_hour

    @property
    def today_rows(self) -> int:
        return self.rows - self.rows_before_today

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

    def add_parse_error(self, reason: str) -> None:
        """A frame (or a record of it) that produced no row, for ``reason``; past
        ``MAX_REASONS`` distinct reasons, new ones count as ``other``."""
        self.parse_errors += 1
        by = self.parse_errors_by_reason
        if reason not in by and len(by) >= MAX_REASONS:
            reason = "other"
        by[reason] = by.get(reason, 0) + 1

    def add_plain(self, records: Sequence[object]) -> None:
        """A frame without a data record: a known control frame, or (no record at all) a
        known type the stream does not record."""
        kind = CONTROL if records else IGNORED
        kinds = self.frame_kinds
        kinds[kind] = kinds.get(kind, 0) + 1

    def add_bad_frame(self, reason: str, ts: float) -> None:
        """A frame that produced no records for ``reason`` (``errors.REASONS``)."""
        kinds = self.frame_kinds
        kinds[reason] = kinds.get(reason, 0) + 1
        self.kind_last_at[reason] = ts

    def add_unexpected(self, ts: float) -> None:
        """A frame parsed although it carries fields the adapter does not know."""
        kinds = self.frame_kinds
        kinds[UNEXPECTED_FIELD] = kinds.get(UNEXPECTED_FIELD, 0) + 1
        self.kind_last_at[UNEXPECTED_FIELD] = ts

    def add_new_kind(self, key: str, ts: float) -> bool:
        """One frame showing what is new in the stream (``key``: a clean, bounded name, see
        ``UnexpectedMessage.new_kind_key``); True the first time the key is seen. Past
        ``MAX_REASONS`` distinct keys, new ones count as ``other``."""
        by = self.new_kinds
        self.last_new_kind_at = ts
        count = by.get(key)
        if count is None and len(by) >= MAX_REASONS:
            key = OTHER
            count = by.get(key)
        by[key] = 1 if count is None else count + 1
        return count is None

    def frames_by_kind(self) -> dict[str, int]:
        """Every frame kind (``errors.FRAME_KINDS``) with its count; they add up to
        ``frames``."""
        kinds = self.frame_kinds
        out = {k: kinds.get(k, 0) for k in FRAME_KINDS}
        out[PARSED] = self.frames - sum(kinds.values())
        return out

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
            "frames_by_kind": self.frames_by_kind(),
            "frame_kind_last_at": dict(self.kind_last_at),
            "new_kinds": dict(self.new_kinds),
            "last_new_kind_at": self.last_new_kind_at,
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
