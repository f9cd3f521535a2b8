"""The collector's one periodic task: tick, write, fsync, status file, stats line.

One deadline loop instead of a task and a timer per job. On this kind of host a wake-up of
an idle process costs a few hundred µs of CPU by itself, a hop to a worker thread and an
``fsync`` each about a hundred more: a stream's fixed cost is counted in wake-ups and
syscalls, so the loop avoids its own wake-ups wherever a frame's will do:

- the flush is due every ``flush_interval_s``; the first frame received after that (the raw
  writer's ``on_due``) runs the round in the wake-up that brought it: tick the processor (a
  trade held for the sequencer too long is accepted), then write what is queued, one gzip
  member per file. Only a stream that goes quiet with lines waiting (or a held trade) is
  flushed by the loop's own deadline, ``QUIET_AFTER`` of an interval later; a stream with
  nothing waiting does not wake for it at all;
- where the handler allows it (``batch_quiet``: trades), the frames received until the round
  is due wait in the session (``Session.deliver_by``) and are processed together when the
  frame that makes it due comes, or first thing in any wake-up of the loop: a frame handled
  in its own wake-up costs several times what it costs in a batch, and a flush still holds
  every frame received before it;
- a writer whose newest chunk reaches ``collector.writer.BACKLOG_LINES`` lines wakes the
  loop at once, so a burst is written in pieces of bounded size instead of piling up for a
  whole interval (and nothing of it stays in memory afterwards);
- a write of fewer than :data:`INLINE_LINES` lines runs on the event loop (compressing them
  costs less than the hop to a worker thread); a larger one, and every ``fsync`` and close,
  runs in a worker thread, beside the receiving;
- ``fsync`` every ``sync_interval_s`` when something was written since the last one
  (0 = with every write), and always before a file is closed; an open file is closed right
  after its hour ends, frames or not. A busy stream fsyncs in the last flush round before
  that is due (up to ``1.25 × flush_interval_s`` early, never late): no wake-up of its own;
- status.json every ``status_interval_s`` when it changed, else at least every
  ``2 × status_interval_s`` + 5 s (``ops status`` and the silence watch read its age), and
  at once when the connection opens or closes. A busy stream's waits for the next flush
  round when that comes within another interval (the defaults: always), and is written
  right after the round's write: no wake-up of its own, and (for a trade stream whose
  write stays on the event loop) it counts exactly the frames that write put on disk;
- the ``collector.stats`` line every ``stats_interval_s``.

Durability: a write that returned survives ``kill -9`` (the kernel has it); a power loss or
a kernel crash loses at most the last ``sync_interval_s``. A full disk (:class:`DiskWatch`)
keeps what could not be written queued, holds the connection (the outage becomes a gap) and
retries with a growing delay.
"""

from __future__ import annotations

import errno
import math
import shutil
import time
from typing import Any

import trio

from collector.common.alerts import Alert, send_alert
from collector.common.retry import Backoff, BackoffSettings
from collector.common.structloglib import structlog
from collector.files import StreamFiles
from collector.processor import Processor
from collector.session import Session
from collector.settings import CollectorSettings
from collector.status import Stats, write_status
from collector.writer import DiskFullError

log = structlog.get_logger()

# Fewer queued lines than this are compressed and written on the event loop.
INLINE_LINES = 512
# The upkeep wakes this long after an hour ends to close its files.
HOUR_SLACK_S = 0.01
# A stream with lines waiting that brings no frame for this many flush intervals past the
# due time is flushed by the upkeep's own wake-up (any busier one by its next frame).
QUIET_AFTER = 0.25


class DiskWatch:
    """The state of a full disk: one error line per episode, a growing retry delay."""

    def __init__(self, settings: CollectorSettings, stats: Stats, session: Session) -> None:
        self.flush_interval_s = settings.flush_interval_s
        self.backoff = Backoff(
            BackoffSettings(initial_s=settings.flush_interval_s, max_s=60.0, multiplier=2.0)
        )
        self.stats = stats
        self.session = session
        self.data_dir = settings.data_dir
        self.stream = f"{settings.exchange}:{settings.symbol}:{settings.data_type}"
        self.since: float | None = None

    def next_wait_s(self) -> float:
        return self.flush_interval_s if self.since is None else self.backoff.next_delay()

    def full(self, exc: DiskFullError, queued: int) -> None:
        if self.since is not None:
            return
        self.since = time.time()
        self.stats.disk_full = True
        try:
            free = shutil.disk_usage(self.data_dir).free
        except OSError:
            free = None
        error = exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc.errno))
        log.error(
            "disk.full",
            error=error,
            path=str(exc.filename),
            free_bytes=free,
            queued_lines=queued,
            alert=True,
        )
        send_alert(
            Alert(
                source="collector",
                severity="error",
                title=f"disk full: {self.stream} paused (writes retried with backoff)",
                key=f"collector:{self.stream}:disk",
                fields={"stream": self.stream, "error": error, "path": str(exc.filename)},
            )
        )
        # Stop reading until the lines we hold are written: the outage becomes a gap.
        self.session.hold("disk full")

    def ok(self) -> None:
        if self.since is None:
            return
        log.warning("disk.recovered", full_for_s=round(time.time() - self.since, 3))
        send_alert(
            Alert(
                source="collector",
                severity="error",
                title=f"disk writable again: {self.stream} resumed",
                key=f"collector:{self.stream}:disk",
                resolve=True,
            )
        )
        self.since = None
        self.stats.disk_full = False
        self.backoff.reset()
        self.session.release()


