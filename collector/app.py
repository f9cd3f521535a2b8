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

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import orjson
import structlog
import trio

from collector.book import BookSync, Crossed, Gap, NeedSnapshot, Resync, Rows, Stale
from collector.errors import ConfigError, FeedError, UnexpectedMessage
from collector.exchanges import ADAPTERS
from collector.exchanges.base import StreamSpec
from collector.l3pipe import L3_RECORDS, L3Pipeline
from collector.locks import LockBusyError, hold_lock
from collector.model import COLUMNS, BookUpdate, Control, Record, Trade
from collector.session import Backoff, Frame, Session, SessionSettings
from collector.settings import CollectorSettings
from collector.status import Stats, read_status, write_status
from collector.writer import HourlyGzipWriter, HourStamps, recover, stream_dir

log = structlog.get_logger()

# The raw `conn` of periodic L2 REST views recorded beside an l3 stream (for QA's cross-check).
L2_VIEW_CONN = "l2view"


class StreamFiles:
    """The raw and parsed writers of one stream; raw and parsed files of an hour share a stem."""

    def __init__(self, settings: CollectorSettings) -> None:
        s = settings
        self.dir = stream_dir(s.data_dir, s.exchange, s.symbol, s.data_type)
        name = f"{s.exchange}_{s.symbol}_{s.data_type}"
        stamps = HourStamps()
        self.raw = HourlyGzipWriter(
            self.dir / "raw", name, ".jsonl.gz", stamps=stamps, on_close=_log_closed
        )
        header = ",".join(COLUMNS[s.data_type]) + "\n"
        self.parsed = HourlyGzipWriter(
            self.dir / "parsed", name, ".csv.gz", header=header, stamps=stamps, on_close=_log_closed
        )
        self.status_path = self.dir / "status.json"

    def recover(self) -> list[Path]:
        return recover(self.dir / "raw") + recover(self.dir / "parsed")

    def write(
        self,
        raw: list[tuple[int, float, list[str]]],
        parsed: list[tuple[int, float, list[str]]],
        now_s: float,
    ) -> None:
        self.raw.write(raw, now_s)
        self.parsed.write(parsed, now_s)

    def close(self) -> None:
        self.raw.close()
        self.parsed.close()


def _log_closed(path: Path) -> None:
    log.info("file.closed", path=str(path))


def lock_stream(directory: Path) -> contextlib.ExitStack:
    """Hold the stream's lock for the life of the process (``close()`` releases it)."""
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(hold_lock(directory / ".lock"))
    except LockBusyError as exc:
        raise ConfigError(
            f"another collector (pid {exc.holder}) is already running for {directory}"
        ) from None
    return stack


def _envelope(frame: Frame) -> str:
    d: dict[str, object] = {"t": frame.t, "conn": frame.conn, "ts": frame.ts}
    if frame.t in ("connect", "send"):
        d["addr"] = frame.addr
    if frame.t in ("send", "recv"):
        d["data"] = frame.data
    elif frame.t == "http":
        d["url"] = frame.addr
        d["status"] = frame.status
        d["data"] = frame.data
    elif frame.t == "disconnect":
        d["reason"] = frame.reason
    return orjson.dumps(d).decode() + "\n"


# One CSV row from a Trade tuple + local_time (µs); %s renders the bool as True/False.
_TRADE_ROW = "%d,%s,%d,%s,%s,%d,%s,%d\n"


def trade_line(t: Trade, local_us: int) -> str:
    maker = "True" if t.is_buyer_maker else "False"
    return (
        f"{t.event_time_ms},{t.symbol},{t.trade_id},{t.price},{t.quantity},"
        f"{t.trade_time_ms},{maker},{local_us}\n"
    )


