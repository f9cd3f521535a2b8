"""QA runs: find closed parsed files without a (fresh) report or completeness record, check
each, write its report and its completeness record (``qa/ledger.py``), alert.

The parsed file's checks run beside the raw file's: the raw file of the same stem is read
back through the collector's own processor (``qa/replay.py``), continuing from the stream's
previous file, and the two are compared.

Each file is checked on its own: an unreadable file or a crash inside a check becomes that
file's ``fail`` report with the reason, and the run goes on with the next file. A run holds
an exclusive lock file so that a manual run and the scheduled one never overlap.

Symbolic links are never followed below the data directory (as in the S3 sync's scan): a
symlinked directory or file is skipped and counted, so QA never reads from, nor writes a
report into, a place outside the data directory.
"""

from __future__ import annotations

import os
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import structlog

from collector.common.alerts import Alert, send_alert
from collector.common.layout import (
    PARSED_SUFFIX,
    FileInfo,
    completeness_path,
    parse_file_name,
    qa_lock_path,
    raw_twin,
    report_path,
)
from collector.common.locks import hold_lock
from collector.exchanges import ADAPTERS
from collector.exchanges.base import ExchangeAdapter
from qa import l3check, ledger, reader, replay
from qa.checks.context import Context
from qa.checks.findings import FAIL, OK, WARN, Finding, worst
from qa.checks.frame import check_frame
from qa.checks.raw import RawSummary, check_frames, check_raw
from qa.checks.specs import SPECS, TypeSpec
from qa.settings import QASettings, Thresholds

log = structlog.get_logger()

REPORT_VERSION = 1
# Checks that need the parsed and the raw file together, per data type.
FILE_CHECKS = {"l3": l3check.check_l3_files}


def _is_real_file(path: Path) -> bool:
    """A regular file reached without a symlink below its stream directory (``raw/``, the
    day directory and the file itself are all real)."""
    stream = path.parent.parent.parent
    real = os.path.join(os.path.realpath(stream), *path.parts[-3:])
    try:
        return os.path.realpath(path) == real and path.is_file()
    except OSError:
        return False


def _adapter(exchange: str) -> ExchangeAdapter | None:
    return ADAPTERS.get(exchange)


def scan_raw(
    path: Path,
    info: FileInfo,
    spec: TypeSpec,
    adapter: ExchangeAdapter | None,
    *,
    count: bool,
    thresholds: Thresholds | None = None,
    resume: tuple[int, str] | None = None,
) -> tuple[RawSummary, bool]:
    """Read the raw file through the collector's processor (:mod:`qa.replay`); the bool says
    whether the records of ``spec.raw_record_type`` were counted."""
    th = thresholds if thresholds is not None else Thresholds()
    record_type = spec.raw_record_type if count else None
    try:
        summary = replay.replay_raw(
            reader.iter_lines(path),
            info,
            adapter,
            options=th.options_of(info.exchange, info.symbol, info.data_type),
            book_depth=th.depth_of(info.exchange, info.symbol),
            record_type=record_type,
            resume=resume,
        )
    except (OSError, EOFError, zlib.error) as exc:
        # A truncated raw file: what was read is still a summary, but counts are partial.
        log.warning("qa.raw_unreadable", file=str(path), error=str(exc))
        return RawSummary(bad_lines=1), False
    return summary, record_type is not None and summary.replayed


def _raw_side(
    path: Path,
    raw_file: Path | None,
    info: FileInfo,
    spec: TypeSpec,
    adapter: ExchangeAdapter | None,
    thresholds: Thresholds,
) -> tuple[RawSummary | None, bool, ledger.Neighbours]:
    """The stream's neighbouring files, then the raw file (in a thread, beside the parsed
    file's checks)."""
    try:
        nb = ledger.neighbours(path, info)
    except OSError:
        nb = ledger.Neighbours(end_s=info.hour_end_ms / 1000, continues=None)
    if raw_file is None:
        return None, False, nb
    resume = None
    if nb.prev_last_id is not None and nb.prev_file is not None:
        resume = (nb.prev_last_id, nb.prev_file)
    count = thresholds.compare_raw and spec.raw_record_type is not None
    summary, counted = scan_raw(
        raw_file, info, spec, adapter, count=count, thresholds=thresholds, resume=resume
    )
    return summary, counted, nb


