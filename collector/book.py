"""Local L2 order book: price-level state plus snapshot/diff alignment (pure: no I/O, no clock).

Two layers:

- :class:`L2Book` holds the levels of one symbol and knows its top N. Prices are ordered as
  exact decimals: each price string becomes an ``int`` scaled by the book's decimal exponent
  (``"0.35210000"`` at scale 8 → ``35210000``), never a float. A price with more decimals
  than the current scale rescales the whole book once (exact, order preserving). Each side
  keeps a dict key → the exchange's ``(price, quantity)`` strings (what the output carries)
  and a sorted ``list`` (:mod:`bisect`, C) of only its best few hundred keys, best last (asks
  stored negated): a change near the top moves a few pointers, a change deeper than that
  costs one dict operation, and the sorted front is cut back or refilled (one O(n)
  selection) only when it grows past ``FRONT_MAX`` or drops below N. No re-sort per update.
  ``apply()`` only looks at the top N when a touched level is inside it (a cached boundary
  key per side), and then reports a change only if the top N rows really differ.
- :class:`BookSync` is the state machine the collector feeds with ``BookUpdate`` records in
  arrival order (diffs and snapshots alike). It returns *verdicts*; its caller does the I/O.

Sync procedures (chosen by a flag, never by exchange name):

- ``snapshot_from_rest=True`` (adapter constant ``BOOK_SNAPSHOT_FROM_REST``; Binance): the
  current Binance procedure, web-socket-streams.md "How to manage a local order book
  correctly", revision of 2025-11-12 (shared/docs/exchanges.md §1):

  1. buffer diffs (bounded: ``max_buffered``; overflow → ``Resync("overflow")`` and a fresh
     buffer), and ask for a REST snapshot (``NeedSnapshot``) once the first diff is buffered,
     so the snapshot is never older than the stream (python-binance#70, cryptostore#57);
  2. if the snapshot's ``lastUpdateId`` < the first buffered ``U``: ``Stale`` + ``NeedSnapshot``
     (the buffer is kept);
  3. drop buffered diffs with ``u <= lastUpdateId``, load the snapshot, book id = lastUpdateId;
  4. for each buffered then live diff: ``u <= book id`` → ignored; ``U > book id + 1`` → a gap:
     ``Gap(expected=book id + 1, got=U)``, the book is discarded, that diff starts a new buffer,
     ``Resync("gap")`` + ``NeedSnapshot``; otherwise apply it and book id = ``u``.

  Where this differs from the issue's (pre-2024) wording: the first applied diff is checked
  as ``U <= lastUpdateId + 1`` (it also holds ``lastUpdateId + 1 <= u`` because diffs with
  ``u <= lastUpdateId`` were dropped), and a later diff that *overlaps* the book id
  (``U <= book id < u``) is applied rather than treated as a gap; a diff wholly at or below the
  book id is ignored (counted in ``ignored``) instead of being a gap. Step 2's check is the
  docs' literal one, so a snapshot with ``lastUpdateId == U - 1`` is also refetched.

- ``snapshot_from_rest=False`` (Coinbase ``level2``): a snapshot in the stream replaces the book
  whenever it comes; diffs before the first snapshot are dropped (``dropped``). If diffs carry
  ids they are checked as above; without ids (Coinbase) a disconnect is the only gap and the
  caller reports it. A discarded book here needs a new connection: ``Resync.reconnect`` is True.

After every sync the top N is emitted (``Rows``) from the snapshot plus buffered diffs, so the
first rows after a resync come from the new snapshot; no rows come out while out of sync. Then
``Rows`` comes for each diff that changes the top N. A top change that leaves the book crossed
(best bid >= best ask) yields ``Crossed`` (log it as an error: it is a bug) and
``Resync("crossed")``; the rows of that diff are not emitted. A price that cannot be read as a
decimal raises ``UnexpectedMessage`` from ``L2Book``; ``BookSync`` turns it into
``Resync("bad_level: ...")`` because the half-applied book is unusable.

Wiring (``collector.bookhandlers.BookHandler``; ``adapter`` is the exchange module)::

    sync = BookSync(depth=book_depth, snapshot_from_rest=adapter.BOOK_SNAPSHOT_FROM_REST)
    # Feed every BookUpdate from adapter.parse() and every REST snapshot
    # (adapter.parse_snapshot(body, symbol)) in arrival order:
    for v in sync.feed(update):
        match v:
            case Rows():  # v.ts_ms == 0 (bare snapshot): use the receive time instead
                for row in v.csv_rows(symbol, local_time_us):  # BOOK_COLUMNS order
                    ...  # parsed writer
            case Gap():  # log "book.gap" (expected, got); gaps += 1;
                ...  # raw {"t":"gap","kind":"sequence","expected":..,"got":..}
            case Crossed():  # log.error("book.crossed", best_bid=.., best_ask=..)
                ...
            case Stale():  # log; a NeedSnapshot follows: refetch within the weight budget
                ...
            case Resync():  # log; resyncs += 1; raw {"t":"resync","reason":v.reason}
                ...  # if v.reconnect: close the connection (stream-snapshot books)
            case NeedSnapshot():  # start a REST fetch unless one is in flight, feed the result
                ...
    # On disconnect: sync.reset() (Coinbase: record a gap of kind "disconnect").

Example (Binance, book id in brackets)::

    feed(diff U=98 u=100)         -> [NeedSnapshot()]          buffered
    feed(diff U=101 u=103)        -> []                        buffered
    feed(snapshot lastUpdateId=101) -> [Rows(...)]             U=98 dropped, 101..103 applied [103]
    feed(diff U=104 u=104)        -> [Rows(...)] or []         [104], rows only if top N changed
    feed(diff U=107 u=109)        -> [Gap(105, 107), Resync("gap"), NeedSnapshot()]
    feed(snapshot lastUpdateId=100) -> [Stale(100, 107), NeedSnapshot()]
    feed(snapshot lastUpdateId=110) -> [Rows(...)]             107..109 dropped [110]
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from collector.common.errors import UnexpectedMessage
from collector.model import DEFAULT_BOOK_DEPTH, MAX_BOOK_DEPTH, BookUpdate, PriceLevel

DEFAULT_DEPTH = DEFAULT_BOOK_DEPTH
# Buffered diffs while waiting for a REST snapshot: 200 s of Binance @depth@100ms.
DEFAULT_MAX_BUFFERED = 2000
# Price-string → key caches are cleared when they grow past this (bounds memory).
_KEY_CACHE_MAX = 100_000

_ZEROS = frozenset(
    ["0", "0.", ".0", "-0", "+0"]
    + ["0." + "0" * i for i in range(1, 21)]
    + [f"0{e}-{i}" for e in "Ee" for i in range(0, 21)]
)
_ALL = float("-inf")  # compared with int keys only: every key is above it
# Sorted front of each side: cut back to FRONT keys above FRONT_MAX (see _Side).
MAX_DEPTH = MAX_BOOK_DEPTH
FRONT = 2 * MAX_DEPTH
FRONT_MAX = 1024
_POW10: list[int] = [10**i for i in range(64)]


def is_zero(qty: str) -> bool:
    """True for any decimal zero: ``"0"``, ``"0.00000000"``, ``"0E-8"``, ``"-0.0"``..."""
    return qty in _ZEROS or (qty < "1" and _slow_is_zero(qty))


def _slow_is_zero(qty: str) -> bool:
    # Only for strings that sort below "1": leading 0 . + - (or junk), e.g. "0.0123", "0E-8".
    if not qty:
        raise UnexpectedMessage("empty quantity")
    mantissa = qty.lstrip("+-").lstrip("0.")
    return not mantissa or mantissa[0] in "eE"


class _Side:
    """One side of the book.

    ``levels`` maps every key to its level. ``front`` holds, sorted with the best last, exactly
    the keys >= ``front_min`` (-inf: all of them), so only changes near the top pay for
    ordering; a level below ``front_min`` costs one dict operation. ``front`` is cut back to
    ``FRONT`` keys when it passes ``FRONT_MAX``, and refilled (one O(n) selection) when it
    drops below N while levels remain outside it.
    """

    __slots__ = ("sign", "front", "front_min", "levels", "cache", "edge", "top")

    def __init__(self, sign: int) -> None:
        self.sign = sign  # +1 bids, -1 asks: a larger key is always a better level
        self.front: list[int] = []
        self.front_min: float = _ALL
        self.levels: dict[int, PriceLevel] = {}
        self.cache: dict[str, int] = {}
        # The N-th best key, or -inf when the side has fewer than N levels (all are in the top).
        self.edge: float = _ALL
        self.top: list[PriceLevel] = []

    def clear(self) -> None:
        self.front.clear()
        self.front_min = _ALL
        self.levels.clear()
        self.edge = _ALL
        self.top = []

    def rebuild_front(self) -> None:
        levels = self.levels
        if len(levels) <= FRONT_MAX:
            self.front[:] = sorted(levels)
            self.front_min = _ALL
        else:
            self.front[:] = heapq.nlargest(FRONT, levels)[::-1]
            self.front_min = self.front[0]

    def best_keys(self, n: int) -> list[int]:
        """The best ``n`` keys, best first."""
        front = self.front
        if len(front) < n and self.front_min != _ALL:
            return heapq.nlargest(n, self.levels)
        return front[: -n - 1 : -1] if n > 0 else []


class L2Book:
    """Price levels of one symbol, ordered as exact decimals, with a cached top ``depth``."""

    def __init__(self, depth: int = DEFAULT_DEPTH) -> None:
        if depth < 1:
            raise ValueError(f"book depth must be >= 1, got {depth}")
        if depth > MAX_DEPTH:
            raise ValueError(f"book depth must be <= {MAX_DEPTH}, got {depth}")
        self.depth = depth
        self._scale = 0  # keys are prices × 10**scale
        self._bids = _Side(1)
        self._asks = _Side(-1)

    # -- queries -------------------------------------------------------------------------

    def top(self, n: int | None = None) -> tuple[list[PriceLevel], list[PriceLevel]]:
        """The best ``n`` (default: depth) bids and asks, best first, as exchange strings."""
        if n is None or n == self.depth:
            return self._bids.top, self._asks.top
        return self._top_of(self._bids, n), self._top_of(self._asks, n)

    def best(self) -> tuple[PriceLevel | None, PriceLevel | None]:
        b, a = self._bids.top, self._asks.top
        return (b[0] if b else None, a[0] if a else None)

    def is_crossed(self) -> bool:
        """Best bid >= best ask (a locked book counts as crossed)."""
        b, a = self._bids.front, self._asks.front
        return bool(b) and bool(a) and b[-1] >= -a[-1]

    def sizes(self) -> tuple[int, int]:
        return len(self._bids.levels), len(self._asks.levels)

    def __len__(self) -> int:
        return len(self._bids.levels) + len(self._asks.levels)

    # -- changes -------------------------------------------------------------------------

    def clear(self) -> None:
        self._bids.clear()
        self._asks.clear()

    def load(self, bids: Iterable[PriceLevel], asks: Iterable[PriceLevel]) -> None:
        """Replace the whole book (a snapshot). Zero quantities are skipped."""
        self.clear()
        for side, rows in ((self._bids, bids), (self._asks, asks)):
            levels = side.levels
            for level in rows:
                price, qty = level
                k = side.cache.get(price)
                if k is None:
                    k = self._new_key(side, price)
                if is_zero(qty):
                    levels.pop(k, None)  # a later duplicate with size 0 removes it
                else:
                    levels[k] = level
            side.rebuild_front()
        self._refresh(self._bids)
        self._refresh(self._asks)

    def apply(self, update: BookUpdate) -> bool:
        """Apply a diff (or load a snapshot); True when the top ``depth`` rows changed.

        A snapshot always returns True. Zero quantity removes a level; removing an absent level
        does nothing; an unchanged (price, quantity) does nothing.
        """
        if update.is_snapshot:
            self.load(update.bids, update.asks)
            return True
        bids = update.bids
        asks = update.asks
        changed = bool(bids) and self._apply_side(self._bids, bids)
        if asks and self._apply_side(self._asks, asks):
            changed = True
        return changed

    def _apply_side(self, side: _Side, rows: Sequence[PriceLevel]) -> bool:
        # The hot loop: locals only. ``touched`` = a change at or above the N-th best level
        # before it happened (``edge`` is -inf while the side has fewer than N levels); once
        # touched, the edge may be stale but is no longer needed. edge >= front_min always.
        front = side.front
        front_min = side.front_min
        levels = side.levels
        cache = side.cache
        edge = side.edge
        zeros = _ZEROS
        touched = False
        for level in rows:
            price, qty = level
            k = cache.get(price)
            if k is None:
                k = self._new_key(side, price)
                edge = side.edge  # a rescale changes every key
                front_min = side.front_min
            if qty in zeros or (qty < "1" and _slow_is_zero(qty)):
                if levels.pop(k, None) is not None and k >= front_min:
                    del front[bisect_left(front, k)]
                    if k >= edge:
                        touched = True
            else:
                old = levels.get(k)
                if old is None:
                    levels[k] = level
                    if k >= front_min:
                        insort(front, k)
                        if k > edge:
                            touched = True
                elif old != level:
                    levels[k] = level
                    if k >= edge:
                        touched = True
        if len(front) > FRONT_MAX:
            del front[: len(front) - FRONT]
            side.front_min = front[0]
        if touched:
            return self._refresh(side)
        return False

    def _refresh(self, side: _Side) -> bool:
        """Recompute the side's boundary and top N; True when the top N rows differ."""
        n = self.depth
        front = side.front
        if len(front) < n and side.front_min != _ALL:
            side.rebuild_front()
        side.edge = front[-n] if len(front) >= n else _ALL
        top = list(map(side.levels.__getitem__, front[: -n - 1 : -1]))
        if top == side.top:
            return False
        side.top = top
        return True

    def _top_of(self, side: _Side, n: int) -> list[PriceLevel]:
        return list(map(side.levels.__getitem__, side.best_keys(n)))

    # -- keys ----------------------------------------------------------------------------

    def _new_key(self, side: _Side, price: str) -> int:
        """Key of a price not in the side's cache (rescaling the book if needed)."""
        ip, _, fp = price.partition(".")
        try:
            body = (ip + fp).lstrip("+-")
            if not (body.isascii() and body.isdigit()):
                raise ValueError(price)
            digits = len(fp)
            mantissa = int(ip + fp)
        except ValueError:
            digits, mantissa = _decimal_parts(price)
        if digits > self._scale:
            self._rescale(digits)
        key = mantissa * _POW10[self._scale - digits] * side.sign
        cache = side.cache
        if len(cache) >= _KEY_CACHE_MAX:
            cache.clear()
        cache[price] = key
        return key

    def _rescale(self, scale: int) -> None:
        if scale >= len(_POW10):
            raise UnexpectedMessage(f"price with {scale} decimals")
        factor = _POW10[scale - self._scale]
        self._scale = scale
        for side in (self._bids, self._asks):
            side.front[:] = [k * factor for k in side.front]
            side.front_min *= factor  # -inf stays -inf
            rescaled = {k * factor: v for k, v in side.levels.items()}
            side.levels.clear()
            side.levels.update(rescaled)
            side.cache.clear()
            side.edge *= factor  # -inf stays -inf


