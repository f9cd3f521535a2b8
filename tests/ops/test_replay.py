"""Replay server against real clients on loopback: httpx for REST, trio-websocket for streams.

Recorded captures come from shared/data/recorded (read-only); unrecorded shapes (Binance @trade,
Bitfinex, Coinbase full, Bitstamp live_orders) are small captures built with write_capture.
Every test runs at full speed (speed=None) and is bounded by trio.fail_after.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    open_websocket_url,
)
from wsproto import ConnectionType, WSConnection
from wsproto.events import Ping, Request

from ops.replay import (
    Capture,
    CaptureError,
    CoinbaseTestKey,
    Faults,
    ReplayServer,
    ReplayThread,
    write_capture,
)

RECORDED = Path(__file__).resolve().parents[3] / "shared" / "data" / "recorded"
if not RECORDED.is_dir():
    RECORDED = Path("/work/shared/data/recorded")
FILES = {
    "binance": RECORDED / "binance-spot-2021-10-11.jsonl.gz",
    "coinbase": RECORDED / "coinbase-exchange-2021-04-17.jsonl.gz",
    "bitstamp": RECORDED / "bitstamp-2022-01-05.jsonl.gz",
}
ROOT = Path(__file__).resolve().parents[2]
TEST_KEY = CoinbaseTestKey("test-key", "c2VjcmV0LXNlY3JldC1zZWNyZXQ=", "test-pass")


@pytest.fixture(scope="module")
def captures() -> dict[str, Capture]:
    return {name: Capture.load(path) for name, path in FILES.items()}


@asynccontextmanager
async def serving(*captures: Capture | Path, **kwargs: Any) -> AsyncIterator[ReplayServer]:
    server = ReplayServer(list(captures), **kwargs)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, 0)
        yield server
        nursery.cancel_scope.cancel()


def recv_data(capture: Capture, pred: Any) -> list[str]:
    """The recorded recv strings whose decoded message satisfies pred, in file order."""
    frames = [f.data for rc in capture.connections.values() for f in rc.recvs if pred(f.msg)]
    assert all(isinstance(f, str) for f in frames), "text frames only"
    return [str(f) for f in frames]


async def recv_n(ws: WebSocketConnection, n: int) -> list[str]:
    return [str(await ws.get_message()) for _ in range(n)]


async def recv_json(ws: WebSocketConnection) -> Any:
    return json.loads(await ws.get_message())


def trade_events(n: int) -> list[dict[str, Any]]:
    """A hand-built Binance capture: n @trade frames (web-socket-streams.md, Trade Streams)."""
    events: list[dict[str, Any]] = [
        {"t": "connect", "conn": "c1", "ts": 100.0, "addr": "wss://stream.binance.com:9443/stream"}
    ]
    for i in range(n):
        data = {"e": "trade", "E": 1700000000000 + i, "s": "BTCUSDT", "t": 10 + i, "p": "1.0",
                "q": "2.0", "T": 1700000000000 + i, "m": i % 2 == 0, "M": True}  # fmt: skip
        msg = {"stream": "btcusdt@trade", "data": data}
        events.append({"t": "recv", "conn": "c1", "ts": 100.0 + i * 0.1, "data": msg})
    return events


@pytest.fixture
def trades_capture(tmp_path: Path) -> Path:
    return write_capture(tmp_path / "binance-trade.jsonl.gz", trade_events(6))


def trade_frames(path: Path) -> list[str]:
    return recv_data(Capture.load(path), lambda m: True)


# ---- REST ------------------------------------------------------------------------------------


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


# ---- Binance ---------------------------------------------------------------------------------


async def test_binance_subscribe_streams_exact_recorded_frames(
    captures: dict[str, Capture],
) -> None:
    """SUBSCRIBE is acked, then only that stream's frames arrive, exact and in order."""
    capture = captures["binance"]
    name = "nknusdt@depth@100ms"
    expected = recv_data(capture, lambda m: m["stream"] == name)

    with trio.fail_after(10):
        async with serving(capture) as server, open_websocket_url(f"{server.ws_url}/stream") as ws:
            await ws.send_message('{"method":"SUBSCRIBE","params":["nknusdt@depth@100ms"],"id":7}')
            ack = await ws.get_message()
            got = await recv_n(ws, len(expected))
            with trio.move_on_after(0.2):
                extra = await ws.get_message()
                pytest.fail(f"unexpected frame {extra!r}")

    assert ack == '{"result":null,"id":7}'
    assert got == expected
    assert server.stats.frames_sent == len(expected) > 10


async def test_binance_depth_1000ms_served_from_100ms_frames(
    captures: dict[str, Capture],
) -> None:
    """A @depth subscription gets the recorded @depth@100ms payloads under its own name."""
    expected = [
        d.replace('"stream":"lrcbtc@depth@100ms"', '"stream":"lrcbtc@depth"')
        for d in recv_data(captures["binance"], lambda m: m["stream"] == "lrcbtc@depth@100ms")
    ]

    with trio.fail_after(10):
        async with (
            serving(captures["binance"]) as server,
            open_websocket_url(f"{server.ws_url}/stream") as ws,
        ):
            await ws.send_message('{"method":"SUBSCRIBE","params":["lrcbtc@depth"],"id":1}')
            await ws.get_message()
            got = await recv_n(ws, len(expected))

    assert got == expected


