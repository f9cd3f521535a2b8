"""A real supervisord fleet in a short temp dir: config, secmaster listings, programs, RPC.

The root ``supervisord.conf`` is copied into the temp dir unchanged (its paths are relative
to itself), next to a config.toml whose exchanges point at one replay server.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ops.fleet import connect
from ops.replay import ReplayThread
from tests.conftest import CAPTURES, REPO


def short_dir() -> Path:
    """A temp dir short enough for a unix socket path (``/tmp/svXXXXXXXX``)."""
    return Path(tempfile.mkdtemp(prefix="sv", dir="/tmp"))


def fleet_config(
    root: Path,
    replay_port: int,
    *,
    fleet: str = "periodic = []\nlistener = true\nstartsecs = 1\nstartretries = 2\n",
    extra: str = "",
) -> Path:
    """A config.toml under ``root``: data in root/data, both exchanges on the replay server."""
    cfg = root / "config.toml"
    apply_cmd = shlex.join([sys.executable, "-m", "ops.fleet", "--config", str(cfg), "apply"])
    base = f"127.0.0.1:{replay_port}"
    cfg.write_text(
        'data_dir = "data"\nhost_id = "test"\n'
        "[collector]\nflush_interval_s = 0.2\nstatus_interval_s = 0.2\nshutdown_timeout_s = 3.0\n"
        'binance_trade_stream = "aggTrade"\ndepth_update_speed_ms = 100\n'
        "[collector.backoff]\ninitial_s = 0.05\nmax_s = 0.5\n"
        f'[exchanges.binance]\nws_url = "ws://{base}/binance"\nrest_url = "http://{base}/binance"\n'
        f'[exchanges.coinbase]\nws_url = "ws://{base}/coinbase"\n'
        f'rest_url = "http://{base}/coinbase"\n'
        '[secmaster]\nexchanges = ["binance", "coinbase"]\n'
        "min_listings = { binance = 10, coinbase = 10 }\nhttp_retries = 0\n"
        f"apply_cmd = {json.dumps(apply_cmd)}\n"
        "[alerts]\nsuppress_window_s = 900.0\ntimeout_s = 2.0\nretries = 0\n"
        f"[fleet]\n{fleet}\n{extra}\n",
        encoding="utf-8",
    )
    return cfg


def supervisor_programs(root: Path) -> dict[str, list[str]]:
    """What supervisord itself would run from ``root/supervisord.conf`` and its includes.

    Parsed by supervisor's own ``ServerOptions`` (the parser supervisord uses, ``%(...)s``
    expansion included): ``"group:name"`` → the command split as supervisord splits it.
    A file it cannot parse raises ``SystemExit`` (supervisord's usage exit).
    """
    from supervisor.options import ServerOptions

    opts = ServerOptions()
    opts.realize(args=["-c", str(root / "supervisord.conf")])
    return {
        f"{group.name}:{proc.name}": shlex.split(proc.command)
        for group in opts.process_group_configs
        for proc in group.process_configs
    }


def prepare_root(root: Path) -> None:
    """The root supervisord.conf and the directories it needs, as a host has them."""
    shutil.copy(REPO / "supervisord.conf", root / "supervisord.conf")
    for d in ("var/log", "var/supervisor", "data"):
        (root / d).mkdir(parents=True, exist_ok=True)


def run_py(*args: str, cwd: Path = REPO, timeout: float = 60.0, check: bool = True) -> str:
    proc = subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def secmaster(cfg: Path, *args: str) -> str:
    return run_py("-m", "secmaster", "--config", str(cfg), *args)


class Fleet:
    """supervisord (foreground, our child) on ``root``; ``rpc`` talks to its socket."""

    def __init__(self, root: Path, cfg: Path, env: dict[str, str] | None = None) -> None:
        self.root, self.cfg = root, cfg
        prepare_root(root)
        self.socket = root / "data" / "supervisor.sock"
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self._rpc: Any = None

    def start(self, timeout_s: float = 20.0) -> None:
        run_py("-m", "ops.fleet", "--config", str(self.cfg), "render")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ops.supervisord",
                "-n",
                "-c",
                str(self.root / "supervisord.conf"),
            ],
            cwd=self.root,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=open(self.root / "var" / "supervisord.stderr", "wb"),  # noqa: SIM115
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (self.root / "var" / "log" / "supervisord.log").read_text(errors="replace")
                raise AssertionError(f"supervisord exited {self.proc.returncode}:\n{log}")
            try:
                if self.socket.exists() and self.rpc().supervisor.getState()["statename"]:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("supervisord did not answer")

    def rpc(self) -> Any:
        if self._rpc is None:
            self._rpc = connect(self.socket, timeout_s=30.0)
        return self._rpc

    def infos(self) -> dict[str, dict[str, Any]]:
        return {f"{i['group']}:{i['name']}": i for i in self.rpc().supervisor.getAllProcessInfo()}

    def wait(
        self,
        cond: Callable[[dict[str, dict[str, Any]]], bool],
        timeout_s: float = 30.0,
        what: str = "",
    ) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        infos: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            infos = self.infos()
            if cond(infos):
                return infos
            time.sleep(0.1)
        states = {k: v["statename"] for k, v in infos.items()}
        raise AssertionError(f"timed out waiting for {what}: {states}")

    def wait_running(self, names: Sequence[str], timeout_s: float = 30.0) -> dict[str, int]:
        infos = self.wait(
            lambda i: all(n in i and i[n]["statename"] == "RUNNING" for n in names),
            timeout_s,
            f"RUNNING {names}",
        )
        return {n: int(infos[n]["pid"]) for n in names}

    def add_program(self, name: str, collector_args: str, section: str) -> Path:
        """Adds ``[program:name]`` (in a group of its own) to the running supervisord: the
        collector with ``collector_args`` and this fleet's config, the ``section`` lines
        after it, stderr to the returned log."""
        log = self.root / "var" / "log" / f"{name}.err.log"
        (self.root / "var" / "supervisor" / f"zz-{name}.conf").write_text(
            f"[program:{name}]\n"
            f"command = {sys.executable} -m collector {collector_args} --config {self.cfg}\n"
            f"{section}stderr_logfile = {log}\n"
        )
        rpc = self.rpc()
        rpc.supervisor.reloadConfig()
        rpc.supervisor.addProcessGroup(name)
        return log

    def stop(self) -> None:
        if self._rpc is not None:
            self._rpc("close")()
            self._rpc = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@contextmanager
def replay_server(speed: float | None = 1.0) -> Iterator[ReplayThread]:
    with ReplayThread([CAPTURES["binance"], CAPTURES["coinbase"]], speed=speed, loop=True) as r:
        yield r


@contextmanager
def fleet(
    replay: ReplayThread,
    *,
    track: Sequence[tuple[str, str, str]] = (),
    env: dict[str, str] | None = None,
    fleet_toml: str | None = None,
    extra: str = "",
    before_start: Callable[[Path], None] | None = None,
) -> Iterator[Fleet]:
    """A started fleet whose universe is exactly ``track`` ((exchange, pair, data_types)).

    ``before_start(cfg)`` runs after the universe is set up, before supervisord starts.
    """
    root = short_dir()
    f: Fleet | None = None
    try:
        kw = {} if fleet_toml is None else {"fleet": fleet_toml}
        cfg = fleet_config(root, replay.port, extra=extra, **kw)
        secmaster(cfg, "sync")
        secmaster(cfg, "untrack", "binance", "BTCUSDT")
        secmaster(cfg, "untrack", "coinbase", "BTC-USD")
        for exchange, pair, data_types in track:
            secmaster(cfg, "track", exchange, pair, "--data-types", data_types)
        if before_start is not None:
            before_start(cfg)
        f = Fleet(root, cfg, env)
        f.start()
        yield f
    finally:
        if f is not None:
            f.stop()
        shutil.rmtree(root, ignore_errors=True)
