"""S3 sync against moto's S3 server on 127.0.0.1 (a real HTTP peer, no patching).

Requests are counted, delayed or answered with 503 SlowDown by a small proxy in front of moto
(tests/ops/s3proxy.py). Credentials are fake and come from the environment.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import signal
import sqlite3
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

from collector.common.errors import ConfigError
from collector.common.locks import LockBusyError, hold_lock
from collector.config import load_config
from ops.sync.__main__ import main
from ops.sync.run import run_once
from ops.sync.s3 import checksum_matches, composite_checksum
from ops.sync.settings import MIB, S3Settings, build_s3_settings
from tests.ops.s3proxy import S3Proxy
from tests.ops.test_periodic import wait_state

REPO = Path(__file__).resolve().parents[2]
DAY = "2024-03-01"
BASE = f"binance/BTCUSDT/trade/parsed/{DAY}"
RAW = f"binance/BTCUSDT/trade/raw/{DAY}"
FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_CONFIG_FILE": "/nonexistent",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    "AWS_EC2_METADATA_DISABLED": "true",
}


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


@pytest.fixture
def bucket(moto_port: int) -> str:
    name = f"sync-{uuid.uuid4().hex[:12]}"
    direct(moto_port).create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    return name


@pytest.fixture
def proxy(moto_port: int) -> Iterator[S3Proxy]:
    with S3Proxy(moto_port) as p:
        yield p


def direct(port: int) -> Any:
    """A plain boto3 client straight to moto, for the tests' own checks."""
    return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="eu-west-1")


