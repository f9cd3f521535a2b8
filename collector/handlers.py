"""One handler per data type: what a stream's records become (rows, markers, requests).

    processor ──records──▶ TradeHandler  trade ids through tradeseq (resume, duplicates,
                                         strays, resets, gaps, heartbeat gaps, tick)
                       ──▶ BookHandler   BookSync verdicts (collector/book.py)
                       ──▶ L3Handler     L3Sync (collector/l3book.py)
    each handler ──▶ Effects (rows, raw markers, snapshot requests, reconnects) + Stats

Every handler has the interface :class:`Handler`; :func:`for_stream` builds the one a stream
needs. Handlers do no I/O and read no clock: time is the frame's receive time, and what
needs the world outside goes through :class:`collector.effects.Effects`. The one decision
made on the wall clock (a trade held too long is accepted, :meth:`TradeHandler.tick`) and
the resume point found on disk are raw markers (``trade_accept``, ``resume``) that
:meth:`Handler.on_marker` replays, so a run driven from a raw file decides the same.

Gaps (sequence, checksum, trade ids, disconnects while synced) and resyncs are counted in
the status and written as raw markers, so QA can explain every moment the data could not be
trusted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from collector import tradeseq
from collector.book import BookSync, Crossed, Gap, NeedSnapshot, Resync, Rows, Stale
from collector.book import Verdict as BookVerdict
from collector.common.errors import FOREIGN_SYMBOL, UnexpectedMessage
from collector.common.structloglib import structlog
from collector.effects import Effects
from collector.exchanges.base import ExchangeAdapter
from collector.l3book import L3Book, L3Sync
from collector.l3book import Resync as L3Resync
from collector.model import BookChecksum, BookUpdate, Control, L3Event, L3Snapshot, Record, Trade
from collector.status import Stats

log = structlog.get_logger()


class Handler(Protocol):
    """The data-type half of a stream's processing; the processor calls it, in frame order."""

    # Whether a quiet stream's frames may wait, gathered, until the next flush round
    # (collector/session.py ``deliver_by``): nothing this handler decides from a frame needs
    # acting on at once. A book's gap or first frame asks for a snapshot or a new stream,
    # and every moment of waiting would be book lost: book handlers take each frame at once.
    batch_quiet: bool

    def on_record(self, rec: Record, ts: float, ts_us: int) -> None:
        """Each record of a frame, in order; a ``Control`` after the processor acted on it.
        ``ts`` is the frame's receive time in s, ``ts_us`` the same in µs (as parsed)."""
        ...

    def on_http(self, body: str | bytes, ts: float) -> None:
        """A REST snapshot body.

        Raises:
            UnexpectedMessage: the body cannot be read (the processor counts it as a bad
                frame, and calls :meth:`on_bad_frame`).
        """
        ...

    def on_disconnect(self, ts: float, reason: str) -> None:
        """The connection ended: what was sent meanwhile is lost."""
        ...

    def on_bad_frame(self, reason: str, ts: float) -> None:
        """A frame of the stream could not be read: an update may be missing."""
        ...

    def on_marker(self, event: Mapping[str, object]) -> None:
        """A raw marker read back from a file: repeat the live decision it records."""
        ...

    def tick(self, now_s: float, *, final: bool = False) -> None:
        """Periodic, on the wall clock (live only); ``final`` at shutdown."""
        ...

    def wants_tick(self) -> bool:
        """Whether :meth:`tick` has anything to do (a quiet stream need not wake for it)."""
        ...


def for_stream(
    adapter: ExchangeAdapter,
    symbol: str,
    data_type: str,
    effects: Effects,
    stats: Stats,
    *,
    book_depth: int,
) -> TradeHandler | BookHandler | L3Handler:
    """The handler of one stream."""
    if data_type == "trade":
        return TradeHandler(symbol, adapter.TRADE_IDS_CONTIGUOUS, effects, stats)
    if data_type == "book":
        return BookHandler(adapter, symbol, book_depth, effects, stats)
    if data_type == "l3":
        return L3Handler(adapter, symbol, effects, stats)
    raise ValueError(f"no handler for data type {data_type!r}")


# --- trades ---------------------------------------------------------------------------------

# One CSV row from a Trade tuple + local_time (µs); %s renders the bool as True/False.
_TRADE_ROW = "%d,%s,%d,%s,%s,%d,%s,%d\n"
# A trade waiting for the next one to decide (see tradeseq): the record, received at (s, µs).
_Held = tuple[Trade, float, int]


