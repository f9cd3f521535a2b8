"""ops.dataset on local host directories: the trade merge, REST fill, QA gate, idempotence.

Three hosts' copies of one Binance hour with overlapping and complementary holes, mixed QA
verdicts, a forged row and a corrupt gzip; the REST fake serves the truth.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import polars as pl
import pytest

from collector.common.locks import hold_lock
from collector.model import Trade
from ops.dataset.__main__ import run as main
from tests.ops.dataset.conftest import write_config
from tests.ops.dataset.fleetdata import DAY, H0, HOUR_MS, truth_trades, write_trades
from tests.ops.dataset.restfake import Truth

SYMBOL = "BTCUSDT"
FIRST = 1000
N = 3000


def _holes(trades: list[Trade], *ranges: tuple[int, int]) -> list[Trade]:
    return [t for t in trades if not any(a <= t.trade_id <= b for a, b in ranges)]


def _fleet(tmp_path: Path, truth: Truth) -> tuple[list[Path], list[Trade]]:
    real = truth_trades(SYMBOL, H0, FIRST, N)
    truth.trades[SYMBOL] = real
    hosts = [tmp_path / h for h in ("a", "b", "c")]
    # a: ok, misses 1200-1299 and 3000-3099; b: warn, misses 1250-1400 and 2500-2599;
    # c: QA fail, misses 1280-1320 and 3050-3060, and has a forged price for id 2000.
    # Every host misses 1280-1299; a and c miss 3050-3060 (b has them).
    write_trades(hosts[0], "binance", SYMBOL, H0, _holes(real, (1200, 1299), (3000, 3099)))
    write_trades(
        hosts[1], "binance", SYMBOL, H0, _holes(real, (1250, 1400), (2500, 2599)), verdict="warn"
    )
    forged = [t._replace(price="999.99") if t.trade_id == 2000 else t for t in real]
    write_trades(
        hosts[2],
        "binance",
        SYMBOL,
        H0,
        _holes(forged, (1280, 1320), (3050, 3060)),
        verdict="fail",
        extra_lines=["1709287200001,BTCUSDT,5000,1e,0.1,1709287200000,True,1"],
    )
    return hosts, real


def _build(tmp_path: Path, cfg: Path, hosts: list[Path], out: Path) -> int:
    argv = ["--config", str(cfg), "build", "--date", DAY, "--out", str(out)]
    for h in hosts:
        argv += ["--source", str(h)]
    return main(argv)


def _objects(out: Path) -> dict[str, str]:
    return {
        p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }


def test_trades_union_rest_fill_and_idempotent(
    tmp_path: Path, truth: Truth, rest_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every id once, from the best copy, the ids every host missed from REST; completeness
    exact; a second build writes identical bytes and makes no REST request."""
    hosts, real = _fleet(tmp_path, truth)
    cfg = write_config(tmp_path, rest_url)
    out = tmp_path / "dataset"

    assert _build(tmp_path, cfg, hosts, out) == 0
    first = _objects(out)
    requests = len(truth.requests)

    df = pl.read_parquet(out / f"trade/exchange=binance/symbol={SYMBOL}/date={DAY}/10.parquet")
    assert df.columns == [
        "event_time", "symbol", "trade_id", "price", "quantity", "trade_time",
        "is_buyer_maker", "local_time", "source",
    ]  # fmt: skip
    assert df.schema["trade_id"] == pl.Int64
    assert df.schema["price"] == pl.String
    assert df.get_column("trade_id").to_list() == list(range(FIRST, FIRST + N))
    got = [
        Trade(r[0], r[1], r[2], r[3], r[4], r[5], r[6])
        for r in df.select(df.columns[:7]).iter_rows()
    ]
    assert got == real  # the forged price of c lost to a's ok copy
    src = dict(zip(df["trade_id"].to_list(), df["source"].to_list(), strict=True))
    assert {i for i, s in src.items() if s == "rest"} == set(range(1280, 1300))
    assert all(src[i] == "b" for i in range(1200, 1250))
    assert all(src[i] == "c" for i in range(1250, 1280))  # only the failed copy had them
    assert all(src[i] == "b" for i in range(3050, 3061))
    assert all(src[i] == "a" for i in range(1000, 1200))
    assert requests == 1  # one page: 1280..1299

    comp = pl.read_parquet(out / f"completeness/date={DAY}/part-0.parquet")
    (row,) = comp.filter(pl.col("data_type") == "trade").to_dicts()
    assert row["hosts"] == ["a", "b", "c"]
    assert row["rows"] == N
    assert (row["first_id"], row["last_id"]) == (FIRST, FIRST + N - 1)
    assert row["best_host"] == "a"  # 2800 ids; b has 2749, c (failed QA) is not a candidate
    assert row["missing_before"] == 200
    assert row["filled_from_rest"] == 20
    assert row["filled_from_hosts"] == 200 - 20
    assert row["missing_after"] == 0
    assert row["from_failed_qa"] == 30  # 1250-1279: a and b both miss them, c has them
    assert row["disagreements"] == 1
    assert row["bad_rows"] == 1

    capsys.readouterr()
    assert _build(tmp_path, cfg, hosts, out) == 0
    assert _objects(out) == first
    assert len(truth.requests) == requests
    assert "0 objects written" in capsys.readouterr().out


