"""Rotating gzip writers: one file per stream per UTC hour, ``.part`` while open.

Every flush appends one complete gzip member to the ``.part`` file with one ``write``: once
it returns, the kernel holds the member, so after ``kill -9`` everything up to the last
completed flush is readable. ``fsync`` (what survives a power loss or a kernel crash) is the
caller's choice per write (``fsync=True``) or batched (:meth:`HourlyGzipWriter.sync`); a file
is always fsynced before it is closed. :func:`recover` finalises leftovers on the next start
(cutting a torn last member) and renames them into place. Closing is an atomic rename. A
file is never reopened: a restart inside an hour starts a new file whose name carries its
own start time.

``add``/``take``/``requeue`` only queue lines (the processor calls ``add`` for every line);
``write``/``sync``/``close`` block (compression, fsync, rename): the collector's upkeep runs
small writes on its event loop and the rest in a worker thread (collector/upkeep.py).
"""

from __future__ import annotations

import errno
import gzip
import math
import mmap
import os
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from collector.common.layout import PART, file_path, part_path

# gzip levels. Raw files are the archive everything else is rebuilt from: the zlib default.
# Parsed CSV files can be rebuilt from raw (collector/rebuild.py): level 5 writes them ~1 %
# larger (trades 0.9 %, top-5 book rows 1.3 %, on realistic rows) for ~1/3 less CPU than 6
# (deflate's lazy match search at 6 costs more on digit-heavy rows than on JSON).
COMPRESS_LEVEL = 6
PARSED_COMPRESS_LEVEL = 5
# A chunk of this many lines calls the owner's on_backlog (the default of backlog_lines).
BACKLOG_LINES = 4096
# The first bytes of every member we write: gzip magic, deflate, no flags, mtime 0.
MEMBER_MAGIC = b"\x1f\x8b\x08\x00\x00\x00\x00\x00"
# Errors that mean "no room to write" (a full disk, a quota, a file size limit).
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class DiskFullError(OSError):
    """A write found no room. The file was cut back to its last complete member, so every
    gzip stays readable; ``unwritten`` holds the chunks that were not written (give them back
    with :meth:`HourlyGzipWriter.requeue` from the thread that adds lines)."""

    unwritten: list[Chunk]


