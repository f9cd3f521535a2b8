"""The pure merges: L3 by sequence or best single host; REST pacing through 429s."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from collector.common.layout import parse_file_name
from collector.model import COLUMNS
from ops.dataset.copies import Copy
from ops.dataset.frames import read_parsed
from ops.dataset.inventory import HostFile
from ops.dataset.l3 import merge_l3
from tests.ops.dataset.conftest import write_config
from tests.ops.dataset.fleetdata import H0, truth_trades, write_copy, write_trades
from tests.ops.dataset.restfake import Truth
from tests.ops.dataset.test_local import _build


def _l3_lines(seqs: list[int], snapshot_seq: int | None = None) -> list[str]:
    out = []
    if snapshot_seq is not None:
        out += [
            f"{H0},BTC-USD,{snapshot_seq},snapshot,o{i},B,100.{i},1,,,,,{H0 * 1000}"
            for i in range(2)
        ]
    for s in seqs:
        out.append(f"{H0 + s},BTC-USD,{s},add,n{s},A,101.{s},2,,,,,{(H0 + s) * 1000 + 7}")
    return out


def _copy(tmp_path: Path, host: str, lines: list[str], verdict: str, rank: int) -> Copy:
    d = write_copy(tmp_path / host, "coinbase", "BTC-USD", "l3", H0, lines, verdict=verdict)
    parsed = read_parsed(d.parsed.read_bytes(), "l3", "BTC-USD")
    info = parse_file_name(d.parsed.name)
    return Copy(host, HostFile(host, "k", "t", info, None, None), verdict, rank, parsed.df)


def test_l3_union_by_sequence(tmp_path: Path) -> None:
    """Each sequence once, in order; snapshot rows from the best copy only."""
    a = _copy(tmp_path, "a", _l3_lines([11, 12, 15, 16], snapshot_seq=10), "ok", 0)
    b = _copy(tmp_path, "b", _l3_lines([12, 13, 14, 15], snapshot_seq=11), "fail", 3)

    m = merge_l3([a, b], sequenced=True)

    assert m.rows.columns == [*COLUMNS["l3"], "source"]
    events = m.rows.filter(pl.col("action") != "snapshot")
    assert events["sequence"].to_list() == [11, 12, 13, 14, 15, 16]
    assert events["source"].to_list() == ["a", "a", "b", "b", "a", "a"]
    assert m.rows.filter(pl.col("action") == "snapshot")["source"].to_list() == ["a", "a"]
    assert m.from_failed_qa == 2


def test_l3_without_sequence_is_the_best_single_host(tmp_path: Path) -> None:
    a = _copy(tmp_path, "a", _l3_lines([1, 2]), "ok", 0)
    b = _copy(tmp_path, "b", _l3_lines([1, 2, 3]), "ok", 0)

    m = merge_l3([a, b], sequenced=False)

    assert set(m.rows["source"]) == {"b"}
    assert "best single host" in m.note


def test_rest_429_is_retried_after_its_delay(tmp_path: Path, truth: Truth, rest_url: str) -> None:
    """A 429 with Retry-After is honoured and the page asked again: the hole is filled."""
    real = truth_trades("BTCUSDT", H0, 1, 100)
    truth.trades["BTCUSDT"] = real
    truth.throttle = 1
    write_trades(tmp_path / "a", "binance", "BTCUSDT", H0, [t for t in real if t.trade_id != 50])
    cfg = write_config(tmp_path, rest_url)

    assert _build(tmp_path, cfg, [tmp_path / "a"], tmp_path / "out") == 0

    assert len(truth.requests) == 2
    comp = pl.read_parquet(next((tmp_path / "out" / "completeness").rglob("*.parquet")))
    assert comp.select("filled_from_rest", "missing_after").row(0) == (1, 0)
