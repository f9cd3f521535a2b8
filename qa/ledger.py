"""The completeness ledger: one small, versioned, machine-readable record per closed file.

Written by each QA run with the file's QA report, in the stream's own ``completeness`` tree
(``{stream}/completeness/{day}/<stem>.completeness.json``, see ``collector.common.layout``:
small files, listed and merged on their own) and uploaded with the rest by the S3 sync, so
every host's records can be merged (``ops/dataset``). A file is one stream's UTC hour (a
restart inside an hour starts a second file, so an hour may have several records;
``python -m qa completeness`` adds them up per hour). The format (``completeness_version``
1) is in README "Data quality"; every time is epoch seconds (UTC, ms precision), every
interval ``[from_s, to_s]`` lies in the file's span ``[start_s, end_s]``:

- ``start_s``: the file's start (its name); ``end_s``: the end of its hour, or the start of
  the stream's next file when that one starts inside the same hour (a restart);
- ``connected_s`` and ``disconnected``: from the raw file's ``connect``/``disconnect`` events.
  A file that begins with frames (not a ``connect``) continues a connection of the previous
  hour; the connection at the end of the file lasts to ``end_s`` when the stream's next raw
  file continues it the same way, otherwise (the collector stopped or was killed) only to the
  file's last line: nothing is assumed that no file shows;
- ``gaps``: the collector's ``gap`` markers: ``kind`` (trade_id, heartbeat, sequence,
  checksum, disconnect), ``from_s`` (the last data frame before it) and ``to_s`` (when it was
  seen), the missing ids ``first_id`` .. ``last_id`` (trade ids, or update / sequence
  numbers) and ``size`` (their number; null where unknown, e.g. a disconnect);
- ``trade_ids`` (trades): ``first``, ``last`` and ``written`` (distinct ids in the parsed
  file); where the exchange's ids are contiguous also ``expected`` (the ids issued since the
  previous file's last one, or since this file's first) and ``missing``;
- ``out_of_sync`` and ``out_of_sync_s`` (books and l3): when the book could not be trusted
  (no rows): from a gap, resync or disconnect to the next sync, as the collector's processor
  replays it (``qa/replay.py``), plus any time not connected;
- ``bad_frames``: frames that produced no row for a reason worth a look, by reason;
- ``complete``: this file alone covers its whole hour, connected and (books) in sync, with no
  gap, missing id or bad frame (within ``[qa] hour_tolerance_s``).
"""

from __future__ import annotations

import contextlib
import gzip
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from collector.common import layout
from collector.common.layout import HOUR_MS, FileInfo, parse_file_name
from qa.checks.raw import HARMLESS, RawSummary

if TYPE_CHECKING:
    import polars as pl

LEDGER_VERSION = 1
# Intervals and gaps listed per record (the totals count them all).
MAX_LISTED = 100
# A previous record larger than this is not read (records are a few kB).
MAX_RECORD_BYTES = 1 << 20
# Lines of the next raw file read to learn whether it continues the connection.
PEEK_LINES = 1000

Interval = tuple[float, float]


@dataclass(frozen=True)
class ParsedFacts:
    """What the parsed file says (from the frame QA reads anyway)."""

    rows: int = 0
    first_local_s: float | None = None  # receive time of the first row
    first_id: int | None = None
    last_id: int | None = None
    distinct_ids: int = 0


@dataclass(frozen=True)
class Neighbours:
    """What the stream's other files say about this one."""

    end_s: float  # the end of this file's span
    continues: bool | None  # the next raw file continues this file's connection
    prev_last_id: int | None = None  # the previous file's last trade id
    prev_file: str | None = None
    prev_synced_at_end: bool | None = None  # the previous record's book state at its end


