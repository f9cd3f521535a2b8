"""The long-running periodic program (``secmaster run``) and the fleet hook.

Each iteration takes the same file lock as a manual ``secmaster sync``, so the two never
overlap; an iteration that finds the lock held is skipped (logged), not queued. SIGTERM or
SIGINT set ``stop``: a retry back-off in progress is cut short, the lock is released and the
loop returns (exit code 0).

Hook for the fleet: ``after_sync(results)`` is called after every scheduled sync in which at
least one exchange was polled successfully. The CLI builds it from the ``[secmaster] apply_cmd``
setting (an argv run without a shell, e.g. ``python -m ops.fleet apply``), so secmaster never
imports ops.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

import structlog

from collector.common.alerts import Alert, send_alert
from collector.common.locks import LockBusyError
from secmaster.poller import SyncResult, sync, utc_now
from secmaster.settings import LISTING_EXCHANGES, SecmasterSettings

log = structlog.get_logger()

# Upper bound for one run of the apply command.
APPLY_TIMEOUT_S = 300.0


class StopRequested(Exception):
    """Raised out of a back-off sleep when the program is asked to stop."""


def run_apply_cmd(cmd: Sequence[str], *, reason: str) -> bool:
    """Run the fleet hook command; log and alert on failure. Returns True on exit code 0."""
    if not cmd:
        return True
    argv = list(cmd)
    if argv[0] in ("python", "python3"):  # the interpreter running secmaster (its venv)
        argv[0] = sys.executable
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=APPLY_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        error = f"{type(exc).__name__}: {exc}"
        code: int | None = None
    else:
        if proc.returncode == 0:
            log.info("secmaster.apply_cmd.done", cmd=list(cmd), reason=reason)
            return True
        error = (proc.stderr or proc.stdout).strip()[-500:]
        code = proc.returncode
    log.error(
        "secmaster.apply_cmd.failed", cmd=list(cmd), reason=reason, exit_code=code, error=error
    )
    send_alert(
        Alert(
            source="secmaster",
            severity="error",
            title="secmaster apply command failed",
            key="secmaster:apply-cmd",
            fields={"cmd": " ".join(cmd), "reason": reason, "exit_code": str(code), "error": error},
        )
    )
    return False


def run_schedule(
    settings: SecmasterSettings,
    user: str,
    stop: threading.Event,
    *,
    exchanges: Sequence[str] = LISTING_EXCHANGES,
    after_sync: Callable[[list[SyncResult]], None] | None = None,
    max_iterations: int | None = None,
) -> int:
    """Sync every ``poll_interval_min`` minutes until ``stop`` is set; returns iterations run.

    The first sync starts at once; later ones start on a fixed grid (start + k × interval),
    so a slow sync does not drift the schedule; a missed slot runs as soon as possible.
    """
    interval_s = settings.poll_interval_min * 60.0

    def sleep(seconds: float) -> None:
        if stop.wait(seconds):
            raise StopRequested

    log.info(
        "secmaster.schedule.started",
        interval_min=settings.poll_interval_min,
        exchanges=list(exchanges),
    )
    iterations = 0
    next_start = time.monotonic()
    while not stop.is_set():
        iterations += 1
        try:
            results = sync(settings, exchanges, user, sleep=sleep, now=utc_now)
        except LockBusyError as exc:
            log.warning(
                "secmaster.schedule.skipped",
                reason="lock busy",
                holder=exc.holder,
                lock=str(exc.path),
            )
        except StopRequested:
            break
        else:
            if after_sync is not None and any(r.ok for r in results):
                after_sync(results)
        if max_iterations is not None and iterations >= max_iterations:
            break
        next_start += interval_s
        now = time.monotonic()
        if next_start < now:
            next_start = now
        stop.wait(next_start - now)
    log.info("secmaster.schedule.stopped", iterations=iterations)
    return iterations
