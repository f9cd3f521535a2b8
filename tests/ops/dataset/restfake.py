"""A REST fake of the exchanges' trade history endpoints, on 127.0.0.1 (a real HTTP peer).

Serves a truth of trades as Binance ``/api/v3/historicalTrades`` (and ``aggTrades``) and
Coinbase ``/products/<id>/trades`` (newest first, ``after``) answer them, counts requests
and can answer 429 with ``Retry-After`` to the first ``throttle`` requests.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from collector.model import Trade


@dataclass
class Truth:
    trades: dict[str, list[Trade]] = field(default_factory=dict)  # symbol -> trades by id
    requests: list[str] = field(default_factory=list)
    throttle: int = 0


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _binance(t: Trade, agg: bool) -> dict[str, object]:
    if agg:
        return {
            "a": t.trade_id,
            "p": t.price,
            "q": t.quantity,
            "f": t.trade_id,
            "l": t.trade_id,
            "T": t.trade_time_ms,
            "m": t.is_buyer_maker,
            "M": True,
        }
    return {
        "id": t.trade_id,
        "price": t.price,
        "qty": t.quantity,
        "quoteQty": "1",
        "time": t.trade_time_ms,
        "isBuyerMaker": t.is_buyer_maker,
        "isBestMatch": True,
    }


def _coinbase(t: Trade) -> dict[str, object]:
    side = "buy" if t.is_buyer_maker else "sell"
    return {
        "time": _iso(t.trade_time_ms),
        "trade_id": t.trade_id,
        "price": t.price,
        "size": t.quantity,
        "side": side,
    }


def _handler(truth: Truth) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _send(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            truth.requests.append(self.path)
            if truth.throttle > 0:
                truth.throttle -= 1
                self._send(429, {"code": -1003}, {"Retry-After": "0"})
                return
            url = urlsplit(self.path)
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            parts = url.path.strip("/").split("/")
            if url.path in ("/api/v3/historicalTrades", "/api/v3/aggTrades"):
                rows = truth.trades.get(q["symbol"], [])
                start, limit = int(q["fromId"]), int(q.get("limit", 500))
                page = [t for t in rows if t.trade_id >= start][:limit]
                agg = url.path.endswith("aggTrades")
                self._send(200, [_binance(t, agg) for t in page])
            elif len(parts) == 3 and parts[0] == "products" and parts[2] == "trades":
                rows = truth.trades.get(parts[1], [])
                after, limit = int(q["after"]), int(q.get("limit", 1000))
                page = sorted((t for t in rows if t.trade_id < after), key=lambda t: -t.trade_id)
                self._send(200, [_coinbase(t) for t in page[:limit]])
            else:
                self._send(404, {"message": "NotFound"})

    return Handler


@contextmanager
def rest_fake(truth: Truth) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(truth))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