class Processor:
    """Consumes frames in order: raw first, then parse, normalise and queue rows."""

    def __init__(
        self,
        settings: CollectorSettings,
        adapter: ModuleType,
        files: StreamFiles,
        stats: Stats,
        session: Session,
    ) -> None:
        self.settings = settings
        self.adapter = adapter
        self.files = files
        self.stats = stats
        self.session = session
        self.trade_ids_contiguous: bool = getattr(adapter, "TRADE_IDS_CONTIGUOUS", True)
        self._last_error_log = 0.0
        self._suppressed_errors = 0
        self._conn = ""
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
        make_parser = getattr(adapter, "make_parser", None)  # adapters whose frames lack ids
        parsers = getattr(adapter, "PARSERS", None)
        self.parse: Callable[[str | bytes, int], list[Record]] = (
            make_parser(stream_spec(settings))
            if make_parser
            else parsers[settings.data_type]
            if parsers
            else adapter.parse
        )

    def _mark_synced(self) -> None:
        self.synced_since_fetch = True

    def marker(self, t: str, ts: float, **fields: object) -> None:
        """A collector marker in the raw file (gap, resync)."""
        d: dict[str, object] = {"t": t, "conn": self._conn, "ts": ts, **fields}
        self.files.raw.add(orjson.dumps(d).decode() + "\n", ts)

    def handle(self, frame: Frame) -> None:
        st = self.stats
        if frame.t == "recv":  # the hot path: keep it lean
            ts = frame.ts
            line = (
                f'{{"t":"recv","conn":"{frame.conn}","ts":{ts!r},'
                f'"data":{orjson.dumps(frame.data).decode()}}}\n'
            )
            self.files.raw.add(line, ts)
            st.bytes_raw += len(line)
            st.frames += 1
            st.last_frame_at = ts
            if not st._hour_start <= ts < st._hour_end:
                st.roll(ts)
            ts_us = int(ts * 1_000_000)
            try:
                records = self.parse(frame.data, ts_us)
            except UnexpectedMessage as exc:
                self._parse_error(exc, frame)
                return
            for rec in records:
                if type(rec) is Trade:
                    last = st.last_trade_id
                    if last is not None and rec.trade_id != last + 1:
                        self.on_trade_out_of_order(rec, ts)
                        if rec.trade_id <= last:
                            continue  # already written (a reconnect replays the last trade)
                    st.last_trade_id = rec.trade_id
                    self.files.parsed.add(_TRADE_ROW % (*rec, ts_us), ts)
                    st.rows += 1
                    st.today_rows += 1
                    st.hour_rows += 1
                else:
                    self.on_record(rec, frame)
            return
        line = _envelope(frame)
        self.files.raw.add(line, frame.ts)
        st.bytes_raw += len(line)
        if frame.t == "connect":
            self._conn = frame.conn
            st.connected = True
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

    def on_record(self, rec: Record, frame: Frame) -> None:
        if self.l3 is not None and isinstance(rec, L3_RECORDS):
            self.l3.on_record(rec, frame.ts)
        elif isinstance(rec, BookUpdate):
            if self.book is not None:
                self.on_book(rec, frame.ts)
        elif isinstance(rec, Control):
            self.on_control(rec, frame)

    def on_snapshot_response(self, frame: Frame) -> None:
        try:
            snapshot = self.adapter.parse_snapshot(frame.data, self.settings.symbol)
        except UnexpectedMessage as exc:
            self._parse_error(exc, frame)
            self.request_snapshot()
            return
        self.on_book(snapshot, frame.ts)

    def on_book(self, update: BookUpdate, ts: float) -> None:
        """Feed the book; act on its verdicts (rows, gaps, resyncs, snapshot requests)."""
        assert self.book is not None
        st = self.stats
        for v in self.book.feed(update):
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

    def on_trade_out_of_order(self, t: Trade, ts: float) -> None:
        """A trade id that is not the next one: a gap (counted, marked in raw) or a repeat."""
        st = self.stats
        last = st.last_trade_id
        assert last is not None
        if t.trade_id > last + 1 and self.trade_ids_contiguous:
            size = t.trade_id - last - 1
            st.add_gap(size, ts)
            self.marker("gap", ts, kind="trade_id", expected=last + 1, got=t.trade_id, size=size)
            log.warning("trade.gap", expected=last + 1, got=t.trade_id, size=size)

    def on_control(self, c: Control, frame: Frame) -> None:
        if c.kind == "error":
            raise FeedError(
                f"{self.settings.exchange} rejected the subscription: {c.detail}",
                exchange=self.settings.exchange,
                symbol=self.settings.symbol,
                excerpt=str(frame.data[:200]),
            )
        if c.kind == "reconnect":
            log.warning("ws.server_reconnect", detail=c.detail)
            self.session.request_reconnect(c.detail or "server asked")
        elif c.kind == "subscribed":
            log.info("ws.subscribed", detail=c.detail[:200])
            if self.l3 is not None:
                self.l3.on_subscribed(frame.ts)
        elif c.kind == "heartbeat" and c.last_trade_id is not None and self.trades:
            self.on_heartbeat_trade_id(c.last_trade_id, frame.ts)

    def on_heartbeat_trade_id(self, exchange_last: int, ts: float) -> None:
        """The exchange says its last trade is ``exchange_last`` (Coinbase heartbeats).

        Ahead of what we wrote, it may only be a match still in flight, so the claim is kept
        until the next heartbeat; if we still lack those trades then, they were lost: a gap
        (kind ``heartbeat``), found without waiting for the product's next trade.
        """
        st = self.stats
        last = st.last_trade_id
        if last is None or not self.trade_ids_contiguous:
            return
        pending = self._hb_pending
        if pending is not None and last < pending:
            size = pending - last
            st.add_gap(size, ts)
            self.marker("gap", ts, kind="heartbeat", expected=last + 1, got=pending + 1, size=size)
            log.warning(
                "trade.gap", expected=last + 1, exchange_last=pending, size=size, source="heartbeat"
            )
            st.last_trade_id = last = pending  # counted once: the next trade is contiguous
        self._hb_pending = exchange_last if exchange_last > last else None

    def _parse_error(self, exc: UnexpectedMessage, frame: Frame) -> None:
        self.stats.parse_errors += 1
        now = time.monotonic()
        if now - self._last_error_log >= 10.0:
            log.error(
                "frame.parse_error",
                error=str(exc),
                excerpt=exc.excerpt[:200],
                suppressed=self._suppressed_errors,
                total=self.stats.parse_errors,
            )
            self._last_error_log = now
            self._suppressed_errors = 0
        else:
            self._suppressed_errors += 1


