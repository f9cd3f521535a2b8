"""One sync run (``python -m ops.sync run``; ``python -m ops.periodic sync`` repeats it).

A run: scan closed files → compare with the ledger (no S3 call for unchanged files) →
HEAD-check what must be checked (every ledger row with ``--verify``; otherwise only files about
to be deleted locally) → upload new/changed/repaired files concurrently, writing ledger rows in
batches → delete local files that are delivered, confirmed and older than the retention age →
delete the previous versions ``collector rebuild --in-place`` kept, once their new version is
in the ledger (ops/sync/replaced.py).

A refused file does not stop the others: an error that hits every file the same way
(credentials, the bucket) aborts the uploads at once, ``AccessDenied`` (which a bucket policy
can scope to one key) only after ``_DENIED_ABORT`` files in a row were refused. Either way the
files whose delivery a HEAD confirmed in this run are still pruned by retention, so one
refused upload cannot fill the disk.

A run holds ``{data_dir}/.sync/sync.lock`` (flock) from start to end, so the scheduled run and
a manual one never overlap. Without a bucket there is nothing to do (:func:`disabled_reason`).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import structlog

from ops.periodic import StopFlag
from ops.sync import s3
from ops.sync.ledger import Delivery, Ledger, read_delivered
from ops.sync.progress import Progress
from ops.sync.replaced import has_replaced, prune_replaced
from ops.sync.scan import LocalFile, scan_closed
from ops.sync.settings import S3Settings

log = structlog.get_logger()

_BATCH_ROWS = 256  # ledger rows per transaction
_BATCH_S = 0.25  # ... or this often, so a killed run re-uploads at most ~0.25 s of work
# AccessDenied on this many files in a row (no success between them): every file is refused.
_DENIED_ABORT = 8
NO_BUCKET = "no bucket configured ([sync] bucket is empty)"


@dataclass
class Summary:
    files: int = 0  # closed files found
    young: int = 0  # closed files left for later (changed within min_age_s)
    unchanged: int = 0  # already delivered, nothing to do
    uploaded: int = 0
    bytes: int = 0  # bytes uploaded
    checked: int = 0  # objects HEAD-checked against the ledger
    repaired: int = 0  # objects missing or different in S3, uploaded again
    deleted: int = 0  # local files removed by retention
    deleted_bytes: int = 0
    replaced_pruned: int = 0  # previous versions kept by `collector rebuild --in-place`
    failures: int = 0
    lost: int = 0  # in the ledger, gone from S3 and from the local disk
    seconds: float = 0.0
    aborted: str = ""  # why the run stopped early ("" = it did not)
    failed_paths: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Plan:
    upload: list[LocalFile]
    delivered: dict[str, LocalFile]  # rel → file that the ledger shows delivered unchanged
    retain: list[LocalFile]  # delivered and old enough to delete once confirmed
    touched: list[Delivery]  # ledger rows whose mtime changed but content did not


def disabled_reason(settings: S3Settings) -> str | None:
    """Why a sync has nothing to do with these settings (no bucket), or None."""
    return None if settings.bucket else NO_BUCKET


def _alert(severity: str, title: str, key: str, fields: dict[str, str]) -> None:
    # imported on first use: the alert sinks pull in httpx, which a no-change run never needs
    from collector.common.alerts import Alert, send_alert

    send_alert(Alert(source="sync", severity=severity, title=title, key=key, fields=fields))


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1024 * 1024):
            h.update(chunk)
    return h.hexdigest()


def _plan(settings: S3Settings, files: list[LocalFile], rows: dict[str, Delivery]) -> _Plan:
    now = time.time()
    keep_all = settings.retention_days < 0
    max_age_s = settings.retention_days * 86400.0
    upload: list[LocalFile] = []
    delivered: dict[str, LocalFile] = {}
    retain: list[LocalFile] = []
    touched: list[Delivery] = []
    for f in files:
        row = rows.get(f.rel)
        same_target = (
            row is not None and row.bucket == settings.bucket and row.key == settings.key_for(f.rel)
        )
        if row is None or not same_target or row.size != f.size:
            upload.append(f)
            continue
        if row.mtime_ns != f.mtime_ns:
            # touched (e.g. a QA report rewritten identically): hash before deciding
            if _sha256_file(f.path) != row.sha256:
                upload.append(f)
                continue
            row = row._replace(mtime_ns=f.mtime_ns)
            touched.append(row)
        delivered[f.rel] = f
        if not keep_all and now - f.mtime_ns / 1e9 > max_age_s:
            retain.append(f)
    return _Plan(upload=upload, delivered=delivered, retain=retain, touched=touched)


class _Batch:
    """Ledger rows of finished uploads, written every ``_BATCH_ROWS`` rows or ``_BATCH_S``."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.rows: list[Delivery] = []
        self.last_flush = time.monotonic()

    def add(self, row: Delivery) -> None:
        self.rows.append(row)

    def flush_if_due(self) -> None:
        if self.rows and (
            len(self.rows) >= _BATCH_ROWS or time.monotonic() - self.last_flush >= _BATCH_S
        ):
            self.flush()

    def flush(self) -> None:
        self.ledger.put_many(self.rows)
        self.rows = []
        self.last_flush = time.monotonic()


