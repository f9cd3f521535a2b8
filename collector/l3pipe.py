"""The ``l3`` data type inside the collector process: records → L3 sync → rows and markers.

Generic over exchanges (the adapter's constants decide): ``L3_SNAPSHOT_FROM_REST`` (Coinbase,
Bitstamp: fetch ``build_l3_snapshot_url`` once subscribed and after every resync) or an
in-stream snapshot (Bitfinex: a resync reconnects, and the new subscription brings the
snapshot); ``L3_ALIGN`` (``sequence`` | ``time``); ``L3_CHECKSUM`` (verify ``BookChecksum``
records against the rebuilt book).

Every (re)sync writes the snapshot's orders as ``snapshot`` rows first, so each file can
rebuild the book from its own start. Gaps (sequence, checksum, disconnect) and resyncs are
counted in the status and written as markers into the raw file, so QA can explain every
moment the book could not be trusted.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from collector.common.errors import UnexpectedMessage
from collector.exchanges.base import ExchangeAdapter
from collector.l3book import L3Book, L3Sync, Resync
from collector.model import BookChecksum, L3Event, L3Snapshot, Record
from collector.status import Stats

log = structlog.get_logger()

L3_RECORDS = (L3Event, L3Snapshot, BookChecksum)


def l3_line(ev: L3Event, ts_ms: int, local_us: int) -> str:
    """One ``l3`` CSV row (columns as ``model.L3_COLUMNS``); absent values stay empty."""
    seq = "" if ev.sequence is None else ev.sequence
    tid = "" if ev.trade_id is None else ev.trade_id
    return (
        f"{ev.ts_ms or ts_ms},{ev.symbol},{seq},{ev.action},{ev.order_id},{ev.side},"
        f"{ev.price},{ev.size},{tid},{ev.maker_order_id},{ev.taker_order_id},{ev.reason},"
        f"{local_us}\n"
    )


class L3Pipeline:
    """Owns the L3 sync of one stream; the processor calls it (no I/O of its own).

    Args:
        adapter: the exchange module (L3 constants, ``parse_l3_snapshot``).
        symbol: the stream's symbol.
        add_row: queue one parsed line (``writer.add(line, ts)``).
        stats: counters of the status file.
        marker: write a raw-file marker (``marker(t, ts, **fields)``).
        request_snapshot: ask the snapshot task for a REST fetch (no-op when one is pending).
        request_reconnect: ask the session to reconnect (in-stream snapshots).
        mark_synced: tells the snapshot task that the last fetch synced the book (pacing).
    """

    def __init__(
        self,
        adapter: ExchangeAdapter,
        symbol: str,
        add_row: Callable[[str, float], None],
        stats: Stats,
        marker: Callable[..., None],
        request_snapshot: Callable[[], None],
        request_reconnect: Callable[[str], None],
        mark_synced: Callable[[], None] = lambda: None,
    ) -> None:
        self.adapter = adapter
        self.symbol = symbol
        self.add_row = add_row
        self.stats = stats
        self.marker = marker
        self.request_snapshot = request_snapshot
        self.request_reconnect = request_reconnect
        self.mark_synced = mark_synced
        self.from_rest: bool = adapter.L3_SNAPSHOT_FROM_REST
        checksum = adapter.L3_CHECKSUM
        self.sync = L3Sync(align=adapter.L3_ALIGN, book=L3Book(track_queues=checksum))

    def on_record(self, rec: Record, ts: float) -> None:
        rows, verdict = self.sync.on_record(rec)
        if rows:
            self.mark_synced()
            ts_ms, local_us = int(ts * 1000), int(ts * 1_000_000)
            add = self.add_row
            for ev in rows:
                add(l3_line(ev, ts_ms, local_us), ts)
            self.stats.add_rows(len(rows), ts)
        if verdict is not None:
            self.on_resync(verdict, ts)

    def on_subscribed(self, ts: float) -> None:
        """The exchange confirmed the subscription: events now buffer, take the snapshot."""
        if self.from_rest and not self.sync.synced:
            self.request_snapshot()

    def on_snapshot_response(self, body: str | bytes, ts: float) -> None:
        parse = self.adapter.parse_l3_snapshot
        if parse is None:
            return  # this exchange has no REST snapshot: none was asked for
        try:
            snap = parse(body, self.symbol, int(ts * 1_000_000))
        except UnexpectedMessage as exc:
            log.error("l3.bad_snapshot", error=str(exc), excerpt=exc.excerpt[:200])
            self.stats.parse_errors += 1
            self.request_snapshot()
            return
        log.info("l3.snapshot", orders=len(snap.orders), sequence=snap.sequence)
        self.on_record(snap, ts)

    def on_disconnect(self, ts: float, reason: str) -> None:
        if self.sync.synced:
            # Events sent while we were away are lost: a gap until the next snapshot.
            self.stats.add_gap(0, ts)
            self.marker("gap", ts, kind="disconnect", reason=reason)
        self.sync.reset()

    def on_bad_frame(self, reason: str, ts: float) -> None:
        """A frame of the stream could not be read: an event may be missing, so the book
        (or the buffer waiting for a snapshot) cannot be trusted: resync."""
        if not self.sync.synced and not self.sync.buffered:
            return
        self.sync.reset()
        self.on_resync(Resync(f"bad_frame: {reason}", 0, 0), ts)

    def on_resync(self, v: Resync, ts: float) -> None:
        st = self.stats
        if v.kind in ("sequence", "checksum"):
            size = v.got - v.expected if v.kind == "sequence" else 0
            st.add_gap(size, ts)
            self.marker("gap", ts, kind=v.kind, expected=v.expected, got=v.got, size=size)
            log.warning("l3.gap", kind=v.kind, expected=v.expected, got=v.got)
        else:
            log.warning("l3.resync_needed", kind=v.kind, expected=v.expected, got=v.got)
        st.resyncs += 1
        self.marker("resync", ts, reason=v.kind)
        if self.from_rest:
            self.request_snapshot()
        else:
            self.request_reconnect(f"l3 resync: {v.kind}")
