"""Bitstamp as the replay server speaks it.

Websocket path ``/``. ``bts:subscribe``/``bts:unsubscribe`` of a channel
(``live_trades_<pair>``, ``live_orders_<pair>``, ``order_book_<pair>``, ``detail_``,
``diff_`` and ``full_order_book_<pair>``) are acked with ``bts:subscription_succeeded`` /
``bts:unsubscription_succeeded``, then the recorded frames whose ``channel`` matches follow;
``bts:heartbeat`` is answered; anything else gets ``bts:error``. The reconnect request is
``bts:request_reconnect``.

Known pairs: ``/api/v2/trading-pairs-info`` when recorded, else the recorded channels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from ops.replay.venues.base import (
    DEFAULT_NOT_FOUND,
    Connection,
    default_rate_limit_body,
    dumps,
    loads,
)

if TYPE_CHECKING:
    from ops.replay.captures import Feed, Frame

NAME: Final = "bitstamp"
CAPTURE_HINTS: Final = ("bitstamp",)
WS_PATHS: Final = ("/",)
NOT_FOUND: Final = DEFAULT_NOT_FOUND
RECONNECT_REQUEST: Final = '{"event":"bts:request_reconnect","channel":"","data":""}'
OPTIONS: Final[Mapping[str, type]] = {}
rate_limit_body: Final = default_rate_limit_body
add_arguments: Final = None
options_from_args: Final = None

_CHANNEL_PREFIXES = (
    "live_trades_",
    "live_orders_",
    "order_book_",
    "detail_order_book_",
    "diff_order_book_",
    "full_order_book_",
)


def frame_keys(frame: Frame, addr: str) -> list[object]:
    msg = frame.msg
    if not isinstance(msg, dict):
        return []
    channel, event = msg.get("channel"), str(msg.get("event", ""))
    if isinstance(channel, str) and channel and not event.startswith("bts:"):
        return [channel]
    return []


def known_names(feed: Feed) -> set[str]:
    pairs = feed.body_of("/api/v2/trading-pairs-info")
    if isinstance(pairs, list):
        return {str(p.get("url_symbol")) for p in pairs if isinstance(p, dict)}
    return {str(k).rsplit("_", 1)[-1] for k in feed.index}


class Handler:
    """One Bitstamp connection: its channels."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.feed = conn.feed

    async def on_open(self, target: str) -> None:
        pass

    async def on_message(self, text: str) -> None:
        msg = loads(text)
        event = msg.get("event") if isinstance(msg, dict) else None
        data = msg.get("data") if isinstance(msg, dict) else None
        channel = data.get("channel") if isinstance(data, dict) else None
        live = self.conn.live
        if event == "bts:heartbeat":
            reply = {"event": "bts:heartbeat", "channel": "", "data": {"status": "success"}}
            await self.conn.send_control(dumps(reply))
        elif event in ("bts:subscribe", "bts:unsubscribe") and self._valid(channel):
            assert isinstance(channel, str)
            done = "bts:subscription_succeeded"
            if event == "bts:unsubscribe":
                done = "bts:unsubscription_succeeded"
                live.pop(channel, None)
            await self.conn.send_control(dumps({"event": done, "channel": channel, "data": {}}))
            if event == "bts:subscribe" and channel not in live:
                token = self.conn.add_live(channel)
                self.conn.start_stream(self.conn.items([channel], lambda pos: token))
        else:
            message = "Bad subscription string." if event == "bts:subscribe" else "Bad request."
            error = {
                "event": "bts:error",
                "channel": "",
                "data": {"code": None, "message": message},
            }
            await self.conn.send_control(dumps(error))

    def _valid(self, channel: object) -> bool:
        if not isinstance(channel, str):
            return False
        prefix = next((p for p in _CHANNEL_PREFIXES if channel.startswith(p)), None)
        return prefix is not None and channel[len(prefix) :] in self.feed.known_names()