async def test_binance_url_streams_and_raw_endpoint(captures: dict[str, Capture]) -> None:
    """/stream?streams=a/b merges in recorded order; /ws/<s> sends the bare payload substring."""
    capture = captures["binance"]
    pair = {"lrcbtc@aggTrade", "lrcbtc@bookTicker"}
    merged = recv_data(capture, lambda m: m["stream"] in pair)
    raw = [
        d[len('{"stream":"lrcbtc@bookTicker","data":') : -1]
        for d in recv_data(capture, lambda m: m["stream"] == "lrcbtc@bookTicker")
    ]

    with trio.fail_after(10):
        async with serving(capture) as server:
            url = f"{server.ws_url}/stream?streams=lrcbtc@aggTrade/lrcbtc@bookTicker"
            async with open_websocket_url(url) as ws:
                got_merged = await recv_n(ws, len(merged))
            async with open_websocket_url(f"{server.ws_url}/ws/lrcbtc@bookTicker") as ws:
                got_raw = await recv_n(ws, len(raw))

    assert got_merged == merged
    assert got_raw == raw
    assert json.loads(got_raw[0])["s"] == "LRCBTC"


async def test_binance_unknown_stream_is_refused(captures: dict[str, Capture]) -> None:
    """A symbol missing from exchangeInfo gets error code 2 and no frames."""
    with trio.fail_after(10):
        async with (
            serving(captures["binance"]) as server,
            open_websocket_url(f"{server.ws_url}/stream") as ws,
        ):
            await ws.send_message('{"method":"SUBSCRIBE","params":["nosuchcoin@trade"],"id":3}')
            reply = await ws.get_message()
            with trio.move_on_after(0.2) as idle:
                await ws.get_message()

    assert reply == (
        '{"error":{"code":2,"msg":"Invalid request: unknown stream nosuchcoin@trade"},"id":3}'
    )
    assert idle.cancelled_caught


async def test_binance_trade_capture_built_by_test(trades_capture: Path) -> None:
    """A hand-built @trade capture is served like a recording (symbols from its frames)."""
    expected = trade_frames(trades_capture)

    with trio.fail_after(10):
        async with (
            serving(trades_capture) as server,
            open_websocket_url(f"{server.ws_url}/stream") as ws,
        ):
            await ws.send_message('{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}')
            assert await ws.get_message() == '{"result":null,"id":1}'
            got = await recv_n(ws, len(expected))
            await ws.send_message('{"method":"LIST_SUBSCRIPTIONS","id":2}')
            listed = await ws.get_message()

    assert got == expected
    assert listed == '{"result":["btcusdt@trade"],"id":2}'


async def test_binance_resubscribe_restarts_the_stream_without_duplicates(
    trades_capture: Path,
) -> None:
    """UNSUBSCRIBE silences a paced stream; SUBSCRIBE again replays it once from the start."""
    frames = trade_frames(trades_capture)

    with trio.fail_after(10):
        async with (
            serving(trades_capture, speed=1.0) as server,
            open_websocket_url(f"{server.ws_url}/stream") as ws,
        ):
            await ws.send_message('{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}')
            first = await recv_n(ws, 2)
            await ws.send_message('{"method":"UNSUBSCRIBE","params":["btcusdt@trade"],"id":2}')
            while (unsubscribed := await ws.get_message()) in frames:
                first.append(str(unsubscribed))  # sent before the server read the UNSUBSCRIBE
            await ws.send_message('{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":3}')
            resubscribed = await ws.get_message()
            again = await recv_n(ws, len(frames))
            with trio.move_on_after(0.3) as idle:
                await ws.get_message()

    assert first == ['{"result":null,"id":1}', *frames[: len(first) - 1]]
    assert (unsubscribed, resubscribed) == ('{"result":null,"id":2}', '{"result":null,"id":3}')
    assert again == frames
    assert idle.cancelled_caught


async def test_binance_client_answering_pings_stays_connected(trades_capture: Path) -> None:
    """Server pings every interval; a trio-websocket client answers and is kept."""
    with trio.fail_after(10):
        async with (
            serving(trades_capture, ping_interval_s=0.02, pong_timeout_s=0.5) as server,
            open_websocket_url(f"{server.ws_url}/stream") as ws,
        ):
            await trio.sleep(0.3)
            await ws.send_message('{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}')
            ack = await ws.get_message()

    assert ack == '{"result":null,"id":1}'


async def test_binance_client_ignoring_pings_is_dropped(trades_capture: Path) -> None:
    """A client that never answers a ping loses its connection after the pong timeout."""
    pings = 0

    with trio.fail_after(10):
        async with serving(trades_capture, ping_interval_s=0.05, pong_timeout_s=0.2) as server:
            stream = await trio.open_tcp_stream("127.0.0.1", server.port or 0)
            client = WSConnection(ConnectionType.CLIENT)
            await stream.send_all(client.send(Request(host="127.0.0.1", target="/stream")))
            while data := await stream.receive_some(65536):
                client.receive_data(data)
                pings += sum(isinstance(e, Ping) for e in client.events())
            await stream.aclose()

    assert pings >= 1


# ---- Coinbase --------------------------------------------------------------------------------


async def test_coinbase_matches_subscription(captures: dict[str, Capture]) -> None:
    """subscribe → one subscriptions reply, then last_match + match of that product only."""
    capture = captures["coinbase"]
    expected = recv_data(
        capture,
        lambda m: m["type"] in ("last_match", "match") and m.get("product_id") == "SKL-BTC",
    )
    sub = {"type": "subscribe", "product_ids": ["SKL-BTC"], "channels": ["matches", "heartbeat"]}

    with trio.fail_after(10):
        async with serving(capture) as server, open_websocket_url(server.ws_url) as ws:
            await ws.send_message(json.dumps(sub))
            reply = await recv_json(ws)
            got = await recv_n(ws, len(expected))
            with trio.move_on_after(0.2) as idle:
                await ws.get_message()

    assert reply == {
        "type": "subscriptions",
        "channels": [
            {"name": "matches", "product_ids": ["SKL-BTC"]},
            {"name": "heartbeat", "product_ids": ["SKL-BTC"]},
        ],
    }
    assert got == expected
    assert json.loads(got[0])["type"] == "last_match"
    assert idle.cancelled_caught


