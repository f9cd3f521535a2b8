"""Fleet benchmark: 100 collector programs under a real supervisord against one replay server.

Workload: the 28 recorded streams (4 Binance + 10 Coinbase pairs, trade and book) rendered by
``ops.fleet.render_programs`` four times over four data directories (one config file each,
so no two programs share a stream lock), first 100 programs, all in ``[group:collector]``.
The replay server (``python -m ops.replay --loop --speed 1``, its own process) serves the
recordings at recorded pace.

Measured, side by side in one run:
  start     wall time from spawning ``supervisord -n`` to all 100 programs RUNNING
            (RUNNING = up for ``startsecs``, 2 s: the floor of this figure), and to all 100
            connected (each one's status.json)
  rss/pss   memory of the fleet (sum over collector processes, /proc), per collector
  cpu       CPU of the 100 collectors over 10 s at recorded pace (% of one core)
  stop      wall time of one ``stopProcessGroup("collector")`` call until all are stopped
            (each collector finalises its files), how many needed SIGKILL, and the proof
            they finalised: each log's last line, no ``.part`` file left
  spawn     CPU of one supervisord spawn (fork to exec, plus a ``sleep``): supervisor's
            own supervisord, whose child closes 3 up to ``minfds`` one ``os.close`` each, beside
            ``python -m ops.supervisord`` (one ``os.closerange``), at supervisord.conf's
            minfds; the floor is the same ``sleep`` spawned by ``subprocess``
  bare      the floor of an exec'd fleet: the same 100 programs (same supervisord
            sections, startsecs, logs) with the command replaced by the bare trio-websocket
            loop (tests/bench/bareloop.py: connect where its collector connects, touch a
            marker where a collector's status.json says connected, send the subscription
            its collector sends, receive the same recorded traffic), in a supervisord of
            its own after the collectors stopped: RUNNING and connected. The collectors
            themselves are not exec'd: ``ops.supervisord`` imported the collector once and
            runs each collector program in its forked child (ops/supervisord.py), which
            the start figures measure from the spawn of that supervisord, its own import
            included; the bare loops, not collector programs, are exec'd. Beside them, the
            CPU of one collector exec'd alone, as without that supervisord
Goals (issue 18): start → all RUNNING and connected ≤ 10 s, stop ≤ 5 s, RSS ≤ 40 MB per
collector.
"""

from __future__ import annotations

import gzip
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from collector.config import load_config
from collector.exchanges import ADAPTERS
from collector.settings import build_collector_settings
from collector.writer import valid_gzip_prefix
from ops.fleet import build_fleet_settings, connect, render_programs
from tests.ops.fleet_harness import short_dir

