"""Values: the row count, and empty rows, missing values and ill-formed values.

Every kind of bad value is a boolean expression over the frame, and all of them are counted in
one ``select``; the rows they mark are located (first line numbers) only when a count is not 0.
"""

from __future__ import annotations

import polars as pl

from collector.common.layout import HOUR_MS
from qa.checks.context import Context, FrameInput
from qa.checks.findings import FAIL, OK, WARN, Finding, rate
from qa.checks.specs import TypeSpec
from qa.settings import Thresholds


def check_row_count(lines: int, ctx: Context) -> Finding:
    """Row count, scaled to the part of the hour the file covers."""
    th, info = ctx.thresholds, ctx.info
    lo, hi = th.rows_range(info.exchange, info.symbol, info.data_type)
    covered = (info.hour_end_ms - info.start_ms) / HOUR_MS
    lo_scaled = int(lo * covered)
    if lines == 0:
        return Finding("row_count", FAIL, "no data rows (header only)", {"rows": 0})
    sev = OK if lo_scaled <= lines <= hi else WARN
    msg = f"{lines} rows" + ("" if sev == OK else f" outside [{lo_scaled}, {hi}]")
    return Finding("row_count", sev, msg, {"rows": lines, "min": lo_scaled, "max": hi})


def check_values(
    spec: TypeSpec, data: FrameInput, ctx: Context, lines: int
) -> tuple[list[Finding], int]:
    """Empty rows, missing values and ill-formed values (one pass of boolean expressions).

    Returns the three findings and the number of rows with at least one bad value.
    """
    df = data.df
    th = ctx.thresholds
    cols = [c for c in spec.columns if c in df.columns]
    bad_cols = {c: f"_bad_{c}" for c in cols if f"_bad_{c}" in df.columns}
    empty, missing = _null_masks(df, spec, cols, bad_cols)
    ill = _ill_formed_masks(df, spec, ctx, cols, bad_cols)
    exprs = [empty.sum().alias("empty")]
    exprs += [m.sum().alias(f"missing|{c}") for c, m in missing.items()]
    exprs += [e.sum().alias(f"ill|{c}|{w}") for (c, w), e in ill.items()]
    counts = df.select(exprs).row(0, named=True)

    n_empty = int(counts["empty"])
    findings = [
        Finding(
            "empty_rows",
            rate(n_empty, lines, th.bad_rows_warn_pct, th.bad_rows_fail_pct),
            f"{n_empty} empty rows",
            {"count": n_empty, "lines": _examples(df, empty) if n_empty else []},
        ),
        _missing_finding(df, missing, counts, lines, th),
        _ill_formed_finding(data, ill, counts, lines, th),
    ]
    n_bad_rows = data.ragged
    if any(v for k, v in counts.items()):
        row_bad = pl.any_horizontal([empty, *missing.values(), *ill.values()])
        n_bad_rows += int(df.select(row_bad.sum()).item())
    return findings, n_bad_rows


def _null_masks(
    df: pl.DataFrame, spec: TypeSpec, cols: list[str], bad_cols: dict[str, str]
) -> tuple[pl.Expr, dict[str, pl.Expr]]:
    """Empty rows (no value at all, none ill-formed) and, per required column, missing values."""
    empty = pl.all_horizontal([pl.col(c).is_null() for c in cols]) & ~pl.any_horizontal(
        [pl.col(b) for b in bad_cols.values()] or [pl.lit(False)]
    )
    missing: dict[str, pl.Expr] = {}
    # null_count() is metadata: a file without nulls needs no empty/missing pass at all.
    has_nulls = bool(bad_cols) or any(df.select(cols).null_count().row(0))
    if not has_nulls:
        empty = pl.repeat(False, pl.len())
    for c in cols:
        if c in spec.nullable or not has_nulls:
            continue
        m = pl.col(c).is_null() & ~empty
        if c in bad_cols:
            m = m & ~pl.col(bad_cols[c])
        missing[c] = m
    return empty, missing


