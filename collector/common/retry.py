"""The retry policy of every program: one backoff, one ``Retry-After`` parser, one rule for
which HTTP answers are worth another try. Standard library only.

- :class:`Backoff`: capped exponential backoff with "full jitter" (a delay drawn between half
  the cap and the cap), reset by the caller after a success; a ``Retry-After`` wins when it
  is longer.
- :func:`retry_after_s`: ``Retry-After`` as delta-seconds or an HTTP-date (RFC 9110 §10.2.3),
  from any header container (httpx headers, a websocket handshake's ``(name, value)`` list).
- :func:`is_retryable_status`: 5xx, 429 (rate limited) and 418 (Binance's IP ban, which
  carries a ``Retry-After``); any other 4xx means the request itself is wrong.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class BackoffSettings:
    """Delays of one backoff: ``initial_s`` × ``multiplier``^attempt, at most ``max_s``."""

    initial_s: float = 0.5
    max_s: float = 60.0
    multiplier: float = 2.0


class Backoff:
    """Capped, jittered exponential backoff ("full jitter"), reset by the caller."""

    def __init__(self, settings: BackoffSettings, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.attempt = 0
        self._rng = rng or random.Random()

    def reset(self) -> None:
        self.attempt = 0

    def next_delay(self, retry_after_s: float | None = None) -> float:
        s = self.settings
        cap = min(s.max_s, s.initial_s * (s.multiplier**self.attempt))
        self.attempt += 1
        delay = self._rng.uniform(cap / 2, cap) if cap > 0 else 0.0
        if retry_after_s is not None:
            delay = max(delay, retry_after_s)
        return delay


def is_retryable_status(status: int) -> bool:
    """5xx, 429 and 418 are worth retrying (after the ``Retry-After`` they carry)."""
    return status >= 500 or status in (418, 429)


def _header(headers: object, name: str) -> str | None:
    if isinstance(headers, Mapping) or hasattr(headers, "get"):
        value = headers.get(name)
        if value is not None:
            return value.decode("latin-1") if isinstance(value, bytes) else str(value)
    if isinstance(headers, Iterable) and not isinstance(headers, str | bytes | Mapping):
        for item in headers:
            if isinstance(item, tuple) and len(item) == 2:
                key, value = item
                key_s = key.decode("latin-1") if isinstance(key, bytes) else str(key)
                if key_s.lower() == name:
                    return value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return None


def retry_after_s(headers: object, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), or None
    when there is none or it cannot be read."""
    value = _header(headers, "retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    import email.utils  # (only for the rare date form: email costs ~2 ms of a start)

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now if now is not None else datetime.fromtimestamp(time.time(), UTC)
    return max(0.0, (when - now).total_seconds())
