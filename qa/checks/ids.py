"""Ids: duplicates, ids going backwards and, where the exchange's ids are contiguous, the gaps."""

from __future__ import annotations

from typing import Any

import polars as pl

from qa.checks.context import Context
from qa.checks.findings import OK, Finding, rate, worst


def _pct(count: int, total: int) -> float:
    return round(100.0 * count / max(total, 1), 6)


def check_ids(df: pl.DataFrame, col: str, ctx: Context, lines: int) -> Finding:
    """Duplicates, ids going backwards and (when ids are contiguous) missing ids."""
    th = ctx.thresholds
    ids = df.get_column(col).drop_nulls()
    if ids.len() == 0:
        return Finding("ids", OK, f"no {col}", {})
    backwards = int((ids.diff() < 0).sum())
    s = ids if backwards == 0 else ids.sort()
    d = s.diff()
    dups = int((d == 0).sum())
    first, last = int(s[0]), int(s[-1])
    details: dict[str, Any] = {
        "column": col,
        "first": first,
        "last": last,
        "duplicates": dups,
        "backwards": backwards,
    }
    sevs = [
        rate(dups, lines, th.bad_rows_warn_pct, th.bad_rows_fail_pct),
        rate(backwards, lines, th.disorder_warn_pct, th.disorder_fail_pct),
    ]
    parts = []
    if dups:
        parts.append(f"{dups} duplicate")
    if backwards:
        parts.append(f"{backwards} backwards")
    if ctx.ids_contiguous:
        gap_mask = d > 1
        gaps = int(gap_mask.sum())
        missing = int((d.filter(gap_mask) - 1).sum()) if gaps else 0
        span = last - first + 1
        details.update(
            gaps=gaps,
            missing=missing,
            missing_pct=_pct(missing, span),
            largest_gap=int(d.max() or 1) - 1 if gaps else 0,  # type: ignore[arg-type]
        )
        if gaps:
            where = s.shift(1).filter(gap_mask).head(5).to_list()
            to = s.filter(gap_mask).head(5).to_list()
            details["first_gaps"] = [
                [int(a) + 1, int(b) - 1] for a, b in zip(where, to, strict=True)
            ]
            parts.append(f"{missing} missing in {gaps} gaps ({_pct(missing, span):.4g}%)")
        sevs.append(rate(missing, span, th.missing_ids_warn_pct, th.missing_ids_fail_pct))
    msg = f"{col} " + ("; ".join(parts) if parts else f"{first}..{last} complete")
    return Finding("ids", worst(sevs), msg, details)
