"""QA runs over a data directory, the run lock, and the ``python -m qa`` command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from collector.common.layout import report_path
from collector.common.locks import LockBusyError
from collector.config import load_config
from qa.runner import run_lock, run_once
from qa.settings import QASettings, build_qa_settings
from tests.ops.test_periodic import wait_state
from tests.qa.helpers import parsed_path, trade_rows, write_members, write_parsed

ROOT = Path(__file__).resolve().parents[2]


def qa_settings(data: Path) -> QASettings:
    return build_qa_settings(load_config(None), data_dir=data)


def populate(data: Path) -> dict[str, Path]:
    good = write_parsed(
        parsed_path(data, "binance", "AAAUSDT", "trade"), "trade", trade_rows(200, symbol="AAAUSDT")
    )
    trunc = write_parsed(
        parsed_path(data, "binance", "BBBUSDT", "trade"),
        "trade",
        trade_rows(2000, symbol="BBBUSDT"),
    )
    trunc.write_bytes(trunc.read_bytes()[:-50])
    wrong = write_members(parsed_path(data, "binance", "CCCUSDT", "trade"), ["a,b\n", "1,2\n"])
    part = parsed_path(data, "binance", "DDDUSDT", "trade")
    write_parsed(part, "trade", trade_rows(5, symbol="DDDUSDT"))
    part = part.rename(part.with_name(part.name + ".part"))
    return {"good": good, "trunc": trunc, "wrong": wrong, "part": part}


def status(path: Path) -> str:
    report: dict[str, str] = orjson.loads(report_path(path).read_bytes())
    return report["status"]


def test_run_reports_each_file_on_its_own(tmp_path: Path) -> None:
    """A bad file fails alone; the others are still checked; open .part files are left alone."""
    files = populate(tmp_path)

    result = run_once(qa_settings(tmp_path))

    assert (result.checked, result.ok, result.fail) == (3, 1, 2)
    assert status(files["good"]) == "ok"
    assert status(files["trunc"]) == "fail"
    assert status(files["wrong"]) == "fail"
    assert not list(tmp_path.rglob("*.part.qa.json"))
    assert report_path(files["good"]).name == "20240301T100000Z_binance_AAAUSDT_trade.qa.json"


def test_second_run_checks_only_new_or_changed_files(tmp_path: Path) -> None:
    """Files with a fresh report are skipped; a file newer than its report is checked again."""
    files = populate(tmp_path)
    s = qa_settings(tmp_path)
    run_once(s)
    later = time.time() + 10
    os.utime(files["good"], (later, later))

    result = run_once(s)

    assert result.checked == 1


def test_since_skips_older_files(tmp_path: Path) -> None:
    """--since keeps only files modified inside the window."""
    files = populate(tmp_path)
    old = time.time() - 3 * 3600
    for p in (files["trunc"], files["wrong"]):
        os.utime(p, (old, old))

    result = run_once(qa_settings(tmp_path), since_s=2 * 3600)

    assert result.checked == 1


def test_run_refuses_to_overlap(tmp_path: Path) -> None:
    """While the lock is held another run raises LockHeldError and checks nothing."""
    files = populate(tmp_path)

    with run_lock(tmp_path), pytest.raises(LockBusyError):
        run_once(qa_settings(tmp_path))

    assert not report_path(files["good"]).exists()


def _env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SLACK_WEBHOOK_URL", "TELEGRAM_BOT_TOKEN", "PAGERDUTY_ROUTING_KEY")
    }
    env["PYTHONPATH"] = str(ROOT)
    return env


def qa_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qa", *args],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_cli_run_then_report(tmp_path: Path) -> None:
    """`qa run --data-dir` writes reports; `qa report FILE` prints the readable one."""
    files = populate(tmp_path)

    run = qa_cli("run", "--data-dir", str(tmp_path))
    rep = qa_cli("report", str(files["trunc"]), "--data-dir", str(tmp_path))

    assert run.returncode == 0, run.stderr
    assert '"qa.run_done"' in run.stderr
    assert rep.returncode == 0
    lines = rep.stdout.splitlines()
    assert lines[0] == f"File     {files['trunc'].name}"
    assert lines[2].startswith("Status   FAIL")
    assert any(x.startswith("  fail  gzip") and "truncated or corrupt gzip" in x for x in lines)


def test_cli_bad_since_is_refused(tmp_path: Path) -> None:
    """A bad --since: one line on stderr naming it, exit 2, nothing written."""
    populate(tmp_path)

    r = qa_cli("run", "--since", "2x", "--data-dir", str(tmp_path))

    assert r.returncode == 2
    assert r.stderr == "qa: --since '2x' must be a number with s, m, h or d (e.g. 2h)\n"
    assert not list(tmp_path.rglob("*.qa.json"))


def _spawn(*args: str) -> subprocess.Popen[str]:
    """``python -m ARGS`` in the background, output captured."""
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_first_run(files: dict[str, Path], data: Path) -> None:
    """Until the first scheduled run has checked the files and let go of the run lock."""
    deadline = time.monotonic() + 30
    while not report_path(files["wrong"]).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert report_path(files["wrong"]).exists()
    while b"qa.run_done" not in _lockfile_holder(data) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_schedule_runs_and_stops_on_sigterm(tmp_path: Path) -> None:
    """The supervised program runs at once, then exits 0 promptly on SIGTERM."""
    files = populate(tmp_path)
    proc = _spawn("ops.periodic", "qa", "--every", "60", "--data-dir", str(tmp_path))
    try:
        _wait_first_run(files, tmp_path)

        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)

        assert proc.returncode == 0
        assert '"periodic.stopped"' in err  # was "qa.stopped" (the old loop of `qa schedule`)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    "args",
    [("schedule", "--every", "60"), ("run", "--every", "60", "--since", "2h")],
    ids=["schedule", "run --every"],
)
def test_schedule_and_run_every_are_aliases_of_the_periodic_loop(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    """`qa schedule` / `qa run --every` exec `ops.periodic qa`: same pid, its state file."""
    files = populate(tmp_path)
    proc = _spawn("qa", *args, "--data-dir", str(tmp_path))
    try:
        _wait_first_run(files, tmp_path)
        state = wait_state(tmp_path / ".fleet" / "periodic" / "qa.json", lambda st: st["runs"] >= 1)

        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)

        assert proc.returncode == 0, err
        assert (state["pid"], state["interval_s"], state["last_exit"]) == (proc.pid, 3600.0, [0])
        assert f"--data-dir {tmp_path}" in err  # the command of each run (periodic.started)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _lockfile_holder(data: Path) -> bytes:
    """Whether the first run finished: the lock is free again."""
    try:
        with run_lock(data):
            return b"qa.run_done"
    except LockBusyError:
        return b""
