"""The fleet hook: ``[secmaster] apply_cmd``, run after a sync and after track/untrack.

``secmaster sync --apply`` (what ``python -m ops.periodic secmaster`` runs on its interval) runs
it after a sync in which at least one exchange was polled successfully; ``track`` and
``untrack`` after every change. The command is an argv run without a shell (e.g. ``python -m
ops.fleet apply``, pointed at secmaster's own config by ``SecmasterSettings.apply_argv``), so
secmaster never imports ops. A failure is logged and alerted.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

import structlog

from collector.common.alerts import Alert, send_alert

log = structlog.get_logger()

# Upper bound for one run of the apply command.
APPLY_TIMEOUT_S = 300.0


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
