"""What the processor and its handlers do to the world outside them: one object, no callbacks.

    processor / handlers ──▶ Effects ──▶ raw sink      every frame's line, then markers
                                     ──▶ rows sink     parsed CSV lines
                                     ──▶ snapshots     REST snapshot requests (+ fetch pacing)
                                     ──▶ connection    reconnect requests (the session)

Live (``collector/app.py``): the sinks are the stream's hourly writers, ``snapshots`` is a
:class:`SnapshotRequests` that the app's snapshot task reads, and the session is bound with
:meth:`Effects.bind` once it exists (the session needs the processor's ``handle``, the
processor needs this object: the one edge of that loop is closed here, explicitly).

From a file (a rebuild from raw, and tests): no snapshots, no session. A request is only
counted (the live run's answer, an ``http`` or ``disconnect`` frame, is in the raw file and
comes back as input), so the processor runs without sockets, sleeps or trio.
"""

from __future__ import annotations

from typing import Protocol

import orjson
import trio

from collector.common.retry import Backoff


class Sink(Protocol):
    """Where lines go: ``add(line, ts_s)`` (an hourly writer groups them by ``ts_s``)."""

    def add(self, line: str, ts_s: float) -> None: ...


class Connection(Protocol):
    """The live connection a reconnect request goes to (``collector.session.Session``)."""

    def request_reconnect(self, reason: str) -> None: ...


class Lines:
    """A sink that keeps every line in order (driving the processor from a file)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, line: str, ts_s: float) -> None:
        self.lines.append(line)


class SnapshotRequests:
    """At most one pending REST snapshot request, and the pacing of the fetches.

    A fetch that comes while the book has not synced since the previous fetch (a stale
    snapshot, a gap right after a sync) waits for the backoff first
    (:meth:`wait_turn`), so a snapshot that keeps lagging the stream never turns into a
    tight loop of heavy REST calls.
    """

    def __init__(self) -> None:
        self._send, self.receive = trio.open_memory_channel[None](1)
        self._synced_since_fetch = True

    def request(self) -> None:
        try:
            self._send.send_nowait(None)
        except trio.WouldBlock:
            pass  # one is already pending

    def synced(self) -> None:
        """The book (re)synced: the next fetch needs no pause."""
        self._synced_since_fetch = True

    async def wait_turn(self, pacing: Backoff) -> None:
        """Before a fetch: wait ``pacing``'s next delay unless the book synced since the last."""
        if self._synced_since_fetch:
            pacing.reset()
        else:
            await trio.sleep(pacing.next_delay())
        self._synced_since_fetch = False


class Effects:
    """The outputs of one stream's processing.

    Args:
        raw: the raw sink (frames first, then the collector's markers).
        rows: the parsed sink.
        snapshots: REST snapshot requests, where the stream takes its snapshots from REST
            and runs live; None counts requests in ``snapshot_requests`` only.
    """

    def __init__(self, raw: Sink, rows: Sink, snapshots: SnapshotRequests | None = None) -> None:
        self.raw = raw
        self.rows = rows
        self.snapshots = snapshots
        self.conn = ""  # the connection markers belong to (set on each connect frame)
        self._connection: Connection | None = None
        # Requests made (informational; the only trace of them when driven from a file).
        self.snapshot_requests = 0
        self.reconnect_requests = 0

    def bind(self, connection: Connection) -> None:
        """Send reconnect requests to ``connection`` from now on (live only)."""
        self._connection = connection

    def marker(self, t: str, ts: float, **fields: object) -> None:
        """A collector marker in the raw file (gap, resync, resume, trade_stray, ...)."""
        d: dict[str, object] = {"t": t, "conn": self.conn, "ts": ts, **fields}
        self.raw.add(orjson.dumps(d).decode() + "\n", ts)

    def request_snapshot(self) -> None:
        """Ask for a REST snapshot (no-op while one is pending)."""
        self.snapshot_requests += 1
        if self.snapshots is not None:
            self.snapshots.request()

    def synced(self) -> None:
        """The book (re)synced: rows came out (the snapshot pacing restarts)."""
        if self.snapshots is not None:
            self.snapshots.synced()

    def request_reconnect(self, reason: str) -> None:
        """Close the current connection; the session connects again at once."""
        self.reconnect_requests += 1
        if self._connection is not None:
            self._connection.request_reconnect(reason)