REPO = Path(__file__).resolve().parents[2]
RECORDED = Path(os.environ.get("SHARED_DIR", REPO.parent / "shared")) / "data" / "recorded"
N = 100
POLL_S = 0.25
COPIES = 4
STREAMS = [
    (ex, pair, dt)
    for ex, pairs in (
        ("binance", ("BLZETH", "LRCBTC", "NKNUSDT", "RUNEEUR")),
        (
            "coinbase",
            (
                "BAND-BTC",
                "BAND-GBP",
                "CRV-EUR",
                "DASH-BTC",
                "NMR-EUR",
                "NU-GBP",
                "SKL-BTC",
                "SKL-GBP",
                "SKL-USD",
                "YFI-BTC",
            ),
        ),
    )
    for pair in pairs
    for dt in ("book", "trade")
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(root: Path, k: int, port: int) -> Path:
    cfg = root / f"config{k}.toml"
    base = f"127.0.0.1:{port}"
    cfg.write_text(
        f'data_dir = "data/{k}"\n'
        "[collector]\n"
        'binance_trade_stream = "aggTrade"\ndepth_update_speed_ms = 100\n'
        "[collector.backoff]\ninitial_s = 1.0\nmax_s = 5.0\n"
        f'[exchanges.binance]\nws_url = "ws://{base}/binance"\nrest_url = "http://{base}/binance"\n'
        f'[exchanges.coinbase]\nws_url = "ws://{base}/coinbase"\n'
        f'rest_url = "http://{base}/coinbase"\n'
        '[fleet]\nperiodic = []\nlistener = false\nlog_dir = "var/log"\n'
        f'socket = "{root}/data/supervisor.sock"\n',
        encoding="utf-8",
    )
    return cfg


def _programs(root: Path, port: int) -> tuple[str, int]:
    sections: list[str] = []
    names: list[str] = []
    for k in range(COPIES):
        s = build_fleet_settings(load_config(_config(root, k, port)))
        for block in render_programs(s, STREAMS).split("\n\n"):
            if block.startswith("[program:") and " -m collector " in block:
                name = block.split("]", 1)[0].removeprefix("[program:")
                new = f"{name}-{k}"
                block = block.replace(f"[program:{name}]", f"[program:{new}]")
                block = block.replace(f"/collector/{name}.", f"/collector/{new}.")
                sections.append(block)
                names.append(new)
    sections, names = sections[:N], names[:N]
    text = "\n\n".join(sections) + f"\n\n[group:collector]\nprograms = {','.join(names)}\n"
    return text, len(names)


def _proc_mem_kb(pid: int) -> tuple[int, int]:
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def _cpu_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except OSError:
        return 0


def _connected(root: Path) -> int:
    """Collectors whose status.json says connected (each program's own data dir)."""
    n = 0
    for path in (root / "data").glob("*/*/*/*/status.json"):
        try:
            n += bool(json.loads(path.read_bytes()).get("connected"))
        except (OSError, ValueError):
            pass
    return n


def _start_cpu_s(root: Path | None) -> float:
    """CPU seconds one collector spends from exec to its subscription (a Binance trade
    stream against tests/bench/wsblast.py, nothing else running): the start-up floor of our
    code. ``root`` None: the same for the bare trio-websocket loop (tests/bench/bareloop.py,
    which imports only trio and trio-websocket), the floor of any collector built on them.
    The best of three."""
    from tests.bench.bench_collector import (
        _cpu_s,
        _spawn_bare,
        _spawn_collector,
        _stop,
        trade_frames,
    )
    from tests.bench.wsblast import Plan, Server

    best = float("inf")
    for i in range(3):
        server = Server(trade_frames(10), Plan("paced", rate=1, seconds=3, hold_s=1))
        with server as port:
            proc: subprocess.Popen[Any] = (
                _spawn_bare(port, 0)
                if root is None
                else _spawn_collector(root, port, f"start{i}")[0]
            )
            try:
                if not server.subscribed.wait(30):
                    raise RuntimeError("the client never subscribed")
                best = min(best, _cpu_s(proc.pid))
            finally:
                _stop(proc)
    return best


def _start_times(root: Path, t0_wall: float) -> tuple[list[float], list[float], int]:
    """Seconds from supervisord's spawn to each collector's start (status ``started_at``) and
    to its first ``connect`` (raw), and the reconnects so far, over all collectors."""
    starts, connects, reconnects = [], [], 0
    for path in (root / "data").glob("*/*/*/*/status.json"):
        try:
            st = json.loads(path.read_bytes())
        except (OSError, ValueError):
            continue
        starts.append(float(st["started_at"]) - t0_wall)
        reconnects += int(st.get("reconnects") or 0)
        for part in sorted((path.parent / "raw").rglob("*.part")):
            data = part.read_bytes()
            for line in gzip.decompress(data[: valid_gzip_prefix(data)]).splitlines():
                event = json.loads(line)
                if event.get("t") == "connect":
                    connects.append(float(event["ts"]) - t0_wall)
                    break
            break
    return starts, connects, reconnects


def _finished(root: Path) -> tuple[int, int]:
    """After the stop: collectors whose log ends with ``collector.stopped`` (their files
    finalised), and the ``.part`` files left under the data dirs (none when all were)."""
    finished = 0
    for path in (root / "var" / "log").rglob("*.err.log"):
        lines = path.read_bytes().splitlines()
        try:
            finished += bool(lines) and json.loads(lines[-1]).get("event") == "collector.stopped"
        except ValueError:
            pass
    return finished, sum(1 for _ in (root / "data").rglob("*.part"))


def _spread(values: list[float]) -> str:
    v = sorted(values)
    return f"{v[0]:.1f}/{v[len(v) // 2]:.1f}/{v[-1]:.1f} s (min/median/max)"


def _infos(rpc: Any, group: str = "collector") -> list[dict[str, Any]]:
    return [i for i in rpc.supervisor.getAllProcessInfo() if i["group"] == group]


def _layout(root: Path) -> None:
    (root / "var" / "log" / "collector").mkdir(parents=True)
    (root / "var" / "supervisor").mkdir(parents=True)
    (root / "data").mkdir()
    shutil.copy(REPO / "supervisord.conf", root / "supervisord.conf")


def _bare_programs(text: str, root: Path, port: int) -> str:
    """The collector sections of ``text`` with each command replaced by the bare loop
    (everything else as supervisord runs a collector), in ``[group:bare]``. Each bare loop
    connects where its collector connects and sends what its collector sends to subscribe
    (the adapter's messages, built from the same config), so the floor receives the same
    traffic: a Coinbase book as much as a Binance trade stream is its own load."""
    (root / "ready").mkdir()
    (root / "subscribe").mkdir()
    out: list[str] = []
    for line in text.splitlines():
        if line.startswith("[program:"):
            name = line.removeprefix("[program:").removesuffix("]")
        elif line.startswith("command = "):
            url, messages = _subscription(line.removeprefix("command = "))
            (root / "subscribe" / f"{name}.json").write_text(json.dumps(messages))
            line = (
                f"command = {sys.executable} -m tests.bench.bareloop "
                f"{url} 0 {root}/ready/{name} @{root}/subscribe/{name}.json"
            )
        elif line.startswith("directory = "):
            line = f"directory = {REPO}"
        elif line == "[group:collector]":
            line = "[group:bare]"
        out.append(line)
    return "\n".join(out) + "\n"


def _subscription(command: str) -> tuple[str, list[str]]:
    """The websocket URL a collector's command line connects to and the messages it sends
    to subscribe (its own settings and adapter)."""
    argv = shlex.split(command)
    opt = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("--")}
    settings = build_collector_settings(
        load_config(Path(opt["--config"])),
        exchange=opt["--exchange"],
        symbol=opt["--symbol"],
        data_type=opt["--data_type"],
    )
    adapter, spec = ADAPTERS[settings.exchange], settings.stream_spec()
    return adapter.build_ws_url(settings.ws_url, spec), adapter.build_subscribe(spec, time.time())


