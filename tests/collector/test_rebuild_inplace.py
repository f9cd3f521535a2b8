"""``collector rebuild --in-place --yes``: the parsed files of a data dir replaced atomically,
the previous versions kept until S3 sync delivered the new ones, QA and sync noticing."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import time
from pathlib import Path

import orjson
import pytest

from collector.common import layout
from collector.common.locks import LockBusyError, hold_lock
from collector.rebuild import RebuildError
from collector.rebuild_inplace import quiet_data_dir
from ops.sync.ledger import read_delivered
from ops.sync.run import run_once
from qa.runner import needs_check
from tests.collector.rebuildkit import live_trades, rebuild_cli
from tests.collector.test_hostile_frames import binance_trade
from tests.ops.test_sync import (  # noqa: F401 - fixtures
    bucket,
    direct,
    fake_aws_env,
    moto_port,
    settings_of,
)
from tests.ops.test_sync import write_config as sync_config


def one(stream: Path, kind: str) -> Path:
    suffix = layout.PARSED_SUFFIX if kind == "parsed" else layout.RAW_SUFFIX
    (path,) = sorted((stream / kind).rglob(f"*{suffix}"))
    return path


def old_adapter(parsed: Path, keep: int) -> bytes:
    """Make ``parsed`` what an adapter that missed rows would have written (its first
    ``keep`` rows), with a QA report of that version; returns the good bytes."""
    good = gzip.decompress(parsed.read_bytes())
    lines = good.splitlines(keepends=True)
    parsed.write_bytes(gzip.compress(b"".join(lines[: keep + 1])))
    layout.report_path(parsed).write_text('{"status": "fail"}')
    record = layout.completeness_path(parsed)  # QA writes both (issue 19's ledger)
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text("{}")
    past = time.time() - 60
    os.utime(parsed, (past, past))
    return good


@pytest.fixture
def stream(tmp_path) -> Path:
    t0 = time.time()
    return live_trades(tmp_path / "data", [(t0 + i * 0.01, binance_trade(i)) for i in range(30)])


class TestInPlace:
    def test_without_yes_nothing_changes(self, tmp_path, stream):
        parsed = one(stream, "parsed")
        before = parsed.read_bytes()

        done = rebuild_cli("--in-place", stream / "raw")

        assert done.returncode == 2
        assert "add --yes" in done.stderr
        assert parsed.read_bytes() == before
        assert not layout.rebuild_dir(tmp_path / "data").exists()

    def test_replaces_keeps_the_previous_version_and_qa_rechecks(self, tmp_path, stream):
        parsed = one(stream, "parsed")
        good = old_adapter(parsed, keep=5)
        wrong = parsed.read_bytes()
        assert not needs_check(parsed, since_s=None, now_s=time.time())

        done = rebuild_cli("--in-place", "--yes", stream / "raw")

        assert done.returncode == 0, done.stderr
        assert "1 parsed file(s) replaced, 30 rows" in done.stdout
        assert gzip.decompress(parsed.read_bytes()) == good
        prev = layout.replaced_dir(tmp_path / "data") / parsed.relative_to(tmp_path / "data")
        assert prev.read_bytes() == wrong
        assert layout.report_path(prev).read_text() == '{"status": "fail"}'
        assert not layout.report_path(parsed).exists()
        assert needs_check(parsed, since_s=3600, now_s=time.time())
        record = json.loads(prev.with_name(prev.name + layout.REPLACED_SUFFIX).read_text())
        assert record["sha256"] == hashlib.sha256(parsed.read_bytes()).hexdigest()
        assert not list((layout.rebuild_dir(tmp_path / "data") / "work").rglob("*.gz"))

    def test_a_second_rebuild_keeps_the_first_previous_version(self, tmp_path, stream):
        parsed = one(stream, "parsed")
        old_adapter(parsed, keep=3)
        wrong = parsed.read_bytes()

        for _ in range(2):
            assert rebuild_cli("--in-place", "--yes", stream / "raw").returncode == 0

        prev = layout.replaced_dir(tmp_path / "data") / parsed.relative_to(tmp_path / "data")
        assert prev.read_bytes() == wrong

    def test_an_open_raw_file_is_refused_and_named(self, tmp_path, stream):
        raw = one(stream, "raw")
        part = raw.with_name(raw.name + layout.PART)
        raw.rename(part)
        with hold_lock(layout.lock_path(stream)):  # a collector writing this hour
            done = rebuild_cli("--in-place", "--yes", part)

        assert done.returncode == 2
        assert f"the hour collector pid {os.getpid()} is writing" in done.stderr

    def test_an_hour_being_closed_is_left_alone(self, tmp_path, stream):
        parsed = one(stream, "parsed")
        parsed.rename(layout.part_path(parsed))  # raw closed, parsed not yet

        done = rebuild_cli("--in-place", "--yes", stream / "raw")

        assert done.returncode == 2
        assert "no closed raw file to rebuild in place" in done.stderr
        assert not parsed.exists()

    def test_waits_for_no_qa_or_sync_run_and_gives_up_naming_it(self, tmp_path, stream):
        """A QA run reading a file while it is replaced would file the old content's report
        under the new file: the rebuild holds QA's and sync's locks, or replaces nothing."""
        root = tmp_path / "data"
        busy = pytest.raises(RebuildError, match=r"an S3 sync run \(pid \d+\) is using")
        with hold_lock(layout.sync_lock_path(root)), busy, quiet_data_dir(root, wait_s=0.2):
            pytest.fail("entered while sync ran")
        with (
            quiet_data_dir(root, wait_s=0.2),
            pytest.raises(LockBusyError),
            hold_lock(layout.qa_lock_path(root)),
        ):
            pass

    def test_the_data_dir_must_be_the_inputs(self, tmp_path, stream):
        done = rebuild_cli("--in-place", "--yes", "--data_dir", tmp_path / "x", stream / "raw")

        assert done.returncode == 2
        assert "another one" in done.stderr


class TestSync:
    def test_sync_uploads_the_new_version_and_then_drops_the_old(
        self,
        tmp_path,
        moto_port,  # noqa: F811 - the fixture
        bucket,  # noqa: F811 - the fixture
    ):
        """Delivered, rebuilt in place, synced: S3 and the ledger have the new version, and
        the kept previous version is deleted only once it is in the ledger."""
        t0 = time.time()
        stream = live_trades(
            tmp_path / "data", [(t0 + i * 0.01, binance_trade(i)) for i in range(30)]
        )
        parsed = one(stream, "parsed")
        good = old_adapter(parsed, keep=4)
        cfg = sync_config(tmp_path, f"http://127.0.0.1:{moto_port}", bucket, min_age_s=0.0)
        settings = settings_of(cfg)
        rel = parsed.relative_to(tmp_path / "data").as_posix()
        assert run_once(settings).failures == 0
        old_sha = read_delivered(settings.ledger_path)[rel].sha256

        assert rebuild_cli("--in-place", "--yes", stream / "raw").returncode == 0
        prev = layout.replaced_dir(tmp_path / "data") / rel
        assert prev.exists()
        summary = run_once(settings)

        assert summary.failures == 0
        row = read_delivered(settings.ledger_path)[rel]
        new_sha = hashlib.sha256(parsed.read_bytes()).hexdigest()
        assert (row.sha256, row.size) == (new_sha, parsed.stat().st_size)
        assert row.sha256 != old_sha
        body = direct(moto_port).get_object(Bucket=bucket, Key=settings.key_for(rel))["Body"]
        assert gzip.decompress(body.read()) == good
        assert summary.replaced_pruned == 1
        assert not prev.exists()
        assert not list(layout.replaced_dir(tmp_path / "data").rglob("*"))

    def test_the_previous_version_stays_until_the_new_one_is_delivered(
        self,
        tmp_path,
        moto_port,  # noqa: F811 - the fixture
        bucket,  # noqa: F811 - the fixture
    ):
        t0 = time.time()
        stream = live_trades(
            tmp_path / "data", [(t0 + i * 0.01, binance_trade(i)) for i in range(10)]
        )
        old_adapter(one(stream, "parsed"), keep=2)
        cfg = sync_config(tmp_path, f"http://127.0.0.1:{moto_port}", bucket, min_age_s=3600.0)
        assert rebuild_cli("--in-place", "--yes", stream / "raw").returncode == 0

        summary = run_once(settings_of(cfg))  # the new file is too young to be uploaded

        assert summary.replaced_pruned == 0
        manifests = list(layout.replaced_dir(tmp_path / "data").rglob("*.replaced.json"))
        assert len(manifests) == 1
        assert orjson.loads(manifests[0].read_bytes())["had_previous"] is True
