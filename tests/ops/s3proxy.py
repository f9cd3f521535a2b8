"""A small HTTP proxy in front of a local S3 server, for the sync tests.

It records every request (method, target), can answer the first N requests with
``503 SlowDown`` (as S3 does under throttling), can refuse every request for chosen keys with
``403 AccessDenied`` (as a bucket policy scoped to a key does) and can delay each request.
One request per client connection: ``Connection: close`` is forced upstream, and the response
is piped back until the server closes.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field

_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Access Denied</Message><RequestId>proxy</RequestId></Error>"
)
_SLOWDOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message><RequestId>proxy</RequestId></Error>"
)


@dataclass
class S3Proxy:
    upstream_port: int
    fail_first: int = 0
    delay_s: float = 0.0
    deny: set[str] = field(default_factory=set)  # request paths ("/bucket/key") refused
    requests: list[tuple[str, str, int]] = field(default_factory=list)  # method, target, status
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _sock: socket.socket | None = None
    _stopped: bool = False

    @property
    def url(self) -> str:
        assert self._sock is not None
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def start(self) -> S3Proxy:
        self._sock = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopped = True
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> S3Proxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def count(self, method: str, prefix: str = "") -> int:
        with self._lock:
            return sum(1 for m, t, _ in self.requests if m == method and t.startswith(prefix))

    def _accept(self) -> None:
        assert self._sock is not None
        while not self._stopped:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                self._one(conn)
            except OSError:
                pass

    def _one(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            line = reader.readline(65536)
            if not line:
                return
            head += line
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers: list[tuple[str, str]] = []
        for h in lines[1:]:
            if h:
                k, _, v = h.partition(":")
                headers.append((k.strip(), v.strip()))
        lower = {k.lower(): v for k, v in headers}
        with self._lock:
            denied = target.split("?", 1)[0] in self.deny
            fail = not denied and self.fail_first > 0
            if fail:
                self.fail_first -= 1
        if denied:
            n = int(lower.get("content-length", "0"))
            if n and lower.get("expect", "").lower() != "100-continue":
                reader.read(n)  # S3 reads the body before it answers 403
            body = b"" if method == "HEAD" else _DENIED
            conn.sendall(
                b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\n"
                + f"Content-Length: {len(_DENIED) if body else 0}\r\n".encode()
                + b"Connection: close\r\n\r\n"
                + body
            )
            with self._lock:
                self.requests.append((method, target, 403))
            return
        if fail:
            body = b"" if method == "HEAD" else _SLOWDOWN
            conn.sendall(
                b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
                + f"Content-Length: {len(_SLOWDOWN) if body else 0}\r\n".encode()
                + b"Connection: close\r\n\r\n"
                + body
            )
            with self._lock:
                self.requests.append((method, target, 503))
            return
        if lower.get("expect", "").lower() == "100-continue":
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        n = int(lower.get("content-length", "0"))
        body = reader.read(n) if n else b""
        if self.delay_s:
            time.sleep(self.delay_s)
        out = [lines[0]] + [
            f"{k}: {v}" for k, v in headers if k.lower() not in ("expect", "connection")
        ]
        out.append("Connection: close")
        up = socket.create_connection(("127.0.0.1", self.upstream_port))
        with up:
            up.sendall(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body)
            first = True
            while chunk := up.recv(65536):
                if first:
                    # recorded before the client sees the answer, so tests never race it
                    with self._lock:
                        self.requests.append((method, target, int(chunk.split(b" ", 2)[1])))
                    first = False
                conn.sendall(chunk)
