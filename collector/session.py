"""Generic websocket loop: connect, subscribe, read, watchdog, reconnect with backoff.

Knows nothing about any exchange: URLs and subscribe frames come from the adapter through
the caller. Every connection event and every frame is handed, in order, to ``deliver`` as a
:class:`Frame` (the processor's ``handle``, which writes it raw before anything parses it).

Every way a connection can fail ends as a ``disconnect`` frame with a ``reason`` and a
backoff pause, never as an exception out of :meth:`Session.run`:

======================================= ===================================================
what happened                           ``reason``
======================================= ===================================================
name does not resolve                   ``DNS lookup failed: <host> (<resolver message>)``
nothing listens on the port             ``connection refused: <host>:<port>``
other socket error while connecting     ``network error: <message>``
no complete handshake reply in time     ``handshake timeout: no websocket handshake reply
(silent peer, reply cut off)            within <s> s``
101 reply that is not a valid upgrade,  ``bad handshake reply: <wsproto's message>``
or bytes that are not HTTP
a non-101 HTTP answer                   ``handshake rejected: HTTP <status>``
the websocket closes                    ``closed by peer: <close reason>``
no frame within ``watchdog_s``          ``watchdog: silent for <s> s``
======================================= ===================================================

The backoff resets only after the first frame of a connection that carried market data
(``deliver`` returned True), so a server that acknowledges the subscription and then closes
is retried with growing delays.
"""

from __future__ import annotations

import math
import random
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import h11
import trio
import wsproto.events
import wsproto.utilities

from collector.common import tls
from collector.common.config import redact_url
from collector.common.errors import FeedError
from collector.common.retry import Backoff, BackoffSettings, retry_after_s
from collector.common.structloglib import structlog
from collector.wslib import (
    MESSAGE_QUEUE,
    RECEIVE_BUFFER_SIZE,
    eager_sends,
    message_queue,
    trio_websocket,
)

log = structlog.get_logger()

# How often the watchdog's deadline is moved while frames arrive (see Session._read).
WATCHDOG_STEP_S = 1.0
# A burst (a frame less than BURST_GAP_S after the one before) is gathered into batches of at
# most SessionSettings.batch_frames (default BATCH_FRAMES) frames and batch_bytes bytes, held
# at most BATCH_WAIT_S, and delivered in one go (see _gather). trio-websocket's own queue holds
# wslib.MESSAGE_QUEUE frames.
BURST_GAP_S = 0.001
BATCH_FRAMES = 256
BATCH_WAIT_S = 0.01


@dataclass(slots=True)
class Frame:
    """One event of a connection, in the raw envelope's terms (``t`` = kind)."""

    t: str  # connect | send | recv | disconnect | http
    conn: str
    ts: float  # local wall-clock time, epoch seconds
    # recv/send/http: the exact wire string or body; bytes for a binary websocket frame (kept
    # exactly: the raw envelope stores it base64-encoded with "encoding": "base64")
    data: str | bytes = ""
    addr: str = ""  # connect/send: the websocket URL; http: the request URL
    reason: str = ""  # disconnect: why
    status: int = 0  # http: the response status


@dataclass
class SessionSettings:
    url: str
    subscribe: Callable[[float], list[str]]  # now_s → frames to send after connecting
    watchdog_s: float
    max_connection_age_s: float  # 0 = never reconnect proactively
    max_message_size: int
    backoff: BackoffSettings
    # TCP connect + websocket handshake must be done within this many seconds
    connect_timeout_s: float = 10.0
    # handshake statuses that end the collector (FeedError) instead of a reconnect, with the
    # message to stop with (the adapter's FATAL_HANDSHAKE_STATUS, worded by the wiring)
    fatal_handshake: Mapping[int, str] = field(default_factory=dict)
    # a batch (a burst's, or quiet frames waiting: see Session) holds at most this many
    # frames, and at most this many bytes of frames (each may be max_message_size)
    batch_frames: int = BATCH_FRAMES
    batch_bytes: int = 1 << 20