def hour_of(info: FileInfo) -> str:
    start = datetime.fromtimestamp(info.start_ms // HOUR_MS * 3600, UTC)
    return start.strftime("%Y-%m-%dT%H:00:00Z")


def _r(t: float) -> float:
    return round(t, 3)


def _clip(intervals: list[Interval], lo: float, hi: float) -> list[Interval]:
    out = []
    for a, b in intervals:
        a, b = max(a, lo), min(b, hi)
        if b > a:
            out.append((a, b))
    return out


def _complement(intervals: list[Interval], lo: float, hi: float) -> list[Interval]:
    """``[lo, hi]`` minus the (sorted, disjoint) ``intervals``."""
    out, at = [], lo
    for a, b in intervals:
        if a > at:
            out.append((at, a))
        at = max(at, b)
    if hi > at:
        out.append((at, hi))
    return out


def _total(intervals: list[Interval]) -> float:
    return sum(b - a for a, b in intervals)


def _listed(intervals: list[Interval]) -> list[list[float]]:
    """At most MAX_LISTED intervals, rounded to the ms (none shorter than that)."""
    out = [[_r(a), _r(b)] for a, b in intervals if _r(b) > _r(a)]
    return out[:MAX_LISTED]


def connected_intervals(raw: RawSummary, start_s: float, nb: Neighbours) -> list[Interval]:
    """When the connection was up during the file's span (see the module docstring)."""
    return _up(raw.starts_connected, raw.conn_events, raw, start_s, nb)


def _up(
    at_start: bool,
    events: list[tuple[float, bool]],
    raw: RawSummary,
    start_s: float,
    nb: Neighbours,
) -> list[Interval]:
    """The intervals a state (connected, in sync) held: from the start if ``at_start``, then
    switched by ``(ts, up)`` events; held at the end, it lasts to the end of the span when
    the next file continues the connection, else to the file's last line."""
    out: list[Interval] = []
    since = start_s if at_start else None
    for ts, up in events:
        if up and since is None:
            since = ts
        elif not up and since is not None:
            out.append((since, ts))
            since = None
    if since is not None:
        end = nb.end_s if nb.continues else (raw.last_ts or since)
        out.append((since, end))
    return _clip(out, start_s, nb.end_s)


def in_sync_intervals(
    raw: RawSummary,
    start_s: float,
    nb: Neighbours,
    parsed: ParsedFacts,
    connected: list[Interval],
) -> list[Interval]:
    """When the book could be trusted: the replay's syncs, the collector's desyncs (gap and
    resync markers, disconnects), from a state at the start taken from the previous record,
    else from whether the file has rows before its first sync or desync."""
    events = sorted([(t, False) for t in raw.desyncs] + [(t, True) for t in raw.syncs])
    if not raw.starts_connected:
        synced = False  # a fresh connection: no book until the first sync
    elif nb.prev_synced_at_end is not None:
        synced = nb.prev_synced_at_end
    else:
        first_event = events[0][0] if events else nb.end_s
        synced = parsed.first_local_s is not None and parsed.first_local_s <= first_event
    # never in sync while not connected
    return _intersect(_up(synced, events, raw, start_s, nb), connected)


def _intersect(a: list[Interval], b: list[Interval]) -> list[Interval]:
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if hi > lo:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def _gaps(raw: RawSummary, start_s: float, end_s: float) -> list[dict[str, Any]]:
    out = []
    for g in raw.gap_marks:
        if not start_s <= g.ts <= end_s + 1.0:
            continue  # a marker outside the file's span is not this hour's
        first = last = None
        if g.expected is not None and g.got is not None and g.got > g.expected:
            first, last = g.expected, g.got - 1
        if g.since is not None:
            since = max(start_s, g.since)
        else:  # no data frame before it in this file: missing since the file began
            since = g.ts if g.kind == "disconnect" else start_s
        out.append(
            {
                "kind": g.kind,
                "from_s": _r(since),
                "to_s": _r(g.ts),
                "first_id": first,
                "last_id": last,
                "size": g.size if g.kind != "disconnect" else None,
            }
        )
    return out


def _trade_ids(
    raw: RawSummary | None,
    parsed: ParsedFacts,
    nb: Neighbours,
    gaps: list[dict[str, Any]],
    contiguous: bool,
) -> dict[str, Any]:
    ids: dict[str, Any] = {
        "first": parsed.first_id,
        "last": parsed.last_id,
        "written": parsed.distinct_ids,
        "expected": None,
        "missing": None,
    }
    if not contiguous or (raw is not None and raw.trade_resets):
        return ids  # global ids, or a new id space in the hour: nothing to expect
    base = raw.resume_trade_id if raw is not None and raw.resume_trade_id is not None else None
    if base is None:
        base = nb.prev_last_id
    last = parsed.last_id
    for g in gaps:
        if g["kind"] in ("trade_id", "heartbeat") and g["last_id"] is not None:
            last = g["last_id"] if last is None else max(last, g["last_id"])
    if last is None:
        ids["expected"], ids["missing"] = 0, 0
        return ids
    first = parsed.first_id
    if base is None or (first is not None and first <= base) or base > last:
        if first is None:
            return ids
        base = first - 1
    ids["expected"] = last - base
    ids["missing"] = max(0, ids["expected"] - parsed.distinct_ids)
    return ids


def _head(info: FileInfo, host: str, start_s: float, end_s: float) -> dict[str, Any]:
    """Whose record it is, and the file's span."""
    return {
        "completeness_version": LEDGER_VERSION,
        "host": host,
        "exchange": info.exchange,
        "symbol": info.symbol,
        "data_type": info.data_type,
        "hour": hour_of(info),
        "file": info.name,
        "start_s": _r(start_s),
        "end_s": _r(end_s),
    }


def build_record(
    info: FileInfo,
    raw: RawSummary | None,
    parsed: ParsedFacts,
    nb: Neighbours,
    *,
    host: str,
    qa_status: str,
    raw_file: str | None,
    contiguous: bool,
    tolerance_s: float,
) -> dict[str, Any]:
    """The completeness record of one file (pure; see the module docstring)."""
    start_s = info.start_ms / 1000
    end_s = max(start_s, nb.end_s)
    hour_start = info.start_ms // HOUR_MS * 3600
    rec: dict[str, Any] = {
        **_head(info, host, start_s, end_s),
        "raw_file": raw_file,
        "rows": parsed.rows,
        "connected_s": None,
        "disconnected": None,
        "gaps": [],
        "gap_count": 0,
        "gap_size": 0,
        "trade_ids": None,
        "out_of_sync": None,
        "out_of_sync_s": None,
        "synced_at_end": None,
        "frames": None,
        "bad_frames": {},
        "qa_status": qa_status,
        "complete": False,
    }
    gaps: list[dict[str, Any]] = []
    connected: list[Interval] = []
    if raw is not None:
        connected = connected_intervals(raw, start_s, nb)
        rec["connected_s"] = _r(_total(connected))
        rec["disconnected"] = _listed(_complement(connected, start_s, end_s))
        gaps = _gaps(raw, start_s, end_s)
        rec["gaps"] = gaps[:MAX_LISTED]
        rec["gap_count"] = len(gaps)
        rec["gap_size"] = sum(g["size"] or 0 for g in gaps)
        rec["frames"] = raw.frames
        rec["bad_frames"] = {k: v for k, v in raw.without_rows.items() if k not in HARMLESS}
    if info.data_type == "trade":
        rec["trade_ids"] = _trade_ids(raw, parsed, nb, gaps, contiguous)
    elif raw is not None:
        in_sync = in_sync_intervals(raw, start_s, nb, parsed, connected)
        out = _complement(in_sync, start_s, end_s)
        rec["out_of_sync"] = _listed(out)
        rec["out_of_sync_s"] = _r(_total(out))
        rec["synced_at_end"] = bool(in_sync) and in_sync[-1][1] >= end_s - 1e-6
    rec["complete"] = _complete(rec, hour_start, tolerance_s)
    return rec


def _complete(rec: dict[str, Any], hour_start: float, tol: float) -> bool:
    span_ok = rec["start_s"] - hour_start <= tol and hour_start + 3600 - rec["end_s"] <= tol
    connected = rec["connected_s"]
    ids = rec["trade_ids"]
    return bool(
        span_ok
        and connected is not None
        and connected >= rec["end_s"] - rec["start_s"] - tol
        and rec["gap_count"] == 0
        and not rec["bad_frames"]
        and (ids is None or not ids["missing"])
        and (rec["out_of_sync_s"] is None or rec["out_of_sync_s"] <= tol)
    )


def error_record(info: FileInfo, host: str, qa_status: str, error: str) -> dict[str, Any]:
    """A record saying the ledger of this file could not be made (and why)."""
    return {
        **_head(info, host, info.start_ms / 1000, info.hour_end_ms / 1000),
        "qa_status": qa_status,
        "complete": False,
        "error": error[:300],
    }


# --- the stream's other files --------------------------------------------------------------


def parsed_facts(df: pl.DataFrame | None, data_type: str) -> ParsedFacts:
    """Rows, first receive time and (trades) ids of a parsed file's frame."""
    if df is None or df.height == 0:
        return ParsedFacts()
    local = df.get_column("local_time").drop_nulls()
    first_local = float(local.min()) / 1e6 if local.len() else None  # type: ignore[arg-type]
    if data_type != "trade" or "trade_id" not in df.columns:
        return ParsedFacts(rows=df.height, first_local_s=first_local)
    ids = df.get_column("trade_id").drop_nulls()
    if ids.len() == 0:
        return ParsedFacts(rows=df.height, first_local_s=first_local)
    return ParsedFacts(
        rows=df.height,
        first_local_s=first_local,
        first_id=int(ids.min()),  # type: ignore[arg-type]
        last_id=int(ids.max()),  # type: ignore[arg-type]
        distinct_ids=int(ids.n_unique()),
    )


def _stream_files(parsed: Path, suffix: str, kind: str) -> list[Path]:
    """The stream's files of ``kind`` in this file's day directory and the days around it,
    sorted by name (= by start time), symlinks and dot files left out."""
    stream = parsed.parent.parent.parent
    day = parsed.parent.name
    out = []
    root = stream / kind
    if root.is_symlink():
        return []  # never followed (QA reads nothing outside the data dir)
    try:
        days = sorted(
            e.name
            for e in os.scandir(root)
            if layout.DATE_DIR.fullmatch(e.name) and e.is_dir(follow_symlinks=False)
        )
    except OSError:
        return []
    if day in days:
        i = days.index(day)
        days = days[max(0, i - 1) : i + 2]
    for d in days:
        try:
            entries = list(os.scandir(root / d))
        except OSError:
            continue
        for e in entries:
            if e.name.startswith(".") or not e.name.endswith(suffix):
                continue
            if e.is_file(follow_symlinks=False):
                out.append(Path(e.path))
    return sorted(out, key=lambda p: (p.parent.name, p.name))


def neighbours(parsed: Path, info: FileInfo) -> Neighbours:
    """What the stream's other files (next and previous) say about ``parsed``'s span."""
    me = parsed.name.removesuffix(layout.PARSED_SUFFIX)
    end_s = info.hour_end_ms / 1000
    later = []
    for p in _stream_files(parsed, layout.PARSED_SUFFIX, layout.PARSED):
        try:
            other = parse_file_name(p.name)
        except ValueError:
            continue
        stem = p.name.removesuffix(layout.PARSED_SUFFIX)
        if (p.parent.name, stem) > (parsed.parent.name, me) and other.start_ms > info.start_ms:
            later.append(other)
    for other in later:
        if other.start_ms < info.hour_end_ms:
            end_s = min(end_s, other.start_ms / 1000)
    prev = _previous(parsed, info)
    return Neighbours(end_s=end_s, continues=_continues(parsed), **prev)


def _previous(parsed: Path, info: FileInfo) -> dict[str, Any]:
    """The previous file of the stream: its last trade id and its book state at its end, from
    its completeness record, else (trade ids) from the file itself."""
    me = (parsed.parent.name, parsed.name)
    before = [
        p
        for p in _stream_files(parsed, layout.PARSED_SUFFIX, layout.PARSED)
        if (p.parent.name, p.name) < me
    ]
    if not before:
        return {}
    prev = before[-1]
    out: dict[str, Any] = {"prev_file": prev.name}
    path = layout.completeness_path(prev)
    stream = parsed.parent.parent.parent
    real = not any(
        (stream / Path(*path.relative_to(stream).parts[:n])).is_symlink() for n in (1, 2)
    )
    record = read_record(path) if real else None
    if record is not None:
        ids = record.get("trade_ids")
        last = ids.get("last") if isinstance(ids, dict) else None
        if type(last) is int:
            out["prev_last_id"] = last
        synced = record.get("synced_at_end")
        if type(synced) is bool:
            out["prev_synced_at_end"] = synced
        if "prev_last_id" in out or info.data_type != "trade":
            return out
    if info.data_type == "trade":
        out["prev_last_id"] = _last_trade_id(prev)
    return out


def _last_trade_id(path: Path) -> int | None:
    # (imported here: `ops status` and each sync's status snapshot read records through this
    # module, and polars would add ~0.1 s to their start)
    import polars as pl

    try:
        ids = pl.read_csv(path, columns=["trade_id"], schema_overrides={"trade_id": pl.Int64})
    except (OSError, pl.exceptions.PolarsError):
        return None
    col = ids.get_column("trade_id").drop_nulls()
    return int(col.max()) if col.len() else None  # type: ignore[arg-type]


def _continues(parsed: Path) -> bool | None:
    """Whether the stream's next raw file (closed or still open) continues the connection
    this file ends with: its first connection event is not a ``connect`` (a new collector
    or a new connection). None: it cannot be read; False: there is none."""
    raw = layout.raw_twin(parsed)
    me = (raw.parent.name, raw.name)
    files = [
        p
        for p in _stream_files(parsed, layout.RAW_SUFFIX, layout.RAW)
        + _stream_files(parsed, layout.RAW_SUFFIX + layout.PART, layout.RAW)
        if (p.parent.name, p.name.removesuffix(layout.PART)) > me
    ]
    if not files:
        return False
    nxt = min(files, key=lambda p: (p.parent.name, p.name))
    try:
        for n, line in enumerate(_lines(nxt)):
            if n >= PEEK_LINES:
                return True
            try:
                t = orjson.loads(line).get("t")
            except (orjson.JSONDecodeError, AttributeError):
                continue
            if t in ("recv", "disconnect"):
                return True
            if t in ("connect", "resume"):
                return False
    except (OSError, EOFError, zlib.error):
        return None
    return None


def _lines(path: Path) -> Iterator[bytes]:
    with gzip.open(path, "rb") as fh:
        while True:
            line = fh.readline(1 << 20)
            if not line:
                return
            yield line


def read_record(path: Path) -> dict[str, Any] | None:
    """A completeness record, or None (missing, too big, not a record, a symlink)."""
    try:
        if path.is_symlink() or path.stat().st_size > MAX_RECORD_BYTES:
            return None
        value = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    if not isinstance(value, dict) or value.get("completeness_version") != LEDGER_VERSION:
        return None
    return value


def make_dirs(directory: Path, *, stream: Path) -> None:
    """``directory`` (below ``stream``) and its parents down from ``stream``, refusing any
    that exists as a symlink (OSError): QA never writes outside the data directory."""
    parts = directory.relative_to(stream).parts
    at = stream
    for part in parts:
        at = at / part
        if at.is_symlink():
            raise OSError(f"{at} is a symlink: not followed")
        try:
            at.mkdir(mode=0o755)
        except FileExistsError:
            if not at.is_dir():
                raise
        if at.is_symlink():  # planted between the check and the mkdir
            raise OSError(f"{at} is a symlink: not followed")


def write_json(out: Path, body: dict[str, Any]) -> Path:
    """Write ``body`` to ``out`` atomically: the temporary file is created exclusively and
    never through a symlink, and the rename replaces a symlink named like ``out`` instead of
    writing where it points."""
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    data = orjson.dumps(body, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # a leftover of a killed run with our pid (or a planted symlink)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return out