def _recent_hour() -> int:
    return (int(time.time() * 1000) // HOUR_MS - 3) * HOUR_MS


def _run(cfg: Path, hosts: list[Path], out: Path) -> int:
    argv = ["--config", str(cfg), "run", "--out", str(out)]
    for h in hosts:
        argv += ["--source", str(h)]
    return main(argv)


def test_run_waits_builds_once_and_rebuilds_a_late_copy(
    tmp_path: Path, truth: Truth, rest_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``run`` waits for every host's QA report (before the deadline), builds a ready hour
    once, and builds it again only when a host's copy of it changes."""
    hour = _recent_hour()
    real = truth_trades(SYMBOL, hour, FIRST, 600)
    truth.trades[SYMBOL] = real
    a, b = tmp_path / "a", tmp_path / "b"
    write_trades(a, "binance", SYMBOL, hour, real)
    for h in (a, b):  # the next hour, whose first file closes the trades of this one
        write_trades(
            h,
            "binance",
            SYMBOL,
            hour + HOUR_MS,
            truth_trades(SYMBOL, hour + HOUR_MS, FIRST + 600, 10),
        )
    late = write_trades(b, "binance", SYMBOL, hour, real[:300], verdict=None)
    cfg = (
        write_config(tmp_path, rest_url)
        .read_text()
        .replace("deadline_h = 1.0", "deadline_h = 100.0")
    )
    (tmp_path / "config.toml").write_text(cfg)
    config = tmp_path / "config.toml"
    out = tmp_path / "dataset"

    assert _run(config, [a, b], out) == 0
    assert "0 hours built" in capsys.readouterr().out
    assert not out.exists() or not list(out.rglob("*.parquet"))

    late.report = late.parsed.with_name(late.parsed.name.replace(".csv.gz", ".qa.json"))
    late.report.write_text('{"status": "ok"}')
    assert _run(config, [a, b], out) == 0
    assert "1 hours built" in capsys.readouterr().out
    assert _run(config, [a, b], out) == 0
    assert "0 hours built, 1 unchanged" in capsys.readouterr().out

    write_trades(b, "binance", SYMBOL, hour, real)  # b's copy of the hour, rebuilt whole
    assert _run(config, [a, b], out) == 0
    assert "1 hours built" in capsys.readouterr().out
    assert truth.requests == []


def test_a_second_run_while_one_holds_the_lock(
    tmp_path: Path, rest_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Runs never overlap: a run that finds the lock held says so and exits 0."""
    a = tmp_path / "a"
    write_trades(a, "binance", SYMBOL, _recent_hour(), truth_trades(SYMBOL, _recent_hour(), 1, 5))
    cfg = write_config(tmp_path, rest_url)

    with hold_lock(tmp_path / "state" / ".dataset" / "build.lock"):
        assert _run(cfg, [a], tmp_path / "dataset") == 0

    assert "another build is running" in capsys.readouterr().out
