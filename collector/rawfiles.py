"""Reading a stream's raw files back: which files there are, their lines, their runs.

    {root}/{exchange}/{symbol}/{data_type}/raw/{YYYY-MM-DD}/{stem}.jsonl.gz[.part]

- :func:`stream_files` lists a stream's raw files in the order they were written (the name's
  start time, then the writer's ``-N`` suffix).
- :func:`read_lines` yields a file's lines, never more than ``max_line`` bytes each (a longer
  line is skipped and counted), inflating member by member with bounded output (a gzip bomb
  costs time, not memory). A ``.part`` left by a crash is read up to its last complete
  member, as the collector's own recovery would keep it; a closed file that is corrupt or
  torn is read up to the damage, and the damage is counted.
- :func:`split_runs` groups the files into process runs. A run's first raw line is a
  ``start`` marker (book, l3) or a ``resume`` marker (trade) carrying its settings
  (collector/runinfo.py); files written before ``start`` existed open a run with the first
  connection's ``connect``/``disconnect`` (conn ``c1``: every process counts from 1). That
  older rule is a best effort: a first connection that ends right at the top of an hour
  would open a run there too (that hour then rebuilds without the state before it).

Counting never raises: every line that is not a raw event ends up in a counter by reason.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson

from collector.common import layout
from collector.runinfo import START
from collector.writer import valid_gzip_prefix

READ_CHUNK = 1 << 20
INFLATE_MAX = 4 << 20  # at most this much output per inflate call
_DASH_N = re.compile(r"-(\d+)$")
FIRST_CONN = "c1"  # collector.session numbers a process's connections from 1


@dataclass(frozen=True)
class RawFile:
    """One raw file of a stream, as its name describes it."""

    path: Path
    start_ms: int
    n: int  # the writer's "-N" for a second file started in the same millisecond (1: none)

    @property
    def part(self) -> bool:
        return self.path.name.endswith(layout.PART)

    @property
    def hour(self) -> int:
        return self.start_ms // layout.HOUR_MS

    @property
    def order(self) -> tuple[int, int]:
        return (self.start_ms, self.n)


def raw_file(path: Path) -> RawFile | None:
    """The raw file named ``path`` (``.part`` accepted), or None when the name is not one."""
    name = path.name.removesuffix(layout.PART)
    if not name.endswith(layout.RAW_SUFFIX):
        return None
    try:
        info = layout.parse_file_name(name)
    except ValueError:
        return None
    m = _DASH_N.search(name.removesuffix(layout.RAW_SUFFIX))
    return RawFile(path, info.start_ms, int(m.group(1)) if m else 1)


def stream_files(raw_dir: Path) -> list[RawFile]:
    """Every raw file under a stream's ``raw`` directory, in writing order."""
    found: list[RawFile] = []
    if raw_dir.is_dir():
        for day in raw_dir.iterdir():
            if not layout.DATE_DIR.fullmatch(day.name) or not day.is_dir() or day.is_symlink():
                continue
            for p in day.iterdir():
                f = raw_file(p)
                if f is not None and p.is_file() and not p.is_symlink():
                    found.append(f)
    return sorted(found, key=lambda f: (f.order, f.part))


def _inflate(data: Iterator[bytes], counts: Counter[str]) -> Iterator[bytes]:
    """The decompressed bytes of a multi-member gzip stream; damage stops it (counted)."""
    d = zlib.decompressobj(wbits=31)
    fed = False
    for chunk in data:
        while chunk:
            fed = True
            try:
                out = d.decompress(chunk, INFLATE_MAX)
            except zlib.error:
                counts["corrupt_gzip"] += 1
                return
            if out:
                yield out
            if d.eof:  # the next member, if any, starts in what this one did not use
                chunk = d.unused_data
                d = zlib.decompressobj(wbits=31)
                fed = False
            else:
                chunk = d.unconsumed_tail
    if fed and not d.eof:
        counts["torn_gzip"] += 1  # a member cut short: its partial lines are kept


def _chunks(path: Path, limit: int | None) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        left = limit
        while left is None or left > 0:
            chunk = fh.read(READ_CHUNK if left is None else min(READ_CHUNK, left))
            if not chunk:
                return
            if left is not None:
                left -= len(chunk)
            yield chunk


def read_lines(path: Path, max_line: int, counts: Counter[str]) -> Iterator[bytes]:
    """The lines of a raw file (without their newline), each at most ``max_line`` bytes: a
    longer one is skipped (counted ``too_long``), holding at most ``max_line`` bytes of it."""
    limit = valid_gzip_prefix(path.read_bytes()) if path.name.endswith(layout.PART) else None
    tail: list[bytes] = []  # the pieces of a line that started in an earlier output
    size = 0
    too_long = False
    for out in _inflate(_chunks(path, limit), counts):
        start = 0
        while (nl := out.find(b"\n", start)) >= 0:
            if too_long:
                too_long = False  # the end of the line that was too long
            elif size + nl - start > max_line:
                counts["too_long"] += 1
            elif tail:
                tail.append(out[start:nl])
                yield b"".join(tail)
            else:
                yield out[start:nl]
            tail, size = [], 0
            start = nl + 1
        if not too_long and start < len(out):
            tail.append(out[start:])
            size += len(out) - start
            if size > max_line:
                counts["too_long"] += 1
                too_long, tail, size = True, [], 0
    if tail:
        yield b"".join(tail)  # a last line without its newline (a closed file torn by hand)


def decode(line: bytes, counts: Counter[str]) -> dict[str, object] | None:
    """One raw line as an event (a JSON object with a string ``t``), or None (counted)."""
    try:
        ev = orjson.loads(line)
    except orjson.JSONDecodeError:
        counts["not_json"] += 1
        return None
    if type(ev) is not dict or type(ev.get("t")) is not str:
        counts["not_an_event"] += 1
        return None
    return ev


def first_event(path: Path, max_line: int) -> dict[str, object] | None:
    """The first line of a raw file, if it is a raw event (a ``t`` and a numeric ``ts``)."""
    counts: Counter[str] = Counter()
    try:
        for line in read_lines(path, max_line, counts):
            ev = None if counts else decode(line, counts)  # (a first line too long: no)
            ts = None if ev is None else ev.get("ts")
            return ev if type(ts) in (int, float) else None
    except OSError:
        return None
    return None


def opens_run(first: Mapping[str, object] | None, legacy: bool) -> bool:
    """Does a file whose first event is ``first`` begin a process run? ``legacy``: the file
    is older than the stream's first ``start`` marker (see the module docstring)."""
    if first is None:
        return False
    t = first.get("t")
    if t in (START, "resume"):
        return True
    return legacy and t in ("connect", "disconnect") and first.get("conn") == FIRST_CONN


def split_runs(
    files: list[RawFile], firsts: Mapping[Path, Mapping[str, object] | None]
) -> list[list[RawFile]]:
    """The files grouped by process run, in order; the first group may lack its start."""
    with_start = [i for i, f in enumerate(files) if (firsts.get(f.path) or {}).get("t") == START]
    legacy_until = with_start[0] if with_start else len(files)
    runs: list[list[RawFile]] = []
    for i, f in enumerate(files):
        if not runs or opens_run(firsts.get(f.path), legacy=i < legacy_until):
            runs.append([f])
        else:
            runs[-1].append(f)
    return runs
