"""Where files live on disk: the one owner of the data directory's layout.

    {data_dir}/{exchange}/{symbol}/{data_type}/
        parsed/{YYYY-MM-DD}/{YYYYMMDDTHHMMSS.mmm}Z_{exchange}_{symbol}_{data_type}[-N].csv.gz
        parsed/{YYYY-MM-DD}/{same stem}.qa.json            QA report of that file
        raw/{YYYY-MM-DD}/{same stem}.jsonl.gz              its raw twin (the same stem)
        completeness/{YYYY-MM-DD}/{same stem}.completeness.json   its completeness record (QA)
        status.json                                        the collector's status
        .lock                                              the collector's flock
    {data_dir}/.qa/run.lock  .sync/ledger.sqlite  .sync/sync.lock  .fleet/periodic/{job}.*
    {data_dir}/.fleet/silent.json                          quiet streams (the listener's)
    {data_dir}/.alerts/                                    alert suppression state
    {data_dir}/.rebuild/prev/{path of a parsed file}[.qa.json|.replaced.json]
                                    what ``collector rebuild --in-place`` replaced, until sync
                                    delivered the new version (``.replaced.json`` says which)

A file being written ends in ``.part``; a file is *closed* when it has no ``.part`` suffix
(closing is an atomic rename). Names sort by start time. Standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from collector.common.errors import ConfigError

PARSED, RAW = "parsed", "raw"
KINDS = (PARSED, RAW)
# QA's completeness records: a tree of their own (small files, listed and merged on their own)
LEDGER = "completeness"
# The directories of a stream whose closed files the S3 sync delivers.
SYNCED_KINDS = (PARSED, RAW, LEDGER)
PARSED_SUFFIX = ".csv.gz"
RAW_SUFFIX = ".jsonl.gz"
REPORT_SUFFIX = ".qa.json"
COMPLETENESS_SUFFIX = ".completeness.json"
PART = ".part"
SUFFIXES = {PARSED: PARSED_SUFFIX, RAW: RAW_SUFFIX}
# Closed files a run may deliver: data files of either kind, QA reports and completeness
# records.
CLOSED_SUFFIXES = (PARSED_SUFFIX, RAW_SUFFIX, REPORT_SUFFIX, COMPLETENESS_SUFFIX)
DATE_DIR = re.compile(r"\d{4}-\d{2}-\d{2}")
STATUS_FILE = "status.json"
HOUR_MS = 3_600_000

_UNSAFE_NAME = re.compile(r"[/\\\s\x00-\x1f\x7f]|\.\.")
_NAME = re.compile(r"(\d{8}T\d{6})(?:\.(\d{3}))?Z_(.+)\.(csv|jsonl)\.gz")


def check_path_safe(value: str, what: str = "symbol") -> str:
    """Reject anything that could escape the data directory once it becomes a path."""
    if not value or _UNSAFE_NAME.search(value) or value in {".", ".."}:
        raise ConfigError(f"{what} {value!r} is not allowed (it becomes part of a file path)")
    return value


def stream_dir(data_dir: Path, exchange: str, symbol: str, data_type: str) -> Path:
    return data_dir / exchange / symbol / data_type


def stream_name(exchange: str, symbol: str, data_type: str) -> str:
    """The name part of a stream's files: ``binance_BTCUSDT_trade``."""
    return f"{exchange}_{symbol}_{data_type}"


def file_path(root: Path, start_s: float, name: str, suffix: str) -> Path:
    """``{root}/{YYYY-MM-DD}/{YYYYMMDDTHHMMSS.mmm}Z_{name}{suffix}`` for a file started at
    ``start_s``. Milliseconds in the stamp: names sort by start time even for restarts
    within one second."""
    t = datetime.fromtimestamp(start_s, UTC)
    stamp = f"{t.strftime('%Y%m%dT%H%M%S')}.{t.microsecond // 1000:03d}Z"
    return root / t.strftime("%Y-%m-%d") / f"{stamp}_{name}{suffix}"


def part_path(path: Path) -> Path:
    return path.with_name(path.name + PART)


def is_closed(path: Path) -> bool:
    return path.name.endswith(CLOSED_SUFFIXES)


def status_path(directory: Path) -> Path:
    """The status file of the stream in ``directory``."""
    return directory / STATUS_FILE


def lock_path(directory: Path) -> Path:
    return directory / ".lock"


def status_files(data_dir: Path) -> Iterator[Path]:
    """Every stream's status file under ``data_dir``
    (``{exchange}/{symbol}/{data_type}/status.json``), unsorted; symlinks and dot
    directories are not told apart (the caller decides)."""
    return data_dir.glob(f"*/*/*/{STATUS_FILE}")


