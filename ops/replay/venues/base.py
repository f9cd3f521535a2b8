"""The contract every venue module fulfils, and the few helpers venues share.

A venue is one exchange as the replay server speaks it: a module of constants and functions
(the ``Venue`` Protocol) plus one per-connection class (``Handler``, a ``VenueHandler``).
Generic code (server, session, captures) reaches an exchange only through these members and
never branches on an exchange name.

What a venue may use of its connection is the ``Connection`` Protocol: the feed it serves,
the server's settings, the subscription tokens, and ways to send (a control reply now, a
subscription's frames paced and faulted by the session).
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from trio_websocket import WebSocketConnection

if TYPE_CHECKING:
    from ops.replay.captures import Feed, Frame

Json = Any  # a decoded JSON value; checked with isinstance before use

# The answers of a venue that has no exchange-specific ones (and of a path no venue owns).
DEFAULT_NOT_FOUND = (404, b'{"error":"Not found"}')


def default_rate_limit_body(status: int) -> bytes:
    """The body of a 429/418 fault answer for a venue without its own."""
    return b'{"message":"Too many requests"}'


@dataclass(frozen=True, slots=True)
class Item:
    """A frame to send on a connection: its pacing time, wire data, and subscription token."""

    ts: float
    data: str | bytes  # bytes go out as a binary message
    key: object  # the token from ``Connection.add_live``; the frame is sent while it is live


class ServerSettings(Protocol):
    """The server settings a venue may read."""

    @property
    def ping_interval_s(self) -> float: ...  # server pings, where the exchange pings
    @property
    def pong_timeout_s(self) -> float: ...  # no pong in time drops the client
    @property
    def subscribe_timeout_s(self) -> float: ...  # no subscribe in time closes the connection
    @property
    def venue_options(self) -> Mapping[str, object]: ...  # by name, as declared in OPTIONS


class Connection(Protocol):
    """One accepted websocket connection, as its venue handler sees it."""

    @property
    def server(self) -> ServerSettings: ...
    @property
    def feed(self) -> Feed: ...  # what this connection's venue serves
    @property
    def ws(self) -> WebSocketConnection: ...
    @property
    def conn_id(self) -> int: ...
    @property
    def live(self) -> dict[object, tuple[object, int]]: ...  # subscription key -> token

    def add_live(self, key: object) -> tuple[object, int]:
        """A new token for subscription ``key``: frames under an older token stay silent."""
        ...

    def items(self, keys: Iterable[object], key_of: Callable[[int], object]) -> list[Item]:
        """The feed's frames under ``keys``; ``key_of(position)`` gives each its token."""
        ...

    def start_stream(self, items: list[Item]) -> None:
        """Send ``items`` (one subscription's frames) in a task, paced and faulted."""
        ...

    def start_soon(self, fn: Callable[[], Awaitable[object]]) -> None:
        """Run ``fn`` for the connection's lifetime (pingers, deadlines)."""
        ...

    async def send_control(self, text: str | bytes) -> None:
        """A protocol reply (ack, error, pong): sent at once, not counted as data."""
        ...

    async def drop(self) -> None:
        """Cut the TCP stream without a close frame (the client sees 1006)."""
        ...


class VenueHandler(Protocol):
    """The per-connection protocol state of one venue."""

    async def on_open(self, target: str) -> None:
        """The connection was accepted on ``target`` (path and query, prefix removed)."""
        ...

    async def on_message(self, text: str) -> None:
        """The client sent ``text`` (a binary message arrives decoded with replacement)."""
        ...


class Venue(Protocol):
    """Everything generic code may ask of one venue: module constants and functions.
    Optional capabilities are members that are ``None`` where the venue has none.

    Adding a venue: ``ops/replay/venues/<id>.py`` with every member below (its docstring
    says which websocket paths and subscribe messages it speaks), its entry in ``VENUES``
    (``ops/replay/venues/__init__.py``), and tests in ``tests/ops/replay/``.
    """

    # Read-only members (properties here, plain module attributes in a venue).
    @property
    def NAME(self) -> str: ...  # the exchange id: a capture's ``exchange``, the path prefix
    @property
    def CAPTURE_HINTS(self) -> tuple[str, ...]: ...  # lowercase text that names it in a
    # capture's header ``exchange``, its URLs' host names, or the capture's file name
    @property
    def WS_PATHS(self) -> tuple[str, ...]: ...  # path prefixes that route an unprefixed
    # websocket to it when several venues are served (longest match wins; "/" is the root)
    @property
    def NOT_FOUND(self) -> tuple[int, bytes]: ...  # status and body for an unknown REST path
    @property
    def RECONNECT_REQUEST(self) -> str | None: ...  # the frame asking clients to reconnect
    @property
    def OPTIONS(self) -> Mapping[str, type]: ...  # ReplayServer keyword options it reads

    def rate_limit_body(self, status: int) -> bytes:
        """The body of a 429/418 fault answer."""
        ...

    def frame_keys(self, frame: Frame, addr: str) -> list[object]:
        """The subscription keys a recorded recv frame is served under (``[]``: none);
        ``addr`` is the URL of its recorded connection."""
        ...

    def known_names(self, feed: Feed) -> set[str]:
        """Valid symbols/products/pairs: from a recorded listing, else from the frames."""
        ...

    @property
    def Handler(self) -> Callable[[Connection], VenueHandler]: ...  # per-connection state

    # optional capabilities (None where the venue has none)
    @property
    def add_arguments(self) -> Callable[[argparse.ArgumentParser], None] | None: ...  # CLI
    @property
    def options_from_args(
        self,
    ) -> Callable[[argparse.Namespace, Mapping[str, str]], dict[str, object]] | None:
        """Its ``OPTIONS`` from the parsed CLI and the environment; ValueError names a bad
        value."""
        ...


def loads(text: str) -> Json:
    """A client message decoded, or None when it is not JSON."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def dumps(value: Json) -> str:
    return orjson.dumps(value).decode()
