"""L3 book benchmark: events applied per second and memory per resting order.

A synthetic Coinbase-like book of 50,000 resting orders (36-character UUID ids, prices with
2 decimals around 30,000, sizes with 8 decimals), then a stream of add / change / match /
delete events that keeps it near that size, applied through :class:`L3Sync` (no output).
Memory is measured in a fresh subprocess: RSS (and tracemalloc) after building the book
minus before, per order, side by side with a naive dict of strings and Decimals.

Goals (issue "L3"): >= 200,000 events/s applied, <= 300 bytes per resting order.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
import uuid

from collector.l3book import L3Book, L3Sync
from collector.model import L3Event, L3Snapshot

ORDERS = 50_000
EVENTS = 300_000
GOAL_EVENTS_S = 200_000
GOAL_BYTES = 300


def _order(rng: random.Random) -> tuple[str, str, str, str]:
    side = "B" if rng.random() < 0.5 else "A"
    ticks = rng.randint(1, 2000)
    cents = 3_000_000 - ticks if side == "B" else 3_000_000 + ticks
    price = f"{cents // 100}.{cents % 100:02d}"
    size = f"{rng.randint(1, 500_000_000) / 1e8:.8f}"
    return str(uuid.UUID(int=rng.getrandbits(128), version=4)), side, price, size


def build_events(seed: int = 7) -> tuple[L3Snapshot, list[L3Event]]:
    rng = random.Random(seed)
    orders = [_order(rng) for _ in range(ORDERS)]
    live = {o[0]: o for o in orders}
    ids = list(live)
    snap = L3Snapshot("BTC-USD", 1, 1000, orders)
    events: list[L3Event] = []
    seq = 1000
    for _ in range(EVENTS):
        seq += 1
        r = rng.random()
        if r < 0.35 or not ids:
            o = _order(rng)
            live[o[0]] = o
            ids.append(o[0])
            events.append(L3Event(1, "BTC-USD", seq, "add", o[0], o[1], o[2], o[3]))
            continue
        i = rng.randrange(len(ids))
        oid = ids[i]
        _, side, price, size = live[oid]
        if r < 0.70:  # delete (swap-remove keeps the pick O(1))
            ids[i] = ids[-1]
            ids.pop()
            del live[oid]
            events.append(L3Event(1, "BTC-USD", seq, "delete", oid, side, price, ""))
        elif r < 0.85:
            new = f"{rng.randint(1, 500_000_000) / 1e8:.8f}"
            live[oid] = (oid, side, price, new)
            events.append(L3Event(1, "BTC-USD", seq, "change", oid, side, price, new))
        else:
            events.append(L3Event(1, "BTC-USD", seq, "match", oid, side, price, "0.00000001"))
    return snap, events


def _naive_apply(snap: L3Snapshot, events: list[L3Event]) -> float:
    """Seconds to apply ``events`` to dicts keyed by the id string with Decimal values."""
    from decimal import Decimal

    orders: dict[str, tuple[str, Decimal, Decimal]] = {}
    levels: dict[tuple[str, Decimal], Decimal] = {}
    for oid, side, price, size in snap.orders:
        p, q = Decimal(price), Decimal(size)
        orders[oid] = (side, p, q)
        levels[(side, p)] = levels.get((side, p), Decimal(0)) + q
    t0 = time.perf_counter()
    for ev in events:
        old = orders.get(ev.order_id)
        if ev.action == "add":
            p, q = Decimal(ev.price), Decimal(ev.size)
            orders[ev.order_id] = (ev.side, p, q)
            levels[(ev.side, p)] = levels.get((ev.side, p), Decimal(0)) + q
        elif old is not None:
            side, p, q = old
            new = Decimal(0) if ev.action == "delete" else Decimal(ev.size)
            if ev.action == "match":
                new = q - new
            levels[(side, p)] += new - q
            if new > 0:
                orders[ev.order_id] = (side, p, new)
            else:
                del orders[ev.order_id]
    return time.perf_counter() - t0


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096


def measure_memory(kind: str, traced: bool) -> None:
    """Child process: bytes per order of one structure, as RSS delta or tracemalloc total.

    The input rows are built first (they are not the book); the baseline is taken after.
    tracemalloc has its own per-block overhead, so RSS is measured in a run without it.
    """
    import gc
    import tracemalloc
    from decimal import Decimal

    rng = random.Random(3)
    rows = [_order(rng) for _ in range(ORDERS)]
    gc.collect()
    if traced:
        tracemalloc.start()
    rss0 = _rss_bytes()
    if kind == "l3book":
        book = L3Book()
        for row in rows:
            book.add(*row)
        n = len(book)
    else:  # naive: uuid string -> (side, Decimal price, Decimal size)
        naive: dict[str, tuple[str, Decimal, Decimal]] = {}
        for oid, side, price, size in rows:
            naive[oid] = (side, Decimal(price), Decimal(size))
        n = len(naive)
    gc.collect()
    if traced:
        print(f"{tracemalloc.get_traced_memory()[0] / n:.0f}")
    else:
        print(f"{(_rss_bytes() - rss0) / n:.0f}")


def _child(kind: str) -> tuple[float, float]:
    figures = []
    for traced in (False, True):
        code = f"from tests.bench.bench_l3 import measure_memory as m; m({kind!r}, {traced})"
        out = subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True
        ).stdout
        figures.append(float(out))
    return figures[0], figures[1]


def main() -> None:
    t0 = time.perf_counter()
    snap, events = build_events()
    print(f"built {ORDERS:,} orders + {len(events):,} events in {time.perf_counter() - t0:.1f} s")

    sync = L3Sync(align="sequence")
    t0 = time.perf_counter()
    sync.on_record(snap)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for ev in events:
        _rows, verdict = sync.on_record(ev)
        if verdict is not None:
            raise AssertionError(verdict)
    apply_s = time.perf_counter() - t0
    rate = len(events) / apply_s
    print(f"snapshot load: {ORDERS / load_s:,.0f} orders/s; book now {len(sync.book):,} orders")
    print(
        f"events applied (L3Sync.on_record, no output): {rate:,.0f} /s "
        f"(goal {GOAL_EVENTS_S:,}: {rate / GOAL_EVENTS_S:.2f}x)"
    )
    naive_s = _naive_apply(snap, events)
    print(
        f"same events on a naive dict + Decimal book (levels aggregated, no sorted index): "
        f"{len(events) / naive_s:,.0f} /s (L3Sync is {naive_s / apply_s:.2f}x its speed)"
    )
    t0 = time.perf_counter()
    for _ in range(10_000):
        sync.book.top(5)
    print(f"top-5 both sides: {10_000 / (time.perf_counter() - t0):,.0f} /s")

    ours_rss, ours_traced = _child("l3book")
    naive_rss, naive_traced = _child("naive")
    print(
        f"memory per resting order, L3Book: {ours_rss:.0f} B RSS, {ours_traced:.0f} B traced "
        f"(goal <= {GOAL_BYTES}: {ours_rss / GOAL_BYTES:.2f}x of budget)"
    )
    print(
        f"memory per resting order, naive dict[str, (str, Decimal, Decimal)]: "
        f"{naive_rss:.0f} B RSS, {naive_traced:.0f} B traced "
        f"(L3Book uses {ours_rss / naive_rss:.2f}x of it)"
    )


if __name__ == "__main__":
    main()