def _supervise(root: Path) -> tuple[subprocess.Popen[bytes], Any, float, float]:
    """Spawns ``supervisord -n`` for ``root``: (its process, its XML-RPC proxy once it
    answers, the monotonic and wall clock of the spawn)."""
    t0, t0_wall = time.monotonic(), time.time()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ops.supervisord", "-n", "-c", str(root / "supervisord.conf")],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sock = root / "data" / "supervisor.sock"
    while True:
        if time.monotonic() - t0 > 30:
            raise RuntimeError("supervisord did not answer")
        if sock.exists():
            try:
                rpc = connect(sock)
                rpc.supervisor.getState()
                return proc, rpc, t0, t0_wall
            except OSError:
                pass
        time.sleep(0.02)


def _await_start(
    rpc: Any, group: str, n: int, t0: float, connected: Callable[[], int], others: dict[str, int]
) -> dict[str, Any]:
    """Polls until all ``n`` programs of ``group`` are RUNNING and ``connected()`` says all
    are connected (60 s at most): seconds to all spawned, RUNNING, connected, the counts
    reached, and the CPU (clock ticks) the programs and the ``others`` PIDs had spent by
    the time all were connected (the ``others``' since this call)."""
    # One poll every POLL_S (the harness must not be what slows 100 starts down: an
    # XML-RPC listing of 100 programs and 100 status files cost supervisord and this
    # process a good share of a core when polled every 50 ms).
    up: dict[str, Any] = {"spawned": None, "running": None, "connected": None, "spent": {}}
    before = {k: _cpu_ticks(pid) for k, pid in others.items()}  # the replay server ran before
    while (up["running"] is None or up["connected"] is None) and time.monotonic() - t0 < 60:
        time.sleep(POLL_S)
        infos = _infos(rpc, group)
        up["n_running"] = sum(1 for i in infos if i["statename"] == "RUNNING")
        if up["spawned"] is None and sum(1 for i in infos if i["pid"]) == n:
            up["spawned"] = time.monotonic() - t0
        if up["running"] is None and up["n_running"] == n:
            up["running"] = time.monotonic() - t0
        up["n_connected"] = connected()
        if up["connected"] is None and up["n_connected"] == n:
            up["connected"] = time.monotonic() - t0
            up["spent"] = {
                group: sum(_cpu_ticks(int(i["pid"])) for i in infos if i["pid"]),
                **{k: _cpu_ticks(pid) - before[k] for k, pid in others.items()},
            }
    for k in ("spawned", "running", "connected"):
        up[k] = float("nan") if up[k] is None else up[k]
    return up


