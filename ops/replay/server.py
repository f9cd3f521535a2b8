"""The replay server: one TCP port on 127.0.0.1, routed to REST answers or websockets.

Each TCP connection is read as HTTP/1.1 (``ops.replay.http``); a websocket upgrade goes to
the venue its path names (an exchange prefix, the venue's path hints, or the only venue)
and becomes a ``Session``; any other request is answered from the recorded REST bodies
(``set_http`` overrides first). HTTP and handshake faults fire here; ``ReplayThread`` runs
the server for synchronous code.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import structlog
import trio
from trio_websocket import WebSocketConnection, WebSocketRequest, wrap_server_stream

from ops.replay.captures import Capture, Feed, HttpRecord, split_target
from ops.replay.faults import Faults, ReplayStats, send_bad_handshake
from ops.replay.http import (
    BadRequest,
    PrefixedStream,
    Request,
    parse_head,
    read_head,
    send_response,
    skip_body,
)
from ops.replay.session import Session
from ops.replay.venues import VENUES, Venue
from ops.replay.venues.base import DEFAULT_NOT_FOUND, default_rate_limit_body

log = structlog.get_logger()

HOST = "127.0.0.1"
MAX_CLIENT_MESSAGE_BYTES = 1 << 20
HANDSHAKE_TIMEOUT_S = 10


def _venue_options(given: Mapping[str, object]) -> dict[str, object]:
    """The venues' keyword options of ``ReplayServer``, checked against their ``OPTIONS``."""
    declared = {name: kind for v in VENUES.values() for name, kind in v.OPTIONS.items()}
    for name, value in given.items():
        if name not in declared:
            raise TypeError(f"ReplayServer() got an unexpected keyword argument {name!r}")
        if value is not None and not isinstance(value, declared[name]):
            raise TypeError(f"{name} must be a {declared[name].__name__}, got {value!r}")
    return {k: v for k, v in given.items() if v is not None}


