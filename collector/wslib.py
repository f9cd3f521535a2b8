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
(``tests/collector/test_wslib.py``), takes a burst's queued messages through
:func:`message_queue`, and reads the socket in :data:`RECEIVE_BUFFER_SIZE`.
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


# How long a burst's reader lets trio-websocket's reader task run before it takes what that
# task has queued (Session._gather): about the time the task needs to queue ~40 trade frames,
# so its queue (64 messages) rarely fills and stalls it meanwhile.
QUEUE_NAP_S = 0.0003


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

    ``get_message`` costs a scheduler round per message (the channel's receive checkpoints):
    with its own reader task running in the same round, each frame costs the collector a task
    switch and a loop iteration of trio. In a burst the collector instead lets the reader
    task run for :data:`QUEUE_NAP_S`, then takes every message it queued in one go: measured
    here, the burst of ``make bench`` is received about 15-20 % faster. The channel is
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


__all__ = ["QUEUE_NAP_S", "RECEIVE_BUFFER_SIZE", "message_queue", "trio_websocket"]
