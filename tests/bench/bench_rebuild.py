"""Rebuild benchmark (issue 19): one hour of the recorded Binance book stream, rebuilt from raw.

The hour: a real collector (``python -m collector``, book, NKNUSDT, ``@depth@100ms``) against
the replay server looping the recorded Binance capture as fast as it can, until it has
written 36,000 depth frames (one hour at 10 frames/s), with every reconnect, REST snapshot
and resync that looping brings (each cycle of the capture starts a new connection, so the
book resyncs from a new snapshot every ~150 frames). Its own rate is printed too.

Per frame, in CPU time (the machine is shared; best of REPEAT, interleaved):

  live        the collector process that recorded the hour: its rate, and its CPU (utime +
              stime) per frame once data flowed (socket, websocket, trio, processor,
              writers, snapshots)
  pipeline    the live pipeline alone on the same frames, no socket: collector.files.StreamFiles +
              app.build_pipeline, processor.handle per frame, a flush (tick, gzip, fsync of
              raw then parsed) every second of the stream as on a real hour (10 frames), and
              with the flushes as sparse as in the accelerated run
  rebuild     ``collector rebuild`` of the hour's raw files: inflate, decode,
              Processor.replay, rows cut by hour, gzip (rebuild.plan + rebuild.execute)

Goal: rebuild >= 5x the live collector's rate (frames/s end to end, fed as fast as the
replay server can: the route a rebuild replaces, raw frames replayed into a live collector).
Its CPU per frame (start-up excluded) is compared too. Against the pipeline alone no such
factor exists: both run the same processor (one code path, by design), whose parse and book
are most of the cost; the rebuild saves the raw gzip, the per-flush members and fsyncs, the
socket and the event loop. The rebuilt file must equal the live one (decompressed), or the
figures mean nothing: checked.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

from collector import app, rawfiles, rebuild
from collector.common import layout
from collector.common.logs import configure_logging
from collector.config import load_config
from collector.files import StreamFiles
from collector.processor import FRAME_KINDS, frame_from_raw
from collector.settings import CollectorSettings, build_collector_settings
from ops.replay import ReplayThread
from tests.conftest import CAPTURES, REPO

HOUR_FRAMES = 36_000  # @depth@100ms: 10 frames a second
SYMBOL = "NKNUSDT"
REPEAT = 2
GOAL = 5.0


def _config(path: Path, replay: ReplayThread, data_dir: Path) -> Path:
    path.write_text(
        f'data_dir = "{data_dir}"\n'
        "[collector]\nflush_interval_s = 1.0\nstatus_interval_s = 0.2\n"
        "depth_update_speed_ms = 100\n"
        "[collector.backoff]\ninitial_s = 0.01\nmax_s = 0.02\n"
        f'[exchanges.binance]\nws_url = "{replay.ws_url}"\nrest_url = "{replay.http_url}"\n'
    )
    return path


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def record_hour(tmp: Path) -> tuple[Path, Path, float, float]:
    """A real collector's raw and parsed files of HOUR_FRAMES depth frames; returns (data
    dir, config, its rate in frames/s of receive time, its CPU s per frame once data
    flowed)."""
    data = tmp / "live"
    with ReplayThread([CAPTURES["binance"]], loop=True) as r:
        cfg = _config(tmp / "c.toml", r, data)
        proc = subprocess.Popen(
            [sys.executable, "-m", "collector", "--exchange", "binance", "--symbol", SYMBOL,
             "--data_type", "book", "--config", str(cfg)],
            cwd=REPO, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        status = data / "binance" / SYMBOL / "book" / "status.json"
        deadline = time.monotonic() + 600
        first: tuple[int, float] | None = None  # (frames, CPU s) once data flows
        try:
            while time.monotonic() < deadline:
                try:
                    frames = int(orjson.loads(status.read_bytes())["frames"])
                except (OSError, orjson.JSONDecodeError, KeyError):
                    frames = 0
                if frames and first is None:
                    first = (frames, _cpu_s(proc.pid))  # its start-up is not the pipeline's
                if frames >= HOUR_FRAMES:
                    break
                time.sleep(0.2)
            else:
                raise RuntimeError("the collector did not record the hour in time")
            assert first is not None
            cpu_per_frame = (_cpu_s(proc.pid) - first[1]) / (frames - first[0])
        finally:
            proc.terminate()
            proc.wait(30)
    times = [float(str(e["ts"])) for e in events(data) if e["t"] == "recv"]
    return data, cfg, (len(times) - 1) / (times[-1] - times[0]), cpu_per_frame


def raw_paths(data: Path) -> list[Path]:
    return [f.path for f in rawfiles.stream_files(data / "binance" / SYMBOL / "book" / "raw")]


def events(data: Path) -> Iterator[dict[str, object]]:
    for p in raw_paths(data):
        for line in gzip.decompress(p.read_bytes()).splitlines():
            yield orjson.loads(line)


def settings_for(cfg: Path, data_dir: Path) -> CollectorSettings:
    return build_collector_settings(
        load_config(cfg), exchange="binance", symbol=SYMBOL, data_type="book", data_dir=data_dir
    )


def bench_live(cfg: Path, frames: list[dict[str, object]], out: Path, per_flush: int) -> float:
    """CPU s of the live pipeline over ``frames``, flushing every ``per_flush`` frames."""
    settings = settings_for(cfg, out)
    files = StreamFiles(settings)
    p = app.build_pipeline(settings, files)
    handle, tick = p.processor.handle, p.processor.tick
    decoded = [frame_from_raw(e) for e in frames]
    now = time.time()
    t0 = time.process_time()
    for i, f in enumerate(decoded, 1):
        handle(f)
        if i % per_flush == 0:
            tick(now)
            files.write(files.raw.take(), files.parsed.take(), now)
    tick(now, final=True)
    files.write(files.raw.take(), files.parsed.take(), now)
    files.close()
    return time.process_time() - t0


def bench_rebuild(cfg: Path, data: Path, out: Path) -> tuple[float, rebuild.Result]:
    """CPU s of ``collector rebuild`` of the hour's raw files into ``out``."""
    stream, wanted = rebuild.resolve_inputs([data / "binance" / SYMBOL / "book" / "raw"])
    base = rebuild.base_settings(cfg, stream, out)
    max_line = rebuild.max_line_of(base)
    target = {}
    for p in wanted:
        final = out / stream.parsed_rel(p)
        target[p] = (final, layout.part_path(final))
    t0 = time.process_time()
    todo = rebuild.plan(stream, wanted, base, max_line)
    result, outs = rebuild.execute(stream, todo, target, max_line)
    for o in outs:
        os.replace(o.work, o.final)
        result.written.append((o.final, o.rows))
    return time.process_time() - t0, result


