"""Bitfinex (API v2) as the replay server speaks it.

Websocket path ``/ws/2``. On connect: ``{"event":"info","version":2,...}``; ``conf`` and
``ping`` are answered; ``subscribe`` gets the recorded ``subscribed`` event of that channel
and symbol (book: and precision), then that recorded connection's ``[chanId, ...]`` frames
and (on the first subscription) its info events with a ``code``; a subscription that was
not recorded is acked with a new chanId and gets no frames; an unknown symbol gets error
10300. The reconnect request is info code 20051.

Known symbols: those of the recorded ``subscribed`` events (``symbol`` and ``"t" + pair``),
and ``"t" + pair`` of every pair in a recorded ``/v2/conf/pub:list:pair:exchange`` listing
(served like any recorded REST answer, as the security master polls it).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from ops.replay.venues.base import (
    DEFAULT_NOT_FOUND,
    Connection,
    Item,
    Json,
    default_rate_limit_body,
    dumps,
    loads,
)

if TYPE_CHECKING:
    from ops.replay.captures import Feed, Frame

NAME: Final = "bitfinex"
CAPTURE_HINTS: Final = ("bitfinex",)
# /ws/2 is the exchange's path; "/" also routes the root here when no venue before it in
# VENUES (which breaks ties) is served
WS_PATHS: Final = ("/ws/2", "/")
NOT_FOUND: Final = DEFAULT_NOT_FOUND
RECONNECT_REQUEST: Final = '{"event":"info","code":20051,"msg":"Stopping. Please try to reconnect"}'
OPTIONS: Final[Mapping[str, type]] = {}
rate_limit_body: Final = default_rate_limit_body
add_arguments: Final = None
options_from_args: Final = None

_UNKNOWN_EVENT = '{"event":"error","msg":"unknown event","code":10000}'


def frame_keys(frame: Frame, addr: str) -> list[object]:
    # frames are found per subscription from the recorded ``subscribed`` event (Handler)
    return []


# The exchange's pair listing (a recorded answer is served at this path like any other).
LISTINGS_PATH: Final = "/v2/conf/pub:list:pair:exchange"


def known_names(feed: Feed) -> set[str]:
    names: set[str] = set()
    listing = feed.body_of(LISTINGS_PATH)
    if isinstance(listing, list) and listing and isinstance(listing[0], list):
        names |= {"t" + p for p in listing[0] if isinstance(p, str)}
    for frame in feed.frames:
        if isinstance(frame.msg, dict) and frame.msg.get("event") == "subscribed":
            names |= set(_symbols(frame.msg))
    return names


def _symbols(msg: Mapping[str, Json]) -> list[str]:
    out = [str(msg["symbol"])] if isinstance(msg.get("symbol"), str) else []
    if isinstance(msg.get("pair"), str):
        out.append("t" + str(msg["pair"]))
    return out


class Handler:
    """One Bitfinex connection: its channels, by chanId."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.feed = conn.feed
        self.subscribed_any = False
        self.next_chan = 1_000_000

    async def on_open(self, target: str) -> None:
        await self.conn.send_control('{"event":"info","version":2,"platform":{"status":1}}')

    async def on_message(self, text: str) -> None:
        msg = loads(text)
        event = msg.get("event") if isinstance(msg, dict) else None
        if not isinstance(msg, dict):
            await self.conn.send_control(_UNKNOWN_EVENT)
        elif event == "ping":
            pong = {"event": "pong", "ts": int(time.time() * 1000), "cid": msg.get("cid")}
            await self.conn.send_control(dumps(pong))
        elif event == "conf":
            conf = {"event": "conf", "status": "OK", "flags": msg.get("flags")}
            await self.conn.send_control(dumps(conf))
        elif event == "subscribe":
            await self._subscribe(msg)
        elif event == "unsubscribe":
            if isinstance(msg.get("chanId"), int):
                self.conn.live.pop(msg["chanId"], None)
            reply = {"event": "unsubscribed", "status": "OK", "chanId": msg.get("chanId")}
            await self.conn.send_control(dumps(reply))
        else:
            await self.conn.send_control(_UNKNOWN_EVENT)

    async def _subscribe(self, req: Mapping[str, Json]) -> None:
        wanted = set(_symbols(req))
        if not wanted & self.feed.known_names():
            await self.conn.send_control('{"event":"error","msg":"symbol: invalid","code":10300}')
            return
        found = self._find_subscribed(req, wanted)
        if found is None:
            self.next_chan += 1
            ack = {k: v for k, v in req.items() if k != "event"}
            await self.conn.send_control(
                dumps({"event": "subscribed", "chanId": self.next_chan, **ack})
            )
            return
        pos, ack_frame = found
        await self.conn.send_control(ack_frame.data)
        first, self.subscribed_any = not self.subscribed_any, True
        self.conn.start_stream(self._items_after(pos, ack_frame, first))

    def _items_after(self, pos: int, ack_frame: Frame, first: bool) -> list[Item]:
        """The frames of the subscription acked at ``pos`` (and, when ``first``, the info
        events) on its recorded connection."""
        chan_id = ack_frame.msg.get("chanId")
        token = self.conn.add_live(chan_id)
        info = self.conn.add_live("info") if first else None
        items: list[Item] = []
        prev: object = None  # the token of the frame before on the recorded connection
        for frame in self.feed.frames[pos + 1 :]:
            if frame.conn != ack_frame.conn:
                continue
            msg = frame.msg
            tok: object = None
            if isinstance(msg, list) and msg and msg[0] == chan_id:
                tok = token
            elif info and isinstance(msg, dict) and msg.get("event") == "info" and "code" in msg:
                tok = info
            elif msg is None and isinstance(frame.data, bytes):
                tok = prev  # a non-JSON binary frame goes where it was recorded
            if tok is not None:
                items.append(Item(frame.ts, frame.data, tok))
            prev = tok
        return items

    def _find_subscribed(
        self, req: Mapping[str, Json], wanted: set[str]
    ) -> tuple[int, Frame] | None:
        for pos, frame in enumerate(self.feed.frames):
            msg = frame.msg
            if not isinstance(msg, dict) or msg.get("event") != "subscribed":
                continue
            if msg.get("channel") != req.get("channel") or not wanted & set(_symbols(msg)):
                continue
            if req.get("channel") == "book" and msg.get("prec", "P0") != req.get("prec", "P0"):
                continue
            return pos, frame
        return None
