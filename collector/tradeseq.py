"""Trade-id sequencing: which trades to write, and what to record about the others (pure).

One stray value must never poison the state (a single id far ahead used to make every later
trade look like a duplicate, even across restarts), so the rules are explicit:

- ``last`` is the highest id written in the current sequence (resumed from the files on disk
  at start-up, never from a status file).
- An id in ``[last - window, last]`` is a duplicate or a late copy (a reconnect replays the
  last trade; an exchange resends): ``Duplicate``, no row (the frame is in raw).
- The natural successor is written at once: ``last + 1`` where the exchange's ids are
  contiguous (Binance, Coinbase), any id in ``(last, last + window]`` where they are not
  (Bitstamp and Bitfinex ids are global across pairs).
- Any other id is a *break* (an id far ahead, an id far behind, another id space after a
  change of ``binance_trade_stream``): it is held as ``pending`` (no row yet) until the next
  trade decides:

  * the next id continues the old sequence → the held one was a stray: ``Stray``, no row;
  * the next id continues the held one → the break is real: a forward jump is a ``Gap``
    (contiguous ids: the missing ids ``expected..got-1``), a jump backwards or a big jump on
    a non-contiguous exchange is a ``Reset`` (a new id space); both rows are written;
  * neither → the held one is a ``Stray`` and the new id is held instead.

  A held trade is also accepted (as a jump) when it has waited ``max_pending_s`` or the
  stream's hour is about to close (:meth:`TradeSequence.resolve`), so a quiet stream's first
  trade after a reconnect is not kept forever.

The caller writes ``Write`` rows in order, records ``Gap``/``Reset``/``Stray`` as raw markers
and counts ``Duplicate``. Every id missing from the files is inside some ``Gap``, whatever
happens to the process in between (the resume point comes from the files themselves).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

# Ids this far below the last one are duplicates; a break at least this far is a new sequence.
DEFAULT_WINDOW = 1_000_000
DEFAULT_MAX_PENDING_S = 2.0
# A confirmed forward jump longer than this is a new id space (``Reset``), not a gap of that
# many trades (Binance's aggregate and trade ids are billions apart).
MAX_GAP = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Write(Generic[T]):
    """Write this trade's row (``item`` is the caller's, e.g. the trade and its receive time)."""

    item: T
    trade_id: int


@dataclass(frozen=True, slots=True)
class Duplicate:
    trade_id: int
    last: int


@dataclass(frozen=True, slots=True)
class Gap:
    """Contiguous ids ``expected`` .. ``got - 1`` were never received."""

    expected: int
    got: int

    @property
    def size(self) -> int:
        return self.got - self.expected


@dataclass(frozen=True, slots=True)
class Reset:
    """The ids started a new sequence at ``got`` (the previous one ended at ``last``)."""

    last: int
    got: int


@dataclass(frozen=True, slots=True)
class Stray:
    """``trade_id`` fitted neither the sequence (``last``) nor the trade after it: no row."""

    trade_id: int
    last: int


Verdict = Write[T] | Duplicate | Gap | Reset | Stray


class TradeSequence(Generic[T]):
    """The sequencing state of one trade stream (see the module docstring)."""

    def __init__(
        self,
        *,
        contiguous: bool,
        last: int | None = None,
        window: int = DEFAULT_WINDOW,
        max_pending_s: float = DEFAULT_MAX_PENDING_S,
    ) -> None:
        self.contiguous = contiguous
        self.last = last
        self.window = window
        self.max_pending_s = max_pending_s
        # The trade held for the next one to decide: (item, id, received at). Public so the
        # caller's per-trade fast path can test it without a call.
        self.held: tuple[T, int, float] | None = None

    def _natural(self, last: int, trade_id: int) -> bool:
        if self.contiguous:
            return trade_id == last + 1
        return last < trade_id <= last + self.window

    def feed(self, item: T, trade_id: int, ts: float) -> list[Verdict[T]]:
        """One trade in arrival order → what to do (usually ``[Write]``)."""
        last = self.last
        pending = self.held
        if last is None:  # nothing written yet: anything starts the sequence
            self.last = trade_id
            return [Write(item, trade_id)]
        if pending is None:
            if self._natural(last, trade_id):
                self.last = trade_id
                return [Write(item, trade_id)]
            if last - self.window <= trade_id <= last:
                return [Duplicate(trade_id, last)]
            self.held = (item, trade_id, ts)
            return []
        held_item, held_id, _ = pending
        if trade_id == held_id:
            return [Duplicate(trade_id, held_id)]
        if self._natural(last, trade_id):  # the old sequence goes on: the held id was stray
            self.held = None
            self.last = trade_id
            return [Stray(held_id, last), Write(item, trade_id)]
        if self._natural(held_id, trade_id):  # the held id starts the new sequence
            self.held = None
            self.last = trade_id
            return [self._break(last, held_id), Write(held_item, held_id), Write(item, trade_id)]
        if last - self.window <= trade_id <= last:
            return [Duplicate(trade_id, last)]
        self.held = (item, trade_id, ts)
        return [Stray(held_id, last)]

    def _break(self, last: int, got: int) -> Gap | Reset:
        if self.contiguous and last < got <= last + 1 + MAX_GAP:
            return Gap(last + 1, got)
        return Reset(last, got)

    def resolve(self, now_s: float, *, force: bool = False) -> list[Verdict[T]]:
        """Accept the held trade if it waited ``max_pending_s`` (or ``force``): a jump."""
        pending = self.held
        if pending is None or (not force and now_s - pending[2] < self.max_pending_s):
            return []
        item, trade_id, _ = pending
        self.held = None
        last = self.last
        self.last = trade_id
        if last is None:
            return [Write(item, trade_id)]
        return [self._break(last, trade_id), Write(item, trade_id)]

    def pending_since(self) -> float | None:
        return None if self.held is None else self.held[2]

    def skip_to(self, exchange_last: int) -> Gap | None:
        """The exchange says its last trade is ``exchange_last`` and we never got the ones up
        to it (Coinbase heartbeats): a gap, and the sequence goes on from there."""
        last = self.last
        if last is None or not self.contiguous or exchange_last <= last or self.held:
            return None
        self.last = exchange_last
        return Gap(last + 1, exchange_last + 1)
