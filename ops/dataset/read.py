"""Reading the dataset back: :func:`load` gives a polars LazyFrame of one stream's rows.

    import ops.dataset
    lf = ops.dataset.load("binance", "BTCUSDT", "trade", "2024-03-01T10:00Z", "2024-03-01T12:00Z")
    lf.select(pl.len(), pl.col("price").cast(pl.Decimal(38, 8)).max()).collect()

The dataset is the local ``[dataset] out_dir`` or, without one, ``s3://{[sync] bucket}/
{[dataset] prefix}`` (S3 endpoint and region from ``[sync]``, credentials from the usual
AWS environment). Only the hourly objects of ``[start, end)`` are read, then rows are cut to
it: trades by ``trade_time`` (exchange ms), books and l3 by ``local_time`` (the receive time
their hours are cut by).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from collector.config import load_config
from ops.dataset.build import hours_between
from ops.dataset.inventory import Stream
from ops.dataset.output import hour_key, output_schema
from ops.dataset.settings import build_dataset_settings
from ops.dataset.store import LocalStore, S3Store, Store, make_s3_client


def _ms(value: datetime | str | int) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def load(
    exchange: str,
    symbol: str,
    data_type: str,
    start: datetime | str | int,
    end: datetime | str | int,
    *,
    config: Path | str | None = None,
    root: Path | str | None = None,
) -> pl.LazyFrame:
    """Rows of one stream from ``start`` to ``end`` (datetimes, ISO strings or epoch ms;
    naive times are UTC) as a LazyFrame with the parsed schema plus ``source``.

    ``root`` reads a local dataset directory instead of the configured one.
    """
    start_ms, end_ms = _ms(start), _ms(end)
    stream = Stream(exchange, symbol, data_type)
    keys = [hour_key(stream, h) for h in hours_between(start_ms, end_ms)]
    schema = output_schema(data_type)
    store: Store
    options: dict[str, str] | None = None
    if root is not None:
        store = LocalStore(Path(root))
    else:
        settings = build_dataset_settings(load_config(config))
        if settings.out_dir is not None:
            store = LocalStore(settings.out_dir)
        else:
            s3 = settings.s3
            store = S3Store(make_s3_client(s3), s3.bucket, settings.prefix)
            options = {"aws_region": s3.region}
            if s3.endpoint_url:
                options["aws_endpoint_url"] = s3.endpoint_url
                options["aws_allow_http"] = str(s3.endpoint_url.startswith("http://")).lower()
    present = _present(store, keys)
    if not present:
        return pl.LazyFrame(schema=schema)
    if isinstance(store, LocalStore):
        paths = [str(store.root / k) for k in present]
    else:
        assert isinstance(store, S3Store)
        paths = [f"s3://{store.bucket}/{store.root}/{k}" for k in present]
    lf = pl.scan_parquet(paths, hive_partitioning=False, storage_options=options)
    if data_type == "trade":
        t, lo, hi = pl.col("trade_time"), start_ms, end_ms
    else:
        t, lo, hi = pl.col("local_time"), start_ms * 1000, end_ms * 1000
    return lf.filter((t >= lo) & (t < hi))


def _present(store: Store, keys: list[str]) -> list[str]:
    """The keys that exist (one listing per date partition)."""
    have: set[str] = set()
    for prefix in sorted({k.rsplit("/", 1)[0] + "/" for k in keys}):
        have.update(o.key for o in store.objects(prefix))
    return [k for k in keys if k in have]


__all__ = ["load"]
