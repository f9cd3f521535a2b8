"""One accepted websocket connection: its venue's handler, streaming, pacing, faults.

The venue handler reads the client's messages and starts one stream per subscription
(``start_stream``); every stream sends its recorded frames at the recorded pace times
``speed``, while its subscription token is live, under one lock so the connection's
per-connection faults fire at exact data-frame counts whatever the number of streams.
This module is the ``Connection`` of ``ops.replay.venues.base``.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

import structlog
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from ops.replay.captures import Feed
from ops.replay.faults import Faults
from ops.replay.http import PrefixedStream
from ops.replay.venues.base import Item, VenueHandler

if TYPE_CHECKING:
    from ops.replay.server import ReplayServer

log = structlog.get_logger()


class Session:
    """One websocket connection of a venue (see the module docstring)."""

    def __init__(
        self,
        server: ReplayServer,
        feed: Feed,
        ws: WebSocketConnection,
        stream: PrefixedStream,
        faults: Faults | None,
        conn_id: int,
    ) -> None:
        self.server = server
        self.feed = feed
        self.ws = ws
        self.stream = stream
        self.faults = faults
        self.conn_id = conn_id
        self.sent = 0  # data frames sent
        self.seen = 0  # data frames reached (sent or skipped)
        self.dropped = False
        # subscription key -> token of its current stream; a re-subscribe gets a new token, so
        # a stream task of an earlier subscription of the same key stays silent
        self.live: dict[object, tuple[object, int]] = {}
        self._tokens = itertools.count()
        self._fired: set[str] = set()
        self._lock = trio.Lock()
        self._active = 0
        self._nursery: trio.Nursery | None = None
        self.handler: VenueHandler = feed.venue.Handler(self)

    async def run(self, target: str) -> None:
        """Serve until the client leaves, a fault drops it, or the capture ends (``loop``)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await self.handler.on_open(target)
            nursery.start_soon(self._receive_loop, nursery.cancel_scope)

    # ---- the Connection a venue handler uses -------------------------------------------------

    def add_live(self, key: object) -> tuple[object, int]:
        token = (key, next(self._tokens))
        self.live[key] = token
        return token

    def is_live(self, token: object) -> bool:
        return isinstance(token, tuple) and self.live.get(token[0]) == token

    def items(self, keys: Iterable[object], key_of: Callable[[int], object]) -> list[Item]:
        frames = self.feed.frames
        return [Item(frames[p].ts, frames[p].data, key_of(p)) for p in self.feed.positions(keys)]

    def start_soon(self, fn: Callable[[], Awaitable[object]]) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(fn)

    async def send_control(self, text: str | bytes) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send_message(text)

    async def drop(self) -> None:
        self.dropped = True
        await self.stream.aclose()

    def start_stream(self, items: list[Item]) -> None:
        self._active += 1
        assert self._nursery is not None
        self._nursery.start_soon(self._run_stream, items)

    # ---- streaming ---------------------------------------------------------------------------

    async def _receive_loop(self, scope: trio.CancelScope) -> None:
        try:
            while True:
                text = await self.ws.get_message()
                # a hostile client's binary message must not kill the server: it is only
                # parsed as a request, and undecodable bytes make an invalid one
                if isinstance(text, bytes):
                    text = text.decode("utf-8", "replace")
                await self.handler.on_message(text)
        except ConnectionClosed:
            pass
        finally:
            scope.cancel()

    async def _run_stream(self, items: list[Item]) -> None:
        speed = self.server.speed
        looping = self.server.loop and speed is not None
        start, t0 = trio.current_time(), (items[0].ts if items else 0.0)
        if looping:
            # Paced from the recording's start, and ended at its end (below): a sparse stream
            # then cycles at the recording's length instead of reconnecting every few frames.
            t0 = min(t0, self.feed.span[0]) if items else self.feed.span[0]
        try:
            for item in items:
                if speed:
                    await trio.sleep_until(start + max(0.0, item.ts - t0) / speed)
                if not self.is_live(item.key):
                    continue
                async with self._lock:
                    await self._faults_before_frame()
                    index, self.seen = self.seen, self.seen + 1
                    if self.faults is not None and index in self.faults.skip_frames:
                        self._fire("skip_frame", index=index)
                        continue
                    await self.ws.send_message(item.data)
                    self.sent += 1
                    self.server.stats.frames_sent += 1
            async with self._lock:
                await self._faults_before_frame()
            if looping and speed:
                await trio.sleep_until(start + max(0.0, self.feed.span[1] - t0) / speed)
        except ConnectionClosed:
            return
        finally:
            self._active -= 1
        if self._active == 0 and self.server.loop and self.sent > 0:
            log.info("replay.loop", conn_id=self.conn_id, frames=self.sent)
            await self.ws.aclose(1001, "end of capture")

    # ---- per-connection faults ---------------------------------------------------------------

    def _fire(self, name: str, **kw: object) -> None:
        self._fired.add(name)
        self.server.stats.faults_fired[name] += 1
        log.info("replay.fault", fault=name, conn_id=self.conn_id, after=self.sent, **kw)

    def _due(self, name: str, after: int | None) -> bool:
        return after is not None and after == self.sent and name not in self._fired

    async def _faults_before_frame(self) -> None:
        """Fire every fault due at the current data-frame count (each once)."""
        f = self.faults
        if f is None:
            return
        if self._due("drop", f.drop_after):
            self._fire("drop")
            await self.drop()
            raise ConnectionClosed(None)
        if self._due("stall", f.stall_after):
            self._fire("stall", stall_s=f.stall_s)
            await trio.sleep(f.stall_s)
        if self._due("garbage", f.garbage_after):
            self._fire("garbage")
            await self.ws.send_message(f.garbage_text)
        if self._due("oversized", f.oversized_after):
            self._fire("oversized", size=f.oversized_bytes)
            pad = max(0, f.oversized_bytes - len('{"pad":""}'))
            await self.ws.send_message('{"pad":"' + "x" * pad + '"}')
        if self._due("nested", f.nested_after):
            self._fire("nested", depth=f.nested_depth)
            await self.ws.send_message("[" * f.nested_depth + "]" * f.nested_depth)
        if self._due("reconnect_request", f.reconnect_request_after):
            text = self.feed.venue.RECONNECT_REQUEST
            if text is not None:
                self._fire("reconnect_request")
                await self.ws.send_message(text)
        await self._inject_due(f)

    async def _inject_due(self, f: Faults) -> None:
        for n, (after, frame) in enumerate(f.inject):
            if self._due(f"inject:{n}", after):
                self._fired.add(f"inject:{n}")
                self.server.stats.faults_fired["inject"] += 1
                kind = "binary" if isinstance(frame, bytes) else "text"
                log.info(
                    "replay.fault", fault="inject", conn_id=self.conn_id, after=after, kind=kind
                )
                await self.ws.send_message(frame)