async def test_coinbase_level2_batch_from_level2_frames(captures: dict[str, Capture]) -> None:
    """level2_batch is public and served from recorded level2 (snapshot + l2update)."""
    capture = captures["coinbase"]
    expected = recv_data(
        capture,
        lambda m: m["type"] in ("snapshot", "l2update") and m.get("product_id") == "NU-GBP",
    )
    sub = {"type": "subscribe", "channels": [{"name": "level2_batch", "product_ids": ["NU-GBP"]}]}

    with trio.fail_after(10):
        async with (
            serving(capture, coinbase_auth=TEST_KEY) as server,
            open_websocket_url(server.ws_url) as ws,
        ):
            await ws.send_message(json.dumps(sub))
            reply = await recv_json(ws)
            got = await recv_n(ws, len(expected))

    assert reply["channels"] == [{"name": "level2_batch", "product_ids": ["NU-GBP"]}]
    assert got == expected
    assert json.loads(got[0])["type"] == "snapshot"


async def test_coinbase_level2_authentication(captures: dict[str, Capture]) -> None:
    """level2 without auth or with a bad signature is refused; a valid signature works."""
    sub = {"type": "subscribe", "product_ids": ["SKL-USD"], "channels": ["level2"]}
    bad = {**sub, **TEST_KEY.subscribe_fields("1700000000"), "signature": "AAAA"}
    good = {**sub, **TEST_KEY.subscribe_fields()}

    with trio.fail_after(10):
        async with (
            serving(captures["coinbase"], coinbase_auth=TEST_KEY) as server,
            open_websocket_url(server.ws_url) as ws,
        ):
            await ws.send_message(json.dumps(sub))
            missing = await recv_json(ws)
            await ws.send_message(json.dumps(bad))
            wrong = await recv_json(ws)
            await ws.send_message(json.dumps(good))
            accepted = await recv_json(ws)
            first = await recv_json(ws)

    assert missing == {
        "type": "error",
        "message": "Failed to subscribe",
        "reason": "level2, level3, and full channels now require authentication",
    }
    assert wrong == {
        "type": "error",
        "message": "Authentication Failed",
        "reason": "invalid signature",
    }
    assert accepted == {
        "type": "subscriptions",
        "channels": [{"name": "level2", "product_ids": ["SKL-USD"]}],
    }
    assert (first["type"], first["product_id"]) == ("snapshot", "SKL-USD")


async def test_coinbase_unknown_product_and_subscribe_timeout(
    captures: dict[str, Capture],
) -> None:
    """A product missing from /products is refused; no subscribe in time closes the socket."""
    sub = {"type": "subscribe", "product_ids": ["BTC-XYZ"], "channels": ["matches"]}

    with trio.fail_after(10):
        async with (
            serving(captures["coinbase"], subscribe_timeout_s=0.2) as server,
            open_websocket_url(server.ws_url) as ws,
        ):
            await ws.send_message(json.dumps(sub))
            error = await recv_json(ws)
            with pytest.raises(ConnectionClosed):
                await ws.get_message()

    assert error == {
        "type": "error",
        "message": "Failed to subscribe",
        "reason": "BTC-XYZ is not a valid product",
    }


async def test_coinbase_full_capture_built_by_test(tmp_path: Path) -> None:
    """A hand-built full-channel capture (docs shapes) is served to an authenticated client."""
    common = {"product_id": "BTC-USD", "time": "2024-01-01T00:00:00.000000Z"}
    msgs = [
        {"type": "received", "order_id": "o1", "order_type": "limit", "size": "1.0",
         "price": "100.00", "side": "buy", "sequence": 11, **common},
        {"type": "open", "order_id": "o1", "price": "100.00", "remaining_size": "1.0",
         "side": "buy", "sequence": 12, **common},
        {"type": "heartbeat", "sequence": 12, "last_trade_id": 5, **common},
        {"type": "done", "order_id": "o1", "price": "100.00", "remaining_size": "0",
         "reason": "canceled", "side": "buy", "sequence": 13, **common},
    ]  # fmt: skip
    events = [{"t": "recv", "conn": "c1", "ts": 1.0, "data": m} for m in msgs]
    path = write_capture(tmp_path / "cb-full.jsonl.gz", events, exchange="coinbase")
    expected = [orjson.dumps(m).decode() for m in msgs if m["type"] != "heartbeat"]
    sub = {"type": "subscribe", "product_ids": ["BTC-USD"], "channels": ["full"]}

    with trio.fail_after(10):
        async with (
            serving(path, coinbase_auth=TEST_KEY) as server,
            open_websocket_url(server.ws_url) as ws,
        ):
            await ws.send_message(json.dumps({**sub, **TEST_KEY.subscribe_fields()}))
            await ws.get_message()
            got = await recv_n(ws, 3)

    assert got == expected


# ---- Bitstamp --------------------------------------------------------------------------------


async def test_bitstamp_subscribe_heartbeat_and_bad_channel(captures: dict[str, Capture]) -> None:
    """bts:subscribe is acked then the channel's frames arrive; heartbeat; bad pair refused."""
    capture = captures["bitstamp"]
    channel = "diff_order_book_usdtusd"
    expected = recv_data(capture, lambda m: m["channel"] == channel and m["event"] == "data")
    sub = {"event": "bts:subscribe", "data": {"channel": channel}}

    with trio.fail_after(10):
        async with serving(capture) as server, open_websocket_url(server.ws_url) as ws:
            await ws.send_message(json.dumps(sub))
            ack = await ws.get_message()
            got = await recv_n(ws, len(expected))
            await ws.send_message('{"event":"bts:heartbeat"}')
            beat = await ws.get_message()
            await ws.send_message(
                '{"event":"bts:subscribe","data":{"channel":"live_trades_nosuch"}}'
            )
            error = await recv_json(ws)

    assert (
        ack
        == '{"event":"bts:subscription_succeeded","channel":"diff_order_book_usdtusd","data":{}}'
    )
    assert got == expected
    assert beat == '{"event":"bts:heartbeat","channel":"","data":{"status":"success"}}'
    assert error["event"] == "bts:error"


