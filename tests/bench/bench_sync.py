"""S3 sync benchmark: ``python -m ops.sync run`` vs ``aws s3 sync`` vs bare PUTs.

Data: 2,000 files of ~1 KB plus 5 files of 50 MB in the collector layout. Each measurement
gets a fresh moto S3 server process on 127.0.0.1 (the same server for everyone):

(a) this program, as a subprocess (start-up included), first sync and no-change sync;
(b) ``aws s3 sync`` of ``*.gz`` (awscli from PyPI in its own venv, ``.bench-venv-awscli``,
    created on first use), first and no-change;
(c) the floor: the same bytes as bare HTTP PUTs from a thread pool of the same size,
    in-process (no client library, no start-up).

Then (a) and (b) again through a proxy that delays every byte from client to server by 30 ms
(a host far from its bucket's region). Goals: (a) first <= 1.5x (c) and < (b); no-change
(b)/(a) >= 10; with 30 ms, (b)/(a) >= 2.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
AWS_VENV = REPO / ".bench-venv-awscli"
SMALL_N = 2000
BIG_N = 5
BIG_MB = 50
DELAY_S = 0.030
CONCURRENCY = int(os.environ.get("BENCH_SYNC_CONCURRENCY", "16"))  # shipped default: 16
ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_CONFIG_FILE": "/nonexistent",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(ENV)
    env["PYTHONPATH"] = str(REPO)
    return env


def _aws() -> Path:
    aws = AWS_VENV / "bin" / "aws"
    if not aws.exists():
        print("creating .bench-venv-awscli (python -m venv + pip install awscli) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(AWS_VENV)], check=True)
        subprocess.run(
            [str(AWS_VENV / "bin" / "pip"), "install", "-q", "awscli"], check=True, timeout=600
        )
    return aws


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def moto_server() -> Iterator[int]:
    """A fresh moto S3 server process; yields its port."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def _put(port: int, path: str, body: bytes = b"") -> None:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        c.request("PUT", path, body=body, headers={"Content-Length": str(len(body))})
        r = c.getresponse()
        r.read()
        if r.status != 200:
            raise RuntimeError(f"PUT {path}: {r.status}")
    finally:
        c.close()


class LatencyProxy:
    """TCP proxy adding ``delay_s`` to every byte sent towards the server (a delay line,
    not a bandwidth limit): each request reaches the server ``delay_s`` later. One asyncio
    loop in a thread, so thousands of short connections stay cheap."""

    def __init__(self, upstream_port: int, delay_s: float) -> None:
        self.upstream_port = upstream_port
        self.delay_s = delay_s
        self.port = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._server = server
        ready.set()
        self._loop.run_forever()
        self._loop.close()

    def close(self) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()  # no new connections while the open ones are cancelled
            me = asyncio.current_task()
            for _ in range(50):  # connections accepted meanwhile start new tasks
                tasks = [t for t in asyncio.all_tasks() if t is not me]
                if not tasks:
                    break
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await asyncio.sleep(0.01)
            self._loop.stop()

        self._loop.call_soon_threadsafe(lambda: self._loop.create_task(stop()))
        self._thread.join(10)

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        me = asyncio.current_task()
        assert me is not None
        self._handlers.add(me)  # the loop only holds tasks weakly
        try:
            await self._proxy(cr, cw)
        finally:
            self._handlers.discard(me)

    async def _proxy(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            cw.close()
            return
        loop = asyncio.get_running_loop()
        line: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def read_client() -> None:
            while True:
                data = await cr.read(1 << 18)
                line.put_nowait((loop.time() + self.delay_s, data))
                if not data:
                    return

        async def to_server() -> None:
            while True:
                due, data = await line.get()
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if uw.can_write_eof():
                        uw.write_eof()
                    return
                uw.write(data)
                await uw.drain()

        async def to_client() -> None:
            while data := await ur.read(1 << 18):
                cw.write(data)
                await cw.drain()
            cw.close()

        tasks = [asyncio.create_task(c) for c in (read_client(), to_server(), to_client())]
        try:
            await asyncio.wait(tasks[2:])  # the server closes after each response
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for w in (cw, uw):
                w.close()


def make_data(data: Path) -> list[Path]:
    files: list[Path] = []
    old = time.time() - 3600
    for i in range(SMALL_N):
        d = data / "binance" / f"SYM{i % 20:02d}USDT" / "trade" / "parsed" / "2024-03-01"
        d.mkdir(parents=True, exist_ok=True)
        p = d / f"20240301T{i // 20:06d}Z_binance_SYM{i % 20:02d}USDT_trade.csv.gz"
        p.write_bytes(os.urandom(900 + (i * 37) % 250))
        files.append(p)
    for i in range(BIG_N):
        d = data / "binance" / "BTCUSDT" / "book" / "raw" / "2024-03-01"
        d.mkdir(parents=True, exist_ok=True)
        p = d / f"20240301T{i:02d}0000Z_binance_BTCUSDT_book.jsonl.gz"
        p.write_bytes(os.urandom(BIG_MB * 1024 * 1024))
        files.append(p)
    for p in files:
        os.utime(p, (old, old))
    return files


def floor(port: int, data: Path, files: list[Path]) -> float:
    _put(port, "/floor")
    t0 = time.perf_counter()

    def one(p: Path) -> None:
        _put(port, f"/floor/{p.relative_to(data).as_posix()}", p.read_bytes())

    with ThreadPoolExecutor(CONCURRENCY) as ex:
        # big files first, as the sync does: they overlap the small ones
        list(ex.map(one, sorted(files, key=lambda p: -p.stat().st_size)))
    return time.perf_counter() - t0


def ours(tmp: Path, data: Path, port: int, bucket: str) -> tuple[float, float]:
    """One ``ops.sync run``: (seconds end to end, the sync's own seconds as its summary line
    says; the rest is start-up and the status snapshot each run publishes)."""
    cfg = tmp / "config.toml"
    cfg.write_text(
        f'data_dir = "{data}"\nhost_id = "bench"\n\n[sync]\n'
        f'bucket = "{bucket}"\nendpoint_url = "http://127.0.0.1:{port}"\nretention_days = -1.0\n'
        + (f"concurrency = {CONCURRENCY}\n" if CONCURRENCY != 16 else "")
    )
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "ops.sync", "run", "--config", str(cfg)],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"ops.sync run failed: {done.stderr[-2000:]}")
    summary = [line for line in done.stderr.splitlines() if '"sync.summary"' in line]
    if len(summary) != 1:
        raise RuntimeError(f"ops.sync run logged {len(summary)} summary lines, not one")
    return elapsed, float(json.loads(summary[0])["seconds"])


