"""One universe for the whole fleet (``[secmaster] universe = "s3"``), end to end: two hosts'
configs share a bucket on moto's S3 server (loopback); what one host tracks is in the programs
the other renders after one ``secmaster sync --apply`` (the periodic job's command, which runs
``ops.fleet apply`` in a real subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from ops.replay import ReplayThread
from tests.secmaster.conftest import REPO, cli, query, write_config

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def bucket(s3_url: str) -> str:
    name = f"fleet-{uuid.uuid4().hex[:10]}"
    _client(s3_url).create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    return name


def _client(url: str) -> Any:
    return boto3.client("s3", endpoint_url=url, region_name="eu-west-1")


def host(
    root: Path, replay: ReplayThread, bucket: str, s3_url: str, *, apply_cmd: str = ""
) -> Path:
    """One host's config: its own data dir and programs file, the fleet's bucket."""
    root.mkdir()
    cfg = write_config(root, replay, universe="s3", apply_cmd=apply_cmd)
    with cfg.open("a", encoding="utf-8") as f:
        f.write(
            f'[sync]\nbucket = "{bucket}"\nprefix = "fleet"\nendpoint_url = "{s3_url}"\n'
            '[fleet]\nprograms_file = "fleet/programs.conf"\nlog_dir = "fleet/log"\n'
        )
    assert cli("--config", str(cfg), "sync")[0] == 0
    return cfg


def fleet(cfg: Path, command: str) -> int:
    """``python -m ops.fleet COMMAND`` as the periodic job runs it (its own process: the CLI
    configures logging, which must not happen inside the test process)."""
    argv = [sys.executable, "-m", "ops.fleet", "--config", str(cfg), command]
    return subprocess.run(argv, cwd=REPO, capture_output=True, timeout=60).returncode


def programs(cfg: Path) -> set[str]:
    text = (cfg.parent / "fleet" / "programs.conf").read_text(encoding="utf-8")
    names = {line[9:-1] for line in text.splitlines() if line.startswith("[program:")}
    return {n for n in names if n.split("-")[0] in ("binance", "coinbase")}  # the collectors


def test_a_track_on_one_host_reaches_another_after_one_apply(
    tmp_path: Path, replay: ReplayThread, bucket: str, s3_url: str
) -> None:
    """A tracks, B's periodic `sync --apply` renders it; A untracks, B's next apply drops it.
    B's own tracked table is never used."""
    a = host(tmp_path / "a", replay, bucket, s3_url)
    b = host(tmp_path / "b", replay, bucket, s3_url, apply_cmd="python -m ops.fleet apply")
    assert cli("--config", str(b), "sync", "--apply")[0] == 0
    before = programs(b)

    tracked = cli("--config", str(a), "track", "binance", "ETHBTC", "--data-types", "trade")
    applied = cli("--config", str(b), "sync", "--apply")
    after_track = programs(b)
    untracked = cli("--config", str(a), "untrack", "coinbase", "BTC-USD")
    assert fleet(b, "apply") == 0
    after_untrack = programs(b)

    default = {"binance-btcusdt-book", "binance-btcusdt-trade"}
    default |= {"coinbase-btc-usd-book", "coinbase-btc-usd-trade"}
    assert before == default
    assert tracked == (0, "tracking binance:ETHBTC:trade\n")
    assert applied[0] == 0
    assert after_track == default | {"binance-ethbtc-trade"}
    assert untracked[0] == 0
    assert after_untrack == {
        "binance-btcusdt-book",
        "binance-btcusdt-trade",
        "binance-ethbtc-trade",
    }
    doc = json.loads(
        _client(s3_url).get_object(Bucket=bucket, Key="fleet/universe.json")["Body"].read()
    )
    assert [(s["exchange"], s["symbol"], s["data_type"]) for s in doc["streams"]] == [
        ("binance", "BTCUSDT", "book"),
        ("binance", "BTCUSDT", "trade"),
        ("binance", "ETHBTC", "trade"),
    ]
    assert [(s["symbol"], s["data_type"]) for s in doc["removed"]] == [
        ("BTC-USD", "book"),
        ("BTC-USD", "trade"),
    ]
    assert query(tmp_path / "b", "SELECT count(*) FROM tracked") == [(0,)]


def test_an_unreachable_bucket_fails_loudly_and_renders_nothing(
    tmp_path: Path, replay: ReplayThread, bucket: str, s3_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """track: exit 1 and one line; the fleet render: exit 1, the programs file unchanged
    (never an empty fleet because the universe could not be read)."""
    cfg = host(tmp_path / "a", replay, bucket, s3_url)
    assert fleet(cfg, "render") == 0
    rendered = (cfg.parent / "fleet" / "programs.conf").read_bytes()
    text = cfg.read_text(encoding="utf-8").replace(s3_url, "http://127.0.0.1:1")
    cfg.write_text(text, encoding="utf-8")
    capsys.readouterr()

    code, out = cli("--config", str(cfg), "track", "binance", "ETHBTC", "--data-types", "trade")
    err = capsys.readouterr().err
    render = fleet(cfg, "render")

    assert (code, out) == (1, "")
    assert err.splitlines()[-1].startswith(
        f"secmaster: track failed: universe s3://{bucket}/fleet/universe.json: S3 unreachable:"
    )
    assert render == 1
    assert (cfg.parent / "fleet" / "programs.conf").read_bytes() == rendered


def test_a_broken_document_is_refused_not_used(
    tmp_path: Path, replay: ReplayThread, bucket: str, s3_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """A document with a non-string field: `tracked` exits 1 naming it; nothing is written."""
    cfg = host(tmp_path / "a", replay, bucket, s3_url)
    body = b'{"version": 1, "initialized": true, "streams": [{"exchange": ["x"]}]}'
    _client(s3_url).put_object(Bucket=bucket, Key="fleet/universe.json", Body=body)
    capsys.readouterr()

    code, _ = cli("--config", str(cfg), "untrack", "binance", "BTCUSDT")

    assert code == 1
    assert "a field is not a string" in capsys.readouterr().err
    got = _client(s3_url).get_object(Bucket=bucket, Key="fleet/universe.json")["Body"].read()
    assert got == body


def test_s3_without_a_bucket_is_a_config_error(
    tmp_path: Path, replay: ReplayThread, capsys: pytest.CaptureFixture[str]
) -> None:
    """universe = "s3" needs [sync] bucket: exit 2, one line, before anything is opened."""
    cfg = write_config(tmp_path, replay, universe="s3")

    code, _ = cli("--config", str(cfg), "tracked")

    assert code == 2
    assert "universe = 's3' needs [sync] bucket" in capsys.readouterr().err
