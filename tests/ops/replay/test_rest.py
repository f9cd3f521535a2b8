"""REST: recorded bodies byte for byte, matching, exchange error bodies, 429/418 faults."""

from __future__ import annotations

import httpx
import pytest
import trio

from ops.replay import (
    Capture,
    Faults,
    ReplayServer,
)
from tests.ops.replay.helpers import (
    serving,
)


@pytest.mark.parametrize("exchange", ["binance", "coinbase", "bitstamp"])
async def test_rest_bodies_are_byte_exact(captures: dict[str, Capture], exchange: str) -> None:
    """Every recorded REST URL is answered 200 with the recorded body, byte for byte."""
    capture = captures[exchange]

    with trio.fail_after(20):
        async with serving(capture) as server, httpx.AsyncClient(base_url=server.http_url) as c:
            answers = [
                (await c.get(rec.path, params=list(rec.params)), rec.body) for rec in capture.http
            ]

    assert len(answers) == len(capture.http) > 0
    for response, body in answers:
        assert response.status_code == 200
        assert response.content == body
    assert sum(server.stats.http_requests.values()) == len(capture.http)


async def test_rest_matching_and_errors(captures: dict[str, Capture]) -> None:
    """limit may differ; unknown queries get the exchange's error; trailing slashes match."""
    binance, coinbase, bitstamp = captures["binance"], captures["coinbase"], captures["bitstamp"]
    nkn = next(r.body for r in binance.http if ("symbol", "NKNUSDT") in r.params)
    eth = next(r.body for r in bitstamp.http if r.path.endswith("/ethusd"))

    with trio.fail_after(20):
        async with serving(binance, coinbase, bitstamp) as server, httpx.AsyncClient() as c:
            url = server.http_url
            loose = await c.get(f"{url}/api/v3/depth?symbol=NKNUSDT&limit=5000")
            bad_symbol = await c.get(f"{url}/api/v3/depth?symbol=BTCUSDT&limit=1000")
            prefixed = await c.get(f"{url}/binance/api/v3/depth?limit=10&symbol=NKNUSDT")
            slash = await c.get(f"{url}/api/v2/order_book/ethusd/")
            missing = await c.get(f"{url}/coinbase/products/BTC-USD/book?level=2")

    assert (loose.status_code, loose.content) == (200, nkn)
    assert (bad_symbol.status_code, bad_symbol.json()) == (
        400,
        {"code": -1121, "msg": "Invalid symbol."},
    )
    assert (prefixed.status_code, prefixed.content) == (200, nkn)
    assert (slash.status_code, slash.content) == (200, eth)
    assert (missing.status_code, missing.json()) == (404, {"message": "NotFound"})


async def test_set_http_overrides_and_adds_answers(captures: dict[str, Capture]) -> None:
    """set_http answers before the recording, with its status and headers."""
    server_ = ReplayServer([captures["binance"]])
    server_.set_http("/api/v3/depth?symbol=NKNUSDT&limit=1000", '{"x":1}', headers={"X-A": "b"})
    server_.set_http("/api/v3/ping", "{}", status=503)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(server_.serve, 0)
            async with httpx.AsyncClient(base_url=server_.http_url) as c:
                depth = await c.get("/api/v3/depth", params={"symbol": "NKNUSDT", "limit": 100})
                ping = await c.get("/api/v3/ping")
            nursery.cancel_scope.cancel()

    assert (depth.status_code, depth.content, depth.headers["x-a"]) == (200, b'{"x":1}', "b")
    assert (ping.status_code, ping.content) == (503, b"{}")


async def test_bad_http_requests_get_400_and_server_keeps_serving(
    captures: dict[str, Capture],
) -> None:
    """A malformed request line or Content-Length gets 400; other clients are unaffected."""
    replies = []

    with trio.fail_after(10):
        async with serving(captures["coinbase"]) as server:
            for raw in (b"garbage\r\n\r\n", b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"):
                stream = await trio.open_tcp_stream("127.0.0.1", server.port or 0)
                await stream.send_all(raw)
                replies.append(await stream.receive_some(4096))
                await stream.aclose()
            async with httpx.AsyncClient() as client:
                ok = await client.get(f"{server.http_url}/products")

    assert [r.split(b"\r\n")[0] for r in replies] == [b"HTTP/1.1 400 Bad Request"] * 2
    assert ok.status_code == 200


@pytest.mark.parametrize("status", [429, 418])
async def test_http_rate_limit_fault(captures: dict[str, Capture], status: int) -> None:
    """The next K requests get 429/418 with Retry-After, then answers are normal."""
    faults = Faults(http_errors=2, http_error_status=status, http_retry_after_s=7)

    with trio.fail_after(10):
        async with (
            serving(captures["coinbase"], faults=faults) as server,
            httpx.AsyncClient(base_url=server.http_url) as c,
        ):
            got = [await c.get("/products") for _ in range(3)]

    assert [r.status_code for r in got] == [status, status, 200]
    assert [r.headers.get("retry-after") for r in got] == ["7", "7", None]
    assert faults.http_errors == 0
