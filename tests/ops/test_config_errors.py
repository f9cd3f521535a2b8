"""Every program that takes --config refuses a bad config file the same way: one line on
stderr naming the file (and the key), exit code 2, nothing created. Real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

# (name, argv after `python -m`); {cfg} is the config file's path.
PROGRAMS = [
    ("collector", ["collector", "--exchange", "binance", "--symbol", "BTCUSDT", "--data_type",
                   "trade", "--config", "{cfg}"]),
    ("qa", ["qa", "run", "--config", "{cfg}"]),
    ("ops.sync", ["ops.sync", "run", "--config", "{cfg}"]),
    ("ops.periodic", ["ops.periodic", "qa", "--once", "--config", "{cfg}"]),
    ("ops status", ["ops", "status", "--config", "{cfg}"]),
    ("secmaster", ["secmaster", "--config", "{cfg}", "tracked"]),
    ("ops.fleet", ["ops.fleet", "--config", "{cfg}", "render"]),
]  # fmt: skip


def env() -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "TELEGRAM_"))}
    return {**keep, "PYTHONPATH": str(REPO)}


def run(argv: list[str], cfg: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *(a.replace("{cfg}", str(cfg)) for a in argv)],
        cwd=cwd,
        env=env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(("name", "argv"), PROGRAMS, ids=[p[0] for p in PROGRAMS])
def test_non_utf8_config_is_one_line_and_exit_2(tmp_path: Path, name: str, argv: list[str]) -> None:
    """A config file in Latin-1: one line naming the file, exit 2, no data dir created."""
    cfg = tmp_path / "latin1.toml"
    cfg.write_bytes(b'data_dir = "donn\xe9es"\n')

    r = run(argv, cfg, tmp_path)

    assert r.returncode == 2, r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert f"config file {cfg} is not UTF-8 text (byte 0xe9 on line 1)" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latin1.toml"]


@pytest.mark.parametrize(("name", "argv"), PROGRAMS, ids=[p[0] for p in PROGRAMS])
def test_unknown_key_is_refused_by_every_program(
    tmp_path: Path, name: str, argv: list[str]
) -> None:
    """A typo in a section the program does not even read is refused by all of them."""
    cfg = tmp_path / "typo.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "data"}"\n[collector]\nflush_intervall_s = 1.0\n')

    r = run(argv, cfg, tmp_path)

    assert r.returncode == 2, r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.rstrip().endswith(
        f"{cfg}: unknown key [collector] flush_intervall_s (did you mean flush_interval_s?)"
    )
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(("name", "argv"), PROGRAMS, ids=[p[0] for p in PROGRAMS])
def test_empty_data_dir_in_config_is_refused(tmp_path: Path, name: str, argv: list[str]) -> None:
    """data_dir = "" (the config's own directory) is refused by every program."""
    cfg = tmp_path / "empty.toml"
    cfg.write_text('data_dir = ""\n')

    r = run(argv, cfg, tmp_path)

    assert r.returncode == 2, r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert f"{cfg}: data_dir is empty" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.toml"]


def test_listener_with_non_utf8_config_logs_one_line_and_keeps_serving(tmp_path: Path) -> None:
    """The event listener must keep answering supervisord (it is what alerts on crashes):
    a bad config is one error line in its log, and every event is still acknowledged."""
    cfg = tmp_path / "latin1.toml"
    cfg.write_bytes(b'data_dir = "donn\xe9es"\n')
    body = "processname:x groupname:g from_state:RUNNING expected:0 pid:7"
    event = (
        "ver:3.0 server:supervisor serial:1 pool:alerts poolserial:1 "
        f"eventname:PROCESS_STATE_EXITED len:{len(body)}\n{body}"
    )

    r = subprocess.run(
        [sys.executable, "-m", "ops.listener", "--config", str(cfg)],
        input=event.encode(),
        cwd=tmp_path,
        env=env(),
        capture_output=True,
        timeout=30,
    )

    assert r.returncode == 0
    assert r.stdout == b"READY\nRESULT 2\nOKREADY\n"
    lines = [json.loads(line) for line in r.stderr.decode().splitlines()]
    bad = [e for e in lines if e["event"] == "listener.config_unusable"]
    assert [e["error"] for e in bad] == [
        f"config file {cfg} is not UTF-8 text (byte 0xe9 on line 1)"
    ]
    assert "Traceback" not in r.stderr.decode()
