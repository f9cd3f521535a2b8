"""Binance spot as the replay server speaks it.

Websocket paths: ``/stream[?streams=a/b]`` (combined: ``{"stream":..,"data":..}`` frames) and
``/ws/<stream>[/<stream>...]`` (raw payloads). ``SUBSCRIBE``/``UNSUBSCRIBE`` are acked with
``{"result":null,"id":N}`` (an unknown stream gets error code 2), ``LIST_SUBSCRIPTIONS``
lists them. A stream is served from the recorded frames of that stream name; ``@depth`` is
served from ``@depth@100ms`` frames and vice versa, renamed. The server pings every
``ping_interval_s`` and drops a client that does not answer within ``pong_timeout_s``.

Known symbols: ``/api/v3/exchangeInfo`` when recorded, else the recorded stream names.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qsl, urlsplit

import structlog
import trio
from trio_websocket import ConnectionClosed

from ops.replay.venues.base import Connection, Item, Json, dumps, loads

if TYPE_CHECKING:
    from ops.replay.captures import Feed, Frame

log = structlog.get_logger()

NAME: Final = "binance"
CAPTURE_HINTS: Final = ("binance",)
WS_PATHS: Final = ("/stream", "/ws")
NOT_FOUND: Final = (400, b'{"code":-1121,"msg":"Invalid symbol."}')
RECONNECT_REQUEST: Final = None
OPTIONS: Final[Mapping[str, type]] = {}
add_arguments: Final = None
options_from_args: Final = None


def rate_limit_body(status: int) -> bytes:
    msg = "Way too many requests; IP banned." if status == 418 else "Too many requests."
    return dumps({"code": -1003, "msg": msg}).encode()


def frame_keys(frame: Frame, addr: str) -> list[object]:
    name = _stream_of(frame.msg, addr)
    return [name] if name else []


def _stream_of(msg: Json, addr: str) -> str | None:
    """The stream name of a recorded frame: its wrapper's, the raw endpoint's, or its event's."""
    if not isinstance(msg, dict):
        return None
    stream = msg.get("stream")
    if isinstance(stream, str) and "data" in msg:
        return stream
    path = urlsplit(addr).path
    if path.startswith("/ws/") and "/" not in path[4:]:
        return path[4:]
    symbol, event = str(msg.get("s", "")).lower(), msg.get("e")
    if not symbol:
        return None
    if event in ("trade", "aggTrade"):
        return f"{symbol}@{event}"
    if event == "depthUpdate":
        return f"{symbol}@depth"
    if event == "kline" and isinstance(msg.get("k"), dict):
        return f"{symbol}@kline_{msg['k'].get('i')}"
    if event is None and {"u", "b", "a"} <= msg.keys():
        return f"{symbol}@bookTicker"
    return None


def known_names(feed: Feed) -> set[str]:
    info = feed.body_of("/api/v3/exchangeInfo")
    if isinstance(info, dict) and isinstance(info.get("symbols"), list):
        return {str(s.get("symbol", "")).lower() for s in info["symbols"]}
    names = {str(k).split("@")[0] for k in feed.index}
    for rc in feed.connections:
        query = dict(parse_qsl(urlsplit(rc.addr).query))
        names |= {s.split("@")[0] for s in query.get("streams", "").split("/") if s}
    return names


class Handler:
    """One Binance connection: its subscribed streams and the server's pings."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.feed = conn.feed
        self.combined = True  # /stream wraps frames; /ws sends raw payloads

    async def on_open(self, target: str) -> None:
        parts = urlsplit(target)
        self.combined = not parts.path.startswith("/ws")
        if self.combined:
            query = dict(parse_qsl(parts.query))
            names = [s for s in query.get("streams", "").split("/") if s]
        else:
            names = [s for s in parts.path[len("/ws") :].split("/") if s]
        self._subscribe([n for n in names if self._valid(n)])
        self.conn.start_soon(self._pinger)

    async def _pinger(self) -> None:
        server = self.conn.server
        for n in itertools.count():
            await trio.sleep(server.ping_interval_s)
            try:
                with trio.move_on_after(server.pong_timeout_s) as scope:
                    await self.conn.ws.ping(b"replay-%d" % n)
            except ConnectionClosed:
                return
            if scope.cancelled_caught:
                log.info("replay.pong_timeout", conn_id=self.conn.conn_id)
                await self.conn.drop()
                return

    def _valid(self, name: str) -> bool:
        symbol, sep, kind = name.partition("@")
        return name.startswith("!") or (bool(sep and kind) and symbol in self.feed.known_names())

    def _subscribe(self, names: list[str]) -> None:
        live = self.conn.live
        new = list(dict.fromkeys(n for n in names if n not in live))
        items: list[Item] = []
        for name in new:
            items += self._items_for(name, self.conn.add_live(name))
        if new:
            items.sort(key=lambda i: i.ts)  # sort is stable: file order within equal times
            self.conn.start_stream(items)

    def _items_for(self, name: str, token: object) -> list[Item]:
        source = name
        if name not in self.feed.index:
            for alias in (name + "@100ms", name.removesuffix("@100ms"), name + "@1000ms"):
                if alias in self.feed.index:
                    source = alias
                    break
        out: list[Item] = []
        for p in self.feed.positions([source]):
            frame = self.feed.frames[p]
            out.append(Item(frame.ts, self._text(frame, source, name), token))
        return out

    def _text(self, frame: Frame, source: str, name: str) -> str | bytes:
        """The recorded frame of stream ``source`` as sent to a subscriber of ``name``."""
        if isinstance(frame.data, bytes):
            return frame.data  # a binary frame is sent exactly as recorded, never rewrapped
        msg = frame.msg
        wrapped = isinstance(msg, dict) and isinstance(msg.get("stream"), str) and "data" in msg
        if wrapped and self.combined and source == name:
            return frame.data
        payload = frame.data
        if wrapped:
            prefix = '{"stream":' + dumps(source) + ',"data":'
            if frame.data.startswith(prefix) and frame.data.endswith("}"):
                payload = frame.data[len(prefix) : -1]
            else:
                payload = dumps(msg["data"])
        if self.combined:
            return '{"stream":' + dumps(name) + ',"data":' + payload + "}"
        return payload

    async def on_message(self, text: str) -> None:
        msg = loads(text)
        if not isinstance(msg, dict):
            await self.conn.send_control(dumps({"error": {"code": 3, "msg": "Invalid JSON"}}))
            return
        req_id, method, params = msg.get("id"), msg.get("method"), msg.get("params")
        names = [str(p) for p in params] if isinstance(params, list) else []
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            bad = next((n for n in names if not self._valid(n)), None)
            if bad is not None or not names:
                reason = f"unknown stream {bad}" if bad else "no streams"
                error = {"code": 2, "msg": f"Invalid request: {reason}"}
                await self.conn.send_control(dumps({"error": error, "id": req_id}))
                return
            if method == "UNSUBSCRIBE":
                for name in names:
                    self.conn.live.pop(name, None)
            # the ack first, as Binance does: a stream task started before it could send data
            # (or fire a drop fault) ahead of the ack
            await self.conn.send_control(dumps({"result": None, "id": req_id}))
            if method == "SUBSCRIBE":
                self._subscribe(names)
        elif method == "LIST_SUBSCRIPTIONS":
            listed = sorted(map(str, self.conn.live))
            await self.conn.send_control(dumps({"result": listed, "id": req_id}))
        else:
            error = {"code": 2, "msg": f"Invalid request: unknown method {method}"}
            await self.conn.send_control(dumps({"error": error, "id": req_id}))
