"""The collector process: the only module that wires the parts together.

    websocket session ──Frame──▶ processor ──▶ raw writer (every frame, first)
    REST snapshot fetch ─Frame──▶    │      ──▶ adapter.parse ─▶ trade / book normaliser
                                     ▼                          ─▶ parsed writer
                               stats, status file, `collector.stats` log line

One root nursery. The reader hands each frame to the processor synchronously: the websocket
library's bounded message queue (64) is the only buffer, so backpressure reaches the socket,
and a channel hop per frame (about a quarter of the cost of receiving a frame, measured in
``make bench``) stays off the hot path. REST bodies enter the same ``Processor.handle`` from
their own tasks; everything runs on one trio thread, so frames are handled one at a time.
Files are flushed by one task every ``flush_interval_s``; blocking work (gzip, fsync, rename)
runs in a worker thread. SIGTERM/SIGINT cancel the root scope and the files are finalised
inside a shielded scope bounded by ``shutdown_timeout_s``.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import os
import shutil
import signal
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import orjson
import structlog
import trio

from collector import signals, tradeseq
from collector.book import BookSync, Crossed, Gap, NeedSnapshot, Resync, Rows, Stale
from collector.book import Verdict as BookVerdict
from collector.common import layout
from collector.common.alerts import Alert, send_alert
from collector.common.config import redact_url
from collector.common.errors import (
    FOREIGN_SYMBOL,
    UNKNOWN_TYPE,
    ConfigError,
    FeedError,
    UnexpectedMessage,
)
from collector.common.locks import LockBusyError, hold_lock
from collector.common.retry import Backoff, BackoffSettings
from collector.exchanges import ADAPTERS
from collector.exchanges.base import ExchangeAdapter
from collector.l3pipe import L3_RECORDS, L3Pipeline
from collector.model import (
    COLUMNS,
    BookChecksum,
    BookUpdate,
    Control,
    L3Event,
    L3Snapshot,
    Record,
    Trade,
)
from collector.session import Frame, Session, SessionSettings
from collector.settings import CollectorSettings
from collector.status import Stats, write_status
from collector.tradeseq import TradeSequence
from collector.writer import (
    Chunk,
    DiskFullError,
    HourlyGzipWriter,
    HourStamps,
    last_field,
    recover,
)

log = structlog.get_logger()

# The raw `conn` of periodic L2 REST views recorded beside an l3 stream (for QA's cross-check).
L2_VIEW_CONN = "l2view"
# What replaces a credential in our own `send` frames in raw (adapter SEND_SECRET_FIELDS).
REDACTED = "<redacted>"
# The resume point is looked for in at most this many newest parsed files.
RESUME_FILES = 72
TRADE_ID_COLUMN = COLUMNS["trade"].index("trade_id")
# Parse errors are counted per reason; at most this many distinct reasons are kept apart.
MAX_REASONS = 64


class StreamFiles:
    """The raw and parsed writers of one stream; raw and parsed files of an hour share a stem."""

    def __init__(self, settings: CollectorSettings) -> None:
        s = settings
        self.dir = layout.stream_dir(s.data_dir, s.exchange, s.symbol, s.data_type)
        name = layout.stream_name(s.exchange, s.symbol, s.data_type)
        stamps = HourStamps()
        self.raw = HourlyGzipWriter(
            self.dir / layout.RAW, name, layout.RAW_SUFFIX, stamps=stamps, on_close=_log_closed
        )
        header = ",".join(COLUMNS[s.data_type]) + "\n"
        self.parsed = HourlyGzipWriter(
            self.dir / layout.PARSED,
            name,
            layout.PARSED_SUFFIX,
            header=header,
            stamps=stamps,
            on_close=_log_closed,
        )
        self.status_path = layout.status_path(self.dir)

    def recover(self) -> list[Path]:
        return recover(self.dir / layout.RAW) + recover(self.dir / layout.PARSED)

    def write(
        self, raw: list[Chunk], parsed: list[Chunk], now_s: float
    ) -> tuple[list[Chunk], list[Chunk], DiskFullError | None]:
        """Write raw, then parsed (blocking). On a full disk, returns what is left to write."""
        try:
            self.raw.write(raw, now_s)
        except DiskFullError as exc:
            return exc.unwritten, parsed, exc
        try:
            self.parsed.write(parsed, now_s)
        except DiskFullError as exc:
            return [], exc.unwritten, exc
        return [], [], None

    def close(self) -> None:
        self.raw.close()
        self.parsed.close()

    def last_trade_id(self) -> tuple[int, str] | None:
        """The last trade id in the files on disk (newest parsed file that has a row)."""
        paths = sorted((self.dir / layout.PARSED).glob(f"*/*{layout.PARSED_SUFFIX}"), reverse=True)
        found = last_field(paths[:RESUME_FILES], TRADE_ID_COLUMN)
        return None if found is None else (int(found[1]), found[0].name)


def _log_closed(path: Path) -> None:
    log.info("file.closed", path=str(path))


def lock_stream(directory: Path) -> contextlib.ExitStack:
    """Hold the stream's lock for the life of the process (``close()`` releases it)."""
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(hold_lock(layout.lock_path(directory)))
    except LockBusyError as exc:
        raise ConfigError(
            f"another collector (pid {exc.holder}) is already running for {directory}"
        ) from None
    return stack


