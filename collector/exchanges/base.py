"""The contract every exchange module fulfils, and tiny shared helpers.

An exchange module is pure: no sockets, no clock, no logging, no globals that change.
Time comes in as an argument. Generic code (session, book, writer) calls these functions
and never branches on an exchange name.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import orjson

from collector.errors import UnexpectedMessage
from collector.model import Record
from collector.settings import Credentials


@dataclass(frozen=True)
class StreamSpec:
    """What one collector subscribes to, in the exchange's own terms."""

    symbol: str
    data_type: str
    trade_stream: str = "trade"  # Binance: trade | aggTrade
    depth_speed_ms: int = 1000  # Binance: 1000 | 100
    book_len: int = 100  # Bitfinex R0 length
    credentials: Credentials | None = None


class ExchangeAdapter(Protocol):
    """Module-level constants and pure functions of one exchange."""

    EXCHANGE: str
    SYMBOL_PATTERN: re.Pattern[str]
    DATA_TYPES: tuple[str, ...]

    def build_ws_url(self, base_url: str, spec: StreamSpec) -> str: ...

    def build_subscribe(self, spec: StreamSpec, now_s: float) -> list[str]: ...

    def parse(self, raw: str | bytes, ts_recv_us: int) -> list[Record]: ...


def load_object(raw: str | bytes) -> dict[str, Any]:
    """A frame that must be one JSON object; anything else is an UnexpectedMessage."""
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise UnexpectedMessage("frame is not JSON", excerpt=str(raw)[:200]) from exc
    if type(msg) is not dict:
        raise UnexpectedMessage("frame is not an object", excerpt=str(raw)[:200])
    return msg


def iso_to_ms(value: str) -> int:
    """Exact epoch milliseconds of an ISO-8601 UTC time, fraction truncated (not rounded).

    Parses the digits directly: ``datetime.fromisoformat`` would round nanoseconds away.
    """
    m = _ISO.fullmatch(value)
    if m is None:
        raise ValueError(f"not an ISO-8601 UTC time: {value!r}")
    date_part, frac = m.group(1), m.group(2) or ""
    seconds = int(datetime.fromisoformat(date_part + "+00:00").timestamp())
    return seconds * 1000 + int((frac + "000")[:3])


_ISO = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(?:Z|\+00:00)")


def levels(rows: Sequence[Sequence[str]]) -> list[tuple[str, str]]:
    """``[[price, qty, ...], ...]`` → ``[(price, qty), ...]`` (extra columns dropped)."""
    return [(r[0], r[1]) for r in rows]
