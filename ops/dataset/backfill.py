"""REST backfill: the trade ids every host missed, fetched from the exchange, within limits.

Generic: the exchange's adapter builds each page's URL and parses its body into the same
``Trade`` records the collector writes (``build_trades_backfill_url``,
``parse_backfill_trades``; ``None`` where the exchange cannot serve an id range). Requests
are paced to ``rest_share`` of the exchange's published weight limit
(``BACKFILL_WEIGHT_PER_MIN``) and counted against ``rest_budget`` per run; network errors
and 429/5xx answers are tried again with the fleet's retry policy (``collector.common.retry``:
backoff, ``Retry-After``), and a 418 (an IP ban) stops that exchange for the run.

Fetched pages are cached in the dataset (``_backfill/...``) with the id ranges they
answered, so building an hour again makes no request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
import structlog

from collector.common.config import redact_url
from collector.common.errors import UnexpectedMessage
from collector.common.httpxlib import httpx
from collector.common.retry import Backoff, BackoffSettings, is_retryable_status, retry_after_s
from collector.exchanges.base import ExchangeAdapter, StreamSpec
from collector.model import Trade

log = structlog.get_logger()

Range = tuple[int, int]
_MAX_TRIES = 3
# Between two tries of one page (collector.common.retry: a longer Retry-After wins).
BACKOFF = BackoffSettings(initial_s=1.0)
MAX_RETRY_AFTER_S = 120.0  # a longer Retry-After is cut to this: the run has more to fetch


@dataclass
class Cache:
    """What REST answered for one stream's hour: the id ranges asked and the trades got."""

    ranges: list[Range] = field(default_factory=list)
    trades: dict[int, Trade] = field(default_factory=dict)

    def covers(self, lo: int, hi: int) -> bool:
        """Every id of ``[lo, hi]`` was asked already (the ranges are merged)."""
        return any(a <= lo and hi <= b for a, b in self.ranges)

    def add(self, lo: int, hi: int, trades: list[Trade]) -> None:
        if lo > hi:
            return
        self.ranges = _union([*self.ranges, (lo, hi)])
        for t in trades:
            self.trades.setdefault(t.trade_id, t)

    def dumps(self) -> bytes:
        body = {
            "ranges": [list(r) for r in self.ranges],
            "trades": [list(self.trades[i]) for i in sorted(self.trades)],
        }
        return orjson.dumps(body)

    @classmethod
    def loads(cls, data: bytes, symbol: str) -> Cache:
        body = orjson.loads(data)
        c = cls()
        c.ranges = [(int(a), int(b)) for a, b in body["ranges"]]
        for row in body["trades"]:
            t = Trade(
                int(row[0]),
                symbol,
                int(row[2]),
                str(row[3]),
                str(row[4]),
                int(row[5]),
                bool(row[6]),
            )
            c.trades[t.trade_id] = t
        return c


def _union(ranges: list[Range]) -> list[Range]:
    out: list[Range] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


@dataclass
class Fetcher:
    """One run's REST client: a shared request budget and per-exchange pacing."""

    budget: int
    share: float
    client: httpx.Client | None = None
    sleep: Callable[[float], None] = time.sleep
    requests: int = 0
    banned: set[str] = field(default_factory=set)
    _next_at: dict[str, float] = field(default_factory=dict)
    exhausted: bool = False

    def close(self) -> None:
        if self.client is not None:
            self.client.close()

    def _get(self, exchange: str, url: str, weight: int, limit_per_min: int) -> bytes | None:
        """One page, tried again after a network error or an answer the fleet's retry policy
        retries (the backoff's delay, or the ``Retry-After`` when longer); None when the
        exchange gave up, banned us (418) or refused the request."""
        if self.client is None:
            self.client = httpx.Client(timeout=15.0, follow_redirects=False)
        backoff = Backoff(BACKOFF)
        for attempt in range(_MAX_TRIES):
            if self.requests >= self.budget:
                self.exhausted = True
                return None
            # pace: ``weight`` of a ``share`` of the per-minute limit
            gap_s = 60.0 * weight / max(1e-9, limit_per_min * self.share)
            wait = self._next_at.get(exchange, 0.0) - time.monotonic()
            if wait > 0:
                self.sleep(wait)
            self._next_at[exchange] = time.monotonic() + gap_s
            self.requests += 1
            retry_after: float | None = None
            try:
                r = self.client.get(url)
            except httpx.HTTPError as exc:
                log.warning("dataset.rest_error", url=redact_url(url), error=type(exc).__name__)
            else:
                if r.status_code == 200:
                    return r.content
                log.warning("dataset.rest_status", url=redact_url(url), status=r.status_code)
                if r.status_code == 418:
                    self.banned.add(exchange)  # an IP ban: nothing more from it this run
                    return None
                if not is_retryable_status(r.status_code):
                    return None
                retry_after = retry_after_s(r.headers)
            if attempt + 1 < _MAX_TRIES:
                if retry_after is not None:
                    retry_after = min(retry_after, MAX_RETRY_AFTER_S)
                self.sleep(backoff.next_delay(retry_after))
        return None

    def fetch(
        self, adapter: ExchangeAdapter, rest_url: str, spec: StreamSpec, lo: int, hi: int
    ) -> tuple[list[Trade], Range | None]:
        """Trades of ids ``[lo, hi]``: what came back, and the sub-range fully answered."""
        build, parse = adapter.build_trades_backfill_url, adapter.parse_backfill_trades
        weigh = adapter.backfill_weight
        if build is None or parse is None or weigh is None or adapter.EXCHANGE in self.banned:
            return [], None
        got: list[Trade] = []
        a, b = lo, hi
        while a <= b:
            body = self._get(
                adapter.EXCHANGE,
                build(rest_url, spec, a, b),
                weigh(spec),
                adapter.BACKFILL_WEIGHT_PER_MIN,
            )
            if body is None:
                break
            try:
                page = [t for t in parse(body, spec) if isinstance(t, Trade)]
            except UnexpectedMessage as exc:
                log.warning("dataset.rest_body", exchange=adapter.EXCHANGE, error=str(exc))
                break
            got.extend(t for t in page if a <= t.trade_id <= b)
            if not page:
                # nothing there: the exchange has no trade in the rest of the range
                return got, (lo, hi)
            if adapter.BACKFILL_ASCENDING:
                nxt = max(t.trade_id for t in page) + 1
                if nxt <= a:
                    break
                a = nxt
            else:
                nxt = min(t.trade_id for t in page) - 1
                if nxt >= b:
                    break
                b = nxt
        done: Range | None
        if a > b:
            done = (lo, hi)
        elif adapter.BACKFILL_ASCENDING:
            done = (lo, a - 1) if a > lo else None
        else:
            done = (b + 1, hi) if b < hi else None
        return got, done