async def run_flusher(settings: CollectorSettings, files: StreamFiles, stats: Stats) -> None:
    """Every flush interval: hand queued lines to a thread that compresses and fsyncs them."""
    next_status = 0.0
    while True:
        await trio.sleep(settings.flush_interval_s)
        await flush(files, stats)
        if time.monotonic() >= next_status:
            await write_status_file(files, stats)
            next_status = time.monotonic() + settings.status_interval_s


async def flush(files: StreamFiles, stats: Stats) -> None:
    raw, parsed = files.raw.take(), files.parsed.take()
    await trio.to_thread.run_sync(files.write, raw, parsed, time.time())


async def write_status_file(files: StreamFiles, stats: Stats) -> None:
    part_raw, part_parsed = files.raw.current_part, files.parsed.current_part
    status = stats.as_status(
        time.time(),
        {
            "raw": str(part_raw) if part_raw else None,
            "parsed": str(part_parsed) if part_parsed else None,
        },
    )
    await trio.to_thread.run_sync(write_status, files.status_path, status)


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
            log.info("book.snapshot_fetch", url=url, weight=weight)
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
            gaps=stats.gaps,
            reconnects=stats.reconnects,
            resyncs=stats.resyncs,
            connected=stats.connected,
            last_frame_at=stats.last_frame_at,
        )


async def watch_signals(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("collector.stopping", signal=signal.Signals(signum).name)
            scope.cancel()
            return


def stream_spec(settings: CollectorSettings) -> StreamSpec:
    return StreamSpec(
        symbol=settings.symbol,
        data_type=settings.data_type,
        trade_stream=settings.binance_trade_stream,
        depth_speed_ms=settings.depth_update_speed_ms,
        book_len=settings.book_len,
        credentials=settings.credentials,
    )


async def main(settings: CollectorSettings) -> int:
    """Run one collector until SIGTERM/SIGINT (0) or a fatal feed error (raises FeedError)."""
    s = settings
    structlog.contextvars.bind_contextvars(
        exchange=s.exchange, symbol=s.symbol, data_type=s.data_type
    )
    adapter = ADAPTERS[s.exchange]
    spec = stream_spec(s)
    files = StreamFiles(s)
    lock = lock_stream(files.dir)
    try:
        recovered = files.recover()
        if recovered:
            log.warning("file.recovered", files=[str(p) for p in recovered])
        stats = Stats(s.exchange, s.symbol, s.data_type)
        previous = read_status(files.status_path)
        if previous is not None and isinstance(previous.get("last_trade_id"), int):
            stats.last_trade_id = previous["last_trade_id"]
        processor: Processor

        def deliver(frame: Frame) -> None:
            processor.handle(frame)

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
        processor = Processor(s, adapter, files, stats, session)
        snapshots: tuple[trio.MemoryReceiveChannel[None], str, int] | None = None
        if processor.book is not None and adapter.BOOK_SNAPSHOT_FROM_REST:
            req_send, req_recv = trio.open_memory_channel[None](1)
            processor.snapshot_requests = req_send
            limit = s.snapshot_limit
            weight_of = getattr(adapter, "snapshot_weight", None)
            snapshots = (
                req_recv,
                adapter.build_snapshot_url(s.rest_url, spec, limit),
                weight_of(limit) if weight_of else 1,
            )
        elif processor.l3 is not None and adapter.L3_SNAPSHOT_FROM_REST:
            req_send, req_recv = trio.open_memory_channel[None](1)
            processor.snapshot_requests = req_send
            snapshots = (req_recv, adapter.build_l3_snapshot_url(s.rest_url, spec), 1)
        log.info("collector.started", pid=os.getpid(), data_dir=str(s.data_dir), ws_url=s.ws_url)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch_signals, nursery.cancel_scope)
                if snapshots is not None:
                    nursery.start_soon(run_snapshots, s, processor, *snapshots)
                l2_view_url = getattr(adapter, "build_l2_view_url", None)
                if processor.l3 is not None and l2_view_url and s.l2_view_interval_s > 0:
                    nursery.start_soon(run_l2_views, s, processor, l2_view_url(s.rest_url, spec))
                nursery.start_soon(session.run)
                nursery.start_soon(run_flusher, s, files, stats)
                nursery.start_soon(run_stats_log, s, stats)
        finally:
            with trio.move_on_after(s.shutdown_timeout_s) as cleanup:
                cleanup.shield = True
                stats.connected = False
                await flush(files, stats)
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