def _ill_formed_masks(
    df: pl.DataFrame, spec: TypeSpec, ctx: Context, cols: list[str], bad_cols: dict[str, str]
) -> dict[tuple[str, str], pl.Expr]:
    """``(column, what is wrong)`` → the rows where it is wrong, per column in spec order."""
    th, info = ctx.thresholds, ctx.info
    start, end = info.start_ms, info.hour_end_ms
    window = int(th.plausible_window_h * HOUR_MS)
    ill: dict[str, list[tuple[str, pl.Expr]]] = {c: [] for c in cols}
    for c, b in bad_cols.items():
        ill[c].append(("not a valid value", pl.col(b)))
    for c in spec.positive_cols + spec.nonneg_cols:
        if c not in df.columns:
            continue
        x = pl.col(c)
        ill[c].append(("not finite", ~x.is_finite()))
        if c in spec.positive_cols:
            ill[c].append(("not > 0", x <= 0))
        else:
            ill[c].append(("negative", x < 0))
    for c in spec.ms_time_cols:
        if c in df.columns:
            x = pl.col(c)
            ill[c].append(("not plausible epoch ms", (x < start - window) | (x > end + window)))
    for c in spec.us_time_cols:
        if c in df.columns:
            x = pl.col(c)
            ill[c].append(
                (
                    "not plausible epoch µs",
                    (x < (start - window) * 1000) | (x > (end + window) * 1000),
                )
            )
    for c, values in spec.choices.items():
        if c in df.columns and not isinstance(df.schema[c], pl.Enum):
            not_in = ~pl.col(c).cast(pl.String).is_in(values)
            ill[c].append((f"not one of {'/'.join(values)}", not_in))
    if "symbol" in df.columns:
        ill["symbol"].append((f"not {info.symbol}", pl.col("symbol") != info.symbol))
    if "level" in df.columns and info.data_type == "book":
        x, depth = pl.col("level"), th.depth_of(info.exchange, info.symbol)
        ill["level"].append((f"not in 1..{depth}", (x < 1) | (x > depth)))
    return {(c, what): e.fill_null(False) for c, items in ill.items() for what, e in items}


def _missing_finding(
    df: pl.DataFrame,
    missing: dict[str, pl.Expr],
    counts: dict[str, int],
    lines: int,
    th: Thresholds,
) -> Finding:
    miss = {c: int(counts[f"missing|{c}"]) for c in missing if counts[f"missing|{c}"]}
    n_miss = sum(miss.values())
    return Finding(
        "missing_values",
        rate(n_miss, lines, th.bad_rows_warn_pct, th.bad_rows_fail_pct),
        "no missing values"
        if not miss
        else "missing: " + ", ".join(f"{c} {n}" for c, n in miss.items()),
        {
            "by_column": miss,
            "lines": {c: _examples(df, missing[c]) for c in miss},
        },
    )


def _ill_formed_finding(
    data: FrameInput,
    ill: dict[tuple[str, str], pl.Expr],
    counts: dict[str, int],
    lines: int,
    th: Thresholds,
) -> Finding:
    bad: dict[str, int] = {}
    bad_lines: dict[str, list[int]] = {}
    for (c, w), e in ill.items():
        n = int(counts[f"ill|{c}|{w}"])
        if n:
            bad[f"{c}: {w}"] = n
            bad_lines[f"{c}: {w}"] = _examples(data.df, e)
    if data.ragged:
        bad["wrong number of fields"] = data.ragged
        bad_lines["wrong number of fields"] = list(data.ragged_lines[:3])
    n_ill = sum(bad.values())
    return Finding(
        "ill_formed",
        rate(n_ill, lines, th.bad_rows_warn_pct, th.bad_rows_fail_pct),
        "no ill-formed values" if not bad else "; ".join(f"{k} ({n})" for k, n in bad.items()),
        {"by_kind": bad, "lines": bad_lines},
    )


def _examples(df: pl.DataFrame, mask: pl.Expr, n: int = 3) -> list[int]:
    """Line numbers (header = line 1) of the first ``n`` rows where ``mask`` holds."""
    line = pl.col("_line") if "_line" in df.columns else pl.int_range(pl.len()) + 2
    return [int(v) for v in df.select(line.filter(mask).head(n)).to_series().to_list()]
