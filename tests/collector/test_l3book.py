"""L3 book and sync state machine, checked against an independent simple reference."""

from __future__ import annotations

import random
import zlib
from decimal import Decimal

import pytest

from collector.l3book import L3Book, L3Sync, Resync, format_units, order_key, units
from collector.model import BookChecksum, L3Event, L3Snapshot


class RefBook:
    """The simplest possible order book: a dict of Decimals, sorted on demand."""

    def __init__(self) -> None:
        self.orders: dict[str, tuple[str, Decimal, Decimal, str]] = {}

    def apply(self, ev: L3Event) -> None:
        o = self.orders.get(ev.order_id)
        if ev.action in ("add", "snapshot"):
            if Decimal(ev.size) > 0:
                self.orders[ev.order_id] = (ev.side, Decimal(ev.price), Decimal(ev.size), ev.size)
            else:
                self.orders.pop(ev.order_id, None)
        elif ev.action == "change" and o is not None:
            price = Decimal(ev.price) if ev.price else o[1]
            if Decimal(ev.size) > 0:
                self.orders[ev.order_id] = (o[0], price, Decimal(ev.size), ev.size)
            else:
                del self.orders[ev.order_id]
        elif ev.action == "delete":
            self.orders.pop(ev.order_id, None)
        elif ev.action == "match" and o is not None:
            left = o[2] - Decimal(ev.size)
            if left > 0:
                self.orders[ev.order_id] = (o[0], o[1], left, str(left))
            else:
                del self.orders[ev.order_id]

    def top(self, n: int) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        out = []
        for side, reverse in (("B", True), ("A", False)):
            levels: dict[Decimal, Decimal] = {}
            for s, p, q, _ in self.orders.values():
                if s == side:
                    levels[p] = levels.get(p, Decimal(0)) + q
            out.append(sorted(levels.items(), reverse=reverse)[:n])
        return out[0], out[1]

    def checksum(self) -> int:
        """Bitfinex R0 checksum as the docs describe it (ws-websocket-checksum)."""
        bids = sorted(
            ((p, int(i), a) for i, (s, p, _, a) in self.orders.items() if s == "B"),
            key=lambda t: (-t[0], t[1]),
        )[:25]
        asks = sorted(
            ((p, int(i), a) for i, (s, p, _, a) in self.orders.items() if s == "A"),
            key=lambda t: (t[0], t[1]),
        )[:25]
        data: list[str] = []
        for k in range(25):
            if k < len(bids):
                data += [str(bids[k][1]), bids[k][2]]
            if k < len(asks):
                data += [str(asks[k][1]), "-" + asks[k][2]]
        crc = zlib.crc32(":".join(data).encode())
        return crc - 2**32 if crc >= 2**31 else crc


def as_decimal(levels: list[tuple[str, str]]) -> list[tuple[Decimal, Decimal]]:
    return [(Decimal(p), Decimal(q)) for p, q in levels]


def ev(seq: int | None, action: str, oid: str, side: str = "", price: str = "", size: str = "",
       ts_us: int | None = None) -> L3Event:  # fmt: skip
    return L3Event(1, "X", seq, action, oid, side, price, size, ts_us=ts_us)


def random_events(rng: random.Random, n: int, uuid_ids: bool) -> list[L3Event]:
    live: dict[str, tuple[str, str]] = {}
    out = []
    for seq in range(1, n + 1):
        r = rng.random()
        if r < 0.4 or not live:
            oid = (
                f"{rng.getrandbits(32):08x}-0000-4000-8000-{rng.getrandbits(48):012x}"
                if uuid_ids
                else str(rng.randrange(1, 10**12))
            )
            side = rng.choice("BA")
            price = f"{100 + rng.randrange(-30, 30) * (1 if side == 'B' else -1) - (5 if side == 'B' else -5)}.{rng.randrange(100):02d}"  # noqa: E501
            live[oid] = (side, price)
            out.append(ev(seq, "add", oid, side, price, f"{rng.randrange(1, 10**6) / 1000:.3f}"))
            continue
        oid = rng.choice(sorted(live))
        side, price = live[oid]
        if r < 0.6:
            del live[oid]
            out.append(ev(seq, "delete", oid, side, price))
        elif r < 0.75:
            new_price = price if rng.random() < 0.5 else f"{Decimal(price) + 1}"
            live[oid] = (side, new_price)
            out.append(ev(seq, "change", oid, side, new_price, f"{rng.randrange(1, 999)}.5"))
        elif r < 0.9:
            out.append(ev(seq, "match", oid, side, price, "0.001"))
        else:
            out.append(ev(seq, "delete", "999999999999" if not uuid_ids else "ghost", "B"))
    return out


