"""Pure data-quality checks: a parsed file's frame (and its raw file's events) → findings.

Nothing here touches the disk, the clock or the network; :mod:`qa.reader` turns files into
the inputs, :mod:`qa.runner` writes the reports. Checks are table-driven: :data:`SPECS` says,
per data type, which columns exist, their types, which must be positive, which are times,
which hold a fixed set of values, which id must not go backwards or skip, and which extra
checks run (books: crossed and out-of-order levels). A new data type is a new entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import polars as pl

from collector.common.layout import HOUR_MS, FileInfo
from collector.exchanges.base import ExchangeAdapter
from collector.model import COLUMNS, Trade
from qa.settings import Thresholds

OK, WARN, FAIL = "ok", "warn", "fail"
_RANK = {OK: 0, WARN: 1, FAIL: 2}


def worst(severities: Iterable[str]) -> str:
    return max(severities, key=_RANK.__getitem__, default=OK)


@dataclass(frozen=True)
class Finding:
    """The result of one check: ``ok`` | ``warn`` | ``fail``, a short message and numbers."""

    check: str
    severity: str
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "severity": self.severity,
            "message": self.message,
            "details": dict(self.details),
        }


# --- per data type specs -----------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    info: FileInfo
    thresholds: Thresholds
    ids_contiguous: bool = False


ExtraCheck = Callable[[pl.DataFrame, Context], list[Finding]]


@dataclass(frozen=True)
class TypeSpec:
    """How one data type's CSV looks and what must hold in it."""

    columns: tuple[str, ...]
    dtypes: Mapping[str, pl.DataType]
    ms_time_cols: tuple[str, ...]  # exchange times, epoch ms
    us_time_cols: tuple[str, ...]  # local receive time, epoch µs
    positive_cols: tuple[str, ...] = ()
    nonneg_cols: tuple[str, ...] = ()
    nullable: tuple[str, ...] = ()
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    id_col: str | None = None
    # Whether the ids of this column step by one, asked of the stream's exchange adapter.
    ids_contiguous: Callable[[ExchangeAdapter], bool] = lambda adapter: False
    extra: tuple[ExtraCheck, ...] = ()
    # Records of this class in the raw file's frames must match the parsed rows one to one.
    raw_record_type: type | None = None

    @property
    def order_cols(self) -> tuple[str, ...]:
        return self.ms_time_cols + self.us_time_cols


def _choices_enum(values: tuple[str, ...]) -> pl.DataType:
    return pl.Enum(list(values))


def check_book(df: pl.DataFrame, ctx: Context) -> list[Finding]:
    """Crossed books (best bid >= best ask) and levels out of order within one change.

    A change is N bid rows (levels 1..N) then N ask rows; a change starts at a level-1 row
    that is a bid or follows an ask.
    """
    th = ctx.thresholds
    side = pl.col("side").cast(pl.String)
    lvl = pl.col("level")
    price = pl.col("price")
    prev_side = side.shift(1)
    new = (lvl == 1) & ((side == "B") | (prev_side == "A") | prev_side.is_null())
    d = df.select(side.alias("s"), lvl.alias("l"), price.alias("p"), new.cum_sum().alias("g"))
    d = d.drop_nulls()
    if d.height == 0:
        return [Finding("book", OK, "no complete book rows")]
    s, g, lv, p = pl.col("s"), pl.col("g"), pl.col("l"), pl.col("p")
    same = (g == g.shift(1)) & (s == s.shift(1))
    bad_level = (same & (lv != lv.shift(1) + 1)) | (~same.fill_null(False) & (lv != 1))
    bad_price = same & (((s == "B") & (p >= p.shift(1))) | ((s == "A") & (p <= p.shift(1))))
    top = (
        d.filter(lv == 1)
        .group_by("g")
        .agg(
            p.filter(s == "B").first().alias("bid"),
            p.filter(s == "A").first().alias("ask"),
        )
    )
    changes = int(d["g"].n_unique())
    crossed = int(top.select((pl.col("bid") >= pl.col("ask")).sum()).item() or 0)
    flags = d.select(
        bad_level.fill_null(False).alias("lvl"), bad_price.fill_null(False).alias("px"), "g"
    )
    disordered = int(
        flags.filter(pl.col("lvl") | pl.col("px")).select(pl.col("g").n_unique()).item()
    )
    details: dict[str, Any] = {
        "changes": changes,
        "crossed": crossed,
        "levels_out_of_order": int(flags["lvl"].sum()),
        "prices_out_of_order": int(flags["px"].sum()),
        "changes_out_of_order": disordered,
    }
    if crossed:
        ex = top.filter(pl.col("bid") >= pl.col("ask")).head(3).rows()
        details["crossed_examples"] = [{"bid": b, "ask": a} for _, b, a in ex]
    sev = worst(
        [
            rate(crossed, changes, th.disorder_warn_pct, th.disorder_fail_pct),
            rate(disordered, changes, th.disorder_warn_pct, th.disorder_fail_pct),
        ]
    )
    msg = (
        f"{crossed} crossed of {changes} changes; {disordered} with levels out of order"
        if sev != OK
        else f"{changes} changes, none crossed or out of order"
    )
    return [Finding("book", sev, msg, details)]


