"""A full disk under a running collector: a real tmpfs of a few MiB, filled and freed.

Needs a tmpfs mount: as root directly, otherwise inside `unshare --user --mount` (the
scenario then runs in that namespace). Either is available on this project's machines.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.collector.harness import collector
from tests.collector.test_crash_loop import peer_config, read_all
from tests.collector.tradepeer import TradePeer
from tests.qa.sinks import sink_server


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[None]:
    path.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> Path:
    """Write a file until the filesystem refuses another byte."""
    filler = path / "filler"
    with open(filler, "wb", buffering=0) as fh:
        chunk = b"\0" * 65536
        with contextlib.suppress(OSError):
            while True:
                fh.write(chunk)
        with contextlib.suppress(OSError):
            while True:
                fh.write(b"\0")
    return filler


def events_named(c, name: str) -> list[dict[str, object]]:
    return [e for e in c.log_events() if e.get("event") == name]


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None, reason="needs root")
def test_full_disk_pauses_then_recovers_without_loss_of_integrity(tmp_path: Path) -> None:
    """Disk full mid-stream: one error line and one alert (then its resolve), no exit and
    no reconnect storm while full, then recovery: every gzip reads whole, no duplicate id, and every
    missing id is inside a gap marker."""
    data = tmp_path / "data"
    with tmpfs(data, "6m"), TradePeer(rate=2000.0) as peer, sink_server() as slack:
        cfg = peer_config(tmp_path / "c.toml", peer)
        env = {"SLACK_WEBHOOK_URL": f"{slack.url}/slack"}
        with collector(tmp_path, "binance", "BTCUSDT", "trade", cfg, env) as c:
            c.wait_for(lambda s: s.get("rows", 0) >= 500)
            filler = fill(data)
            deadline = time.monotonic() + 20
            while not events_named(c, "disk.full") and time.monotonic() < deadline:
                time.sleep(0.05)
            full_at = time.monotonic()
            connects_at_full = len(events_named(c, "ws.connected"))
            time.sleep(3.0)  # full for a while
            assert c.proc.poll() is None, "the collector must not exit on a full disk"
            connects_while_full = len(events_named(c, "ws.connected")) - connects_at_full
            filler.unlink()
            deadline = time.monotonic() + 90
            while not events_named(c, "disk.recovered") and time.monotonic() < deadline:
                time.sleep(0.05)
            assert events_named(c, "disk.recovered"), c.logs()[-2000:]
            rows_before = c.status().get("rows", 0)
            c.wait_for(lambda s: s.get("rows", 0) >= rows_before + 500, timeout=30)
            assert c.stop() == 0
            texts = [b["text"] for b in slack.bodies("/slack")]
            stream = data / "binance" / "BTCUSDT" / "trade"
            ids, raw_events = read_all(stream)
            parts = list(stream.rglob("*.part"))

    assert [t.split(" | ")[0] for t in texts] == [
        "[ERROR] collector: disk full: binance:BTCUSDT:trade paused (writes retried with backoff)",
        "[RESOLVED] collector: disk writable again: binance:BTCUSDT:trade resumed",
    ]
    full = events_named(c, "disk.full")
    assert len(full) == 1
    assert full[0]["level"] == "error"
    assert full[0]["alert"] is True
    assert time.monotonic() - full_at >= 3.0
    # the feed was put on hold (no reconnect while full), and resumed after
    assert connects_while_full == 0
    assert len(events_named(c, "ws.connected")) > connects_at_full
    assert parts == []
    assert len(ids) == len(set(ids))
    covered: set[int] = set()
    for e in raw_events:
        if e["t"] == "gap":
            covered.update(range(int(str(e["expected"])), int(str(e["got"]))))
    missing = set(range(ids[0], ids[-1] + 1)) - set(ids)
    assert missing, "trades went on while the disk was full"
    assert missing <= covered


def test_a_failed_write_leaves_whole_members(tmp_path: Path) -> None:
    """The writer under RLIMIT_FSIZE (EFBIG, like ENOSPC): the member that did not fit is
    cut back, the file reads whole, and the chunk is handed back for a later write."""
    script = f"""
import gzip, resource, signal, sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
from pathlib import Path
from collector.writer import DiskFullError, HourlyGzipWriter
w = HourlyGzipWriter(Path({str(tmp_path)!r}), "x_Y_trade", ".csv.gz", header="h\\n")
w.add("a\\n" * 10, 7200.5)
w.write(w.take(), 7200.5)
size = next(Path({str(tmp_path)!r}).rglob("*.part")).stat().st_size
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 40, size + 40))
import os
w.add("".join(str(i) + chr(10) for i in range(20000)), 7201.0)
try:
    w.write(w.take(), 7201.0)
except DiskFullError as exc:
    print(len(exc.unwritten), sum(len(c[2]) for c in exc.unwritten))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()

    assert out == ["1", "1"]
    part = next(tmp_path.rglob("*.part"))
    assert gzip.decompress(part.read_bytes()).decode() == "h\n" + "a\n" * 10