class _Run:
    """State of one run (client created on first need, ledger batching, summary)."""

    def __init__(self, settings: S3Settings, ledger: Ledger, stop: StopFlag, bar: bool) -> None:
        self.s = settings
        self.ledger = ledger
        self.stop = stop
        self.bar = bar
        self.summary = Summary()
        self._client: Any = None
        self._denied_in_a_row = 0

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = s3.make_client(self.s)
        return self._client

    def _fail(self, what: str, rel: str, exc: BaseException) -> None:
        self.summary.failures += 1
        if len(self.summary.failed_paths) < 20:
            self.summary.failed_paths.append(rel)
        log.warning(f"sync.{what}_failed", path=rel, error=s3.error_code(exc), detail=str(exc))
        if not s3.is_fatal(exc) or self.summary.aborted:
            return
        if s3.is_per_key(exc):
            self._denied_in_a_row += 1
            if self._denied_in_a_row < _DENIED_ABORT:
                return
        self.summary.aborted = s3.error_code(exc)
        log.error("sync.aborted", error=s3.error_code(exc), detail=str(exc))

    def _succeeded(self) -> None:
        self._denied_in_a_row = 0

    # --- HEAD checks -------------------------------------------------------------------

    def check(
        self, rows: list[Delivery], local: dict[str, LocalFile], pool: ThreadPoolExecutor
    ) -> tuple[set[str], list[LocalFile]]:
        """HEAD every row; returns (confirmed paths, local files to upload again)."""
        confirmed: set[str] = set()
        again: list[LocalFile] = []
        verified_rows: list[Delivery] = []
        forget: list[str] = []
        futures = {pool.submit(s3.head, self.client, r.bucket, r.key): r for r in rows}
        for fut in _as_completed(futures):
            row = futures[fut]
            try:
                h = fut.result()
            except Exception as exc:  # noqa: BLE001 - counted, logged, retried next run
                self._fail("check", row.path, exc)
                continue
            self.summary.checked += 1
            self._succeeded()
            if (
                h is not None
                and h.size == row.size
                and s3.checksum_matches(row.s3_checksum, h.checksum)
            ):
                confirmed.add(row.path)
                verified_rows.append(row._replace(verified_at=time.time()))
                continue
            log.warning(
                "sync.remote_mismatch",
                path=row.path,
                key=row.key,
                remote_size=None if h is None else h.size,
                remote_checksum=None if h is None else h.checksum,
                size=row.size,
                checksum=row.s3_checksum,
            )
            f = local.get(row.path)
            if f is not None:
                forget.append(row.path)
                again.append(f)
            elif not (self.s.data_dir / row.path).exists():
                # deleted locally (retention) and now missing or different in S3: only a
                # human can help (versioning / the other copy)
                self.summary.lost += 1
                self.summary.failures += 1
                log.error("sync.lost", path=row.path, key=row.key)
                _alert(
                    "critical",
                    "file gone from S3 and from local disk",
                    f"sync:lost:{row.key}",
                    {"bucket": row.bucket, "key": row.key, "path": row.path},
                )
            # else: the local file changed since; it is already in this run's uploads
        self.ledger.put_many(verified_rows)
        self.ledger.forget(forget)
        return confirmed, again

    # --- uploads -----------------------------------------------------------------------

    def _pending(self, upload_id: str, started: bool, key: str) -> None:
        if started:
            self.ledger.add_pending(upload_id, self.s.bucket, key, time.time())
        else:
            self.ledger.drop_pending(upload_id)

    def abort_leftovers(self) -> None:
        for upload_id, bucket, key in self.ledger.pending():
            try:
                self.client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            except Exception as exc:  # noqa: BLE001 - NoSuchUpload etc.: nothing left to abort
                log.info("sync.abort_leftover", key=key, error=s3.error_code(exc))
            self.ledger.drop_pending(upload_id)

    def upload(self, files: list[LocalFile], pool: ThreadPoolExecutor) -> None:
        if not files:
            return
        files = sorted(files, key=lambda f: -f.size)  # big first: they overlap the small ones
        progress = Progress(len(files), sum(f.size for f in files), bar=self.bar)
        batch = _Batch(self.ledger)
        inflight: dict[Future[s3.Uploaded], LocalFile] = {}
        todo = iter(files)
        with ThreadPoolExecutor(self.s.concurrency, thread_name_prefix="sync-part") as parts:
            _ = self.client  # create it once, before the threads race for it
            exhausted = False
            while True:
                if not exhausted:
                    exhausted = self._submit(todo, inflight, pool, parts)
                if not inflight:
                    break
                done, _ = wait(inflight, timeout=_BATCH_S, return_when=FIRST_COMPLETED)
                for fut in done:
                    row = self._delivered(fut, inflight.pop(fut), progress)
                    if row is not None:
                        batch.add(row)
                batch.flush_if_due()
            batch.flush()
        progress.close()
        if self.stop.is_set() and not exhausted:
            self.summary.aborted = self.summary.aborted or "stopped"

    def _submit(
        self,
        todo: Iterator[LocalFile],
        inflight: dict[Future[s3.Uploaded], LocalFile],
        pool: ThreadPoolExecutor,
        parts: ThreadPoolExecutor,
    ) -> bool:
        """Keep ``2 × concurrency`` uploads in flight (none once stopped or aborted); True
        when ``todo`` is exhausted."""
        while (
            len(inflight) < 2 * self.s.concurrency
            and not self.stop.is_set()
            and not self.summary.aborted
        ):
            f = next(todo, None)
            if f is None:
                return True
            inflight[pool.submit(self._upload_one, f, parts)] = f
        return False

    def _upload_one(self, f: LocalFile, parts: ThreadPoolExecutor) -> s3.Uploaded:
        key = self.s.key_for(f.rel)
        return s3.upload_file(
            self.client,
            self.s,
            f.path,
            key,
            part_pool=parts,
            on_pending=lambda uid, started: self._pending(uid, started, key),
        )

    def _delivered(
        self, fut: Future[s3.Uploaded], f: LocalFile, progress: Progress
    ) -> Delivery | None:
        """The ledger row of a finished upload, or None when it failed (counted, logged)."""
        try:
            u = fut.result()
        except FileNotFoundError:
            log.warning("sync.vanished", path=f.rel)
            progress.advance(0, failed=True)
            return None
        except Exception as exc:  # noqa: BLE001 - counted, logged, retried next run
            self._fail("upload", f.rel, exc)
            progress.advance(0, failed=True)
            return None
        now = time.time()
        self._succeeded()
        self.summary.uploaded += 1
        self.summary.bytes += u.size
        progress.advance(u.size)
        return Delivery(
            path=f.rel,
            size=u.size,
            mtime_ns=u.mtime_ns,
            sha256=u.sha256,
            s3_checksum=u.s3_checksum,
            bucket=self.s.bucket,
            key=self.s.key_for(f.rel),
            delivered_at=now,
            verified_at=now,
        )

    # --- retention ---------------------------------------------------------------------

    def delete(self, files: list[LocalFile]) -> None:
        dirs: set[Path] = set()
        for f in files:
            try:
                st = os.stat(f.path)
                if st.st_size != f.size or st.st_mtime_ns != f.mtime_ns:
                    continue  # changed since the scan: not the delivered version any more
                os.unlink(f.path)
            except FileNotFoundError:
                continue
            self.summary.deleted += 1
            self.summary.deleted_bytes += f.size
            dirs.add(Path(f.path).parent)
        for d in sorted(dirs):
            try:
                d.rmdir()  # only succeeds once the date directory is empty
            except OSError:
                pass


