"""A raw file read back through the collector's own processor: what QA knows of an hour's frames.

The lines of one raw file drive ``collector.processor.Processor`` with file-mode effects, as
a rebuild does (``Processor.replay``), so QA sees each frame as the collector did instead of
re-deriving it: the same parser (made for the stream: its symbol, its options), the same
reasons, the same trade sequencing and book sync. QA wraps the processor's ``parse`` to see
each frame's records, and asks the handler afterwards what became of them. From one pass it
learns:

- the frame kinds (``Stats.frames_by_kind``) and what is new in the stream (``new_kinds``);
- every frame that produced no row, by reason (``qa.checks.raw.HARMLESS`` ones are expected; the
  others are worth a look): the collector's parse reasons (``bad_value:p``,
  ``unknown_type``...), ``ignored`` (a known type the stream does not record), ``duplicate``
  (a trade already written), ``stray`` (a trade id that fitted no sequence),
  ``held_at_end`` (a held trade the file never decided), ``top_unchanged`` (a book diff that
  left the top N as it was), ``waiting_for_snapshot`` (buffered while the book was out of
  sync; applied or superseded by the snapshot), ``no_book_change`` (an l3 event that does
  not touch the book), ``checksum`` (a book checksum frame), ``other_data_type`` (records of
  another data type than the stream's), ``fatal_error_frame`` (an error that ended the
  collector) and ``not_judged`` (a book frame before the file's first sync or desync, when
  the file starts inside a book synced in an earlier hour: what the collector's book held
  then is not in this file);
- the markers (``gap``, ``resync``, connects and disconnects) with their times: what the
  completeness ledger (``qa/ledger.py``) is made of, and the book's sync transitions.

Control frames are not "frames without rows": they never carry rows. A line that is neither a
frame nor a marker of ours (not JSON, no kind or time, a forged field) is counted as a bad
line and skipped; every value read from a marker is checked (type, range) before it is used,
and names that become keys are cleaned (``errors.clean_name``).
"""

from __future__ import annotations

import binascii
import itertools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import orjson

from collector import bookhandlers, handlers
from collector.common.errors import IGNORED, CollectorError, FeedError, UnexpectedMessage
from collector.common.layout import FileInfo
from collector.effects import Effects
from collector.exchanges.base import MAX_ID, ExchangeAdapter, OptionValue, StreamSpec
from collector.model import BookChecksum, BookUpdate, Control, Record, Trade
from collector.processor import FRAME_KINDS, Processor
from collector.status import Stats
from qa.checks.raw import MAX_MARKS, GapMark, RawSummary

# Gap markers the collector writes (handlers.py, bookhandlers.py); any other kind counts as
# "other".
GAP_KINDS = frozenset({"trade_id", "heartbeat", "sequence", "checksum", "disconnect"})
# Markers that say a book could not be trusted from then on.
DESYNC_MARKERS = frozenset({"gap", "resync"})
# Plausible receive times (s): nothing we collect predates 2009 or postdates 2100.
MIN_TS_S, MAX_TS_S = 1_230_768_000.0, 4_102_444_800.0


class _Nothing:
    """A sink that keeps nothing (the raw lines the replay writes again are not needed)."""

    def add(self, line: str, ts_s: float) -> None:
        pass


class _Rows:
    """The replay's parsed rows: counted; the lines of the current step kept (trade ids)."""

    def __init__(self) -> None:
        self.count = 0
        self.step: list[str] = []

    def add(self, line: str, ts_s: float) -> None:
        self.count += 1
        self.step.append(line)


class _Recorder:
    """Wraps the processor's parser: the records (or the error) of the frame just parsed."""

    def __init__(self, parse: Any) -> None:
        self._parse = parse
        self.records: list[Record] | None = None
        self.error: UnexpectedMessage | None = None

    def __call__(self, raw: str | bytes, ts_recv_us: int) -> list[Record]:
        self.records, self.error = None, None
        try:
            self.records = self._parse(raw, ts_recv_us)
        except UnexpectedMessage as exc:
            self.error = exc
            raise
        return self.records


def _id_or_none(value: object) -> int | None:
    return value if type(value) is int and 0 <= value < MAX_ID else None