async def test_bitstamp_live_orders_and_reconnect_request(tmp_path: Path) -> None:
    """A hand-built live_orders capture; the fault sends bts:request_reconnect after N frames."""
    events = [
        {"t": "connect", "conn": "c1", "ts": 1.0, "addr": "wss://ws.bitstamp.net"},
        *(
            {"t": "recv", "conn": "c1", "ts": 1.0 + i, "data": {"data": {"id": i, "amount": 1.0,
             "amount_str": "1.0", "price": 10.0, "price_str": "10.0", "order_type": 0,
             "datetime": "1", "microtimestamp": "1000000"},
             "channel": "live_orders_btcusd", "event": "order_created"}}
            for i in range(3)
        ),
    ]  # fmt: skip
    path = write_capture(tmp_path / "bitstamp-l3.jsonl.gz", events)
    expected = trade_frames(path)
    faults = Faults(reconnect_request_after=2)
    sub = {"event": "bts:subscribe", "data": {"channel": "live_orders_btcusd"}}

    with trio.fail_after(10):
        async with serving(path, faults=faults) as server, open_websocket_url(server.ws_url) as ws:
            await ws.send_message(json.dumps(sub))
            got = await recv_n(ws, 5)

    assert got[1:] == [
        *expected[:2],
        '{"event":"bts:request_reconnect","channel":"","data":""}',
        expected[2],
    ]


# ---- Bitfinex --------------------------------------------------------------------------------

BOOK_ACK = {"event": "subscribed", "channel": "book", "chanId": 17, "symbol": "tBTCUSD",
            "prec": "R0", "freq": "F0", "len": "100", "pair": "BTCUSD"}  # fmt: skip
TRADES_ACK = {"event": "subscribed", "channel": "trades", "chanId": 18, "symbol": "tBTCUSD",
              "pair": "BTCUSD"}  # fmt: skip
BITFINEX_FRAMES: list[Any] = [
    {"event": "info", "version": 2, "platform": {"status": 1}},
    BOOK_ACK,
    [17, [[1, 100.0, 1.5], [2, 101.0, -2.0]]],
    TRADES_ACK,
    [18, [[5, 1700000000000, 0.1, 100.5]]],
    [17, [3, 100.5, 0.25]],
    [18, "te", [6, 1700000000001, -0.2, 100.4]],
    {"event": "info", "code": 20051, "msg": "Stopping. Please try to reconnect"},
    [17, "hb"],
]


async def test_bitfinex_protocol_with_built_capture(tmp_path: Path) -> None:
    """info on connect, conf, ping/pong, book and trades subscriptions, unknown symbol."""
    events = [{"t": "connect", "conn": "c1", "ts": 0.0, "addr": "wss://api-pub.bitfinex.com/ws/2"}]
    events += [{"t": "recv", "conn": "c1", "ts": 1.0, "data": m} for m in BITFINEX_FRAMES]
    path = write_capture(tmp_path / "bitfinex.jsonl.gz", events)
    frames = [orjson.dumps(m).decode() for m in BITFINEX_FRAMES]
    book = {"event": "subscribe", "channel": "book", "symbol": "tBTCUSD", "prec": "R0", "len": 100}

    with trio.fail_after(10):
        async with serving(path) as server, open_websocket_url(f"{server.ws_url}/ws/2") as ws:
            info = await ws.get_message()
            await ws.send_message('{"event":"conf","flags":32768}')
            conf = await ws.get_message()
            await ws.send_message('{"event":"ping","cid":42}')
            pong = await recv_json(ws)
            await ws.send_message(json.dumps(book))
            got_book = await recv_n(ws, 5)
            await ws.send_message('{"event":"subscribe","channel":"trades","symbol":"tBTCUSD"}')
            got_trades = await recv_n(ws, 3)
            await ws.send_message('{"event":"subscribe","channel":"trades","symbol":"tXYZABC"}')
            error = await ws.get_message()

    assert info == '{"event":"info","version":2,"platform":{"status":1}}'
    assert conf == '{"event":"conf","status":"OK","flags":32768}'
    assert (pong["event"], pong["cid"], type(pong["ts"])) == ("pong", 42, int)
    assert got_book == [frames[1], frames[2], frames[5], frames[7], frames[8]]
    assert got_trades == [frames[3], frames[4], frames[6]]
    assert error == '{"event":"error","msg":"symbol: invalid","code":10300}'


# ---- Faults and loop -------------------------------------------------------------------------


async def subscribe_trades(server: ReplayServer, n: int) -> tuple[list[str], Any]:
    """Subscribe btcusdt@trade, read the ack and n frames, then what ends the read (or None)."""
    async with open_websocket_url(f"{server.ws_url}/stream", max_message_size=1 << 22) as ws:
        await ws.send_message('{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}')
        await ws.get_message()
        got = await recv_n(ws, n)
        try:
            with trio.move_on_after(0.3):
                got.append(str(await ws.get_message()))
        except ConnectionClosed as exc:
            return got, exc.reason.code if exc.reason else None
        return got, None


async def test_drop_fault_first_connection_only(trades_capture: Path) -> None:
    """drop_after=2 cuts the TCP stream (1006) on the first connection; the next is clean."""
    frames = trade_frames(trades_capture)
    faults = Faults(drop_after=2)

    with trio.fail_after(10):
        async with serving(trades_capture, faults=faults) as server:
            first = await subscribe_trades(server, 2)
            second = await subscribe_trades(server, 6)

    assert first == (frames[:2], 1006)
    assert second == (frames, None)
    assert server.stats.faults_fired["drop"] == 1
    assert server.stats.connections == 2