class ReplayServer:
    """Serves captures on 127.0.0.1: REST and websocket on one port.

    Args:
        captures: capture paths or loaded ``Capture`` objects (several exchanges allowed).
        speed: recorded pace multiplier (2.0 = twice as fast); None or 0 = as fast as possible.
        loop: close a connection with 1001 at the end of its frames (the client reconnects
            and gets the stream again); otherwise it stays open and idle.
        faults: fault switches (a fresh ``Faults()`` by default), mutable at runtime.
        ping_interval_s, pong_timeout_s: server pings, for venues whose exchange pings; no
            pong in time drops the client.
        subscribe_timeout_s: for venues whose exchange does so, closes a connection that
            sends no subscribe in time.
        venue_options: the keyword options venues declare in their ``OPTIONS`` (a venue's
            test key, say); an unknown name or a value of the wrong type is a TypeError.
    """

    def __init__(
        self,
        captures: Sequence[str | os.PathLike[str] | Capture],
        *,
        speed: float | None = None,
        loop: bool = False,
        faults: Faults | None = None,
        ping_interval_s: float = 20.0,
        pong_timeout_s: float = 60.0,
        subscribe_timeout_s: float = 5.0,
        **venue_options: object,
    ) -> None:
        loaded = [c if isinstance(c, Capture) else Capture.load(c) for c in captures]
        if not loaded:
            raise ValueError("ReplayServer needs at least one capture")
        if speed is not None and speed < 0:
            raise ValueError(f"speed must be >= 0, got {speed}")
        self.speed = speed or None
        self.loop = loop
        self.faults = faults if faults is not None else Faults()
        self.ping_interval_s = ping_interval_s
        self.pong_timeout_s = pong_timeout_s
        self.subscribe_timeout_s = subscribe_timeout_s
        self.venue_options = _venue_options(venue_options)
        self.stats = ReplayStats()
        self.port: int | None = None
        order = list(dict.fromkeys(c.exchange for c in loaded))
        self.feeds = {ex: Feed(VENUES[ex], [c for c in loaded if c.exchange == ex]) for ex in order}
        self._overrides: dict[tuple[str, tuple[tuple[str, str], ...]], HttpRecord] = {}
        self._conn_ids = itertools.count(1)

    @property
    def exchanges(self) -> list[str]:
        return list(self.feeds)

    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self._port()}"

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self._port()}"

    def _port(self) -> int:
        if self.port is None:
            raise RuntimeError("the replay server is not listening yet")
        return self.port

    def set_http(
        self,
        path_and_query: str,
        body: str | bytes,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Add or override a REST answer (matched like recorded ones, before them)."""
        path, params = split_target(path_and_query)
        data = body.encode() if isinstance(body, str) else bytes(body)
        hdrs = tuple((headers or {}).items())
        self._overrides[(path, params)] = HttpRecord(path, params, status, data, hdrs)

    async def serve(
        self, port: int = 0, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen on 127.0.0.1:port until cancelled; ``task_status.started(port)``."""
        listeners = await trio.open_tcp_listeners(port, host=HOST)
        sock = listeners[0].socket
        self.port = int(sock.getsockname()[1])
        log.info(
            "replay.listening",
            port=self.port,
            http_url=self.http_url,
            ws_url=self.ws_url,
            exchanges=self.exchanges,
            speed=self.speed,
            loop=self.loop,
        )
        task_status.started(self.port)
        await trio.serve_listeners(self._handle_stream, listeners)

    # ---- one TCP connection ------------------------------------------------------------------

    async def _handle_stream(self, stream: trio.SocketStream) -> None:
        buf = bytearray()
        try:
            while True:
                head = await read_head(stream, buf)
                if head is None:
                    return
                try:
                    request = parse_head(head)
                    whole = request.is_websocket or await skip_body(stream, buf, request)
                except BadRequest as exc:
                    await send_response(stream, 400, str(exc).encode(), keep_alive=False)
                    return
                if request.is_websocket:
                    await self._handle_websocket(PrefixedStream(stream, head + bytes(buf)), request)
                    return
                if not whole:
                    return  # the client closed inside the body
                keep_alive = request.keep_alive
                await self._answer_http(stream, request, keep_alive)
                if not keep_alive:
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await stream.aclose()

    def _route_prefix(self, target: str) -> tuple[Feed | None, str]:
        """The feed named by an exchange prefix (or the only feed), and the target without it."""
        first = target.split("/", 2)[1].split("?", 1)[0] if target.startswith("/") else ""
        if first in self.feeds:
            rest = target[len(first) + 1 :]
            return self.feeds[first], rest if rest.startswith("/") else "/" + rest
        if len(self.feeds) == 1:
            return next(iter(self.feeds.values())), target
        return None, target

    def _route_websocket(self, target: str) -> tuple[Feed | None, str]:
        """As ``_route_prefix``, else the feed whose venue's ``WS_PATHS`` match the path
        longest (ties: the order of ``VENUES``), else any feed."""
        feed, target = self._route_prefix(target)
        if feed is not None:
            return feed, target
        path = urlsplit(target).path
        rank = {name: n for n, name in enumerate(VENUES)}
        candidates = sorted(self.feeds.values(), key=lambda f: rank[f.exchange])
        best = max(
            candidates,
            key=lambda f: max((len(p) for p in f.venue.WS_PATHS if path.startswith(p)), default=0),
        )
        return best, target

    def _owner(self, path: str) -> Venue | None:
        """The venue whose error answers an unmatched path (several feeds, no prefix)."""
        for depth in (None, 3, 2):
            for feed in self.feeds.values():
                if any(r.path.split("/")[:depth] == path.split("/")[:depth] for r in feed.http):
                    return feed.venue
        return None

    # ---- REST ----------------------------------------------------------------------------------

    async def _answer_http(self, stream: trio.abc.Stream, request: Request, keep: bool) -> None:
        feed, target = self._route_prefix(request.target)
        path, params = split_target(target)
        venue = feed.venue if feed else self._owner(path)
        self.stats.http_requests[path] += 1
        status = self.faults.take_http_error()
        if status is not None:
            self.stats.faults_fired[f"http_{status}"] += 1
            log.info("replay.fault", fault="http_error", status=status, path=path)
            headers = [("Retry-After", str(self.faults.http_retry_after_s))]
            body = venue.rate_limit_body(status) if venue else default_rate_limit_body(status)
            await send_response(stream, status, body, keep_alive=keep, headers=headers)
            return
        found = self._find_http(feed, path, params)
        if found is None:
            status, body = venue.NOT_FOUND if venue else DEFAULT_NOT_FOUND
            log.debug("replay.http", path=path, status=status)
            await send_response(stream, status, body, keep_alive=keep)
            return
        log.debug("replay.http", path=path, status=found.status, bytes=len(found.body))
        await send_response(
            stream, found.status, found.body, keep_alive=keep, headers=list(found.headers)
        )

    def _find_http(
        self, feed: Feed | None, path: str, params: tuple[tuple[str, str], ...]
    ) -> HttpRecord | None:
        pools: list[Sequence[HttpRecord]] = [list(self._overrides.values())]
        pools += [feed.http] if feed else [f.http for f in self.feeds.values()]
        for pool in pools:
            same_path = [r for r in pool if r.path == path]
            for rec in same_path:
                if rec.params == params:
                    return rec
            loose = tuple(p for p in params if p[0] != "limit")
            for rec in same_path:
                if tuple(p for p in rec.params if p[0] != "limit") == loose:
                    return rec
        return None

    # ---- websocket ---------------------------------------------------------------------------

    async def _handle_websocket(self, stream: PrefixedStream, request: Request) -> None:
        feed, target = self._route_websocket(request.target)
        conn_id = next(self._conn_ids)
        kind = self.faults.take_bad_handshake() if feed is not None else None
        if kind is not None:
            self.stats.faults_fired[f"handshake_{kind}"] += 1
            log.info("replay.fault", fault="bad_handshake", kind=kind, conn_id=conn_id)
            await send_bad_handshake(stream, request.headers.get("sec-websocket-key", ""), kind)
            return
        async with trio.open_nursery() as nursery:
            ws_request: WebSocketRequest | None = None
            with trio.move_on_after(HANDSHAKE_TIMEOUT_S):
                ws_request = await wrap_server_stream(
                    nursery, stream, max_message_size=MAX_CLIENT_MESSAGE_BYTES
                )
            if ws_request is not None:
                await self._websocket_session(ws_request, stream, feed, target, conn_id)
            nursery.cancel_scope.cancel()

    async def _websocket_session(
        self,
        ws_request: WebSocketRequest,
        stream: PrefixedStream,
        feed: Feed | None,
        target: str,
        conn_id: int,
    ) -> None:
        if feed is None:
            await ws_request.reject(404, body=b"handshake refused")
            return
        status = self.faults.take_reject()
        if status is not None:
            headers = []
            if self.faults.reject_retry_after_s is not None:
                headers.append((b"Retry-After", str(self.faults.reject_retry_after_s).encode()))
            self.stats.rejected_handshakes += 1
            self.stats.faults_fired["reject_handshake"] += 1
            log.info("replay.fault", fault="reject_handshake", status=status, conn_id=conn_id)
            await ws_request.reject(status, extra_headers=headers, body=b"handshake refused")
            return
        ws: WebSocketConnection = await ws_request.accept()
        conn_faults = self.faults.take_connection_faults()
        self.stats.connections += 1
        log.info(
            "replay.connection",
            exchange=feed.exchange,
            path=target,
            conn_id=conn_id,
            faults=conn_faults is not None,
        )
        session = Session(self, feed, ws, stream, conn_faults, conn_id)
        try:
            await session.run(target)
        finally:
            if not session.dropped:
                with trio.move_on_after(1) as scope:
                    scope.shield = True
                    await ws.aclose()
            log.info("replay.closed", conn_id=conn_id, frames=session.sent, dropped=session.dropped)


class ReplayThread:
    """Runs a ``ReplayServer`` in a background thread: ``with ReplayThread([path]) as r: ...``.

    Takes the same arguments as ``ReplayServer`` plus ``port``.
    """

    def __init__(
        self,
        captures: Sequence[str | os.PathLike[str] | Capture],
        *,
        port: int = 0,
        **kwargs: Any,
    ) -> None:
        self.server = ReplayServer(captures, **kwargs)
        self._port_wanted = port
        self._ready = threading.Event()
        self._error: Exception | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server._port()

    @property
    def http_url(self) -> str:
        return self.server.http_url

    @property
    def ws_url(self) -> str:
        return self.server.ws_url

    @property
    def faults(self) -> Faults:
        return self.server.faults

    @property
    def stats(self) -> ReplayStats:
        return self.server.stats

    def set_http(
        self,
        path_and_query: str,
        body: str | bytes,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.server.set_http(path_and_query, body, status, headers)

    def __enter__(self) -> ReplayThread:
        self._thread = threading.Thread(target=self._run, name="replay-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError("replay server did not start") from self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None and self._scope is not None:
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(self._scope.cancel)
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except Exception as exc:  # reported to the starting thread by __enter__
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        async with trio.open_nursery() as nursery:
            self._token = trio.lowlevel.current_trio_token()
            self._scope = nursery.cancel_scope
            await nursery.start(self.server.serve, self._port_wanted)
            self._ready.set()
