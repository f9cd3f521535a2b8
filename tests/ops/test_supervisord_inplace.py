"""ops.supervisord starts collector programs without an exec: the forked child runs the
collector supervisord imported once (ops/supervisord.py ``run_collector``), and is the
process supervisord watches, with the program's environment, stdio and stop."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops import supervisord
from ops.replay import ReplayThread
from tests.conftest import REPO
from tests.ops.alert_sink import WatchedAlertSink
from tests.ops.fleet_harness import fleet, replay_server

NAME = "collector:coinbase-skl-usd-trade"


@pytest.fixture(scope="module")
def replay() -> Iterator[ReplayThread]:
    with replay_server() as r:
        yield r


def _status(root: Path) -> dict[str, object]:
    path = root / "data" / "coinbase" / "SKL-USD" / "trade" / "status.json"
    try:
        return dict(json.loads(path.read_bytes()))
    except (OSError, ValueError):
        return {}


def _wait(cond: object, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _socket_inodes(pid: int) -> set[str]:
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            out.add(target)
    return out


@pytest.mark.e2e
def test_a_collector_program_runs_in_place_as_the_supervised_process(
    replay: ReplayThread,
) -> None:
    with fleet(replay, track=[("coinbase", "SKL-USD", "trade")]) as f:
        assert f.proc is not None
        pid = f.wait_running([NAME])[NAME]
        _wait(lambda: int(_status(f.root).get("rows") or 0) > 0)

        # no exec: supervisord's own command line, the collector's name
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[:3] == [sys.executable.encode(), b"-m", b"ops.supervisord"]
        assert Path(f"/proc/{pid}/comm").read_text() == "collector\n"
        # none of supervisord's sockets or files
        assert _socket_inodes(f.proc.pid).isdisjoint(_socket_inodes(pid))
        targets = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        assert str(f.root / "var" / "log" / "supervisord.log") not in targets
        # its log lines reach its own stderr log, through the new stdio
        err_log = f.root / "var" / "log" / "collector" / "coinbase-skl-usd-trade.err.log"
        events = [json.loads(line)["event"] for line in err_log.read_text().splitlines()]
        assert "ws.connected" in events

        f.rpc().supervisor.stopProcess(NAME)
        info = f.infos()[NAME]
        last_event = json.loads(err_log.read_text().splitlines()[-1])["event"]
        raw = (f.root / "data" / "coinbase" / "SKL-USD" / "trade" / "raw").rglob("*")
        files = [p for p in raw if p.is_file()]
        lines = [line for p in files for line in gzip.decompress(p.read_bytes()).splitlines()]

    assert info["statename"] == "STOPPED"
    assert info["exitstatus"] == 0
    assert last_event == "collector.stopped"
    assert len(files) == 1
    assert not files[0].name.endswith(".part")  # finalised
    assert [json.loads(line)["t"] for line in lines].count("recv") > 0


@pytest.mark.e2e
def test_a_collector_in_place_has_its_programs_environment() -> None:
    """A variable only the program's ``environment`` sets reaches the collector: here the
    Slack webhook its critical alert goes to when the exchange refuses the location (HTTP
    451 at every handshake); supervisord's own environment has none. It then exits 2, as
    exec'd: FATAL after its retries, with its reason on its stderr."""
    assert "SLACK_WEBHOOK_URL" not in os.environ
    with replay_server() as replay, WatchedAlertSink() as sink:
        replay.faults.reject_handshakes = 1000
        replay.faults.reject_status = 451
        replay.faults.reject_retry_after_s = 0
        with fleet(replay) as f:
            log = f.add_program(
                "env",
                "--exchange binance --symbol NKNUSDT --data_type trade",
                f'environment = SLACK_WEBHOOK_URL="{sink.url}/slack"\n'
                "startsecs = 1\nstartretries = 0\nautorestart = false\n",
            )
            f.wait(lambda i: i["env:env"]["statename"] == "FATAL", 30, "FATAL")
            alert = sink.wait_for(lambda t: "NKNUSDT trade stopped" in t, 10.0)
            err = log.read_text()

    assert alert.startswith("[CRITICAL] collector: binance NKNUSDT trade stopped: Binance.com")
    assert "collector: fatal: Binance.com refuses this location (HTTP 451" in err


def test_only_a_collector_run_by_this_interpreter_with_its_python_environment_runs_in_place() -> (
    None
):
    python, env = sys.executable, dict(os.environ)
    run = [python, "-m", "collector", "--exchange", "binance", "--symbol", "BTCUSDT"]

    assert supervisord.runs_in_place(python, run, env)
    assert supervisord.runs_in_place(python, run, {**env, "SLACK_WEBHOOK_URL": "x"})
    assert not supervisord.runs_in_place(python, [python, "-m", "collector", "rebuild"], env)
    assert not supervisord.runs_in_place(python, [python, "-m", "ops.periodic", "qa"], env)
    assert not supervisord.runs_in_place(python, [python, "-mcollector"], env)
    assert not supervisord.runs_in_place("/usr/bin/python3", ["python3", *run[1:]], env)
    # (a PYTHON* variable of the program's own: its interpreter would differ from this one)
    assert not supervisord.runs_in_place(python, run, {**env, "PYTHONPATH": "/elsewhere"})
    without = {k: v for k, v in env.items() if not k.startswith("PYTHON")}
    if without != env:
        assert not supervisord.runs_in_place(python, run, without)


