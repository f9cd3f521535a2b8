"""Rotating gzip writers: one file per stream per UTC hour, ``.part`` while open.

Every flush appends one complete gzip member to the ``.part`` file and fsyncs it, so after
``kill -9`` everything up to the last completed flush is readable; :func:`recover` finalises
leftovers on the next start (cutting a torn last member) and renames them into place.
Closing is an atomic rename. A file is never reopened: a restart inside an hour starts a new
file whose name carries its own start time.

All methods block (compression, fsync, rename): async callers run them in a worker thread.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

PART = ".part"
COMPRESS_LEVEL = 6


def stream_dir(data_dir: Path, exchange: str, symbol: str, data_type: str) -> Path:
    return data_dir / exchange / symbol / data_type


def hour_of(ts_s: float) -> int:
    return int(ts_s // 3600)


@dataclass
class _OpenFile:
    path: Path  # final name (without .part)
    handle: BinaryIO
    hour: int


class HourStamps:
    """The start time of each hour's files, shared by a stream's raw and parsed writers.

    The first writer to open a file in an hour fixes the stamp; the other reuses it, so the
    raw and parsed files of one hour share a stem.
    """

    def __init__(self) -> None:
        self._stamps: dict[int, float] = {}

    def stamp(self, hour: int, first_ts_s: float) -> float:
        return self._stamps.setdefault(hour, first_ts_s)


Chunk = tuple[int, float, list[str]]  # (hour, first receive time in s, lines)


class HourlyGzipWriter:
    """Appends text lines to ``{root}/{YYYY-MM-DD}/{stamp}_{name}{suffix}``, one file per hour.

    Lines are grouped by the UTC hour in which they were received (``add``), so the cut
    between two hourly files is exact even when a flush happens after the hour turned.
    ``add``/``take`` run in the event loop; ``write``/``close`` block and run in a thread.

    Args:
        root: the ``parsed`` or ``raw`` directory of a stream.
        name: ``{exchange}_{symbol}_{data_type}``.
        suffix: ``.csv.gz`` or ``.jsonl.gz``.
        header: a first line written into every new file (CSV header), or None.
        stamps: shared start times, so that raw and parsed files of an hour share a stem.
        on_close: called with the final path after each file is closed.
    """

    def __init__(
        self,
        root: Path,
        name: str,
        suffix: str,
        header: str | None = None,
        stamps: HourStamps | None = None,
        on_close: Callable[[Path], None] | None = None,
    ) -> None:
        self.root = root
        self.name = name
        self.suffix = suffix
        self.header = header
        self.stamps = stamps if stamps is not None else HourStamps()
        self.on_close = on_close
        self._chunks: list[Chunk] = []
        self._lines: list[str] | None = None  # the lines of the last chunk
        self._hour_start = 0.0
        self._file: _OpenFile | None = None
        self.bytes_written = 0
        self.lines_written = 0

    @property
    def current_part(self) -> Path | None:
        return None if self._file is None else _part(self._file.path)

    def path_for(self, start_s: float) -> Path:
        # Milliseconds in the stamp: names sort by start time even for restarts within one
        # second (a "-2" suffix, kept as a last resort, would sort before its sibling).
        t = datetime.fromtimestamp(start_s, UTC)
        stamp = f"{t.strftime('%Y%m%dT%H%M%S')}.{t.microsecond // 1000:03d}Z"
        return self.root / t.strftime("%Y-%m-%d") / f"{stamp}_{self.name}{self.suffix}"

    def add(self, line: str, ts_s: float) -> None:
        """Queue one line (ending in a newline) received at ``ts_s`` for the next write."""
        if self._lines is not None and self._hour_start <= ts_s < self._hour_start + 3600:
            self._lines.append(line)  # the hot path
            return
        hour = int(ts_s // 3600)
        self._hour_start = hour * 3600.0
        if self._chunks and self._chunks[-1][0] == hour:
            self._lines = self._chunks[-1][2]
        else:
            self._lines = [line]
            self._chunks.append((hour, ts_s, self._lines))
            return
        self._lines.append(line)

    def take(self) -> list[Chunk]:
        """Hand the queued lines over to a writer thread."""
        chunks, self._chunks = self._chunks, []
        self._lines = None
        return chunks

    def write(self, chunks: Sequence[Chunk], now_s: float, *, fsync: bool = True) -> None:
        """Write each chunk as one gzip member into its hour's file; close a finished hour."""
        for hour, first_ts, lines in chunks:
            if self._file is not None and self._file.hour != hour:
                self.close()
            if self._file is None:
                self._open(hour, self.stamps.stamp(hour, first_ts))
            assert self._file is not None
            member = gzip.compress("".join(lines).encode(), compresslevel=COMPRESS_LEVEL, mtime=0)
            fh = self._file.handle
            fh.write(member)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
            self.bytes_written += len(member)
            self.lines_written += len(lines)
        if self._file is not None and self._file.hour != hour_of(now_s):
            self.close()

    def close(self) -> Path | None:
        """Close and atomically rename the open file. Returns its final path."""
        if self._file is None:
            return None
        f, self._file = self._file, None
        f.handle.close()
        os.replace(_part(f.path), f.path)
        _fsync_dir(f.path.parent)
        if self.on_close is not None:
            self.on_close(f.path)
        return f.path

    def _open(self, hour: int, start_s: float) -> None:
        path = self.path_for(start_s)
        path.parent.mkdir(parents=True, exist_ok=True)
        n = 1
        while path.exists() or _part(path).exists():  # never overwrite or append
            n += 1
            path = self.path_for(start_s).with_name(
                self.path_for(start_s).name.replace(self.suffix, f"-{n}{self.suffix}")
            )
        handle = open(_part(path), "xb")  # noqa: SIM115 - kept open across flushes
        self._file = _OpenFile(path=path, handle=handle, hour=hour)
        if self.header is not None:
            member = gzip.compress(self.header.encode(), compresslevel=COMPRESS_LEVEL, mtime=0)
            handle.write(member)
            self.bytes_written += len(member)


def _part(path: Path) -> Path:
    return path.with_name(path.name + PART)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def valid_gzip_prefix(data: bytes) -> int:
    """Length of the longest prefix of ``data`` made of complete gzip members."""
    pos = 0
    while pos < len(data):
        d = zlib.decompressobj(wbits=31)
        try:
            d.decompress(data[pos:])
        except zlib.error:
            break
        if not d.eof:
            break
        pos = len(data) - len(d.unused_data)
    return pos


def recover(root: Path) -> list[Path]:
    """Finalise every ``.part`` left under ``root`` by a crash; returns the final paths.

    A torn last member is cut off; a file with no complete member is removed.
    """
    done: list[Path] = []
    for part in sorted(root.rglob(f"*{PART}")):
        data = part.read_bytes()
        keep = valid_gzip_prefix(data)
        if keep == 0:
            part.unlink()
            continue
        if keep < len(data):
            with open(part, "r+b") as fh:
                fh.truncate(keep)
                fh.flush()
                os.fsync(fh.fileno())
        final = part.with_name(part.name[: -len(PART)])
        os.replace(part, final)
        done.append(final)
    return done
