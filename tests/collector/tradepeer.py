"""A synthetic Binance trade feed on 127.0.0.1 whose trade ids go on across connections.

Unlike the replay server (which replays a capture from its start on every connection), this
peer behaves like the exchange: one global trade counter advances at ``rate`` trades per
second whether a client is connected or not, so ids missed while a collector is down are
really missing, and a reconnect continues where the market is. Used by the kill-loop test.

``off()`` takes the feed down like an outage (open connections are closed, new handshakes
are answered HTTP 503) until ``on()``; the quiet-stream test switches it off and on.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import orjson
import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket


class TradePeer:
    """``with TradePeer(rate=2000) as peer: ... peer.ws_url ...``"""

    def __init__(self, *, rate: float = 2000.0, symbol: str = "BTCUSDT", first_id: int = 1):
        self.rate = rate
        self.symbol = symbol
        self.first_id = first_id
        self.port = 0
        self.connections = 0
        self.serving = True
        self._t0 = 0.0
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def current_id(self) -> int:
        return self.first_id + int((time.monotonic() - self._t0) * self.rate)

    def _frame(self, trade_id: int) -> str:
        t = 1_700_000_000_000 + trade_id
        data: dict[str, Any] = {
            "e": "trade", "E": t, "s": self.symbol, "t": trade_id,
            "p": f"{40000 + trade_id % 997}.01", "q": "0.001", "T": t, "m": trade_id % 2 == 0,
            "M": True,
        }  # fmt: skip
        return orjson.dumps({"stream": f"{self.symbol.lower()}@trade", "data": data}).decode()

    def off(self) -> None:
        self.serving = False

    def on(self) -> None:
        self.serving = True

    async def _handler(self, request: WebSocketRequest) -> None:
        if not self.serving:
            await request.reject(503)
            return
        ws = await request.accept()
        self.connections += 1
        try:
            msg = orjson.loads(await ws.get_message())
            await ws.send_message(orjson.dumps({"result": None, "id": msg.get("id")}).decode())
            sent = self.current_id()
            while self.serving:
                now = self.current_id()
                for trade_id in range(sent, now):
                    await ws.send_message(self._frame(trade_id))
                sent = max(sent, now)
                await trio.sleep(0.005)
            await ws.aclose()
        except (ConnectionClosed, trio.BrokenResourceError, ValueError):
            return

    async def _main(self) -> None:
        async with trio.open_nursery() as nursery:
            self._token = trio.lowlevel.current_trio_token()
            self._scope = nursery.cancel_scope
            server = await nursery.start(serve_websocket, self._handler, "127.0.0.1", 0, None)
            self.port = server.port
            self._t0 = time.monotonic()
            self._ready.set()

    def __enter__(self) -> TradePeer:
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("trade peer did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None and self._scope is not None:
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(self._scope.cancel)
        if self._thread is not None:
            self._thread.join(10)