def awscli(data: Path, port: int, bucket: str) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(
        [
            str(_aws()),
            "s3",
            "sync",
            str(data),
            f"s3://{bucket}/collector/bench/",
            "--endpoint-url",
            f"http://127.0.0.1:{port}",
            "--exclude",
            "*",
            "--include",
            "*.gz",
            "--only-show-errors",
        ],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"aws s3 sync failed: {done.stderr[-2000:]}")
    return elapsed


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main() -> None:
    _aws()
    tmp = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    try:
        data = tmp / "data"
        files = make_data(data)
        total_mb = sum(p.stat().st_size for p in files) / 1e6
        print(f"data: {SMALL_N} x ~1 KB + {BIG_N} x {BIG_MB} MB = {total_mb:.0f} MB", flush=True)
        r: dict[str, float] = {}
        with moto_server() as port:
            r["c"] = floor(port, data, files)
        print(f"(c) bare PUTs, {CONCURRENCY} threads  first  {r['c']:6.2f} s", flush=True)
        with moto_server() as port:
            _put(port, "/ours")
            r["a"], r["a_run"] = ours(tmp, data, port, "ours")
            r["a0"], r["a0_run"] = min(ours(tmp, data, port, "ours") for _ in range(3))
        print(
            f"(a) ops.sync run             first  {r['a']:6.2f} s"
            f"  (the sync itself {r['a_run']:.2f} s)",
            flush=True,
        )
        print(
            f"(a) ops.sync run             no-change {r['a0']:6.3f} s  (the sync itself"
            f" {r['a0_run']:.3f} s; the rest is start-up and the status snapshot each run"
            " publishes: ops/sync/publish.py)",
            flush=True,
        )
        with moto_server() as port:
            _put(port, "/awscli")
            r["b"] = awscli(data, port, "awscli")
            r["b0"] = min(awscli(data, port, "awscli") for _ in range(2))
        print(f"(b) aws s3 sync              first  {r['b']:6.2f} s", flush=True)
        print(f"(b) aws s3 sync              no-change {r['b0']:6.3f} s", flush=True)
        shutil.rmtree(data / ".sync")  # the far run starts from an empty ledger
        with moto_server() as port:
            proxy = LatencyProxy(port, DELAY_S)
            try:
                _put(port, "/ours")
                r["a30"], _ = ours(tmp, data, proxy.port, "ours")
                _put(port, "/awscli")
                r["b30"] = awscli(data, proxy.port, "awscli")
            finally:
                proxy.close()
        print(f"(a) ops.sync run   +30 ms    first  {r['a30']:6.2f} s", flush=True)
        print(f"(b) aws s3 sync    +30 ms    first  {r['b30']:6.2f} s", flush=True)

        print("\nratios vs goals:")
        print(
            f"  first sync  (a)/(c) = {r['a'] / r['c']:5.2f}   goal <= 1.5   "
            f"{_verdict(r['a'] / r['c'] <= 1.5)}"
        )
        print(
            f"  first sync  (b)/(a) = {r['b'] / r['a']:5.2f}   goal >  1     "
            f"{_verdict(r['b'] > r['a'])}"
        )
        print(f"  (b)/(c) = {r['b'] / r['c']:5.2f} (server-bound reference)")
        print(
            f"  no-change   (b)/(a) = {r['b0'] / r['a0']:5.1f}   goal >= 10    "
            f"{_verdict(r['b0'] / r['a0'] >= 10)}"
        )
        print(
            f"  +30 ms      (b)/(a) = {r['b30'] / r['a30']:5.2f}   goal >= 2     "
            f"{_verdict(r['b30'] / r['a30'] >= 2)}"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
