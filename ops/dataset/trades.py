"""Trades: the union of every host's copy by trade id, each id once, sorted.

Pure (polars frames in, frames and counts out). A trade belongs to the hour of its
``trade_time`` (the exchange's clock, the same on every host), so copies of the neighbouring
hours' edge files are read too: a trade received just after the hour closed is in the next
file of some hosts. Where copies disagree on a field of one id, the best-ranked copy wins
(ok QA verdict first) and the id is counted in ``disagreements``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from collector.common.layout import HOUR_MS
from ops.dataset.copies import FAIL, GATED_RANK, UNCHECKED, Copy

# Fields every host receives identically for one trade (local_time is the host's own).
COMPARED = ("event_time", "price", "quantity", "trade_time", "is_buyer_maker")


@dataclass
class TradeMerge:
    rows: pl.DataFrame  # parsed schema + source, by trade_id, trade_time in the hour
    hosts: list[str]
    best_host: str | None  # the most complete copy that passed the QA gate (else any)
    best_rows: int  # distinct ids of the hour in the best single host
    union_rows: int  # distinct ids of the hour over every host
    disagreements: int
    gaps: list[tuple[int, int]] = field(default_factory=list)  # missing id ranges
    leading: tuple[int, int] | None = None  # the gap before the hour's first id
    trailing: tuple[int, int] | None = None  # the gap after its last id


def merge_trades(copies: list[Copy], hour_ms: int, *, contiguous: bool) -> TradeMerge:
    """Merge ``copies`` (of this hour and the edge files of its neighbours)."""
    end_ms = hour_ms + HOUR_MS
    frames = [
        c.df.with_columns(
            pl.lit(c.host).alias("source"),
            pl.lit(c.rank, pl.Int8).alias("_rank"),
            pl.lit(c.verdict).alias("_verdict"),
        )
        for c in copies
    ]
    if not frames:
        raise ValueError("no copies to merge")
    every = pl.concat(frames, how="vertical")
    t = pl.col("trade_time")
    prev_id = every.filter(t < hour_ms).get_column("trade_id").max()
    next_id = every.filter(t >= end_ms).get_column("trade_id").min()
    hour = every.filter((t >= hour_ms) & (t < end_ms)).sort(["trade_id", "_rank", "source"])
    first = pl.col("trade_id").is_first_distinct()
    differs = pl.any_horizontal(
        pl.col(c) != pl.when(first).then(pl.col(c)).otherwise(None).forward_fill() for c in COMPARED
    )
    disagreements = int(hour.filter(~first & differs).get_column("trade_id").n_unique())
    chosen = hour.filter(first)
    per_host = (
        hour.group_by("source")
        .agg(pl.col("trade_id").n_unique().alias("n"), pl.col("_rank").min().alias("r"))
        .with_columns((pl.col("r") >= GATED_RANK).alias("g"))
        .sort(["g", "n", "r", "source"], descending=[False, True, False, False])
    )
    best = per_host.row(0) if per_host.height else None
    hosts = sorted({c.host for c in copies if c.file.hour_ms == hour_ms})
    merge = TradeMerge(
        rows=chosen,
        hosts=hosts,
        best_host=str(best[0]) if best else None,
        best_rows=int(best[1]) if best else 0,
        union_rows=chosen.height,
        disagreements=disagreements,
    )
    if contiguous and chosen.height:
        ids = chosen.get_column("trade_id")
        lo, hi = int(ids.min()), int(ids.max())  # type: ignore[arg-type]
        merge.gaps = _gaps(ids)
        if isinstance(prev_id, int) and prev_id + 1 < lo:
            merge.leading = (prev_id + 1, lo - 1)
        if isinstance(next_id, int) and hi + 1 < next_id:
            merge.trailing = (hi + 1, next_id - 1)
    return merge


def _gaps(ids: pl.Series) -> list[tuple[int, int]]:
    """Missing ranges between consecutive ids of a sorted, distinct id column."""
    d = pl.DataFrame({"id": ids}).with_columns(pl.col("id").shift(1).alias("prev"))
    holes = d.filter(pl.col("id") - pl.col("prev") > 1)
    return [(int(p) + 1, int(i) - 1) for i, p in holes.select("id", "prev").iter_rows()]


def finish(rows: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """The output frame: the parsed schema's columns in order, then ``source``."""
    return rows.sort("trade_id").select([*columns, "source"])


def count_from(rows: pl.DataFrame, verdict: str) -> int:
    return int(rows.filter(pl.col("_verdict") == verdict).height) if "_verdict" in rows else 0


__all__ = ["FAIL", "UNCHECKED", "TradeMerge", "count_from", "finish", "merge_trades"]
