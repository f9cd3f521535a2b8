"""L3 cross-check: the book rebuilt from a file's own ``l3`` rows vs the exchange's L2 view.

Beyond the per-row checks of :mod:`qa.checks`, an ``l3`` file must rebuild the exchange's
book. This module replays the parsed rows into a deliberately simple, independent order book
(Decimal prices and sizes; it shares no code with the collector's ``L3Book``) and compares it,
at every *moment* the raw file holds the exchange's own view of its book, with that view.
The exchange adapter says what a view is (``collector/exchanges``; this module names no
exchange):

=============================  =====================================  =========================
adapter capability             the exchange's view (in the raw file)  the book it is compared at
=============================  =====================================  =========================
``parse_checksum`` +           a stream frame carrying a checksum     rows received up to that
``book_checksum``              (Bitfinex ``cs``: CRC32, top 25)       frame (``local_time``)
``parse_l2_view`` → sequence   an ``http`` body of the L2 view URL    rows with ``sequence`` <=
                               (Coinbase ``book?level=2``)            the body's sequence
``parse_l2_view`` → time_ms    an ``http`` body of the L2 view URL    rows with ``timestamp`` <=
                               (Bitstamp ``order_book``)              the body's time (ms)
=============================  =====================================  =========================

Levels are compared on the top 5 per side. A moment *agrees* when the checksum or the top-5
levels are equal. A disagreement is
*explained* when the file says the book could not be trusted then: a ``gap``/``resync``/
``disconnect`` marker in the raw file after the current ``snapshot`` rows and up to the
moment's frame (a checksum mismatch is marked at its own frame's time), or no snapshot yet.
Findings: ``fail`` for any unexplained disagreement, ``warn`` when the agreeing fraction is
below the goal (99.9 %), else ``ok``.
"""

from __future__ import annotations

import bisect
import csv
import gzip
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import orjson

from collector.common.errors import UnexpectedMessage
from collector.common.layout import FileInfo
from collector.exchanges import ADAPTERS
from collector.exchanges.base import ExchangeAdapter
from collector.model import L3Order, PriceLevel
from qa.checks.findings import FAIL, OK, WARN, Finding

GOAL = 0.999
TOP_N = 5
MARKERS = ("gap", "resync", "disconnect")


@dataclass(frozen=True)
class Moment:
    """One point where the exchange showed its book.

    ``cut`` orders the moment among the rows: ``(column, value)`` means "after every row whose
    column is <= value" (rows are in file order and the column grows with it).
    """

    ts: float  # raw file time of the frame (markers at the same time explain it)
    cut_col: str
    cut: int
    checksum: int | None = None
    bids: tuple[tuple[Decimal, Decimal], ...] = ()
    asks: tuple[tuple[Decimal, Decimal], ...] = ()


@dataclass
class Result:
    moments: int = 0
    agree: int = 0
    explained: int = 0
    unexplained: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def fraction(self) -> float:
        return self.agree / self.moments if self.moments else 1.0


class RefBook:
    """Resting orders by id: (side, price, size, size as written); top N by sorting."""

    def __init__(self) -> None:
        self.orders: dict[str, tuple[str, Decimal, Decimal, str]] = {}

    def apply(self, action: str, oid: str, side: str, price: str, size: str) -> None:
        o = self.orders.get(oid)
        if action in ("snapshot", "add"):
            if o is not None and action == "add" and not price:
                price = str(o[1])
            if Decimal(size) > 0:
                self.orders[oid] = (
                    side or (o[0] if o else ""),
                    Decimal(price),
                    Decimal(size),
                    size,
                )
            else:
                self.orders.pop(oid, None)
        elif action == "change" and o is not None and size:
            p = Decimal(price) if price else o[1]
            if Decimal(size) > 0:
                self.orders[oid] = (o[0], p, Decimal(size), size)
            else:
                del self.orders[oid]
        elif action == "delete":
            self.orders.pop(oid, None)
        elif action == "match" and o is not None:
            left = o[2] - Decimal(size)
            if left > 0:
                self.orders[oid] = (o[0], o[1], left, str(left))
            else:
                del self.orders[oid]

    def top(
        self, n: int
    ) -> tuple[tuple[tuple[Decimal, Decimal], ...], tuple[tuple[Decimal, Decimal], ...]]:
        levels: dict[str, dict[Decimal, Decimal]] = {"B": {}, "A": {}}
        for side, p, q, _ in self.orders.values():
            lv = levels.setdefault(side, {})
            lv[p] = lv.get(p, Decimal(0)) + q
        bids = tuple(sorted(levels["B"].items(), reverse=True)[:n])
        asks = tuple(sorted(levels["A"].items())[:n])
        return bids, asks

    def resting(self) -> Iterator[L3Order]:
        """Every resting order as ``(order_id, side, price, size as written)``."""
        for oid, (side, price, _, size) in self.orders.items():
            yield oid, side, str(price), size


# --- the exchange's views, as its adapter reads them -------------------------------------

View = Callable[[dict[str, Any]], "Moment | None"]


def _levels(rows: tuple[PriceLevel, ...], n: int) -> tuple[tuple[Decimal, Decimal], ...]:
    return tuple((Decimal(p), Decimal(q)) for p, q in rows[:n])


