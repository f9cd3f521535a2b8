"""Stop requests that arrive before the event loop listens for them (standard library only).

A collector takes a few hundred milliseconds to import trio and build its settings, and then
recovers leftover files; until trio's signal receiver is installed, SIGTERM's default action
would kill the process in the middle of that, leaving ``.part`` files and no
``collector.stopped`` line. ``install()`` runs first thing in ``__main__``: it only records
the signal, and the app stops cleanly as soon as it can (before connecting, if it is that
early).
"""

from __future__ import annotations

import signal
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_received: list[int] = []


def _record(signum: int, _frame: FrameType | None) -> None:
    _received.append(signum)


def install() -> None:
    """Record SIGTERM/SIGINT instead of dying (until the event loop takes over)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _record)


def requested() -> int | None:
    """The first stop signal received so far, or None."""
    return _received[0] if _received else None