class _Replay:
    """One raw file through a fresh processor (see the module docstring)."""

    def __init__(
        self,
        info: FileInfo,
        adapter: ExchangeAdapter | None,
        options: Mapping[str, OptionValue],
        book_depth: int,
        record_type: type | None,
        resume: tuple[int, str] | None,
    ) -> None:
        self.info = info
        self.resume_at = resume
        self.record_type = record_type
        self.rows = _Rows()
        self.stats = Stats(info.exchange, info.symbol, info.data_type)
        self.r = RawSummary()
        self.handler: (
            handlers.TradeHandler | bookhandlers.BookHandler | bookhandlers.L3Handler | None
        )
        self.handler = self.processor = None
        if adapter is not None:
            effects = Effects(_Nothing(), self.rows)
            spec = StreamSpec(info.symbol, info.data_type, options=options)
            try:
                self.handler = handlers.for_stream(
                    adapter, info.symbol, info.data_type, effects, self.stats, book_depth=book_depth
                )
                self.processor = Processor(adapter, spec, self.handler, effects, self.stats)
            except ValueError as exc:  # a data type or an option the adapter does not have
                self.r.replay_error = str(exc)[:200]
                self.handler = None
        self.recorder: _Recorder | None = None
        if self.processor is not None:
            self.recorder = _Recorder(self.processor.parse)
            self.processor.parse = self.recorder
            self.r.replayed = True
        self.seen_connection = False  # a connect, disconnect or recv was seen
        self.judged = False  # the book state is the collector's (see not_judged)
        self.synced = False
        self.last_data_ts: float | None = None  # the last frame with data records
        self.data_before: float | None = None  # the one before it
        self.down_since: float | None = None
        self.pending: dict[int, int] = {}  # held trade ids of frames that got no row yet
        self.is_book = isinstance(self.handler, bookhandlers.BookHandler | bookhandlers.L3Handler)

    def line(self, line: bytes) -> None:
        r = self.r
        if not line.strip():
            return
        r.lines += 1
        try:
            ev = orjson.loads(line)
        except orjson.JSONDecodeError:
            r.bad_lines += 1
            return
        if type(ev) is not dict:
            r.bad_lines += 1
            return
        t, ts = ev.get("t"), ev.get("ts")
        if (
            type(t) is not str
            or (type(ts) is not float and type(ts) is not int)
            or not MIN_TS_S <= ts < MAX_TS_S
        ):
            r.bad_lines += 1
            return
        ts = float(ts)
        if r.first_ts is None:
            r.first_ts = ts
            h = self.handler
            if isinstance(h, handlers.TradeHandler) and self.resume_at and t != "resume":
                # a file that continues a running collector: its trades follow the previous
                # file's last one (a file that starts a collector begins with `resume`)
                h.resume(self.info.start_ms / 1000, *self.resume_at)
        r.last_ts = ts
        self.rows.step.clear()
        if t in FRAME_KINDS:
            self._frame(t, ev, ts)
        else:
            self._marker(t, ev, ts)
        if self.pending and self.rows.step:
            self._written(self.rows.step)
        if self.is_book:
            self._sync_state(ts)

    def _frame(self, t: str, ev: dict[str, Any], ts: float) -> None:
        r = self.r
        if t == "recv":
            r.frames += 1
            if not self.seen_connection:  # frames before any connect: the connection was up
                self.seen_connection = True
                r.starts_connected = True
        elif t in ("connect", "disconnect"):
            self._connection(t == "connect", ts)
        if self.processor is None or self.recorder is None:
            return  # the frames cannot be read as the collector did: markers only
        rows0, dups0, errors0 = self.rows.count, self.stats.duplicates, self.stats.parse_errors
        held0 = self._held_id()
        rec = self.recorder
        rec.records, rec.error = None, None
        try:
            self.processor.replay(ev)
        except FeedError:
            r.count_without_rows("fatal_error_frame")
            return
        except (ValueError, TypeError, binascii.Error, CollectorError):
            r.bad_lines += 1  # not a frame of our envelope (a forged or cut line)
            return
        if t == "recv":
            self._classify(ts, rows0, dups0, errors0, held0)

    def _connection(self, connected: bool, ts: float) -> None:
        r = self.r
        if not self.seen_connection:
            r.starts_connected = not connected
            # a fresh connection: the book starts empty for the collector as for the replay
            self.judged = self.judged or connected
        self.seen_connection = True
        if len(r.conn_events) < MAX_MARKS:
            r.conn_events.append((ts, connected))
        if connected:
            r.connects += 1
            if self.down_since is not None:
                r.downtime_s += max(0.0, ts - self.down_since)
                self.down_since = None
        else:
            r.disconnects += 1
            if self.down_since is None:
                self.down_since = ts
            self._desync(ts)

    def _classify(self, ts: float, rows0: int, dups0: int, errors0: int, held0: int | None) -> None:
        """Why a frame just handled produced no row (nothing to say when it did)."""
        r, rec = self.r, self.recorder
        assert rec is not None
        if rec.error is not None:
            r.count_without_rows(rec.error.reason_key)
            return
        records = rec.records or []
        has_data = False
        counted, symbol = self.record_type, self.info.symbol
        for x in records:  # (the common case, one record, costs this loop only)
            if type(x) is not Control:
                has_data = True
                if type(x) is counted and getattr(x, "symbol", "") == symbol:
                    r.records += 1
        if records and not has_data:
            return  # a control frame
        if has_data:
            self.data_before, self.last_data_ts = self.last_data_ts, ts
        if self.rows.count > rows0:
            return
        data = [x for x in records if type(x) is not Control]
        if not records:
            r.count_without_rows(IGNORED)
        elif isinstance(self.handler, handlers.TradeHandler):
            self._trade_without_rows(data, dups0, errors0, held0)
        elif all(type(x) is BookChecksum for x in data):
            r.count_without_rows("checksum")
        elif not any(isinstance(x, (*bookhandlers.L3_RECORDS, BookUpdate)) for x in data):
            r.count_without_rows("other_data_type")
        elif self._book_synced():
            is_l3 = isinstance(self.handler, bookhandlers.L3Handler)
            r.count_without_rows("no_book_change" if is_l3 else "top_unchanged")
        else:
            r.count_without_rows("waiting_for_snapshot" if self.judged else "not_judged")

    def _trade_without_rows(
        self, data: list[Record], dups0: int, errors0: int, held0: int | None
    ) -> None:
        r = self.r
        trades = [x for x in data if type(x) is Trade]
        if not trades:
            r.count_without_rows("other_data_type")
        elif self.stats.duplicates > dups0:
            r.count_without_rows("duplicate")
        elif self.stats.parse_errors > errors0:
            r.count_without_rows("foreign_symbol")  # a record of another symbol
        else:
            held = self._held_id()
            if held is not None and held != held0:
                self.pending[held] = self.pending.get(held, 0) + 1  # decided later
            else:
                r.count_without_rows("not_written")

    def _held_id(self) -> int | None:
        h = self.handler
        if isinstance(h, handlers.TradeHandler) and h.seq.held is not None:
            return h.seq.held[1]
        return None

    def _written(self, lines: list[str]) -> None:
        """Rows written in this step: a held trade among them did get its row."""
        for line in lines:
            parts = line.split(",", 3)
            if len(parts) > 2 and parts[2].isdigit():
                self.pending.pop(int(parts[2]), None)

    def _marker(self, t: str, ev: dict[str, Any], ts: float) -> None:
        r = self.r
        if t == "gap":
            self._gap(ev, ts)
        elif t == "resync":
            r.resyncs += 1
            self._desync(ts)
        elif t == "trade_reset":
            r.trade_resets += 1
        elif t == "resume" and r.resume_trade_id is None:
            r.resume_trade_id = _id_or_none(ev.get("last_trade_id"))
        if self.processor is None:
            return
        try:
            self.processor.replay(ev)  # resume and trade_accept repeat a live decision
        except (ValueError, TypeError, CollectorError):
            r.bad_markers += 1

    def _gap(self, ev: dict[str, Any], ts: float) -> None:
        r = self.r
        raw_kind = ev.get("kind")
        kind = raw_kind if type(raw_kind) is str and raw_kind in GAP_KINDS else "other"
        size_v, expected, got = ev.get("size"), ev.get("expected"), ev.get("got")
        size = _id_or_none(size_v)
        if (
            kind == "other"
            or (size_v is not None and size is None)
            or (expected is not None and _id_or_none(expected) is None)
            or (got is not None and _id_or_none(got) is None)
        ):
            r.bad_markers += 1
        g = r.gaps.setdefault(kind, {"count": 0, "size": 0})
        g["count"] += 1
        g["size"] += size or 0
        if len(r.gap_marks) < MAX_MARKS:
            # data was missing since the data frame before the one that showed the gap (or,
            # for a gap a heartbeat showed, since the last data frame)
            since = self.data_before if ts == self.last_data_ts else self.last_data_ts
            since = None if kind == "disconnect" else since
            mark = GapMark(ts, since, kind, _id_or_none(expected), _id_or_none(got), size)
            r.gap_marks.append(mark)
        if kind != "trade_id" and kind != "heartbeat":
            self._desync(ts)

    def _desync(self, ts: float) -> None:
        self.judged = True
        if len(self.r.desyncs) < MAX_MARKS:
            self.r.desyncs.append(ts)

    def _book_synced(self) -> bool:
        h = self.handler
        if isinstance(h, bookhandlers.BookHandler | bookhandlers.L3Handler):
            return bool(h.sync.synced)
        return False

    def _sync_state(self, ts: float) -> None:
        synced = self._book_synced()
        if synced and not self.synced:
            self.judged = True
            if len(self.r.syncs) < MAX_MARKS:
                self.r.syncs.append(ts)
        elif self.synced and not synced:
            self._desync(ts)
        self.synced = synced

    def finish(self) -> RawSummary:
        r = self.r
        if self.down_since is not None and r.last_ts is not None:
            r.downtime_s += max(0.0, r.last_ts - self.down_since)
        held = self._held_id()
        for trade_id, frames in self.pending.items():
            for _ in range(frames):
                r.count_without_rows("held_at_end" if trade_id == held else "stray")
        if self.processor is not None:
            r.kinds = self.stats.frames_by_kind()
            r.new_kinds = dict(self.stats.new_kinds)
            r.parse_errors = self.stats.parse_errors
            r.rows = self.rows.count
        if isinstance(self.handler, bookhandlers.BookHandler | bookhandlers.L3Handler):
            r.synced_at_end = self.synced
        return r


