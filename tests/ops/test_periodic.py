"""``python -m ops.periodic``, the fleet's one periodic loop: the job table, the loop under
real signals, and what every job shares (lock, state file, arguments). Real subprocesses.

The jobs' own behaviour under the loop is tested beside each package: the secmaster job in
tests/secmaster/test_schedule.py, qa in tests/qa/test_runner.py, sync in tests/ops/test_sync.py.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from collector.common.locks import hold_lock
from collector.config import load_config
from ops.fleet import PERIODIC_JOBS, FleetSettings, build_fleet_settings
from ops.periodic import JOBS, STOP_GRACE_S, Job, Runner, build_job
from tests.conftest import REPO

pytestmark = pytest.mark.timeout(120)


def _config(tmp_path: Path, text: str = "") -> Path:
    """A config with its data under tmp_path; secmaster's exchanges on an unused port."""
    cfg = tmp_path / "config.toml"
    exchanges = "".join(
        f'[exchanges.{ex}]\nrest_url = "http://127.0.0.1:9/{ex}"\n'
        for ex in ("binance", "coinbase")
    )
    cfg.write_text(f'data_dir = "{tmp_path}/data"\n{text}{exchanges}')
    return cfg


def periodic(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ops.periodic", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_periodic_runs_skips_when_locked_wakes_and_stops(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'data_dir = "{tmp_path}/data"\n[qa]\ninterval_min = 0.02\n')  # 1.2 s
    state = tmp_path / "data" / ".fleet" / "periodic" / "qa.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ops.periodic", "qa", "--config", str(cfg)],
        stderr=subprocess.PIPE,
    )

    def read() -> dict[str, object]:
        try:
            return dict(json.loads(state.read_text()))
        except (OSError, ValueError):
            return {}

    def wait(cond: object, timeout: float = 30.0) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = read()
            if s and cond(s):  # type: ignore[operator]
                return s
            time.sleep(0.05)
        raise AssertionError(f"state {read()}")

    try:
        s = wait(lambda s: s["runs"] >= 1 and not s["running"])
        assert s["last_ok"] is True
        assert s["last_exit"] == [0]
        assert s["job"] == "qa"
        with hold_lock(state.with_name("qa.lock")):
            s = wait(lambda s: s["skipped"] >= 1)
        runs = int(s["runs"])  # type: ignore[call-overload]
        proc.send_signal(signal.SIGUSR1)
        wait(lambda s: s["runs"] > runs)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert read()["next_start"] is None


