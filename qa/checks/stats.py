"""Statistics of a parsed file: ``pandas.describe``'s figures per numeric column."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl


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