def parsed_bytes(data: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(data)): gzip.decompress(p.read_bytes())
        for p in sorted(data.glob("*/*/*/parsed/*/*.csv.gz"))
    }


def main() -> None:
    configure_logging("error")  # the in-process pipelines' lines (subscribed, resync) are noise
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        t0 = time.monotonic()
        data, cfg, live_rate, live_cpu = record_hour(tmp)
        took = time.monotonic() - t0
        n_raw = len(raw_paths(data))
        frames = [e for e in events(data) if e["t"] in FRAME_KINDS]
        n = sum(1 for e in frames if e["t"] == "recv")
        span = float(str(frames[-1]["ts"])) - float(str(frames[0]["ts"]))
        sparse = max(1, round(n / span))  # frames per second of the accelerated run
        hourly, accelerated, ours = [], [], []
        for i in range(REPEAT):
            hourly.append(bench_live(cfg, frames, tmp / f"l{i}", 10))
            accelerated.append(bench_live(cfg, frames, tmp / f"s{i}", sparse))
            cpu, result = bench_rebuild(cfg, data, tmp / f"r{i}")
            ours.append(cpu)
            assert parsed_bytes(tmp / f"r{i}") == parsed_bytes(data), "rebuild differs from live"
    live_us, hour_us = live_cpu * 1e6, min(hourly) / n * 1e6
    fast_us, ours_us = min(accelerated) / n * 1e6, min(ours) / n * 1e6
    rows = sum(r for _, r in result.written)
    print(f"one hour of binance {SYMBOL} @depth@100ms: {n} frames ({result.lines} raw lines in "
          f"{n_raw} raw file(s)), {rows} book rows; CPU per frame, best of {REPEAT}:")  # fmt: skip
    print(f"   live collector end to end (recorded it in {took:.0f} s): {live_rate:>7,.0f} "
          f"frames/s; its CPU {live_us:7.2f} µs/frame")  # fmt: skip
    print(f"   live pipeline alone, a flush per 1 s of the hour:   {hour_us:7.2f} µs/frame "
          f"= {1e6 / hour_us:>7,.0f} frames/s")  # fmt: skip
    print(f"   live pipeline alone, a flush per {sparse} frames:     {fast_us:7.2f} µs/frame "
          f"= {1e6 / fast_us:>7,.0f} frames/s")  # fmt: skip
    print(f"   rebuild (inflate, decode, replay, gzip):           {ours_us:7.2f} µs/frame "
          f"= {1e6 / ours_us:>7,.0f} frames/s")  # fmt: skip
    print(f"   ratio rebuild / live collector: {1e6 / ours_us / live_rate:.1f}x its rate end to "
          f"end (goal >= {GOAL:.0f}x), {live_us / ours_us:.1f}x its CPU per frame; rebuild / "
          f"pipeline alone {hour_us / ours_us:.1f}x (hourly flushes), {fast_us / ours_us:.1f}x "
          "(sparse): the same processor; rebuilt files equal the live ones")  # fmt: skip


if __name__ == "__main__":
    main()