def test_a_changed_source_file_is_found(tmp_path: Path) -> None:
    """The collectors run in place only while every file the preload read is as it was: a
    deploy in between (a rewrite, a replaced file, a removed one) makes them exec'd."""
    files = [tmp_path / name for name in ("a.py", "b.py", "c.py")]
    for p in files:
        p.write_text("x = 1\n")
    stamps = supervisord.source_stamps([*map(str, files), None, str(tmp_path / "nope.py")])

    assert [s[0] for s in stamps] == [str(p) for p in files]
    assert supervisord.changed_source(stamps) is None
    st = os.stat(files[1])
    os.utime(files[1], ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert supervisord.changed_source(stamps) == str(files[1])
    os.utime(files[1], ns=(st.st_atime_ns, st.st_mtime_ns))
    files[2].write_text("x = 22\n")  # (the size tells, whatever the clock's resolution)
    assert supervisord.changed_source(stamps) == str(files[2])
    files[2].write_text("x = 1\n")
    os.utime(files[2], ns=(stamps[2][1], stamps[2][1]))
    assert supervisord.changed_source(stamps) is None
    files[0].unlink()
    assert supervisord.changed_source(stamps) == str(files[0])


def test_a_directory_with_another_collector_package_shadows_this_one(tmp_path: Path) -> None:
    import collector

    assert not supervisord.shadowed(str(tmp_path))
    (tmp_path / "collector").mkdir()
    assert supervisord.shadowed(str(tmp_path))
    repo = Path(str(collector.__file__)).resolve().parents[1]
    assert not supervisord.shadowed(str(repo))  # the package imported here


def _child_output(probe: str, cwd: Path) -> str:
    """What a fresh interpreter running ``probe`` (from :data:`CHILD`) prints."""
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


# A child of supervisord at the moment it would exec, without the rest of supervisord: the
# preload, the wrapped exec (a real one exits 3) and supervisord's options as far as the
# child uses them (no signal taken).
CHILD = """
import os, pwd, sys
from ops import supervisord

assert supervisord.preload()
ran = supervisord._exec_or_run(lambda self, f, argv, env: os._exit(3))  # 3: exec'd


class Options:
    def get_signal(self):
        return None


python = sys.executable
"""
USER_PROBE = (
    CHILD
    + """
nobody = pwd.getpwnam("nobody")
for as_nobody in (False, True):
    pid = os.fork()
    if pid == 0:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # (the help text)
        if as_nobody:  # supervisord's `user` setting sets both ids (setuid) before the exec;
            # only the real one here, so that every file stays readable and the user alone
            # decides
            os.setresuid(nobody.pw_uid, 0, 0)
        ran(Options(), python, [python, "-m", "collector", "--help"], dict(os.environ))
        os._exit(4)
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""
)


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_a_collector_program_of_another_user_is_execd(tmp_path: Path) -> None:
    """Run as supervisord's user, the collector runs in place (``--help``: exit 0); run as
    another (``user = nobody``), it is exec'd, and keeps nothing of supervisord's memory."""
    out = _child_output(USER_PROBE, tmp_path)
    assert out.split() == ["0", "3"]


HOSTILE_PROBE = (
    CHILD
    + """
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.dup2(w, 2)
    argv = ["--exchange", "bin\\nance%s", "--symbol", "BTC%nUSDT\\n", "--data_type", "trade"]
    env = {**os.environ, "SLACK_WEBHOOK_URL": "http://127.0.0.1:9/%s\\nx", "L3C_X": "y" * 100_000}
    ran(Options(), python, [python, "-m", "collector", *argv], env)
    os._exit(4)
os.close(w)
print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
print(repr(os.read(r, 4000).decode()))
"""
)


def test_a_collector_in_place_refuses_hostile_arguments_as_exec_d(tmp_path: Path) -> None:
    """Arguments with a newline and ``%``, a huge variable and a newline in the webhook, in
    place: the collector's own argument error (exit 2, the value shown escaped), nothing run."""
    out = _child_output(HOSTILE_PROBE, tmp_path)
    code, stderr = out.splitlines()
    assert code == "2"
    assert stderr == repr(
        "collector: error: unknown exchange 'bin\\nance%s' "
        "(choose from binance, coinbase, bitstamp, bitfinex)\n"
    )
