"""The book handlers (:mod:`collector.handlers` has the interface and builds them): top-N
books through :class:`collector.book.BookSync` and order-level books through
:class:`collector.l3book.L3Sync`. Their own module, imported by ``handlers.for_stream`` only
for a book or l3 stream, so that a trade stream's process loads none of the book machinery.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from collector.book import BookSync, Crossed, Gap, NeedSnapshot, Resync, Rows, Stale
from collector.book import Verdict as BookVerdict
from collector.common.errors import UnexpectedMessage
from collector.common.structloglib import structlog
from collector.effects import Effects
from collector.exchanges.base import ExchangeAdapter
from collector.l3book import L3Book, L3Sync
from collector.l3book import Resync as L3Resync
from collector.model import BookChecksum, BookUpdate, Control, L3Event, L3Snapshot, Record
from collector.status import Stats

log = structlog.get_logger()


def _disconnect_gap(synced: bool, ts: float, reason: str, effects: Effects, stats: Stats) -> None:
    """A book that was in sync when the connection ended: what was sent while we were away
    is lost, a gap (kind ``disconnect``) until the next snapshot."""
    if synced:
        stats.add_gap(0, ts)
        effects.marker("gap", ts, kind="disconnect", reason=reason)


# --- books ----------------------------------------------------------------------------------


class BookHandler:
    """Top-N books: every ``BookUpdate`` (diffs, stream snapshots, REST snapshots) into
    :class:`collector.book.BookSync`; its verdicts become rows, markers and requests."""

    batch_quiet = False  # a gap or the first frame asks for a snapshot: at once

    def __init__(
        self, adapter: ExchangeAdapter, symbol: str, depth: int, effects: Effects, stats: Stats
    ) -> None:
        self.symbol = symbol
        self.parse_snapshot = adapter.parse_snapshot
        self.sync = BookSync(depth=depth, snapshot_from_rest=adapter.BOOK_SNAPSHOT_FROM_REST)
        self.effects = effects
        self.stats = stats

    def on_record(self, rec: Record, ts: float, ts_us: int) -> None:
        if isinstance(rec, BookUpdate):
            self._verdicts(self.sync.feed(rec), ts)

    def on_http(self, body: str | bytes, ts: float) -> None:
        parse = self.parse_snapshot
        if parse is None:
            return  # this exchange has no REST snapshot: none was asked for
        try:
            snapshot = parse(body, self.symbol)
        except UnexpectedMessage:
            self.effects.request_snapshot()
            raise
        self._verdicts(self.sync.feed(snapshot), ts)

    def on_disconnect(self, ts: float, reason: str) -> None:
        _disconnect_gap(self.sync.synced, ts, reason, self.effects, self.stats)
        self.sync.reset()

    def on_bad_frame(self, reason: str, ts: float) -> None:
        self._verdicts(self.sync.discard(f"bad_frame: {reason}"), ts)

    def on_marker(self, event: Mapping[str, object]) -> None:
        pass  # every book marker is an output (gap, resync)

    def tick(self, now_s: float, *, final: bool = False) -> None:
        pass

    def wants_tick(self) -> bool:
        return False

    def _verdicts(self, verdicts: Sequence[BookVerdict], ts: float) -> None:
        st = self.stats
        effects = self.effects
        for v in verdicts:
            if type(v) is Rows:
                effects.synced()
                ts_ms = v.ts_ms or int(ts * 1000)
                ts_us = int(ts * 1_000_000)
                sym = self.symbol
                add = effects.rows.add
                for level, (price, qty) in enumerate(v.bids, 1):
                    add(f"{ts_ms},{sym},B,{price},{qty},{level},{ts_us}\n", ts)
                for level, (price, qty) in enumerate(v.asks, 1):
                    add(f"{ts_ms},{sym},A,{price},{qty},{level},{ts_us}\n", ts)
                st.add_rows(len(v.bids) + len(v.asks), ts)
            elif isinstance(v, NeedSnapshot):
                effects.request_snapshot()
            elif isinstance(v, Gap):
                size = v.got - v.expected
                st.add_gap(size, ts)
                effects.marker(
                    "gap", ts, kind="sequence", expected=v.expected, got=v.got, size=size
                )
                log.warning("book.gap", expected=v.expected, got=v.got, size=size)
            elif isinstance(v, Stale):
                log.warning(
                    "book.stale_snapshot", snapshot_id=v.snapshot_id, first_buffered_id=v.first_id
                )
            elif isinstance(v, Crossed):
                log.error("book.crossed", best_bid=list(v.best_bid), best_ask=list(v.best_ask))
            elif isinstance(v, Resync):
                st.resyncs += 1
                effects.marker("resync", ts, reason=v.reason)
                log.warning("book.resync", reason=v.reason, reconnect=v.reconnect)
                if v.reconnect:
                    effects.request_reconnect(f"book resync: {v.reason}")


# --- L3 -------------------------------------------------------------------------------------

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


class L3Handler:
    """Order-level books through :class:`collector.l3book.L3Sync`, generic over exchanges
    (the adapter's constants decide):

    - ``L3_SNAPSHOT_FROM_REST`` (Coinbase, Bitstamp): a REST snapshot
      (``build_l3_snapshot_url``) once subscribed and after every resync; else an in-stream
      snapshot (Bitfinex): a resync reconnects, and the new subscription brings the snapshot;
    - ``L3_ALIGN`` (``sequence`` | ``time``): how the snapshot aligns with buffered events;
    - ``L3_CHECKSUM``: ``BookChecksum`` records are verified against the rebuilt book.

    Every (re)sync writes the snapshot's orders as ``snapshot`` rows first, so each file can
    rebuild the book from its own start.
    """

    batch_quiet = False  # a resync asks for a snapshot or a new stream: at once

    def __init__(
        self, adapter: ExchangeAdapter, symbol: str, effects: Effects, stats: Stats
    ) -> None:
        self.symbol = symbol
        self.parse_snapshot = adapter.parse_l3_snapshot
        self.from_rest: bool = adapter.L3_SNAPSHOT_FROM_REST
        self.sync = L3Sync(align=adapter.L3_ALIGN, book=L3Book(track_queues=adapter.L3_CHECKSUM))
        self.effects = effects
        self.stats = stats

    def on_record(self, rec: Record, ts: float, ts_us: int) -> None:
        if isinstance(rec, L3_RECORDS):
            self._on_l3(rec, ts)
        elif (
            type(rec) is Control
            and rec.kind == "subscribed"
            and self.from_rest
            and not self.sync.synced
        ):  # events now buffer: take the snapshot
            self.effects.request_snapshot()

    def _on_l3(self, rec: Record, ts: float) -> None:
        rows, verdict = self.sync.on_record(rec)
        if rows:
            self.effects.synced()
            ts_ms, local_us = int(ts * 1000), int(ts * 1_000_000)
            add = self.effects.rows.add
            for ev in rows:
                add(l3_line(ev, ts_ms, local_us), ts)
            self.stats.add_rows(len(rows), ts)
        if verdict is not None:
            self._resync(verdict, ts)

    def on_http(self, body: str | bytes, ts: float) -> None:
        parse = self.parse_snapshot
        if parse is None:
            return  # this exchange has no REST snapshot: none was asked for
        try:
            snap = parse(body, self.symbol, int(ts * 1_000_000))
        except UnexpectedMessage as exc:
            # The book waits for a snapshot anyway: ask again (no resync, no reason counted).
            log.error("l3.bad_snapshot", error=str(exc), excerpt=exc.excerpt[:200])
            self.stats.parse_errors += 1
            self.effects.request_snapshot()
            return
        log.info("l3.snapshot", orders=len(snap.orders), sequence=snap.sequence)
        self._on_l3(snap, ts)

    def on_disconnect(self, ts: float, reason: str) -> None:
        _disconnect_gap(self.sync.synced, ts, reason, self.effects, self.stats)
        self.sync.reset()

    def on_bad_frame(self, reason: str, ts: float) -> None:
        """An event may be missing, so the book (or the buffer waiting for a snapshot) cannot
        be trusted: resync."""
        if not self.sync.synced and not self.sync.buffered:
            return
        self.sync.reset()
        self._resync(L3Resync(f"bad_frame: {reason}", 0, 0), ts)

    def on_marker(self, event: Mapping[str, object]) -> None:
        pass  # every l3 marker is an output (gap, resync)

    def tick(self, now_s: float, *, final: bool = False) -> None:
        pass

    def wants_tick(self) -> bool:
        return False

    def _resync(self, v: L3Resync, ts: float) -> None:
        st = self.stats
        marker = self.effects.marker
        if v.kind in ("sequence", "checksum"):
            size = v.got - v.expected if v.kind == "sequence" else 0
            st.add_gap(size, ts)
            marker("gap", ts, kind=v.kind, expected=v.expected, got=v.got, size=size)
            log.warning("l3.gap", kind=v.kind, expected=v.expected, got=v.got)
        else:
            log.warning("l3.resync_needed", kind=v.kind, expected=v.expected, got=v.got)
        st.resyncs += 1
        marker("resync", ts, reason=v.kind)
        if self.from_rest:
            self.effects.request_snapshot()
        else:
            self.effects.request_reconnect(f"l3 resync: {v.kind}")
