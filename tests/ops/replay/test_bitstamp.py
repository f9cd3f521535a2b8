"""The Bitstamp venue: bts:subscribe, heartbeat, bad channels, bts:request_reconnect."""

from __future__ import annotations

import json
from pathlib import Path

import trio
from trio_websocket import (
    open_websocket_url,
)

from ops.replay import (
    Capture,
    Faults,
    write_capture,
)
from tests.ops.replay.helpers import (
    recv_data,
    recv_json,
    recv_n,
    serving,
    trade_frames,
)


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
