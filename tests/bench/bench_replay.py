"""Replay server benchmark: capture load time and websocket throughput, side by side in one run.

Workload: the recorded Coinbase capture (shared/data/recorded), level2 for its ten products
(snapshot + l2update, ~9,700 frames), served at full speed (speed=None) to one trio-websocket
client on 127.0.0.1.

Measured:
  load      Capture.load of each recording (gzip + two JSON decodes per line), ms
  replay    frames/s received by the client from ReplayServer (subscribe protocol, pacing and
            fault checks included)
  floor     frames/s from a bare trio-websocket server sending the same strings in a loop
Goal: replay within 2x of the floor (the server must never be what limits a collector test).
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import trio
from trio_websocket import WebSocketRequest, open_websocket_url, serve_websocket

from collector.common.logs import configure_logging
from ops.replay import Capture, ReplayServer

RECORDED = Path(__file__).resolve().parents[3] / "shared" / "data" / "recorded"
if not RECORDED.is_dir():
    RECORDED = Path("/work/shared/data/recorded")
COINBASE = RECORDED / "coinbase-exchange-2021-04-17.jsonl.gz"
ROUNDS = 3


def _level2(capture: Capture) -> tuple[list[str], list[str]]:
    frames = [f for rc in capture.connections.values() for f in rc.recvs]
    data = [f.data for f in frames if f.msg.get("type") in ("snapshot", "l2update")]
    products = sorted({f.msg["product_id"] for f in frames if f.msg.get("type") == "snapshot"})
    return data, products


async def _replay_rate(capture: Capture, products: list[str], n: int) -> float:
    server = ReplayServer([capture])
    sub = {"type": "subscribe", "product_ids": products, "channels": ["level2"]}
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, 0)
        async with open_websocket_url(server.ws_url) as ws:
            t0 = time.perf_counter()
            await ws.send_message(orjson.dumps(sub).decode())
            await ws.get_message()
            for _ in range(n):
                await ws.get_message()
            elapsed = time.perf_counter() - t0
        nursery.cancel_scope.cancel()
    return n / elapsed


async def _floor_rate(data: list[str]) -> float:
    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.get_message()
        for text in data:
            await ws.send_message(text)
        await ws.get_message()

    async with trio.open_nursery() as nursery:
        servers = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
        port = servers.port
        async with open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
            t0 = time.perf_counter()
            await ws.send_message("go")
            for _ in data:
                await ws.get_message()
            elapsed = time.perf_counter() - t0
        nursery.cancel_scope.cancel()
    return len(data) / elapsed


def main() -> None:
    configure_logging("warning")
    for path in sorted(RECORDED.glob("*.jsonl.gz")):
        t0 = time.perf_counter()
        capture = Capture.load(path)
        ms = (time.perf_counter() - t0) * 1000
        n = sum(len(rc.recvs) for rc in capture.connections.values())
        print(f"load      {path.name:42s} {ms:7.1f} ms  ({n} frames, {len(capture.http)} REST)")
    capture = Capture.load(COINBASE)
    data, products = _level2(capture)
    replay = max(trio.run(_replay_rate, capture, products, len(data)) for _ in range(ROUNDS))
    floor = max(trio.run(_floor_rate, data) for _ in range(ROUNDS))
    print(f"replay    {replay:10,.0f} frames/s  ({len(data)} level2 frames, best of {ROUNDS})")
    print(f"floor     {floor:10,.0f} frames/s  (bare trio-websocket server, same strings)")
    print(f"ratio     floor/replay = {floor / replay:.2f}x  (goal <= 2x)")


if __name__ == "__main__":
    main()
