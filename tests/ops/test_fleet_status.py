"""`ops status --fleet` and the snapshots each sync publishes, against moto's S3 server on
127.0.0.1 (a real HTTP peer): three hosts' snapshots, one stale, one hostile."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from collector.config import load_config
from ops.fleetstatus import build_view, render_table
from ops.status import FleetStatus, StreamRow, render_json
from ops.sync import s3
from ops.sync.settings import build_s3_settings
from tests.conftest import REPO

HOSTS = (
    '[{ id = "euw1-a", region = "eu-west-1" }, { id = "use2-a", region = "us-east-2" }, '
    '{ id = "apne1-a", region = "ap-northeast-1" }]'
)
# The default universe placed over HOSTS with replicas 2 (tests/ops/test_fleet_placement.py
# checks the same plan): Binance never in us-east-2.
PLAN = {
    "euw1-a": [("binance", "BTCUSDT", "book"), ("binance", "BTCUSDT", "trade"),
               ("coinbase", "BTC-USD", "book"), ("coinbase", "BTC-USD", "trade")],
    "use2-a": [("coinbase", "BTC-USD", "trade")],
    "apne1-a": [("binance", "BTCUSDT", "book"), ("binance", "BTCUSDT", "trade"),
                ("coinbase", "BTC-USD", "book")],
}  # fmt: skip


@pytest.fixture(scope="module")
def moto_port() -> Iterator[int]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    yield int(server.get_host_and_port()[1])
    server.stop()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                 "AWS_DEFAULT_REGION": "eu-west-1"}.items():  # fmt: skip
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def client(port: int) -> Any:
    return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="eu-west-1")


@pytest.fixture
def bucket(moto_port: int) -> str:
    name = f"fleet-{uuid.uuid4().hex[:12]}"
    client(moto_port).create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    return name


def config(tmp_path: Path, port: int, bucket: str, *, host_id: str = "laptop",
           hosts: str = HOSTS) -> Path:  # fmt: skip
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'data_dir = "data"\nhost_id = "{host_id}"\n'
        '[exchanges.binance]\nrest_url = "http://127.0.0.1:9"\n'
        '[exchanges.coinbase]\nrest_url = "http://127.0.0.1:9"\n'
        f'[sync]\nbucket = "{bucket}"\nendpoint_url = "http://127.0.0.1:{port}"\n'
        'prefix = "collector"\nregion = "eu-west-1"\ninterval_min = 10.0\nmax_attempts = 2\n'
        f"[fleet]\nhosts = {hosts}\nreplicas = 2\n",
        encoding="utf-8",
    )
    return cfg


def snapshot(host: str, at: float, *, stopped: tuple[str, ...] = (), complete: bool = True,
             region: str = "eu-west-1") -> bytes:  # fmt: skip
    """What `ops status --json` of a healthy host says, built from ops.status's own types."""
    rows = []
    for exchange, symbol, data_type in PLAN[host]:
        summary = "complete" if complete else "INCOMPLETE (3 ids missing)"
        program = f"{exchange}-{symbol.lower()}-{data_type}"
        row = StreamRow(program, exchange, symbol, data_type, state="RUNNING", pid=100,
                        connected=True, last_frame_age_s=0.5, rows_hour=1200, qa="ok",
                        complete=complete, completeness=summary)  # fmt: skip
        if data_type in stopped:
            row.state, row.connected = "STOPPED", None
            row.problems.append("state STOPPED")
        if not complete:
            row.problems.append(f"last hour incomplete: {row.completeness}")
        rows.append(row)
    problems = [f"{r.program}: {p}" for r in rows for p in r.problems]
    status = FleetStatus(at, True, rows, [], "RUNNING", problems, host, region)
    return render_json(status).encode()


def put(port: int, bucket: str, host: str, body: bytes) -> None:
    key = f"collector/{host}/_status/status.json"
    client(port).put_object(Bucket=bucket, Key=key, Body=body)


def ops_status(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ops", "status", "--fleet", "--config", str(cfg), *args],
        cwd=REPO, capture_output=True, text=True, timeout=60, env={**os.environ},
    )  # fmt: skip


