"""The collector's periodic work (collector/upkeep.py), seen from outside a real process:
what it writes and when, against a local websocket server (tests/bench/wsblast.py) that
sends trade frames in a burst or at a pace and then stays connected and silent."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import orjson

from collector.writer import BACKLOG_LINES, recover, valid_gzip_prefix
from tests.bench.wsblast import Plan, Server
from tests.conftest import REPO


def trades(n: int) -> list[str]:
    return [
        orjson.dumps(
            {
                "stream": "btcusdt@trade",
                "data": {
                    "e": "trade",
                    "E": 1_700_000_000_000 + i,
                    "s": "BTCUSDT",
                    "t": 1 + i,
                    "p": "60000.01",
                    "q": "0.50000000",
                    "T": 1_700_000_000_000 + i,
                    "m": False,
                    "M": True,
                },
            }
        ).decode()
        for i in range(n)
    ]


def start(
    tmp_path: Path, port: int, collector_toml: str, args: tuple[str, ...] = ()
) -> tuple[subprocess.Popen[bytes], Path]:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'data_dir = "{tmp_path / "data"}"\n[collector]\n{collector_toml}\n'
        f'[exchanges.binance]\nws_url = "ws://127.0.0.1:{port}"\nrest_url = "http://127.0.0.1:1"\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "collector", "--exchange", "binance", "--symbol", "BTCUSDT"]
        + ["--data_type", "trade", "--config", str(cfg), *args],
        cwd=REPO,
        stderr=open(tmp_path / "collector.log", "wb"),  # noqa: SIM115
    )
    return proc, tmp_path / "data" / "binance" / "BTCUSDT" / "trade"


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
    proc.wait(20)


def part_recvs(stream: Path, *, trades_only: bool = True) -> int:
    """Trade frames (or, not ``trades_only``, every received frame: the ack too) in the
    complete members of the open raw file (what a crash would keep)."""
    parts = list((stream / "raw").rglob("*.part"))
    if not parts:
        return 0
    data = parts[0].read_bytes()
    text = gzip.decompress(data[: valid_gzip_prefix(data)]).decode() if data else ""
    return sum(
        1
        for line in text.splitlines()
        if '"t":"recv"' in line and (not trades_only or "trade" in line)
    )


def members(data: bytes) -> list[bytes]:
    """The complete gzip members of ``data``, decompressed."""
    out = []
    while data:
        d = zlib.decompressobj(wbits=31)
        try:
            text = d.decompress(data)
        except zlib.error:
            break
        if not d.eof:
            break
        out.append(text)
        data = d.unused_data
    return out


def status(stream: Path) -> dict[str, object]:
    try:
        return dict(json.loads((stream / "status.json").read_bytes()))
    except (OSError, ValueError):
        return {}


def wait_until(cond, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_a_burst_is_written_in_bounded_pieces_before_the_interval(tmp_path):
    n = 3 * BACKLOG_LINES + 100
    # A write takes every line queued when it starts: under load that is more than one
    # backlog's worth, so the pieces are not exact. What holds whatever the load: once the
    # burst is in, less than one backlog (BACKLOG_LINES lines, markers included) waits.
    written_at_least = n - BACKLOG_LINES + 1
    with Server(trades(n), Plan("blast", count=n, hold_s=60)) as port:
        proc, stream = start(
            tmp_path,
            port,
            "flush_interval_s = 1000\nstatus_interval_s = 1000\nsync_interval_s = 1000",
        )
        try:
            # no interval passes (nor the fsync's, which writes what waits): only the
            # backlog wake-ups write, in pieces
            wait_until(lambda: part_recvs(stream) >= written_at_least)
            (part,) = (stream / "raw").rglob("*.part")
            assert len(members(part.read_bytes())) >= 2  # pieces, not one write at the end
        finally:
            stop(proc, signal.SIGKILL)
    # what the kill left is whole (what the next start recovers): ids in order from 1
    (raw,) = recover(stream / "raw")
    ids = [
        json.loads(json.loads(line)["data"])["data"]["t"]
        for line in gzip.decompress(raw.read_bytes()).splitlines()
        if b'"t":"recv"' in line and b"trade" in line
    ]
    assert ids == list(range(1, len(ids) + 1))
    assert written_at_least <= len(ids) <= n


def test_a_quiet_stream_writes_nothing_until_its_status_heartbeat(tmp_path):
    texts = trades(10)
    with Server(texts, Plan("paced", rate=20, seconds=0.5, hold_s=60)) as port:
        proc, stream = start(tmp_path, port, "flush_interval_s = 0.1\nstatus_interval_s = 0.1")
        try:
            # all written and said (the status that follows the last write): then idle
            wait_until(lambda: part_recvs(stream) == 10 and status(stream).get("frames") == 11)
            time.sleep(0.5)  # the last rounds after the last frame
            part = next((stream / "raw").rglob("*.part"))
            size, first = part.stat().st_size, status(stream)["updated_at"]
            time.sleep(2.0)  # 20 flush and status intervals, not a frame
            assert part.stat().st_size == size  # no empty members, no writes at all
            assert status(stream)["updated_at"] == first  # nothing changed: not rewritten
            # ... but within 2 x status_interval_s + 5 s it is, so that its age says alive
            assert wait_until(lambda: status(stream)["updated_at"] != first, timeout=6.0)
            assert status(stream)["frames"] == 11
            assert status(stream)["connected"] is True
        finally:
            stop(proc)
    assert proc.returncode == 0


def test_status_says_connected_and_disconnected_at_once(tmp_path):
    with Server(trades(5), Plan("paced", rate=10, seconds=0.5, hold_s=1.0)) as port:
        # intervals far away: only the connection's own events write the status file
        proc, stream = start(
            tmp_path,
            port,
            "flush_interval_s = 1000\nstatus_interval_s = 1000\n"
            "[collector.backoff]\ninitial_s = 30\nmax_s = 30",
        )
        try:
            wait_until(lambda: status(stream).get("connected") is True, timeout=20)
            # the server closes after its hold: the disconnect is in status.json at once
            wait_until(lambda: status(stream).get("connected") is False, timeout=10)
            assert status(stream)["reconnects"] == 1
        finally:
            stop(proc)
    assert proc.returncode == 0
    assert os.path.exists(stream / "status.json")


def test_a_frame_after_a_quiet_spell_is_flushed_without_another_frame(tmp_path):
    """Idle (everything written), a lone frame that comes before the next flush is due is
    flushed by the upkeep's own deadline: no later frame needed, no status heartbeat."""
    plan = Plan("paced", rate=1, seconds=1, hold_s=60, lead_s=5.0)  # one frame, 5 s in
    with Server(trades(1), plan) as port:
        proc, stream = start(
            tmp_path, port, "flush_interval_s = 3\nstatus_interval_s = 1000\nsync_interval_s = 1000"
        )
        try:
            # the markers and the ack are written by the first round (~3.75 s), then idle;
            # the frame at ~5 s is before the next due time (~6.75 s): written by ~7.5 s
            wait_until(lambda: part_recvs(stream) == 1, timeout=15)
        finally:
            stop(proc)
    assert proc.returncode == 0