class TestUnits:
    @pytest.mark.parametrize(
        ("text", "value"),
        [("1", 10**18), ("0.5", 5 * 10**17), ("-0.25", -(25 * 10**16)), ("2.5e-05", 25 * 10**12),
         (".5", 5 * 10**17), ("1E+2", 100 * 10**18)],
    )  # fmt: skip
    def test_exact(self, text, value):
        assert units(text) == value

    def test_too_many_places_is_an_error(self):
        with pytest.raises(ValueError, match="more than 18 decimal places"):
            units("0.0000000000000000001")

    def test_format_keeps_places(self):
        assert format_units(units("1.5"), 8) == "1.50000000"
        assert format_units(units("0.123456789"), 2) == "0.123456789"
        assert format_units(units("7"), 0) == "7"

    def test_order_keys_are_compact(self):
        assert order_key("d50ec984-77a8-460a-b958-66f114b0de9b") == int(
            "d50ec98477a8460ab95866f114b0de9b", 16
        )
        assert order_key("1443875737346049") == 1443875737346049
        assert order_key("abc") == "abc"


class TestAgainstReference:
    @pytest.mark.parametrize("uuid_ids", [True, False])
    def test_random_stream_matches_reference(self, uuid_ids):
        """After every event: same top-10 levels and, at the end, the same orders."""
        rng = random.Random(11 if uuid_ids else 12)
        book, ref = L3Book(track_queues=not uuid_ids), RefBook()
        sync = L3Sync(book=book)
        sync.on_record(L3Snapshot("X", 1, 0, []))

        for e in random_events(rng, 1500, uuid_ids):
            rows, verdict = sync.on_record(e)
            assert verdict is None
            for row in rows:
                ref.apply(row)
            bids, asks = book.top(10)
            assert (as_decimal(bids), as_decimal(asks)) == ref.top(10)
            if not uuid_ids:
                assert book.checksum() == ref.checksum()

        assert {(str(k), s, p, q) for k, s, p, q in book.orders()} == {
            (str(order_key(i)), s, units(str(p)), units(str(q)))
            for i, (s, p, q, _) in ref.orders.items()
        }

    def test_checksum_uses_id_order_within_a_level(self):
        """Same price: ids ascending (Bitfinex OrderBook model); asks hashed as negative."""
        book = L3Book(track_queues=True)
        book.add("20", "B", "100", "1")
        book.add("10", "B", "100", "2")
        book.add("30", "A", "101", "0.5")

        expected = zlib.crc32(b"10:2:30:-0.5:20:1")
        assert book.checksum() == (expected - 2**32 if expected >= 2**31 else expected)


