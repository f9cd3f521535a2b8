"""Runs real collector processes against the replay server, and reads what they wrote."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ops.replay import ReplayThread
from tests.conftest import REPO


def write_config(path: Path, exchange: str, replay: ReplayThread, extra: str = "") -> Path:
    path.write_text(
        f'data_dir = "data"\n'
        f"[collector]\nflush_interval_s = 0.1\nstatus_interval_s = 0.1\n"
        f"{'' if 'depth_update_speed_ms' in extra else 'depth_update_speed_ms = 100'}\n"
        f"{extra}\n"
        f"[collector.backoff]\ninitial_s = 0.05\nmax_s = 0.2\n"
        f"[collector.watchdog]\ntrade_s = 2.0\nbook_s = 2.0\nl3_s = 2.0\n"
        f'[exchanges.{exchange}]\nws_url = "{replay.ws_url}"\nrest_url = "{replay.http_url}"\n'
    )
    return path


class Collector:
    """One ``python -m collector`` process writing under ``workdir/data``."""

    def __init__(
        self,
        workdir: Path,
        exchange: str,
        symbol: str,
        data_type: str,
        config: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.exchange, self.symbol, self.data_type = exchange, symbol, data_type
        self.stream_dir = workdir / "data" / exchange / symbol / data_type
        self.log = workdir / f"collector-{time.monotonic_ns()}.log"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "collector",
                "--exchange",
                exchange,
                "--symbol",
                symbol,
                "--data_type",
                data_type,
                "--config",
                str(config),
            ],
            cwd=REPO,
            stderr=open(self.log, "wb"),  # noqa: SIM115
            env={**os.environ, **(env or {})},
        )

    def status(self) -> dict[str, Any]:
        """This process's last status (an older process's file does not count)."""
        try:
            status = dict(json.loads((self.stream_dir / "status.json").read_text()))
        except (OSError, ValueError):
            return {}
        return status if status.get("pid") == self.proc.pid else {}

    def wait_for(self, cond: Callable[[dict[str, Any]], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"collector exited {self.proc.returncode}:\n{self.logs()}")
            if cond(self.status()):
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out; status={self.status()}\n{self.logs()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def log_events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.logs().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def files(self, kind: str) -> list[Path]:
        return sorted((self.stream_dir / kind).rglob("*.gz"))

    def rows(self) -> list[list[str]]:
        """Every parsed row of every closed file, in file order, headers checked."""
        out: list[list[str]] = []
        for path in self.files("parsed"):
            lines = list(csv.reader(io.StringIO(gzip.decompress(path.read_bytes()).decode())))
            out.extend(lines[1:])
        return out

    def raw_events(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for path in self.files("raw"):
            for line in gzip.decompress(path.read_bytes()).decode().splitlines():
                out.append(json.loads(line))
        return out


@contextmanager
def collector(
    workdir: Path,
    exchange: str,
    symbol: str,
    data_type: str,
    config: Path,
    env: dict[str, str] | None = None,
) -> Iterator[Collector]:
    c = Collector(workdir, exchange, symbol, data_type, config, env)
    try:
        yield c
    finally:
        if c.proc.poll() is None:
            c.proc.kill()
            c.proc.wait(10)
