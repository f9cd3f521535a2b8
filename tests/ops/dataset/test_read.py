"""Reading the dataset: ops.dataset.load and the README recipes (polars, DuckDB) agree."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

from ops.dataset import load
from tests.ops.dataset.conftest import write_config
from tests.ops.dataset.fleetdata import DAY, H0, HOUR_MS
from tests.ops.dataset.restfake import Truth
from tests.ops.dataset.test_local import FIRST, SYMBOL, N, _build, _fleet


def test_load_polars_and_duckdb_read_the_same_rows(
    tmp_path: Path, truth: Truth, rest_url: str
) -> None:
    """load() cuts to [start, end) by trade_time; the hive recipes see the same hour."""
    hosts, real = _fleet(tmp_path, truth)
    cfg = write_config(tmp_path, rest_url)
    out = tmp_path / "dataset"
    assert _build(tmp_path, cfg, hosts, out) == 0

    lf = load("binance", SYMBOL, "trade", H0, H0 + HOUR_MS // 2, root=out)
    half = lf.collect()
    whole = load("binance", SYMBOL, "trade", "2024-03-01T10:00Z", "2024-03-01T11:00Z", root=out)
    assert whole.select(pl.len()).collect().item() == N
    assert half.height == sum(1 for t in real if t.trade_time_ms < H0 + HOUR_MS // 2)
    assert half["trade_id"].min() == FIRST

    # README recipe: polars over the Hive layout
    recipe = (
        pl.scan_parquet(f"{out}/trade/**/*.parquet", hive_partitioning=True)
        .filter(pl.col("exchange") == "binance", pl.col("symbol") == SYMBOL)
        .select(pl.len(), pl.col("price").cast(pl.Decimal(38, 8)).max().alias("high"))
        .collect()
    )
    # README recipe: DuckDB
    con = duckdb.connect()
    row = con.execute(
        "SELECT count(*), max(CAST(price AS DECIMAL(38, 8))), count(DISTINCT trade_id)"
        f" FROM read_parquet('{out}/trade/*/*/*/*.parquet', hive_partitioning = true)"
        f" WHERE exchange = 'binance' AND symbol = '{SYMBOL}' AND date = DATE '{DAY}'"
    ).fetchone()
    assert row is not None
    assert row[0] == row[2] == recipe.item(0, 0) == N
    assert (
        str(row[1]) == str(recipe.item(0, 1)) == max((t.price for t in real), key=float) + "000000"
    )
    comp = con.execute(
        "SELECT rows, missing_after, filled_from_rest"
        f" FROM read_parquet('{out}/completeness/*/*.parquet') WHERE data_type = 'trade'"
    ).fetchall()
    assert comp == [(N, 0, 20)]
