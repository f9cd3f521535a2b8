"""One handler per data type: what a stream's records become (rows, markers, requests).

    processor ──records──▶ TradeHandler  trade ids through tradeseq (resume, duplicates,
                                         strays, resets, gaps, heartbeat gaps, tick)
                       ──▶ BookHandler   BookSync verdicts (collector/book.py)   } in
                       ──▶ L3Handler     L3Sync (collector/l3book.py)           } bookhandlers
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

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from collector import tradeseq
from collector.common.errors import FOREIGN_SYMBOL
from collector.common.structloglib import structlog
from collector.effects import Effects
from collector.exchanges.base import ExchangeAdapter
from collector.model import Control, Record, Trade
from collector.status import Stats

if TYPE_CHECKING:
    from collector.bookhandlers import BookHandler, L3Handler

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
    if data_type in ("book", "l3"):
        # (imported here: a trade stream's process never loads the book machinery, ~3 % of
        # its start-up instructions)
        from collector import bookhandlers

        if data_type == "book":
            return bookhandlers.BookHandler(adapter, symbol, book_depth, effects, stats)
        return bookhandlers.L3Handler(adapter, symbol, effects, stats)
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