def _decimal_parts(price: str) -> tuple[int, int]:
    """(decimals, integer mantissa) of a decimal string in any notation, e.g. "1.5E-7"."""
    try:
        if "_" in price or not price.isascii() or price != price.strip():
            raise InvalidOperation(price)  # Decimal() would accept these
        d = Decimal(price)
    except InvalidOperation:
        raise UnexpectedMessage(f"price is not a decimal: {price!r}") from None
    if not d.is_finite():
        raise UnexpectedMessage(f"price is not a finite decimal: {price!r}")
    sign, digits, exp = d.as_tuple()
    assert isinstance(exp, int)
    mantissa = int("".join(map(str, digits)) or "0")
    if exp > 0:
        mantissa *= _POW10[exp] if exp < len(_POW10) else int(10**exp)
        exp = 0
    return -exp, -mantissa if sign else mantissa


# -- sync ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rows:
    """The top N changed (or a sync completed): write ``bids`` then ``asks``, best first.

    ``ts_ms`` is the exchange time of the last applied update; 0 when there is none (a bare
    snapshot): the writer then uses the receive time.
    """

    ts_ms: int
    bids: Sequence[PriceLevel]
    asks: Sequence[PriceLevel]

    def csv_rows(
        self, symbol: str, local_time_us: int
    ) -> list[tuple[int, str, str, str, str, int, int]]:
        """Rows in ``BOOK_COLUMNS`` order: N bid rows (side B, level 1 = best), then N ask rows."""
        ts = self.ts_ms
        out = [(ts, symbol, "B", p, q, i, local_time_us) for i, (p, q) in enumerate(self.bids, 1)]
        out += [(ts, symbol, "A", p, q, i, local_time_us) for i, (p, q) in enumerate(self.asks, 1)]
        return out


