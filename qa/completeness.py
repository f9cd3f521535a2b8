"""``python -m qa completeness``: the ledger's records added up per stream and UTC hour.

Reads the completeness records QA wrote (``qa/ledger.py``) under the data directory (never
through a symlink) and gives, per stream and closed hour: the files, the connected seconds,
gaps, trade ids written versus expected, the book's seconds out of sync and the frames worth
a look, and whether the hour is complete. An hour of a stream that has records around it but
none itself is listed as missing (no file: the collector wrote nothing that hour).

An hour is *complete* when its files cover it from its start to its end (within ``[qa]
hour_tolerance_s``), connected and (books) in sync the whole time, with no gap, no missing
trade id and no bad frame. ``pct`` says how much of it is: the least of the connected share,
the in-sync share (books) and the share of expected trade ids written.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from collector.common import layout
from qa.ledger import read_record

HOUR_S = 3600.0


@dataclass
class HourRow:
    """One stream's UTC hour, from its records."""

    exchange: str
    symbol: str
    data_type: str
    hour: str  # 2026-12-01T10:00:00Z
    hour_start_s: float
    files: int = 0
    connected_s: float | None = None
    gaps: int = 0
    gap_size: int = 0
    ids_expected: int | None = None
    ids_written: int | None = None
    ids_missing: int | None = None
    out_of_sync_s: float | None = None
    bad_frames: int = 0
    errors: list[str] = field(default_factory=list)
    complete: bool = False
    pct: float = 0.0
    open: bool = False  # the hour is not over: it cannot be complete yet

    @property
    def stream(self) -> str:
        return f"{self.exchange} {self.symbol} {self.data_type}"