def hour_of(ts_s: float) -> int:
    return int(ts_s // 3600)


@dataclass
class _OpenFile:
    path: Path  # final name (without .part)
    handle: BinaryIO  # unbuffered: each member goes to the kernel in full or is cut back
    hour: int
    size: int = 0  # bytes of complete members


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
    ``add``/``take`` are cheap and run where the frames are handled (the event loop, live);
    ``write``/``close`` block and run in a worker thread.

    Args:
        root: the ``parsed`` or ``raw`` directory of a stream.
        name: ``{exchange}_{symbol}_{data_type}``.
        suffix: ``.csv.gz`` or ``.jsonl.gz``.
        header: a first line written into every new file (CSV header), or None.
        stamps: shared start times, so that raw and parsed files of an hour share a stem.
        on_close: called with the final path after each file is closed.
        on_backlog: called (where lines are added) each time the newest chunk reaches
            ``backlog_lines`` lines: the owner writes early, so a burst is written in bounded
            pieces instead of piling up until the next flush.
        on_due: called (where lines are added) by the first line received at or after the
            time given to :meth:`call_when_due`: the owner's periodic work then runs in the
            wake-up that brought the line, not in one of its own.
        level: the gzip level of every member (raw files: ``COMPRESS_LEVEL``; parsed:
            ``PARSED_COMPRESS_LEVEL``).
    """

    def __init__(
        self,
        root: Path,
        name: str,
        suffix: str,
        header: str | None = None,
        stamps: HourStamps | None = None,
        on_close: Callable[[Path], None] | None = None,
        on_backlog: Callable[[], None] | None = None,
        backlog_lines: int = BACKLOG_LINES,
        on_due: Callable[[], None] | None = None,
        level: int = COMPRESS_LEVEL,
    ) -> None:
        if not 0 <= level <= 9:
            raise ValueError(f"a gzip level is 0-9, not {level!r}")
        self.root = root
        self.name = name
        self.suffix = suffix
        self.header = header
        self.stamps = stamps if stamps is not None else HourStamps()
        self.on_close = on_close
        self.on_backlog = on_backlog
        self.backlog_lines = backlog_lines
        self.on_due = on_due
        self.level = level
        self._chunks: list[Chunk] = []
        self._lines: list[str] | None = None  # the lines of the last chunk
        self._hour_start = 0.0
        self._hour_end = 0.0
        self._due_s = math.inf  # on_due at the first line received at or after it
        self._limit = 0.0  # min(_hour_end, _due_s): the hot path's one upper bound
        self._file: _OpenFile | None = None
        # time.monotonic() of the oldest member written since the last fsync (inf: none)
        self._unsynced_since = math.inf

    @property
    def is_open(self) -> bool:
        return self._file is not None

    @property
    def current_part(self) -> Path | None:
        return None if self._file is None else part_path(self._file.path)

    def path_for(self, start_s: float) -> Path:
        # (a "-2" suffix, kept as a last resort for two files in one millisecond, sorts
        # before its sibling)
        return file_path(self.root, start_s, self.name, self.suffix)

    def call_when_due(self, ts_s: float) -> None:
        """Call ``on_due`` (once) when a line received at or after ``ts_s`` is added."""
        self._due_s = ts_s
        self._limit = min(self._hour_end, ts_s)

    def add(self, line: str, ts_s: float) -> None:
        """Queue one line (ending in a newline) received at ``ts_s`` for the next write."""
        lines = self._lines
        if lines is not None and self._hour_start <= ts_s < self._limit:
            lines.append(line)  # the hot path
            if len(lines) == self.backlog_lines and self.on_backlog is not None:
                self.on_backlog()
            return
        if ts_s >= self._due_s:
            self._due_s = math.inf
            if self.on_due is not None:
                self.on_due()
        hour = int(ts_s // 3600)
        self._hour_start = hour * 3600.0
        self._hour_end = self._hour_start + 3600.0
        self._limit = min(self._hour_end, self._due_s)
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
        """Write each chunk as one gzip member into its hour's file; close a finished hour.
        With ``fsync`` the members are on disk when it returns, else they are in the kernel
        (:meth:`sync` or :meth:`close` puts them on disk).

        Raises:
            DiskFullError: no room for a member; the file was cut back to its last complete
                member and ``unwritten`` holds that chunk and the ones after it.
        """
        for i, (hour, first_ts, lines) in enumerate(chunks):
            try:
                self._write_chunk(hour, first_ts, lines, fsync)
            except OSError as exc:
                if exc.errno not in DISK_FULL_ERRNOS:
                    raise
                err = DiskFullError(exc.errno, exc.strerror, exc.filename)
                err.unwritten = list(chunks[i:])
                raise err from exc
        if self._file is not None and self._file.hour != hour_of(now_s):
            self.close()

    def _write_chunk(self, hour: int, first_ts: float, lines: list[str], fsync: bool) -> None:
        if self._file is not None and self._file.hour != hour:
            self.close()
        if self._file is None:
            self._open(hour, self.stamps.stamp(hour, first_ts))
        assert self._file is not None
        member = gzip.compress("".join(lines).encode(), compresslevel=self.level, mtime=0)
        fd = self._file.handle.fileno()
        start = self._file.size
        try:
            _write_all(fd, member)
            if fsync:
                os.fsync(fd)
        except OSError:
            _cut_back(fd, start)
            raise
        self._file.size = start + len(member)
        if fsync:
            self._unsynced_since = math.inf
        else:
            self._unsynced_since = min(self._unsynced_since, time.monotonic())

    def open_hour_ended(self, now_s: float) -> bool:
        """A file is open and ``now_s`` is past its hour (the next write closes it)."""
        return self._file is not None and self._file.hour != hour_of(now_s)

    @property
    def unsynced(self) -> bool:
        """Members were written since the last fsync."""
        return self._file is not None and self._unsynced_since < math.inf

    def sync(self) -> float | None:
        """fsync what was written without it (a no-op when nothing was). Returns how long
        the oldest of it waited for the fsync (seconds: what a power loss would have lost),
        None when nothing waited."""
        waited = None
        if self.unsynced:
            assert self._file is not None
            os.fsync(self._file.handle.fileno())
            waited = time.monotonic() - self._unsynced_since
        self._unsynced_since = math.inf
        return waited

    def requeue(self, chunks: Sequence[Chunk]) -> None:
        """Put chunks that could not be written back in front of the queued ones."""
        if chunks:
            self._chunks[:0] = list(chunks)
            self._lines = None

    @property
    def queued_lines(self) -> int:
        return sum(len(lines) for _, _, lines in self._chunks)

    def close(self) -> Path | None:
        """Close and atomically rename the open file. Returns its final path."""
        if self._file is None:
            return None
        self.sync()
        f, self._file = self._file, None
        f.handle.close()
        os.replace(part_path(f.path), f.path)
        _fsync_dir(f.path.parent)
        if self.on_close is not None:
            self.on_close(f.path)
        return f.path

    def _open(self, hour: int, start_s: float) -> None:
        path = self.path_for(start_s)
        path.parent.mkdir(parents=True, exist_ok=True)
        n = 1
        while path.exists() or part_path(path).exists():  # never overwrite or append
            n += 1
            path = self.path_for(start_s).with_name(
                self.path_for(start_s).name.replace(self.suffix, f"-{n}{self.suffix}")
            )
        handle = open(part_path(path), "xb", buffering=0)  # noqa: SIM115 - kept open across flushes
        size = 0
        if self.header is not None:
            member = gzip.compress(self.header.encode(), compresslevel=self.level, mtime=0)
            try:
                _write_all(handle.fileno(), member)
                size = len(member)
            except OSError:
                # No room even for the header: leave nothing behind (a header-less file
                # would be unreadable as CSV); the next write opens the file again.
                handle.close()
                part_path(path).unlink(missing_ok=True)
                raise
        self._file = _OpenFile(path=path, handle=handle, hour=hour, size=size)
        # the header, and the file's directory entry
        self._unsynced_since = min(self._unsynced_since, time.monotonic())


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written (a full disk may first write a part)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _cut_back(fd: int, size: int) -> None:
    """Drop a member that was only partly written, so the file stays whole gzip members."""
    try:
        os.ftruncate(fd, size)
        os.lseek(fd, size, os.SEEK_SET)  # the next member starts right there, no hole
    except OSError:
        pass  # a later recover() cuts a torn tail all the same


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


def last_lines(path: Path) -> Iterator[bytes]:
    """The lines of a multi-member gzip file we wrote, last member first, each member's lines
    from its end: what the tail of a file holds, without inflating the whole file.

    Members are found by their header (:data:`MEMBER_MAGIC`) and each candidate is checked
    by inflating it, so compressed bytes that happen to look like a header are skipped. A
    torn last member (a crash during a write) is skipped too.
    """
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            return
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            end = size  # everything from `end` on has been read already
            search = size
            while True:
                start = data.rfind(MEMBER_MAGIC, 0, search)
                if start < 0:
                    return
                search = start
                d = zlib.decompressobj(wbits=31)
                try:
                    text = d.decompress(data[start:end])
                except zlib.error:
                    continue  # compressed bytes that look like a header
                if not d.eof:
                    continue  # a torn last member (or a false header): look further back
                if d.unused_data and end != size:
                    continue  # only the file's own tail may follow a member unread
                yield from reversed(text.splitlines())
                end = start


def last_field(paths: Iterable[Path], column: int) -> tuple[Path, bytes] | None:
    """The value of CSV ``column`` in the last data row of the newest of ``paths`` that has
    one (``paths`` newest first; header rows, whose field is not a digit string, are skipped)."""
    for path in paths:
        try:
            for line in last_lines(path):
                fields = line.split(b",")
                if len(fields) > column and fields[column].isdigit():
                    return path, fields[column]
        except (OSError, ValueError):
            continue  # unreadable: an older file may still say it
    return None