def _raw_recvs(stream: Path) -> list[float]:
    """Receive times of the trade frames in every raw file, closed or open (complete members)."""
    times = []
    for path in sorted((stream / "raw").rglob("*.jsonl.gz*")):
        data = path.read_bytes()
        for text in members(data[: valid_gzip_prefix(data)]):
            for line in text.splitlines():
                event = json.loads(line)
                if event["t"] == "recv" and '"e":"trade"' in event["data"]:
                    times.append(event["ts"])
    return times


def test_quiet_trade_frames_that_wait_for_the_round_are_written_by_its_deadline(tmp_path):
    """A trade stream's quiet frames wait in the session until the flush round is due
    (Session.deliver_by); when no frame comes after that, the upkeep's own deadline delivers
    and writes them: four frames 0.5 s apart before the first round (due 3 s in), then
    silence, are all in the raw file by ~3.75 s, each with its own receive time."""
    plan = Plan("paced", rate=2, seconds=2, hold_s=60, lead_s=0.5)
    with Server(trades(4), plan) as port:
        proc, stream = start(
            tmp_path, port, "flush_interval_s = 3\nstatus_interval_s = 1000\nsync_interval_s = 1000"
        )
        try:
            wait_until(lambda: part_recvs(stream) == 4, timeout=15)
        finally:
            stop(proc)
    assert proc.returncode == 0
    times = _raw_recvs(stream)
    assert len(times) == 4
    assert all(0.3 < b - a < 0.7 for a, b in zip(times, times[1:], strict=False))