async def test_stall_fault(trades_capture: Path) -> None:
    """stall_after=3 pauses the data for stall_s seconds, then the rest follows."""
    frames = trade_frames(trades_capture)
    faults = Faults(stall_after=3, stall_s=0.4)
    times: list[float] = []

    with trio.fail_after(10):
        async with (
            serving(trades_capture, faults=faults) as server,
            open_websocket_url(f"{server.ws_url}/stream") as ws,
        ):
            await ws.send_message('{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}')
            await ws.get_message()
            got = []
            for _ in frames:
                got.append(await ws.get_message())
                times.append(trio.current_time())

    assert got == frames
    assert times[3] - times[2] >= 0.39


async def test_skip_fault_makes_a_gap(trades_capture: Path) -> None:
    """skip_frames=(1, 3) leaves out those data frames of the connection."""
    frames = trade_frames(trades_capture)

    with trio.fail_after(10):
        async with serving(trades_capture, faults=Faults(skip_frames=(1, 3))) as server:
            got, end = await subscribe_trades(server, 4)

    assert (got, end) == ([frames[0], frames[2], frames[4], frames[5]], None)


async def test_garbage_and_oversized_faults(trades_capture: Path) -> None:
    """A non-JSON frame after 1 frame and an oversized JSON frame after 2."""
    frames = trade_frames(trades_capture)
    faults = Faults(garbage_after=1, oversized_after=2, oversized_bytes=3_000_000)

    with trio.fail_after(10):
        async with serving(trades_capture, faults=faults) as server:
            got, _ = await subscribe_trades(server, 8)

    assert got[0] == frames[0]
    assert got[1] == "<html><body>502 Bad Gateway</body></html>"
    assert got[2] == frames[1]
    assert len(got[3]) == 3_000_000
    assert json.loads(got[3])["pad"].startswith("xxx")
    assert got[4:] == frames[2:]


async def test_oversized_frame_closes_a_small_client_with_1009(trades_capture: Path) -> None:
    """A client whose max_message_size is smaller than the oversized frame gets 1009."""
    faults = Faults(oversized_after=1, oversized_bytes=5000)

    with trio.fail_after(10):
        async with (
            serving(trades_capture, faults=faults) as server,
            open_websocket_url(f"{server.ws_url}/stream", max_message_size=1000) as ws,
        ):
            await ws.send_message('{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}')
            await recv_n(ws, 2)
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()

    assert closed.value.reason is not None
    assert closed.value.reason.code == 1009


async def test_reject_handshake_fault(trades_capture: Path) -> None:
    """The next K handshakes are refused with the status and Retry-After, then accepted."""
    faults = Faults(reject_handshakes=2, reject_status=429, reject_retry_after_s=7)
    rejected: list[ConnectionRejected] = []

    with trio.fail_after(10):
        async with serving(trades_capture, faults=faults) as server:
            for _ in range(2):
                with pytest.raises(ConnectionRejected) as exc:
                    async with open_websocket_url(f"{server.ws_url}/stream"):
                        pass
                rejected.append(exc.value)
            got, _ = await subscribe_trades(server, 6)

    assert [r.status_code for r in rejected] == [429, 429]
    assert all(dict(r.headers or [])[b"retry-after"] == b"7" for r in rejected)
    assert len(got) == 6
    assert (server.stats.rejected_handshakes, server.stats.connections) == (2, 1)


async def test_faults_set_at_runtime_apply_to_next_connection(trades_capture: Path) -> None:
    """Faults mutated while serving take effect on the next connection, for one connection."""
    frames = trade_frames(trades_capture)

    with trio.fail_after(10):
        async with serving(trades_capture) as server:
            clean = await subscribe_trades(server, 6)
            server.faults.drop_after = 4
            dropped = await subscribe_trades(server, 4)
            again = await subscribe_trades(server, 6)

    assert clean == again == (frames, None)
    assert dropped == (frames[:4], 1006)


async def test_loop_closes_with_1001_and_replays_from_start(trades_capture: Path) -> None:
    """With loop, the end of the frames closes the socket (1001); a reconnect starts over."""
    frames = trade_frames(trades_capture)

    with trio.fail_after(10):
        async with serving(trades_capture, loop=True) as server:
            first = await subscribe_trades(server, 6)
            second = await subscribe_trades(server, 6)

    assert first == second == (frames, 1001)


async def test_speed_paces_frames(tmp_path: Path) -> None:
    """speed=4 sends frames recorded 1.2 s apart 0.3 s apart."""
    events = trade_events(2)
    events[2]["ts"] = events[1]["ts"] + 1.2
    path = write_capture(tmp_path / "paced.jsonl.gz", events)

    with trio.fail_after(10):
        async with (
            serving(path, speed=4.0) as server,
            open_websocket_url(f"{server.ws_url}/stream") as ws,
        ):
            # timed from the subscribe: a slow client cannot make the pacing look too fast
            start = trio.current_time()
            await ws.send_message('{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}')
            await ws.get_message()
            await ws.get_message()
            await ws.get_message()
            elapsed = trio.current_time() - start

    assert 0.3 <= elapsed < 0.9


# ---- Thread, captures, CLI -------------------------------------------------------------------


def test_replay_thread_for_synchronous_code(captures: dict[str, Capture]) -> None:
    """ReplayThread serves from a background thread; faults and set_http work at runtime."""
    with ReplayThread([captures["coinbase"]]) as replay:
        replay.faults.http_errors = 1
        limited = httpx.get(f"{replay.http_url}/products", timeout=5)
        products = httpx.get(f"{replay.http_url}/products", timeout=5)
        replay.set_http("/time", '{"epoch":1}')
        clock = httpx.get(f"{replay.http_url}/time", timeout=5)
        ws_url = replay.ws_url

    assert limited.status_code == 429
    assert products.content == captures["coinbase"].http[0].body
    assert clock.json() == {"epoch": 1}
    assert ws_url.startswith("ws://127.0.0.1:")