@dataclass(frozen=True, slots=True)
class NeedSnapshot:
    """Fetch a REST snapshot now and feed it (unless a fetch is already in flight)."""


@dataclass(frozen=True, slots=True)
class Gap:
    """A sequence gap: the diff that came starts at ``got`` but ``expected`` was next."""

    expected: int
    got: int


@dataclass(frozen=True, slots=True)
class Stale:
    """The snapshot (``snapshot_id``) predates the first buffered diff (``first_id``)."""

    snapshot_id: int
    first_id: int


@dataclass(frozen=True, slots=True)
class Crossed:
    """The book crossed after a change: a bug. The book has been discarded."""

    best_bid: PriceLevel
    best_ask: PriceLevel


@dataclass(frozen=True, slots=True)
class Resync:
    """The book was discarded (``reason``: overflow, gap, crossed, bad_level: ...).

    ``reconnect``: the only way to a new snapshot is a new connection (stream snapshots).
    """

    reason: str
    reconnect: bool


Verdict = Rows | NeedSnapshot | Gap | Stale | Crossed | Resync

_IDLE = "idle"  # no book; REST mode: nothing buffered yet. Stream mode: waiting for a snapshot
_BUFFERING = "buffering"  # REST mode: diffs buffered, a snapshot was asked for
_SYNCED = "synced"


