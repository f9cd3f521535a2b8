"""``python -m collector rebuild --in-place --yes RAW...``: replace a data dir's parsed files.

For each raw file, the rebuilt parsed file (see collector/rebuild.py) is built under
``{data_dir}/.rebuild/work/`` and then renamed over the parsed file of the same stem, one
atomic ``rename`` per file. Before that, for each file replaced:

- the previous version is kept as ``{data_dir}/.rebuild/prev/{its path}`` (a hard link: no
  copy; the first version replaced is kept when a file is rebuilt twice before a sync), with
  ``{...}.replaced.json`` naming the new version's SHA-256 and size;
- QA's and sync's run locks are held meanwhile (waiting up to a minute for a run in
  progress), so neither reads a file while it is replaced;
- its QA report moves beside it (``.rebuild/prev/{...}.qa.json``), so the next ``qa run``
  checks the new version (``needs_check``: no report);
- the new file has a new mtime and size or content, so the next ``ops.sync run`` uploads it
  and records it in the ledger; once the ledger holds that SHA-256 for the file's key, sync
  deletes the kept previous version (ops/sync/run.py, ``prune_replaced``).

Dot directories are never scanned by QA or sync, and never read by a collector. Closed files
only: a raw ``.part`` (the hour a running collector writes, or a crash leftover the next
start finalises) is refused when named and left alone in a directory, and so is a raw file
whose parsed twin is still a ``.part`` (an hour being closed right now). The stream lock
(collector/common/locks.py) says which of the two a ``.part`` is. Without ``--yes`` nothing
is written: the line says what would be replaced. An hour whose rebuild has no row replaces
the old file with a header-only file (so the delivered copy is replaced too, and QA flags
it), never with nothing.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import orjson

from collector import rebuild as rb
from collector.common import layout
from collector.common.config import check_path_value, ensure_writable_dir
from collector.common.locks import LockBusyError, hold_lock
from collector.model import COLUMNS


def work_dir(data_dir: Path) -> Path:
    return layout.rebuild_dir(data_dir) / "work"


def collector_pid(stream: rb.Stream) -> str | None:
    """The pid of the collector writing the stream now, or None (its lock is free)."""
    lock = layout.lock_path(stream.dir)
    if not lock.exists():
        return None
    try:
        with hold_lock(lock):
            return None
    except LockBusyError as exc:
        return exc.holder


def run(raw: Sequence[Path], data_dir: str | None, config: Path | None, *, confirmed: bool) -> str:
    t0 = time.monotonic()
    named_parts = [p for p in raw if p.name.endswith(layout.RAW_SUFFIX + layout.PART)]
    stream, found = rb.resolve_inputs(raw)
    root = stream.root
    if data_dir is not None and not _same(check_path_value(data_dir, what="--data_dir"), root):
        raise rb.RebuildError(
            f"--in-place replaces the parsed files of the data dir that holds RAW ({root}): "
            f"--data_dir {data_dir} is another one (leave it out)"
        )
    pid = collector_pid(stream)
    if named_parts:
        who = f"the hour collector pid {pid} is writing" if pid else "a crash leftover"
        raise rb.RebuildError(
            f"{named_parts[0]}: --in-place rebuilds closed files only ({who}"
            + ("" if pid else "; the collector's next start finalises it")
            + ")"
        )
    wanted, busy = [], 0
    for p in found:
        if p.name.endswith(layout.PART) or layout.part_path(root / stream.parsed_rel(p)).exists():
            busy += 1  # still being written (or never finalised): not ours to touch
        else:
            wanted.append(p)
    if not wanted:
        raise rb.RebuildError(f"{stream.label}: no closed raw file to rebuild in place")
    base = rb.base_settings(config, stream, root)
    max_line = rb.max_line_of(base)
    plan = rb.plan(stream, wanted, base, max_line)  # every check before anything is created
    if not confirmed:
        raise rb.RebuildError(
            f"--in-place would replace the parsed files of {len(wanted)} raw file(s) of "
            f"{stream.label} under {root} (previous versions kept in "
            f"{layout.replaced_dir(root)} until the next sync); add --yes to do it"
        )
    ensure_writable_dir(work_dir(root))
    with quiet_data_dir(root):
        result = _replace_all(stream, plan, wanted, max_line)
    line = rb.summary(stream, result, root, time.monotonic() - t0)
    line = line.replace(" parsed file(s)", " parsed file(s) replaced", 1)
    if busy:
        line += f"; {busy} raw file(s) still open left alone" + (
            f" (collector pid {pid} is running)" if pid else ""
        )
    return line


# QA or sync reading a file while it is replaced could record the old content under the new
# file's name and mtime (a report that hides the new version, a ledger row that skips it).
LOCK_WAIT_S = 60.0


@contextlib.contextmanager
def quiet_data_dir(root: Path, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """Hold QA's and sync's run locks of the data dir (their runs then skip or wait), waiting
    up to ``wait_s`` for a run in progress; RebuildError naming it after that."""
    with contextlib.ExitStack() as stack:
        for what, path in (
            ("a QA run", layout.qa_lock_path(root)),
            ("an S3 sync run", layout.sync_lock_path(root)),
        ):
            deadline = time.monotonic() + wait_s
            while True:
                try:
                    stack.enter_context(hold_lock(path))
                    break
                except LockBusyError as exc:
                    if time.monotonic() >= deadline:
                        raise rb.RebuildError(
                            f"{what} (pid {exc.holder}) is using {root}: nothing was "
                            "replaced; run the rebuild again once it has finished"
                        ) from None
                    time.sleep(0.5)
        yield


def _replace_all(
    stream: rb.Stream, plan: rb.Plan, wanted: Sequence[Path], max_line: int
) -> rb.Result:
    root = stream.root
    work = work_dir(root)
    target = {p: (root / stream.parsed_rel(p), work / stream.parsed_rel(p)) for p in wanted}
    result, outs = rb.execute(stream, plan, target, max_line)
    header = ",".join(COLUMNS[stream.data_type]) + "\n"
    try:
        for o in outs:
            replace(root, o.work, o.final)
            result.written.append((o.final, o.rows))
        for final in list(result.empty):
            if final.exists():  # the old adapter made rows the new one does not: say so
                empty = work / final.relative_to(root)
                empty.parent.mkdir(parents=True, exist_ok=True)
                empty.write_bytes(gzip.compress(header.encode(), compresslevel=6, mtime=0))
                replace(root, empty, final)
                result.written.append((final, 0))
    finally:
        for o in outs:
            o.work.unlink(missing_ok=True)
        for d in sorted((p for p in work.rglob("*") if p.is_dir()), reverse=True):
            with contextlib.suppress(OSError):
                d.rmdir()  # only the empty ones
    return result


def _same(a: Path, b: Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def replace(root: Path, work: Path, final: Path) -> None:
    """Put ``work`` in place of ``final``, keeping the previous version (module docstring)."""
    rel = final.relative_to(root)
    prev = layout.replaced_dir(root) / rel
    prev.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() and not prev.exists():
        try:
            os.link(final, prev)
        except OSError:  # a file system without hard links: a copy, then
            prev.write_bytes(final.read_bytes())
    manifest = prev.with_name(prev.name + layout.REPLACED_SUFFIX)
    record = {
        "file": rel.as_posix(),
        "sha256": _sha256(work),
        "size": work.stat().st_size,
        "replaced_at": time.time(),
        "had_previous": prev.exists(),
    }
    tmp = manifest.with_name(manifest.name + ".tmp")
    tmp.write_bytes(orjson.dumps(record))
    os.replace(tmp, manifest)
    report, prev_report = layout.report_path(final), layout.report_path(prev)
    if report.exists():
        if prev_report.exists():
            report.unlink()  # the report of a version that was never delivered
        else:
            os.replace(report, prev_report)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(work, final)
    for d in {final.parent, prev.parent}:
        rb.fsync_dir(d)