def test_every_host_complete_is_all_good_then_a_stale_host_needs_a_human(
    tmp_path: Path, moto_port: int, bucket: str
) -> None:
    """Three fresh snapshots covering the plan: exit 0. Ohio's snapshot two hours old: it is
    shown STALE, its stream counts for nothing, exit 1 naming both."""
    cfg = config(tmp_path, moto_port, bucket)
    now = time.time()
    for host in PLAN:
        put(moto_port, bucket, host, snapshot(host, now - 30))

    good = ops_status(cfg)
    put(moto_port, bucket, "use2-a", snapshot("use2-a", now - 7200, region="us-east-2"))
    bad = ops_status(cfg)
    as_json = json.loads(ops_status(cfg, "--json").stdout)

    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.endswith("all good: every tracked stream is collected where planned\n")
    header = good.stdout.splitlines()[7]
    assert header.split() == ["STREAM", "HOST", "STATE", "CONN", "LAST", "FRAME", "ROWS/H", "QA",
                              "LAST", "HOUR"]  # fmt: skip
    assert good.stdout.count("  RUNNING  yes") == 8  # every placement, one row each
    assert bad.returncode == 1
    assert "use2-a   us-east-2       STALE 2.0h ago" in bad.stdout
    assert "coinbase BTC-USD trade  use2-a [STALE]" in bad.stdout
    assert bad.stdout.endswith(
        "NEEDS A HUMAN (2):\n"
        "  - use2-a: status snapshot stale (2.0h old)\n"
        "  - coinbase BTC-USD trade: collected by 1 of 2 host(s) (not on use2-a)\n"
    )
    assert as_json["ok"] is False
    assert [h["snapshot"] for h in as_json["hosts"]] == ["ok", "stale", "ok"]
    first = as_json["rows"][0]
    assert (first["host"], first["state"], first["qa"], first["completeness"]) == (
        "euw1-a", "RUNNING", "ok", "complete",
    )  # fmt: skip


def test_what_hosts_report_and_what_nobody_collects(
    tmp_path: Path, moto_port: int, bucket: str
) -> None:
    """A host's own problems (a stopped collector, an incomplete hour) are the fleet's; a
    host without a snapshot is missing and its streams are collected by fewer hosts."""
    cfg = config(tmp_path, moto_port, bucket)
    now = time.time()
    put(moto_port, bucket, "euw1-a", snapshot("euw1-a", now, stopped=("book",)))
    put(moto_port, bucket, "apne1-a", snapshot("apne1-a", now, stopped=("book",), complete=False))

    proc = ops_status(cfg)

    assert proc.returncode == 1
    problems = proc.stdout.split("NEEDS A HUMAN (", 1)[1].splitlines()[1:]
    incomplete = "last hour incomplete: INCOMPLETE (3 ids missing)"
    assert problems == [
        "  - euw1-a: binance-btcusdt-book: state STOPPED",
        "  - euw1-a: coinbase-btc-usd-book: state STOPPED",
        "  - use2-a: status snapshot missing",
        "  - apne1-a: binance-btcusdt-book: state STOPPED",
        f"  - apne1-a: binance-btcusdt-book: {incomplete}",
        f"  - apne1-a: binance-btcusdt-trade: {incomplete}",
        "  - apne1-a: coinbase-btc-usd-book: state STOPPED",
        f"  - apne1-a: coinbase-btc-usd-book: {incomplete}",
        "  - binance BTCUSDT book: collected by no host (expected on euw1-a, apne1-a)",
        "  - coinbase BTC-USD book: collected by no host (expected on euw1-a, apne1-a)",
        "  - coinbase BTC-USD trade: collected by 1 of 2 host(s) (not on use2-a)",
    ]
    assert "INCOMPLETE (3 ids missing)" in proc.stdout
    assert "use2-a   us-east-2       MISSING" in proc.stdout