SPECS: dict[str, TypeSpec] = {
    "trade": TypeSpec(
        columns=COLUMNS["trade"],
        dtypes={
            "event_time": pl.Int64(),
            "symbol": pl.String(),
            "trade_id": pl.Int64(),
            "price": pl.Float64(),
            "quantity": pl.Float64(),
            "trade_time": pl.Int64(),
            "is_buyer_maker": _choices_enum(("True", "False")),
            "local_time": pl.Int64(),
        },
        ms_time_cols=("event_time", "trade_time"),
        us_time_cols=("local_time",),
        positive_cols=("price", "quantity"),
        choices={"is_buyer_maker": ("True", "False")},
        id_col="trade_id",
        ids_contiguous=lambda adapter: adapter.TRADE_IDS_CONTIGUOUS,
        raw_record_type=Trade,
    ),
    "book": TypeSpec(
        columns=COLUMNS["book"],
        dtypes={
            "timestamp": pl.Int64(),
            "symbol": pl.String(),
            "side": _choices_enum(("B", "A")),
            "price": pl.Float64(),
            "quantity": pl.Float64(),
            "level": pl.Int64(),
            "local_time": pl.Int64(),
        },
        ms_time_cols=("timestamp",),
        us_time_cols=("local_time",),
        positive_cols=("price", "quantity"),
        choices={"side": ("B", "A")},
        extra=(check_book,),
    ),
    # First set for L3 (not yet produced by the collector): which fields an action may leave
    # empty depends on the exchange, so only the always-present columns are required.
    "l3": TypeSpec(
        columns=COLUMNS["l3"],
        dtypes={
            "timestamp": pl.Int64(),
            "symbol": pl.String(),
            "sequence": pl.Int64(),
            "action": pl.String(),
            "order_id": pl.String(),
            "side": pl.String(),
            "price": pl.Float64(),
            "size": pl.Float64(),
            "trade_id": pl.Int64(),
            "maker_order_id": pl.String(),
            "taker_order_id": pl.String(),
            "reason": pl.String(),
            "local_time": pl.Int64(),
        },
        ms_time_cols=("timestamp",),
        us_time_cols=("local_time",),
        # Bitfinex deletes carry price 0 (the wire value that means "remove")
        nonneg_cols=("price", "size"),
        nullable=(
            "order_id",
            "side",
            "price",
            "size",
            "trade_id",
            "maker_order_id",
            "taker_order_id",
            "reason",
        ),
        # No id check on `sequence`: a snapshot's rows share one, and Bitfinex's restarts per
        # connection; the L3 cross-check (qa/l3check.py) judges the book instead.
    ),
}


def rate(count: int, total: int, warn_pct: float, fail_pct: float) -> str:
    """``count`` of ``total`` → severity: above ``fail_pct`` % fails, above ``warn_pct`` % warns."""
    if count <= 0:
        return OK
    pct = 100.0 * count / max(total, 1)
    if pct > fail_pct:
        return FAIL
    if pct > warn_pct:
        return WARN
    return OK


