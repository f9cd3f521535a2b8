"""Coinbase Exchange as the replay server speaks it.

Websocket path ``/``. ``subscribe``/``unsubscribe`` (channels as names or
``{"name":..,"product_ids":[..]}``) are answered with one ``subscriptions`` message; then,
per channel and product, the recorded frames of that channel's types: matches, level2
(also served as level2_batch and level2_50), ticker, heartbeat, status, full, level3. A
connection that sends no subscribe within ``subscribe_timeout_s`` is closed.

Auth: with ``coinbase_auth`` (a ``CoinbaseTestKey``; CLI ``--coinbase-test-key`` or
``REPLAY_COINBASE_TEST_KEY``), level2, full and level3 need the key's signed fields in the
subscribe, checked as Coinbase does (HMAC-SHA256 of ``timestamp + "GET/users/self/verify"``).

Known products: ``/products`` when recorded, else the recorded frames' ``product_id``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import structlog
import trio
from trio_websocket import ConnectionClosed

from ops.replay.venues.base import (
    Connection,
    Item,
    Json,
    default_rate_limit_body,
    dumps,
    loads,
)

if TYPE_CHECKING:
    from ops.replay.captures import Feed, Frame

log = structlog.get_logger()


@dataclass(frozen=True)
class CoinbaseTestKey:
    """A Coinbase Exchange API key the server accepts; secret_b64 is the base64 API secret."""

    key: str
    secret_b64: str = field(repr=False)
    passphrase: str = field(repr=False)

    def sign(self, timestamp: str) -> str:
        """base64(HMAC-SHA256(b64decode(secret), timestamp + "GET/users/self/verify"))."""
        secret = base64.b64decode(self.secret_b64)
        message = f"{timestamp}GET/users/self/verify".encode()
        return base64.b64encode(hmac.new(secret, message, hashlib.sha256).digest()).decode()

    def subscribe_fields(self, timestamp: str | None = None) -> dict[str, str]:
        """The auth fields a client adds to its subscribe message."""
        ts = timestamp if timestamp is not None else f"{time.time():.3f}"
        return {
            "key": self.key,
            "passphrase": self.passphrase,
            "timestamp": ts,
            "signature": self.sign(ts),
        }


NAME: Final = "coinbase"
CAPTURE_HINTS: Final = ("coinbase",)
WS_PATHS: Final = ("/",)
NOT_FOUND: Final = (404, b'{"message":"NotFound"}')
RECONNECT_REQUEST: Final = None
AUTH_OPTION: Final = "coinbase_auth"
OPTIONS: Final[Mapping[str, type]] = {AUTH_OPTION: CoinbaseTestKey}
AUTH_ENV: Final = "REPLAY_COINBASE_TEST_KEY"
rate_limit_body: Final = default_rate_limit_body

_L2 = ("snapshot", "l2update")
_CHANNEL_TYPES: dict[str, tuple[str, ...]] = {
    "level2": _L2,
    "level2_batch": _L2,
    "level2_50": _L2,
    "ticker": ("ticker",),
    "ticker_batch": ("ticker",),
    "ticker_1000": ("ticker",),
    "matches": ("last_match", "match"),
    "heartbeat": ("heartbeat",),
    "status": ("status",),
    "full": ("received", "open", "done", "match", "change", "activate"),
    "level3": ("level3",),
}
_AUTH_CHANNELS = frozenset({"level2", "full", "level3"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--coinbase-test-key", metavar="KEY:SECRET:PASS", default=None)


def options_from_args(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, object]:
    """``coinbase_auth`` from ``--coinbase-test-key`` (else the environment), if given."""
    spec = args.coinbase_test_key or environ.get(AUTH_ENV)
    if not spec:
        return {}
    key, secret, passphrase = (spec.split(":", 2) + ["", ""])[:3]
    try:
        base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        secret = ""
    if not (key and secret and passphrase):
        raise ValueError("--coinbase-test-key must be KEY:BASE64SECRET:PASSPHRASE")
    return {AUTH_OPTION: CoinbaseTestKey(key, secret, passphrase)}


def frame_keys(frame: Frame, addr: str) -> list[object]:
    msg = frame.msg
    kind = msg.get("type") if isinstance(msg, dict) else None
    return [(kind, msg.get("product_id"))] if isinstance(kind, str) else []


def known_names(feed: Feed) -> set[str]:
    products = feed.body_of("/products")
    if isinstance(products, list):
        return {str(p.get("id")) for p in products if isinstance(p, dict)}
    return {str(k[1]) for k in feed.index if isinstance(k, tuple) and k[1]}


class Handler:
    """One Coinbase connection: its channels and products, auth, the subscribe deadline."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.feed = conn.feed
        self.subs: dict[str, list[str]] = {}

    async def on_open(self, target: str) -> None:
        self.conn.start_soon(self._subscribe_deadline)

    async def _subscribe_deadline(self) -> None:
        await trio.sleep(self.conn.server.subscribe_timeout_s)
        if not self.subs and not self.conn.live:
            log.info("replay.subscribe_timeout", conn_id=self.conn.conn_id)
            with contextlib.suppress(ConnectionClosed):
                await self.conn.ws.aclose(1000, "no subscribe message")

    async def _error(self, message: str, reason: str) -> None:
        reply = {"type": "error", "message": message, "reason": reason}
        await self.conn.send_control(dumps(reply))

    async def on_message(self, text: str) -> None:
        msg = loads(text)
        kind = msg.get("type") if isinstance(msg, dict) else None
        if kind not in ("subscribe", "unsubscribe"):
            await self._error("Failed to subscribe", "type has to be either subscribe or unsub")
            return
        assert isinstance(msg, dict)
        wanted = self._parse_channels(msg)
        if isinstance(wanted, str):
            await self._error("Failed to subscribe", wanted)
            return
        if kind == "unsubscribe":
            await self._unsubscribe(wanted)
            return
        known = self.feed.known_names()
        bad = next((p for ps in wanted.values() for p in ps if p not in known), None)
        if bad is not None:
            await self._error("Failed to subscribe", f"{bad} is not a valid product")
            return
        if not await self._authorised(msg, wanted):
            return
        new_keys = []
        for name, products in wanted.items():
            subs = self.subs.setdefault(name, [])
            for product in products:
                if (name, product) not in self.conn.live:
                    new_keys.append((name, product))
                    subs.append(product)
        tokens = {key: self.conn.add_live(key) for key in new_keys}
        await self._reply_subscriptions()
        if tokens:
            self.conn.start_stream(self._items_for(tokens))

    async def _unsubscribe(self, wanted: Mapping[str, list[str]]) -> None:
        for name, products in wanted.items():
            for product in products:
                self.conn.live.pop((name, product), None)
            self.subs[name] = [p for p in self.subs.get(name, []) if p not in products]
        await self._reply_subscriptions()

    def _parse_channels(self, msg: Mapping[str, Json]) -> dict[str, list[str]] | str:
        """Products wanted per channel, or the reason the subscribe is refused."""
        root = msg.get("product_ids") or []
        channels = msg.get("channels")
        if not isinstance(root, list) or not isinstance(channels, list) or not channels:
            return "channels and product_ids must be lists"
        wanted: dict[str, list[str]] = {}
        for ch in channels:
            name, own = (
                (ch.get("name"), ch.get("product_ids") or []) if isinstance(ch, dict) else (ch, [])
            )
            if not isinstance(name, str) or name not in _CHANNEL_TYPES:
                return f"{name} is not a valid channel"
            products = [str(p) for p in [*own, *root]] if isinstance(own, list) else []
            bucket = wanted.setdefault(name, [])
            bucket += [p for p in products if p not in bucket]
        return wanted

    async def _authorised(self, msg: Mapping[str, Json], wanted: Mapping[str, Json]) -> bool:
        key = self.conn.server.venue_options.get(AUTH_OPTION)
        if not isinstance(key, CoinbaseTestKey):
            return True
        fields = [msg.get(f) for f in ("key", "passphrase", "timestamp", "signature")]
        if not all(isinstance(f, str) for f in fields):
            if _AUTH_CHANNELS & set(wanted):
                await self._error(
                    "Failed to subscribe",
                    "level2, level3, and full channels now require authentication",
                )
                return False
            return True
        api_key, passphrase, timestamp, signature = (str(f) for f in fields)
        try:
            expected = key.sign(timestamp)
        except (binascii.Error, ValueError):
            expected = ""
        if api_key != key.key or passphrase != key.passphrase:
            await self._error("Authentication Failed", "invalid key or passphrase")
            return False
        if not hmac.compare_digest(expected, signature):
            await self._error("Authentication Failed", "invalid signature")
            return False
        return True

    async def _reply_subscriptions(self) -> None:
        channels = [{"name": n, "product_ids": ps} for n, ps in self.subs.items() if ps]
        await self.conn.send_control(dumps({"type": "subscriptions", "channels": channels}))

    def _items_for(self, tokens: Mapping[tuple[str, str], object]) -> list[Item]:
        by_frame_key: dict[object, object] = {}
        for (name, product), token in tokens.items():
            for kind in _CHANNEL_TYPES[name]:
                by_frame_key.setdefault((kind, product), token)
                by_frame_key.setdefault((kind, None), token)

        def key_of(pos: int) -> object:
            # the frame's own (type, product_id), or the one a binary frame inherited
            return next(by_frame_key[k] for k in self.feed.keys_at[pos] if k in by_frame_key)

        return self.conn.items(by_frame_key, key_of)
