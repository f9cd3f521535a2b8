"""ops.supervisord: a real supervisord whose children close inherited descriptors in one call.

The descriptors under test are ones supervisord itself inherited (as from a shell or a
service manager): inheritable, so without the close they would reach every program it runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from supervisor.options import ServerOptions

from ops import supervisord
from ops.fleet import connect
from tests.conftest import REPO
from tests.ops.fleet_harness import short_dir

MINFDS = 200
# Two descriptors supervisord inherits: one low, one just under minfds (the range's end).
LEAKS = (40, MINFDS - 1)
# The program: its open descriptors (the one listdir itself holds left out), on stdout, and a
# line on stderr, then it stays up long enough to be RUNNING.
PROBE = (
    "import os, sys, time\n"
    "fds = [int(f) for f in os.listdir('/proc/self/fd')]\n"
    "fds = sorted(fd for fd in fds if os.path.exists(f'/proc/self/fd/{fd}'))\n"
    "print(__import__('json').dumps(fds), flush=True)\n"
    "print('on stderr', file=sys.stderr, flush=True)\n"
    "time.sleep(float(sys.argv[1]))\n"
)


def _config(root: Path) -> Path:
    (root / "probe.py").write_text(PROBE)
    conf = root / "supervisord.conf"
    programs = ""
    for name, redirect in (("apart", "false"), ("together", "true")):
        programs += (
            f"[program:{name}]\ncommand = {sys.executable} {root / 'probe.py'} 30\n"
            f"autostart = true\nautorestart = false\nstartsecs = 0\n"
            f"redirect_stderr = {redirect}\n"
            f"stdout_logfile = {root / name}.out\nstderr_logfile = {root / name}.err\n\n"
        )
    conf.write_text(
        f"[supervisord]\nnodaemon = true\nlogfile = {root / 'supervisord.log'}\n"
        f"pidfile = {root / 'supervisord.pid'}\nminfds = {MINFDS}\n\n"
        f"[unix_http_server]\nfile = {root / 'sv.sock'}\n\n"
        "[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
        + programs
    )
    return conf


def _first_line(path: Path, timeout_s: float = 30.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().endswith("\n"):
            return path.read_text().splitlines()[0]
        time.sleep(0.05)
    raise AssertionError(f"nothing written to {path}")


# supervisord is started by a fresh interpreter that opens the leaks and then execs it. Doing the
# dup2 here instead raced the other threads of this process (xdist's, test servers'): Linux
# answers EBUSY for a descriptor another thread has reserved but not yet filled, and a thread
# blocked in accept() keeps its reservation for as long as it waits.
LAUNCH = (
    "import os, sys\n"
    "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o600)\n"
    "leaks = [int(to) for to in sys.argv[2].split(',')]\n"
    "for to in leaks:\n"
    "    os.dup2(fd, to, inheritable=True)\n"
    "if fd not in leaks:\n"
    "    os.close(fd)\n"
    "os.execv(sys.executable, [sys.executable, *sys.argv[3:]])\n"
)


def test_children_get_only_stdio_and_output_goes_where_configured() -> None:
    root = short_dir()
    conf = _config(root)
    leaks = ",".join(map(str, LEAKS))
    sup = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, str(root / "leak"), leaks]
        + ["-m", "ops.supervisord", "-n", "-c", str(conf)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # supervisord itself holds the descriptors (it would hand them on without the close)
        deadline = time.monotonic() + 30
        while not (root / "sv.sock").exists():
            assert sup.poll() is None, "supervisord exited"
            assert time.monotonic() < deadline, "supervisord did not open its socket"
            time.sleep(0.05)
        held = {int(f) for f in os.listdir(f"/proc/{sup.pid}/fd")}
        assert set(LEAKS) <= held

        for name in ("apart", "together"):
            assert json.loads(_first_line(root / f"{name}.out")) == [0, 1, 2], name
        assert (root / "apart.err").read_text() == "on stderr\n"
        assert "on stderr" in (root / "together.out").read_text()
        assert not (root / "together.err").exists()

        # A second spawn closes them too: nothing of the first stays in supervisord.
        rpc = connect(root / "sv.sock")
        rpc.supervisor.stopProcess("apart")
        (root / "apart.out").unlink()
        rpc.supervisor.startProcess("apart")
        assert json.loads(_first_line(root / "apart.out")) == [0, 1, 2]
        assert rpc.supervisor.getProcessInfo("apart")["statename"] == "RUNNING"
    finally:
        sup.send_signal(signal.SIGTERM)
        sup.wait(60)


def test_install_wraps_each_child_class_and_the_exec_once() -> None:
    before = {cls: cls.__dict__["_prepare_child_fds"] for cls in supervisord.CHILD_CLASSES}
    execve = ServerOptions.__dict__["execve"]
    assert not any(hasattr(f, "__wrapped__") for f in (*before.values(), execve))  # their own
    try:
        supervisord.install()
        supervisord.install()
        for cls, original in before.items():
            assert cls.__dict__["_prepare_child_fds"].__wrapped__ is original, cls
        assert ServerOptions.__dict__["execve"].__wrapped__ is execve
    finally:  # this test process's supervisor classes as they were
        for cls, original in before.items():
            cls._prepare_child_fds = original  # type: ignore[method-assign]
        ServerOptions.execve = execve  # type: ignore[method-assign]
