"""A websocket server much faster than any client we measure, and a null client to prove it.

The end-to-end benchmarks compare the collector with a bare trio-websocket receive loop on
the same server; the ratio means something only if the server is not the bottleneck for
either. This server speaks just enough of RFC 6455 and of Binance's combined-stream protocol
(one ``SUBSCRIBE`` answered with ``{"result":null,"id":N}``) and sends frames that were
encoded once, up front:

- ``blast``: ``count`` frames as fast as the kernel takes them (large ``sendall`` batches);
- ``paced``: ``rate`` frames per second for ``seconds``, each frame its own ``send`` (what
  a quiet real stream looks like to the client: a wake-up per frame).

It runs in its own process (``serve()`` in a ``multiprocessing`` child), so it never shares
the interpreter with what is measured. :func:`null_client` reads the same stream with a raw
socket and only counts bytes: its rate is the server's own ceiling.
"""

from __future__ import annotations

import base64
import hashlib
import multiprocessing as mp
import os
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class EventLike(Protocol):
    def set(self) -> None: ...


def encode_frame(text: str) -> bytes:
    """One unmasked server → client text frame."""
    payload = text.encode()
    n = len(payload)
    if n < 126:
        head = bytes((0x81, n))
    elif n < 65536:
        head = struct.pack("!BBH", 0x81, 126, n)
    else:
        head = struct.pack("!BBQ", 0x81, 127, n)
    return head + payload


def _read_head(conn: socket.socket) -> bytes:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(4096)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        buf += chunk
    return buf


def handshake_reply(head: bytes) -> bytes:
    """The server's 101 reply to a client's opening handshake ``head``."""
    key = b""
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"sec-websocket-key:"):
            key = line.split(b":", 1)[1].strip()
    accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )


def _handshake(conn: socket.socket) -> None:
    conn.sendall(handshake_reply(_read_head(conn)))


def _read_client_frame(conn: socket.socket) -> bytes:
    """One masked client frame's payload (the SUBSCRIBE)."""

    def exactly(n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = conn.recv(n - len(out))
            if not chunk:
                raise ConnectionError("closed")
            out += chunk
        return out

    b1, b2 = exactly(2)
    n = b2 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", exactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", exactly(8))
    mask = exactly(4) if b2 & 0x80 else b"\0\0\0\0"
    data = exactly(n)
    return bytes(c ^ mask[i % 4] for i, c in enumerate(data))


@dataclass(frozen=True)
class Plan:
    mode: str  # blast | paced
    count: int = 0  # blast: frames to send
    rate: float = 0.0  # paced: frames per second
    seconds: float = 0.0  # paced: how long
    hold_s: float = 30.0  # keep the connection open this long after the last frame
    lead_s: float = 0.0  # wait this long after the subscription before the first frame


def _serve_one(
    conn: socket.socket, frames: Sequence[bytes], plan: Plan, subscribed: EventLike
) -> None:
    _handshake(conn)
    try:
        conn.settimeout(2.0)
        sub = _read_client_frame(conn)
        rid = b"1"
        if b'"id":' in sub:
            rid = sub.split(b'"id":', 1)[1].split(b"}", 1)[0].strip() or b"1"
        conn.sendall(encode_frame('{"result":null,"id":' + rid.decode() + "}"))
    except (TimeoutError, ConnectionError):
        pass  # the null client sends no subscribe
    conn.settimeout(None)
    subscribed.set()
    time.sleep(plan.lead_s)
    n = len(frames)
    if plan.mode == "blast":
        # whole cycles of the frames, joined once: sending is then only the kernel's copy
        cycle = memoryview(b"".join(frames))
        full, rest = divmod(plan.count, n)
        step = 1 << 18
        for _ in range(full):
            for i in range(0, len(cycle), step):
                conn.sendall(cycle[i : i + step])
        if rest:
            conn.sendall(b"".join(frames[:rest]))
    else:
        period = 1.0 / plan.rate
        total = int(plan.rate * plan.seconds)
        start = time.monotonic()
        for i in range(total):
            delay = start + i * period - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            conn.sendall(frames[i % n])
    time.sleep(plan.hold_s)


def _serve(
    port_q: mp.Queue[int], texts: list[str], plan: Plan, connections: int, subscribed: EventLike
) -> None:
    frames = [encode_frame(t) for t in texts]
    with socket.create_server(("127.0.0.1", 0)) as srv:
        port_q.put(srv.getsockname()[1])
        for _ in range(connections):
            conn, _ = srv.accept()
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
            with conn:
                try:
                    _serve_one(conn, frames, plan, subscribed)
                except (BrokenPipeError, ConnectionResetError):
                    pass


class Server:
    """``with Server(texts, Plan("blast", count=200_000)) as port: ...`` (a child process)."""

    def __init__(self, texts: list[str], plan: Plan, connections: int = 1) -> None:
        self.texts = texts
        self.plan = plan
        self.connections = connections
        self.proc: mp.Process | None = None
        self._ctx = mp.get_context("fork")
        # set once the client's subscription is answered: sending starts right after
        self.subscribed = self._ctx.Event()

    def __enter__(self) -> int:
        q: mp.Queue[int] = self._ctx.Queue()
        self.proc = self._ctx.Process(
            target=_serve,
            args=(q, self.texts, self.plan, self.connections, self.subscribed),
            daemon=True,
        )
        self.proc.start()
        return int(q.get(timeout=30))

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)


SUBSCRIBE = '{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}'
ACK = '{"result":null,"id":1}'


def client_frame(text: str) -> bytes:
    """One masked client → server text frame (payload < 126 bytes)."""
    payload = text.encode()
    mask = os.urandom(4)
    return (
        bytes((0x81, 0x80 | len(payload)))
        + mask
        + bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
    )


def null_client(port: int, total_bytes: int) -> float:
    """Seconds to receive ``total_bytes`` of frames with a raw socket (no parsing at all)."""
    key = base64.b64encode(os.urandom(16))
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        s.sendall(
            b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "
            + key
            + b"\r\n\r\n"
        )
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(4096)
        s.sendall(client_frame(SUBSCRIBE))
        got = len(buf.split(b"\r\n\r\n", 1)[1]) - len(encode_frame(ACK))
        t0 = time.perf_counter()
        view = bytearray(1 << 20)
        while got < total_bytes:
            n = s.recv_into(view)
            if not n:
                break
            got += n
        return time.perf_counter() - t0


def frames_bytes(texts: Sequence[str], count: int) -> int:
    """Bytes on the wire of ``count`` frames cycling through ``texts``."""
    sizes = [len(encode_frame(t)) for t in texts]
    full, rest = divmod(count, len(sizes))
    return full * sum(sizes) + sum(sizes[:rest])