class TestSequenceSync:
    def test_buffer_until_snapshot_then_drop_old_and_apply(self):
        """Events up to the snapshot's sequence are dropped; the rest replay in order."""
        sync = L3Sync()
        for e in [ev(5, "add", "a", "B", "10", "1"), ev(6, "add", "b", "A", "11", "2"),
                  ev(7, "delete", "a")]:  # fmt: skip
            assert sync.on_record(e) == ([], None)

        rows, verdict = sync.on_record(
            L3Snapshot("X", 9, 6, [("a", "B", "10", "1"), ("b", "A", "11", "2")])
        )

        assert verdict is None
        assert [(r.action, r.order_id, r.sequence) for r in rows] == [
            ("snapshot", "a", 6), ("snapshot", "b", 6), ("delete", "a", 7),
        ]  # fmt: skip
        assert sync.book.top(5) == ([], [("11", "2")])
        assert sync.last_sequence == 7

    def test_gap_resets_and_asks_for_a_new_snapshot(self):
        sync = L3Sync()
        sync.on_record(L3Snapshot("X", 1, 10, [("a", "B", "10", "1")]))

        assert sync.on_record(ev(11, "noop", "")) == ([], None)
        rows, verdict = sync.on_record(ev(13, "add", "b", "B", "9", "1"))

        assert (rows, verdict) == ([], Resync("sequence", 12, 13))
        assert (sync.synced, len(sync.book), sync.buffered) == (False, 0, 1)

    def test_stale_and_repeated_sequences_are_ignored(self):
        sync = L3Sync()
        sync.on_record(L3Snapshot("X", 1, 10, []))
        sync.on_record(ev(11, "add", "a", "B", "10", "1"))

        assert sync.on_record(ev(11, "add", "a", "B", "10", "5")) == ([], None)
        assert sync.on_record(ev(9, "delete", "a")) == ([], None)
        assert sync.book.top(1) == ([("10", "1")], [])

    def test_snapshot_older_than_the_buffer_is_refused_and_buffer_kept(self):
        """Out-of-order alignment: a snapshot before the first buffered event - 1 is stale."""
        sync = L3Sync()
        sync.on_record(ev(20, "add", "a", "B", "10", "1"))

        assert sync.on_record(L3Snapshot("X", 1, 15, [])) == (
            [], Resync("stale_snapshot", 19, 15),
        )  # fmt: skip
        rows, verdict = sync.on_record(L3Snapshot("X", 1, 19, []))
        assert verdict is None
        assert [(r.action, r.order_id) for r in rows] == [("add", "a")]

    def test_unknown_orders_leave_the_book_alone_but_are_written(self):
        sync = L3Sync()
        sync.on_record(L3Snapshot("X", 1, 0, [("a", "B", "10", "1")]))

        rows = []
        for e in [
            ev(1, "delete", "ghost", "B", "10", "1"),
            ev(2, "change", "ghost", "B", "10", "3"),
            ev(3, "match", "ghost", "A", "11", "1"),
        ]:
            rows += sync.on_record(e)[0]

        assert [r.action for r in rows] == ["delete", "change", "match"]
        assert sync.book.top(5) == ([("10", "1")], [])

    def test_add_of_a_known_order_is_written_as_change(self):
        """Bitfinex upserts: an update of a resting order is a change, moving it if needed."""
        sync = L3Sync(book=L3Book(track_queues=True))
        sync.on_record(L3Snapshot("X", 1, 1, [("1", "B", "10", "1")]))

        rows, _ = sync.on_record(ev(2, "add", "1", "B", "9", "4"))

        assert [(r.action, r.price, r.size) for r in rows] == [("change", "9", "4")]
        assert sync.book.top(5) == ([("9", "4")], [])

    def test_checksum_match_and_mismatch(self):
        book = L3Book(track_queues=True)
        sync = L3Sync(book=book)
        sync.on_record(L3Snapshot("X", 1, 1, [("1", "B", "10", "1"), ("2", "A", "11", "0.5")]))
        good = zlib.crc32(b"1:1:2:-0.5")
        good = good - 2**32 if good >= 2**31 else good

        assert sync.on_record(BookChecksum("X", 1, 2, good)) == ([], None)
        assert sync.checksums_verified == 1
        assert sync.on_record(BookChecksum("X", 1, 3, good + 1)) == (
            [], Resync("checksum", good + 1, good),
        )  # fmt: skip
        assert not sync.synced

    def test_buffer_is_bounded(self):
        sync = L3Sync(max_buffer=2)
        sync.on_record(ev(1, "noop", ""))
        sync.on_record(ev(2, "noop", ""))

        assert sync.on_record(ev(3, "noop", "")) == ([], Resync("overflow", 2, 2))
        assert sync.buffered == 0


class TestTimeSync:
    def test_bitstamp_microtimestamp_alignment(self):
        """Buffered events at or before the snapshot's microtimestamp are dropped, in any order."""
        sync = L3Sync(align="time")
        for e in [
            ev(None, "add", "1", "B", "10", "1", ts_us=1000),
            ev(None, "add", "2", "B", "10", "2", ts_us=2000),  # == snapshot time: dropped
            ev(None, "change", "1", "B", "10", "0.5", ts_us=2001),
            ev(None, "add", "3", "A", "12", "1", ts_us=1999),  # late arrival, older: dropped
        ]:
            sync.on_record(e)

        rows, verdict = sync.on_record(
            L3Snapshot("X", 2, None, [("1", "B", "10", "1"), ("2", "B", "10", "2")], ts_us=2000)
        )

        assert verdict is None
        assert [(r.action, r.order_id) for r in rows] == [
            ("snapshot", "1"), ("snapshot", "2"), ("change", "1"),
        ]  # fmt: skip
        assert sync.book.top(5) == ([("10", "2.5")], [])
        assert sync.on_record(ev(None, "delete", "2", ts_us=3000))[1] is None
        assert sync.book.top(5) == ([("10", "0.5")], [])

    def test_events_arriving_after_the_snapshot_but_older_than_it_are_dropped(self):
        """The websocket and the REST answer race: an event that comes after the snapshot
        was applied but is stamped at or before it is already in it (not applied twice)."""
        sync = L3Sync(align="time")
        sync.on_record(L3Snapshot("X", 2, None, [("1", "B", "10", "1")], ts_us=2000))

        late, _ = sync.on_record(ev(None, "add", "1", "B", "10", "1", ts_us=1990))
        same, _ = sync.on_record(ev(None, "change", "1", "B", "10", "0.4", ts_us=2000))
        new, _ = sync.on_record(ev(None, "change", "1", "B", "10", "0.5", ts_us=2001))

        assert (late, same) == ([], [])
        assert [(r.action, r.size) for r in new] == [("change", "0.5")]
        assert sync.book.top(5) == ([("10", "0.5")], [])
