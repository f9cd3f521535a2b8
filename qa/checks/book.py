"""Books: crossed tops (best bid >= best ask) and levels out of order within one change."""

from __future__ import annotations

from typing import Any

import polars as pl

from qa.checks.context import Context
from qa.checks.findings import OK, Finding, rate, worst


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
