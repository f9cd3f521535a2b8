"""ops.dataset against moto's S3 server on 127.0.0.1: three hosts' deliveries, hostile keys.

The hosts' copies are put into the bucket as the sync lays them out
(``collector/{host}/{exchange}/...``); the REST fake serves the truth of the trades.
"""

from __future__ import annotations

import gzip
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import polars as pl
import pytest
from moto.server import ThreadedMotoServer

from ops.dataset.__main__ import run as main
from tests.ops.dataset.conftest import write_config
from tests.ops.dataset.fleetdata import (
    DAY,
    H0,
    book_lines,
    truth_trades,
    write_copy,
    write_trades,
)
from tests.ops.dataset.restfake import Truth

FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_CONFIG_FILE": "/nonexistent",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    "AWS_EC2_METADATA_DISABLED": "true",
}
S = 1_000_000  # µs per second


@pytest.fixture(scope="module")
def moto_port() -> Iterator[int]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    yield server.get_host_and_port()[1]
    server.stop()


@pytest.fixture(autouse=True)
def fake_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in FAKE_ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def s3(port: int):  # type: ignore[no-untyped-def]
    return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="eu-west-1")


@pytest.fixture
def bucket(moto_port: int) -> str:
    name = f"ds-{uuid.uuid4().hex[:12]}"
    s3(moto_port).create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    return name


def deliver(port: int, bucket: str, host: str, data_dir: Path) -> None:
    client = s3(port)
    for p in sorted(data_dir.rglob("*")):
        if p.is_file():
            key = f"collector/{host}/{p.relative_to(data_dir).as_posix()}"
            client.put_object(Bucket=bucket, Key=key, Body=p.read_bytes())


def s3_config(tmp_path: Path, rest_url: str, port: int, bucket: str, extra: str = "") -> Path:
    return write_config(
        tmp_path,
        rest_url,
        extra + f'[sync]\nbucket = "{bucket}"\nendpoint_url = "http://127.0.0.1:{port}"\n'
        'retry_mode = "standard"\nmax_attempts = 2\n',
    )


def _book(host_dir: Path, verdict: str, skip: list[tuple[float, float]], marks: list[dict]):  # type: ignore[no-untyped-def,type-arg]
    """One host's book hour: a state every second except in ``skip`` (seconds)."""
    lines: list[str] = []
    for k in range(3600):
        if any(a <= k < b for a, b in skip):
            continue
        local_us = (H0 + k * 1000) * 1000
        lines += book_lines("BTCUSDT", local_us, H0 + k * 1000 - 3, 100 + k % 7)
    end = {"t": "recv", "conn": "c1", "ts": (H0 + 3_600_000) / 1000, "data": "{}"}
    write_copy(
        host_dir, "binance", "BTCUSDT", "book", H0, lines, verdict=verdict, raw_events=[*marks, end]
    )


def _mark(t: str, second: float) -> dict[str, object]:
    return {"t": t, "conn": "c1", "ts": H0 / 1000 + second}


def _fleet(tmp_path: Path, truth: Truth) -> dict[str, Path]:
    hosts = {h: tmp_path / "hosts" / h for h in ("eu", "us", "ap")}
    real = truth_trades("BTC-USD", H0, 500, 1200)
    truth.trades["BTC-USD"] = real
    # Coinbase trades: eu misses 600-699, us misses 650-749, ap's copy is a corrupt gzip.
    write_trades(
        hosts["eu"], "coinbase", "BTC-USD", H0, [t for t in real if not 600 <= t.trade_id <= 699]
    )
    write_trades(
        hosts["us"],
        "coinbase",
        "BTC-USD",
        H0,
        [t for t in real if not 650 <= t.trade_id <= 749],
        verdict="warn",
    )
    bad = write_trades(hosts["ap"], "coinbase", "BTC-USD", H0, real)
    bad.parsed.write_bytes(bad.parsed.read_bytes()[:-40] + b"garbage" * 5)
    # Binance book: eu out of sync 20:00-25:00 and from 50:00.2; us disconnected
    # 40:00.5-45:00 and from 50:00.3; both back at 51:00. ap (QA fail) covers all but
    # 50:30-50:40 and is used only where neither covers.
    _book(
        hosts["eu"],
        "ok",
        [(1200, 1500), (3000.2, 3060)],
        [_mark("resync", 1200), _mark("gap", 3000.2)],
    )
    _book(
        hosts["us"],
        "ok",
        [(2400.5, 2700), (3000.3, 3060)],
        [_mark("disconnect", 2400.5), _mark("gap", 3000.3)],
    )
    _book(hosts["ap"], "fail", [(3030, 3040)], [_mark("disconnect", 3030)])
    return hosts