def test_capture_without_exchange_hint_is_an_error(tmp_path: Path) -> None:
    """A capture with no header and no exchange URLs cannot be served."""
    path = write_capture(
        tmp_path / "x.jsonl.gz", [{"t": "recv", "conn": "c", "ts": 1, "data": "{}"}]
    )

    with pytest.raises(CaptureError, match="cannot tell the exchange"):
        Capture.load(path)


def test_capture_exchange_from_raw_file_name(tmp_path: Path) -> None:
    """A collector raw file recorded against 127.0.0.1 takes its exchange from its name."""
    name = "20240101T000000Z_bitstamp_btcusd_trade.jsonl.gz"
    events = [{"t": "connect", "conn": "c1", "ts": 1, "addr": "ws://127.0.0.1:8000"}]

    capture = Capture.load(write_capture(tmp_path / name, events))

    assert capture.exchange == "bitstamp"


async def test_cli_serves_and_stops_on_sigterm() -> None:
    """python -m ops.replay logs replay.listening with its port, serves, exits 0 on SIGTERM."""
    cmd = [sys.executable, "-m", "ops.replay", "--capture", str(FILES["coinbase"]), "--port", "0"]

    with trio.fail_after(30):
        proc = await trio.lowlevel.open_process(cmd, cwd=ROOT, stderr=subprocess.PIPE)
        assert proc.stderr is not None
        buf = b""
        while b"replay.listening" not in buf:
            chunk = await proc.stderr.receive_some()
            assert chunk, buf
            buf += chunk
        line = next(ln for ln in buf.splitlines() if b"replay.listening" in ln)
        port = json.loads(line)["port"]
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{port}/products")
        proc.terminate()
        code = await proc.wait()

    assert response.content == Capture.load(FILES["coinbase"]).http[0].body
    assert code == 0