class BookSync:
    """Keeps an :class:`L2Book` in sync with a stream of ``BookUpdate`` records (see module doc)."""

    def __init__(
        self,
        *,
        depth: int = DEFAULT_DEPTH,
        snapshot_from_rest: bool,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
    ) -> None:
        if max_buffered < 1:
            raise ValueError(f"max_buffered must be >= 1, got {max_buffered}")
        self.book = L2Book(depth)
        self.snapshot_from_rest = snapshot_from_rest
        self.max_buffered = max_buffered
        self.state = _IDLE
        self.book_id: int | None = None  # last applied update id (sequenced streams)
        self._buffer: list[BookUpdate] = []
        # Counters (informational).
        self.ignored = 0  # diffs at or below the book id
        self.dropped = 0  # diffs before the first stream snapshot
        self.snapshots_ignored = 0  # REST snapshots nobody asked for (no diffs buffered)

    @property
    def synced(self) -> bool:
        return self.state == _SYNCED

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def discard(self, reason: str) -> list[Verdict]:
        """Drop the book (e.g. a frame of the stream could not be read, so an update may be
        missing): ``Resync(reason)`` and, where snapshots come from REST, a new one is asked
        for with the next diff. Nothing to do while there is no book or buffer."""
        if self.state == _IDLE:
            return []
        return self._discard(reason, [])

    def reset(self) -> None:
        """Forget everything (call on disconnect); the next diff or snapshot starts over."""
        self.book.clear()
        self.book_id = None
        self._buffer.clear()
        self.state = _IDLE

    def feed(self, update: BookUpdate) -> list[Verdict]:
        """One update in arrival order → what the caller must do."""
        if update.is_snapshot:
            return self._on_snapshot(update)
        if self.state == _SYNCED:
            return self._on_diff(update)
        if not self.snapshot_from_rest:
            self.dropped += 1
            return []
        if update.first_id is None or update.last_id is None:
            raise ValueError("a diff without update ids cannot be aligned with a REST snapshot")
        out: list[Verdict] = []
        if self.state == _IDLE:
            self.state = _BUFFERING
            out.append(NeedSnapshot())
        elif len(self._buffer) >= self.max_buffered:
            self._buffer.clear()
            out += [Resync("overflow", reconnect=False), NeedSnapshot()]
        self._buffer.append(update)
        return out

    def _on_diff(self, update: BookUpdate) -> list[Verdict]:
        book_id = self.book_id
        first, last = update.first_id, update.last_id
        if book_id is not None and first is not None and last is not None:
            if last <= book_id:
                self.ignored += 1
                return []
            if first > book_id + 1:
                return [Gap(book_id + 1, first), *self._discard("gap", [update])]
        try:
            changed = self.book.apply(update)
        except UnexpectedMessage as exc:
            return self._discard(f"bad_level: {exc}", [])
        if last is not None:
            self.book_id = last
        if not changed:
            return []
        return self._rows_or_crossed(update.ts_ms)

    def _on_snapshot(self, snap: BookUpdate) -> list[Verdict]:
        if not self.snapshot_from_rest:
            try:
                self.book.load(snap.bids, snap.asks)
            except UnexpectedMessage as exc:
                return self._discard(f"bad_level: {exc}", [])
            self.book_id = snap.last_id
            self.state = _SYNCED
            return self._rows_or_crossed(snap.ts_ms)
        if self.state != _BUFFERING:
            self.snapshots_ignored += 1
            return []
        if snap.last_id is None:
            raise ValueError("a REST snapshot without lastUpdateId")
        buffer = self._buffer
        first_u = buffer[0].first_id
        assert first_u is not None
        if snap.last_id < first_u:
            return [Stale(snap.last_id, first_u), NeedSnapshot()]
        book = self.book
        try:
            book.load(snap.bids, snap.asks)
        except UnexpectedMessage as exc:
            return self._discard(f"bad_level: {exc}", [])
        book_id = snap.last_id
        ts_ms = snap.ts_ms
        for i, diff in enumerate(buffer):
            assert diff.first_id is not None
            assert diff.last_id is not None
            if diff.last_id <= book_id:
                self.ignored += 1
                continue
            if diff.first_id > book_id + 1:
                return [Gap(book_id + 1, diff.first_id), *self._discard("gap", buffer[i:])]
            try:
                book.apply(diff)
            except UnexpectedMessage as exc:
                return self._discard(f"bad_level: {exc}", [])
            book_id = diff.last_id
            ts_ms = diff.ts_ms
        self._buffer = []
        self.book_id = book_id
        self.state = _SYNCED
        return self._rows_or_crossed(ts_ms)

    def _rows_or_crossed(self, ts_ms: int) -> list[Verdict]:
        book = self.book
        bids, asks = book._bids, book._asks
        b, a = bids.front, asks.front
        if not (b and a and b[-1] >= -a[-1]):  # not crossed (L2Book.is_crossed, inlined)
            return [Rows(ts_ms, bids.top, asks.top)]
        return [Crossed(bids.top[0], asks.top[0]), *self._discard("crossed", [])]

    def _discard(self, reason: str, rebuffer: list[BookUpdate]) -> list[Verdict]:
        """Drop the book. REST mode: ``rebuffer`` (still valid diffs) starts the new buffer."""
        self.book.clear()
        self.book_id = None
        self._buffer = []
        self.state = _IDLE
        if not self.snapshot_from_rest:
            return [Resync(reason, reconnect=True)]
        out: list[Verdict] = [Resync(reason, reconnect=False)]
        if rebuffer:
            self._buffer = rebuffer[-self.max_buffered :]
            self.state = _BUFFERING
            out.append(NeedSnapshot())
        return out