def test_three_hosts_from_s3(
    tmp_path: Path,
    truth: Truth,
    rest_url: str,
    moto_port: int,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Hosts discovered by listing; trades complete from hosts + REST despite a corrupt copy;
    the book is cut into in-sync intervals with the failed copy only in the hole; hostile
    keys are refused; a second build changes no object and makes no REST request."""
    hosts = _fleet(tmp_path, truth)
    for name, d in hosts.items():
        deliver(moto_port, bucket, name, d)
    client = s3(moto_port)
    for key in (
        "collector/bad host/binance/BTCUSDT/trade/parsed/2024-03-01/x.csv.gz",
        "collector/eu/binance/BTCUSDT/trade/parsed/2024-03-01/not-a-data-file.csv.gz",
        "collector/eu/binance/BTC..USDT/trade/parsed/2024-03-01/x.csv.gz",
        "collector/eu/nasdaq/AAPL/trade/parsed/2024-03-01/x.csv.gz",
    ):
        client.put_object(Bucket=bucket, Key=key, Body=gzip.compress(b"x"))
    for key in (  # what the sync puts beside the data: neither read nor refused
        "collector/eu/_status/status.json",
        "collector/eu/binance/BTCUSDT/trade/completeness/2024-03-01/"
        "20240301T000000Z_binance_BTCUSDT_trade.completeness.json",
    ):
        client.put_object(Bucket=bucket, Key=key, Body=b"{}")
    cfg = s3_config(tmp_path, rest_url, moto_port, bucket)

    assert main(["--config", str(cfg), "build", "--date", DAY]) == 0
    line = capsys.readouterr().out
    assert "2 hours built" in line
    assert "1 unreadable files" in line
    assert "4 keys refused" in line

    def read(key: str) -> pl.DataFrame:
        import io

        return pl.read_parquet(io.BytesIO(client.get_object(Bucket=bucket, Key=key)["Body"].read()))

    trades = read(f"dataset/trade/exchange=coinbase/symbol=BTC-USD/date={DAY}/10.parquet")
    assert trades["trade_id"].to_list() == list(range(500, 1700))
    src = dict(zip(trades["trade_id"].to_list(), trades["source"].to_list(), strict=True))
    assert {i for i, s in src.items() if s == "rest"} == set(range(650, 700))
    assert all(src[i] == "us" for i in range(600, 650))
    assert all(src[i] == "eu" for i in range(700, 750))
    assert len(truth.requests) == 1
    assert "after=700" in truth.requests[0]

    book = read(f"dataset/book/exchange=binance/symbol=BTCUSDT/date={DAY}/10.parquet")
    states = book.group_by("local_time", "source", maintain_order=True).len()
    by_source = states.group_by("source").len().sort("source")
    assert dict(by_source.iter_rows()) == {"us": 2401, "eu": 600 + 540, "ap": 49}
    t = (states["local_time"] // S - H0 // 1000).to_list()
    assert t == sorted(t)
    ap_seconds = [int(x) for x, s in zip(t, states["source"], strict=True) if s == "ap"]
    assert ap_seconds == [*range(3001, 3030), *range(3040, 3060)]

    comp = read(f"dataset/completeness/date={DAY}/part-0.parquet").sort("data_type")
    b, tr = comp.to_dicts()
    assert b["data_type"] == "book"
    assert b["hosts"] == ["ap", "eu", "us"]
    assert b["rows"] == 4 * (2401 + 1140 + 49)
    assert b["out_of_sync_s"] == pytest.approx(10.0)
    assert b["from_failed_qa"] == 4 * 49
    assert b["best_host"] == "us"
    assert b["best_host_out_of_sync_s"] == pytest.approx(3600 - 3240.8)
    assert tr["hosts"] == ["eu", "us"]  # ap's copy is unreadable (counted below)
    assert (tr["rows"], tr["missing_before"], tr["filled_from_rest"]) == (1200, 100, 50)
    assert (tr["missing_after"], tr["unreadable_files"]) == (0, 1)

    before = {o["Key"]: o["ETag"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert main(["--config", str(cfg), "build", "--date", DAY]) == 0
    assert "0 objects written" in capsys.readouterr().out
    after = {o["Key"]: o["ETag"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert after == before
    assert len(truth.requests) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["build", "--date", "2024/03/01"], "--date '2024/03/01' must be a UTC date"),
        (["build", "--date", "2024-02-30"], "must be a UTC date"),
        (["build", "--since", "3 weeks"], "--since '3 weeks' must be a number"),
        (["build", "--date", DAY, "--hosts", "a b"], "is not a host id"),
    ],
)
def test_bad_input_one_line_exit_2(
    tmp_path: Path,
    rest_url: str,
    moto_port: int,
    bucket: str,
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Bad dates, durations and host ids: one line on stderr, exit 2, nothing written."""
    cfg = s3_config(tmp_path, rest_url, moto_port, bucket)

    assert main(["--config", str(cfg), *argv]) == 2

    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert message in err[0]
    assert "Contents" not in s3(moto_port).list_objects_v2(Bucket=bucket)


def test_no_hosts_exit_2(
    tmp_path: Path, rest_url: str, moto_port: int, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty hosts' prefix: nothing to merge is bad input, said in one line."""
    cfg = s3_config(tmp_path, rest_url, moto_port, bucket)

    assert main(["--config", str(cfg), "build", "--date", DAY]) == 2

    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "no hosts to merge" in line


def test_missing_bucket_exit_2(
    tmp_path: Path, rest_url: str, moto_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bucket that does not exist: one line naming it, exit 2."""
    cfg = s3_config(tmp_path, rest_url, moto_port, "no-such-bucket-here")

    assert main(["--config", str(cfg), "build", "--date", DAY]) == 2

    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "s3://no-such-bucket-here" in line
