"""The one periodic-program loop of the fleet: secmaster sync, QA and S3 sync under supervisord.

    python -m ops.periodic {secmaster|qa|sync} [--config PATH] [--once]

A long-running program with its own interval loop (no cron). Each run executes the job's
one-shot commands as child processes (the same commands an operator types), so a run that
crashes or leaks cannot take the loop down, and the loop itself stays small between runs:

========== =============================== ==============================================
job        interval (config.toml)          commands of one run
========== =============================== ==============================================
secmaster  [secmaster] poll_interval_min   ``python -m secmaster sync``, then
                                           ``python -m ops.fleet apply`` (delisted pairs stop)
qa         [qa] interval_min               ``python -m qa run``
sync       [sync] interval_min             ``python -m ops.sync run``
========== =============================== ==============================================

Overlap: a run holds ``{data_dir}/.fleet/periodic/{job}.lock`` (flock) from start to end and a
run that finds it held is skipped (logged), not queued; the commands also take their own
locks, so a manual ``qa run`` and the scheduled one never collide either. Runs start on a fixed
grid (start + k × interval; a missed slot runs at once). SIGTERM/SIGINT: the running command
gets SIGTERM (it stops cleanly), the loop exits 0. SIGUSR1: run now.

Every run rewrites ``{data_dir}/.fleet/periodic/{job}.json`` (what ``python -m ops status``
shows): last start, end, exit codes and duration, runs and failures so far, next start.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import orjson
import structlog

from collector.common.config import Config, get_float
from collector.common.errors import ConfigError
from collector.common.layout import periodic_dir
from collector.common.locks import LockBusyError, hold_lock
from collector.config import load_config

log = structlog.get_logger()

JOBS = ("secmaster", "qa", "sync")
# (section, key, default minutes) of each job's interval.
INTERVAL_KEYS = {
    "secmaster": ("secmaster", "poll_interval_min", 60.0),
    "qa": ("qa", "interval_min", 30.0),
    "sync": ("sync", "interval_min", 10.0),
}
# Seconds a stopping command gets after SIGTERM before SIGKILL (below supervisord's 30 s).
STOP_GRACE_S = 20.0


@dataclass(frozen=True)
class Job:
    name: str
    interval_s: float
    commands: tuple[tuple[str, ...], ...]
    state_dir: Path

    @property
    def lock_path(self) -> Path:
        return self.state_dir / f"{self.name}.lock"

    @property
    def state_path(self) -> Path:
        return self.state_dir / f"{self.name}.json"


def state_dir(config: Config) -> Path:
    return periodic_dir(config.data_dir)


def build_job(config: Config, name: str, *, python: str | None = None) -> Job:
    """The job ``name`` of ``config``; raises ConfigError naming a bad value."""
    if name not in JOBS:
        raise ConfigError(f"unknown periodic job {name!r} (choose from {', '.join(JOBS)})")
    section, key, default = INTERVAL_KEYS[name]
    minutes = get_float(
        config.section(section), key, default, where=f"{config.path} [{section}]", min_value=0.001
    )
    py, cfg = python or sys.executable, str(config.path)
    commands: tuple[tuple[str, ...], ...]
    if name == "secmaster":
        commands = (
            (py, "-m", "secmaster", "--config", cfg, "sync"),
            (py, "-m", "ops.fleet", "--config", cfg, "apply"),
        )
    elif name == "qa":
        commands = ((py, "-m", "qa", "run", "--config", cfg),)
    else:
        commands = ((py, "-m", "ops.sync", "--config", cfg, "run"),)
    return Job(name, minutes * 60.0, commands, state_dir(config))


def read_state(config: Config, name: str) -> dict[str, Any] | None:
    """The last state written by job ``name`` (None if it never ran)."""
    try:
        value = orjson.loads((state_dir(config) / f"{name}.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


class Runner:
    """The interval loop of one job; ``stop`` ends it, ``wake`` starts a run now."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.stop = threading.Event()
        self.wake = threading.Event()
        self._child: subprocess.Popen[bytes] | None = None
        self._lock = threading.RLock()  # also taken by the signal handler
        self.state: dict[str, Any] = {
            "job": job.name,
            "pid": os.getpid(),
            "interval_s": job.interval_s,
            "runs": 0,
            "failures": 0,
            "skipped": 0,
            "running": False,
            "last_start": None,
            "last_end": None,
            "last_duration_s": None,
            "last_ok": None,
            "last_exit": [],
            "next_start": None,
        }

    def request_stop(self) -> None:
        self.stop.set()
        self.wake.set()
        with self._lock:
            child = self._child
        if child is not None and child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM)

    def _write_state(self) -> None:
        path = self.job.state_path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(orjson.dumps(self.state, option=orjson.OPT_INDENT_2))
        os.replace(tmp, path)

    def _run_command(self, argv: Sequence[str]) -> int:
        with self._lock:
            if self.stop.is_set():
                return -int(signal.SIGTERM)
            self._child = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL)
            child = self._child
        try:
            while True:
                try:
                    return child.wait(timeout=0.5)
                except subprocess.TimeoutExpired:
                    if self.stop.is_set():
                        try:
                            return child.wait(timeout=STOP_GRACE_S)
                        except subprocess.TimeoutExpired:
                            child.kill()
                            return child.wait()
        finally:
            with self._lock:
                self._child = None

    def run_once(self) -> bool | None:
        """One run under the lock: True ok, False a command failed, None skipped."""
        try:
            with hold_lock(self.job.lock_path):
                started = time.time()
                self.state.update(running=True, last_start=started)
                self._write_state()
                log.info("periodic.run.started", job=self.job.name)
                codes = []
                for argv in self.job.commands:
                    if self.stop.is_set():
                        break
                    code = self._run_command(argv)
                    codes.append(code)
                    if code != 0:
                        log.warning(
                            "periodic.command.failed",
                            job=self.job.name,
                            command=" ".join(argv[1:]),
                            exit_code=code,
                        )
                ended = time.time()
                ok = all(c == 0 for c in codes)
                self.state.update(
                    running=False,
                    last_end=ended,
                    last_duration_s=round(ended - started, 3),
                    last_ok=ok,
                    last_exit=codes,
                    runs=self.state["runs"] + 1,
                    failures=self.state["failures"] + (0 if ok else 1),
                )
                log.info(
                    "periodic.run.done",
                    job=self.job.name,
                    ok=ok,
                    exit_codes=codes,
                    seconds=round(ended - started, 3),
                )
                return ok
        except LockBusyError as exc:
            self.state["skipped"] += 1
            log.warning(
                "periodic.run.skipped", job=self.job.name, reason="lock busy", lock=str(exc)
            )
            return None

    def loop(self, *, max_runs: int | None = None) -> int:
        """Run now, then on the interval grid until stopped; returns the runs done."""
        log.info(
            "periodic.started",
            job=self.job.name,
            interval_s=self.job.interval_s,
            commands=[" ".join(c[1:]) for c in self.job.commands],
        )
        runs = 0
        next_start = time.monotonic()
        while not self.stop.is_set():
            self.wake.clear()
            self.run_once()
            runs += 1
            if max_runs is not None and runs >= max_runs:
                break
            next_start += self.job.interval_s
            now = time.monotonic()
            if next_start < now:
                next_start = now
            self.state["next_start"] = time.time() + (next_start - now)
            self._write_state()
            if self.wake.wait(next_start - now) and not self.stop.is_set():
                log.info("periodic.woken", job=self.job.name)
                next_start = time.monotonic()
        self.state["next_start"] = None
        self._write_state()
        log.info("periodic.stopped", job=self.job.name, runs=runs)
        return runs


def main(argv: Sequence[str] | None = None) -> int:
    from collector.common.logs import configure_logging

    p = argparse.ArgumentParser(prog="python -m ops.periodic", description=__doc__.splitlines()[0])
    p.add_argument("job", help=f"one of: {', '.join(JOBS)}")
    p.add_argument("--config", type=Path, default=None, help="config file (default: root)")
    p.add_argument("--once", action="store_true", help="one run, then exit (1 if it failed)")
    p.add_argument("--log-level", default="info")
    args = p.parse_args(argv)
    try:
        job = build_job(load_config(args.config), args.job)
    except ConfigError as exc:
        print(f"ops.periodic: error: {exc}", file=sys.stderr)
        return 2
    configure_logging(args.log_level)
    runner = Runner(job)

    def on_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("periodic.stopping", job=job.name, signal=signal.Signals(signum).name)
        runner.request_stop()

    def on_wake(_signum: int, _frame: FrameType | None) -> None:
        runner.wake.set()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGUSR1, on_wake)
    if args.once:
        return 0 if runner.run_once() is not False else 1
    runner.loop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