def replay_raw(
    lines: Iterable[bytes],
    info: FileInfo,
    adapter: ExchangeAdapter | None,
    *,
    options: Mapping[str, OptionValue] | None = None,
    book_depth: int = 5,
    record_type: type | None = None,
    resume: tuple[int, str] | None = None,
) -> RawSummary:
    """Read a raw file's lines through the collector's processor (the module docstring).

    Args:
        lines: the raw file's JSONL lines.
        info: the file's stream and hour (its name).
        adapter: the stream's exchange; None (an exchange QA does not know): the markers
            only (``replayed`` False).
        options: the adapter's options, as the collectors have them (the stream's parser
            depends on them: Binance ``binance_trade_stream``).
        book_depth: ``[collector] book_depth`` (which diffs change the top N).
        record_type: count records of this class of the file's symbol (``Trade``), or None.
        resume: (last trade id, file) where the previous file of the stream ended, for a file
            that continues a running collector (a file that starts one has a ``resume``).

    A stream the adapter cannot make a parser for (a data type or an option it does not have)
    is read for its markers only, with ``replay_error`` saying why.
    """
    it = iter(lines)
    head, opts = _subscribed_options(it, adapter, options or {})
    replay = _Replay(info, adapter, opts, book_depth, record_type, resume)
    for line in itertools.chain(head, it):
        replay.line(line)
    return replay.finish()


# Lines read ahead for the collector's own subscribe frame.
HEAD_LINES = 100


def _subscribed_options(
    it: Iterator[bytes], adapter: ExchangeAdapter | None, options: Mapping[str, OptionValue]
) -> tuple[list[bytes], dict[str, OptionValue]]:
    """The options the file's collector had: ``options`` (the config's), updated from its
    first subscribe frame (``options_from_subscribe``) when one comes before any frame of
    the exchange (a file that starts a collector or a connection); the lines read ahead."""
    opts = dict(options)
    derive = adapter.options_from_subscribe if adapter is not None else None
    head: list[bytes] = []
    if derive is None:
        return head, opts
    for line in it:
        head.append(line)
        try:
            ev = orjson.loads(line)
        except orjson.JSONDecodeError:
            ev = None
        t = ev.get("t") if type(ev) is dict else None
        if t == "send":
            data = ev.get("data") if type(ev) is dict else None
            if type(data) is str:
                opts.update(derive(data))
            break
        if t == "recv" or len(head) >= HEAD_LINES:
            break
    return head, opts