def write_config(tmp_path: Path, endpoint: str, bucket: str, **sync: object) -> Path:
    values: dict[str, object] = {
        "bucket": bucket,
        "prefix": "collector",
        "endpoint_url": endpoint,
        "region": "eu-west-1",
        "concurrency": 4,
        "retention_days": -1.0,
        "min_age_s": 2.0,
        "multipart_threshold_mb": 5,
        "part_size_mb": 5,
        "retry_mode": "standard",
        "max_attempts": 6,
    }
    values.update(sync)
    lines = [f'data_dir = "{tmp_path / "data"}"', 'host_id = "dub-1"', "", "[sync]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def settings_of(config: Path) -> S3Settings:
    return build_s3_settings(load_config(config))


def put_file(data: Path, rel: str, body: bytes, age_s: float = 60.0) -> Path:
    p = data / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(body)
    t = time.time() - age_s
    os.utime(p, (t, t))
    return p


def gz(text: str) -> bytes:
    return gzip.compress(text.encode(), mtime=0)


def b64sha(body: bytes) -> str:
    return base64.b64encode(hashlib.sha256(body).digest()).decode()


def keys_in(port: int, bucket: str) -> set[str]:
    pages = direct(port).get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def body_of(port: int, bucket: str, key: str) -> bytes:
    data: bytes = direct(port).get_object(Bucket=bucket, Key=key)["Body"].read()
    return data


def ledger_rows(s: S3Settings) -> dict[str, tuple[int, str, str]]:
    db = sqlite3.connect(s.ledger_path)
    try:
        rows = db.execute("SELECT path, size, s3_checksum, key FROM delivered").fetchall()
    finally:
        db.close()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def key(rel: str) -> str:
    return f"collector/dub-1/{rel}"


class TestChecksums:
    def test_composite_is_checksum_of_part_checksums(self) -> None:
        """The multipart checksum is SHA-256 over the binary part digests, suffixed -N."""
        parts = [hashlib.sha256(b"a").digest(), hashlib.sha256(b"b").digest()]

        got = composite_checksum(parts)

        assert got == base64.b64encode(hashlib.sha256(parts[0] + parts[1]).digest()).decode() + "-2"

    def test_matches_tolerates_missing_suffix_but_not_other_part_count(self) -> None:
        """A HEAD without the -N suffix matches; a different part count or value does not."""
        assert checksum_matches("abc=-3", "abc=")
        assert checksum_matches("abc=-3", "abc=-3")
        assert not checksum_matches("abc=-3", "abc=-2")
        assert not checksum_matches("abc=", "abd=")
        assert not checksum_matches("abc=", None)


def test_first_sync_uploads_closed_files_with_keys_and_checksums(
    tmp_path: Path, moto_port: int, bucket: str
) -> None:
    """Closed files and QA reports go up under {prefix}/{host_id}/ with S3 SHA-256 checksums;
    .part, status.json, young files and anything off the layout are left alone."""
    cfg = write_config(tmp_path, f"http://127.0.0.1:{moto_port}", bucket)
    s = settings_of(cfg)
    data = s.data_dir
    big = os.urandom(11 * MIB)  # multipart: 5 + 5 + 1 MiB
    wanted = {
        f"{BASE}/20240301T000000Z_binance_BTCUSDT_trade.csv.gz": gz("event_time\n1\n"),
        f"{BASE}/20240301T000000Z_binance_BTCUSDT_trade.qa.json": b'{"ok": true}',
        f"{RAW}/20240301T000000Z_binance_BTCUSDT_trade.jsonl.gz": gz('{"t":"recv"}\n'),
        f"coinbase/BTC-USD/book/raw/{DAY}/20240301T010000Z_coinbase_BTC-USD_book.jsonl.gz": big,
    }
    for rel, body in wanted.items():
        put_file(data, rel, body)
    ignored = {
        f"{BASE}/20240301T010000Z_binance_BTCUSDT_trade.csv.gz.part": b"open",
        f"{BASE}/20240301T020000Z_binance_BTCUSDT_trade.csv.gz": b"just closed",  # young
        f"{BASE}/notes.txt": b"x",
        "binance/BTCUSDT/trade/status.json": b"{}",
        "binance/BTCUSDT/trade/parsed/latest/20240301T000000Z_x.csv.gz": b"x",
        "binance/BTCUSDT/trade/other/2024-03-01/20240301T000000Z_x.csv.gz": b"x",
        "secmaster.sqlite": b"x",
    }
    for rel, body in ignored.items():
        put_file(data, rel, body, age_s=0.0 if "020000Z" in rel else 60.0)

    sm = run_once(s)

    assert (sm.files, sm.young, sm.uploaded, sm.failures) == (4, 1, 4, 0)
    assert sm.bytes == sum(len(b) for b in wanted.values())
    assert keys_in(moto_port, bucket) == {key(r) for r in wanted}
    client = direct(moto_port)
    for rel, body in wanted.items():
        assert body_of(moto_port, bucket, key(rel)) == body
        h = client.head_object(Bucket=bucket, Key=key(rel), ChecksumMode="ENABLED")
        assert h["Metadata"]["sha256"] == hashlib.sha256(body).hexdigest()
        if len(body) >= 5 * MIB:
            parts = [hashlib.sha256(body[i : i + 5 * MIB]).digest() for i in (0, 5 * MIB, 10 * MIB)]
            expected = composite_checksum(parts)
        else:
            expected = b64sha(body)
        assert checksum_matches(expected, h["ChecksumSHA256"])
    rows = ledger_rows(s)
    assert set(rows) == set(wanted)
    for rel, (size, _, k) in rows.items():
        assert (size, k) == (len(wanted[rel]), key(rel))
    for rel, body in ignored.items():
        assert (data / rel).read_bytes() == body


def test_second_sync_makes_no_requests(tmp_path: Path, bucket: str, proxy: S3Proxy) -> None:
    """A run with nothing new sends no request at all to S3 (no listing, no HEAD)."""
    s = settings_of(write_config(tmp_path, proxy.url, bucket))
    for i in range(20):
        put_file(
            s.data_dir, f"{BASE}/20240301T{i:02d}0000Z_binance_BTCUSDT_trade.csv.gz", gz(str(i))
        )
    first = run_once(s)
    proxy.requests.clear()

    second = run_once(s)

    assert (first.uploaded, second.uploaded, second.unchanged) == (20, 0, 20)
    assert proxy.requests == []


def test_verify_repairs_objects_changed_or_deleted_remotely(
    tmp_path: Path, moto_port: int, bucket: str, proxy: S3Proxy
) -> None:
    """--verify HEADs every ledger entry and uploads again what is missing or different."""
    s = settings_of(write_config(tmp_path, proxy.url, bucket))
    bodies = {
        f"{BASE}/20240301T{i:02d}0000Z_binance_BTCUSDT_trade.csv.gz": gz(str(i)) for i in range(5)
    }
    for rel, body in bodies.items():
        put_file(s.data_dir, rel, body)
    run_once(s)
    changed, deleted = sorted(bodies)[:2]
    direct(moto_port).put_object(Bucket=bucket, Key=key(changed), Body=b"tampered")
    direct(moto_port).delete_object(Bucket=bucket, Key=key(deleted))
    assert run_once(s).uploaded == 0  # a plain run trusts the ledger
    proxy.requests.clear()

    sm = run_once(s, verify=True)

    assert (sm.checked, sm.repaired, sm.uploaded, sm.failures) == (5, 2, 2, 0)
    assert sorted(t for m, t, _ in proxy.requests if m == "PUT") == sorted(
        f"/{bucket}/{key(r)}" for r in (changed, deleted)
    )
    for rel, body in bodies.items():
        assert body_of(moto_port, bucket, key(rel)) == body
    assert run_once(s, verify=True).repaired == 0


def test_rewritten_qa_report_is_uploaded_again_touched_file_is_not(
    tmp_path: Path, moto_port: int, bucket: str, proxy: S3Proxy
) -> None:
    """A QA report rewritten with new content goes up again; a file touched with the same
    content only has its ledger mtime updated."""
    s = settings_of(write_config(tmp_path, proxy.url, bucket))
    report = f"{BASE}/20240301T000000Z_binance_BTCUSDT_trade.qa.json"
    data_file = f"{BASE}/20240301T000000Z_binance_BTCUSDT_trade.csv.gz"
    put_file(s.data_dir, report, b'{"ok": false}', age_s=120)
    put_file(s.data_dir, data_file, gz("a"), age_s=120)
    run_once(s)
    put_file(s.data_dir, report, b'{"ok": true, "rerun": 1}', age_s=30)
    put_file(s.data_dir, data_file, gz("a"), age_s=30)
    proxy.requests.clear()

    sm = run_once(s)

    assert (sm.uploaded, sm.unchanged) == (1, 1)
    assert [(m, t) for m, t, _ in proxy.requests] == [("PUT", f"/{bucket}/{key(report)}")]
    assert body_of(moto_port, bucket, key(report)) == b'{"ok": true, "rerun": 1}'
    proxy.requests.clear()
    assert run_once(s).uploaded == 0
    assert proxy.requests == []


def test_retention_deletes_only_verified_old_files(
    tmp_path: Path, moto_port: int, bucket: str, proxy: S3Proxy
) -> None:
    """Only files delivered in an earlier run, confirmed by HEAD now and older than
    retention_days are deleted; a file missing in S3 is uploaded again and kept."""
    cfg_keep = write_config(tmp_path, proxy.url, bucket, retention_days=-1.0)
    s_keep = settings_of(cfg_keep)
    data = s_keep.data_dir
    old = 5 * 86400.0
    a = "binance/BTCUSDT/trade/parsed/2024-02-01/20240201T000000Z_binance_BTCUSDT_trade.csv.gz"
    b = f"{BASE}/20240301T000000Z_binance_BTCUSDT_trade.csv.gz"
    c = f"{BASE}/20240301T010000Z_binance_BTCUSDT_trade.csv.gz"
    d = f"{BASE}/20240301T020000Z_binance_BTCUSDT_trade.csv.gz"
    part = f"{BASE}/20240301T030000Z_binance_BTCUSDT_trade.csv.gz.part"
    put_file(data, a, gz("a"), age_s=old)
    put_file(data, b, gz("b"), age_s=old)
    put_file(data, c, gz("c"), age_s=86400.0)
    put_file(data, part, b"open", age_s=old)
    assert run_once(s_keep).deleted == 0  # retention_days < 0: keep everything
    put_file(data, d, gz("d"), age_s=old)  # old, but not delivered yet
    direct(moto_port).delete_object(Bucket=bucket, Key=key(b))
    s = settings_of(write_config(tmp_path, proxy.url, bucket, retention_days=3.0))

    sm = run_once(s)

    assert (sm.deleted, sm.repaired, sm.uploaded, sm.failures) == (1, 1, 2, 0)
    assert not (data / a).exists()
    assert not (data / a).parent.exists()  # its emptied date directory went too
    assert all((data / r).exists() for r in (b, c, d, part))
    assert keys_in(moto_port, bucket) == {key(r) for r in (a, b, c, d)}
    sm3 = run_once(s)
    assert sm3.deleted == 2  # b and d, now confirmed
    assert sorted(p.name for p in (data / BASE).iterdir()) == sorted(
        Path(r).name for r in (c, part)
    )


def test_refused_files_do_not_stop_retention_of_confirmed_ones(
    tmp_path: Path, moto_port: int, bucket: str, proxy: S3Proxy
) -> None:
    """One key refused (403 AccessDenied) on HEAD and another on PUT: the other delivered,
    HEAD-confirmed old file is still deleted locally; the refused ones stay and are failures."""
    s_keep = settings_of(write_config(tmp_path, proxy.url, bucket, retention_days=-1.0))
    data = s_keep.data_dir
    old = 5 * 86400.0
    a = f"{BASE}/20240301T000000Z_binance_BTCUSDT_trade.csv.gz"
    b = f"{BASE}/20240301T010000Z_binance_BTCUSDT_trade.csv.gz"
    c = f"{BASE}/20240301T020000Z_binance_BTCUSDT_trade.csv.gz"
    put_file(data, a, gz("a"), age_s=old)
    put_file(data, b, gz("b"), age_s=old)
    assert run_once(s_keep).uploaded == 2
    put_file(data, c, gz("c"), age_s=old)
    proxy.deny = {f"/{bucket}/{key(a)}", f"/{bucket}/{key(c)}"}
    s = settings_of(write_config(tmp_path, proxy.url, bucket, retention_days=3.0))

    sm = run_once(s)

    assert (sm.deleted, sm.checked, sm.uploaded, sm.failures) == (1, 1, 0, 2)
    assert sorted(sm.failed_paths) == [a, c]
    assert not (data / b).exists()
    assert (data / a).exists()
    assert (data / c).exists()
    assert keys_in(moto_port, bucket) == {key(a), key(b)}


def test_one_refused_key_does_not_stop_the_other_uploads(
    tmp_path: Path, moto_port: int, bucket: str, proxy: S3Proxy
) -> None:
    """The first file of the run is refused (403 AccessDenied for its key only): every other
    file is still uploaded, the run is not aborted, the refused file is one failure."""
    s = settings_of(write_config(tmp_path, proxy.url, bucket, concurrency=1))
    refused = f"{BASE}/20240301T000000Z_binance_BTCUSDT_trade.csv.gz"
    put_file(s.data_dir, refused, os.urandom(4096))  # biggest: uploaded first
    others = [f"{RAW}/20240301T{i:02d}0000Z_binance_BTCUSDT_trade.jsonl.gz" for i in range(6)]
    for rel in others:
        put_file(s.data_dir, rel, gz(rel))
    proxy.deny = {f"/{bucket}/{key(refused)}"}

    sm = run_once(s)

    assert (sm.uploaded, sm.failures, sm.aborted) == (6, 1, "")
    assert sm.failed_paths == [refused]
    assert keys_in(moto_port, bucket) == {key(r) for r in others}
    assert proxy.count("PUT", f"/{bucket}/{key(refused)}") == 1  # AccessDenied is not retried


def test_every_key_refused_aborts_after_a_few_files(
    tmp_path: Path, bucket: str, proxy: S3Proxy
) -> None:
    """When every key is refused (a role without s3:PutObject), the run stops after a few
    files in a row were refused instead of trying each of them; exit code 1."""
    cfg = write_config(tmp_path, proxy.url, bucket, concurrency=1)
    s = settings_of(cfg)
    rels = [f"{BASE}/20240301T000000Z_f{i:04d}.csv.gz" for i in range(40)]
    for rel in rels:
        put_file(s.data_dir, rel, gz(rel))
    proxy.deny = {f"/{bucket}/{key(r)}" for r in rels}

    sm = run_once(s)
    cli = subprocess.run(
        [sys.executable, "-m", "ops.sync", "run", "--config", str(cfg)],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert sm.aborted == "AccessDenied"
    assert sm.uploaded == 0
    assert 8 <= sm.failures <= 10  # the limit, plus what was in flight (2 x concurrency)
    assert cli.returncode == 1
    assert '"event": "sync.aborted"' in cli.stderr


def test_endpoint_with_userinfo_is_refused_without_echoing_it(tmp_path: Path) -> None:
    """[sync] endpoint_url with user:password@ is refused; the message never shows them."""
    cfg = write_config(tmp_path, "http://key:s3cr3t@127.0.0.1:9000", "b")

    with pytest.raises(ConfigError) as info:
        settings_of(cfg)

    msg = str(info.value)
    assert "must not contain user:password@" in msg
    assert "'http://***@127.0.0.1:9000'" in msg
    assert "s3cr3t" not in msg
    assert "key:" not in msg


def test_slowdown_503_is_retried(tmp_path: Path, moto_port: int, bucket: str) -> None:
    """A server answering 503 SlowDown to the first requests is retried until it accepts."""
    with S3Proxy(moto_port, fail_first=2) as proxy:
        cfg = write_config(tmp_path, proxy.url, bucket, concurrency=1, retry_mode="adaptive")
        s = settings_of(cfg)
        rels = [f"{BASE}/20240301T{i:02d}0000Z_binance_BTCUSDT_trade.csv.gz" for i in range(2)]
        for rel in rels:
            put_file(s.data_dir, rel, gz(rel))

        sm = run_once(s)

        assert (sm.uploaded, sm.failures) == (2, 0)
        statuses = [st for _, _, st in proxy.requests]
        assert statuses == [503, 503, 200, 200]
    assert keys_in(moto_port, bucket) == {key(r) for r in rels}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(FAKE_ENV)
    env["PYTHONPATH"] = str(REPO)
    return env


@pytest.mark.slow
def test_killed_run_resumes_without_reuploading_finished_files(
    tmp_path: Path, moto_port: int, bucket: str
) -> None:
    """kill -9 in the middle of a run; the next run uploads only what the ledger lacks."""
    with S3Proxy(moto_port, delay_s=0.01) as proxy:
        cfg = write_config(tmp_path, proxy.url, bucket, concurrency=2)
        s = settings_of(cfg)
        rels = [f"{BASE}/20240301T000000Z_f{i:04d}.csv.gz" for i in range(300)]
        for rel in rels:
            put_file(s.data_dir, rel, gz(rel))
        proc = subprocess.Popen(
            [sys.executable, "-m", "ops.sync", "run", "--config", str(cfg)],
            cwd=REPO,
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        done_before: set[str] = set()
        while time.monotonic() < deadline and len(done_before) < 40:
            time.sleep(0.05)
            if s.ledger_path.exists():
                try:
                    done_before = set(ledger_rows(s))
                except sqlite3.OperationalError:
                    continue
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        done_before = set(ledger_rows(s))
        assert 40 <= len(done_before) < 300

        sm = run_once(s)

        assert sm.failures == 0
        assert set(ledger_rows(s)) == set(rels)
        assert keys_in(moto_port, bucket) == {key(r) for r in rels}
        puts = {rel: proxy.count("PUT", f"/{bucket}/{key(rel)}") for rel in rels}
        assert {puts[rel] for rel in done_before} == {1}
        assert sm.uploaded == 300 - len(done_before)
        # only uploads in flight or not yet committed at the kill (<= 0.25 s of work) went twice
        twice = {rel for rel, n in puts.items() if n == 2}
        assert set(puts.values()) <= {1, 2}
        assert len(twice) <= 40
        assert not twice & done_before
        assert body_of(moto_port, bucket, key(rels[-1])) == gz(rels[-1])


def test_run_exits_zero_when_another_run_holds_the_lock(
    tmp_path: Path, bucket: str, proxy: S3Proxy
) -> None:
    """`run` reports another sync is running, exits 0 and sends nothing."""
    cfg = write_config(tmp_path, proxy.url, bucket)
    s = settings_of(cfg)
    put_file(s.data_dir, f"{BASE}/20240301T000000Z_binance_BTCUSDT_trade.csv.gz", gz("x"))

    with hold_lock(s.lock_path):
        with pytest.raises(LockBusyError), hold_lock(s.lock_path):
            pass
        done = subprocess.run(
            [sys.executable, "-m", "ops.sync", "run", "--config", str(cfg)],
            cwd=REPO,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=30,
        )

    assert done.returncode == 0
    assert "sync.busy" in done.stderr
    assert "another sync is running" in done.stderr
    assert proxy.requests == []


# `ops.sync schedule` is an alias of the one periodic loop, `ops.periodic sync`.
SCHEDULE = {
    "ops.periodic sync": ["ops.periodic", "sync"],
    "ops.sync schedule": ["ops.sync", "schedule"],
}


@pytest.mark.parametrize("program", list(SCHEDULE))
def test_schedule_idles_without_bucket_and_stops_on_sigterm(tmp_path: Path, program: str) -> None:
    """No bucket: `schedule` says so once, stays up, and exits 0 on SIGTERM."""
    cfg = write_config(tmp_path, "", "")
    proc = subprocess.Popen(
        [sys.executable, "-m", *SCHEDULE[program], "--config", str(cfg)],
        cwd=REPO,
        env=_env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    try:
        line = proc.stderr.readline()
        time.sleep(0.3)
        assert proc.poll() is None

        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert rc == 0
    assert json.loads(line)["event"] == "sync.disabled"
    assert proc.stderr.read().count("sync.disabled") == 0


def test_schedule_runs_at_once_then_stops_cleanly(
    tmp_path: Path, moto_port: int, bucket: str
) -> None:
    """`schedule` runs a sync at start, logs a summary, and stops on SIGTERM with exit 0."""
    cfg = write_config(tmp_path, f"http://127.0.0.1:{moto_port}", bucket, interval_min=60.0)
    s = settings_of(cfg)
    rel = f"{BASE}/20240301T000000Z_binance_BTCUSDT_trade.csv.gz"
    put_file(s.data_dir, rel, gz("x"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ops.periodic", "sync", "--config", str(cfg)],
        cwd=REPO,
        env=_env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    events: list[dict[str, Any]] = []
    try:
        while not events or events[-1]["event"] != "sync.summary":
            events.append(json.loads(proc.stderr.readline()))
        # the loop records the run once its command has exited (then the stop finds no child)
        state = wait_state(s.data_dir / ".fleet" / "periodic" / "sync.json", lambda st: st["runs"])

        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert rc == 0
    assert (events[-1]["uploaded"], events[-1]["failures"]) == (1, 0)
    # the data file, and the host's status snapshot every run publishes (issue 21)
    assert keys_in(moto_port, bucket) == {key(rel), "collector/dub-1/_status/status.json"}
    assert "testing" not in proc.stderr.read()  # credentials are never logged
    assert (state["runs"], state["last_exit"], state["interval_s"]) == (1, [0], 3600.0)


def test_run_without_bucket_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`run` with no bucket configured logs sync.disabled and exits 0, writing nothing."""
    cfg = write_config(tmp_path, "", "")
    put_file(tmp_path / "data", f"{BASE}/20240301T000000Z_binance_BTCUSDT_trade.csv.gz", b"x")

    rc = main(["run", "--config", str(cfg)])

    assert rc == 0
    assert "sync.disabled" in capsys.readouterr().err
    assert not (tmp_path / "data" / ".sync").exists()


def test_bad_config_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad [sync] value: one line on stderr naming it, exit code 2."""
    cfg = write_config(tmp_path, "", "b", concurrency=0)

    rc = main(["run", "--config", str(cfg)])

    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1
    assert "concurrency = 0 must be >= 1" in err


def test_dry_run_lists_and_touches_nothing(
    tmp_path: Path, bucket: str, proxy: S3Proxy, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dry-run prints what would go up and sends and writes nothing."""
    cfg = write_config(tmp_path, proxy.url, bucket)
    rel = f"{BASE}/20240301T000000Z_binance_BTCUSDT_trade.csv.gz"
    put_file(tmp_path / "data", rel, b"x")

    rc = main(["run", "--dry-run", "--config", str(cfg)])

    out = capsys.readouterr().out.splitlines()
    assert rc == 0
    assert out[0] == f"upload {rel} -> s3://{bucket}/{key(rel)}"
    assert out[-1] == "1 to upload (1 bytes), 0 to delete locally, 0 too young"
    assert proxy.requests == []
    assert not (tmp_path / "data" / ".sync").exists()


def test_lifecycle_show_prints_the_buckets_rules(
    tmp_path: Path, moto_port: int, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`lifecycle --show` prints the bucket's rules, or says there are none."""
    cfg = write_config(tmp_path, f"http://127.0.0.1:{moto_port}", bucket)
    assert main(["lifecycle", "--show", "--config", str(cfg)]) == 0
    assert capsys.readouterr().out == f"s3://{bucket}: no lifecycle configuration\n"
    rule = {
        "ID": "glacier",
        "Status": "Enabled",
        "Filter": {"Prefix": "collector/"},
        "Transitions": [{"Days": 30, "StorageClass": "GLACIER"}],
    }
    direct(moto_port).put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": [rule]}
    )

    rc = main(["lifecycle", "--show", "--config", str(cfg)])

    shown = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert shown["bucket"] == bucket
    assert shown["rules"][0]["Transitions"] == [{"Days": 30, "StorageClass": "GLACIER"}]
