"""A local alert receiver: accepts Slack/Telegram/PagerDuty-shaped POSTs and prints them.

The demo points the fleet's alerts here (``SLACK_WEBHOOK_URL=http://127.0.0.1:PORT/slack``,
``[alerts] telegram_api_url`` / ``pagerduty_events_url``) so a newcomer sees what the fleet
would send, with no credentials; the tests use it as the real HTTP peer of the alert sinks.

    python -m ops.alertsink [--port 0]      prints one line per alert received

``status`` (default 200) is what it answers; set it to 500 to play a failing sink.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class AlertSink:
    """An HTTP receiver on 127.0.0.1 in a background thread; ``received`` holds every POST
    (path, JSON body, arrival time) in arrival order. Handler threads only ever append to it
    (atomic for a list), so a reader takes a copy, ``list(sink.received)``, without a lock."""

    def __init__(self, port: int = 0, *, echo: Callable[[str], None] | None = None) -> None:
        self.received: list[dict[str, Any]] = []
        self.status = 200
        self.echo = echo
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                try:
                    data = json.loads(body)
                except ValueError:
                    data = {"raw": body.decode("utf-8", "replace")}
                sink._record(self.path, data)
                self.send_response(sink.status)
                self.send_header("Content-Type", "application/json")
                reply = b'{"ok":true}' if sink.status < 300 else b'{"ok":false}'
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _record(self, path: str, data: Any) -> None:
        entry = {"path": path, "body": data, "at": time.time()}
        self.received.append(entry)
        if self.echo is not None:
            self.echo(f"ALERT {path} {self.text(entry)}")

    @staticmethod
    def text(entry: dict[str, Any]) -> str:
        """The human line of an alert: Slack/Telegram ``text`` or PagerDuty's summary."""
        body = entry.get("body", {})
        if not isinstance(body, dict):
            return str(body)
        if "text" in body:
            return str(body["text"])
        payload = body.get("payload") or {}
        summary = payload.get("summary") if isinstance(payload, dict) else None
        return f"pagerduty {body.get('event_action', '?')}: {summary or body.get('dedup_key')}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ops.alertsink", description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args(argv)
    with AlertSink(args.port, echo=lambda line: print(line, flush=True)) as sink:
        print(f"alert sink listening on {sink.url}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
