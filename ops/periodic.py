"""The one periodic-program loop of the fleet: secmaster sync, QA and S3 sync under supervisord.

    python -m ops.periodic JOB [--config PATH] [--once] [--every MIN] [--data-dir DIR] [-- ARGS]

A long-running program with its own interval loop (no cron), and the only one: ``secmaster
run`` (``schedule``), ``qa schedule`` (``qa run --every``) and ``ops.sync schedule`` are aliases
that run this program. Each run executes the job's one-shot command as a child process (the
command an operator types), so a run that crashes or leaks cannot take the loop down, and the
loop itself stays small between runs. :data:`JOBS` is the one job table: ``ops.fleet`` renders
``[group:periodic]`` from it and ``ops status`` reads the jobs' state through it.

========== =============================== ==============================================
job        interval (config.toml)          command of one run
========== =============================== ==============================================
secmaster  [secmaster] poll_interval_min   ``python -m secmaster sync --apply``: the sync,
                                           then ``[secmaster] apply_cmd`` (delisted pairs
                                           stop) when an exchange was polled
qa         [qa] interval_min               ``python -m qa run``
sync       [sync] interval_min             ``python -m ops.sync run``; without a
                                           ``[sync] bucket`` the program says so once
                                           (``sync.disabled``) and idles
========== =============================== ==============================================

Each interval is read through its package's own settings builder, so its default (60, 30, 10
minutes) is written once, there. ``--every MIN`` overrides it; ``--data-dir DIR`` (qa only)
points the job and its state at another data directory; arguments after ``--`` are appended
to the command (``-- --user NAME --exchange binance`` for secmaster, ``-- --since 2h`` for qa).

Overlap: a run holds ``{data_dir}/.fleet/periodic/{job}.lock`` (flock) from start to end and a
run that finds it held is skipped (logged), not queued; the commands also take their own
locks, so a manual ``qa run`` and the scheduled one never collide either. Runs start on a fixed
grid (start + k × interval; a missed slot runs at once). SIGTERM/SIGINT: the running command
gets SIGTERM (it stops cleanly: a secmaster retry wait is cut short, QA stops between files,
a sync between uploads) and the loop exits 0. SIGUSR1: run now. The signal handlers only set
flags (:class:`StopFlag`); everything else happens in the loop.

Every run rewrites ``{data_dir}/.fleet/periodic/{job}.json`` (what ``python -m ops status``
shows): last start, end, exit codes and duration, runs and failures so far, next start.
Log events: ``periodic.started``, ``periodic.run.started``, ``periodic.run.done``,
``periodic.command.failed``, ``periodic.run.skipped`` (lock busy), ``periodic.woken``,
``periodic.stopping``, ``periodic.stopped``. Exit codes: 0 stopped (or ``--once`` ran or was
skipped), 1 the ``--once`` run failed, 2 bad config or arguments (one line on stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import orjson
import structlog

from collector.common.config import Config, check_path_value
from collector.common.errors import ConfigError
from collector.common.layout import periodic_dir
from collector.common.locks import LockBusyError, hold_lock
from collector.config import load_config

log = structlog.get_logger()

# Seconds a stopping command gets after SIGTERM before SIGKILL (ops.fleet gives the periodic
# programs this plus 10 s as supervisord's stopwaitsecs).
STOP_GRACE_S = 20.0
# In a job's command: replaced by the path of the config file in use.
CONFIG = "{config}"
_POLL_S = 0.2


class StopFlag:
    """A flag a signal handler may set: setting takes no lock, since a handler that waits for a
    lock the interrupted code holds (threading.Event's, a log writer's) deadlocks. Waits poll."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def clear(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._set:
            left = _POLL_S if deadline is None else min(_POLL_S, deadline - time.monotonic())
            if left <= 0:
                break
            time.sleep(left)
        return self._set


# --- the job table ----------------------------------------------------------------------
# Intervals (and sync's "nothing to do") come from each package's own settings builder,
# imported on use: rendering the fleet needs only the names.


def _secmaster_interval_s(config: Config) -> float:
    from secmaster.settings import build_secmaster_settings

    return build_secmaster_settings(config).poll_interval_min * 60.0


def _qa_interval_s(config: Config) -> float:
    from qa.settings import build_qa_settings

    return build_qa_settings(config).interval_min * 60.0


def _sync_interval_s(config: Config) -> float:
    from ops.sync.settings import build_s3_settings

    return build_s3_settings(config).interval_s


def _sync_disabled(config: Config) -> str | None:
    from ops.sync.run import disabled_reason
    from ops.sync.settings import build_s3_settings

    return disabled_reason(build_s3_settings(config))


