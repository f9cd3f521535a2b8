"""The minimal HTTP/1.1 the replay server needs: request heads, bodies, responses.

Enough for REST clients (httpx, keep-alive, Content-Length bodies) and for telling a
websocket upgrade apart; not a general server. A head larger than ``MAX_HEAD_BYTES`` ends
the connection; a malformed one is a ``BadRequest``.
"""

from __future__ import annotations

import http
from collections.abc import Sequence
from dataclasses import dataclass

import trio

MAX_HEAD_BYTES = 65536
RECEIVE_CHUNK_BYTES = 65536


class BadRequest(Exception):
    """A request line, header line or Content-Length that is not HTTP/1.1."""


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]  # names lowercased

    @property
    def is_websocket(self) -> bool:
        return "websocket" in self.headers.get("upgrade", "").lower()

    @property
    def keep_alive(self) -> bool:
        """Whether the connection may serve another request after this one (a chunked body
        is never read, so it ends the connection)."""
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            return False
        return self.version == "HTTP/1.1" and (
            self.headers.get("connection", "").lower() != "close"
        )


class PrefixedStream(trio.abc.Stream):
    """A stream whose first reads return bytes already taken off the socket (the head of a
    websocket upgrade, read to route it, is handed to the websocket library this way)."""

    def __init__(self, inner: trio.abc.Stream, prefix: bytes) -> None:
        self.inner = inner
        self._prefix = prefix

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            n = len(self._prefix) if max_bytes is None else max_bytes
            out, self._prefix = self._prefix[:n], self._prefix[n:]
            await trio.lowlevel.checkpoint()
            return out
        return bytes(await self.inner.receive_some(max_bytes))

    async def aclose(self) -> None:
        await self.inner.aclose()


async def read_head(stream: trio.abc.ReceiveStream, buf: bytearray) -> bytes | None:
    """The next request head (through the empty line) from ``buf`` + ``stream``; the bytes
    after it stay in ``buf``. None when the client closed first."""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = bytes(buf[: end + 4])
            del buf[: end + 4]
            return head
        if len(buf) > MAX_HEAD_BYTES:
            raise trio.BrokenResourceError("request head too large")
        chunk = await stream.receive_some(RECEIVE_CHUNK_BYTES)
        if not chunk:
            return None
        buf += chunk


def parse_head(head: bytes) -> Request:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise BadRequest(f"bad request line {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, sep, value = line.partition(":")
            if not sep:
                raise BadRequest(f"bad header line {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
    return Request(parts[0], parts[1], parts[2], headers)


async def skip_body(stream: trio.abc.ReceiveStream, buf: bytearray, request: Request) -> bool:
    """Read and drop the request's Content-Length body; False when the client closed first.

    Raises:
        BadRequest: a Content-Length that is not a number.
    """
    length_text = request.headers.get("content-length", "0") or "0"
    if not length_text.isdigit():
        raise BadRequest("bad Content-Length")
    length = int(length_text)
    while len(buf) < length:
        chunk = await stream.receive_some(RECEIVE_CHUNK_BYTES)
        if not chunk:
            return False
        buf += chunk
    del buf[:length]
    return True


async def send_response(
    stream: trio.abc.SendStream,
    status: int,
    body: bytes,
    *,
    keep_alive: bool,
    headers: Sequence[tuple[str, str]] = (),
) -> None:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    lines = [
        f"HTTP/1.1 {status} {phrase}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        f"Connection: {'keep-alive' if keep_alive else 'close'}",
        *(f"{k}: {v}" for k, v in headers),
    ]
    await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
