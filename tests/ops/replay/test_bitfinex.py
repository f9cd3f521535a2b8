"""The Bitfinex venue: info on connect, conf, ping, subscriptions by chanId."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import orjson
import trio
from trio_websocket import (
    open_websocket_url,
)

from ops.replay import (
    write_capture,
)
from tests.ops.replay.helpers import (
    recv_json,
    recv_n,
    serving,
)

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


async def test_a_recorded_pair_listing_serves_and_names_its_pairs(tmp_path: Path) -> None:
    """The listing is answered at its REST path (what secmaster polls), and a listed pair
    that has no recorded channel is subscribable (acked) while an unlisted one is not."""
    listing = [["BTCUSD", "ETHUSD", "TESTBTC:TESTUSD"]]
    events: list[dict[str, Any]] = [
        {"t": "connect", "conn": "c1", "ts": 0.0, "addr": "wss://api-pub.bitfinex.com/ws/2"},
        {
            "t": "http",
            "conn": "h",
            "ts": 0.5,
            "data": orjson.dumps(listing).decode(),
            "url": "https://api-pub.bitfinex.com/v2/conf/pub:list:pair:exchange",
        },  # fmt: skip
    ]
    events += [{"t": "recv", "conn": "c1", "ts": 1.0, "data": m} for m in BITFINEX_FRAMES[:3]]
    path = write_capture(tmp_path / "bitfinex.jsonl.gz", events)
    listed = '{"event":"subscribe","channel":"trades","symbol":"tTESTBTC:TESTUSD"}'

    with trio.fail_after(10):
        async with serving(path) as server:
            async with httpx.AsyncClient() as client:
                resp = await client.get(f"{server.http_url}/v2/conf/pub:list:pair:exchange")
            async with open_websocket_url(f"{server.ws_url}/ws/2") as ws:
                await ws.get_message()
                await ws.send_message(listed)
                ack = await recv_json(ws)
                await ws.send_message(listed.replace("TESTBTC:TESTUSD", "XYZABC"))
                error = await ws.get_message()

    assert (resp.status_code, resp.json()) == (200, listing)
    assert (ack["event"], ack["symbol"]) == ("subscribed", "tTESTBTC:TESTUSD")
    assert error == '{"event":"error","msg":"symbol: invalid","code":10300}'