def _pct(count: int, total: int) -> float:
    return round(100.0 * count / max(total, 1), 6)


# --- the frame checks --------------------------------------------------------------------


@dataclass(frozen=True)
class FrameInput:
    """A parsed file as read by :mod:`qa.reader`.

    ``df`` has the spec's columns with the spec's types, one row per well-formed line; in
    the slow path (a value did not parse) it also has ``_bad_<col>`` boolean columns
    marking values that were present but ill-formed, and ``_line`` (1-based line number).
    ``ragged`` counts lines with the wrong number of fields (not in ``df``).
    """

    df: pl.DataFrame
    ragged: int = 0
    ragged_lines: Sequence[int] = ()


def describe(df: pl.DataFrame, columns: Sequence[str]) -> dict[str, dict[str, float | None]]:
    """``pandas.describe``'s figures (count, mean, std, min, 25%, 50%, 75%, max) per column."""
    cols = [c for c in columns if c in df.columns and df.schema[c].is_numeric()]
    if not cols:
        return {}

    def value(c: str) -> pl.Expr:
        x = pl.col(c)
        return pl.when(x.is_finite()).then(x) if df.schema[c].is_float() else x

    exprs: list[pl.Expr] = []
    for c in cols:
        x = value(c)
        exprs += [
            x.count().alias(f"{c}|count"),
            x.mean().alias(f"{c}|mean"),
            x.std().alias(f"{c}|std"),
            x.min().cast(pl.Float64).alias(f"{c}|min"),
            x.max().cast(pl.Float64).alias(f"{c}|max"),
            (x.drop_nulls().diff() < 0).any().alias(f"{c}|unsorted"),
        ]
    row = df.select(exprs).row(0, named=True)
    # Quartiles as pandas computes them (linear interpolation), from one sort per column and
    # a gather of the two neighbours of each quartile: polars' quantile() sorts once per call.
    gathers: list[pl.Expr] = []
    positions: dict[str, list[tuple[str, int, int, float]]] = {}
    for c in cols:
        n = int(row[f"{c}|count"])
        if n == 0:
            continue
        idx: list[int] = []
        pos = []
        for name, q in (("25%", 0.25), ("50%", 0.5), ("75%", 0.75)):
            h = (n - 1) * q
            lo = int(h)
            hi = min(lo + 1, n - 1)
            pos.append((name, len(idx), len(idx) + 1, h - lo))
            idx += [lo, hi]
        positions[c] = pos
        v = value(c).drop_nulls()
        if row[f"{c}|unsorted"]:  # times and ids usually come sorted: no sort needed
            v = v.sort()
        gathers.append(v.gather(idx).cast(pl.Float64).implode().alias(c))
    picked = df.select(gathers).row(0, named=True) if gathers else {}
    out: dict[str, dict[str, float | None]] = {}
    for c in cols:
        st: dict[str, float | None] = {}
        for name in ("count", "mean", "std", "min"):
            v = row[f"{c}|{name}"]
            st[name] = None if v is None else float(v)
        vals = picked.get(c)
        for name, i, j, frac in positions.get(c, []):
            assert vals is not None
            st[name] = float(vals[i] + (vals[j] - vals[i]) * frac)
        for name in ("25%", "50%", "75%"):
            st.setdefault(name, None)
        v = row[f"{c}|max"]
        st["max"] = None if v is None else float(v)
        out[c] = st
    return out


def _examples(df: pl.DataFrame, mask: pl.Expr, n: int = 3) -> list[int]:
    """Line numbers (header = line 1) of the first ``n`` rows where ``mask`` holds."""
    line = pl.col("_line") if "_line" in df.columns else pl.int_range(pl.len()) + 2
    return [int(v) for v in df.select(line.filter(mask).head(n)).to_series().to_list()]