def test_quiet_trade_frames_waiting_at_sigterm_are_in_the_final_files(tmp_path):
    """SIGTERM while frames wait for a round far away (flush_interval_s = 60): the session's
    end delivers them, and the last write keeps every one."""
    plan = Plan("paced", rate=10, seconds=1, hold_s=60, lead_s=0.5)
    with Server(trades(10), plan) as port:
        proc, stream = start(
            tmp_path,
            port,
            "flush_interval_s = 60\nstatus_interval_s = 1000\nsync_interval_s = 1000",
        )
        try:
            wait_until(lambda: status(stream).get("connected") is True, timeout=15)
            time.sleep(2.5)  # all ten received (and waiting, the round is a minute away)
            assert part_recvs(stream) == 0
        finally:
            stop(proc)
    assert proc.returncode == 0
    assert len(_raw_recvs(stream)) == 10
    rows = gzip.decompress(next((stream / "parsed").rglob("*.csv.gz")).read_bytes())
    assert len(rows.decode().splitlines()) == 1 + 10  # the header + a row per trade


def test_a_busy_stream_rewrites_its_status_in_its_flush_rounds(tmp_path):
    """While frames keep coming, status.json is rewritten in the flush round at or after its
    interval, right after the round's write (no wake-up of its own): each rewrite counts
    exactly the frames on disk. (With its own wake-ups, a status due between two rounds,
    1.5 s against 1 s here, counted frames that only the next round wrote.)"""
    plan = Plan("paced", rate=20, seconds=9, hold_s=60, lead_s=0.5)
    with Server(trades(180), plan) as port:
        proc, stream = start(
            tmp_path, port, "flush_interval_s = 1\nstatus_interval_s = 1.5\nsync_interval_s = 1000"
        )
        try:
            wait_until(lambda: status(stream).get("connected") is True, timeout=15)
            time.sleep(1.5)  # busy from here on
            pairs, last = [], status(stream).get("updated_at")
            end = time.monotonic() + 5.0
            while time.monotonic() < end:
                st = status(stream)
                if st.get("updated_at") not in (None, last):
                    on_disk = part_recvs(stream, trades_only=False)
                    if status(stream).get("updated_at") == st["updated_at"]:  # (no newer one)
                        pairs.append((st["frames"], on_disk))
                    last = st["updated_at"]
                time.sleep(0.01)
        finally:
            stop(proc)
    assert proc.returncode == 0
    assert len(pairs) >= 2, pairs  # a rewrite per 1.5-2.25 s
    assert all(frames == on_disk for frames, on_disk in pairs), pairs


def _synced_waits(log: Path) -> list[float]:
    """``waited_s`` of each ``files.synced`` debug line (the log is JSON lines off a tty)."""
    events = (json.loads(line) for line in log.read_text().splitlines() if line.startswith("{"))
    return [float(e["waited_s"]) for e in events if e.get("event") == "files.synced"]


def test_writes_wait_for_an_fsync_at_most_its_interval_busy_or_gone_quiet(tmp_path):
    """The power-loss promise: nothing written waits longer than sync_interval_s for its
    fsync. A busy stream fsyncs in a flush round early enough; one gone quiet, at the
    interval by its own wake-up (the last writes of the stream below)."""
    plan = Plan("paced", rate=20, seconds=4, hold_s=60, lead_s=0.5)
    with Server(trades(80), plan) as port:
        proc, stream = start(
            tmp_path,
            port,
            "flush_interval_s = 0.3\nstatus_interval_s = 1000\nsync_interval_s = 1",
            ("--log-level", "debug"),
        )
        try:
            wait_until(lambda: part_recvs(stream) == 80, timeout=20)
            time.sleep(2.5)  # past the last writes' fsync
            waits = _synced_waits(tmp_path / "collector.log")
        finally:
            stop(proc)
    assert proc.returncode == 0
    assert len(waits) >= 4, waits  # ~1 per second while frames came, and the last writes'
    assert max(waits) <= 1.0 + 0.3, waits  # (the interval, and a wake-up's lag on a busy CI)
