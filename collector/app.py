"""The collector process: the only module that wires the parts together.

    settings ─▶ StreamFiles (files.py: raw + parsed hourly writers, status file, resume point)
             ─▶ Effects (rows, markers, snapshot requests, reconnects) ─▶ handler of the type
             ─▶ Processor (raw first, parse, dispatch) ─▶ Session(deliver=processor.handle)

    websocket session ──Frame──▶ processor ──▶ raw writer (every frame, first)
    REST snapshot task ─Frame──▶     │     ──▶ adapter parser ─▶ handler ─▶ parsed writer
                                     ▼
                               Stats ─▶ status file, ``collector.stats`` log line (upkeep.py)

Built in dependency order; the one loop of the design (the processor asks the session to
reconnect, the session delivers to the processor) is closed by ``effects.bind(session)``.

One root nursery. The session hands frames to the processor synchronously: the websocket
library's bounded message queue (512 frames: collector/wslib.py) is the only buffer besides
a burst's batch (at most 256 frames and 1 MiB, for at most 10 ms: collector/session.py), so
backpressure reaches the socket, and a channel hop per frame (about a quarter of the cost of
receiving a frame, measured in ``make bench``) stays off the hot path. REST bodies enter
``Processor.handle`` from their own tasks through ``Session.deliver_in_order``, after the
frames received before them; everything runs on one trio thread, so frames are handled one
at a time, in arrival order. One more task does all the periodic work (collector/upkeep.py:
tick, write, fsync, status file, stats line) on one deadline, and writes early when a burst
fills a chunk. SIGTERM/SIGINT cancel the root scope and the files are finalised inside a
shielded scope bounded by ``shutdown_timeout_s``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import trio

from collector import handlers, runinfo, signals
from collector.common import layout
from collector.common.config import redact_url
from collector.common.errors import ConfigError
from collector.common.locks import LockBusyError, hold_lock
from collector.common.retry import Backoff
from collector.common.structloglib import structlog
from collector.effects import Effects, SnapshotRequests
from collector.exchanges import ADAPTERS
from collector.exchanges.base import ExchangeAdapter, StreamSpec
from collector.files import StreamFiles
from collector.notices import NewKindAlerts
from collector.processor import L2_VIEW_CONN, Processor
from collector.session import Frame, Session, SessionSettings
from collector.settings import CollectorSettings
from collector.status import Stats
from collector.upkeep import Upkeep

log = structlog.get_logger()


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


def snapshot_source(
    settings: CollectorSettings, adapter: ExchangeAdapter, spec: StreamSpec
) -> tuple[str, int] | None:
    """The REST snapshot URL of the stream and its request weight, where it takes snapshots
    from REST (books: ``build_snapshot_url``; l3: ``build_l3_snapshot_url``)."""
    s = settings
    if s.data_type == "book" and adapter.build_snapshot_url is not None:
        weight_of = adapter.snapshot_weight
        url = adapter.build_snapshot_url(s.rest_url, spec, s.snapshot_limit)
        return url, weight_of(s.snapshot_limit) if weight_of else 1
    if s.data_type == "l3" and adapter.build_l3_snapshot_url is not None:
        return adapter.build_l3_snapshot_url(s.rest_url, spec), 1
    return None


async def run_snapshots(
    settings: CollectorSettings,
    deliver: Callable[[Frame], object],
    requests: SnapshotRequests,
    url: str,
    weight: int,
) -> None:
    """Fetch a REST snapshot for each request; the body joins the frame stream (``deliver``).
    Fetches are paced (``SnapshotRequests.wait_turn``)."""
    pacing = Backoff(settings.backoff)
    from collector.rest import open_fetcher  # httpx only for streams that need REST

    async with requests.receive, open_fetcher(deliver, settings.backoff, url=url) as fetcher:
        async for _ in requests.receive:
            await requests.wait_turn(pacing)
            log.info("book.snapshot_fetch", url=redact_url(url), weight=weight)
            await fetcher.fetch(url, weight)


async def run_l2_views(
    settings: CollectorSettings, deliver: Callable[[Frame], object], url: str
) -> None:
    """Record the exchange's own L2 view every ``l2_view_interval_s`` (QA compares the L3 book
    rebuilt from the events with it)."""
    from collector.rest import open_fetcher  # httpx only for streams that need REST

    async with open_fetcher(deliver, settings.backoff, conn=L2_VIEW_CONN, url=url) as fetcher:
        while True:
            await trio.sleep(settings.l2_view_interval_s)
            await fetcher.fetch(url)


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


@dataclass
class Pipeline:
    """One stream's parts, built in dependency order by :func:`build_pipeline`."""

    stats: Stats
    effects: Effects
    processor: Processor
    session: Session
    snapshots: tuple[SnapshotRequests, str, int] | None  # requests, REST URL, request weight
    l2_view_url: str | None  # l3: the exchange's own L2 view, recorded for QA