def check_frame(
    spec: TypeSpec, data: FrameInput, ctx: Context
) -> tuple[list[Finding], dict[str, Any]]:
    """Run every row-level check of ``spec`` on ``data``. Returns findings and statistics."""
    df = data.df
    th = ctx.thresholds
    info = ctx.info
    findings: list[Finding] = []
    cols = [c for c in spec.columns if c in df.columns]
    lines = df.height + data.ragged

    # Row count, scaled to the part of the hour the file covers.
    lo, hi = th.rows_range(info.exchange, info.symbol, info.data_type)
    covered = (info.hour_end_ms - info.start_ms) / HOUR_MS
    lo_scaled = int(lo * covered)
    if lines == 0:
        findings.append(Finding("row_count", FAIL, "no data rows (header only)", {"rows": 0}))
    else:
        sev = OK if lo_scaled <= lines <= hi else WARN
        msg = f"{lines} rows" + ("" if sev == OK else f" outside [{lo_scaled}, {hi}]")
        findings.append(
            Finding("row_count", sev, msg, {"rows": lines, "min": lo_scaled, "max": hi})
        )
    if lines == 0:
        return findings, {}

    # Empty, missing and ill-formed values: one pass of boolean expressions.
    bad_cols = {c: f"_bad_{c}" for c in cols if f"_bad_{c}" in df.columns}
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
        x = pl.col("level")
        ill["level"].append((f"not in 1..{th.book_depth}", (x < 1) | (x > th.book_depth)))

    ill_exprs = {(c, what): e.fill_null(False) for c, items in ill.items() for what, e in items}
    exprs = [empty.sum().alias("empty")]
    exprs += [m.sum().alias(f"missing|{c}") for c, m in missing.items()]
    exprs += [e.sum().alias(f"ill|{c}|{w}") for (c, w), e in ill_exprs.items()]
    counts = df.select(exprs).row(0, named=True)

    n_empty = int(counts["empty"])
    findings.append(
        Finding(
            "empty_rows",
            rate(n_empty, lines, th.bad_rows_warn_pct, th.bad_rows_fail_pct),
            f"{n_empty} empty rows",
            {"count": n_empty, "lines": _examples(df, empty) if n_empty else []},
        )
    )
    miss = {c: int(counts[f"missing|{c}"]) for c in missing if counts[f"missing|{c}"]}
    n_miss = sum(miss.values())
    findings.append(
        Finding(
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
    )
    bad: dict[str, int] = {}
    bad_lines: dict[str, list[int]] = {}
    for (c, w), e in ill_exprs.items():
        n = int(counts[f"ill|{c}|{w}"])
        if n:
            bad[f"{c}: {w}"] = n
            bad_lines[f"{c}: {w}"] = _examples(df, e)
    if data.ragged:
        bad["wrong number of fields"] = data.ragged
        bad_lines["wrong number of fields"] = list(data.ragged_lines[:3])
    n_ill = sum(bad.values())
    findings.append(
        Finding(
            "ill_formed",
            rate(n_ill, lines, th.bad_rows_warn_pct, th.bad_rows_fail_pct),
            "no ill-formed values" if not bad else "; ".join(f"{k} ({n})" for k, n in bad.items()),
            {"by_kind": bad, "lines": bad_lines},
        )
    )
    n_bad_rows = data.ragged
    if any(v for k, v in counts.items()):
        row_bad = pl.any_horizontal([empty, *missing.values(), *ill_exprs.values()])
        n_bad_rows += int(df.select(row_bad.sum()).item())

    findings.extend(_check_order(df, spec, ctx, lines))
    if spec.id_col and spec.id_col in df.columns:
        findings.append(_check_ids(df, spec.id_col, ctx, lines))
    findings.append(_check_hour(df, spec, ctx))
    for extra in spec.extra:
        findings.extend(extra(df, ctx))

    stats = {
        "rows": lines,
        "bad_rows": n_bad_rows,
        "describe": describe(df, spec.columns),
    }
    return findings, stats


def _check_order(df: pl.DataFrame, spec: TypeSpec, ctx: Context, lines: int) -> list[Finding]:
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


def _check_ids(df: pl.DataFrame, col: str, ctx: Context, lines: int) -> Finding:
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


def _check_hour(df: pl.DataFrame, spec: TypeSpec, ctx: Context) -> Finding:
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


# --- the raw file: collector markers and the trade count ---------------------------------


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
