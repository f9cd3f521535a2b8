"""The secmaster job of the one periodic loop (``python -m ops.periodic secmaster``): its apply
hook, its clean stop and the lock; and ``secmaster run``, the alias that execs it."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from collector.common.locks import hold_lock
from collector.config import load_config
from ops.periodic import Runner, build_job
from ops.replay import ReplayThread
from secmaster.settings import build_secmaster_settings
from tests.secmaster.conftest import (
    REPO,
    dump_db,
    log_events,
    query,
    secmaster_cmd,
    write_config,
)

pytestmark = pytest.mark.timeout(120)

HOOK = "import sys\nwith open(sys.argv[1], 'a') as f: f.write('applied\\n')"


def _wait_for(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def periodic_cmd(cfg: Path, *job_args: str) -> list[str]:
    """argv of ``python -m ops.periodic secmaster`` with this config (job args after --)."""
    argv = [sys.executable, "-m", "ops.periodic", "secmaster", "--config", str(cfg)]
    return [*argv, "--", *job_args] if job_args else argv


def test_periodic_syncs_hook_and_sigterm(tmp_path: Path, replay: ReplayThread) -> None:
    """Every 0.3 s a sync runs and apply_cmd follows; SIGTERM stops it with exit 0."""
    hook_log = tmp_path / "hook.log"
    cfg = write_config(
        tmp_path,
        replay,
        poll_interval_min=0.005,
        apply_cmd=shlex.join([sys.executable, "-c", HOOK, str(hook_log)]),
    )
    proc = subprocess.Popen(
        periodic_cmd(cfg, "--user", "sched"),
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
    assert events[-1] == "periodic.stopped"  # was secmaster.schedule.stopped (the old loop)
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
        periodic_cmd(cfg, "--exchange", "binance"),
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


def test_scheduled_iteration_skips_when_locked(tmp_path: Path, replay: ReplayThread) -> None:
    """A scheduled iteration that finds the lock held is skipped, not queued."""
    hook_log = tmp_path / "hook.log"
    cfg = write_config(
        tmp_path, replay, apply_cmd=shlex.join([sys.executable, "-c", HOOK, str(hook_log)])
    )
    config = load_config(cfg)
    settings = build_secmaster_settings(config)

    with hold_lock(settings.lock_path):
        iterations = Runner(build_job(config, "secmaster")).loop(max_runs=1)

    calls = hook_log.read_text().splitlines() if hook_log.exists() else []
    assert iterations == 1
    assert calls == []
    assert dump_db(tmp_path) == {}


def test_run_is_an_alias_that_execs_the_periodic_loop(tmp_path: Path, replay: ReplayThread) -> None:
    """`secmaster run` becomes `ops.periodic secmaster` in the same process (its state file)."""
    cfg = write_config(tmp_path, replay)
    args = ("--exchange", "coinbase", "--user", "alias", "--iterations", "1")
    argv = secmaster_cmd(cfg, "run", *args)

    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=60)

    assert proc.returncode == 0, err
    state = json.loads((tmp_path / "data" / ".fleet" / "periodic" / "secmaster.json").read_text())
    assert (state["job"], state["pid"], state["runs"], state["last_exit"]) == (
        "secmaster",
        proc.pid,
        1,
        [0],
    )
    assert query(tmp_path, "SELECT DISTINCT exchange, last_modified_user FROM instrument") == [
        ("coinbase", "alias")
    ]


def test_run_refuses_bad_input_before_the_loop_starts(tmp_path: Path, replay: ReplayThread) -> None:
    """A bad --exchange is refused by the alias (exit 2, one line): no loop, no state."""
    cfg = write_config(tmp_path, replay)

    proc = subprocess.run(
        secmaster_cmd(cfg, "run", "--exchange", "kraken"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert proc.returncode == 2
    assert proc.stderr.startswith("secmaster: error: unknown exchange 'kraken'")
    assert not (tmp_path / "data" / ".fleet").exists()
