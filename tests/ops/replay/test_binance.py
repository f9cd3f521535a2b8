"""The Binance venue: SUBSCRIBE, combined and raw endpoints, depth aliases, pings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio
from trio_websocket import (
    open_websocket_url,
)
from wsproto import ConnectionType, WSConnection
from wsproto.events import Ping, Request

from ops.replay import (
    Capture,
)
from tests.ops.replay.helpers import (
    recv_data,
    recv_n,
    serving,
    trade_frames,
)


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
