"""The hostile exchange: handshake faults, injection, nesting, flapping, binary frames."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
from trio_websocket import (
    open_websocket_url,
)

from ops.replay import (
    Faults,
    write_capture,
)
from tests.ops.replay.helpers import (
    KEY,
    accept_token,
    head_of,
    raw_upgrade,
    read_all,
    recv_json,
    serving,
    subscribe_trades,
    trade_events,
    trade_frames,
)

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
