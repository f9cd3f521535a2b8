"""Order book benchmark (issue "Collector, part 2"), all figures measured side by side in one run.

Workload: a 5,000-level-per-side book (tick 0.01 around 30,000.00, Binance-style 8-decimal
strings), then random level updates: 25 % deletes (quantity "0.00000000"), the rest new
absolute quantities; the distance from the top (in ticks) is drawn from a mix of an
exponential with mean 3 (30 %: the busy top of the book) and one with mean 400 (70 %), capped at
6,000. Updates come in messages of 20, then 50 levels (half bids, half asks), as a diff stream does.

Measured, in updates (= price-level changes) per second:
  ours      BookSync.feed (L2Book.apply + top-5 rows built whenever they change), and L2Book.apply
  (a)       plain dict keyed by Decimal + sorted() of each side after every message for the top 5
  (b)       floor: one bare dict assignment per update over the same messages
  alt       the same book logic with sortedcontainers.SortedDict keyed by Decimal (design check)
Each figure is the best of REPEAT interleaved runs, in CPU time (the machine is shared).
Goals: ours >= 10x (a); ours within 5x of (b). Then the CPU share of a busy symbol's
@depth@100ms stream: measured per-update cost (adapter parse of the frame + book) x an assumed
rate of 10 messages/s x 50 levels (and a heavier 10 x 300).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from decimal import Decimal

import orjson
from sortedcontainers import SortedDict

from collector.book import BookSync, L2Book, Rows
from collector.exchanges import binance
from collector.model import BookUpdate, PriceLevel

LEVELS = 5_000
DEPTH = 5
MID_TICKS = 3_000_000  # 30,000.00 at tick 0.01
N_UPDATES = 200_000
PER_MESSAGE = (20, 50)  # levels per message: the comparison runs for each
BASELINE_MESSAGES = 300  # (a) is slow: a subset, reported as a rate
ZERO = "0.00000000"


def price(ticks: int) -> str:
    return f"{ticks // 100}.{ticks % 100:02d}000000"


def workload(per_message: int, seed: int = 1) -> tuple[BookUpdate, list[BookUpdate]]:
    rng = random.Random(seed)
    qtys = [f"{rng.randint(1, 500_000) / 1000:.8f}" for _ in range(1000)]
    snapshot = BookUpdate(
        "BTCUSDT",
        0,
        [(price(MID_TICKS - i), rng.choice(qtys)) for i in range(1, LEVELS + 1)],
        [(price(MID_TICKS + i), rng.choice(qtys)) for i in range(1, LEVELS + 1)],
        is_snapshot=True,
    )
    msgs = []
    for m in range(N_UPDATES // per_message):
        sides: tuple[list[PriceLevel], list[PriceLevel]] = ([], [])
        for j in range(per_message):
            mean = 3.0 if rng.random() < 0.3 else 400.0
            dist = min(int(rng.expovariate(1 / mean)), 6_000) + 1
            qty = ZERO if rng.random() < 0.25 else rng.choice(qtys)
            if j % 2 == 0:
                sides[0].append((price(MID_TICKS - dist), qty))
            else:
                sides[1].append((price(MID_TICKS + dist), qty))
        msgs.append(BookUpdate("BTCUSDT", m, sides[0], sides[1]))
    return snapshot, msgs


REPEAT = 5  # each figure is the best of REPEAT runs (CPU time: the machine is shared)


def timed(fn: Callable[[], int]) -> tuple[float, int]:
    t0 = time.process_time()
    n = fn()
    return time.process_time() - t0, n


def run_ours(snapshot: BookUpdate, msgs: list[BookUpdate]) -> tuple[float, int, tuple[int, int]]:
    sync = BookSync(depth=DEPTH, snapshot_from_rest=False)
    sync.feed(snapshot)

    def go() -> int:
        rows = 0
        feed = sync.feed
        for m in msgs:
            for v in feed(m):
                if isinstance(v, Rows):
                    rows += 1
                else:
                    raise AssertionError(v)
        return rows

    secs, rows = timed(go)
    return secs, rows, sync.book.sizes()


def run_book(snapshot: BookUpdate, msgs: list[BookUpdate]) -> float:
    book = L2Book(DEPTH)
    book.apply(snapshot)

    def go() -> int:
        apply = book.apply
        top = book.top
        n = 0
        for m in msgs:
            if apply(m):
                top()
                n += 1
        return n

    return timed(go)[0]


def run_baseline(snapshot: BookUpdate, msgs: list[BookUpdate]) -> tuple[float, int]:
    """(a): dict keyed by Decimal, both sides re-sorted with sorted() after every message."""
    bids = {Decimal(p): (p, q) for p, q in snapshot.bids}
    asks = {Decimal(p): (p, q) for p, q in snapshot.asks}

    def go() -> int:
        last = None
        rows = 0
        for m in msgs:
            for side, levels in ((bids, m.bids), (asks, m.asks)):
                for p, q in levels:
                    if Decimal(q) == 0:
                        side.pop(Decimal(p), None)
                    else:
                        side[Decimal(p)] = (p, q)
            top = (
                [bids[k] for k in sorted(bids, reverse=True)[:DEPTH]],
                [asks[k] for k in sorted(asks)[:DEPTH]],
            )
            if top != last:
                rows += 1
                last = top
        return rows

    return timed(go)


def run_floor(msgs: list[BookUpdate]) -> float:
    """(b): one bare dict assignment per update, nothing else."""
    d: dict[str, str] = {}

    def go() -> int:
        for m in msgs:
            for p, q in m.bids:
                d[p] = q
            for p, q in m.asks:
                d[p] = q
        return 0

    return timed(go)[0]


def run_sorteddict(snapshot: BookUpdate, msgs: list[BookUpdate]) -> float:
    """Design check: SortedDict keyed by Decimal (negated for bids), top 5 read per change."""
    bids = SortedDict({-Decimal(p): (p, q) for p, q in snapshot.bids})
    asks = SortedDict({Decimal(p): (p, q) for p, q in snapshot.asks})

    def go() -> int:
        last = None
        rows = 0
        for m in msgs:
            for side, levels, sign in ((bids, m.bids, -1), (asks, m.asks, 1)):
                for p, q in levels:
                    k = sign * Decimal(p)
                    if q == ZERO:
                        side.pop(k, None)
                    else:
                        side[k] = (p, q)
            top = (list(bids.values()[:DEPTH]), list(asks.values()[:DEPTH]))
            if top != last:
                rows += 1
                last = top
        return rows

    return timed(go)[0]


def frames(msgs: list[BookUpdate], start_id: int) -> list[bytes]:
    out = []
    for i, m in enumerate(msgs):
        data = {
            "e": "depthUpdate",
            "E": 1_700_000_000_000 + i * 100,
            "s": "BTCUSDT",
            "U": start_id + i,
            "u": start_id + i,
            "b": [list(lv) for lv in m.bids],
            "a": [list(lv) for lv in m.asks],
        }
        out.append(orjson.dumps({"stream": "btcusdt@depth@100ms", "data": data}))
    return out


def stream_cost_per_update(snapshot: BookUpdate, msgs: list[BookUpdate], per_msg: int) -> float:
    """CPU seconds per level update for adapter parse + BookSync.feed, ``per_msg`` levels/frame."""
    bid_levels = [lv for m in msgs for lv in m.bids]
    ask_levels = [lv for m in msgs for lv in m.asks]
    half = per_msg // 2
    regrouped = [
        BookUpdate("BTCUSDT", 0, bid_levels[i : i + half], ask_levels[i : i + half])
        for i in range(0, min(len(bid_levels), len(ask_levels)) - half + 1, half)
    ]
    raw = frames(regrouped, 1_000)
    sync = BookSync(depth=DEPTH, snapshot_from_rest=True)
    for rec in binance.parse(raw[0], 0):  # buffered, then dropped by the snapshot
        assert isinstance(rec, BookUpdate)
        sync.feed(rec)
    sync.feed(BookUpdate("BTCUSDT", 0, snapshot.bids, snapshot.asks, True, 1_000, 1_000))
    assert sync.synced
    t0 = time.process_time()
    for f in raw[1:]:
        for rec in binance.parse(f, 0):
            assert isinstance(rec, BookUpdate)
            for v in sync.feed(rec):
                assert isinstance(v, Rows), v
    cpu = time.process_time() - t0
    return cpu / ((len(raw) - 1) * 2 * half)


def compare(per_message: int) -> tuple[BookUpdate, list[BookUpdate]]:
    snapshot, msgs = workload(per_message)
    n = len(msgs) * per_message
    print(
        f"book {LEVELS} levels/side, {n} random updates in messages of {per_message}, top {DEPTH}"
    )
    base_msgs = msgs[: BASELINE_MESSAGES * 20 // per_message]
    ours_s = book_s = base_s = floor_s = sd_s = float("inf")
    for _ in range(REPEAT):  # interleaved, best of REPEAT each
        secs, rows, sizes = run_ours(snapshot, msgs)
        ours_s = min(ours_s, secs)
        book_s = min(book_s, run_book(snapshot, msgs))
        floor_s = min(floor_s, run_floor(msgs))
        base_s = min(base_s, run_baseline(snapshot, base_msgs)[0])
        sd_s = min(sd_s, run_sorteddict(snapshot, msgs))

    ours = n / ours_s
    book = n / book_s
    base = len(base_msgs) * per_message / base_s
    floor = n / floor_s
    sd = n / sd_s
    print(f"  ours BookSync.feed        {ours:>12,.0f} updates/s  ({1e9 / ours:,.0f} ns/update)")
    print(f"  ours L2Book.apply + top() {book:>12,.0f} updates/s  ({1e9 / book:,.0f} ns/update)")
    print(f"  (a) dict + sorted()       {base:>12,.0f} updates/s  ({len(base_msgs)} messages)")
    print(f"  (b) bare dict assignment  {floor:>12,.0f} updates/s  ({1e9 / floor:,.0f} ns/update)")
    print(f"  alt SortedDict[Decimal]   {sd:>12,.0f} updates/s  ({1e9 / sd:,.0f} ns/update)")
    print(f"  top-5 changed on {rows} of {len(msgs)} messages; book ended at {sizes} levels")
    vs_a = ours / base
    vs_b = floor / ours
    print(f"  ours vs (a): {vs_a:,.0f}x faster (goal >= 10x: {'met' if vs_a >= 10 else 'NOT met'})")
    print(f"  ours vs (b): {vs_b:.1f}x slower (goal <= 5x: {'met' if vs_b <= 5 else 'NOT met'})")
    print(f"  ours vs SortedDict[Decimal]: {ours / sd:.1f}x faster")
    return snapshot, msgs


def main() -> None:
    for per_message in PER_MESSAGE:
        snapshot, msgs = compare(per_message)
    for per_msg, label in ((50, "10 msg/s x 50 levels"), (300, "10 msg/s x 300 levels")):
        cost = min(stream_cost_per_update(snapshot, msgs, per_msg) for _ in range(3))
        share = cost * 10 * per_msg * 100
        print(
            f"busy @depth@100ms ({label}): parse + book {cost * 1e9:,.0f} ns/update"
            f" -> {share:.3f} % of one core (goal < 5 %: {'met' if share < 5 else 'NOT met'})"
        )


if __name__ == "__main__":
    main()
