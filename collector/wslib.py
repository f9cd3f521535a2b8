"""trio-websocket without ``importlib.metadata``: ``from collector.wslib import trio_websocket``.

trio-websocket asks ``importlib.metadata.version("trio")`` once, at import, to learn whether
this trio still has ``MultiError`` (before 0.22). That one question imports
``importlib.metadata`` (with zipfile, email, csv and their kin) and reads trio's installed
metadata: 56M of the ~690M instructions that importing trio and trio-websocket takes, in
every collector's start, of which it otherwise uses none. The answer is trio's own
``trio.__version__``, so while trio-websocket is imported a stand-in ``importlib.metadata``
that only answers that question is in ``sys.modules``, and it is taken out at once after;
the library itself is unchanged. Where ``importlib.metadata`` is already loaded (a test run,
say), or the stand-in does not satisfy the import (a release that asks it for more: any
name or distribution but ``version("trio")``), the real module is used.

The collector imports trio-websocket through this module
(``tests/collector/test_wslib.py``), lets its reader task queue messages through
:func:`eager_sends`, takes a burst's queued messages through :func:`message_queue`, and reads
the socket in :data:`RECEIVE_BUFFER_SIZE`.
"""

from __future__ import annotations

import sys
import types

import trio

from collector.common.standin import stand_in


def _version(distribution: str) -> str:
    if distribution != "trio":
        raise LookupError(f"the stand-in importlib.metadata knows only trio, not {distribution!r}")
    return trio.__version__


_metadata = types.ModuleType("importlib.metadata", "trio's version, for trio-websocket only")
_metadata.version = _version  # type: ignore[attr-defined]

try:
    with stand_in("importlib.metadata", _metadata, importing="trio_websocket") as _used:
        import trio_websocket
except (ImportError, LookupError, AttributeError):
    if not _used:
        raise
    # a release that asks for more: again, with the real module
    for _name in [m for m in sys.modules if m.partition(".")[0] == "trio_websocket"]:
        del sys.modules[_name]
    import trio_websocket


# trio-websocket's message_queue_size: the messages its reader task may queue before it waits.
# With eager_sends the task queues a whole socket read's messages at once: a 64 KiB read
# holds ~260 trade frames of ~250 bytes, and where the queue fills mid-read, each wait costs
# the rounds eager_sends saves (64 here measured slower than trio-websocket's own sends).
MESSAGE_QUEUE = 512


# trio-websocket's receive_buffer_size. Its default reads the socket 4 KiB at a time: in a
# burst of ~250-byte trade frames, a read (a trio wait, a recv and wsproto's buffering) per
# ~16 frames. None lets trio choose: 64 KiB per read on a plain socket (trio's
# DEFAULT_RECEIVE_SIZE), and under TLS its own estimate (from 16 KiB, grown to what the
# records hold). Measured with make bench's burst: the collector received 10-17 % more
# frames/s (46-50k -> 51-56k on this VM); a quiet stream's read returns what arrived.
RECEIVE_BUFFER_SIZE: int | None = None


def message_queue(
    ws: trio_websocket.WebSocketConnection,
) -> trio.MemoryReceiveChannel[str | bytes] | None:
    """The channel ``ws.get_message`` receives from, so that a burst's messages already
    queued can be taken with ``receive_nowait``, or None.

    ``get_message`` costs a scheduler round per message (the channel's receive checkpoints).
    In a burst the collector takes every message the reader task has queued in one go
    instead (with :func:`eager_sends`, a whole socket read's). The channel is
    trio-websocket's private ``_recv_channel`` (0.12: what ``get_message`` awaits); where a
    release has none, this is None and the collector receives with ``get_message`` alone
    (``tests/collector/test_wslib.py`` fails first). ``receive_nowait`` raises
    ``trio.WouldBlock`` when nothing is queued, and ``trio.EndOfChannel`` or
    ``trio.ClosedResourceError`` once the connection is over: the next ``get_message`` then
    raises ``ConnectionClosed`` as usual. Messages come in the order ``get_message`` would
    give them; either may be used at any time.
    """
    channel = getattr(ws, "_recv_channel", None)
    return channel if isinstance(channel, trio.MemoryReceiveChannel) else None


class _EagerSend:
    """trio-websocket's send channel as its reader task sees it: a message is queued at
    once while the queue has room, and only a full queue waits (the channel's own ``send``,
    checkpoint and backpressure included). Everything else is the channel's."""

    __slots__ = ("channel",)

    def __init__(self, channel: trio.MemorySendChannel[str | bytes]) -> None:
        self.channel = channel

    async def send(self, value: str | bytes) -> None:
        try:
            self.channel.send_nowait(value)  # (closed or broken: raises as send would)
        except trio.WouldBlock:
            await self.channel.send(value)

    async def __aenter__(self) -> _EagerSend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.channel.aclose()

    def __getattr__(self, name: str) -> object:
        return getattr(self.channel, name)


def eager_sends(ws: trio_websocket.WebSocketConnection) -> bool:
    """Let ``ws``'s reader task queue each message without a scheduler round; False where
    the installed trio-websocket has no such channel (it then works as it always does).

    trio-websocket's reader task parses every message of a socket read, and queues each with
    the channel's ``send``, which checkpoints: a scheduler round per message, one of the two
    per frame that cost a burst most of its time. With this, the task checkpoints once per
    socket read instead (the read's own), then once more only where the queue is full: the
    order, the bound on the queue and the close are the channel's, unchanged. Measured with
    the burst of ``make bench`` (runs interleaved, this VM): a loop draining the queue
    received 81-134k frames/s against 50-55k, the collector 45-74k against 28-36k. The
    reader runs a read's messages (at most :data:`RECEIVE_BUFFER_SIZE` bytes' worth) before
    anything else runs, a millisecond or two in a burst. The channel is trio-websocket's
    private ``_send_channel`` (0.12: the one its reader task queues to); replaced after the
    connection opened, so the reader's ``async with`` closes the channel itself when the
    connection ends.
    """
    channel = getattr(ws, "_send_channel", None)
    if isinstance(channel, _EagerSend):
        return True
    if not isinstance(channel, trio.MemorySendChannel):
        return False
    ws._send_channel = _EagerSend(channel)  # type: ignore[assignment]
    return True


__all__ = ["MESSAGE_QUEUE", "RECEIVE_BUFFER_SIZE", "eager_sends", "message_queue", "trio_websocket"]
