"""The raw file of the same hour: the collector's markers (gaps, disconnects, resyncs) and, for
trades, the records its frames parse into against the parsed file's rows."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from qa.checks.context import Context
from qa.checks.findings import FAIL, OK, WARN, Finding


@dataclass
class RawSummary:
    """What the raw file of the same hour says."""

    lines: int = 0
    frames: int = 0
    records: int = 0  # trades of the file's symbol, when the adapter could count them
    parse_errors: int = 0
    gaps: dict[str, dict[str, int]] = field(default_factory=dict)
    disconnects: int = 0
    connects: int = 0
    resyncs: int = 0
    downtime_s: float = 0.0
    bad_lines: int = 0
    first_ts: float | None = None
    last_ts: float | None = None


Parse = Callable[[str | bytes, int], Sequence[object]]


def summarize_raw(
    lines: Iterable[bytes], *, symbol: str, parse: Parse | None, record_type: type | None
) -> RawSummary:
    """Count markers (gap, disconnect, resync) and, with ``parse``, the records in frames.

    Args:
        lines: the raw file's JSONL lines.
        symbol: only records of this symbol count (a connection may carry others).
        parse: the exchange adapter's ``parse(raw, ts_recv_us)``, or None to skip counting.
        record_type: the record class to count (``Trade``).
    """
    r = RawSummary()
    down_since: float | None = None
    for line in lines:
        if not line.strip():
            continue
        r.lines += 1
        try:
            ev = orjson.loads(line)
            t = ev["t"]
            ts = float(ev.get("ts", 0.0))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            r.bad_lines += 1
            continue
        if r.first_ts is None:
            r.first_ts = ts
        r.last_ts = ts
        if t == "recv":
            r.frames += 1
            if parse is not None and record_type is not None:
                try:
                    recs = parse(ev["data"], int(ts * 1_000_000))
                except Exception:  # a frame the adapter refuses is counted, never fatal
                    r.parse_errors += 1
                    continue
                r.records += sum(
                    1
                    for x in recs
                    if isinstance(x, record_type) and getattr(x, "symbol", symbol) == symbol
                )
        elif t == "gap":
            kind = str(ev.get("kind", "unknown"))
            g = r.gaps.setdefault(kind, {"count": 0, "size": 0})
            g["count"] += 1
            size = ev.get("size")
            if isinstance(size, int) and not isinstance(size, bool):
                g["size"] += size
        elif t == "disconnect":
            r.disconnects += 1
            if down_since is None:
                down_since = ts
        elif t == "connect":
            r.connects += 1
            if down_since is not None:
                r.downtime_s += max(0.0, ts - down_since)
                down_since = None
        elif t == "resync":
            r.resyncs += 1
    if down_since is not None and r.last_ts is not None:
        r.downtime_s += max(0.0, r.last_ts - down_since)
    return r


def check_raw(
    raw: RawSummary | None, parsed_rows: int | None, ctx: Context, *, counted: bool
) -> list[Finding]:
    """Completeness from the collector's markers, and raw vs parsed trade counts."""
    th = ctx.thresholds
    info = ctx.info
    if raw is None:
        return [Finding("collector_gaps", OK, "no raw file of the same hour", {})]
    span_s = (info.hour_end_ms - info.start_ms) / 1000
    complete = round(100.0 * max(0.0, 1.0 - raw.downtime_s / span_s), 3)
    details: dict[str, Any] = {
        "gaps": raw.gaps,
        "disconnects": raw.disconnects,
        "resyncs": raw.resyncs,
        "downtime_s": round(raw.downtime_s, 3),
        "time_complete_pct": complete,
        "raw_lines": raw.lines,
        "raw_bad_lines": raw.bad_lines,
    }
    n_gaps = sum(g["count"] for g in raw.gaps.values())
    sev = OK
    if raw.downtime_s > th.downtime_fail_s:
        sev = FAIL
    elif raw.downtime_s > th.downtime_warn_s or n_gaps or raw.resyncs or raw.bad_lines:
        sev = WARN
    parts = []
    if n_gaps:
        parts.append(
            "gaps " + ", ".join(f"{k} {v['count']} (size {v['size']})" for k, v in raw.gaps.items())
        )
    if raw.disconnects:
        parts.append(f"{raw.disconnects} disconnects, down {raw.downtime_s:.1f} s")
    if raw.resyncs:
        parts.append(f"{raw.resyncs} resyncs")
    if raw.bad_lines:
        parts.append(f"{raw.bad_lines} unreadable raw lines")
    msg = f"{complete}% of the time covered" + (": " + "; ".join(parts) if parts else "")
    out = [Finding("collector_gaps", sev, msg, details)]
    if counted and parsed_rows is not None:
        d = {
            "raw_records": raw.records,
            "parsed_rows": parsed_rows,
            "raw_frames": raw.frames,
            "raw_parse_errors": raw.parse_errors,
        }
        if raw.records == parsed_rows:
            out.append(Finding("raw_vs_parsed", OK, f"{parsed_rows} rows in both", d))
        else:
            out.append(
                Finding(
                    "raw_vs_parsed",
                    FAIL,
                    f"raw has {raw.records} records, parsed {parsed_rows} rows",
                    d,
                )
            )
    return out
