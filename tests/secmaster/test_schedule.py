"""`secmaster run`: the supervised periodic program, its hook and its clean stop."""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ops.replay import ReplayThread
from tests.secmaster.conftest import REPO, log_events, query, secmaster_cmd, write_config

pytestmark = pytest.mark.timeout(120)


def _wait_for(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_periodic_syncs_hook_and_sigterm(tmp_path: Path, replay: ReplayThread) -> None:
    """Every 0.3 s a sync runs and apply_cmd follows; SIGTERM stops it with exit 0."""
    hook_log = tmp_path / "hook.log"
    script = "import sys\nwith open(sys.argv[1], 'a') as f: f.write('applied\\n')"
    cfg = write_config(
        tmp_path,
        replay,
        poll_interval_min=0.005,
        apply_cmd=shlex.join([sys.executable, "-c", script, str(hook_log)]),
    )
    proc = subprocess.Popen(
        secmaster_cmd(cfg, "run", "--user", "sched"),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ran = _wait_for(lambda: hook_log.exists() and hook_log.read_text().count("\n") >= 3, 60)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)

    assert ran, err
    assert proc.returncode == 0
    events = [e["event"] for e in log_events(err)]
    assert events.count("secmaster.sync.done") >= 6  # two exchanges per iteration
    assert events[-1] == "secmaster.schedule.stopped"
    # Later iterations found nothing new: still exactly one current version per instrument.
    assert query(
        tmp_path,
        "SELECT count(*), sum(is_current), min(last_modified_user), "
        "max(last_modified_user) FROM instrument",
    ) == [(1857, 1857, "sched", "sched")]


def test_sigterm_cuts_a_retry_wait_short(tmp_path: Path, replay: ReplayThread) -> None:
    """SIGTERM during a long Retry-After wait stops the program at once, nothing written."""
    cfg = write_config(tmp_path, replay)
    replay.faults.http_error_status = 429
    replay.faults.http_retry_after_s = 60
    replay.faults.http_errors = 1
    proc = subprocess.Popen(
        secmaster_cmd(cfg, "run", "--exchange", "binance"),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        waiting = _wait_for(lambda: replay.faults.http_errors == 0, 30)
        time.sleep(0.3)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        stop_s = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)

    assert waiting
    assert proc.returncode == 0, err
    assert stop_s < 5
    assert "secmaster.fetch.retry" in err
    assert query(tmp_path, "SELECT count(*) FROM instrument") == [(0,)]
