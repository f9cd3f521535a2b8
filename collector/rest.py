"""Generic REST fetches for book snapshots: retry policy, Retry-After, request-weight budget.

The response body reaches the processor as a ``Frame(t="http")``, handed to the same
``deliver`` as the websocket frames (all on one trio thread), so it is written raw
(replayable) and ordered with the stream.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from collector.common import tls
from collector.common.errors import FeedError
from collector.common.httpxlib import httpx
from collector.common.retry import Backoff, BackoffSettings, is_retryable_status, retry_after_s
from collector.common.structloglib import structlog
from collector.session import Frame

log = structlog.get_logger()


def is_retryable(exc: BaseException) -> bool:
    """REST calls: network trouble, and the answers the retry policy retries."""
    if isinstance(exc, httpx.HTTPStatusError):
        return is_retryable_status(exc.response.status_code)
    return isinstance(exc, httpx.TransportError)


@dataclass
class WeightBudget:
    """Keeps REST calls under a per-minute request-weight limit (Binance ``REQUEST_WEIGHT``).

    The server's own count (a ``*-USED-WEIGHT-1M`` header) wins over our estimate.
    """

    limit_per_min: int = 6000
    header: str = "X-MBX-USED-WEIGHT-1M"
    headroom: float = 0.8
    used: int = 0
    minute: int = 0

    def delay_for(self, weight: int, now_s: float) -> float:
        minute = int(now_s // 60)
        if minute != self.minute:
            self.minute, self.used = minute, 0
        if self.used + weight <= self.limit_per_min * self.headroom:
            return 0.0
        return (minute + 1) * 60 - now_s

    def spend(self, weight: int, response: httpx.Response | None, now_s: float) -> None:
        self.delay_for(0, now_s)
        self.used += weight
        if response is not None:
            reported = response.headers.get(self.header)
            if reported is not None and reported.isdigit():
                self.used = int(reported)


@asynccontextmanager
async def open_fetcher(
    deliver: Callable[[Frame], object],
    backoff: BackoffSettings,
    conn: str = "rest",
    *,
    url: str,
) -> AsyncIterator[SnapshotFetcher]:
    """A fetcher with its own HTTP client (10 s timeout per request), closed on exit; ``url``
    is one it will fetch (its scheme picks the TLS context: collector/common/tls.py)."""
    async with httpx.AsyncClient(timeout=10.0, verify=tls.for_http(url)) as client:
        yield SnapshotFetcher(client, deliver, backoff, conn=conn)


class SnapshotFetcher:
    """Fetches one URL until it succeeds, backing off on failures; one fetch at a time."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        deliver: Callable[[Frame], object],
        backoff: BackoffSettings,
        budget: WeightBudget | None = None,
        conn: str = "rest",
    ) -> None:
        self.client = client
        self.conn = conn  # the raw envelope's `conn` of the bodies it delivers
        self.deliver = deliver
        self.backoff = Backoff(backoff)
        self.budget = budget or WeightBudget()
        self.in_flight = False
        self.failures = 0

    async def fetch(self, url: str, weight: int = 1) -> None:
        """GET ``url`` with retries; deliver the successful body as an http Frame."""
        self.in_flight = True
        try:
            while True:
                wait = self.budget.delay_for(weight, time.time())
                if wait > 0:
                    log.warning(
                        "rest.weight_budget_wait", wait_s=round(wait, 1), used=self.budget.used
                    )
                    await trio.sleep(wait)
                response: httpx.Response | None = None
                try:
                    response = await self.client.get(url)
                    self.budget.spend(weight, response, time.time())
                    response.raise_for_status()
                except (httpx.HTTPStatusError, httpx.TransportError) as exc:
                    if response is None:
                        self.budget.spend(weight, None, time.time())
                    if not is_retryable(exc):
                        # A client error (e.g. Binance 400 "Invalid symbol"): retrying won't help.
                        body = response.text[:200] if response is not None else ""
                        raise FeedError(f"snapshot request refused: {exc}", excerpt=body) from exc
                    self.failures += 1
                    delay = self.backoff.next_delay(
                        retry_after_s(response.headers) if response is not None else None
                    )
                    status = response.status_code if response is not None else None
                    if status == 418:
                        log.error(
                            "rest.banned", url=url, status=status, retry_in_s=delay, alert=True
                        )
                    else:
                        log.warning(
                            "rest.retry",
                            url=url,
                            status=status,
                            error=repr(exc)[:200],
                            retry_in_s=round(delay, 3),
                        )
                    await trio.sleep(delay)
                    continue
                self.backoff.reset()
                self.deliver(
                    Frame(
                        "http",
                        self.conn,
                        time.time(),
                        data=response.text,
                        addr=url,
                        status=response.status_code,
                    )
                )
                return
        finally:
            self.in_flight = False