def _dataset_interval_s(config: Config) -> float:
    from ops.dataset.settings import build_dataset_settings

    return build_dataset_settings(config).interval_s


@dataclass(frozen=True)
class JobSpec:
    """One row of the job table: where the interval is set and what one run executes."""

    interval_setting: str  # where config.toml sets the interval (help texts, docs)
    interval_s: Callable[[Config], float]  # validates the job's own settings too
    argv: tuple[str, ...]  # after ``python -m``; CONFIG becomes the config path
    data_dir_option: str | None = None  # the command's flag for another data dir
    disabled: Callable[[Config], str | None] | None = None  # why there is nothing to do
    disabled_event: str = "periodic.disabled"


JOBS: dict[str, JobSpec] = {
    "secmaster": JobSpec(
        "[secmaster] poll_interval_min",
        _secmaster_interval_s,
        ("secmaster", "--config", CONFIG, "sync", "--apply"),
    ),
    "qa": JobSpec(
        "[qa] interval_min",
        _qa_interval_s,
        ("qa", "run", "--config", CONFIG),
        data_dir_option="--data-dir",
    ),
    "sync": JobSpec(
        "[sync] interval_min",
        _sync_interval_s,
        ("ops.sync", "--config", CONFIG, "run"),
        disabled=_sync_disabled,
        disabled_event="sync.disabled",  # what `ops.sync run` logs for the same condition
    ),
    # one designated host per fleet runs it (add "dataset" to [fleet] periodic there)
    "dataset": JobSpec(
        "[dataset] interval_min",
        _dataset_interval_s,
        ("ops.dataset", "run", "--config", CONFIG),
    ),
}


@dataclass(frozen=True)
class Job:
    """One job as configured: its interval, the argv of one run, where its state lives."""

    name: str
    interval_s: float
    command: tuple[str, ...]
    state_dir: Path
    disabled: str | None = None  # set: nothing to do with this config (logged once, idle)
    disabled_event: str = "periodic.disabled"

    @property
    def lock_path(self) -> Path:
        return self.state_dir / f"{self.name}.lock"

    @property
    def state_path(self) -> Path:
        return self.state_dir / f"{self.name}.json"


def state_dir(config: Config) -> Path:
    return periodic_dir(config.data_dir)


def build_job(
    config: Config,
    name: str,
    *,
    python: str | None = None,
    every_min: float | None = None,
    data_dir: Path | None = None,
    job_args: Sequence[str] = (),
) -> Job:
    """The job ``name`` of ``config``; raises ConfigError naming a bad value."""
    spec = JOBS.get(name)
    if spec is None:
        raise ConfigError(f"unknown periodic job {name!r} (choose from {', '.join(JOBS)})")
    if data_dir is not None and spec.data_dir_option is None:
        raise ConfigError(f"the {name} job takes its data dir from the config (no --data-dir)")
    interval_s = spec.interval_s(config)
    if every_min is not None:
        if not (math.isfinite(every_min) and every_min > 0):
            raise ConfigError(f"--every {every_min} must be > 0")
        interval_s = every_min * 60.0
    cfg = str(config.path)
    command = [python or sys.executable, "-m", *(cfg if a == CONFIG else a for a in spec.argv)]
    if data_dir is not None and spec.data_dir_option is not None:
        command += [spec.data_dir_option, str(data_dir)]
    command += job_args
    return Job(
        name=name,
        interval_s=interval_s,
        command=tuple(command),
        state_dir=periodic_dir(config.data_dir if data_dir is None else data_dir),
        disabled=spec.disabled(config) if spec.disabled is not None else None,
        disabled_event=spec.disabled_event,
    )


