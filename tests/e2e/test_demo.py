"""The demo fleet end to end: supervisord, 28 collectors on the replay server, QA, S3 sync.

The demo runs as the user runs it (``python -m ops.demo``), against an S3 server (moto) owned
by this test, so the bucket can be checked here, independently of the demo's own check.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.conftest import REPO
from tests.ops.fleet_harness import short_dir

FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "demo",
    "AWS_SECRET_ACCESS_KEY": "demo",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.fixture
def s3() -> Iterator[tuple[str, Any]]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{server.get_host_and_port()[1]}"
    try:
        yield (
            url,
            boto3.client(
                "s3",
                endpoint_url=url,
                region_name="eu-west-1",
                aws_access_key_id="demo",
                aws_secret_access_key="demo",
            ),
        )
    finally:
        server.stop()


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_demo_fleet_end_to_end(s3: tuple[str, Any]) -> None:
    endpoint, client = s3
    workdir = short_dir()
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "ops.demo",
                "--workdir",
                str(workdir),
                "--collect-s",
                "12",
                "--exit",
                "--s3-endpoint",
                endpoint,
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=90,
            env={**os.environ, **FAKE_AWS},
        )
        out = proc.stdout
        assert proc.returncode == 0, out[-4000:] + proc.stderr[-4000:]
        assert "rendered 28 collector programs + secmaster, qa, sync, alert listener" in out
        assert "32/32 programs RUNNING" in out
        assert "every closed file has a QA report and a matching object in s3://demo" in out
        assert "ALERT /slack [" in out  # the local receiver printed the QA alerts
        data = workdir / "data"
        parsed = sorted(data.glob("*/*/*/parsed/*/*.csv.gz"))
        raw = sorted(data.glob("*/*/*/raw/*/*.jsonl.gz"))
        assert len(parsed) >= 20
        # Every parsed file has its raw twin (a stream with no rows yet has only raw).
        stems = {p.name.removesuffix(".jsonl.gz") for p in raw}
        assert {p.name.removesuffix(".csv.gz") for p in parsed} <= stems
        assert list(data.glob("*/*/*/*/*/*.part")) == []  # all closed by the graceful stop
        reports = [p.with_name(p.name.removesuffix(".csv.gz") + ".qa.json") for p in parsed]
        assert all(r.exists() for r in reports)
        objects = {
            o["Key"]: o
            for page in client.get_paginator("list_objects_v2").paginate(
                Bucket="demo", Prefix="collector/demo/"
            )
            for o in page.get("Contents", [])
        }
        for path in [*parsed, *raw, *reports]:
            key = "collector/demo/" + path.relative_to(data).as_posix()
            assert key in objects, key
            body = client.get_object(Bucket="demo", Key=key)["Body"].read()
            assert hashlib.sha256(body).digest() == hashlib.sha256(path.read_bytes()).digest()
        # Nothing of the fleet is left running.
        assert not (data / "supervisor.sock").exists()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_demo_bad_input_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ops.demo", "--workdir", str(tmp_path), "--collect-s", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert proc.stderr == "ops.demo: error: --collect-s and --interval-min must be > 0\n"
    assert list(tmp_path.iterdir()) == []