SPAWNS = 20


def _minfds() -> int:
    for line in (REPO / "supervisord.conf").read_text().splitlines():
        if line.replace(" ", "").startswith("minfds="):
            return int(line.split("=", 1)[1])
    raise RuntimeError("supervisord.conf sets no minfds")


def _process_cpu_s(pid: int) -> float:
    """CPU seconds of ``pid`` so far, before its exec included (its process CPU clock)."""
    return time.clock_gettime((~pid << 3) | 2)


def spawn_cpu_s(argv: list[str] | None, minfds: int) -> float:
    """Mean CPU of one spawn of ``sleep 1.5`` by the supervisord that ``argv`` runs (None:
    by ``subprocess``, the floor), over :data:`SPAWNS` programs (read while they sleep)."""
    sleep = shutil.which("sleep") or "/bin/sleep"
    if argv is None:
        procs = [subprocess.Popen([sleep, "1.5"]) for _ in range(SPAWNS)]
        time.sleep(0.5)
        try:
            return sum(_process_cpu_s(p.pid) for p in procs) / SPAWNS
        finally:
            for p in procs:
                p.kill()
                p.wait()
    root = short_dir()
    try:
        conf = root / "supervisord.conf"
        conf.write_text(
            f"[supervisord]\nlogfile = {root}/supervisord.log\npidfile = {root}/sd.pid\n"
            f"minfds = {minfds}\n[unix_http_server]\nfile = {root}/sv.sock\n"
            "[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = "
            "supervisor.rpcinterface:make_main_rpcinterface\n"
            + "".join(
                f"[program:s{i}]\ncommand = {sleep} 1.5\nstartsecs = 0\nautorestart = false\n"
                "stdout_logfile = NONE\nstderr_logfile = NONE\n"
                for i in range(SPAWNS)
            )
        )
        sd = subprocess.Popen(
            [*argv, "-n", "-c", str(conf)],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    infos = connect(root / "sv.sock").supervisor.getAllProcessInfo()
                    if len(infos) == SPAWNS and all(i["pid"] for i in infos):
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("supervisord did not spawn its programs")
                time.sleep(0.1)
            time.sleep(0.5)  # every child past its exec
            cpu = sum(_process_cpu_s(int(i["pid"])) for i in infos) / SPAWNS
            rpc = connect(root / "sv.sock")
            while time.monotonic() < deadline and any(  # (supervisord then stops at once)
                i["statename"] != "EXITED" for i in rpc.supervisor.getAllProcessInfo()
            ):
                time.sleep(0.1)
            return cpu
        finally:
            sd.send_signal(signal.SIGTERM)
            sd.wait(30)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _shutdown(proc: subprocess.Popen[bytes], rpc: Any) -> None:
    """Ends a supervisord of :func:`_supervise` (it stops what it still runs first)."""
    rpc("close")()
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)