class TradeHandler:
    """Trades: the natural successor is written at once (the hot path, inline); any other id
    goes through :class:`collector.tradeseq.TradeSequence`, whose verdicts become rows,
    markers and counters."""

    batch_quiet = True  # a trade id gap is only recorded (a marker): it can wait for the flush

    def __init__(self, symbol: str, contiguous: bool, effects: Effects, stats: Stats) -> None:
        self.symbol = symbol
        self.contiguous = contiguous
        self.effects = effects
        self.add_row = effects.rows.add
        self.stats = stats
        self.seq: tradeseq.TradeSequence[_Held] = tradeseq.TradeSequence(contiguous=contiguous)
        self._hb_pending: int | None = None  # an exchange trade id we have not written yet

    def resume(
        self, ts: float, last_trade_id: int | None, file: str | None, run: object = None
    ) -> None:
        """Start after ``last_trade_id``, where the files on disk end (``file``); recorded as
        the raw marker ``resume``, the sequencer's start for a rebuild too (with ``run``, the
        run's settings: collector/runinfo.py)."""
        self.seq.last = last_trade_id
        self.stats.last_trade_id = last_trade_id
        extra = {} if run is None else {"run": run}
        self.effects.marker("resume", ts, last_trade_id=last_trade_id, file=file, **extra)

    def on_record(self, rec: Record, ts: float, ts_us: int) -> None:
        if type(rec) is Trade:
            if rec.symbol != self.symbol:
                self.stats.add_parse_error(FOREIGN_SYMBOL)
                return
            seq = self.seq
            last = seq.last
            if (
                last is not None
                and rec.trade_id == last + 1
                and seq.contiguous
                and seq.held is None
            ):  # the natural successor, written at once: _write inlined (the hot path: a call
                # per trade costs ~1 % of the pipeline, measured by tests/bench)
                seq.last = rec.trade_id
                self.add_row(_TRADE_ROW % (*rec, ts_us), ts)
                st = self.stats
                st.last_trade_id = rec.trade_id
                st.rows += 1
                return
            self._sequence(seq.feed((rec, ts, ts_us), rec.trade_id, ts), ts)
        elif type(rec) is Control and rec.kind == "heartbeat" and rec.last_trade_id is not None:
            self._heartbeat(rec.last_trade_id, ts)

    def on_http(self, body: str | bytes, ts: float) -> None:
        pass  # trade streams ask for no REST body

    def on_disconnect(self, ts: float, reason: str) -> None:
        pass  # a trade id gap shows itself with the next trade (or heartbeat)

    def on_bad_frame(self, reason: str, ts: float) -> None:
        pass  # likewise: ids, not frames, tell what is missing

    def on_marker(self, event: Mapping[str, object]) -> None:
        t = event.get("t")
        if t == "resume":
            last, file = event.get("last_trade_id"), event.get("file")
            if not (last is None or type(last) is int) or not (file is None or type(file) is str):
                raise ValueError(f"a resume marker without a trade id and a file name: {event}")
            self.resume(_marker_ts(event), last, file, event.get("run"))
        elif t == "trade_accept":
            self._accept(_marker_ts(event), force=True)

    def wants_tick(self) -> bool:
        return self.seq.pending_since() is not None

    def tick(self, now_s: float, *, final: bool = False) -> None:
        """A trade held for the sequencer too long, or whose hour is about to be closed, is
        accepted (the raw marker ``trade_accept`` records the decision)."""
        since = self.seq.pending_since()
        if since is None:
            return
        self._accept(now_s, force=final or int(since // 3600) != int(now_s // 3600))

    def _accept(self, now_s: float, *, force: bool) -> None:
        verdicts = self.seq.resolve(now_s, force=force)
        if verdicts:
            self.effects.marker("trade_accept", now_s, trade_id=self.seq.last)
            self._sequence(verdicts, now_s)

    def _write(self, rec: Trade, ts: float, ts_us: int) -> None:
        self.add_row(_TRADE_ROW % (*rec, ts_us), ts)
        st = self.stats
        st.last_trade_id = rec.trade_id
        st.rows += 1

    def _sequence(self, verdicts: list[tradeseq.Verdict[_Held]], ts: float) -> None:
        """Act on the trade sequencer's verdicts: rows, markers, counters."""
        st = self.stats
        marker = self.effects.marker
        for v in verdicts:
            if type(v) is tradeseq.Write:
                rec, rts, rus = v.item
                self._write(rec, rts, rus)
            elif isinstance(v, tradeseq.Duplicate):
                st.duplicates += 1
            elif isinstance(v, tradeseq.Gap):
                size = v.size
                if self.contiguous:
                    st.add_gap(size, ts)
                    marker("gap", ts, kind="trade_id", expected=v.expected, got=v.got, size=size)
                    log.warning("trade.gap", expected=v.expected, got=v.got, size=size)
            elif isinstance(v, tradeseq.Reset):
                st.trade_id_resets += 1
                marker("trade_reset", ts, last=v.last, got=v.got)
                log.warning("trade.id_reset", last=v.last, got=v.got)
            elif isinstance(v, tradeseq.Stray):
                st.stray_ids += 1
                marker("trade_stray", ts, trade_id=v.trade_id, last=v.last)
                log.warning("trade.stray_id", trade_id=v.trade_id, last=v.last)

    def _heartbeat(self, exchange_last: int, ts: float) -> None:
        """The exchange says its last trade is ``exchange_last`` (Coinbase heartbeats).

        Ahead of what we wrote, it may only be a match still in flight, so the claim is kept
        until the next heartbeat; if we still lack those trades then, they were lost: a gap
        (kind ``heartbeat``), found without waiting for the product's next trade.
        """
        seq = self.seq
        if seq.last is None or not self.contiguous:
            return
        pending = self._hb_pending
        if pending is not None and seq.last < pending:
            gap = seq.skip_to(pending)
            if gap is not None:
                st = self.stats
                st.add_gap(gap.size, ts)
                st.last_trade_id = seq.last
                self.effects.marker(
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


def _marker_ts(event: Mapping[str, object]) -> float:
    ts = event.get("ts")
    if type(ts) is not float and type(ts) is not int:
        raise ValueError(f"a marker without a receive time: {event}")
    return float(ts)


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