def view_reader(adapter: ExchangeAdapter | None) -> View | None:
    """What turns a raw event into a moment for this exchange (None: it shows no view)."""
    if adapter is None:
        return None
    parse_checksum, checksum_of = adapter.parse_checksum, adapter.book_checksum
    parse_l2_view = adapter.parse_l2_view
    if parse_l2_view is None and (parse_checksum is None or checksum_of is None):
        return None

    def read(ev: dict[str, Any]) -> Moment | None:
        t = ev.get("t")
        if t == "recv" and parse_checksum is not None and checksum_of is not None:
            checksum = parse_checksum(ev["data"])
            if checksum is None:
                return None
            ts = float(ev["ts"])
            return Moment(ts, "local_time", int(ts * 1_000_000), checksum=checksum)
        if t == "http" and parse_l2_view is not None:
            view = parse_l2_view(str(ev.get("url", "")), ev["data"])
            if view is None:
                return None
            if view.sequence is not None:
                cut_col, cut = "sequence", view.sequence
            elif view.time_ms is not None:
                cut_col, cut = "timestamp", view.time_ms
            else:
                return None
            bids, asks = _levels(view.bids, TOP_N), _levels(view.asks, TOP_N)
            return Moment(float(ev["ts"]), cut_col, cut, bids=bids, asks=asks)
        return None

    return read


# --- the check ---------------------------------------------------------------------------


def read_rows(path: Path) -> list[dict[str, str]]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(io.StringIO(fh.read())))


def read_raw(path: Path) -> Iterator[dict[str, Any]]:
    with gzip.open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                yield orjson.loads(line)


def crosscheck(
    exchange: str, rows: list[dict[str, str]], raw_events: Iterable[dict[str, Any]]
) -> Result:
    """Replay ``rows`` and compare the book with every moment found in ``raw_events``."""
    adapter = ADAPTERS.get(exchange)
    view = view_reader(adapter)
    result = Result()
    if view is None or adapter is None:
        return result
    checksum_of = adapter.book_checksum
    moments: list[Moment] = []
    marker_ts: list[float] = []
    for ev in raw_events:
        if ev.get("t") in MARKERS:
            marker_ts.append(float(ev.get("ts", 0.0)))
            continue
        try:
            m = view(ev)
        except (
            UnexpectedMessage,
            orjson.JSONDecodeError,
            KeyError,
            TypeError,
            ValueError,
            InvalidOperation,
        ):
            continue
        if m is not None:
            moments.append(m)
    marker_ts.sort()
    pending = sorted(moments, key=lambda m: m.cut)
    book = RefBook()
    snap_s: float | None = None  # receive time of the current snapshot (None: none yet)
    mi = 0

    def evaluate(m: Moment) -> None:
        result.moments += 1
        valid = snap_s is not None
        if m.checksum is not None and checksum_of is not None:
            ok = valid and checksum_of(book.resting()) == m.checksum
        else:
            ok = valid and book.top(TOP_N) == (m.bids, m.asks)
        if ok:
            result.agree += 1
            return
        # a marker after the current snapshot, up to this moment's frame: a recorded gap
        i = bisect.bisect_right(marker_ts, snap_s if snap_s is not None else float("-inf"))
        if not valid or (i < len(marker_ts) and marker_ts[i] <= m.ts):
            result.explained += 1
        else:
            result.unexplained += 1
            if len(result.examples) < 5:
                result.examples.append({"ts": m.ts, "cut": [m.cut_col, m.cut]})

    for k, row in enumerate(rows):
        while mi < len(pending) and _key(row, pending[mi].cut_col) > pending[mi].cut:
            evaluate(pending[mi])
            mi += 1
        action = row["action"]
        # one snapshot = consecutive snapshot rows of one frame (same local_time)
        prev = rows[k - 1] if k else None
        if action == "snapshot" and (
            prev is None
            or prev["action"] != "snapshot"
            or prev.get("local_time") != row.get("local_time")
        ):
            book = RefBook()
            snap_s = int(row.get("local_time") or 0) / 1_000_000
        book.apply(action, row["order_id"], row["side"], row["price"], row["size"])
    while mi < len(pending):
        evaluate(pending[mi])
        mi += 1
    return result


def _key(row: dict[str, str], col: str) -> int:
    value = row.get(col) or ""
    return int(value) if value else -1


def check_l3_files(parsed: Path, raw: Path | None, info: FileInfo) -> list[Finding]:
    """The QA finding of one ``l3`` file (the runner calls this for data type ``l3``)."""
    if raw is None or not raw.is_file():
        return [Finding("l3_crosscheck", WARN, "no raw file: the book cannot be cross-checked")]
    if view_reader(ADAPTERS.get(info.exchange)) is None:
        return [Finding("l3_crosscheck", OK, f"no L2 view known for {info.exchange}")]
    result = crosscheck(info.exchange, read_rows(parsed), read_raw(raw))
    details = {
        "moments": result.moments,
        "agree": result.agree,
        "explained": result.explained,
        "unexplained": result.unexplained,
        "fraction": round(result.fraction, 6),
        "examples": result.examples,
    }
    if result.moments == 0:
        return [Finding("l3_crosscheck", OK, "no exchange L2 view recorded in raw", details)]
    msg = (
        f"{result.agree}/{result.moments} moments agree ({result.fraction:.4%}); "
        f"{result.explained} disagreements explained by recorded gaps, "
        f"{result.unexplained} unexplained"
    )
    if result.unexplained:
        sev = FAIL
    elif result.fraction < GOAL:
        sev = WARN
    else:
        sev = OK
    return [Finding("l3_crosscheck", sev, msg, details)]