def redact(text: str, fields: Sequence[str]) -> str:
    """``text`` (one of our JSON `send` frames) with the values of ``fields`` replaced."""
    if not fields or not any(f'"{f}"' in text for f in fields):
        return text
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError:
        return REDACTED  # not ours to keep: it names a secret field but is not JSON
    if not isinstance(msg, dict):
        return REDACTED
    for f in fields:
        if f in msg:
            msg[f] = REDACTED
    return orjson.dumps(msg).decode()


def envelope(frame: Frame, secret_fields: Sequence[str] = ()) -> str:
    """One raw line in the envelope of shared/data/recorded (plus our own kinds).

    Binary websocket frames keep their exact bytes: ``data`` is their base64 and
    ``"encoding": "base64"`` says so.
    """
    d: dict[str, object] = {"t": frame.t, "conn": frame.conn, "ts": frame.ts}
    if frame.t in ("connect", "send"):
        d["addr"] = frame.addr
    data = frame.data
    if frame.t == "send" and isinstance(data, str):
        data = redact(data, secret_fields)
    if frame.t in ("send", "recv"):
        if isinstance(data, bytes):
            d["data"] = base64.b64encode(data).decode("ascii")
            d["encoding"] = "base64"
        else:
            d["data"] = data
    elif frame.t == "http":
        d["url"] = frame.addr
        d["status"] = frame.status
        d["data"] = data
    elif frame.t == "disconnect":
        d["reason"] = frame.reason
    return orjson.dumps(d).decode() + "\n"


# One CSV row from a Trade tuple + local_time (µs); %s renders the bool as True/False.
_TRADE_ROW = "%d,%s,%d,%s,%s,%d,%s,%d\n"
# A trade waiting for the next one to decide (see tradeseq): the record, received at (s, µs).
_Held = tuple[Trade, float, int]
_DATA_RECORDS = (Trade, BookUpdate, L3Event, L3Snapshot, BookChecksum)


