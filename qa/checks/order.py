"""Time: times going backwards from row to row, and how the rows cover the file's hour
(rows outside it, first and last row against it, the longest silence)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import polars as pl

from qa.checks.context import Context
from qa.checks.findings import OK, WARN, Finding, rate, worst
from qa.checks.specs import TypeSpec


def check_order(df: pl.DataFrame, spec: TypeSpec, ctx: Context, lines: int) -> list[Finding]:
    """Times going backwards from one row to the next, per time column."""
    th = ctx.thresholds
    cols = [c for c in spec.order_cols if c in df.columns]
    if not cols:
        return []
    # Exchange times (ms) may step back by up to the tolerance without counting: a snapshot
    # without an exchange time carries its receive time, and the next update's exchange time
    # can be a few ms earlier. Those steps are still reported, as "jitter".
    tol = {c: (th.backwards_tolerance_ms if c in spec.ms_time_cols else 0.0) for c in cols}
    diffs = [pl.col(c).drop_nulls().diff() for c in cols]
    row = df.select(
        [(d < -tol[c]).sum().alias(c) for c, d in zip(cols, diffs, strict=True)]
        + [
            ((d < 0) & (d >= -tol[c])).sum().alias(f"{c}~")
            for c, d in zip(cols, diffs, strict=True)
        ]
    ).row(0, named=True)
    back = {c: int(row[c] or 0) for c in cols if row[c]}
    jitter = {c: int(row[f"{c}~"] or 0) for c in cols if row[f"{c}~"]}
    sev = worst(rate(n, lines, th.disorder_warn_pct, th.disorder_fail_pct) for n in back.values())
    msg = (
        "times never go backwards"
        if not back
        else "backwards: " + ", ".join(f"{c} {n}" for c, n in back.items())
    )
    if jitter:
        msg += (
            f" (within {th.backwards_tolerance_ms:g} ms: "
            + ", ".join(f"{c} {n}" for c, n in jitter.items())
            + ")"
        )
    return [Finding("time_order", sev, msg, {"backwards": back, "jitter": jitter})]


def check_hour(df: pl.DataFrame, spec: TypeSpec, ctx: Context) -> Finding:
    """Rows inside the file's hour; first/last row against the hour; the longest silence."""
    info, th = ctx.info, ctx.thresholds
    start, end = info.start_ms, info.hour_end_ms
    tol = int(th.hour_tolerance_s * 1000)
    local = spec.us_time_cols[0] if spec.us_time_cols else None
    if local is None or local not in df.columns:
        return Finding("hour", OK, "no local time column", {})
    t = (pl.col(local).drop_nulls() // 1000).alias("t")
    ts = df.select(t).get_column("t")
    if ts.len() == 0:
        return Finding("hour", OK, "no local times", {})
    outside = int(((ts < start - tol) | (ts >= end + tol)).sum())
    inside = ts.filter((ts >= start - tol) & (ts < end + tol))
    if not inside.is_sorted():
        inside = inside.sort()
    details: dict[str, Any] = {
        "file_start": _iso(start),
        "hour_end": _iso(end),
        "outside_hour": outside,
    }
    silence_limit = th.silence_s(info.exchange, info.symbol, info.data_type)
    sev = rate(outside, ts.len(), th.bad_rows_warn_pct, th.bad_rows_fail_pct)
    parts = [f"{outside} rows outside the hour"] if outside else []
    if inside.len():
        first, last = int(inside[0]), int(inside[-1])
        lead_s = max(0, first - start) / 1000
        tail_s = max(0, end - last) / 1000
        inner_s = float(inside.diff().max() or 0) / 1000  # type: ignore[arg-type]
        longest = max(lead_s, tail_s, inner_s)
        details.update(
            first_row=_iso(first),
            last_row=_iso(last),
            start_lag_s=lead_s,
            end_gap_s=tail_s,
            longest_silence_s=longest,
            covered_pct=round(100.0 * max(0, last - max(first, start)) / (end - start), 3),
        )
        if longest > silence_limit:
            sev = worst([sev, WARN])
            parts.append(f"silent for {longest:.0f} s (> {silence_limit:.0f})")
    msg = "; ".join(parts) if parts else "rows cover the file's hour"
    return Finding("hour", sev, msg, details)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
