"""Per data type: how its CSV looks and what must hold in it (:data:`SPECS`).

Checks are table-driven: a :class:`TypeSpec` says which columns exist, their types, which
must be positive, which are times, which hold a fixed set of values, which id must not go
backwards or skip, and which extra checks run (books: crossed and out-of-order levels). A new
data type is a new entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import polars as pl

from collector.exchanges.base import ExchangeAdapter
from collector.model import COLUMNS, Trade
from qa.checks.book import check_book
from qa.checks.context import Context
from qa.checks.findings import Finding

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