def stream_files(data_dir: Path, kind: str | None = None) -> Iterator[Path]:
    """Every entry at the depth of a stream's files under ``data_dir``
    (``{exchange}/{symbol}/{data_type}/{kind}/{YYYY-MM-DD}/*``), open (``.part``) or closed,
    in one ``kind`` directory (:data:`PARSED`, :data:`RAW`, :data:`LEDGER`) or in all;
    unsorted. By depth alone: no name is filtered out (dot directories included), callers
    select by name (:func:`closed_files`, :func:`open_files`)."""
    return data_dir.glob(f"*/*/*/{kind or '*'}/*/*")


def closed_files(data_dir: Path) -> Iterator[Path]:
    """The :func:`stream_files` that are closed (:func:`is_closed`), unsorted."""
    return (p for p in stream_files(data_dir) if is_closed(p))


def open_files(data_dir: Path) -> Iterator[Path]:
    """The :func:`stream_files` still being written (a ``.part`` name), unsorted."""
    return (p for p in stream_files(data_dir) if p.name.endswith(PART))


def report_path(parsed: Path) -> Path:
    """``X.csv.gz`` → ``X.qa.json`` next to it."""
    return parsed.with_name(parsed.name.removesuffix(PARSED_SUFFIX) + REPORT_SUFFIX)


def completeness_path(parsed: Path) -> Path:
    """``parsed/{day}/X.csv.gz`` → ``completeness/{day}/X.completeness.json`` (QA's
    completeness record of the file, in the stream's ``completeness`` directory)."""
    day = parsed.parent
    stream = day.parent.parent
    name = parsed.name.removesuffix(PARSED_SUFFIX) + COMPLETENESS_SUFFIX
    return stream / LEDGER / day.name / name


def raw_twin(parsed: Path) -> Path:
    """The raw file of the same stem: the sibling ``raw/`` directory instead of ``parsed/``."""
    day = parsed.parent
    stream = day.parent.parent
    return stream / RAW / day.name / (parsed.name.removesuffix(PARSED_SUFFIX) + RAW_SUFFIX)


def parsed_twin(raw: Path) -> Path:
    """The parsed file of the same stem as a raw file (``.part`` of a crash accepted)."""
    name = raw.name.removesuffix(PART)
    day = raw.parent
    stream = day.parent.parent
    return stream / PARSED / day.name / (name.removesuffix(RAW_SUFFIX) + PARSED_SUFFIX)


def qa_lock_path(data_dir: Path) -> Path:
    return data_dir / ".qa" / "run.lock"


def sync_dir(data_dir: Path) -> Path:
    return data_dir / ".sync"


def fleet_dir(data_dir: Path) -> Path:
    """State of the fleet's own programs: periodic jobs, the listener's quiet-stream episodes."""
    return data_dir / ".fleet"


def sync_lock_path(data_dir: Path) -> Path:
    return sync_dir(data_dir) / "sync.lock"


def periodic_dir(data_dir: Path) -> Path:
    return fleet_dir(data_dir) / "periodic"


def alerts_dir(data_dir: Path) -> Path:
    return data_dir / ".alerts"


REPLACED_SUFFIX = ".replaced.json"


def rebuild_dir(data_dir: Path) -> Path:
    """``collector rebuild --in-place``: ``work/`` (files being built), ``prev/`` (the
    versions it replaced, each with a ``.replaced.json`` naming the new one's SHA-256)."""
    return data_dir / ".rebuild"


def replaced_dir(data_dir: Path) -> Path:
    """The previous versions ``collector rebuild --in-place`` keeps until sync delivered."""
    return rebuild_dir(data_dir) / "prev"


@dataclass(frozen=True)
class FileInfo:
    """What a data file's name says: its stream and the UTC time it starts."""

    exchange: str
    symbol: str
    data_type: str
    start_ms: int
    name: str

    @property
    def hour_end_ms(self) -> int:
        return (self.start_ms // HOUR_MS + 1) * HOUR_MS


def parse_file_name(name: str) -> FileInfo:
    """``20240101T100000.123Z_binance_BTCUSDT_trade[-2].csv.gz`` → FileInfo (the milliseconds
    are optional); ValueError otherwise."""
    m = _NAME.fullmatch(name)
    if m is None:
        raise ValueError(f"not a data file name: {name!r}")
    stamp, millis, tail = m.group(1), int(m.group(2) or 0), m.group(3)
    tail = re.sub(r"-\d+$", "", tail)  # the writer's "-2" for a second file in one second
    exchange, _, rest = tail.partition("_")
    symbol, _, data_type = rest.rpartition("_")
    if not exchange or not symbol or not data_type:
        raise ValueError(f"not a data file name: {name!r}")
    start = datetime.strptime(stamp, "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    return FileInfo(exchange, symbol, data_type, int(start.timestamp()) * 1000 + millis, name)
