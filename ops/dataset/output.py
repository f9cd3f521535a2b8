"""The dataset's objects: keys, Parquet bytes, the completeness table.

``{data_type}/exchange={exchange}/symbol={symbol}/date={YYYY-MM-DD}/{HH}.parquet`` holds one
stream's hour: the parsed schema's columns in order and by name (int64 ids and times;
prices and sizes as the exchange's exact decimal strings; ``is_buyer_maker`` boolean), then
``source`` (the host id, or ``rest``). ``completeness/date={YYYY-MM-DD}/part-0.parquet``
holds one row per (exchange, symbol, data_type, hour) of that date.

Bytes are a pure function of the rows: one writer (polars), every option fixed (zstd
level 3, statistics, one row group up to 1M rows, no timestamps), rows in a fixed order.
``_state/`` and ``_backfill/`` hold the builder's own records (input fingerprints, REST
answers); no table points at them.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import polars as pl

from ops.dataset.frames import schema
from ops.dataset.inventory import Stream, day_of

PARQUET = "application/vnd.apache.parquet"
COMPLETENESS = "completeness"
_ROW_GROUP = 1_000_000


def hour_key(stream: Stream, hour_ms: int) -> str:
    return f"{_partition(stream, hour_ms)}/{_hh(hour_ms)}.parquet"


def _partition(stream: Stream, hour_ms: int) -> str:
    return (
        f"{stream.data_type}/exchange={stream.exchange}/symbol={stream.symbol}"
        f"/date={day_of(hour_ms)}"
    )


def _hh(hour_ms: int) -> str:
    return datetime.fromtimestamp(hour_ms / 1000, UTC).strftime("%H")


def state_key(stream: Stream, hour_ms: int) -> str:
    """The build record of one stream's hour (fingerprint + completeness row)."""
    s = stream
    return (
        f"_state/date={day_of(hour_ms)}/{s.data_type}/{s.exchange}/{s.symbol}/{_hh(hour_ms)}.json"
    )


def backfill_key(stream: Stream, hour_ms: int) -> str:
    s = stream
    return f"_backfill/{s.exchange}/{s.symbol}/{s.data_type}/{day_of(hour_ms)}/{_hh(hour_ms)}.json"


def completeness_key(day: str) -> str:
    return f"{COMPLETENESS}/date={day}/part-0.parquet"


def output_schema(data_type: str) -> dict[str, pl.DataType]:
    return {**schema(data_type), "source": pl.String()}


def parquet_bytes(df: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.write_parquet(
        buf,
        compression="zstd",
        compression_level=3,
        statistics=True,
        row_group_size=_ROW_GROUP,
        use_pyarrow=False,
    )
    return buf.getvalue()


def conform(df: pl.DataFrame, data_type: str) -> pl.DataFrame:
    """Exactly the output schema (column order and types)."""
    sch = output_schema(data_type)
    return df.select(pl.col(c).cast(t) for c, t in sch.items())


@dataclass
class Completeness:
    """One row of the completeness table."""

    exchange: str
    symbol: str
    data_type: str
    hour: str  # YYYY-MM-DDTHH:00:00Z
    hosts: list[str] = field(default_factory=list)
    rows: int = 0
    first_id: int | None = None
    last_id: int | None = None
    missing_before: int | None = None  # in the best single host
    filled_from_hosts: int = 0
    filled_from_rest: int = 0
    missing_after: int | None = None
    from_failed_qa: int = 0
    out_of_sync_s: float | None = None  # books: seconds no host covered
    best_host: str | None = None
    best_host_out_of_sync_s: float | None = None  # books
    from_unchecked: int = 0  # rows from copies without a QA report
    disagreements: int = 0  # ids whose copies differ in a field
    not_fillable: int = 0  # ids still missing that REST could not serve
    bad_rows: int = 0  # input lines refused by the value checks
    unreadable_files: int = 0  # input copies that are no readable gzip CSV
    input_files: int = 0
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


COMPLETENESS_SCHEMA: dict[str, pl.DataType] = {
    "exchange": pl.String(),
    "symbol": pl.String(),
    "data_type": pl.String(),
    "hour": pl.String(),
    "hosts": pl.List(pl.String()),
    "rows": pl.Int64(),
    "first_id": pl.Int64(),
    "last_id": pl.Int64(),
    "missing_before": pl.Int64(),
    "filled_from_hosts": pl.Int64(),
    "filled_from_rest": pl.Int64(),
    "missing_after": pl.Int64(),
    "from_failed_qa": pl.Int64(),
    "out_of_sync_s": pl.Float64(),
    "best_host": pl.String(),
    "best_host_out_of_sync_s": pl.Float64(),
    "from_unchecked": pl.Int64(),
    "disagreements": pl.Int64(),
    "not_fillable": pl.Int64(),
    "bad_rows": pl.Int64(),
    "unreadable_files": pl.Int64(),
    "input_files": pl.Int64(),
    "note": pl.String(),
}


def completeness_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    ordered = sorted(rows, key=lambda r: (r["exchange"], r["symbol"], r["data_type"], r["hour"]))
    return pl.DataFrame(ordered, schema=COMPLETENESS_SCHEMA)