def refused_location(s: CollectorSettings, meaning: str) -> str:
    """Why the collector stops when the exchange refuses this host's location: the adapter's
    meaning, the host and its region, and where to look."""
    where = f"region {s.region}" if s.region else "a region not named in [fleet] hosts"
    return (
        f"{meaning}: host {s.host_id} ({where}) cannot collect {s.exchange} "
        f"{s.symbol} {s.data_type}; collect it from another region ([exchanges.{s.exchange}] "
        "regions, python -m ops.fleet plan)"
    )


def build_pipeline(
    settings: CollectorSettings,
    files: StreamFiles,
    on_connection: Callable[[], None] | None = None,
) -> Pipeline:
    """Settings and files → effects → handler → processor → session (bound to the effects)."""
    s = settings
    adapter = ADAPTERS[s.exchange]
    spec = s.stream_spec()
    stats = Stats(s.exchange, s.symbol, s.data_type)
    source = snapshot_source(s, adapter, spec)
    requests = SnapshotRequests() if source is not None else None
    effects = Effects(files.raw, files.parsed, requests)
    handler = handlers.for_stream(
        adapter, s.symbol, s.data_type, effects, stats, book_depth=s.book_depth
    )
    run = runinfo.run_facts(s)  # first in raw: the settings a rebuild needs (runinfo.py)
    if isinstance(handler, handlers.TradeHandler):
        # Where the files on disk end: the sequencer's start (a marker: a rebuild's too).
        last_id, last_file = files.last_trade_id() or (None, None)
        handler.resume(time.time(), last_id, last_file, run)
    else:
        effects.marker(runinfo.START, time.time(), run=run)
    alerts = NewKindAlerts(s.exchange, s.symbol, s.data_type)
    processor = Processor(
        adapter, spec, handler, effects, stats, on_new_kind=alerts, on_connection=on_connection
    )
    session = Session(
        SessionSettings(
            url=adapter.build_ws_url(s.ws_url, spec),
            subscribe=lambda now: adapter.build_subscribe(spec, now),
            watchdog_s=s.watchdog_s,
            max_connection_age_s=s.max_connection_age_s,
            max_message_size=s.max_message_size,
            backoff=s.backoff,
            fatal_handshake={
                status: refused_location(s, meaning)
                for status, meaning in adapter.FATAL_HANDSHAKE_STATUS.items()
            },
        ),
        processor.handle,
        deliver_recv=processor.recv,
    )
    effects.bind(session)
    view = adapter.build_l2_view_url
    return Pipeline(
        stats,
        effects,
        processor,
        session,
        snapshots=None if requests is None or source is None else (requests, *source),
        l2_view_url=(
            view(s.rest_url, spec)
            if s.data_type == "l3" and view is not None and s.l2_view_interval_s > 0
            else None
        ),
    )


async def _run(settings: CollectorSettings, stop_signals: AsyncIterator[int]) -> int:
    s = settings
    structlog.contextvars.bind_contextvars(
        exchange=s.exchange, symbol=s.symbol, data_type=s.data_type
    )
    upkeep = Upkeep(s)
    files = StreamFiles(s, on_backlog=upkeep.backlog, on_due=upkeep.due)
    lock = lock_stream(files.dir)
    try:
        recovered = files.recover()
        if recovered:
            log.warning("file.recovered", files=[str(p) for p in recovered])
        p = build_pipeline(s, files, on_connection=upkeep.status_soon)
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
                if p.snapshots is not None:
                    nursery.start_soon(run_snapshots, s, p.session.deliver_in_order, *p.snapshots)
                if p.l2_view_url is not None:
                    nursery.start_soon(run_l2_views, s, p.session.deliver_in_order, p.l2_view_url)
                nursery.start_soon(p.session.run)
                nursery.start_soon(upkeep.run, files, p.stats, p.processor, p.session)
        finally:
            await finish(s, files, p, upkeep)
    finally:
        lock.close()
    return 0


async def finish(
    settings: CollectorSettings, files: StreamFiles, p: Pipeline, upkeep: Upkeep
) -> None:
    """The last tick, write and close, shielded and bounded by ``shutdown_timeout_s``."""
    stats = p.stats
    with trio.move_on_after(settings.shutdown_timeout_s) as cleanup:
        cleanup.shield = True
        await upkeep.finish(files, stats, p.processor)
    log.info(
        "collector.stopped",
        frames=stats.frames,
        rows=stats.rows,
        gaps=stats.gaps,
        reconnects=stats.reconnects,
    )