class Session:
    """Keeps one websocket open and hands every event to ``deliver``, in order.

    ``deliver(frame)`` returns True when the frame carried market data (a subscription ack,
    a heartbeat or an error frame is not data): only data resets the reconnect backoff.

    ``deliver`` runs synchronously in the reader task: trio-websocket's own bounded message
    queue is the buffer between the socket and processing, so backpressure still reaches the
    socket, and no channel hop (a task switch per frame, about a quarter of the cost of
    receiving a frame) sits on the hot path.

    ``deliver_recv(conn, ts, data)``, when given, takes the received frames instead (the
    processor's ``recv``: the same as ``deliver`` of a ``recv`` Frame, without building one).

    In a burst, received frames are gathered (at most ``batch_frames`` frames and
    ``batch_bytes`` bytes, for at most :data:`BATCH_WAIT_S`) and delivered in one go: each
    keeps its own receive time, the order is the arrival order, and a frame from elsewhere
    (a REST body) enters through :meth:`deliver_in_order`, after the frames gathered before
    it. Frames handled back to back find the interpreter's
    caches warm: measured here, processing a frame between two receives cost 3-4x what it
    costs in a run, and gathering received a 200k-frame burst 12-25 % faster (the burst
    figure of ``make bench``). trio-websocket's reader task queues a socket read's messages
    without a scheduler round each (:func:`collector.wslib.eager_sends`), and while
    gathering the session takes what it queued in one go
    (:func:`collector.wslib.message_queue`): measured with that burst, 1.3-2.2x the
    frames/s of a nap-and-drain with a round per message. A frame's receive time is when the
    session took it: in a burst, up to a read's worth of frames later than it reached
    trio-websocket.

    A quiet stream's frames are delivered one by one, unless the session is told it may
    gather them too: frames received before :attr:`deliver_by` (wall clock) wait in the same
    batch, up to ``batch_frames`` frames and ``batch_bytes`` bytes, and go in one go with
    the first frame received at or after it, or when :meth:`deliver_pending` is called, or
    when the connection ends (before its ``disconnect``). The upkeep sets it to the next
    flush round's due time for streams whose handler allows it (trades: ``batch_quiet``),
    so the round still runs in the wake-up of the frame that makes it due, and it delivers
    what waits before every round of its own: a flush still holds every frame received
    before it. Measured at a paced 200 frames/s, each frame handled in its own wake-up cost
    ~35 µs of CPU against ~5 µs in a batch (cold caches).

    ``request_reconnect`` (from the processor's effects, e.g. on a server shutdown notice or
    a book that must be resynced with a fresh stream) closes the current connection; the
    loop then connects again at once. Every frame the connection had read by then, queued
    in trio-websocket or gathered, is delivered before its ``disconnect``.
    """

    def __init__(
        self,
        settings: SessionSettings,
        deliver: Callable[[Frame], bool | None],
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        deliver_recv: Callable[[str, float, str | bytes], bool | None] | None = None,
    ) -> None:
        self.settings = settings
        self.deliver = deliver
        self.deliver_recv = deliver_recv or (
            lambda conn, ts, data: deliver(Frame("recv", conn, ts, data=data))
        )
        self.clock = clock
        self.backoff = Backoff(settings.backoff, rng)
        self.connections = 0
        self._conn_scope: trio.CancelScope | None = None
        self._reconnect_reason = ""
        self._released: trio.Event | None = None  # set while held (see hold)
        self._hold_reason = ""
        self._pending: list[tuple[float, str | bytes]] = []  # gathered frames (receive time)
        self._pending_bytes = 0  # of the quiet frames waiting in _pending
        # Frames received before this wall-clock time may wait in _pending (see the class
        # docstring); -inf: each quiet frame is delivered at once.
        self.deliver_by = -math.inf
        self._got_data = False  # the current connection delivered market data

    def deliver_in_order(self, frame: Frame) -> bool | None:
        """``deliver`` a frame that did not come from the websocket (a REST body), after the
        received frames gathered so far: everything is handled in arrival order."""
        self.deliver_pending()
        return self.deliver(frame)

    @property
    def pending(self) -> int:
        """Received frames gathered and not yet delivered."""
        return len(self._pending)

    def deliver_pending(self) -> None:
        """Deliver the gathered frames, in order."""
        pending = self._pending
        if not pending:
            return
        self._pending = []
        self._pending_bytes = 0
        deliver, conn, is_data = self.deliver_recv, self._conn_id, False
        for ts, msg in pending:
            if deliver(conn, ts, msg):
                is_data = True
        if is_data and not self._got_data:
            self._note_data()

    def _note_data(self) -> None:
        """A delivered frame carried market data. An ack, heartbeat or error frame proves
        nothing about the feed: only data shows the connection works, so only data resets
        the backoff (once per connection)."""
        self.backoff.reset()
        self._got_data = True

    def request_reconnect(self, reason: str) -> None:
        if self._conn_scope is not None:
            self._reconnect_reason = reason
            self._conn_scope.cancel()

    def hold(self, reason: str) -> None:
        """Close the connection and connect again only after :meth:`release` (e.g. while the
        disk is full: reading on would only pile frames up in memory)."""
        if self._released is None:
            self._released = trio.Event()
            self._hold_reason = reason
        self.request_reconnect(f"on hold: {reason}")

    def release(self) -> None:
        released, self._released = self._released, None
        if released is not None:
            released.set()

    async def run(self) -> None:
        """Connect forever; returns only when cancelled."""
        while True:
            if self._released is not None:
                log.warning("ws.on_hold", reason=self._hold_reason)
                await self._released.wait()
            reason, pause = await self._connect_once()
            self.deliver(Frame("disconnect", self._conn_id, self.clock(), reason=reason))
            log.warning(
                "ws.disconnected",
                reason=reason,
                retry_in_s=round(pause, 3),
                attempt=self.backoff.attempt,
            )
            await trio.sleep(pause)

    @property
    def _conn_id(self) -> str:
        return f"c{self.connections}"

    async def _connect_once(self) -> tuple[str, float]:
        """One connection's life. Returns (why it ended, how long to wait before the next)."""
        s = self.settings
        self.connections += 1
        self._reconnect_reason = ""
        structlog.contextvars.bind_contextvars(conn_id=self._conn_id)
        opened = False
        with trio.CancelScope() as conn_scope:
            self._conn_scope = conn_scope
            if s.max_connection_age_s > 0:
                conn_scope.deadline = trio.current_time() + s.max_connection_age_s
            # trio-websocket's connect_timeout bounds the TCP connect and the wait for the
            # handshake reply, but its reader task keeps open_websocket_url's nursery open while
            # a peer that accepted TCP stays silent, so the timeout never surfaces: this scope
            # bounds the whole opening, and is lifted once the websocket is open.
            opening = trio.CancelScope(deadline=trio.current_time() + s.connect_timeout_s)
            try:
                with opening:
                    async with trio_websocket.open_websocket_url(
                        s.url,
                        ssl_context=tls.for_websocket(s.url),
                        max_message_size=s.max_message_size,
                        message_queue_size=MESSAGE_QUEUE,
                        receive_buffer_size=RECEIVE_BUFFER_SIZE,
                        connect_timeout=s.connect_timeout_s,
                        disconnect_timeout=2,
                    ) as ws:
                        opening.deadline = math.inf
                        opened = True
                        eager_sends(ws)
                        log.info("ws.connected", url=redact_url(s.url), conn_id=self._conn_id)
                        self.deliver(Frame("connect", self._conn_id, self.clock(), addr=s.url))
                        for msg in s.subscribe(self.clock()):
                            await ws.send_message(msg)
                            self.deliver(
                                Frame("send", self._conn_id, self.clock(), data=msg, addr=s.url)
                            )
                        return await self._read(ws)
                # Only reached when ``opening`` expired (the body always returns or raises).
                return self._handshake_timeout(), self.backoff.next_delay()
            except trio_websocket.ConnectionRejected as exc:
                status = exc.status_code
                if status in s.fatal_handshake:
                    log.error("ws.refused", status=status, url=redact_url(s.url))
                    raise FeedError(s.fatal_handshake[status]) from None
                wait = retry_after_s(exc.headers)
                if status == 418:
                    log.error("ws.banned", status=status, retry_after_s=wait, alert=True)
                return f"handshake rejected: HTTP {status}", self.backoff.next_delay(wait)
            except trio_websocket.ConnectionTimeout:
                return self._handshake_timeout(), self.backoff.next_delay()
            except trio_websocket.HandshakeError as exc:
                return self._open_failure(exc), self.backoff.next_delay()
            except h11.LocalProtocolError as exc:
                bad = None if opened else _bad_handshake_reply(exc)
                if bad is None:
                    raise
                return f"bad handshake reply: {bad}", self.backoff.next_delay()
            except trio_websocket.ConnectionClosed as exc:
                return f"closed by peer: {exc.reason}", self.backoff.next_delay()
            except OSError as exc:
                return f"network error: {exc.strerror or exc!r}", self.backoff.next_delay()
            except trio.TooSlowError:
                return f"watchdog: silent for {s.watchdog_s} s", self.backoff.next_delay()
            finally:
                self._conn_scope = None
        # The scope was cancelled: a requested reconnect, or the connection's age limit.
        if self._reconnect_reason:
            return f"reconnect requested: {self._reconnect_reason}", 0.0
        return f"max connection age {s.max_connection_age_s} s reached", 0.0

    def _handshake_timeout(self) -> str:
        limit = self.settings.connect_timeout_s
        return f"handshake timeout: no websocket handshake reply within {limit} s"

    def _open_failure(self, exc: trio_websocket.HandshakeError) -> str:
        """The reason for a failed open: trio-websocket raises ``HandshakeError from`` the
        socket error of the TCP connect (``socket.gaierror`` for DNS; trio's ``OSError`` whose
        cause groups one error per address it tried)."""
        cause = exc.__cause__
        parts = urlsplit(self.settings.url)
        host = parts.hostname or ""
        if isinstance(cause, socket.gaierror):
            return f"DNS lookup failed: {host} ({cause.strerror or cause})"
        if isinstance(cause, OSError):
            attempts = cause.__cause__
            leaves = (
                list(attempts.exceptions) if isinstance(attempts, BaseExceptionGroup) else [cause]
            )
            if all(isinstance(e, ConnectionRefusedError) for e in leaves):
                port = parts.port or (443 if parts.scheme == "wss" else 80)
                return f"connection refused: {host}:{port}"
            return f"network error: {cause.strerror or cause}"
        return f"handshake failed: {exc!r}"

    async def _read(self, ws: trio_websocket.WebSocketConnection) -> tuple[str, float]:
        s = self.settings
        self._got_data = False
        # The watchdog's deadline moves at most every WATCHDOG_STEP_S (moving a deadline
        # re-files it in trio's timer heap: per frame, a cost for nothing), and lies that much
        # further out, so it never fires before ``watchdog_s`` of silence.
        slack = min(WATCHDOG_STEP_S, s.watchdog_s)
        deliver, clock, conn = self.deliver_recv, self.clock, self._conn_id
        most, most_frames = s.batch_bytes, s.batch_frames
        try:
            with trio.fail_after(s.watchdog_s + slack) as watchdog:
                moved = last = trio.current_time()
                while True:
                    msg = await ws.get_message()
                    now = trio.current_time()
                    if now - moved >= slack:
                        watchdog.deadline = now + s.watchdog_s + slack
                        moved = now
                    # a binary message stays bytes: the raw file keeps it exactly (base64)
                    if now - last >= BURST_GAP_S:
                        ts = clock()
                        if ts < self.deliver_by:  # a quiet frame that may wait for the round
                            self._pending.append((ts, msg))
                            self._pending_bytes += len(msg)
                            if len(self._pending) >= most_frames or self._pending_bytes >= most:
                                self.deliver_pending()
                        else:
                            self.deliver_pending()  # (those that waited come first)
                            if deliver(conn, ts, msg) and not self._got_data:
                                self._note_data()
                    else:
                        await self._gather(ws, clock(), msg)
                        now = trio.current_time()
                    last = now
        except trio.Cancelled:  # we close it (not a deliver that raised: nothing after that)
            self._take_queued(ws)
            raise
        finally:
            self.deliver_pending()  # every frame received, before the disconnect

    def _take_queued(self, ws: trio_websocket.WebSocketConnection) -> None:
        """Gather what trio-websocket's reader task read and queued and we have not taken.
        When the peer closes, ``get_message`` hands these out before it raises; when we
        close (a reconnect request, the connection's age, a hold, a stop: the connection's
        scope is cancelled) the library drops them with the connection, so they are taken
        here, with no wait, before the ``disconnect``. Their receive time is when they are
        taken, as in a burst. Not after a ``deliver`` that raised: what was delivered stays
        a prefix of what arrived."""
        queue = message_queue(ws)
        if queue is None:
            return
        while True:
            try:
                msg = queue.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return
            self._pending.append((self.clock(), msg))

    async def _gather(
        self, ws: trio_websocket.WebSocketConnection, ts: float, msg: str | bytes
    ) -> None:
        """Gather a burst's frames, from ``msg`` on, then deliver them (also when the
        connection closes or is cancelled meanwhile: every frame received is delivered
        before the session's ``disconnect``). Between waits for one frame, what the reader
        task queued meanwhile is taken in one go (see the class docstring)."""
        self._pending.append((ts, msg))
        size, most, most_frames = len(msg), self.settings.batch_bytes, self.settings.batch_frames
        queue = message_queue(ws)
        try:
            with trio.move_on_after(BATCH_WAIT_S):
                while len(self._pending) < most_frames and size < most:
                    if queue is not None:  # what the reader task queued: all in one go
                        while len(self._pending) < most_frames and size < most:
                            try:
                                msg = queue.receive_nowait()
                            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                                break  # (nothing queued; or closed: get_message raises)
                            self._pending.append((self.clock(), msg))
                            size += len(msg)
                        else:
                            break  # the batch is full
                    msg = await ws.get_message()
                    self._pending.append((self.clock(), msg))  # (a REST body may have
                    # delivered the list meanwhile: always the current one)
                    size += len(msg)
        finally:
            self.deliver_pending()


def _bad_handshake_reply(exc: h11.LocalProtocolError) -> str | None:
    """wsproto's complaint about a handshake reply, when ``exc`` is trio-websocket's reaction
    to it, else None.

    wsproto refuses a bad reply (wrong ``Sec-WebSocket-Accept``, no ``Upgrade``/``Connection``
    header, bytes that are not HTTP) with a ``RemoteProtocolError`` whose hint is to reject the
    connection; trio-websocket sends that hint, which a client cannot send, so h11 raises
    ``LocalProtocolError`` with the wsproto error in its context chain. Any other
    ``LocalProtocolError`` is a bug and propagates.
    """
    seen: BaseException | None = exc.__context__
    while seen is not None:
        if isinstance(seen, wsproto.utilities.RemoteProtocolError) and isinstance(
            seen.event_hint, wsproto.events.RejectConnection
        ):
            return str(seen)
        seen = seen.__context__
    return None
