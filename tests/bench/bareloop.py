"""The floor the collector is measured against: a bare trio-websocket receive loop.

``python -m tests.bench.bareloop [--drain] URL COUNT [READY [STREAM]]`` connects, sends the Binance
``SUBSCRIBE`` the collector sends, reads the acknowledgement, then receives ``COUNT`` frames
and prints the seconds from the first data frame to the last (nothing else: no parsing, no
files). ``COUNT`` = 0 receives until the server closes (the paced runs, where only CPU is
measured). ``READY``: a file created once the handshake is done (where a collector's
status.json says connected: the bare fleet of ``bench_fleet``); ``STREAM``: the stream to
subscribe to (default ``btcusdt@trade``), or ``@FILE``: a JSON list of the messages to send
instead of Binance's ``SUBSCRIBE`` (what a collector's adapter sends for its stream: the bare
fleet then receives each collector's own traffic).
``--drain``: receive as the collector does in a burst: trio-websocket's reader task queues
without a scheduler round per message (collector/wslib.py ``eager_sends``), after each
``get_message`` the loop takes what is queued without a round each (``message_queue``),
and the socket is read in the collector's reads (``RECEIVE_BUFFER_SIZE``, not
trio-websocket's 4 KiB): the floor of that technique.
It runs in its own process, like the collector, so neither shares the server's interpreter,
and imports nothing but trio and trio-websocket: its CPU from exec to the subscription is
also the start-up floor of ``tests/bench/bench_fleet.py``. It imports trio-websocket as the
collector does (collector/wslib.py: without importlib.metadata, 56M instructions less), so
that floor is the cheapest start either can have.
"""

from __future__ import annotations

import sys
import time

import trio

from collector.wslib import (
    MESSAGE_QUEUE,
    RECEIVE_BUFFER_SIZE,
    eager_sends,
    message_queue,
    trio_websocket,
)

# tests/bench/wsblast.py's SUBSCRIBE, not imported from there (it imports multiprocessing)
SUBSCRIBE = '{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}'


async def receive(
    url: str, count: int, ready: str = "", stream: str = "", drain: bool = False
) -> float:
    # (the plain loop keeps trio-websocket's default reads: the goal's bare loop)
    async with trio_websocket.open_websocket_url(
        url,
        max_message_size=1 << 24,
        message_queue_size=MESSAGE_QUEUE if drain else 64,
        receive_buffer_size=RECEIVE_BUFFER_SIZE if drain else trio_websocket._impl.RECEIVE_BYTES,
    ) as ws:
        if drain:
            eager_sends(ws)
        if ready:
            open(ready, "x").close()  # noqa: SIM115 (the marker only: no content)
        if stream.startswith("@"):
            import json  # (only here: the default run imports nothing but trio's)

            with open(stream[1:], encoding="utf-8") as f:
                for message in json.load(f):
                    await ws.send_message(message)
        elif stream:
            await ws.send_message(SUBSCRIBE.replace("btcusdt@trade", stream))
        else:
            await ws.send_message(SUBSCRIBE)
        await ws.get_message()  # the acknowledgement
        if count == 0:
            try:
                while True:
                    await ws.get_message()
            except trio_websocket.ConnectionClosed:
                return 0.0
        await ws.get_message()
        t0 = time.perf_counter()
        queue = message_queue(ws) if drain else None
        got = 1
        while got < count:
            await ws.get_message()
            got += 1
            if queue is not None:
                while got < count:
                    try:
                        queue.receive_nowait()
                    except trio.WouldBlock:
                        break
                    got += 1
        return time.perf_counter() - t0


def main(argv: list[str]) -> int:
    drain = argv[:1] == ["--drain"]
    url, count, ready, stream = (*argv[drain:], "", "")[:4]
    print(trio.run(receive, url, int(count), ready, stream, drain), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
