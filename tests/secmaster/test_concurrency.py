"""The file lock: a manual sync and another (or the scheduled one) never overlap.

The scheduled side (a periodic iteration that finds the lock held) is in test_schedule.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from collector.common.locks import hold_lock
from collector.config import load_config
from ops.replay import ReplayThread
from secmaster.settings import build_secmaster_settings
from tests.secmaster.conftest import (
    REPO,
    dump_db,
    query,
    run_secmaster,
    secmaster_cmd,
    write_config,
)

pytestmark = pytest.mark.timeout(120)


def test_two_syncs_at_once_one_runs(tmp_path: Path, replay: ReplayThread) -> None:
    """Two real `secmaster sync` processes: one syncs, the other reports the lock, exit 0."""
    cfg = write_config(tmp_path, replay)
    # The first request gets a 429 with Retry-After 3, so the lock holder keeps the lock
    # for at least 3 s, long enough for the other process to start and try it.
    replay.faults.http_error_status = 429
    replay.faults.http_retry_after_s = 3
    replay.faults.http_errors = 1

    procs = [
        subprocess.Popen(
            secmaster_cmd(cfg, "sync"),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]

    assert [p.returncode for p in procs] == [0, 0]
    ran = [i for i, (out, _) in enumerate(outputs) if out]
    assert len(ran) == 1
    winner, loser = ran[0], 1 - ran[0]
    assert outputs[winner][0].startswith("binance: 1695 new, 0 changed, 0 delisted, 0 unchanged")
    assert outputs[loser][0] == ""
    assert (
        f"secmaster: another secmaster sync is running (lock {tmp_path}/data/secmaster.lock "
        f"held by pid {procs[winner].pid}); nothing done\n"
    ) in outputs[loser][1]
    assert query(tmp_path, "SELECT count(*), sum(is_current) FROM instrument") == [(1857, 1857)]


def test_sync_while_locked_does_nothing(tmp_path: Path, replay: ReplayThread) -> None:
    """While the lock is held elsewhere, sync touches neither the server nor the database."""
    cfg = write_config(tmp_path, replay)
    lock = build_secmaster_settings(load_config(cfg)).lock_path
    requests_before = sum(replay.stats.http_requests.values())

    with hold_lock(lock):
        proc = run_secmaster(cfg, "sync")

    assert proc.returncode == 0
    assert proc.stdout == ""
    assert "another secmaster sync is running" in proc.stderr
    assert sum(replay.stats.http_requests.values()) == requests_before
    assert dump_db(tmp_path) == {}
