"""A local HTTP server that records JSON POSTs the way Slack, Telegram and PagerDuty receive them,
answering with scripted statuses and optional delays."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Recorded:
    path: str
    body: dict[str, Any]
    at: float
    authorization: str = ""  # the Authorization header, if any (userinfo → Basic auth)


@dataclass
class SinkServer:
    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # consumed one per request; then 200
    delay_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bodies(self, path_prefix: str = "") -> list[dict[str, Any]]:
        with self.lock:
            return [r.body for r in self.requests if r.path.startswith(path_prefix)]

    def wait_for(self, n: int, timeout_s: float = 5.0) -> list[Recorded]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= n:
                    return list(self.requests)
            time.sleep(0.01)
        with self.lock:
            raise AssertionError(f"expected {n} requests, got {len(self.requests)}")


@contextmanager
def sink_server() -> Iterator[SinkServer]:
    state = SinkServer()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            with state.lock:
                auth = self.headers.get("Authorization", "")
                state.requests.append(Recorded(self.path, body, time.monotonic(), auth))
                status = state.statuses.pop(0) if state.statuses else 200
                delay = state.delay_s
            if delay:
                time.sleep(delay)
            payload = b'{"ok":true}'
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:  # the client gave up (timeout)
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