def test_cli_bad_capture_exits_2(tmp_path: Path) -> None:
    """A missing capture file is a one-line error naming it, exit code 2."""
    missing = tmp_path / "nope.jsonl.gz"

    done = subprocess.run(
        [sys.executable, "-m", "ops.replay", "--capture", str(missing)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert done.returncode == 2
    assert str(missing) in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


async def test_loop_at_pace_lasts_as_long_as_the_recording(tmp_path: Path) -> None:
    """A sparse stream (2 frames early in a 2 s recording) cycles every 2 s / speed, not at
    its own last frame, so a looping client does not reconnect every few frames."""
    events = trade_events(2)
    events[1]["ts"], events[2]["ts"] = 100.1, 100.2
    other = {"stream": "ethusdt@trade", "data": {"e": "trade", "E": 1, "s": "ETHUSDT", "t": 1,
             "p": "1", "q": "1", "T": 1, "m": True, "M": True}}  # fmt: skip
    events.append({"t": "recv", "conn": "c1", "ts": 102.0, "data": other})
    path = write_capture(tmp_path / "sparse.jsonl.gz", events)

    with trio.fail_after(10):
        async with (
            serving(path, speed=4.0, loop=True) as server,
            open_websocket_url(f"{server.ws_url}/stream") as ws,
        ):
            start = trio.current_time()
            await ws.send_message('{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}')
            for _ in range(3):
                await ws.get_message()
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
            elapsed = trio.current_time() - start

    assert closed.value.reason.code == 1001
    assert 0.45 <= elapsed < 1.5  # the recording spans 2.0 s; at speed 4 that is 0.5 s


# ---- Hostile exchange: handshake faults, injection, nesting, flapping, binary ----------------


def accept_token(key: bytes) -> bytes:
    """RFC 6455: base64(SHA-1(key + GUID)), what a valid 101 must carry."""
    guid = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    return base64.b64encode(hashlib.sha1(key + guid).digest())


async def raw_upgrade(server: ReplayServer, key: bytes, wait_s: float = 0.5) -> tuple[bytes, bool]:
    """Send an upgrade request over a raw socket; return what came back within wait_s and
    whether the server closed the connection."""
    stream = await trio.open_tcp_stream("127.0.0.1", server.port or 0)
    await stream.send_all(
        b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    got, closed = b"", False
    with trio.move_on_after(wait_s):
        while chunk := await stream.receive_some(4096):
            got += chunk
        closed = True
    await stream.aclose()
    return got, closed


def head_of(reply: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    """The status line and headers (lower-case names) of an HTTP reply head."""
    lines = reply.split(b"\r\n\r\n")[0].split(b"\r\n")
    headers = dict(line.split(b": ", 1) for line in lines[1:])
    return lines[0], {k.lower(): v for k, v in headers.items()}


KEY = base64.b64encode(b"0123456789abcdef")
VALID_101 = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: " + accept_token(KEY) + b"\r\n\r\n"
)


async def test_bad_handshake_hang_answers_nothing(trades_capture: Path) -> None:
    """hang: the upgrade request is read and never answered; the next handshake is clean."""
    faults = Faults(bad_handshakes=1, bad_handshake="hang")

    with trio.fail_after(10):
        async with serving(trades_capture, faults=faults) as server:
            got, closed = await raw_upgrade(server, KEY)
            after, _ = await subscribe_trades(server, 6)

    assert (got, closed) == (b"", False)
    assert len(after) == 6
    assert server.stats.faults_fired["handshake_hang"] == 1
    assert faults.bad_handshakes == 0


async def test_bad_handshake_bad_accept(trades_capture: Path) -> None:
    """bad_accept: a 101 with Upgrade and Connection but a Sec-WebSocket-Accept for another
    key."""
    faults = Faults(bad_handshakes=1, bad_handshake="bad_accept")

    with trio.fail_after(10):
        async with serving(trades_capture, faults=faults) as server:
            got, closed = await raw_upgrade(server, KEY)

    status, headers = head_of(got)
    assert status == b"HTTP/1.1 101 Switching Protocols"
    assert (headers[b"upgrade"], headers[b"connection"]) == (b"websocket", b"Upgrade")
    assert headers[b"sec-websocket-accept"] != accept_token(KEY)
    assert len(base64.b64decode(headers[b"sec-websocket-accept"])) == 20
    assert closed is False


async def test_bad_handshake_no_upgrade(trades_capture: Path) -> None:
    """no_upgrade: a 101 with the right accept token but no Upgrade/Connection headers."""
    faults = Faults(bad_handshakes=1, bad_handshake="no_upgrade")

    with trio.fail_after(10):
        async with serving(trades_capture, faults=faults) as server:
            got, _ = await raw_upgrade(server, KEY)

    status, headers = head_of(got)
    assert status == b"HTTP/1.1 101 Switching Protocols"
    assert headers == {b"sec-websocket-accept": accept_token(KEY)}


async def test_bad_handshake_garbage(trades_capture: Path) -> None:
    """garbage: 256 random bytes and an empty line instead of an HTTP reply, different each
    time."""
    faults = Faults(bad_handshakes=2, bad_handshake="garbage")

    with trio.fail_after(10):
        async with serving(trades_capture, faults=faults) as server:
            first, _ = await raw_upgrade(server, KEY)
            second, _ = await raw_upgrade(server, KEY)

    assert len(first) == len(second) == 260
    assert first.endswith(b"\r\n\r\n")
    assert not first.startswith(b"HTTP/")
    assert first != second
    assert server.stats.faults_fired["handshake_garbage"] == 2


async def test_bad_handshake_close(trades_capture: Path) -> None:
    """close: the first half of a valid 101 reply, then the connection is closed."""
    faults = Faults(bad_handshakes=1, bad_handshake="close")

    with trio.fail_after(10):
        async with serving(trades_capture, faults=faults) as server:
            got, closed = await raw_upgrade(server, KEY)

    assert got == VALID_101[: len(VALID_101) // 2]
    assert closed is True


def test_unknown_bad_handshake_kind_is_refused() -> None:
    """A handshake fault kind that does not exist is a ValueError naming the choices."""
    with pytest.raises(ValueError, match="bad_handshake must be one of"):
        Faults(bad_handshakes=1, bad_handshake="slow")


async def read_all(ws: WebSocketConnection, wait_s: float = 0.3) -> list[str | bytes]:
    """Every message until the server goes quiet for wait_s or closes."""
    got: list[str | bytes] = []
    with contextlib.suppress(ConnectionClosed):
        while True:
            with trio.move_on_after(wait_s) as quiet:
                got.append(await ws.get_message())
            if quiet.cancelled_caught:
                break
    return got


async def test_inject_sends_text_and_binary_frames_at_exact_positions(
    trades_capture: Path,
) -> None:
    """inject sends each frame once after N data frames, in list order: str as text, bytes as
    a binary message (non-UTF-8 kept exactly), after the last frame too."""
    frames = trade_frames(trades_capture)
    error = '{"error":{"code":-1,"msg":"forged"},"id":null}'
    foreign = frames[0].replace("btcusdt@trade", "ethusdt@trade").replace("BTCUSDT", "ETHUSDT")
    faults = Faults(inject=((0, error), (2, b"\xff\xfe\x00\x80"), (2, foreign), (6, "end")))

    with trio.fail_after(10):
        async with (
            serving(trades_capture, faults=faults) as server,
            open_websocket_url(f"{server.ws_url}/stream") as ws,
        ):
            await ws.send_message('{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}')
            got = await read_all(ws)

    assert got == [
        '{"result":null,"id":1}',
        error,
        *frames[:2],
        b"\xff\xfe\x00\x80",
        foreign,
        *frames[2:],
        "end",
    ]
    assert server.stats.faults_fired["inject"] == 4


async def test_nested_fault_sends_a_deeply_nested_array(trades_capture: Path) -> None:
    """nested_after=1 sends one JSON array nested nested_depth levels deep after frame 1."""
    frames = trade_frames(trades_capture)
    faults = Faults(nested_after=1, nested_depth=100_000)

    with trio.fail_after(10):
        async with serving(trades_capture, faults=faults) as server:
            got, _ = await subscribe_trades(server, 7)

    assert got[0] == frames[0]
    assert got[1] == "[" * 100_000 + "]" * 100_000
    assert got[2:] == frames[1:]


async def test_flapping_closes_every_connection_right_after_the_ack(
    trades_capture: Path,
) -> None:
    """drop_after=0 with ws_fault_connections=None: every connection gets its subscription
    ack, then the TCP stream is cut (1006) before any data frame."""
    faults = Faults(drop_after=0, ws_fault_connections=None)

    with trio.fail_after(10):
        async with serving(trades_capture, faults=faults) as server:
            ends = [await subscribe_trades(server, 0) for _ in range(3)]

    assert ends == [([], 1006)] * 3
    assert server.stats.faults_fired["drop"] == 3
    assert server.stats.frames_sent == 0


async def test_binary_capture_frames_are_sent_as_exact_binary_messages(tmp_path: Path) -> None:
    """A recv event with "encoding": "base64" is sent as a binary message of exactly those
    bytes: JSON ones by their stream, non-JSON ones where they were recorded."""
    events = trade_events(3)
    json_bytes = orjson.dumps(events[2]["data"])
    events[2] = {**events[2], "data": base64.b64encode(json_bytes).decode(), "encoding": "base64"}
    stray = b"\x80\x81\xff not json"
    events.insert(3, {"t": "recv", "conn": "c1", "ts": 100.15, "data": stray})
    path = write_capture(tmp_path / "binary.jsonl.gz", events)
    plain = [orjson.dumps(events[n]["data"]).decode() for n in (1, 4)]

    with trio.fail_after(10):
        async with (
            serving(path) as server,
            open_websocket_url(f"{server.ws_url}/stream") as ws,
        ):
            await ws.send_message('{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}')
            got = await read_all(ws)

    assert got == ['{"result":null,"id":1}', plain[0], json_bytes, stray, plain[1]]
    lines = gzip.decompress(path.read_bytes()).splitlines()
    assert orjson.loads(lines[3]) == {
        "t": "recv",
        "conn": "c1",
        "ts": 100.15,
        "data": base64.b64encode(stray).decode(),
        "encoding": "base64",
    }


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"encoding": "base64", "data": "not base64!"}, "not valid base64"),
        ({"encoding": "gzip", "data": "eA=="}, "unknown encoding 'gzip'"),
    ],
)
def test_capture_with_bad_encoding_is_an_error(
    tmp_path: Path, event: dict[str, str], message: str
) -> None:
    """A recv event whose base64 does not decode, or with an unknown encoding, cannot be
    served."""
    line = {"t": "recv", "conn": "c1", "ts": 1.0, **event}
    path = tmp_path / "bad.jsonl"
    path.write_bytes(
        orjson.dumps({"t": "header", "exchange": "BINANCE"}) + b"\n" + orjson.dumps(line)
    )

    with pytest.raises(CaptureError, match=message):
        Capture.load(path)


