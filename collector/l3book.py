"""Order-level (L3) book and its sync state machine: pure, no I/O, no clock.

:class:`L3Book` keeps every resting order compactly (a 36-character UUID becomes one 128-bit
int, a decimal id an int; price and size become integers of 1e-18 units, packed into one int
per order) and aggregates
price levels so that the top N levels per side are cheap. With ``track_queues`` it also keeps
the orders of each level (what Bitfinex's raw-book checksum needs).

:class:`L3Sync` turns the adapter's records into the rows of the ``l3`` file:

- before a snapshot, events are buffered (bounded);
- a snapshot (REST or in-stream) loads the book and is written as ``snapshot`` rows, so any
  file can rebuild the book from its own start; buffered events the snapshot already holds
  are dropped (``align="sequence"``: ``sequence <= snapshot.sequence``, Coinbase and
  Bitfinex; ``align="time"``: ``ts_us <= snapshot.ts_us``, Bitstamp microtimestamps);
- after it, a ``sequence`` that is not last + 1 is a gap (smaller ones are stale and
  ignored), and a checksum that differs from the book is a mismatch: both return a
  :class:`Resync` verdict, reset the book and buffer again until the next snapshot.

Events for orders that are not on the book (Coinbase ``done`` of a market order, a ``change``
of a received-but-not-open order) leave the book alone but are still written: the file is
the exchange's event stream, the book is derived from it.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation

from sortedcontainers import SortedList

from collector.model import BookChecksum, L3Event, L3Order, L3Snapshot, Record

SCALE = 18
_ONE = 10**SCALE
_PAD = ["0" * (SCALE - k) for k in range(SCALE + 1)]

OrderKey = int | str

# An order's level key (signed price units) and size units packed into one int: one object
# per order instead of a tuple of two (saves ~50 bytes per order).
_LK_BITS = 96
_LK_MASK = (1 << _LK_BITS) - 1
_LK_SIGN = 1 << (_LK_BITS - 1)


def _pack(lk: int, q: int) -> int:
    return (q << _LK_BITS) | (lk & _LK_MASK)


def _unpack(v: int) -> tuple[int, int]:
    lk = v & _LK_MASK
    if lk & _LK_SIGN:
        lk -= 1 << _LK_BITS
    return lk, v >> _LK_BITS


def units(value: str) -> int:
    """An exact decimal string → integer units of 1e-18 (ValueError beyond 18 places)."""
    whole, _, frac = value.partition(".")
    if len(frac) <= SCALE:
        try:
            return int(whole + frac + _PAD[len(frac)])
        except ValueError:
            pass  # exponent notation ("1e-05") or garbage: the slow exact path decides
    try:
        d = Decimal(value).scaleb(SCALE)
    except InvalidOperation:
        raise ValueError(f"not a decimal number: {value!r}") from None
    if not d.is_finite() or d != d.to_integral_value():
        raise ValueError(f"{value!r} has more than {SCALE} decimal places")
    return int(d)


def format_units(n: int, decimals: int) -> str:
    """Units back to a decimal string with at least ``decimals`` places (more if needed)."""
    sign = "-" if n < 0 else ""
    whole, frac_n = divmod(abs(n), _ONE)
    frac = str(frac_n).rjust(SCALE, "0")
    places = max(decimals, len(frac.rstrip("0")))
    return f"{sign}{whole}.{frac[:places]}" if places else f"{sign}{whole}"


def order_key(order_id: str) -> OrderKey:
    """A compact dictionary key for an order id: UUIDs and decimal ids become ints."""
    if len(order_id) == 36 and order_id[8] == "-":
        try:
            return int(order_id.replace("-", ""), 16)
        except ValueError:
            return order_id
    if order_id.isdigit():
        return int(order_id)
    return order_id


class L3Book:
    """Resting orders by id, with aggregated price levels.

    Bid levels are keyed by ``-price`` and ask levels by ``+price`` (in units), so both
    sorted key lists start at the best price. Prices must be positive.
    """

    __slots__ = ("_orders", "_levels", "_bid_keys", "_ask_keys", "_queues", "size_decimals")

    def __init__(self, *, track_queues: bool = False) -> None:
        # order key -> _pack(level key, size units)
        self._orders: dict[OrderKey, int] = {}
        self._levels: dict[int, _Level] = {}
        self._bid_keys: SortedList = SortedList()
        self._ask_keys: SortedList = SortedList()
        # level key -> {order key: size string as sent}, in arrival order
        self._queues: dict[int, dict[OrderKey, str]] | None = {} if track_queues else None
        self.size_decimals = 0

    def __len__(self) -> int:
        return len(self._orders)

    def __contains__(self, order_id: str) -> bool:
        return order_key(order_id) in self._orders

    def clear(self) -> None:
        self._orders.clear()
        self._levels.clear()
        self._bid_keys.clear()
        self._ask_keys.clear()
        if self._queues is not None:
            self._queues.clear()

    def load(self, orders: Iterable[L3Order]) -> None:
        """Replace the whole book with ``(order_id, side, price, size)`` rows."""
        self.clear()
        for order_id, side, price, size in orders:
            self.add(order_id, side, price, size)

    def add(self, order_id: str, side: str, price: str, size: str) -> bool:
        """Put an order on the book; True if it is new, False if it replaced one."""
        key = order_key(order_id)
        old = self._orders.get(key)
        if old is not None:
            self._remove(key, _unpack(old))
        p = units(price)
        if not 0 < p < _LK_SIGN:
            raise ValueError(f"resting order {order_id} has price {price!r}")
        if side == "B":
            lk = -p
        elif side == "A":
            lk = p
        else:
            raise ValueError(f"order {order_id} has side {side!r}")
        q = units(size)
        if q > 0:
            self._insert(key, lk, q, price, size)
        return old is None

    def change(self, order_id: str, size: str, price: str = "") -> bool:
        """New size (and price, if given and different) of a resting order; False if unknown."""
        key = order_key(order_id)
        packed = self._orders.get(key)
        if packed is None:
            return False
        old = _unpack(packed)
        lk, old_q = old
        q = units(size)
        if price:
            p = units(price)
            if p != abs(lk):
                self._remove(key, old)
                if q > 0:
                    self._insert(key, -p if lk < 0 else p, q, price, size)
                return True
        self._resize(key, lk, old_q, q, size)
        return True

    def reduce(self, order_id: str, size: str) -> bool:
        """A fill of ``size`` against a resting order (a match); False if unknown."""
        key = order_key(order_id)
        packed = self._orders.get(key)
        if packed is None:
            return False
        lk, old_q = _unpack(packed)
        q = old_q - units(size)
        text = "" if self._queues is None else format_units(q, self.size_decimals)
        self._resize(key, lk, old_q, q, text)
        return True

    def delete(self, order_id: str) -> bool:
        key = order_key(order_id)
        packed = self._orders.get(key)
        if packed is None:
            return False
        self._remove(key, _unpack(packed))
        return True

    def order(self, order_id: str) -> tuple[str, str, str] | None:
        """``(side, price, size)`` of a resting order, or None."""
        found = self._orders.get(order_key(order_id))
        if found is None:
            return None
        lk, q = _unpack(found)
        price = self._levels[lk].price
        return ("B" if lk < 0 else "A", price, format_units(q, self.size_decimals))

    def top(self, n: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """The best ``n`` levels per side as ``(price, total size)`` strings, best first."""
        return self._side_top(self._bid_keys, n), self._side_top(self._ask_keys, n)

    def _side_top(self, keys: SortedList, n: int) -> list[tuple[str, str]]:
        out = []
        levels = self._levels
        for lk in keys.islice(0, n):
            lvl = levels[lk]
            out.append((lvl.price, format_units(lvl.total, self.size_decimals)))
        return out

    def checksum(self) -> int:
        """Bitfinex raw-book checksum: signed CRC32 of the top 25 bids and asks interleaved.

        Orders sort by price (best first), then by id ascending, as in Bitfinex's own
        ``OrderBook`` model; each contributes ``id:amount`` with the amount as sent
        (asks negative). Needs ``track_queues``.
        """
        bids = self._top_orders(self._bid_keys, 25, "")
        asks = self._top_orders(self._ask_keys, 25, "-")
        parts: list[str] = []
        for i in range(25):
            if i < len(bids):
                parts.append(bids[i])
            if i < len(asks):
                parts.append(asks[i])
        crc = zlib.crc32(":".join(parts).encode())
        return crc - (1 << 32) if crc >= (1 << 31) else crc

    def _top_orders(self, keys: SortedList, n: int, sign: str) -> list[str]:
        if self._queues is None:
            raise RuntimeError("checksum() needs an L3Book(track_queues=True)")
        out: list[str] = []
        for lk in keys:
            queue = self._queues[lk]
            for key in sorted(queue, key=_id_sort_key):
                size = queue[key]
                out.append(f"{key}:{sign}{size}")
                if len(out) == n:
                    return out
        return out

    def orders(self) -> Iterator[tuple[OrderKey, str, int, int]]:
        """Every resting order as ``(key, side, price units, size units)`` (for checks)."""
        for key, packed in self._orders.items():
            lk, q = _unpack(packed)
            yield key, "B" if lk < 0 else "A", abs(lk), q

    # --- internals -----------------------------------------------------------------

    def _insert(self, key: OrderKey, lk: int, q: int, price: str, size: str) -> None:
        levels = self._levels
        lvl = levels.get(lk)
        if lvl is None:
            lvl = _Level(price)
            levels[lk] = lvl
            (self._bid_keys if lk < 0 else self._ask_keys).add(lk)
            if self._queues is not None:
                self._queues[lk] = {}
        lvl.total += q
        lvl.count += 1
        self._orders[key] = _pack(lk, q)
        if self._queues is not None:
            self._queues[lk][key] = size
        dot = size.find(".")
        if dot >= 0 and len(size) - dot - 1 > self.size_decimals:
            self.size_decimals = len(size) - dot - 1

    def _resize(self, key: OrderKey, lk: int, old_q: int, q: int, size: str) -> None:
        if q <= 0:
            self._remove(key, (lk, old_q))
            return
        self._levels[lk].total += q - old_q
        self._orders[key] = _pack(lk, q)
        if self._queues is not None:
            self._queues[lk][key] = size

    def _remove(self, key: OrderKey, old: tuple[int, int]) -> None:
        lk, q = old
        del self._orders[key]
        lvl = self._levels[lk]
        lvl.count -= 1
        if lvl.count == 0:
            del self._levels[lk]
            (self._bid_keys if lk < 0 else self._ask_keys).remove(lk)
            if self._queues is not None:
                del self._queues[lk]
        else:
            lvl.total -= q
            if self._queues is not None:
                del self._queues[lk][key]


class _Level:
    """One price level: total size (units), order count, the price as first sent."""

    __slots__ = ("total", "count", "price")

    def __init__(self, price: str) -> None:
        self.total = 0
        self.count = 0
        self.price = price


def _id_sort_key(key: OrderKey) -> tuple[int, int | str]:
    return (0, key) if isinstance(key, int) else (1, key)


@dataclass(frozen=True, slots=True)
class Resync:
    """The book can no longer be trusted: take a new snapshot.

    kind: ``sequence`` (a gap: ``expected`` last + 1, ``got`` the sequence that came),
    ``checksum`` (``expected`` the exchange's, ``got`` ours), ``stale_snapshot`` (the
    snapshot predates the buffered events: ``expected`` at least first - 1, ``got`` the
    snapshot's sequence; the buffer is kept) or ``overflow`` (too many buffered events).
    """

    kind: str
    expected: int
    got: int


ALIGN_MODES = ("sequence", "time")


class L3Sync:
    """The sync state machine of one order-level stream (see the module docstring)."""

    def __init__(
        self,
        *,
        align: str = "sequence",
        book: L3Book | None = None,
        max_buffer: int = 100_000,
    ) -> None:
        if align not in ALIGN_MODES:
            raise ValueError(f"align must be one of {ALIGN_MODES}, not {align!r}")
        self.align = align
        self.book = book if book is not None else L3Book()
        self.max_buffer = max_buffer
        self.synced = False
        self.last_sequence: int | None = None
        # align="time": the snapshot's microtimestamp; events at or before it are in it
        self.snapshot_ts_us: int | None = None
        self.checksums_verified = 0
        self._buffer: list[L3Event | BookChecksum] = []

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def reset(self) -> None:
        """Forget the book and the buffer (after a disconnect or a resync verdict)."""
        self.book.clear()
        self.synced = False
        self.last_sequence = None
        self.snapshot_ts_us = None
        self._buffer = []

    def on_record(self, rec: Record) -> tuple[list[L3Event], Resync | None]:
        """Feed one record; get the rows to write and, if the book broke, a verdict."""
        if type(rec) is L3Event and self.synced:  # the hot path
            out: list[L3Event] = []
            return out, self._apply(rec, out)
        if isinstance(rec, L3Snapshot):
            return self._on_snapshot(rec)
        if isinstance(rec, L3Event | BookChecksum):
            if not self.synced:
                if len(self._buffer) >= self.max_buffer:
                    size = len(self._buffer)
                    self.reset()
                    return [], Resync("overflow", self.max_buffer, size)
                self._buffer.append(rec)
                return [], None
            rows: list[L3Event] = []
            return rows, self._apply(rec, rows)
        return [], None

    def _on_snapshot(self, snap: L3Snapshot) -> tuple[list[L3Event], Resync | None]:
        buffered, self._buffer = self._buffer, []
        seq = snap.sequence
        if self.align == "sequence" and seq is not None:
            first = next((r.sequence for r in buffered if r.sequence is not None), None)
            if first is not None and seq < first - 1:
                self.book.clear()
                self.synced = False
                self._buffer = buffered
                return [], Resync("stale_snapshot", first - 1, seq)
        book = self.book
        book.load(snap.orders)
        self.synced = True
        self.last_sequence = seq if self.align == "sequence" else None
        self.snapshot_ts_us = snap.ts_us if self.align == "time" else None
        out = [
            L3Event(
                snap.ts_ms, snap.symbol, seq, "snapshot", oid, side, price, size, ts_us=snap.ts_us
            )
            for oid, side, price, size in snap.orders
        ]
        for i, rec in enumerate(buffered):
            if self.align == "sequence":
                if seq is not None and rec.sequence is not None and rec.sequence <= seq:
                    continue
            elif (
                isinstance(rec, L3Event)
                and snap.ts_us is not None
                and rec.ts_us is not None
                and rec.ts_us <= snap.ts_us
            ):
                continue
            verdict = self._apply(rec, out)
            if verdict is not None:
                # the rest of the buffer waits for the next snapshot
                self._buffer = buffered[i + 1 :]
                return out, verdict
        return out, None

    def _apply(self, rec: L3Event | BookChecksum, out: list[L3Event]) -> Resync | None:
        snap_us = self.snapshot_ts_us
        if (
            snap_us is not None
            and type(rec) is L3Event
            and rec.ts_us is not None
            and rec.ts_us <= snap_us
        ):
            # the snapshot already holds it: it arrived after the REST answer (the websocket
            # and the REST call race), not before it
            return None
        seq = rec.sequence
        if seq is not None and self.align == "sequence":
            last = self.last_sequence
            if last is not None:
                if seq <= last:
                    return None  # stale or repeated: the book already has it
                if seq != last + 1:
                    self.reset()
                    self._buffer.append(rec)
                    return Resync("sequence", last + 1, seq)
            self.last_sequence = seq
        if isinstance(rec, BookChecksum):
            ours = self.book.checksum()
            if ours != rec.checksum:
                self.reset()
                return Resync("checksum", rec.checksum, ours)
            self.checksums_verified += 1
            return None
        action = rec.action
        book = self.book
        if action == "add":
            if not book.add(rec.order_id, rec.side, rec.price, rec.size):
                rec = replace(rec, action="change")
        elif action == "change":
            if rec.size:
                book.change(rec.order_id, rec.size, rec.price)
        elif action == "delete":
            book.delete(rec.order_id)
        elif action == "match":
            book.reduce(rec.order_id, rec.size)
        elif action == "noop":
            return None
        else:
            raise ValueError(f"unexpected L3 action {action!r} in the stream")
        out.append(rec)
        return None
