"""L3 cross-check: the book rebuilt from a file's own ``l3`` rows vs the exchange's L2 view.

Beyond the per-row checks of :mod:`qa.checks`, an ``l3`` file must rebuild the exchange's
book. This module replays the parsed rows into a deliberately simple, independent order book
(Decimal prices and sizes; it shares no code with the collector's ``L3Book``) and compares it,
at every *moment* the raw file holds the exchange's own view of its book, with that view:

==========  ====================================================  ==============================
exchange    the exchange's view (in the raw file)                 the book it is compared at
==========  ====================================================  ==============================
bitfinex    ``[chan,"cs",CHECKSUM,...]`` frames                   rows received up to that frame
            (CRC32 of the top 25 orders per side)                 (``local_time``)
coinbase    ``http`` bodies of ``/products/<id>/book?level=2``     rows with ``sequence`` <= the
            (top 5 price levels)                                   body's ``sequence``
bitstamp    ``http`` bodies of ``/api/v2/order_book/<pair>``      rows with ``timestamp`` <= the
            (no ``group=2``; top 5 price levels)                  body's microtimestamp (in ms)
==========  ====================================================  ==============================

A moment *agrees* when the checksum or the top-5 levels are equal. A disagreement is
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
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import orjson

from collector.common.layout import FileInfo
from qa.checks import FAIL, OK, WARN, Finding

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

    def checksum(self) -> int:
        """Bitfinex R0: ``id:amount`` of the top 25 orders per side, interleaved, signed CRC32."""
        bids = sorted(
            ((p, int(i), a) for i, (s, p, _, a) in self.orders.items() if s == "B"),
            key=lambda t: (-t[0], t[1]),
        )[:25]
        asks = sorted(
            ((p, int(i), a) for i, (s, p, _, a) in self.orders.items() if s == "A"),
            key=lambda t: (t[0], t[1]),
        )[:25]
        parts: list[str] = []
        for k in range(25):
            if k < len(bids):
                parts += [str(bids[k][1]), bids[k][2]]
            if k < len(asks):
                parts += [str(asks[k][1]), "-" + asks[k][2]]
        crc = zlib.crc32(":".join(parts).encode())
        return crc - (1 << 32) if crc >= (1 << 31) else crc


# --- the exchange's views, per exchange (a table, not branches in the generic code) -------


def _levels(rows: Any, n: int) -> tuple[tuple[Decimal, Decimal], ...]:
    return tuple((Decimal(str(r[0])), Decimal(str(r[1]))) for r in rows[:n])


def _bitfinex(ev: dict[str, Any]) -> Moment | None:
    if ev.get("t") != "recv" or '"cs"' not in str(ev.get("data", "")):
        return None
    msg = orjson.loads(ev["data"])
    if isinstance(msg, list) and len(msg) >= 3 and msg[1] == "cs":
        ts = float(ev["ts"])
        return Moment(ts, "local_time", int(ts * 1_000_000), checksum=int(msg[2]))
    return None


def _coinbase(ev: dict[str, Any]) -> Moment | None:
    if ev.get("t") != "http" or "level=2" not in str(ev.get("url", "")):
        return None
    body = orjson.loads(ev["data"])
    return Moment(
        float(ev["ts"]),
        "sequence",
        int(body["sequence"]),
        bids=_levels(body["bids"], TOP_N),
        asks=_levels(body["asks"], TOP_N),
    )


def _bitstamp(ev: dict[str, Any]) -> Moment | None:
    url = str(ev.get("url", ""))
    if ev.get("t") != "http" or "/order_book/" not in url or "group=2" in url:
        return None
    body = orjson.loads(ev["data"])
    return Moment(
        float(ev["ts"]),
        "timestamp",
        int(body["microtimestamp"]) // 1000,
        bids=_levels(body["bids"], TOP_N),
        asks=_levels(body["asks"], TOP_N),
    )


VIEWS: dict[str, Callable[[dict[str, Any]], Moment | None]] = {
    "bitfinex": _bitfinex,
    "coinbase": _coinbase,
    "bitstamp": _bitstamp,
}


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
    view = VIEWS.get(exchange)
    result = Result()
    if view is None:
        return result
    moments: list[Moment] = []
    marker_ts: list[float] = []
    for ev in raw_events:
        if ev.get("t") in MARKERS:
            marker_ts.append(float(ev.get("ts", 0.0)))
            continue
        try:
            m = view(ev)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, InvalidOperation):
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
        if m.checksum is not None:
            ok = valid and book.checksum() == m.checksum
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
    if info.exchange not in VIEWS:
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