def test_a_hostile_snapshot_cannot_forge_rows_or_lines(
    tmp_path: Path, moto_port: int, bucket: str
) -> None:
    """A row of a foreign grammar is refused (counted), a value with a newline is shown
    repr'd on its one line, a snapshot that is not JSON is unreadable."""
    cfg = config(tmp_path, moto_port, bucket)
    now = time.time()
    evil = json.loads(snapshot("euw1-a", now))
    evil["streams"][0]["qa"] = "ok\nNEEDS A HUMAN (0)"
    evil["streams"].append({"exchange": "binance", "symbol": "BTC\n[program:x]",
                            "data_type": "trade", "state": "RUNNING"})  # fmt: skip
    evil["streams"].append("not a row")
    evil["problems"] = [7, "fine%s"]
    put(moto_port, bucket, "euw1-a", json.dumps(evil).encode())
    put(moto_port, bucket, "use2-a", b"\xff\xfe not json")
    put(moto_port, bucket, "apne1-a", snapshot("apne1-a", now))
    s3s = build_s3_settings(load_config(cfg))

    view = build_view(load_config(cfg), s3.make_client(s3s), s3s)
    text = render_table(view)

    assert [h.snapshot for h in view.hosts] == ["ok", "unreadable: not JSON", "ok"]
    assert "euw1-a: 2 stream row(s) of its snapshot not understood" in view.problems
    assert "euw1-a: fine%s" in view.problems
    assert "'ok\\nNEEDS A HUMAN …" in text  # repr'd, cut to the cell's width
    assert "[program:x]" not in text
    assert all(line.isprintable() for line in text.splitlines())


def test_hosts_are_found_by_listing_when_none_are_configured(
    tmp_path: Path, moto_port: int, bucket: str
) -> None:
    """Without [fleet] hosts: every host that published is read, and each is expected to
    collect the whole universe (every host runs everything)."""
    cfg = config(tmp_path, moto_port, bucket, hosts="[]")
    put(moto_port, bucket, "euw1-a", snapshot("euw1-a", time.time()))
    client(moto_port).put_object(Bucket=bucket, Key="collector/not a host/x", Body=b"")

    proc = ops_status(cfg, "--json")

    got = json.loads(proc.stdout)
    assert proc.returncode == 0, proc.stdout
    assert [h["id"] for h in got["hosts"]] == ["euw1-a"]


def test_each_sync_publishes_this_host_s_status(
    tmp_path: Path, moto_port: int, bucket: str
) -> None:
    """`ops.sync run` on euw1-a ends with its `ops status --json` in
    {prefix}/euw1-a/_status/status.json: its share, its problems (no supervisord here)."""
    cfg = config(tmp_path, moto_port, bucket, host_id="euw1-a")
    now = time.time()
    st = tmp_path / "data" / "binance" / "BTCUSDT" / "trade" / "status.json"
    st.parent.mkdir(parents=True)
    st.write_text(json.dumps({"updated_at": now, "connected": True, "last_frame_at": now - 1,
                              "hour_rows": 42}))  # fmt: skip

    proc = subprocess.run(
        [sys.executable, "-m", "ops.sync", "run", "--config", str(cfg)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    body = client(moto_port).get_object(Bucket=bucket, Key="collector/euw1-a/_status/status.json")
    published = json.loads(body["Body"].read())

    assert proc.returncode == 0, proc.stderr
    assert (published["host_id"], published["region"]) == ("euw1-a", "eu-west-1")
    assert [r["program"] for r in published["streams"]] == [
        "binance-btcusdt-book", "binance-btcusdt-trade", "coinbase-btc-usd-book",
        "coinbase-btc-usd-trade",
    ]  # fmt: skip
    assert published["streams"][1]["rows_hour"] == 42
    assert published["problems"][0].startswith("supervisord is not running")
    assert abs(published["at"] - now) < 30


def test_no_bucket_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """The fleet view needs the fleet's bucket."""
    cfg = tmp_path / "config.toml"
    cfg.write_text('data_dir = "data"\n')

    proc = ops_status(cfg)

    assert proc.returncode == 2
    assert proc.stderr == f"ops: error: {cfg} [sync]: status --fleet needs a bucket (it is empty)\n"
