"""Collector benchmarks (issue "Collector, part 1").

1. Pipeline CPU per trade frame: parse + normalise + raw write + CSV gz write, no socket,
   versus the floor: only ``orjson.loads`` + gzip write of the same frames.
2. Frames/s end to end: replay server as fast as possible → collector process → files, versus
   a bare trio-websocket receive loop on the same server, in the same run.
3. Collector RSS after a minute of steady input (trade and book streams).
"""

from __future__ import annotations

import gzip
import tempfile
import time
from pathlib import Path

import orjson
import trio

from collector.app import Processor, StreamFiles
from collector.exchanges import binance
from collector.session import Frame, Session, SessionSettings
from collector.settings import BackoffSettings, CollectorSettings
from collector.status import Stats

N_FRAMES = 200_000
FLUSH_EVERY = 2_000  # frames per flush: ~1 s of a very busy symbol


def trade_frames(n: int, start_id: int = 1) -> list[str]:
    out = []
    for i in range(n):
        d = {
            "e": "trade",
            "E": 1_700_000_000_000 + i,
            "s": "BTCUSDT",
            "t": start_id + i,
            "p": f"{60000 + (i % 500) * 0.01:.2f}",
            "q": f"0.{i % 9999:04d}0000",
            "T": 1_700_000_000_000 + i,
            "m": i % 3 == 0,
            "M": True,
        }
        out.append(orjson.dumps({"stream": "btcusdt@trade", "data": d}).decode())
    return out


def bench_floor(frames: list[str], path: Path) -> float:
    t0 = time.process_time()
    with open(path, "wb") as fh:
        batch: list[str] = []
        for f in frames:
            orjson.loads(f)
            batch.append(f)
            if len(batch) == FLUSH_EVERY:
                fh.write(gzip.compress(("\n".join(batch) + "\n").encode(), 6, mtime=0))
                batch.clear()
        if batch:
            fh.write(gzip.compress(("\n".join(batch) + "\n").encode(), 6, mtime=0))
    return time.process_time() - t0


def bench_same_output_floor(frames: list[str], path: Path) -> float:
    """orjson.loads + gzip of the bytes the collector writes (raw envelope + CSV row)."""
    ts = time.time()
    envelopes = [
        f'{{"t":"recv","conn":"c1","ts":{ts!r},"data":{orjson.dumps(f).decode()}}}\n'
        for f in frames
    ]
    rows = [
        f"1700000000000,BTCUSDT,{i},60000.00,0.10000000,1700000000000,True,1\n"
        for i in range(len(frames))
    ]
    t0 = time.process_time()
    with open(path, "wb") as fh:
        for i in range(0, len(frames), FLUSH_EVERY):
            for f in frames[i : i + FLUSH_EVERY]:
                orjson.loads(f)
            fh.write(gzip.compress("".join(envelopes[i : i + FLUSH_EVERY]).encode(), 6, mtime=0))
            fh.write(gzip.compress("".join(rows[i : i + FLUSH_EVERY]).encode(), 6, mtime=0))
    return time.process_time() - t0


def bench_pipeline(frames: list[str], data_dir: Path) -> float:
    settings = CollectorSettings(
        exchange="binance",
        symbol="BTCUSDT",
        data_type="trade",
        data_dir=data_dir,
        ws_url="ws://127.0.0.1:1",
        rest_url="http://127.0.0.1:1",
    )
    files = StreamFiles(settings)
    send, _recv = trio.open_memory_channel[Frame](1)
    session = Session(
        SessionSettings("ws://127.0.0.1:1", lambda now: [], 30.0, 0.0, 1 << 20, BackoffSettings()),
        send,
    )
    proc = Processor(settings, binance, files, Stats("binance", "BTCUSDT", "trade"), session)
    now = time.time()
    t0 = time.process_time()
    for i, f in enumerate(frames, 1):
        proc.handle(Frame("recv", "c1", now, data=f))
        if i % FLUSH_EVERY == 0:
            files.write(files.raw.take(), files.parsed.take(), now)
    files.write(files.raw.take(), files.parsed.take(), now)
    files.close()
    cpu = time.process_time() - t0
    assert proc.stats.rows == len(frames), proc.stats.rows
    return cpu


def main() -> None:
    frames = trade_frames(N_FRAMES)
    with tempfile.TemporaryDirectory() as tmp:
        floor = min(bench_floor(frames, Path(tmp) / f"floor{i}.gz") for i in range(3))
        ours = min(bench_pipeline(frames, Path(tmp) / f"d{i}") for i in range(3))
        same = min(bench_same_output_floor(frames, Path(tmp) / f"s{i}.gz") for i in range(3))
    print(f"1. pipeline CPU per trade frame ({N_FRAMES} frames, flush every {FLUSH_EVERY}):")
    print(f"   floor (orjson.loads + gzip write): {floor / N_FRAMES * 1e6:7.2f} µs/frame")
    print(f"   collector pipeline:                {ours / N_FRAMES * 1e6:7.2f} µs/frame")
    print(f"   ratio {ours / floor:.2f}x the floor (goal <= 3x)")
    print(
        f"   floor writing the same output (raw envelope + CSV, gzip 6): "
        f"{same / N_FRAMES * 1e6:.2f} µs/frame; pipeline = {ours / same:.2f}x that"
    )


if __name__ == "__main__":
    main()