def main() -> None:
    root = short_dir()
    bare_root = short_dir()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        port = _free_port()
        _layout(root)
        replay = [sys.executable, "-m", "ops.replay", "--port", str(port), "--speed", "1", "--loop"]
        for name in ("binance-spot-2021-10-11", "coinbase-exchange-2021-04-17"):
            replay += ["--capture", str(RECORDED / f"{name}.jsonl.gz")]
        procs.append(
            subprocess.Popen(
                [*replay, "--log-level", "warning"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        start_cpu, bare_cpu = _start_cpu_s(root), _start_cpu_s(None)
        minfds = _minfds()
        spawn = {  # the best of three of each
            who: min(spawn_cpu_s(argv, minfds) for _ in range(3))
            for who, argv in (
                ("supervisor's supervisord", [str(Path(sys.executable).parent / "supervisord")]),
                ("ops.supervisord", [sys.executable, "-m", "ops.supervisord"]),
                ("subprocess (floor)", None),
            )
        }
        text, n = _programs(root, port)
        (root / "var" / "supervisor" / "programs.conf").write_text(text)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        supervisord, rpc, t0, t0_wall = _supervise(root)
        procs.append(supervisord)
        others = {"supervisord": supervisord.pid, "replay server": procs[0].pid}
        up = _await_start(rpc, "collector", n, t0, lambda: _connected(root), others)
        start_s, connected_s, spawned_s = up["running"], up["connected"], up["spawned"]
        running, connected, spent = up["n_running"], up["n_connected"], up["spent"]
        starts, connects, reconnects = _start_times(root, t0_wall)
        time.sleep(8.0)  # past start-up: books synced, files open
        pids = [int(i["pid"]) for i in _infos(rpc) if i["pid"]]
        mem = [_proc_mem_kb(p) for p in pids]
        rss_mb = [r / 1024 for r, _ in mem]
        pss_mb = [p / 1024 for _, p in mem]
        sd_rss_kb, sd_pss_kb = _proc_mem_kb(supervisord.pid)
        hz = os.sysconf("SC_CLK_TCK")
        c0, w0 = sum(_cpu_ticks(p) for p in pids), time.monotonic()
        time.sleep(10.0)
        c1, w1 = sum(_cpu_ticks(p) for p in pids), time.monotonic()
        cpu_pct = 100.0 * (c1 - c0) / hz / (w1 - w0)
        t1 = time.monotonic()
        rpc.supervisor.stopProcessGroup("collector")
        stop_s = time.monotonic() - t1
        stopped = sum(1 for i in _infos(rpc) if i["statename"] == "STOPPED")
        log = (root / "var" / "log" / "supervisord.log").read_text(errors="replace")
        killed = log.count("terminated by SIGKILL")
        finished, parts = _finished(root)
        _shutdown(supervisord, rpc)

        # The floor: the same sections with the bare loop as the command.
        _layout(bare_root)
        _programs(bare_root, port)  # its config files (the socket under bare_root)
        bare_text = _bare_programs(text.replace(str(root), str(bare_root)), bare_root, port)
        (bare_root / "var" / "supervisor" / "programs.conf").write_text(bare_text)
        bare_sd, bare_rpc, bt0, _ = _supervise(bare_root)
        procs.append(bare_sd)
        bare = _await_start(
            bare_rpc,
            "bare",
            n,
            bt0,
            lambda: sum(1 for _ in (bare_root / "ready").iterdir()),
            {"supervisord": bare_sd.pid, "replay server": procs[0].pid},
        )
        bare_pids = [int(i["pid"]) for i in _infos(bare_rpc, "bare") if i["pid"]]
        bare_rss_mb = [_proc_mem_kb(p)[0] / 1024 for p in bare_pids]
        bare_rpc.supervisor.stopProcessGroup("bare")
        _shutdown(bare_sd, bare_rpc)

        def ratio(value: float, goal: float) -> str:
            return f"{value / goal:.2f}x of goal {'OK' if value <= goal else 'MISSED'}"

        print(f"programs            {n} collectors in [group:collector], 2 cores")
        print(
            f"start → RUNNING     {start_s:6.2f} s  ({running}/{n}; floor startsecs=2 s)  "
            f"{ratio(start_s, 10.0)} (10 s)"
        )
        print(f"  all spawned at    {spawned_s or float('nan'):6.2f} s (every program has a pid)")
        print(
            f"start → connected   {connected_s:6.2f} s  ({connected}/{n} status.json say "
            f"connected)  {ratio(connected_s, 10.0)} (10 s)"
        )
        if starts and connects:
            print(
                f"  collectors up     {_spread(starts)} after the start; first connect "
                f"{_spread(connects)}; {reconnects} reconnects before all were connected"
            )
        hz = os.sysconf("SC_CLK_TCK")
        if spent:
            print(
                "  CPU until then    "
                + ", ".join(f"{k} {v / hz:.1f} s" for k, v in spent.items())
                + f" (collectors: {spent['collector'] / hz / n * 1e3:.0f} ms each)"
            )
        print(
            f"bare fleet (exec)   RUNNING {bare['running']:6.2f} s, connected "
            f"{bare['connected']:6.2f} s ({bare['n_connected']}/{n} bare trio-websocket loops "
            f"in the same sections, same streams): collector {connected_s / bare['connected']:.2f}x"
        )
        if bare["spent"]:
            print(
                "  CPU until then    "
                + ", ".join(f"{k} {v / hz:.1f} s" for k, v in bare["spent"].items())
                + f" (bare loops: {bare['spent']['bare'] / hz / n * 1e3:.0f} ms each); "
                f"RSS {sum(bare_rss_mb) / max(1, len(bare_rss_mb)):.1f} MB each"
            )
        cores = os.cpu_count() or 1
        print(
            f"  exec'd floor      {n * start_cpu / cores:6.2f} s  (one collector's CPU from exec "
            f"to subscribed, {start_cpu * 1e3:.0f} ms, x {n} / {cores} cores: what an exec'd "
            "fleet of collectors would need at least)"
        )
        print(
            f"  bare exec'd floor {n * bare_cpu / cores:6.2f} s  (the same for a bare "
            f"trio-websocket loop, {bare_cpu * 1e3:.0f} ms: collector {start_cpu / bare_cpu:.2f}x)"
        )
        print(
            f"spawn (minfds {minfds})  CPU per spawn of `sleep`, fork to exit: "
            + ", ".join(f"{who} {cpu * 1e3:.2f} ms" for who, cpu in spawn.items())
        )
        print(
            f"stop (one call)     {stop_s:6.2f} s  ({stopped}/{n} STOPPED, {killed} SIGKILLed)  "
            f"{ratio(stop_s, 5.0)} (5 s)"
        )
        print(
            f"  finalised         {finished}/{n} logged collector.stopped last, "
            f"{parts} .part files left (each closed hour file is renamed from .part)"
        )
        print(
            f"RSS per collector   {sum(rss_mb) / len(rss_mb):6.1f} MB mean, {max(rss_mb):.1f} max, "
            f"fleet {sum(rss_mb):.0f} MB  {ratio(max(rss_mb), 40.0)} (40 MB)"
        )
        print(
            f"PSS per collector   {sum(pss_mb) / len(pss_mb):6.1f} MB mean "
            f"(shared pages split), fleet {sum(pss_mb):.0f} MB; supervisord (the collector "
            f"imported, its pages shared with each collector) RSS {sd_rss_kb / 1024:.1f} MB, "
            f"PSS {sd_pss_kb / 1024:.1f} MB"
        )
        print(
            f"CPU, recorded pace  {cpu_pct:6.1f} % of one core for the fleet, "
            f"{cpu_pct / len(pids):.2f} % per collector"
        )
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(bare_root, ignore_errors=True)


if __name__ == "__main__":
    main()