class Processor:
    """Consumes frames in order: raw first, then parse, normalise and queue rows.

    ``handle`` returns True for a frame that carried market data (the session resets its
    reconnect backoff only then: an ack or an error frame is not a good frame).
    """

    def __init__(
        self,
        settings: CollectorSettings,
        adapter: ExchangeAdapter,
        files: StreamFiles,
        stats: Stats,
        session: Session,
        *,
        last_trade_id: int | None = None,
    ) -> None:
        self.settings = settings
        self.adapter = adapter
        self.files = files
        self.stats = stats
        self.session = session
        self.symbol = settings.symbol
        self.secret_fields: tuple[str, ...] = adapter.SEND_SECRET_FIELDS
        self.trade_ids_contiguous: bool = adapter.TRADE_IDS_CONTIGUOUS
        self.trade_seq: TradeSequence[_Held] = TradeSequence(
            contiguous=self.trade_ids_contiguous, last=last_trade_id
        )
        stats.last_trade_id = last_trade_id
        self._last_error_log = 0.0
        self._suppressed_errors = 0
        self._conn = ""
        # Per connection: has the exchange confirmed our subscription; ids of our requests.
        self._subscribed = False
        self._sent_ids: set[object] = set()
        self.book: BookSync | None = None
        if settings.data_type == "book":
            self.book = BookSync(
                depth=settings.book_depth, snapshot_from_rest=adapter.BOOK_SNAPSHOT_FROM_REST
            )
        self.synced_since_fetch = True
        self.trades = settings.data_type == "trade"
        self._hb_pending: int | None = None  # an exchange trade id we have not written yet
        # Set by the app when snapshots come from REST: one pending request at most.
        self.snapshot_requests: trio.MemorySendChannel[None] | None = None
        self.l3: L3Pipeline | None = None
        if settings.data_type == "l3":
            self.l3 = L3Pipeline(
                adapter,
                settings.symbol,
                files.parsed.add,
                stats,
                self.marker,
                self.request_snapshot,
                session.request_reconnect,
                self._mark_synced,
            )
        self.parse: Callable[[str | bytes, int], list[Record]] = adapter.make_parser(
            settings.stream_spec()
        )

    def _mark_synced(self) -> None:
        self.synced_since_fetch = True

    def marker(self, t: str, ts: float, **fields: object) -> None:
        """A collector marker in the raw file (gap, resync, resume, trade_stray, ...)."""
        d: dict[str, object] = {"t": t, "conn": self._conn, "ts": ts, **fields}
        self.files.raw.add(orjson.dumps(d).decode() + "\n", ts)

    def handle(self, frame: Frame) -> bool:
        """One frame in arrival order; True when it carried market data."""
        st = self.stats
        if frame.t == "recv":  # the hot path: keep it lean
            ts = frame.ts
            data = frame.data
            if type(data) is str:
                line = (
                    f'{{"t":"recv","conn":"{frame.conn}","ts":{ts!r},'
                    f'"data":{orjson.dumps(data).decode()}}}\n'
                )
            else:
                line = envelope(frame)
            self.files.raw.add(line, ts)
            st.bytes_raw += len(line)
            st.frames += 1
            st.last_frame_at = ts
            if not st._hour_start <= ts < st._hour_end:
                st.roll(ts)
            ts_us = int(ts * 1_000_000)
            try:
                records = self.parse(data, ts_us)
            except UnexpectedMessage as exc:
                self._parse_error(exc, frame)
                return False
            is_data = False
            for rec in records:
                if type(rec) is Trade:
                    is_data = True
                    if rec.symbol != self.symbol:
                        self._count_reason(FOREIGN_SYMBOL)
                        continue
                    seq = self.trade_seq
                    last = seq.last
                    if (
                        last is not None
                        and rec.trade_id == last + 1
                        and seq.contiguous
                        and seq.pending_id is None
                    ):  # the natural successor: written at once
                        seq.last = rec.trade_id
                        self._write_trade(rec, ts, ts_us)
                        continue
                    self._sequence(seq.feed((rec, ts, ts_us), rec.trade_id, ts), ts)
                elif type(rec) is Control:
                    self.on_control(rec, frame)
                else:
                    is_data = is_data or isinstance(rec, _DATA_RECORDS)
                    self.on_record(rec, frame)
            return is_data
        line = envelope(frame, self.secret_fields)
        self.files.raw.add(line, frame.ts)
        st.bytes_raw += len(line)
        if frame.t == "connect":
            self._conn = frame.conn
            self._subscribed = False
            self._sent_ids = set()
            st.connected = True
        elif frame.t == "send":
            self._note_request(frame.data)
        elif frame.t == "disconnect":
            st.connected = False
            st.add_reconnect(frame.ts)
            if self.book is not None:
                if self.book.synced:
                    # Updates sent while we were away are lost: the book's gap.
                    st.add_gap(0, frame.ts)
                    self.marker("gap", frame.ts, kind="disconnect", reason=frame.reason)
                self.book.reset()
            if self.l3 is not None:
                self.l3.on_disconnect(frame.ts, frame.reason)
        elif frame.t == "http" and frame.conn == L2_VIEW_CONN:
            pass  # the exchange's own L2 view: recorded for QA's cross-check only
        elif frame.t == "http" and self.book is not None:
            self.on_snapshot_response(frame)
        elif frame.t == "http" and self.l3 is not None:
            self.l3.on_snapshot_response(frame.data, frame.ts)
        return False

    def _note_request(self, data: str | bytes) -> None:
        """Remember the id of a request we sent, so an error can be matched to it."""
        try:
            msg = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if isinstance(msg, dict) and msg.get("id") is not None:
            self._sent_ids.add(msg["id"])

    # --- trades -------------------------------------------------------------------------

    def _write_trade(self, rec: Trade, ts: float, ts_us: int) -> None:
        st = self.stats
        self.files.parsed.add(_TRADE_ROW % (*rec, ts_us), ts)
        st.last_trade_id = rec.trade_id
        st.rows += 1
        st.today_rows += 1
        st.hour_rows += 1

    def _sequence(self, verdicts: list[tradeseq.Verdict[_Held]], ts: float) -> None:
        """Act on the trade sequencer's verdicts: rows, markers, counters."""
        st = self.stats
        for v in verdicts:
            if type(v) is tradeseq.Write:
                rec, rts, rus = v.item
                self._write_trade(rec, rts, rus)
            elif isinstance(v, tradeseq.Duplicate):
                st.duplicates += 1
            elif isinstance(v, tradeseq.Gap):
                size = v.size
                if self.trade_ids_contiguous:
                    st.add_gap(size, ts)
                    self.marker(
                        "gap", ts, kind="trade_id", expected=v.expected, got=v.got, size=size
                    )
                    log.warning("trade.gap", expected=v.expected, got=v.got, size=size)
            elif isinstance(v, tradeseq.Reset):
                st.trade_id_resets += 1
                self.marker("trade_reset", ts, last=v.last, got=v.got)
                log.warning("trade.id_reset", last=v.last, got=v.got)
            elif isinstance(v, tradeseq.Stray):
                st.stray_ids += 1
                self.marker("trade_stray", ts, trade_id=v.trade_id, last=v.last)
                log.warning("trade.stray_id", trade_id=v.trade_id, last=v.last)

    def tick(self, now_s: float, *, final: bool = False) -> None:
        """Periodic (before each flush): a trade held for the sequencer too long, or whose
        hour is about to be closed, is accepted; the decision is a raw marker (rebuilds
        replay it)."""
        seq = self.trade_seq
        since = seq.pending_since()
        if since is None:
            return
        force = final or int(since // 3600) != int(now_s // 3600)
        verdicts = seq.resolve(now_s, force=force)
        if verdicts:
            self.marker("trade_accept", now_s, trade_id=seq.last)
            self._sequence(verdicts, now_s)

    # --- books and L3 ---------------------------------------------------------------------

    def on_record(self, rec: Record, frame: Frame) -> None:
        if self.l3 is not None and isinstance(rec, L3_RECORDS):
            self.l3.on_record(rec, frame.ts)
        elif isinstance(rec, BookUpdate) and self.book is not None:
            self.on_book(rec, frame.ts)

    def on_snapshot_response(self, frame: Frame) -> None:
        parse = self.adapter.parse_snapshot
        if parse is None:
            return  # this exchange has no REST snapshot: none was asked for
        try:
            snapshot = parse(frame.data, self.settings.symbol)
        except UnexpectedMessage as exc:
            self._parse_error(exc, frame)
            self.request_snapshot()
            return
        self.on_book(snapshot, frame.ts)

    def on_book(self, update: BookUpdate, ts: float) -> None:
        """Feed the book; act on its verdicts (rows, gaps, resyncs, snapshot requests)."""
        assert self.book is not None
        self._book_verdicts(self.book.feed(update), ts)

    def _book_verdicts(self, verdicts: Sequence[BookVerdict], ts: float) -> None:
        st = self.stats
        for v in verdicts:
            if type(v) is Rows:
                self.synced_since_fetch = True
                ts_ms = v.ts_ms or int(ts * 1000)
                ts_us = int(ts * 1_000_000)
                sym = self.settings.symbol
                add = self.files.parsed.add
                for level, (price, qty) in enumerate(v.bids, 1):
                    add(f"{ts_ms},{sym},B,{price},{qty},{level},{ts_us}\n", ts)
                for level, (price, qty) in enumerate(v.asks, 1):
                    add(f"{ts_ms},{sym},A,{price},{qty},{level},{ts_us}\n", ts)
                st.add_rows(len(v.bids) + len(v.asks), ts)
            elif isinstance(v, NeedSnapshot):
                self.request_snapshot()
            elif isinstance(v, Gap):
                size = v.got - v.expected
                st.add_gap(size, ts)
                self.marker("gap", ts, kind="sequence", expected=v.expected, got=v.got, size=size)
                log.warning("book.gap", expected=v.expected, got=v.got, size=size)
            elif isinstance(v, Stale):
                log.warning(
                    "book.stale_snapshot", snapshot_id=v.snapshot_id, first_buffered_id=v.first_id
                )
            elif isinstance(v, Crossed):
                log.error("book.crossed", best_bid=list(v.best_bid), best_ask=list(v.best_ask))
            elif isinstance(v, Resync):
                st.resyncs += 1
                self.marker("resync", ts, reason=v.reason)
                log.warning("book.resync", reason=v.reason, reconnect=v.reconnect)
                if v.reconnect:
                    self.session.request_reconnect(f"book resync: {v.reason}")

    def request_snapshot(self) -> None:
        if self.snapshot_requests is None:
            return
        try:
            self.snapshot_requests.send_nowait(None)
        except trio.WouldBlock:
            pass  # one is already pending

    # --- control frames -------------------------------------------------------------------

    def on_control(self, c: Control, frame: Frame) -> None:
        if c.kind == "error":
            self.on_error_frame(c, frame)
        elif c.kind == "reconnect":
            log.warning("ws.server_reconnect", detail=c.detail)
            self.session.request_reconnect(c.detail or "server asked")
        elif c.kind == "subscribed":
            self._subscribed = True
            log.info("ws.subscribed", detail=c.detail[:200])
            if self.l3 is not None:
                self.l3.on_subscribed(frame.ts)
        elif c.kind == "heartbeat":
            if c.last_trade_id is not None and self.trades:
                self.on_heartbeat_trade_id(c.last_trade_id, frame.ts)
        elif c.kind == "pause":
            log.warning("ws.exchange_maintenance", detail=c.detail[:200])
        else:
            log.warning("ws.unknown_control", kind=c.kind, detail=c.detail[:200])

    def on_error_frame(self, c: Control, frame: Frame) -> None:
        """An error frame is fatal only when it answers our own subscribe request: before the
        subscription was confirmed, and the exchange names no other request. Any other is
        counted (it is in raw) and the connection is renewed."""
        answers_us = c.request_id is None or c.request_id in self._sent_ids
        if not self._subscribed and answers_us:
            raise FeedError(
                f"{self.settings.exchange} rejected the subscription: {c.detail}",
                exchange=self.settings.exchange,
                symbol=self.settings.symbol,
                excerpt=str(frame.data[:200]),
            )
        self.stats.error_frames += 1
        log.error(
            "ws.error_frame",
            detail=c.detail[:200],
            request_id=c.request_id,
            subscribed=self._subscribed,
            total=self.stats.error_frames,
        )
        self.session.request_reconnect(f"error frame: {c.detail[:100]}")

    def on_heartbeat_trade_id(self, exchange_last: int, ts: float) -> None:
        """The exchange says its last trade is ``exchange_last`` (Coinbase heartbeats).

        Ahead of what we wrote, it may only be a match still in flight, so the claim is kept
        until the next heartbeat; if we still lack those trades then, they were lost: a gap
        (kind ``heartbeat``), found without waiting for the product's next trade.
        """
        seq = self.trade_seq
        if seq.last is None or not self.trade_ids_contiguous:
            return
        pending = self._hb_pending
        if pending is not None and seq.last < pending:
            gap = seq.skip_to(pending)
            if gap is not None:
                st = self.stats
                st.add_gap(gap.size, ts)
                st.last_trade_id = seq.last
                self.marker(
                    "gap", ts, kind="heartbeat", expected=gap.expected, got=gap.got, size=gap.size
                )
                log.warning(
                    "trade.gap",
                    expected=gap.expected,
                    exchange_last=pending,
                    size=gap.size,
                    source="heartbeat",
                )
        self._hb_pending = exchange_last if exchange_last > seq.last else None

    # --- errors ----------------------------------------------------------------------------

    def _count_reason(self, key: str) -> None:
        st = self.stats
        st.parse_errors += 1
        by = st.parse_errors_by_reason
        if key not in by and len(by) >= MAX_REASONS:
            key = "other"
        by[key] = by.get(key, 0) + 1

    def _parse_error(self, exc: UnexpectedMessage, frame: Frame) -> None:
        """A frame that produced no records: counted per reason, logged (rate-limited); a
        book or l3 stream cannot trust its book after a frame it could not read."""
        self._count_reason(exc.reason_key)
        if exc.reason != UNKNOWN_TYPE:
            if self.book is not None:
                self._book_verdicts(self.book.discard(f"bad_frame: {exc.reason_key}"), frame.ts)
            elif self.l3 is not None:
                self.l3.on_bad_frame(exc.reason_key, frame.ts)
        now = time.monotonic()
        if now - self._last_error_log >= 10.0:
            log.error(
                "frame.parse_error",
                error=str(exc),
                reason=exc.reason_key,
                excerpt=exc.excerpt[:200],
                suppressed=self._suppressed_errors,
                total=self.stats.parse_errors,
            )
            self._last_error_log = now
            self._suppressed_errors = 0
        else:
            self._suppressed_errors += 1


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


async def run_flusher(
    settings: CollectorSettings, files: StreamFiles, stats: Stats, processor: Processor
) -> None:
    """Every flush interval: hand queued lines to a thread that compresses and fsyncs them."""
    disk = DiskWatch(settings, stats, processor.session)
    next_status = 0.0
    while True:
        await trio.sleep(disk.next_wait_s())
        processor.tick(time.time())
        error = await flush(files, stats)
        if error is not None:
            disk.full(error, files.raw.queued_lines + files.parsed.queued_lines)
            continue
        disk.ok()
        if time.monotonic() >= next_status:
            await write_status_file(files, stats)
            next_status = time.monotonic() + settings.status_interval_s


async def flush(files: StreamFiles, stats: Stats) -> DiskFullError | None:
    """Write what is queued; on a full disk, what was not written stays queued."""
    raw, parsed = files.raw.take(), files.parsed.take()
    raw_left, parsed_left, error = await trio.to_thread.run_sync(
        files.write, raw, parsed, time.time()
    )
    files.raw.requeue(raw_left)
    files.parsed.requeue(parsed_left)
    return error


async def write_status_file(files: StreamFiles, stats: Stats) -> None:
    part_raw, part_parsed = files.raw.current_part, files.parsed.current_part
    status = stats.as_status(
        time.time(),
        {
            "raw": str(part_raw) if part_raw else None,
            "parsed": str(part_parsed) if part_parsed else None,
        },
    )
    try:
        await trio.to_thread.run_sync(write_status, files.status_path, status)
    except OSError as exc:  # e.g. a full disk: the data files matter more; retried next time
        if not stats.status_failing:
            log.warning("status.not_written", error=exc.strerror or str(exc))
        stats.status_failing = True
    else:
        stats.status_failing = False


async def run_snapshots(
    settings: CollectorSettings,
    processor: Processor,
    requests: trio.MemoryReceiveChannel[None],
    url: str,
    weight: int,
) -> None:
    """Fetch a REST snapshot for each request; the body joins the frame stream.

    A request that comes while the book has not synced since the last fetch (a stale
    snapshot, a gap right after a sync) waits for the backoff first, so a snapshot that keeps
    lagging the stream never turns into a tight loop of heavy REST calls.
    """
    pacing = Backoff(settings.backoff)
    from collector.rest import open_fetcher  # httpx only for streams that need REST

    async with requests, open_fetcher(processor.handle, settings.backoff) as fetcher:
        async for _ in requests:
            if processor.synced_since_fetch:
                pacing.reset()
            else:
                await trio.sleep(pacing.next_delay())
            processor.synced_since_fetch = False
            log.info("book.snapshot_fetch", url=redact_url(url), weight=weight)
            await fetcher.fetch(url, weight)


async def run_l2_views(settings: CollectorSettings, processor: Processor, url: str) -> None:
    """Record the exchange's own L2 view every ``l2_view_interval_s`` (QA compares the L3 book
    rebuilt from the events with it)."""
    from collector.rest import open_fetcher  # httpx only for streams that need REST

    async with open_fetcher(processor.handle, settings.backoff, conn=L2_VIEW_CONN) as fetcher:
        while True:
            await trio.sleep(settings.l2_view_interval_s)
            await fetcher.fetch(url)


async def run_stats_log(settings: CollectorSettings, stats: Stats) -> None:
    while True:
        await trio.sleep(settings.stats_interval_s)
        log.info(
            "collector.stats",
            frames=stats.frames,
            rows=stats.rows,
            bytes_raw=stats.bytes_raw,
            parse_errors=stats.parse_errors,
            parse_errors_by_reason=dict(stats.parse_errors_by_reason),
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


async def watch_signals(signals: AsyncIterator[int], scope: trio.CancelScope) -> None:
    """The first SIGTERM/SIGINT stops the collector; later ones (a second Ctrl-C, supervisord
    and a terminal both signalling) are only logged, so the files are always finalised."""
    async for signum in signals:
        log.info("collector.stopping", signal=signal.Signals(signum).name)
        scope.cancel()
        break
    async for signum in signals:
        log.info("collector.already_stopping", signal=signal.Signals(signum).name)


async def main(settings: CollectorSettings) -> int:
    """Run one collector until SIGTERM/SIGINT (0) or a fatal feed error (raises FeedError).

    The signal receiver is open from the first moment to the last, cleanup included: a stop
    signal at any point ends in finalised files and a ``collector.stopped`` line.
    """
    with trio.open_signal_receiver(*signals.STOP_SIGNALS) as stop_signals:
        return await _run(settings, stop_signals)


async def _run(settings: CollectorSettings, stop_signals: AsyncIterator[int]) -> int:
    s = settings
    structlog.contextvars.bind_contextvars(
        exchange=s.exchange, symbol=s.symbol, data_type=s.data_type
    )
    adapter = ADAPTERS[s.exchange]
    spec = s.stream_spec()
    files = StreamFiles(s)
    lock = lock_stream(files.dir)
    try:
        recovered = files.recover()
        if recovered:
            log.warning("file.recovered", files=[str(p) for p in recovered])
        stats = Stats(s.exchange, s.symbol, s.data_type)
        resume = files.last_trade_id() if s.data_type == "trade" else None
        processor: Processor

        def deliver(frame: Frame) -> bool:
            return processor.handle(frame)

        session = Session(
            SessionSettings(
                url=adapter.build_ws_url(s.ws_url, spec),
                subscribe=lambda now: adapter.build_subscribe(spec, now),
                watchdog_s=s.watchdog_s,
                max_connection_age_s=s.max_connection_age_s,
                max_message_size=s.max_message_size,
                backoff=s.backoff,
            ),
            deliver,
        )
        processor = Processor(
            s, adapter, files, stats, session, last_trade_id=resume[0] if resume else None
        )
        if s.data_type == "trade":
            # Where the files on disk end: the sequencer's start, and a rebuild's too.
            processor.marker(
                "resume",
                time.time(),
                last_trade_id=resume[0] if resume else None,
                file=resume[1] if resume else None,
            )
        snapshots: tuple[trio.MemoryReceiveChannel[None], str, int] | None = None
        snapshot_url = adapter.build_snapshot_url
        l3_snapshot_url = adapter.build_l3_snapshot_url
        if processor.book is not None and snapshot_url is not None:
            req_send, req_recv = trio.open_memory_channel[None](1)
            processor.snapshot_requests = req_send
            limit = s.snapshot_limit
            weight_of = adapter.snapshot_weight
            snapshots = (
                req_recv,
                snapshot_url(s.rest_url, spec, limit),
                weight_of(limit) if weight_of else 1,
            )
        elif processor.l3 is not None and l3_snapshot_url is not None:
            req_send, req_recv = trio.open_memory_channel[None](1)
            processor.snapshot_requests = req_send
            snapshots = (req_recv, l3_snapshot_url(s.rest_url, spec), 1)
        log.info(
            "collector.started",
            pid=os.getpid(),
            data_dir=str(s.data_dir),
            ws_url=redact_url(s.ws_url),
        )
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch_signals, stop_signals, nursery.cancel_scope)
                early = signals.requested()
                if early is not None:  # SIGTERM came while we were starting: stop cleanly
                    log.info("collector.stopping", signal=signal.Signals(early).name)
                    nursery.cancel_scope.cancel()
                if snapshots is not None:
                    nursery.start_soon(run_snapshots, s, processor, *snapshots)
                l2_view_url = adapter.build_l2_view_url
                if processor.l3 is not None and l2_view_url and s.l2_view_interval_s > 0:
                    nursery.start_soon(run_l2_views, s, processor, l2_view_url(s.rest_url, spec))
                nursery.start_soon(session.run)
                nursery.start_soon(run_flusher, s, files, stats, processor)
                nursery.start_soon(run_stats_log, s, stats)
        finally:
            with trio.move_on_after(s.shutdown_timeout_s) as cleanup:
                cleanup.shield = True
                stats.connected = False
                processor.tick(time.time(), final=True)
                error = await flush(files, stats)
                if error is not None:
                    log.error(
                        "disk.full_at_stop",
                        error=error.strerror,
                        queued_lines=files.raw.queued_lines + files.parsed.queued_lines,
                        alert=True,
                    )
                await trio.to_thread.run_sync(files.close)
                await write_status_file(files, stats)
            log.info(
                "collector.stopped",
                frames=stats.frames,
                rows=stats.rows,
                gaps=stats.gaps,
                reconnects=stats.reconnects,
            )
    finally:
        lock.close()
    return 0