async def test_non_utf8_binary_message_from_a_client_does_not_kill_the_server(
    trades_capture: Path,
) -> None:
    """A client's binary request that is not UTF-8 gets the exchange's invalid-request answer;
    the server keeps serving."""
    with trio.fail_after(10):
        async with serving(trades_capture) as server:
            async with open_websocket_url(f"{server.ws_url}/stream") as ws:
                await ws.send_message(b"\xff\xfe{")
                answer = await recv_json(ws)
            got, _ = await subscribe_trades(server, 6)

    assert answer == {"error": {"code": 3, "msg": "Invalid JSON"}}
    assert len(got) == 6


async def test_cli_hostile_flags(trades_capture: Path) -> None:
    """--bad-handshakes/--bad-handshake, --inject and --inject-base64 (in command-line order)
    reach the server."""
    frames = trade_frames(trades_capture)
    cmd = [sys.executable, "-m", "ops.replay", "--capture", str(trades_capture), "--port", "0",
           "--bad-handshakes", "1", "--bad-handshake", "no_upgrade",
           "--inject", "1:x:y", "--inject-base64", "1:/w==", "--inject", "2:"]  # fmt: skip

    with trio.fail_after(30):
        proc = await trio.lowlevel.open_process(cmd, cwd=ROOT, stderr=subprocess.PIPE)
        try:
            assert proc.stderr is not None
            buf = b""
            while b"replay.listening" not in buf:
                chunk = await proc.stderr.receive_some()
                assert chunk, buf
                buf += chunk
            line = next(ln for ln in buf.splitlines() if b"replay.listening" in ln)
            server = ReplayServer([trades_capture])
            server.port = json.loads(line)["port"]
            reply, _ = await raw_upgrade(server, KEY, wait_s=0.3)
            async with open_websocket_url(f"{server.ws_url}/stream") as ws:
                await ws.send_message('{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}')
                got = await read_all(ws)
        finally:
            proc.terminate()
            await proc.wait()

    assert head_of(reply)[1] == {b"sec-websocket-accept": accept_token(KEY)}
    assert got[1:] == [frames[0], "x:y", b"\xff", frames[1], "", *frames[2:]]


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--inject", "x:hello", "--inject must be N:VALUE with N >= 0, got 'x:hello'"),
        ("--inject", "hello", "--inject must be N:VALUE with N >= 0, got 'hello'"),
        ("--inject-base64", "1:%%%", "--inject-base64 value is not base64: '%%%'"),
        ("--nested-depth", "0", "--nested-depth must be >= 1, got 0"),
    ],
)
def test_cli_bad_hostile_flags_exit_2(flag: str, value: str, message: str) -> None:
    """A malformed fault flag is one line naming the bad value, exit 2."""
    done = subprocess.run(
        [sys.executable, "-m", "ops.replay", "--capture", str(FILES["coinbase"]), flag, value],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"ops.replay: error: {message}"]


@pytest.mark.parametrize("exchange", ["coinbase", "bitfinex"])
async def test_non_json_binary_frame_follows_the_frame_recorded_before_it(
    tmp_path: Path, exchange: str
) -> None:
    """A non-JSON binary frame of a Coinbase or Bitfinex capture goes with the subscription of
    the frame before it on its connection, at its recorded place."""
    stray = b"\x00\x9f\xff"
    if exchange == "coinbase":
        msgs: list[Any] = [
            {"type": "match", "trade_id": n, "product_id": "BTC-USD", "price": "1.00",
             "size": "1", "side": "buy", "time": "2024-01-01T00:00:00Z", "sequence": n}
            for n in (1, 2)
        ]  # fmt: skip
        request: dict[str, Any] = {
            "type": "subscribe",
            "product_ids": ["BTC-USD"],
            "channels": ["matches"],
        }
        head: list[Any] = []
    else:
        ack = {"event": "subscribed", "channel": "trades", "chanId": 7, "symbol": "tBTCUSD",
               "pair": "BTCUSD"}  # fmt: skip
        msgs = [[7, "te", [n, 1700000000000, 0.1, 100.0]] for n in (1, 2)]
        request = {"event": "subscribe", "channel": "trades", "symbol": "tBTCUSD"}
        head = [ack]
    events = [{"t": "recv", "conn": "c1", "ts": 1.0, "data": m} for m in [*head, *msgs]]
    events.insert(len(head) + 1, {"t": "recv", "conn": "c1", "ts": 1.0, "data": stray})
    path = write_capture(tmp_path / f"{exchange}.jsonl.gz", events, exchange=exchange)
    expected = [orjson.dumps(msgs[0]).decode(), stray, orjson.dumps(msgs[1]).decode()]

    with trio.fail_after(10):
        async with serving(path) as server:
            url = server.ws_url + ("/ws/2" if exchange == "bitfinex" else "")
            async with open_websocket_url(url) as ws:
                await ws.send_message(json.dumps(request))
                got = await read_all(ws)

    assert got[-3:] == expected
