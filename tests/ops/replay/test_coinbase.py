"""The Coinbase venue: channels and products, level2 auth with a test key, the
subscribe deadline, hand-built full-channel captures."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
import trio
from trio_websocket import (
    ConnectionClosed,
    open_websocket_url,
)

from ops.replay import (
    Capture,
    write_capture,
)
from tests.ops.replay.helpers import (
    TEST_KEY,
    recv_data,
    recv_json,
    recv_n,
    serving,
)


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
