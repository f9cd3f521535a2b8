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
    t, tid = pl.col("trade_time"), pl.col("trade_id")
    prev_ids, next_ids, parts = [], [], []
    for f in frames:
        lo, hi, before, after = f.select(
            t.min().alias("lo"),
            t.max().alias("hi"),
            tid.filter(t < hour_ms).max().alias("before"),
            tid.filter(t >= end_ms).min().alias("after"),
        ).row(0)
        prev_ids.append(before)
        next_ids.append(after)
        whole = lo is not None and lo >= hour_ms and hi < end_ms
        parts.append(f if whole else f.filter((t >= hour_ms) & (t < end_ms)))
    prev_id = max((i for i in prev_ids if i is not None), default=None)
    next_id = min((i for i in next_ids if i is not None), default=None)
    # Best copy first (rank, then host id); one pass groups the ids: the first row of each
    # (the best copy's) is chosen, and an id whose rows hash differently on the compared
    # fields is a disagreement.
    order = sorted(range(len(copies)), key=lambda i: (copies[i].rank, copies[i].host))
    ranked = pl.concat([parts[i] for i in order], how="vertical")
    h = pl.struct(COMPARED).hash()
    groups = (
        ranked.select(tid, h.alias("_h"), pl.int_range(pl.len(), dtype=pl.UInt32).alias("_i"))
        .group_by("trade_id")
        .agg(pl.col("_i").min(), (pl.col("_h").min() != pl.col("_h").max()).alias("_d"))
        .sort("trade_id")
    )
    chosen = ranked[groups.get_column("_i")]
    disagreements = int(groups.get_column("_d").sum())
    best: tuple[str, int] | None = None
    best_key: tuple[bool, int, int, str] | None = None
    for host in sorted({c.host for c in copies}):
        mine = [i for i, c in enumerate(copies) if c.host == host]
        ids = pl.concat([parts[i].select(tid) for i in mine]).get_column("trade_id")
        n = ids.n_unique() if len(mine) > 1 else ids.len()
        rank = min(copies[i].rank for i in mine)
        key = (rank >= GATED_RANK, -n, rank, host)
        if n and (best_key is None or key < best_key):
            best, best_key = (host, n), key
    hosts = sorted({c.host for c in copies if c.file.hour_ms == hour_ms})
    merge = TradeMerge(
        rows=chosen,
        hosts=hosts,
        best_host=best[0] if best else None,
        best_rows=best[1] if best else 0,
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