def read_state(config: Config, name: str) -> dict[str, Any] | None:
    """The last state written by job ``name`` (None if it never ran)."""
    try:
        value = orjson.loads((state_dir(config) / f"{name}.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


# --- the loop ---------------------------------------------------------------------------


class Runner:
    """The interval loop of one job; ``request_stop`` ends it, ``wake`` starts a run now.

    Both may be called from a signal handler: they only set flags.
    """

    def __init__(self, job: Job) -> None:
        self.job = job
        self.stop = StopFlag()
        self.wake = StopFlag()
        self.stop_signal: int | None = None
        self._stop_logged = False
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
            "disabled": job.disabled,
        }

    def request_stop(self, signum: int | None = None) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum
        self.stop.set()
        self.wake.set()

    def _log_stopping(self) -> None:
        if self._stop_logged or self.stop_signal is None:
            return
        self._stop_logged = True
        name = signal.Signals(self.stop_signal).name
        log.info("periodic.stopping", job=self.job.name, signal=name)

    def _write_state(self) -> None:
        path = self.job.state_path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(orjson.dumps(self.state, option=orjson.OPT_INDENT_2))
        os.replace(tmp, path)

    def _run_command(self, argv: Sequence[str]) -> int:
        child = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL)
        while True:
            try:
                return child.wait(timeout=_POLL_S)
            except subprocess.TimeoutExpired:
                if self.stop.is_set():
                    break
        self._log_stopping()
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGTERM)
        try:
            return child.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()
            return child.wait()

    def run_once(self) -> bool | None:
        """One run under the lock: True ok, False the command failed, None skipped."""
        try:
            with hold_lock(self.job.lock_path):
                return self._run_locked()
        except LockBusyError as exc:
            self.state["skipped"] += 1
            log.warning(
                "periodic.run.skipped", job=self.job.name, reason="lock busy", lock=str(exc)
            )
            return None

    def _run_locked(self) -> bool:
        started = time.time()
        self.state.update(running=True, last_start=started)
        self._write_state()
        log.info("periodic.run.started", job=self.job.name)
        codes = [] if self.stop.is_set() else [self._run_command(self.job.command)]
        if codes and codes[0] != 0:
            log.warning(
                "periodic.command.failed",
                job=self.job.name,
                command=" ".join(self.job.command[1:]),
                exit_code=codes[0],
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

    def loop(self, *, max_runs: int | None = None) -> int:
        """Run now, then on the interval grid until stopped; returns the runs done."""
        log.info(
            "periodic.started",
            job=self.job.name,
            interval_s=self.job.interval_s,
            commands=[" ".join(self.job.command[1:])],
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
        self._stopped(runs)
        return runs

    def idle(self) -> None:
        """A job with nothing to do: say why once, then wait for the stop signal."""
        log.warning(self.job.disabled_event, job=self.job.name, reason=self.job.disabled)
        self._write_state()
        self.stop.wait()
        self._stopped(0)

    def _stopped(self, runs: int) -> None:
        self._log_stopping()
        self.state["next_start"] = None
        self._write_state()
        log.info("periodic.stopped", job=self.job.name, runs=runs)


# --- the program ------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    table = "\n".join(f"  {name:<10} every {spec.interval_setting}" for name, spec in JOBS.items())
    p = argparse.ArgumentParser(
        prog="python -m ops.periodic",
        usage="%(prog)s JOB [options] [-- ARGS...]",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"jobs:\n{table}\n\nARGS after -- are appended to the job's command.",
    )
    p.add_argument("job", help=f"one of: {', '.join(JOBS)}")
    p.add_argument("--config", type=Path, default=None, help="config file (default: root)")
    p.add_argument("--once", action="store_true", help="one run, then exit (1 if it failed)")
    p.add_argument(
        "--every",
        type=float,
        default=None,
        metavar="MIN",
        help="minutes between runs (default: the job's interval setting)",
    )
    p.add_argument(
        "--data-dir",
        "--data_dir",
        dest="data_dir",
        default=None,
        help="qa only: check this data directory (its state lives there too)",
    )
    p.add_argument("--runs", type=int, default=None, help=argparse.SUPPRESS)  # tests, aliases
    p.add_argument("--log-level", default="info")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from collector.common.logs import configure_logging

    words = list(sys.argv[1:] if argv is None else argv)
    job_args: list[str] = []
    if "--" in words:
        cut = words.index("--")
        words, job_args = words[:cut], words[cut + 1 :]
    args = _parser().parse_args(words)
    try:
        config = load_config(args.config)
        data_dir = None
        if args.data_dir is not None:
            data_dir = check_path_value(args.data_dir, what="--data-dir").absolute()
        job = build_job(
            config, args.job, every_min=args.every, data_dir=data_dir, job_args=job_args
        )
    except ConfigError as exc:
        print(f"ops.periodic: error: {exc}", file=sys.stderr)
        return 2
    configure_logging(args.log_level)
    runner = Runner(job)

    def on_stop(signum: int, _frame: FrameType | None) -> None:
        runner.request_stop(signum)

    def on_wake(_signum: int, _frame: FrameType | None) -> None:
        runner.wake.set()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGUSR1, on_wake)
    if job.disabled is not None:
        if args.once or args.runs is not None:
            log.warning(job.disabled_event, job=job.name, reason=job.disabled)
        else:
            runner.idle()
        return 0
    if args.once:
        return 0 if runner.run_once() is not False else 1
    runner.loop(max_runs=args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
