"""L3 (order level): merged by the exchange's sequence where it has one, else one host.

Coinbase ``full`` and Bitfinex R0 number every message (``L3_ALIGN == "sequence"``): the
merge is the union of every copy's event rows by (sequence, action, order id), each once,
in sequence order, the best-ranked copy winning; the ``snapshot`` rows come from the best
single copy only (one book to start from; the events of the other hosts continue it).
Exchanges without a sequence (Bitstamp) cannot be merged exactly: the best single host's
copy (most rows, then QA) is used whole, and the completeness record says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from ops.dataset.copies import FAIL, UNCHECKED, Copy


@dataclass
class L3Merge:
    rows: pl.DataFrame
    hosts: list[str]
    best_host: str | None
    best_rows: int
    note: str
    from_failed_qa: int
    from_unchecked: int


def _best(copies: list[Copy]) -> Copy:
    by_host: dict[str, int] = {}
    for c in copies:
        by_host[c.host] = by_host.get(c.host, 0) + c.df.height
    return min(copies, key=lambda c: (c.gated, -by_host[c.host], c.rank, c.host))


def merge_l3(copies: list[Copy], *, sequenced: bool) -> L3Merge:
    best = _best(copies)
    hosts = sorted({c.host for c in copies})
    best_rows = sum(c.df.height for c in copies if c.host == best.host)
    if not sequenced:
        frames = [
            c.df.with_columns(pl.lit(c.host).alias("source"), pl.lit(c.verdict).alias("_v"))
            for c in copies
            if c.host == best.host
        ]
        rows = pl.concat(frames)
        note = "l3: best single host (the exchange has no sequence to merge by)"
    else:
        frames = [
            c.df.with_columns(
                pl.lit(c.host).alias("source"),
                pl.lit(c.rank, pl.Int8).alias("_rank"),
                pl.lit(c.verdict).alias("_v"),
                pl.int_range(pl.len()).alias("_pos"),
                pl.lit(c.host == best.host).alias("_best"),
            )
            for c in copies
        ]
        every = pl.concat(frames)
        snap = pl.col("action") == "snapshot"
        key = ["sequence", "action", "order_id"]
        events = (
            every.filter(~snap & pl.col("sequence").is_not_null())
            .sort([*key, "_rank", "source", "_pos"], nulls_last=True)
            .unique(subset=key, keep="first", maintain_order=True)
        )
        snapshots = every.filter(snap & pl.col("_best"))
        rows = pl.concat([snapshots, events]).sort(
            ["sequence", pl.col("action") != "snapshot", "source", "_pos"], nulls_last=True
        )
        rows = rows.drop("_rank", "_pos", "_best")
        note = "l3: merged by the exchange's sequence"
    failed = rows.filter(pl.col("_v") == FAIL).height
    unchecked = rows.filter(pl.col("_v") == UNCHECKED).height
    return L3Merge(
        rows=rows.drop("_v"),
        hosts=hosts,
        best_host=best.host,
        best_rows=best_rows,
        note=note,
        from_failed_qa=failed,
        from_unchecked=unchecked,
    )
