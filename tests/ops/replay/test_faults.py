"""Websocket faults (drop, stall, skip, garbage, oversized, reject), runtime switches,
--loop and pacing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    open_websocket_url,
)

from ops.replay import (
    Faults,
    write_capture,
)
from tests.ops.replay.helpers import (
    recv_n,
    serving,
    subscribe_trades,
    trade_events,
    trade_frames,
)


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