def _as_completed(futures: dict[Future[Any], Any]) -> Iterator[Future[Any]]:
    pending = set(futures)
    while pending:
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        yield from done


def run_once(
    settings: S3Settings,
    *,
    verify: bool = False,
    stop: StopFlag | None = None,
    bar: bool = False,
) -> Summary:
    """One sync run (the caller holds the lock). Never raises for per-file S3 errors."""
    t0 = time.monotonic()
    stop = stop or StopFlag()
    scanned = scan_closed(settings.data_dir, now_ns=time.time_ns(), min_age_s=settings.min_age_s)
    with Ledger(settings.ledger_path) as ledger:
        rows = ledger.all()
        plan = _plan(settings, scanned.files, rows)
        ledger.put_many(plan.touched)
        run = _Run(settings, ledger, stop, bar)
        sm = run.summary
        sm.files = len(scanned.files)
        sm.young = scanned.young
        sm.unchanged = len(plan.delivered)
        upload = list(plan.upload)
        retain = plan.retain
        needs_s3 = bool(upload or retain or verify or ledger.pending())
        if needs_s3:
            with ThreadPoolExecutor(settings.concurrency, thread_name_prefix="sync") as pool:
                run.abort_leftovers()
                if verify:
                    to_check = [
                        r
                        for r in rows.values()
                        if r.bucket == settings.bucket and r.key.startswith(settings.key_prefix)
                    ]
                else:
                    to_check = [rows[f.rel] for f in retain]
                local = {f.rel: f for f in scanned.files if f.rel in plan.delivered}
                confirmed, again = run.check(to_check, local, pool) if to_check else (set(), [])
                sm.repaired = len(again)
                sm.unchanged -= len(again)
                upload.extend(again)
                run.upload(upload, pool)
                if not stop.is_set():
                    # also after an abort: what a HEAD confirmed in this run is delivered,
                    # whatever happened to the other files
                    run.delete([f for f in retain if f.rel in confirmed])
        if has_replaced(settings.data_dir):  # once the new version is in the ledger
            sm.replaced_pruned = prune_replaced(settings, ledger.all())
    sm.seconds = round(time.monotonic() - t0, 3)
    fields = asdict(sm)
    if not sm.failed_paths:
        del fields["failed_paths"]
    (log.warning if sm.failures or sm.aborted else log.info)("sync.summary", **fields)
    if sm.failures:
        _alert(
            "error",
            f"S3 sync: {sm.failures} failure(s)",
            f"sync:failures:{settings.host_id}",
            {"host": settings.host_id, "failures": str(sm.failures)},
        )
    return sm


def plan_dry_run(settings: S3Settings) -> tuple[list[LocalFile], list[LocalFile], int]:
    """What a run would do, with no S3 call and nothing written: (uploads, deletions, young)."""
    scanned = scan_closed(settings.data_dir, now_ns=time.time_ns(), min_age_s=settings.min_age_s)
    rows = read_delivered(settings.ledger_path)
    plan = _plan(settings, scanned.files, rows)
    return plan.upload, plan.retain, scanned.young