class Upkeep:
    """The periodic work of one collector (see the module docstring); :meth:`run` is its
    task, :meth:`backlog` and :meth:`due` the writers' ``on_backlog`` and ``on_due``,
    :meth:`status_soon` the processor's ``on_connection``, :meth:`finish` the last round."""

    def __init__(self, settings: CollectorSettings) -> None:
        self.settings = settings
        self._wake = trio.Event()
        self._backlog = False
        self._status_soon = False
        self._last_status: dict[str, Any] | None = None
        self._status_written = -math.inf  # trio clock

    def backlog(self) -> None:
        """A writer holds a full chunk: write it now (called where lines are added)."""
        self._backlog = True
        self._wake.set()

    def due(self) -> None:
        """A frame came after the flush was due: do the round now, in this wake-up."""
        self._wake.set()

    def status_soon(self) -> None:
        """The connection opened or closed: say so in status.json now, not at the next
        interval (the processor's ``on_connection``)."""
        self._status_soon = True
        self._wake.set()

    async def run(
        self, files: StreamFiles, stats: Stats, processor: Processor, session: Session
    ) -> None:
        s = self.settings
        disk = DiskWatch(s, stats, session)
        heartbeat_s = 2 * s.status_interval_s + 5.0
        now = trio.current_time()
        next_flush = now + s.flush_interval_s
        next_sync = now + s.sync_interval_s
        next_status = now
        next_stats = now + s.stats_interval_s
        status_stale = False
        batch_quiet = processor.batch_quiet
        # The most between two rounds of a busy stream (a round's next is due a flush interval
        # on, run by a frame after that or by the deadline QUIET_AFTER of an interval later).
        between = (1 + QUIET_AFTER) * s.flush_interval_s
        while True:
            # Frames received after next_flush wake us (the raw writer's on_due); our own
            # deadline only covers a stream that has gone quiet with work left, the hour's
            # end, the fsync, the status heartbeat and the stats line.
            # Idle (nothing waiting), the first line to come wakes us to plan its flush.
            wall = time.time() - trio.current_time()  # trio clock -> wall clock
            wake_at = min(next_stats, max(self._status_written + heartbeat_s, next_status))
            busy = files.queued_lines > 0 or processor.wants_tick()
            due_at = wall + next_flush if busy else -math.inf
            files.call_when_due(due_at)
            # (idle, the first frame is delivered at once: its line plans the round)
            session.deliver_by = due_at if batch_quiet and disk.since is None else -math.inf
            round_by = math.inf  # the next round, at the latest
            if disk.since is not None:
                round_by = next_flush  # retrying a full disk
            elif busy:
                round_by = next_flush + QUIET_AFTER * s.flush_interval_s
            wake_at = min(wake_at, round_by)
            if files.unsynced:  # (busy: a round comes first, and fsyncs early; see below)
                wake_at = min(wake_at, next_sync)
            # Frames came since the last status: say so within its interval, or in the next
            # round (right after its write) when that is at most another interval late.
            if status_stale and round_by > next_status + s.status_interval_s:
                wake_at = min(wake_at, next_status)
            if files.has_open_file:  # close it when its hour is over
                wake_at = min(wake_at, (time.time() // 3600 + 1) * 3600 + HOUR_SLACK_S - wall)
            with trio.move_on_at(wake_at):
                await self._wake.wait()
            session.deliver_pending()  # frames that waited for this round, before it
            if self._wake.is_set():
                self._wake = trio.Event()
            backlog, self._backlog = self._backlog, False
            status_soon, self._status_soon = self._status_soon, False
            now = trio.current_time()
            if now >= next_stats:
                log_stats(stats)
                next_stats = now + s.stats_interval_s
            due = now >= next_flush
            # A busy stream's rounds are at most `between` apart: a round fsyncs when the next
            # one could come after the fsync is due, so no wake-up of its own is needed.
            sync = now >= next_sync - (between if due else 0.0)
            if due or sync or (backlog and disk.since is None) or files.hour_ended(time.time()):
                if due:
                    processor.tick(time.time())
                    next_flush = now + disk.next_wait_s()
                if sync:
                    next_sync = now + s.sync_interval_s
                status_stale = status_stale or files.queued_lines > 0
                error = await self.write(files, sync=sync)
                if error is not None:
                    disk.full(error, files.queued_lines)
                    continue
                disk.ok()
            if now >= next_status or status_soon:
                next_status = now + s.status_interval_s  # (a failed write: retried then)
                if self.write_status(files, stats, now, heartbeat_s):
                    status_stale = False

    async def write(self, files: StreamFiles, *, sync: bool) -> DiskFullError | None:
        """Write what is queued (and fsync when ``sync``), close a file whose hour is over;
        on a full disk, what was not written stays queued."""
        queued = files.queued_lines
        sync = sync and (queued > 0 or files.unsynced)
        now_s = time.time()
        hour_ended = files.hour_ended(now_s)
        if queued == 0 and not sync and not hour_ended:
            return None
        fsync_each = self.settings.sync_interval_s == 0
        raw, parsed = files.raw.take(), files.parsed.take()
        if queued < INLINE_LINES and not sync and not fsync_each and not hour_ended:
            raw_left, parsed_left, error = files.write(raw, parsed, now_s, fsync=False)
        else:  # (closing a file fsyncs and renames it: a worker thread's job too)
            raw_left, parsed_left, error = await trio.to_thread.run_sync(
                _write_and_sync, files, raw, parsed, now_s, sync or fsync_each
            )
        files.raw.requeue(raw_left)
        files.parsed.requeue(parsed_left)
        return error

    def write_status(
        self, files: StreamFiles, stats: Stats, now: float, heartbeat_s: float = 0.0
    ) -> bool:
        """Rewrite status.json when it changed, or when the last rewrite is ``heartbeat_s``
        old; False when it was due but could not be written."""
        status = status_of(files, stats)
        same = {k: v for k, v in status.items() if k != "updated_at"}
        if same == self._last_status and now - self._status_written < heartbeat_s:
            return True
        try:
            write_status(files.status_path, status)
        except OSError as exc:  # e.g. a full disk: the data files matter more; retried next time
            if not stats.status_failing:
                log.warning("status.not_written", error=exc.strerror or str(exc))
            stats.status_failing = True
            return False
        stats.status_failing = False
        self._last_status = same
        self._status_written = now
        return True

    async def finish(self, files: StreamFiles, stats: Stats, processor: Processor) -> None:
        """The last tick, write and close (the caller shields and bounds it)."""
        stats.connected = False
        processor.tick(time.time(), final=True)
        error = await self.write(files, sync=True)
        if error is not None:
            log.error(
                "disk.full_at_stop",
                error=error.strerror,
                queued_lines=files.queued_lines,
                alert=True,
            )
        await trio.to_thread.run_sync(files.close)
        self._last_status = None  # written whatever it holds: the last word
        self.write_status(files, stats, trio.current_time())


def _write_and_sync(
    files: StreamFiles, raw: list[Any], parsed: list[Any], now_s: float, sync: bool
) -> tuple[list[Any], list[Any], DiskFullError | None]:
    """(worker thread) Write both files, then fsync them when ``sync``."""
    raw_left, parsed_left, error = files.write(raw, parsed, now_s, fsync=False)
    if error is None and sync:
        waited = files.sync()
        if waited is not None:  # (--log-level debug: the power-loss exposure, fsync by fsync)
            log.debug("files.synced", waited_s=round(waited, 3))
    return raw_left, parsed_left, error


def status_of(files: StreamFiles, stats: Stats) -> dict[str, Any]:
    """What status.json says now."""
    part_raw, part_parsed = files.raw.current_part, files.parsed.current_part
    return stats.as_status(
        time.time(),
        {
            "raw": str(part_raw) if part_raw else None,
            "parsed": str(part_parsed) if part_parsed else None,
        },
    )


def log_stats(stats: Stats) -> None:
    log.info(
        "collector.stats",
        frames=stats.frames,
        rows=stats.rows,
        bytes_raw=stats.bytes_raw,
        parse_errors=stats.parse_errors,
        parse_errors_by_reason=dict(stats.parse_errors_by_reason),
        frames_by_kind=stats.frames_by_kind(),
        new_kinds=dict(stats.new_kinds),
        gaps=stats.gaps,
        reconnects=stats.reconnects,
        resyncs=stats.resyncs,
        duplicates=stats.duplicates,
        stray_ids=stats.stray_ids,
        error_frames=stats.error_frames,
        disk_full=stats.disk_full,
        connected=stats.connected,
        last_frame_at=stats.last_frame_at,
    )