def _entries(path: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as it:
            return sorted(
                (e for e in it if not e.name.startswith(".") and not e.is_symlink()),
                key=lambda e: e.name,
            )
    except OSError:
        return []


def iter_records(data_dir: Path, days: Iterable[str] | None = None) -> Iterator[dict[str, Any]]:
    """Every completeness record under ``data_dir`` (of the given day directories only)."""
    wanted = None if days is None else set(days)
    for ex in _entries(str(data_dir)):
        for sym in _entries(ex.path) if ex.is_dir(follow_symlinks=False) else []:
            for dt in _entries(sym.path) if sym.is_dir(follow_symlinks=False) else []:
                for day in _entries(os.path.join(dt.path, layout.LEDGER)):
                    if wanted is not None and day.name not in wanted:
                        continue
                    for f in _entries(day.path):
                        if f.name.endswith(layout.COMPLETENESS_SUFFIX):
                            record = read_record(Path(f.path))
                            if record is not None:
                                yield record


def _hour_start(record: dict[str, Any]) -> float | None:
    start = record.get("start_s")
    if not isinstance(start, int | float) or isinstance(start, bool):
        return None
    return float(start) // HOUR_S * HOUR_S


def _iso(hour_start_s: float) -> str:
    return datetime.fromtimestamp(hour_start_s, UTC).strftime("%Y-%m-%dT%H:00:00Z")


def _num(record: dict[str, Any], key: str) -> float | None:
    v = record.get(key)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _add(row: HourRow, record: dict[str, Any]) -> None:
    row.files += 1
    if record.get("error"):
        row.errors.append(str(record["error"])[:100])
        return
    connected = _num(record, "connected_s")
    if connected is not None:
        row.connected_s = (row.connected_s or 0.0) + connected
    row.gaps += int(_num(record, "gap_count") or 0)
    row.gap_size += int(_num(record, "gap_size") or 0)
    ids = record.get("trade_ids")
    if isinstance(ids, dict):
        written, expected = ids.get("written"), ids.get("expected")
        if type(written) is int:
            row.ids_written = (row.ids_written or 0) + written
        if type(expected) is int:
            row.ids_expected = (row.ids_expected or 0) + expected
            row.ids_missing = (row.ids_missing or 0) + max(0, int(ids.get("missing") or 0))
    out = _num(record, "out_of_sync_s")
    if out is not None:
        row.out_of_sync_s = (row.out_of_sync_s or 0.0) + out
    bad = record.get("bad_frames")
    if isinstance(bad, dict):
        row.bad_frames += sum(v for v in bad.values() if type(v) is int)


def _judge(row: HourRow, spans: list[tuple[float, float]], tol: float) -> None:
    """complete and pct of an hour from its rows' sums and its files' spans."""
    start, end = row.hour_start_s, row.hour_start_s + HOUR_S
    covered = bool(spans) and min(a for a, _ in spans) - start <= tol
    covered = covered and end - max(b for _, b in spans) <= tol
    uncovered = HOUR_S - sum(max(0.0, min(b, end) - max(a, start)) for a, b in spans)
    shares = [min(1.0, (row.connected_s or 0.0) / HOUR_S)]
    if row.out_of_sync_s is not None:
        shares.append(max(0.0, 1.0 - (row.out_of_sync_s + max(0.0, uncovered)) / HOUR_S))
    if row.ids_expected:
        shares.append(min(1.0, (row.ids_written or 0) / row.ids_expected))
    row.pct = round(100.0 * min(shares), 2) if row.files else 0.0
    row.complete = bool(
        row.files
        and not row.errors
        and covered
        and row.connected_s is not None
        and row.connected_s >= HOUR_S - tol
        and row.gaps == 0
        and not row.ids_missing
        and (row.out_of_sync_s is None or row.out_of_sync_s + max(0.0, uncovered) <= tol)
        and row.bad_frames == 0
    )
    if not row.complete:
        row.pct = min(row.pct, 99.99)


def hours(
    records: Iterable[dict[str, Any]],
    *,
    from_s: float,
    to_s: float,
    now_s: float | None = None,
    tolerance_s: float = 5.0,
) -> list[HourRow]:
    """The hours in ``[from_s, to_s)`` of every stream with a record in it, sorted by stream
    and hour; a closed hour (before ``now_s``'s) of such a stream after its first record
    without a record is a row with ``files`` 0; the hour of ``now_s`` is ``open`` (never
    complete)."""
    closed = (to_s if now_s is None else now_s) // HOUR_S * HOUR_S
    rows: dict[tuple[str, str, str, float], HourRow] = {}
    spans: dict[tuple[str, str, str, float], list[tuple[float, float]]] = {}
    streams: set[tuple[str, str, str]] = set()
    for rec in records:
        h = _hour_start(rec)
        if h is None or not from_s <= h < to_s:
            continue
        stream = (str(rec.get("exchange")), str(rec.get("symbol")), str(rec.get("data_type")))
        streams.add(stream)
        key = (*stream, h)
        row = rows.get(key)
        if row is None:
            row = rows[key] = HourRow(*stream, hour=_iso(h), hour_start_s=h)
        _add(row, rec)
        a, b = _num(rec, "start_s"), _num(rec, "end_s")
        if a is not None and b is not None:
            spans.setdefault(key, []).append((a, b))
    firsts: dict[tuple[str, str, str], float] = {}
    for ex, sym, dt, h in rows:
        firsts[(ex, sym, dt)] = min(h, firsts.get((ex, sym, dt), h))
    for stream in streams:
        h = firsts[stream]  # (before its first record a stream may not have been collected)
        while h < min(to_s, closed):
            if (*stream, h) not in rows:
                rows[(*stream, h)] = HourRow(*stream, hour=_iso(h), hour_start_s=h)
            h += HOUR_S
    for key, row in rows.items():
        _judge(row, spans.get(key, []), tolerance_s)
        if row.hour_start_s >= closed:
            row.open, row.complete = True, False
            row.pct = min(row.pct, 99.99)
    return [rows[k] for k in sorted(rows)]


def days_between(from_s: float, to_s: float) -> list[str]:
    """The UTC day directories that hold the files of ``[from_s, to_s)``."""
    day = datetime.fromtimestamp(from_s, UTC).date()
    last = datetime.fromtimestamp(max(from_s, to_s - 1), UTC).date()
    out = []
    while day <= last:
        out.append(day.isoformat())
        day += timedelta(days=1)
    return out


def as_json(rows: list[HourRow]) -> list[dict[str, Any]]:
    return [{**asdict(r), "stream": r.stream} for r in rows]


# --- rendering -----------------------------------------------------------------------------


def _pct_of(value: float | None, whole: float) -> str:
    return "-" if value is None else f"{100.0 * value / whole:.1f}%"


def render_table(rows: list[HourRow]) -> str:
    """One line per stream and hour."""
    header = ["STREAM", "HOUR", "FILES", "CONNECTED", "GAPS", "TRADE IDS", "OUT OF SYNC"]
    header += ["BAD FRAMES", "COMPLETE"]
    lines = []
    for r in rows:
        ids = "-"
        if r.ids_expected is not None:
            ids = f"{r.ids_written or 0}/{r.ids_expected}"
        elif r.ids_written is not None:
            ids = str(r.ids_written)
        lines.append(
            [
                r.stream,
                r.hour[:13] + "h",
                str(r.files),
                _pct_of(r.connected_s, HOUR_S),
                f"{r.gaps} ({r.gap_size})" if r.gaps else "0",
                ids,
                "-" if r.out_of_sync_s is None else f"{r.out_of_sync_s:.1f}s",
                str(r.bad_frames),
                "yes" if r.complete else f"{'open' if r.open else 'NO'} ({r.pct:.2f}%)",
            ]
        )
    if not lines:
        return "no completeness records in that time (has QA run?)\n"
    widths = [max([len(h)] + [len(x[i]) for x in lines]) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    out += ["  ".join(c.ljust(w) for c, w in zip(x, widths, strict=True)).rstrip() for x in lines]
    bad = sum(1 for r in rows if not r.complete and not r.open)
    out.append("")
    out.append(f"{len(rows)} stream hours, {bad} incomplete")
    return "\n".join(out) + "\n"


def why_incomplete(r: HourRow) -> str:
    """What keeps an hour from being complete, in a few words."""
    if not r.files:
        return "no file (nothing was collected)"
    parts = []
    if r.errors:
        parts.append(f"{len(r.errors)} records could not be made ({r.errors[0]})")
    if r.connected_s is None:
        parts.append("no raw file")
    elif r.connected_s < HOUR_S:
        parts.append(f"connected {r.connected_s:.0f} of 3600 s")
    if r.gaps:
        parts.append(f"{r.gaps} gaps ({r.gap_size} ids or updates)")
    if r.ids_missing:
        parts.append(f"{r.ids_missing} of {r.ids_expected} trade ids missing")
    if r.out_of_sync_s:
        parts.append(f"out of sync {r.out_of_sync_s:.1f} s")
    if r.bad_frames:
        parts.append(f"{r.bad_frames} bad frames")
    return ", ".join(parts) or "not covered from the start to the end of the hour"


def render_day(day: str, rows: list[HourRow], now_s: float) -> str:
    """A grid: one line per stream, one column per UTC hour of ``day`` (``.`` complete, a
    number = the percent that is, ``-`` no file, ``~`` not over yet, blank: nothing known,
    before the stream's first record or later than now), then why each incomplete hour is."""
    start = datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp()
    by_stream: dict[str, dict[float, HourRow]] = {}
    for r in rows:
        by_stream.setdefault(r.stream, {})[r.hour_start_s] = r
    if not by_stream:
        return f"no completeness records on {day} (has QA run?)\n"
    width = max(len(s) for s in by_stream)
    head = " " * width + " " + "".join(f"{h:>3}" for h in range(24))
    legend = ". complete, N = N% complete, - no file, ~ not over"
    out = [f"completeness on {day} (UTC hours; {legend})", head]
    incomplete = []
    for stream in sorted(by_stream):
        cells = []
        for h in range(24):
            hs = start + h * HOUR_S
            got = by_stream[stream].get(hs)
            if hs + HOUR_S > now_s:
                cells.append("  ~" if got is not None and got.files else "   ")
            elif got is None:
                cells.append("   ")  # before the stream's first record: nothing known
            elif not got.files:
                cells.append("  -")
                incomplete.append(f"  {stream} {h:02d}h: no file (nothing was collected)")
            elif got.complete:
                cells.append("  .")
            else:
                cells.append(f"{int(got.pct):>3}")
                incomplete.append(
                    f"  {stream} {h:02d}h: {got.pct:.2f}% complete: {why_incomplete(got)}"
                )
        out.append(stream.ljust(width) + " " + "".join(cells))
    out.append("")
    if incomplete:
        out.append(f"incomplete ({len(incomplete)}):")
        out += incomplete
    else:
        out.append("every closed hour complete")
    return "\n".join(out) + "\n"