def check_file(path: Path, thresholds: Thresholds, *, host_id: str = "local") -> dict[str, Any]:
    """Every check of one closed parsed file → its report (a JSON-able dict). Never raises
    for a bad file: unreadable files and crashing checks become ``fail`` findings."""
    return inspect_file(path, thresholds, host_id=host_id)[0]


def inspect_file(
    path: Path, thresholds: Thresholds, *, host_id: str = "local"
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """:func:`check_file`, and the file's completeness record (``qa/ledger.py``; None for a
    file whose name is not a data file's)."""
    t0 = time.perf_counter()
    try:
        info = parse_file_name(path.name)
    except ValueError as exc:
        f = Finding("file_name", FAIL, str(exc))
        return _report(path, None, [f], {}, None, host_id, t0), None
    spec = SPECS.get(info.data_type)
    if spec is None:
        f = Finding("file_name", FAIL, f"no checks for data type {info.data_type!r}")
        return _report(path, info, [f], {}, None, host_id, t0), None
    adapter = _adapter(info.exchange)
    contiguous = adapter is not None and spec.ids_contiguous(adapter)
    ctx = Context(info=info, thresholds=thresholds, ids_contiguous=contiguous)
    raw = raw_twin(path)
    raw_file = raw if _is_real_file(raw) else None
    findings: list[Finding] = []
    stats: dict[str, Any] = {}
    summary: RawSummary | None = None
    nb: ledger.Neighbours | None = None
    facts = ledger.ParsedFacts()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qa-raw")
    try:
        fut = pool.submit(_raw_side, path, raw_file, info, spec, adapter, thresholds)
        parsed_rows, df = _parsed_checks(path, spec, ctx, findings, stats)
        file_check = FILE_CHECKS.get(info.data_type)
        if file_check is not None and parsed_rows is not None:
            findings.extend(file_check(path, raw_file, info))
        summary, counted, nb = fut.result()
        findings.extend(check_raw(summary, parsed_rows, ctx, counted=counted))
        findings.extend(check_frames(summary))
        facts = ledger.parsed_facts(df, info.data_type)
    except Exception as exc:  # a crash in one file's checks must not stop the run
        log.exception("qa.check_crashed", file=str(path))
        findings.append(Finding("qa", FAIL, f"QA crashed: {type(exc).__name__}: {exc}"))
    finally:
        pool.shutdown(wait=True)
    report = _report(path, info, findings, stats, raw_file, host_id, t0)
    if nb is None:
        return report, ledger.error_record(info, host_id, report["status"], "QA crashed")
    try:
        record = ledger.build_record(
            info,
            summary,
            facts,
            nb,
            host=host_id,
            qa_status=report["status"],
            raw_file=raw_file.name if raw_file else None,
            contiguous=contiguous,
            tolerance_s=thresholds.hour_tolerance_s,
        )
    except Exception as exc:  # the ledger must not cost the report
        log.exception("qa.ledger_crashed", file=str(path))
        record = ledger.error_record(info, host_id, report["status"], f"{type(exc).__name__}")
    return report, record


def _parsed_checks(
    path: Path, spec: TypeSpec, ctx: Context, findings: list[Finding], stats: dict[str, Any]
) -> tuple[int | None, pl.DataFrame | None]:
    """Header, gzip and row checks of the parsed file; its row count and frame (None when
    it could not be read)."""
    try:
        header = reader.read_header(path)
        expected = ",".join(spec.columns)
        if header != expected:
            findings.append(
                Finding(
                    "header",
                    FAIL,
                    f"wrong header: {header[:200]!r}",
                    {"expected": expected, "got": header[:1000]},
                )
            )
            return None, None
        findings.append(Finding("header", OK, "header as expected"))
        data = reader.read_parsed(path, spec)
        more, got = check_frame(spec, data, ctx)
        findings.extend(more)
        stats.update(got)
        return int(got.get("rows", 0)), data.df
    except reader.UnreadableFileError as exc:
        findings.append(Finding("gzip", FAIL, str(exc)))
        return None, None


def _report(
    path: Path,
    info: FileInfo | None,
    findings: list[Finding],
    stats: dict[str, Any],
    raw_file: Path | None,
    host_id: str,
    t0: float,
) -> dict[str, Any]:
    status = worst(f.severity for f in findings)
    bad = [f for f in findings if f.severity != OK]
    bad.sort(key=lambda f: 0 if f.severity == FAIL else 1)
    summary = "; ".join(f"{f.check}: {f.message}" for f in bad) or (
        f"{stats.get('rows', 0)} rows, all checks passed"
    )
    return {
        "qa_version": REPORT_VERSION,
        "file": path.name,
        "path": str(path),
        "raw_file": raw_file.name if raw_file else None,
        "host": host_id,
        "exchange": info.exchange if info else None,
        "symbol": info.symbol if info else None,
        "data_type": info.data_type if info else None,
        "status": status,
        "summary": summary,
        "rows": stats.get("rows"),
        "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - t0, 4),
        "findings": [f.as_dict() for f in findings],
        "stats": stats.get("describe", {}),
    }


def write_report(path: Path, report: dict[str, Any]) -> Path:
    """Write ``report`` next to ``path`` atomically (never through a symlink); returns the
    report's path."""
    return ledger.write_json(report_path(path), report)


def write_record(path: Path, record: dict[str, Any]) -> Path:
    """Write the completeness record of ``path`` (``{stream}/completeness/{day}/``), like
    the report; its directories are made as needed, never through a symlink."""
    out = completeness_path(path)
    ledger.make_dirs(out.parent, stream=path.parent.parent.parent)
    return ledger.write_json(out, record)


# --- finding files -----------------------------------------------------------------------


class PathOutsideDataDirError(ValueError):
    """A ``--path`` that is not inside the data directory (QA never writes outside it)."""


def check_paths(data_dir: Path, paths: Iterable[Path]) -> list[Path]:
    """The given files/directories, resolved; raises PathOutsideDataDirError naming the first
    one that does not lie inside ``data_dir`` (after resolving every symlink)."""
    root = Path(os.path.realpath(data_dir))
    out: list[Path] = []
    for p in paths:
        real = Path(os.path.realpath(p))
        if not real.is_relative_to(root):
            raise PathOutsideDataDirError(
                f"--path {str(p)!r} is outside the data dir {str(data_dir)!r}"
                + (f" (it leads to {str(real)!r})" if real != Path(os.path.abspath(p)) else "")
            )
        out.append(real)
    return out


def _entries(path: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []


class _Walk:
    """Finds parsed files without following symlinks; counts the symlinks it skipped."""

    def __init__(self) -> None:
        self.skipped: list[str] = []

    def dirs(self, path: str) -> Iterator[os.DirEntry[str]]:
        for e in _entries(path):
            if e.name.startswith("."):
                continue
            if e.is_symlink():
                self.skipped.append(e.path)
            elif e.is_dir(follow_symlinks=False):
                yield e

    def files(self, path: str) -> Iterator[Path]:
        for e in _entries(path):
            if not e.name.endswith(PARSED_SUFFIX) or e.name.startswith("."):
                continue
            if e.is_symlink():
                self.skipped.append(e.path)
            elif e.is_file(follow_symlinks=False):
                yield Path(e.path)

    def layout(self, root: str) -> Iterator[Path]:
        """``{exchange}/{symbol}/{data_type}/parsed/{day}/*.csv.gz`` under ``root``."""
        for ex in self.dirs(root):
            for sym in self.dirs(ex.path):
                for dt in self.dirs(sym.path):
                    for kind in self.dirs(dt.path):
                        if kind.name == "parsed":
                            for day in self.dirs(kind.path):
                                yield from self.files(day.path)

    def tree(self, root: str) -> Iterator[Path]:
        """Every parsed file below ``root``, at any depth."""
        yield from self.files(root)
        for d in self.dirs(root):
            yield from self.tree(d.path)


def iter_parsed_files(data_dir: Path, paths: Iterable[Path] = ()) -> Iterator[Path]:
    """Closed parsed files under ``data_dir`` (or the given files/directories, which must be
    inside it), sorted. Symlinks below the data directory are skipped, never followed."""
    found: set[Path] = set()
    walk = _Walk()
    roots = check_paths(data_dir, paths)
    if not roots:
        found.update(walk.layout(os.path.realpath(data_dir)))
    for p in roots:
        if p.is_dir():
            found.update(walk.tree(str(p)))
        elif p.name.endswith(PARSED_SUFFIX) and p.is_file():
            found.add(p)
    if walk.skipped:
        log.warning(
            "qa.symlinks_skipped",
            count=len(walk.skipped),
            first=walk.skipped[0],
            reason="symlinks below the data dir are never followed",
        )
    yield from sorted(found)


def needs_check(path: Path, *, since_s: float | None, now_s: float, force: bool = False) -> bool:
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return False
    if since_s is not None and mtime < now_s - since_s:
        return False
    if force:
        return True
    try:
        if report_path(path).stat().st_mtime < mtime:
            return True
    except FileNotFoundError:
        return True
    try:
        parse_file_name(path.name)
    except ValueError:
        return False  # no completeness record is ever written for it
    return not completeness_path(path).exists()


# --- one run -----------------------------------------------------------------------------


@dataclass
class RunResult:
    checked: int = 0
    ok: int = 0
    warn: int = 0
    fail: int = 0
    skipped_locked: bool = False

    def add(self, status: str) -> None:
        self.checked += 1
        if status == OK:
            self.ok += 1
        elif status == WARN:
            self.warn += 1
        else:
            self.fail += 1


def run_lock(data_dir: Path) -> AbstractContextManager[None]:
    """The QA run lock, ``{data_dir}/.qa/run.lock`` (raises LockBusyError when held)."""
    return hold_lock(qa_lock_path(data_dir))


def alert_for(report: dict[str, Any], host_id: str) -> Alert:
    """The alert of one file's report: warning/error while bad, a resolve once ok."""
    ex, sym, dt = report.get("exchange"), report.get("symbol"), report.get("data_type")
    key = f"qa:{ex}:{sym}:{dt}" if ex else f"qa:file:{report['file']}"
    status = report["status"]
    fields = {
        "host": host_id,
        "exchange": str(ex),
        "symbol": str(sym),
        "data_type": str(dt),
        "file": report["file"],
    }
    if status == OK:
        return Alert("qa", "info", f"QA ok again: {ex} {sym} {dt}", key, fields, resolve=True)
    fields["failed"] = report["summary"][:300]
    severity = "error" if status == FAIL else "warning"
    return Alert("qa", severity, f"QA {status}: {ex} {sym} {dt}", key, fields)


def run_once(
    settings: QASettings,
    *,
    paths: Iterable[Path] = (),
    since_s: float | None = None,
    force: bool = False,
    stop: threading.Event | None = None,
) -> RunResult:
    """Check every file that needs it, under the run lock. Raises LockBusyError."""
    result = RunResult()
    with run_lock(settings.data_dir):
        now = time.time()
        todo = [
            p
            for p in iter_parsed_files(settings.data_dir, paths)
            if needs_check(p, since_s=since_s, now_s=now, force=force)
        ]
        log.info("qa.run_started", files=len(todo), data_dir=str(settings.data_dir))
        for path in todo:
            if stop is not None and stop.is_set():
                log.info("qa.run_stopped", remaining=len(todo) - result.checked)
                break
            report, record = inspect_file(path, settings.thresholds, host_id=settings.host_id)
            try:
                write_report(path, report)
                if record is not None:
                    write_record(path, record)
            except OSError as exc:
                log.error("qa.report_not_written", file=str(path), error=str(exc))
            result.add(report["status"])
            level = "info" if report["status"] == OK else "warning"
            getattr(log, level)(
                "qa.file",
                file=report["file"],
                status=report["status"],
                rows=report["rows"],
                seconds=report["duration_s"],
                summary=report["summary"][:500],
            )
            send_alert(alert_for(report, settings.host_id))
        log.info(
            "qa.run_done",
            checked=result.checked,
            ok=result.ok,
            warn=result.warn,
            fail=result.fail,
        )
    return result
