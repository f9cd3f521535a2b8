"""QA runs: find closed parsed files without a (fresh) report, check each, write reports, alert.

Each file is checked on its own: an unreadable file or a crash inside a check becomes that
file's ``fail`` report with the reason, and the run goes on with the next file. A run holds
an exclusive lock file so that a manual run and the scheduled one never overlap.

Symbolic links are never followed below the data directory (as in the S3 sync's scan): a
symlinked directory or file is skipped and counted, so QA never reads from, nor writes a
report into, a place outside the data directory.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import structlog

from collector.common.alerts import Alert, send_alert
from collector.common.layout import (
    PARSED_SUFFIX,
    FileInfo,
    parse_file_name,
    qa_lock_path,
    raw_twin,
    report_path,
)
from collector.common.locks import hold_lock
from collector.exchanges import ADAPTERS
from collector.exchanges.base import ExchangeAdapter
from qa import checks, l3check, reader
from qa.checks import FAIL, OK, WARN, Context, Finding, RawSummary, TypeSpec
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
    path: Path, info: FileInfo, spec: TypeSpec, adapter: ExchangeAdapter | None, *, count: bool
) -> tuple[RawSummary, bool]:
    """Summarize the raw file; the bool says whether records were counted."""
    parse = adapter.parse if adapter is not None and count else None
    record_type = spec.raw_record_type if parse is not None else None
    lines = reader.iter_lines(path)
    summary: RawSummary
    try:
        summary = checks.summarize_raw(
            lines, symbol=info.symbol, parse=parse, record_type=record_type
        )
    except (OSError, EOFError) as exc:
        # A truncated raw file: what was read is still a summary, but counts are partial.
        log.warning("qa.raw_unreadable", file=str(path), error=str(exc))
        summary = RawSummary(bad_lines=1)
        return summary, False
    return summary, record_type is not None


def check_file(path: Path, thresholds: Thresholds, *, host_id: str = "local") -> dict[str, Any]:
    """Every check of one closed parsed file → its report (a JSON-able dict). Never raises
    for a bad file: unreadable files and crashing checks become ``fail`` findings."""
    t0 = time.perf_counter()
    findings: list[Finding] = []
    stats: dict[str, Any] = {}
    raw_file: Path | None = None
    try:
        info = parse_file_name(path.name)
    except ValueError as exc:
        return _report(path, None, [Finding("file_name", FAIL, str(exc))], {}, None, host_id, t0)
    spec = checks.SPECS.get(info.data_type)
    if spec is None:
        f = Finding("file_name", FAIL, f"no checks for data type {info.data_type!r}")
        return _report(path, info, [f], {}, None, host_id, t0)
    adapter = _adapter(info.exchange)
    contiguous = adapter is not None and spec.ids_contiguous(adapter)
    ctx = Context(info=info, thresholds=thresholds, ids_contiguous=contiguous)
    raw = raw_twin(path)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qa-raw")
    try:
        fut = None
        if _is_real_file(raw):
            raw_file = raw
            count = thresholds.compare_raw and spec.raw_record_type is not None
            fut = pool.submit(scan_raw, raw, info, spec, adapter, count=count)
        parsed_rows: int | None = None
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
            else:
                findings.append(Finding("header", OK, "header as expected"))
                data = reader.read_parsed(path, spec)
                more, stats = checks.check_frame(spec, data, ctx)
                findings.extend(more)
                parsed_rows = int(stats.get("rows", 0))
        except reader.UnreadableFileError as exc:
            findings.append(Finding("gzip", FAIL, str(exc)))
        file_check = FILE_CHECKS.get(info.data_type)
        if file_check is not None and parsed_rows is not None:
            findings.extend(file_check(path, raw_file, info))
        if fut is not None:
            summary, counted = fut.result()
            findings.extend(checks.check_raw(summary, parsed_rows, ctx, counted=counted))
        else:
            findings.extend(checks.check_raw(None, parsed_rows, ctx, counted=False))
    except Exception as exc:  # a crash in one file's checks must not stop the run
        log.exception("qa.check_crashed", file=str(path))
        findings.append(Finding("qa", FAIL, f"QA crashed: {type(exc).__name__}: {exc}"))
    finally:
        pool.shutdown(wait=True)
    return _report(path, info, findings, stats, raw_file, host_id, t0)


def _report(
    path: Path,
    info: FileInfo | None,
    findings: list[Finding],
    stats: dict[str, Any],
    raw_file: Path | None,
    host_id: str,
    t0: float,
) -> dict[str, Any]:
    status = checks.worst(f.severity for f in findings)
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
    """Write ``report`` next to ``path`` atomically; returns the report's path.

    The temporary file is created exclusively and never through a symlink, and the rename
    replaces a symlink named like the report instead of writing where it points.
    """
    out = report_path(path)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    body = orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    try:
        os.unlink(tmp)  # a leftover of a killed run with our pid (or a planted symlink)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(body)
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return out


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
        return report_path(path).stat().st_mtime < mtime
    except FileNotFoundError:
        return True


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
            report = check_file(path, settings.thresholds, host_id=settings.host_id)
            try:
                write_report(path, report)
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
