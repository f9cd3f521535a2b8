"""Shared by the replay server tests: captures, a server in a nursery, readers, raw upgrades.

Recorded captures come from shared/data/recorded (read-only); unrecorded shapes (Binance @trade,
Bitfinex, Coinbase full, Bitstamp live_orders) are small captures built with write_capture.
Every test runs at full speed (speed=None) and is bounded by trio.fail_after.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from ops.replay import (
    Capture,
    CoinbaseTestKey,
    ReplayServer,
)

RECORDED = Path(__file__).resolve().parents[4] / "shared" / "data" / "recorded"
if not RECORDED.is_dir():
    RECORDED = Path("/work/shared/data/recorded")
FILES = {
    "binance": RECORDED / "binance-spot-2021-10-11.jsonl.gz",
    "coinbase": RECORDED / "coinbase-exchange-2021-04-17.jsonl.gz",
    "bitstamp": RECORDED / "bitstamp-2022-01-05.jsonl.gz",
}
ROOT = Path(__file__).resolve().parents[3]  # the repository
TEST_KEY = CoinbaseTestKey("test-key", "c2VjcmV0LXNlY3JldC1zZWNyZXQ=", "test-pass")


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


def trade_frames(path: Path) -> list[str]:
    return recv_data(Capture.load(path), lambda m: True)


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


KEY = base64.b64encode(b"0123456789abcdef")  # a client's Sec-WebSocket-Key


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
