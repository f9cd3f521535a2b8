"""Fault switches, the server's counters, and the handshake faults.

``Faults`` is mutable at runtime (also from another thread via ``ReplayThread``). HTTP and
handshake faults are counters consumed here, per request; websocket faults are copied onto
a connection when it is accepted (``take_connection_faults``) and fired by its session
(``ops.replay.session``). ``send_bad_handshake`` answers an upgrade request with a broken
handshake.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field

import trio

from ops.replay.http import RECEIVE_CHUNK_BYTES

HANDSHAKE_FAULTS = ("hang", "bad_accept", "no_upgrade", "garbage", "close")


@dataclass
class Faults:
    """Fault switches; mutate at runtime (also from another thread via ``ReplayThread``).

    "After N frames" counts the data frames actually sent on a connection. Websocket faults are
    copied when a connection is accepted and fire once on it; they apply to the next
    ``ws_fault_connections`` connections (None = every connection), so a reconnecting client
    then gets clean data. HTTP and handshake faults are counters consumed per request.

    Flapping (a server that closes every connection right after the subscription ack):
    ``drop_after=0`` with ``ws_fault_connections=None``.

    Handshake faults (``bad_handshakes`` = K, the kind in ``bad_handshake``), after reading the
    client's upgrade request: ``hang`` never answers, ``bad_accept`` answers 101 with a wrong
    ``Sec-WebSocket-Accept``, ``no_upgrade`` answers 101 without ``Upgrade``/``Connection``,
    ``garbage`` answers random bytes, ``close`` sends half of a valid 101 reply and closes.
    Except ``close``, the server then reads until the client hangs up.

    ``inject`` = ((N, frame), ...) sends each frame once, after N data frames, in list order
    (a str as a text message, bytes as a binary message): forged values, foreign symbols,
    stray ids, error frames, nested JSON, non-UTF-8 bytes, at exact positions.
    """

    ws_fault_connections: int | None = 1
    drop_after: int | None = None  # close the TCP stream abruptly (client sees 1006)
    stall_after: int | None = None  # stop sending data frames for stall_s seconds
    stall_s: float = 30.0
    skip_frames: tuple[int, ...] = ()  # 0-based indexes of a connection's data frames to skip
    garbage_after: int | None = None  # send a non-JSON frame
    garbage_text: str = "<html><body>502 Bad Gateway</body></html>"
    oversized_after: int | None = None  # send one valid JSON frame of oversized_bytes
    oversized_bytes: int = 2 * 1024 * 1024
    reconnect_request_after: int | None = None  # the venue's reconnect request, if it has one
    http_errors: int = 0  # answer the next K HTTP requests with http_error_status
    http_error_status: int = 429
    http_retry_after_s: int = 1
    reject_handshakes: int = 0  # refuse the next K websocket handshakes
    reject_status: int = 503
    reject_retry_after_s: int | None = None
    bad_handshakes: int = 0  # answer the next K websocket handshakes with bad_handshake
    bad_handshake: str = "hang"  # one of HANDSHAKE_FAULTS
    nested_after: int | None = None  # send a JSON array nested nested_depth levels deep
    nested_depth: int = 100_000
    inject: tuple[tuple[int, str | bytes], ...] = ()  # (after N data frames, frame)

    def __post_init__(self) -> None:
        if self.bad_handshake not in HANDSHAKE_FAULTS:
            raise ValueError(f"bad_handshake must be one of {HANDSHAKE_FAULTS}")
        if self.nested_depth < 1:
            raise ValueError(f"nested_depth must be >= 1, got {self.nested_depth}")

    def ws_faults_set(self) -> bool:
        """True when any per-connection websocket fault is switched on."""
        return (
            bool(self.skip_frames)
            or bool(self.inject)
            or any(
                v is not None
                for v in (
                    self.drop_after,
                    self.stall_after,
                    self.garbage_after,
                    self.oversized_after,
                    self.nested_after,
                    self.reconnect_request_after,
                )
            )
        )

    def take_http_error(self) -> int | None:
        """The status to answer this HTTP request with (consuming one), or None."""
        if self.http_errors <= 0:
            return None
        self.http_errors -= 1
        return self.http_error_status

    def take_bad_handshake(self) -> str | None:
        """The handshake fault for this upgrade request (consuming one), or None."""
        if self.bad_handshakes <= 0:
            return None
        self.bad_handshakes -= 1
        return self.bad_handshake

    def take_reject(self) -> int | None:
        """The status to refuse this handshake with (consuming one), or None."""
        if self.reject_handshakes <= 0:
            return None
        self.reject_handshakes -= 1
        return self.reject_status

    def take_connection_faults(self) -> Faults | None:
        """A copy of the websocket faults for a newly accepted connection (consuming one of
        ``ws_fault_connections``), or None when it gets none."""
        if not self.ws_faults_set():
            return None
        if self.ws_fault_connections is None:
            return dataclasses.replace(self)
        if self.ws_fault_connections <= 0:
            return None
        self.ws_fault_connections -= 1
        return dataclasses.replace(self)


@dataclass
class ReplayStats:
    """Counters for tests; read them after the fact (plain attributes, no locking)."""

    connections: int = 0  # websocket connections accepted
    rejected_handshakes: int = 0
    http_requests: Counter[str] = field(default_factory=Counter)  # by path (no query)
    frames_sent: int = 0  # recorded data frames sent, all connections
    faults_fired: Counter[str] = field(default_factory=Counter)


_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3


def _accept_token(key: str) -> bytes:
    """The ``Sec-WebSocket-Accept`` value that answers ``Sec-WebSocket-Key: key``."""
    return base64.b64encode(hashlib.sha1(key.strip().encode("latin-1") + _WS_GUID).digest())


async def send_bad_handshake(stream: trio.abc.Stream, key: str, kind: str) -> None:
    """Answer an upgrade request (``Sec-WebSocket-Key: key``) with a handshake fault (see
    ``Faults``)."""
    valid = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + _accept_token(key) + b"\r\n\r\n"
    )
    if kind == "bad_accept":
        wrong = _accept_token(key + "-not-the-key")
        await stream.send_all(valid.replace(_accept_token(key), wrong))
    elif kind == "no_upgrade":
        await stream.send_all(
            b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: "
            + _accept_token(key)
            + b"\r\n\r\n"
        )
    elif kind == "garbage":
        # random bytes, then an empty line so the client's parser has a whole "head" to refuse
        await stream.send_all(os.urandom(256) + b"\r\n\r\n")
    elif kind == "close":
        await stream.send_all(valid[: len(valid) // 2])
        return  # the caller closes the stream
    elif kind != "hang":
        raise ValueError(f"unknown handshake fault {kind!r}")
    # Read (and drop) whatever the client sends until it gives up and closes.
    while await stream.receive_some(RECEIVE_CHUNK_BYTES):
        pass