class TestJobTable:
    def test_intervals_come_from_each_packages_own_settings(self, tmp_path: Path) -> None:
        """With no interval in the file, each job gets its package's default (written once)."""
        config = load_config(_config(tmp_path))

        intervals = {name: build_job(config, name).interval_s for name in JOBS}

        assert intervals == {"secmaster": 3600.0, "qa": 1800.0, "sync": 600.0, "dataset": 3600.0}

    def test_an_interval_the_package_refuses_is_refused_at_start(self, tmp_path: Path) -> None:
        """[qa] interval_min below what qa accepts: exit 2 at start, one line, not every run."""
        cfg = _config(tmp_path, "[qa]\ninterval_min = 0.001\n")

        r = periodic("qa", "--config", str(cfg))

        assert r.returncode == 2
        assert (
            r.stderr == f"ops.periodic: error: {cfg} [qa]: interval_min = 0.001 must be >= 0.01\n"
        )

    def test_secmaster_applies_the_fleet_only_through_apply_cmd(self, tmp_path: Path) -> None:
        """The secmaster job runs `secmaster sync --apply`; the fleet command is apply_cmd's."""
        cfg = _config(tmp_path)

        job = build_job(load_config(cfg), "secmaster", python="/py")

        assert job.command == ("/py", "-m", "secmaster", "--config", str(cfg), "sync", "--apply")
        assert not any("ops.fleet" in word for word in job.command)

    def test_job_arguments_and_data_dir_are_passed_to_the_command(self, tmp_path: Path) -> None:
        """--data-dir (qa) and the words after -- go to the command; the state follows."""
        config = load_config(_config(tmp_path))
        other = tmp_path / "other"

        job = build_job(config, "qa", python="/py", data_dir=other, job_args=("--since", "2h"))

        assert job.command[3:] == (
            *("run", "--config", str(config.path)),
            *("--data-dir", str(other)),
            *("--since", "2h"),
        )
        assert job.state_path == other / ".fleet" / "periodic" / "qa.json"

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["sync", "--data-dir", "/x"], "the sync job takes its data dir from the config"),
            (["qa", "--every", "0"], "--every 0.0 must be > 0"),
            (["qa", "--every", "nan"], "--every nan must be > 0"),
            (["cron"], "unknown periodic job 'cron' (choose from secmaster, qa, sync, dataset)"),
        ],
    )
    def test_bad_arguments_exit_2_one_line(
        self, tmp_path: Path, args: list[str], message: str
    ) -> None:
        cfg = _config(tmp_path)

        r = periodic(*args, "--config", str(cfg))

        assert r.returncode == 2
        assert r.stderr.startswith(f"ops.periodic: error: {message}")
        assert r.stderr.count("\n") == 1
        assert not (tmp_path / "data").exists()

    def test_fleet_renders_the_jobs_of_the_table(self, tmp_path: Path) -> None:
        """[group:periodic] is rendered from the one job table; supervisord waits longer for a
        periodic program than it waits for its running command."""
        s: FleetSettings = build_fleet_settings(load_config(_config(tmp_path)))

        assert tuple(JOBS) == PERIODIC_JOBS
        # every host runs all but the dataset job (one designated host adds it)
        assert s.periodic == tuple(j for j in JOBS if j != "dataset")
        assert s.periodic_stopwaitsecs > STOP_GRACE_S
        assert math.isfinite(s.periodic_stopwaitsecs)


def wait_state(path: Path, until: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """A periodic state file once ``until`` holds for it (at most 30 s)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            state: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            state = {}
        if state and until(state):
            return state
        time.sleep(0.05)
    raise AssertionError(f"no such state in {path}")


def test_a_job_with_nothing_to_do_idles_and_says_why_in_its_state(tmp_path: Path) -> None:
    """sync without a bucket: no run at all, the reason in the state file, SIGTERM → 0."""
    cfg = _config(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ops.periodic", "sync", "--config", str(cfg)],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        state = wait_state(tmp_path / "data" / ".fleet" / "periodic" / "sync.json", lambda s: True)

        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert proc.returncode == 0
    assert (state["runs"], state["disabled"]) == (
        0,
        "no bucket configured ([sync] bucket is empty)",
    )
    assert [json.loads(line)["event"] for line in err.splitlines()] == [
        "sync.disabled",
        "periodic.stopping",
        "periodic.stopped",
    ]


def test_stop_sends_sigterm_to_the_running_command(tmp_path: Path) -> None:
    """A stop during a run: the command gets SIGTERM at once, the run and the loop end."""
    started = tmp_path / "started"  # the command is running (state "running" comes before it)
    job = Job(
        name="qa",
        interval_s=3600.0,
        command=(
            sys.executable,
            "-c",
            f"import pathlib, time; pathlib.Path({str(started)!r}).touch(); time.sleep(60)",
        ),
        state_dir=tmp_path / "periodic",
    )
    runner = Runner(job)
    loop = threading.Thread(target=runner.loop)
    loop.start()
    try:
        wait_state(job.state_path, lambda s: s["running"])
        deadline = time.monotonic() + 30
        while not started.exists():
            assert time.monotonic() < deadline, "the command never started"
            time.sleep(0.01)

        t0 = time.monotonic()
        runner.request_stop(signal.SIGTERM)  # what the SIGTERM handler does
        loop.join(timeout=STOP_GRACE_S)
        stop_s = time.monotonic() - t0
    finally:
        runner.request_stop()
        loop.join()

    assert stop_s < 5
    state = json.loads(job.state_path.read_text())
    assert (state["running"], state["runs"], state["last_exit"]) == (False, 1, [-signal.SIGTERM])
    assert (state["last_ok"], state["failures"], state["next_start"]) == (False, 1, None)
