"""Replay server: exchange websocket + REST endpoints on 127.0.0.1, fed from captures.

A product feature (the offline demo) and the local peer of every collector test. One TCP port
serves both plain HTTP (REST paths answered with the recorded bodies) and websocket upgrades
(the exchange's subscribe protocol, then the recorded frames of what was subscribed, as the
exact recorded strings, at recorded pace times ``speed``).

Captures use the raw JSONL envelope of ``shared/data/recorded`` (``t``/``conn``/``ts``/``data``);
``write_capture`` builds small ones for unrecorded shapes.

Protocols (one per exchange; the exchange comes from the capture's ``header`` or its hosts):

======== ================================== ===================================================
exchange websocket paths                    subscribe → served frames
======== ================================== ===================================================
binance  ``/stream[?streams=a/b]``,         ``SUBSCRIBE`` → ``{"result":null,"id":N}``; frames of
         ``/ws/<stream>`` (raw payloads)    the stream (``@depth`` served from ``@depth@100ms``
                                            and vice versa, renamed); pings every 20 s
coinbase ``/``                              ``subscribe`` → ``subscriptions``; per channel and
                                            product: matches, level2(_batch), ticker, heartbeat,
                                            full; level2/full/level3 need auth when a test key
                                            is configured
bitstamp ``/``                              ``bts:subscribe`` → ``bts:subscription_succeeded``;
                                            frames whose ``channel`` matches; ``bts:heartbeat``
bitfinex ``/ws/2``                          ``info`` on connect; ``conf``, ``ping``; ``subscribe``
                                            → the recorded ``subscribed`` event, then its
                                            ``[chanId, ...]`` frames and info events
======== ================================== ===================================================

With several exchanges on one server, prefix paths with the exchange id
(``ws://127.0.0.1:PORT/coinbase``, ``http://127.0.0.1:PORT/binance/api/v3/depth?...``).
A connection replays the recv frames of every recorded connection of the capture(s), in file
order. A ``recv`` event with ``"encoding": "base64"`` (how a collector records a binary frame)
is sent as a binary message of exactly those bytes; when they are not JSON, the frame goes with
the frame recorded before it on its connection.

Fault switches live on a mutable ``Faults``; websocket faults are copied when a connection is
accepted and apply to the next ``ws_fault_connections`` connections only. Together they make a
hostile exchange (CLI flags in brackets):

================== ===========================================================================
class              switch
================== ===========================================================================
handshake faults   ``bad_handshakes`` K × ``bad_handshake`` = hang | bad_accept | no_upgrade |
                   garbage | close [``--bad-handshakes K --bad-handshake KIND``]; refusals:
                   ``reject_handshakes`` [``--reject-handshakes``, ``--reject-status``]
flapping           ``drop_after=0``, ``ws_fault_connections=None`` (closed right after every
                   subscription ack) [``--drop-after 0 --fault-connections 0``]
drops, stalls      ``drop_after``, ``stall_after`` [``--drop-after``, ``--stall-after``]
gaps               ``skip_frames`` [``--skip-frame``]
garbage, oversized ``garbage_after``, ``oversized_after`` [``--garbage-after``, ``--oversized-*``]
nested JSON        ``nested_after``, ``nested_depth`` [``--nested-after``, ``--nested-depth``]
any frame          ``inject`` = ((N, str | bytes), ...): forged values, foreign symbols, stray
                   ids, error frames, non-UTF-8 binary [``--inject N:TEXT``,
                   ``--inject-base64 N:B64``]
server reconnect   ``reconnect_request_after`` [``--reconnect-request-after``]
HTTP 429/418       ``http_errors`` [``--http-errors``, ``--http-error-status``, ``--retry-after``]
================== ===========================================================================
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import dataclasses
import gzip
import hashlib
import hmac
import http
import itertools
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import structlog
import trio
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    wrap_server_stream,
)

log = structlog.get_logger()

HOST = "127.0.0.1"
EXCHANGES = ("binance", "coinbase", "bitstamp", "bitfinex")
MAX_HEAD_BYTES = 65536
MAX_CLIENT_MESSAGE_BYTES = 1 << 20
RECEIVE_CHUNK_BYTES = 65536

Json = Any  # a decoded JSON value; checked with isinstance before use


# --------------------------------------------------------------------------------------------
# Faults, stats, auth
# --------------------------------------------------------------------------------------------


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
    reconnect_request_after: int | None = None  # bitstamp bts:request_reconnect, bitfinex 20051
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


@dataclass
class ReplayStats:
    """Counters for tests; read them after the fact (plain attributes, no locking)."""

    connections: int = 0  # websocket connections accepted
    rejected_handshakes: int = 0
    http_requests: Counter[str] = field(default_factory=Counter)  # by path (no query)
    frames_sent: int = 0  # recorded data frames sent, all connections
    faults_fired: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class CoinbaseTestKey:
    """A Coinbase Exchange API key the server accepts; secret_b64 is the base64 API secret."""

    key: str
    secret_b64: str = field(repr=False)
    passphrase: str = field(repr=False)

    def sign(self, timestamp: str) -> str:
        """base64(HMAC-SHA256(b64decode(secret), timestamp + "GET/users/self/verify"))."""
        secret = base64.b64decode(self.secret_b64)
        message = f"{timestamp}GET/users/self/verify".encode()
        return base64.b64encode(hmac.new(secret, message, hashlib.sha256).digest()).decode()

    def subscribe_fields(self, timestamp: str | None = None) -> dict[str, str]:
        """The auth fields a client adds to its subscribe message."""
        ts = timestamp if timestamp is not None else f"{time.time():.3f}"
        return {
            "key": self.key,
            "passphrase": self.passphrase,
            "timestamp": ts,
            "signature": self.sign(ts),
        }


# --------------------------------------------------------------------------------------------
# Captures
# --------------------------------------------------------------------------------------------


class CaptureError(ValueError):
    """A capture file that cannot be served (unreadable, bad JSON, unknown exchange)."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One recorded websocket frame: ``data`` is the exact wire string (bytes for a binary
    frame), ``msg`` it decoded."""

    conn: str
    ts: float
    data: str | bytes
    msg: Json  # None when the frame is not JSON


@dataclass(frozen=True, slots=True)
class HttpRecord:
    """One recorded REST answer."""

    path: str  # without trailing slash
    params: tuple[tuple[str, str], ...]  # sorted query parameters
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class RecordedConnection:
    """The frames of one recorded websocket connection."""

    name: str
    addr: str = ""
    sends: list[Frame] = field(default_factory=list)
    recvs: list[Frame] = field(default_factory=list)


def _norm_path(path: str) -> str:
    return path.rstrip("/") or "/"


def _split_target(target: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    parts = urlsplit(target)
    params = tuple(sorted(parse_qsl(parts.query, keep_blank_values=True)))
    return _norm_path(parts.path), params


def _exchange_of(name: str) -> str | None:
    low = name.lower()
    return next((ex for ex in EXCHANGES if ex in low), None)


@dataclass
class Capture:
    """A capture parsed once: REST answers by path and, per recorded connection, its frames."""

    exchange: str
    http: list[HttpRecord] = field(default_factory=list)
    connections: dict[str, RecordedConnection] = field(default_factory=dict)
    header: dict[str, Json] | None = None
    source: str = "<events>"

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, exchange: str | None = None) -> Capture:
        """Read a ``.jsonl.gz`` (or plain ``.jsonl``) capture.

        Raises:
            CaptureError: unreadable file, a line that is not an envelope, unknown exchange.
        """
        p = Path(path)
        try:
            raw = p.read_bytes()
            if raw[:2] == b"\x1f\x8b":
                raw = gzip.decompress(raw)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise CaptureError(f"cannot read capture {p}: {exc}") from exc
        events: list[dict[str, Json]] = []
        for n, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise CaptureError(f"{p}:{n}: not JSON: {exc}") from exc
            if not isinstance(event, dict) or not isinstance(event.get("t"), str):
                raise CaptureError(f"{p}:{n}: not a capture event")
            events.append(event)
        # raw files are named ..._{exchange}_{symbol}_{data_type}.jsonl.gz: the fallback when the
        # events name no exchange host (e.g. recorded against this server on 127.0.0.1)
        fallback = _exchange_of(p.name)
        return cls.from_events(events, exchange=exchange, source=str(p), fallback=fallback)

    @classmethod
    def from_events(
        cls,
        events: Iterable[Mapping[str, Json]],
        *,
        exchange: str | None = None,
        source: str = "<events>",
        fallback: str | None = None,
    ) -> Capture:
        """Build a capture from envelope dicts (``data`` may be a str or a JSON value).

        ``"encoding": "base64"`` marks ``data`` as the base64 of the exact bytes (a binary
        websocket frame, served as a binary message; a REST body). The exchange is
        ``exchange`` if given, else the ``header`` line's, else the first exchange host in the
        URLs, else ``fallback``.

        Raises:
            CaptureError: an unknown ``encoding``, or ``data`` that is not valid base64.
        """
        header: dict[str, Json] | None = None
        http_records: list[HttpRecord] = []
        conns: dict[str, RecordedConnection] = {}
        guess: str | None = None
        for event in events:
            kind = event.get("t")
            if kind == "header":
                header = dict(event)
                guess = guess or _exchange_of(str(event.get("exchange", "")))
                continue
            text = _event_data(event, source)
            if kind == "http":
                url = str(event.get("url", ""))
                guess = guess or _exchange_of(urlsplit(url).netloc)
                path, params = _split_target(url)
                hdrs = event.get("headers") or {}
                http_records.append(
                    HttpRecord(
                        path=path,
                        params=params,
                        status=int(event.get("status", 200)),
                        body=text.encode() if isinstance(text, str) else text,
                        headers=tuple((str(k), str(v)) for k, v in dict(hdrs).items()),
                    )
                )
                continue
            name = str(event.get("conn", ""))
            conn = conns.setdefault(name, RecordedConnection(name))
            if kind == "connect":
                conn.addr = str(event.get("addr", ""))
                guess = guess or _exchange_of(urlsplit(conn.addr).netloc)
            elif kind in ("send", "recv"):
                try:
                    msg = orjson.loads(text)
                except orjson.JSONDecodeError:
                    msg = None
                frame = Frame(name, float(event.get("ts", 0.0)), text, msg)
                (conn.sends if kind == "send" else conn.recvs).append(frame)
        chosen = exchange or guess or fallback
        if chosen not in EXCHANGES:
            raise CaptureError(f"{source}: cannot tell the exchange (got {chosen!r})")
        return cls(chosen, http_records, conns, header, source)


def _event_data(event: Mapping[str, Json], source: str) -> str | bytes:
    """An event's ``data``: the wire string, or the exact bytes of a base64-encoded one."""
    data = event.get("data", "")
    encoding = event.get("encoding")
    if encoding is None:
        return data if isinstance(data, str) else orjson.dumps(data).decode()
    if encoding != "base64":
        raise CaptureError(f"{source}: unknown encoding {str(encoding)[:40]!r}")
    if not isinstance(data, str):
        raise CaptureError(f"{source}: base64 data must be a string")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CaptureError(f"{source}: data is not valid base64: {exc}") from exc


def write_capture(
    path: str | os.PathLike[str],
    events: Iterable[Mapping[str, Json]],
    *,
    exchange: str | None = None,
) -> Path:
    """Write envelope events as a gzipped JSONL capture; returns the path.

    ``data`` given as a JSON value (not a str) is serialised compactly; bytes (a binary frame)
    are written base64-encoded with ``"encoding": "base64"``. ``exchange`` prepends a
    ``header`` line so the server knows the protocol without URLs in the events.
    """
    lines: list[bytes] = []
    if exchange is not None:
        lines.append(orjson.dumps({"t": "header", "exchange": exchange.upper()}))
    for event in events:
        e = dict(event)
        if isinstance(e.get("data"), bytes | bytearray):
            e["data"] = base64.b64encode(e["data"]).decode()
            e["encoding"] = "base64"
        elif "data" in e and not isinstance(e["data"], str):
            e["data"] = orjson.dumps(e["data"]).decode()
        lines.append(orjson.dumps(e))
    p = Path(path)
    p.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    return p


# --------------------------------------------------------------------------------------------
# Per-exchange view of the loaded captures
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Item:
    """A frame to send on a connection: its pacing time, wire data, and subscription key."""

    ts: float
    data: str | bytes  # bytes go out as a binary message
    key: object


class _Feed:
    """Everything one exchange serves: REST answers and all recorded recv frames, in order."""

    def __init__(self, exchange: str, captures: Sequence[Capture]) -> None:
        self.exchange = exchange
        self.http = [h for c in captures for h in c.http]
        self.connections = [rc for c in captures for rc in c.connections.values()]
        self.frames = [f for rc in self.connections for f in rc.recvs]
        stamps = [f.ts for f in self.frames]
        # The recorded time span: with --loop, each cycle lasts as long as the recording.
        self.span = (min(stamps), max(stamps)) if stamps else (0.0, 0.0)
        self.index: dict[object, list[int]] = {}
        self.keys_at: list[list[object]] = []  # per frame position: its keys in index
        addrs = {rc.name: rc.addr for rc in self.connections}
        last_keys: dict[str, list[object]] = {}
        for pos, frame in enumerate(self.frames):
            keys = _frame_keys(exchange, frame, addrs.get(frame.conn, ""))
            if keys:
                last_keys[frame.conn] = keys
            elif isinstance(frame.data, bytes):
                # A binary frame that is not JSON names no stream: it is served where it was
                # recorded, with the frame before it on its connection.
                keys = last_keys.get(frame.conn, [])
            self.keys_at.append(keys)
            for key in keys:
                self.index.setdefault(key, []).append(pos)
        self._known: set[str] | None = None

    def positions(self, keys: Iterable[object]) -> list[int]:
        """File-order positions of the frames under any of ``keys`` (deduplicated)."""
        return sorted({p for k in keys for p in self.index.get(k, ())})

    def body_of(self, path: str) -> Json:
        for rec in self.http:
            if rec.path == path and rec.status == 200:
                with contextlib.suppress(orjson.JSONDecodeError):
                    return orjson.loads(rec.body)
        return None

    def known_names(self) -> set[str]:
        """Valid symbols/products/pairs: from the listing body when recorded, else the frames."""
        if self._known is None:
            self._known = _known_names(self)
        return self._known


def _frame_keys(exchange: str, frame: Frame, addr: str) -> list[object]:
    msg = frame.msg
    if exchange == "binance":
        name = _binance_stream_of(msg, addr)
        return [name] if name else []
    if not isinstance(msg, dict):
        return []
    if exchange == "coinbase":
        kind = msg.get("type")
        return [(kind, msg.get("product_id"))] if isinstance(kind, str) else []
    if exchange == "bitstamp":
        channel, event = msg.get("channel"), str(msg.get("event", ""))
        if isinstance(channel, str) and channel and not event.startswith("bts:"):
            return [channel]
    return []


def _binance_stream_of(msg: Json, addr: str) -> str | None:
    if not isinstance(msg, dict):
        return None
    stream = msg.get("stream")
    if isinstance(stream, str) and "data" in msg:
        return stream
    path = urlsplit(addr).path
    if path.startswith("/ws/") and "/" not in path[4:]:
        return path[4:]
    symbol, event = str(msg.get("s", "")).lower(), msg.get("e")
    if not symbol:
        return None
    if event in ("trade", "aggTrade"):
        return f"{symbol}@{event}"
    if event == "depthUpdate":
        return f"{symbol}@depth"
    if event == "kline" and isinstance(msg.get("k"), dict):
        return f"{symbol}@kline_{msg['k'].get('i')}"
    if event is None and {"u", "b", "a"} <= msg.keys():
        return f"{symbol}@bookTicker"
    return None


def _known_names(feed: _Feed) -> set[str]:
    names: set[str] = set()
    if feed.exchange == "binance":
        info = feed.body_of("/api/v3/exchangeInfo")
        if isinstance(info, dict) and isinstance(info.get("symbols"), list):
            return {str(s.get("symbol", "")).lower() for s in info["symbols"]}
        names = {str(k).split("@")[0] for k in feed.index}
        for rc in feed.connections:
            query = dict(parse_qsl(urlsplit(rc.addr).query))
            names |= {s.split("@")[0] for s in query.get("streams", "").split("/") if s}
    elif feed.exchange == "coinbase":
        products = feed.body_of("/products")
        if isinstance(products, list):
            return {str(p.get("id")) for p in products if isinstance(p, dict)}
        names = {str(k[1]) for k in feed.index if isinstance(k, tuple) and k[1]}
    elif feed.exchange == "bitstamp":
        pairs = feed.body_of("/api/v2/trading-pairs-info")
        if isinstance(pairs, list):
            return {str(p.get("url_symbol")) for p in pairs if isinstance(p, dict)}
        names = {str(k).rsplit("_", 1)[-1] for k in feed.index}
    elif feed.exchange == "bitfinex":
        for frame in feed.frames:
            if isinstance(frame.msg, dict) and frame.msg.get("event") == "subscribed":
                names |= set(_bitfinex_symbols(frame.msg))
    return names


def _bitfinex_symbols(msg: Mapping[str, Json]) -> list[str]:
    out = [str(msg["symbol"])] if isinstance(msg.get("symbol"), str) else []
    if isinstance(msg.get("pair"), str):
        out.append("t" + str(msg["pair"]))
    return out


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class _BadRequest(Exception):
    pass


@dataclass
class _Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]

    @property
    def is_websocket(self) -> bool:
        return "websocket" in self.headers.get("upgrade", "").lower()


class _PrefixedStream(trio.abc.Stream):
    """A stream whose first reads return bytes already taken off the socket."""

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


class ReplayServer:
    """Serves captures on 127.0.0.1: REST and websocket on one port.

    Args:
        captures: capture paths or loaded ``Capture`` objects (several exchanges allowed).
        speed: recorded pace multiplier (2.0 = twice as fast); None or 0 = as fast as possible.
        loop: close a connection with 1001 at the end of its frames (the client reconnects
            and gets the stream again); otherwise it stays open and idle.
        faults: fault switches (a fresh ``Faults()`` by default), mutable at runtime.
        coinbase_auth: when set, Coinbase level2/full/level3 require this key's signature.
        ping_interval_s, pong_timeout_s: Binance server pings; no pong in time drops the client.
        subscribe_timeout_s: Coinbase closes a connection that sends no subscribe in time.
    """

    def __init__(
        self,
        captures: Sequence[str | os.PathLike[str] | Capture],
        *,
        speed: float | None = None,
        loop: bool = False,
        faults: Faults | None = None,
        coinbase_auth: CoinbaseTestKey | None = None,
        ping_interval_s: float = 20.0,
        pong_timeout_s: float = 60.0,
        subscribe_timeout_s: float = 5.0,
    ) -> None:
        loaded = [c if isinstance(c, Capture) else Capture.load(c) for c in captures]
        if not loaded:
            raise ValueError("ReplayServer needs at least one capture")
        if speed is not None and speed < 0:
            raise ValueError(f"speed must be >= 0, got {speed}")
        self.speed = speed or None
        self.loop = loop
        self.faults = faults if faults is not None else Faults()
        self.coinbase_auth = coinbase_auth
        self.ping_interval_s = ping_interval_s
        self.pong_timeout_s = pong_timeout_s
        self.subscribe_timeout_s = subscribe_timeout_s
        self.stats = ReplayStats()
        self.port: int | None = None
        order = list(dict.fromkeys(c.exchange for c in loaded))
        self.feeds = {ex: _Feed(ex, [c for c in loaded if c.exchange == ex]) for ex in order}
        self._overrides: dict[tuple[str, tuple[tuple[str, str], ...]], HttpRecord] = {}
        self._conn_ids = itertools.count(1)

    @property
    def exchanges(self) -> list[str]:
        return list(self.feeds)

    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self._port()}"

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self._port()}"

    def _port(self) -> int:
        if self.port is None:
            raise RuntimeError("the replay server is not listening yet")
        return self.port

    def set_http(
        self,
        path_and_query: str,
        body: str | bytes,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Add or override a REST answer (matched like recorded ones, before them)."""
        path, params = _split_target(path_and_query)
        data = body.encode() if isinstance(body, str) else bytes(body)
        hdrs = tuple((headers or {}).items())
        self._overrides[(path, params)] = HttpRecord(path, params, status, data, hdrs)

    async def serve(
        self, port: int = 0, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen on 127.0.0.1:port until cancelled; ``task_status.started(port)``."""
        listeners = await trio.open_tcp_listeners(port, host=HOST)
        sock = listeners[0].socket
        self.port = int(sock.getsockname()[1])
        log.info(
            "replay.listening",
            port=self.port,
            http_url=self.http_url,
            ws_url=self.ws_url,
            exchanges=self.exchanges,
            speed=self.speed,
            loop=self.loop,
        )
        task_status.started(self.port)
        await trio.serve_listeners(self._handle_stream, listeners)

    # ---- one TCP connection ------------------------------------------------------------------

    async def _handle_stream(self, stream: trio.SocketStream) -> None:
        buf = bytearray()
        try:
            while True:
                head = await _read_head(stream, buf)
                if head is None:
                    return
                try:
                    request = _parse_head(head)
                except _BadRequest as exc:
                    await _send_response(stream, 400, str(exc).encode(), keep_alive=False)
                    return
                if request.is_websocket:
                    await self._handle_websocket(
                        _PrefixedStream(stream, head + bytes(buf)), request
                    )
                    return
                length_text = request.headers.get("content-length", "0") or "0"
                if not length_text.isdigit():
                    await _send_response(stream, 400, b"bad Content-Length", keep_alive=False)
                    return
                length = int(length_text)
                while len(buf) < length:
                    chunk = await stream.receive_some(RECEIVE_CHUNK_BYTES)
                    if not chunk:
                        return
                    buf += chunk
                del buf[:length]
                keep_alive = request.version == "HTTP/1.1" and (
                    request.headers.get("connection", "").lower() != "close"
                )
                if "chunked" in request.headers.get("transfer-encoding", "").lower():
                    keep_alive = False
                await self._answer_http(stream, request, keep_alive)
                if not keep_alive:
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await stream.aclose()

    def _route_prefix(self, target: str) -> tuple[_Feed | None, str]:
        """The feed named by an exchange prefix (or the only feed), and the target without it."""
        first = target.split("/", 2)[1].split("?", 1)[0] if target.startswith("/") else ""
        if first in self.feeds:
            rest = target[len(first) + 1 :]
            return self.feeds[first], rest if rest.startswith("/") else "/" + rest
        if len(self.feeds) == 1:
            return next(iter(self.feeds.values())), target
        return None, target

    def _route_websocket(self, target: str) -> tuple[_Feed | None, str]:
        feed, target = self._route_prefix(target)
        if feed is not None:
            return feed, target
        path = urlsplit(target).path
        if path.startswith("/ws/2") and "bitfinex" in self.feeds:
            return self.feeds["bitfinex"], target
        if path.startswith(("/stream", "/ws")) and "binance" in self.feeds:
            return self.feeds["binance"], target
        for name in ("coinbase", "bitstamp", "bitfinex", "binance"):
            if name in self.feeds:
                return self.feeds[name], target
        return None, target

    def _owner(self, path: str) -> str:
        """The exchange whose error answers an unmatched path (several feeds, no prefix)."""
        for depth in (None, 3, 2):
            for feed in self.feeds.values():
                if any(r.path.split("/")[:depth] == path.split("/")[:depth] for r in feed.http):
                    return feed.exchange
        return ""

    # ---- REST ----------------------------------------------------------------------------------

    async def _answer_http(self, stream: trio.abc.Stream, request: _Request, keep: bool) -> None:
        feed, target = self._route_prefix(request.target)
        path, params = _split_target(target)
        exchange = feed.exchange if feed else self._owner(path)
        self.stats.http_requests[path] += 1
        faults = self.faults
        if faults.http_errors > 0:
            faults.http_errors -= 1
            status = faults.http_error_status
            self.stats.faults_fired[f"http_{status}"] += 1
            log.info("replay.fault", fault="http_error", status=status, path=path)
            headers = [("Retry-After", str(faults.http_retry_after_s))]
            body = _rate_limit_body(exchange, status)
            await _send_response(stream, status, body, keep_alive=keep, headers=headers)
            return
        found = self._find_http(feed, path, params)
        if found is None:
            status, body = _not_found(exchange)
            log.debug("replay.http", path=path, status=status)
            await _send_response(stream, status, body, keep_alive=keep)
            return
        log.debug("replay.http", path=path, status=found.status, bytes=len(found.body))
        await _send_response(
            stream, found.status, found.body, keep_alive=keep, headers=list(found.headers)
        )

    def _find_http(
        self, feed: _Feed | None, path: str, params: tuple[tuple[str, str], ...]
    ) -> HttpRecord | None:
        pools: list[Sequence[HttpRecord]] = [list(self._overrides.values())]
        pools += [feed.http] if feed else [f.http for f in self.feeds.values()]
        for pool in pools:
            same_path = [r for r in pool if r.path == path]
            for rec in same_path:
                if rec.params == params:
                    return rec
            loose = tuple(p for p in params if p[0] != "limit")
            for rec in same_path:
                if tuple(p for p in rec.params if p[0] != "limit") == loose:
                    return rec
        return None

    # ---- websocket ---------------------------------------------------------------------------

    async def _handle_websocket(self, stream: _PrefixedStream, request: _Request) -> None:
        feed, target = self._route_websocket(request.target)
        conn_id = next(self._conn_ids)
        faults = self.faults
        if faults.bad_handshakes > 0 and feed is not None:
            faults.bad_handshakes -= 1
            kind = faults.bad_handshake
            self.stats.faults_fired[f"handshake_{kind}"] += 1
            log.info("replay.fault", fault="bad_handshake", kind=kind, conn_id=conn_id)
            await _bad_handshake(stream, request, kind)
            return
        async with trio.open_nursery() as nursery:
            ws_request: WebSocketRequest | None = None
            with trio.move_on_after(10):
                ws_request = await wrap_server_stream(
                    nursery, stream, max_message_size=MAX_CLIENT_MESSAGE_BYTES
                )
            if ws_request is not None:
                await self._websocket_session(ws_request, stream, feed, target, conn_id)
            nursery.cancel_scope.cancel()

    async def _websocket_session(
        self,
        ws_request: WebSocketRequest,
        stream: _PrefixedStream,
        feed: _Feed | None,
        target: str,
        conn_id: int,
    ) -> None:
        faults = self.faults
        if faults.reject_handshakes > 0 or feed is None:
            status, headers = 404, []
            if feed is not None:
                faults.reject_handshakes -= 1
                status = faults.reject_status
                if faults.reject_retry_after_s is not None:
                    headers.append((b"Retry-After", str(faults.reject_retry_after_s).encode()))
                self.stats.rejected_handshakes += 1
                self.stats.faults_fired["reject_handshake"] += 1
                log.info("replay.fault", fault="reject_handshake", status=status, conn_id=conn_id)
            await ws_request.reject(status, extra_headers=headers, body=b"handshake refused")
            return
        ws: WebSocketConnection = await ws_request.accept()
        conn_faults: Faults | None = None
        if faults.ws_faults_set() and (
            faults.ws_fault_connections is None or faults.ws_fault_connections > 0
        ):
            if faults.ws_fault_connections is not None:
                faults.ws_fault_connections -= 1
            conn_faults = dataclasses.replace(faults)
        self.stats.connections += 1
        log.info(
            "replay.connection",
            exchange=feed.exchange,
            path=target,
            conn_id=conn_id,
            faults=conn_faults is not None,
        )
        session = _Session(self, feed, ws, stream, conn_faults, conn_id)
        try:
            await session.run(target)
        finally:
            if not session.dropped:
                with trio.move_on_after(1) as scope:
                    scope.shield = True
                    await ws.aclose()
            log.info("replay.closed", conn_id=conn_id, frames=session.sent, dropped=session.dropped)


_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3


def _accept_token(key: str) -> bytes:
    """The ``Sec-WebSocket-Accept`` value that answers ``Sec-WebSocket-Key: key``."""
    return base64.b64encode(hashlib.sha1(key.strip().encode("latin-1") + _WS_GUID).digest())


async def _bad_handshake(stream: trio.abc.Stream, request: _Request, kind: str) -> None:
    """Answer an upgrade request with a handshake fault (see ``Faults``)."""
    key = request.headers.get("sec-websocket-key", "")
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


async def _read_head(stream: trio.abc.ReceiveStream, buf: bytearray) -> bytes | None:
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


def _parse_head(head: bytes) -> _Request:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise _BadRequest(f"bad request line {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, sep, value = line.partition(":")
            if not sep:
                raise _BadRequest(f"bad header line {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
    return _Request(parts[0], parts[1], parts[2], headers)


async def _send_response(
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


def _not_found(exchange: str) -> tuple[int, bytes]:
    if exchange == "binance":
        return 400, b'{"code":-1121,"msg":"Invalid symbol."}'
    if exchange == "coinbase":
        return 404, b'{"message":"NotFound"}'
    return 404, b'{"error":"Not found"}'


def _rate_limit_body(exchange: str, status: int) -> bytes:
    if exchange == "binance":
        msg = "Way too many requests; IP banned." if status == 418 else "Too many requests."
        return orjson.dumps({"code": -1003, "msg": msg})
    return orjson.dumps({"message": "Too many requests"})


# --------------------------------------------------------------------------------------------
# One websocket connection: generic streaming, pacing and faults
# --------------------------------------------------------------------------------------------


class _Session:
    def __init__(
        self,
        server: ReplayServer,
        feed: _Feed,
        ws: WebSocketConnection,
        stream: _PrefixedStream,
        faults: Faults | None,
        conn_id: int,
    ) -> None:
        self.server = server
        self.feed = feed
        self.ws = ws
        self.stream = stream
        self.faults = faults
        self.conn_id = conn_id
        self.sent = 0  # data frames sent
        self.seen = 0  # data frames reached (sent or skipped)
        self.dropped = False
        self._fired: set[str] = set()
        self._lock = trio.Lock()
        self._active = 0
        self._nursery: trio.Nursery | None = None
        self.handler: _Protocol = _PROTOCOLS[feed.exchange](self)

    async def run(self, target: str) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await self.handler.on_open(target)
            nursery.start_soon(self._receive_loop, nursery.cancel_scope)

    def start_soon(self, fn: Callable[[], Awaitable[object]]) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(fn)

    async def send_control(self, text: str | bytes) -> None:
        """A protocol reply (ack, error, pong): sent at once, not counted as data."""
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send_message(text)

    async def _receive_loop(self, scope: trio.CancelScope) -> None:
        try:
            while True:
                text = await self.ws.get_message()
                # a hostile client's binary message must not kill the server: it is only
                # parsed as a request, and undecodable bytes make an invalid one
                if isinstance(text, bytes):
                    text = text.decode("utf-8", "replace")
                await self.handler.on_message(text)
        except ConnectionClosed:
            pass
        finally:
            scope.cancel()

    def start_stream(self, items: list[_Item]) -> None:
        """Send ``items`` (the frames of one subscription) in a task, paced and faulted."""
        self._active += 1
        assert self._nursery is not None
        self._nursery.start_soon(self._run_stream, items)

    async def _run_stream(self, items: list[_Item]) -> None:
        speed = self.server.speed
        looping = self.server.loop and speed is not None
        start, t0 = trio.current_time(), (items[0].ts if items else 0.0)
        if looping:
            # Paced from the recording's start, and ended at its end (below): a sparse stream
            # then cycles at the recording's length instead of reconnecting every few frames.
            t0 = min(t0, self.feed.span[0]) if items else self.feed.span[0]
        try:
            for item in items:
                if speed:
                    await trio.sleep_until(start + max(0.0, item.ts - t0) / speed)
                if not self.handler.is_live(item.key):
                    continue
                async with self._lock:
                    await self._faults_before_frame()
                    index, self.seen = self.seen, self.seen + 1
                    if self.faults is not None and index in self.faults.skip_frames:
                        self._fire("skip_frame", index=index)
                        continue
                    await self.ws.send_message(item.data)
                    self.sent += 1
                    self.server.stats.frames_sent += 1
            async with self._lock:
                await self._faults_before_frame()
            if looping and speed:
                await trio.sleep_until(start + max(0.0, self.feed.span[1] - t0) / speed)
        except ConnectionClosed:
            return
        finally:
            self._active -= 1
        if self._active == 0 and self.server.loop and self.sent > 0:
            log.info("replay.loop", conn_id=self.conn_id, frames=self.sent)
            await self.ws.aclose(1001, "end of capture")

    def _fire(self, name: str, **kw: Any) -> None:
        self._fired.add(name)
        self.server.stats.faults_fired[name] += 1
        log.info("replay.fault", fault=name, conn_id=self.conn_id, after=self.sent, **kw)

    def _due(self, name: str, after: int | None) -> bool:
        return after is not None and after == self.sent and name not in self._fired

    async def _faults_before_frame(self) -> None:
        f = self.faults
        if f is None:
            return
        if self._due("drop", f.drop_after):
            self._fire("drop")
            self.dropped = True
            await self.stream.aclose()
            raise ConnectionClosed(None)
        if self._due("stall", f.stall_after):
            self._fire("stall", stall_s=f.stall_s)
            await trio.sleep(f.stall_s)
        if self._due("garbage", f.garbage_after):
            self._fire("garbage")
            await self.ws.send_message(f.garbage_text)
        if self._due("oversized", f.oversized_after):
            self._fire("oversized", size=f.oversized_bytes)
            pad = max(0, f.oversized_bytes - len('{"pad":""}'))
            await self.ws.send_message('{"pad":"' + "x" * pad + '"}')
        if self._due("nested", f.nested_after):
            self._fire("nested", depth=f.nested_depth)
            await self.ws.send_message("[" * f.nested_depth + "]" * f.nested_depth)
        if self._due("reconnect_request", f.reconnect_request_after):
            text = self.handler.reconnect_request
            if text is not None:
                self._fire("reconnect_request")
                await self.ws.send_message(text)
        for n, (after, frame) in enumerate(f.inject):
            if self._due(f"inject:{n}", after):
                self._fired.add(f"inject:{n}")
                self.server.stats.faults_fired["inject"] += 1
                kind = "binary" if isinstance(frame, bytes) else "text"
                log.info(
                    "replay.fault", fault="inject", conn_id=self.conn_id, after=after, kind=kind
                )
                await self.ws.send_message(frame)


class _Protocol:
    """Per-connection protocol state of one exchange."""

    reconnect_request: str | None = None

    def __init__(self, session: _Session) -> None:
        self.s = session
        self.feed = session.feed
        # subscription key -> token of its current stream; a re-subscribe gets a new token, so
        # a stream task of an earlier subscription of the same key stays silent
        self.live: dict[object, tuple[object, int]] = {}
        self._tokens = itertools.count()

    def add_live(self, key: object) -> tuple[object, int]:
        token = (key, next(self._tokens))
        self.live[key] = token
        return token

    def is_live(self, token: object) -> bool:
        return isinstance(token, tuple) and self.live.get(token[0]) == token

    async def on_open(self, target: str) -> None:
        pass

    async def on_message(self, text: str) -> None:
        pass

    def items(self, keys: Iterable[object], key_of: Callable[[int], object]) -> list[_Item]:
        """The frames under ``keys``; ``key_of(position)`` gives each its subscription token."""
        frames = self.feed.frames
        return [_Item(frames[p].ts, frames[p].data, key_of(p)) for p in self.feed.positions(keys)]


def _loads(text: str) -> Json:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def _dumps(value: Json) -> str:
    return orjson.dumps(value).decode()


# ---- Binance ---------------------------------------------------------------------------------


class _Binance(_Protocol):
    async def on_open(self, target: str) -> None:
        parts = urlsplit(target)
        self.combined = not parts.path.startswith("/ws")
        if self.combined:
            query = dict(parse_qsl(parts.query))
            names = [s for s in query.get("streams", "").split("/") if s]
        else:
            names = [s for s in parts.path[len("/ws") :].split("/") if s]
        self._subscribe([n for n in names if self._valid(n)])
        self.s.start_soon(self._pinger)

    async def _pinger(self) -> None:
        server = self.s.server
        for n in itertools.count():
            await trio.sleep(server.ping_interval_s)
            try:
                with trio.move_on_after(server.pong_timeout_s) as scope:
                    await self.s.ws.ping(b"replay-%d" % n)
            except ConnectionClosed:
                return
            if scope.cancelled_caught:
                log.info("replay.pong_timeout", conn_id=self.s.conn_id)
                self.s.dropped = True
                await self.s.stream.aclose()
                return

    def _valid(self, name: str) -> bool:
        symbol, sep, kind = name.partition("@")
        return name.startswith("!") or (bool(sep and kind) and symbol in self.feed.known_names())

    def _subscribe(self, names: list[str]) -> None:
        new = list(dict.fromkeys(n for n in names if n not in self.live))
        items: list[_Item] = []
        for name in new:
            items += self._items_for(name, self.add_live(name))
        if new:
            items.sort(key=lambda i: i.ts)  # sort is stable: file order within equal times
            self.s.start_stream(items)

    def _items_for(self, name: str, token: object) -> list[_Item]:
        source = name
        if name not in self.feed.index:
            for alias in (name + "@100ms", name.removesuffix("@100ms"), name + "@1000ms"):
                if alias in self.feed.index:
                    source = alias
                    break
        out: list[_Item] = []
        for p in self.feed.positions([source]):
            frame = self.feed.frames[p]
            out.append(_Item(frame.ts, self._text(frame, source, name), token))
        return out

    def _text(self, frame: Frame, source: str, name: str) -> str | bytes:
        if isinstance(frame.data, bytes):
            return frame.data  # a binary frame is sent exactly as recorded, never rewrapped
        msg = frame.msg
        wrapped = isinstance(msg, dict) and isinstance(msg.get("stream"), str) and "data" in msg
        if wrapped and self.combined and source == name:
            return frame.data
        payload = frame.data
        if wrapped:
            prefix = '{"stream":' + _dumps(source) + ',"data":'
            if frame.data.startswith(prefix) and frame.data.endswith("}"):
                payload = frame.data[len(prefix) : -1]
            else:
                payload = _dumps(msg["data"])
        if self.combined:
            return '{"stream":' + _dumps(name) + ',"data":' + payload + "}"
        return payload

    async def on_message(self, text: str) -> None:
        msg = _loads(text)
        if not isinstance(msg, dict):
            await self.s.send_control(_dumps({"error": {"code": 3, "msg": "Invalid JSON"}}))
            return
        req_id, method, params = msg.get("id"), msg.get("method"), msg.get("params")
        names = [str(p) for p in params] if isinstance(params, list) else []
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            bad = next((n for n in names if not self._valid(n)), None)
            if bad is not None or not names:
                reason = f"unknown stream {bad}" if bad else "no streams"
                error = {"code": 2, "msg": f"Invalid request: {reason}"}
                await self.s.send_control(_dumps({"error": error, "id": req_id}))
                return
            if method == "UNSUBSCRIBE":
                for name in names:
                    self.live.pop(name, None)
            # the ack first, as Binance does: a stream task started before it could send data
            # (or fire a drop fault) ahead of the ack
            await self.s.send_control(_dumps({"result": None, "id": req_id}))
            if method == "SUBSCRIBE":
                self._subscribe(names)
        elif method == "LIST_SUBSCRIPTIONS":
            await self.s.send_control(_dumps({"result": sorted(map(str, self.live)), "id": req_id}))
        else:
            error = {"code": 2, "msg": f"Invalid request: unknown method {method}"}
            await self.s.send_control(_dumps({"error": error, "id": req_id}))


# ---- Coinbase --------------------------------------------------------------------------------

_L2 = ("snapshot", "l2update")
_CB_CHANNEL_TYPES: dict[str, tuple[str, ...]] = {
    "level2": _L2,
    "level2_batch": _L2,
    "level2_50": _L2,
    "ticker": ("ticker",),
    "ticker_batch": ("ticker",),
    "ticker_1000": ("ticker",),
    "matches": ("last_match", "match"),
    "heartbeat": ("heartbeat",),
    "status": ("status",),
    "full": ("received", "open", "done", "match", "change", "activate"),
    "level3": ("level3",),
}
_CB_AUTH_CHANNELS = frozenset({"level2", "full", "level3"})


class _Coinbase(_Protocol):
    async def on_open(self, target: str) -> None:
        self.subs: dict[str, list[str]] = {}
        self.s.start_soon(self._subscribe_deadline)

    async def _subscribe_deadline(self) -> None:
        await trio.sleep(self.s.server.subscribe_timeout_s)
        if not self.subs and not self.live:
            log.info("replay.subscribe_timeout", conn_id=self.s.conn_id)
            with contextlib.suppress(ConnectionClosed):
                await self.s.ws.aclose(1000, "no subscribe message")

    async def _error(self, message: str, reason: str) -> None:
        await self.s.send_control(_dumps({"type": "error", "message": message, "reason": reason}))

    async def on_message(self, text: str) -> None:
        msg = _loads(text)
        kind = msg.get("type") if isinstance(msg, dict) else None
        if kind not in ("subscribe", "unsubscribe"):
            await self._error("Failed to subscribe", "type has to be either subscribe or unsub")
            return
        assert isinstance(msg, dict)
        wanted = self._parse_channels(msg)
        if isinstance(wanted, str):
            await self._error("Failed to subscribe", wanted)
            return
        if kind == "unsubscribe":
            for name, products in wanted.items():
                for product in products:
                    self.live.pop((name, product), None)
                left = [p for p in self.subs.get(name, []) if p not in products]
                self.subs[name] = left
            await self._reply_subscriptions()
            return
        known = self.feed.known_names()
        bad = next((p for ps in wanted.values() for p in ps if p not in known), None)
        if bad is not None:
            await self._error("Failed to subscribe", f"{bad} is not a valid product")
            return
        if not await self._authorised(msg, wanted):
            return
        new_keys = []
        for name, products in wanted.items():
            subs = self.subs.setdefault(name, [])
            for product in products:
                if (name, product) not in self.live:
                    new_keys.append((name, product))
                    subs.append(product)
        tokens = {key: self.add_live(key) for key in new_keys}
        await self._reply_subscriptions()
        if tokens:
            self.s.start_stream(self._items_for(tokens))

    def _parse_channels(self, msg: Mapping[str, Json]) -> dict[str, list[str]] | str:
        root = msg.get("product_ids") or []
        channels = msg.get("channels")
        if not isinstance(root, list) or not isinstance(channels, list) or not channels:
            return "channels and product_ids must be lists"
        wanted: dict[str, list[str]] = {}
        for ch in channels:
            name, own = (
                (ch.get("name"), ch.get("product_ids") or []) if isinstance(ch, dict) else (ch, [])
            )
            if not isinstance(name, str) or name not in _CB_CHANNEL_TYPES:
                return f"{name} is not a valid channel"
            products = [str(p) for p in [*own, *root]] if isinstance(own, list) else []
            bucket = wanted.setdefault(name, [])
            bucket += [p for p in products if p not in bucket]
        return wanted

    async def _authorised(self, msg: Mapping[str, Json], wanted: Mapping[str, Json]) -> bool:
        key = self.s.server.coinbase_auth
        if key is None:
            return True
        fields = [msg.get(f) for f in ("key", "passphrase", "timestamp", "signature")]
        if not all(isinstance(f, str) for f in fields):
            if _CB_AUTH_CHANNELS & set(wanted):
                await self._error(
                    "Failed to subscribe",
                    "level2, level3, and full channels now require authentication",
                )
                return False
            return True
        api_key, passphrase, timestamp, signature = (str(f) for f in fields)
        try:
            expected = key.sign(timestamp)
        except (binascii.Error, ValueError):
            expected = ""
        if api_key != key.key or passphrase != key.passphrase:
            await self._error("Authentication Failed", "invalid key or passphrase")
            return False
        if not hmac.compare_digest(expected, signature):
            await self._error("Authentication Failed", "invalid signature")
            return False
        return True

    async def _reply_subscriptions(self) -> None:
        channels = [{"name": n, "product_ids": ps} for n, ps in self.subs.items() if ps]
        await self.s.send_control(_dumps({"type": "subscriptions", "channels": channels}))

    def _items_for(self, tokens: Mapping[tuple[str, str], object]) -> list[_Item]:
        by_frame_key: dict[object, object] = {}
        for (name, product), token in tokens.items():
            for kind in _CB_CHANNEL_TYPES[name]:
                by_frame_key.setdefault((kind, product), token)
                by_frame_key.setdefault((kind, None), token)

        def key_of(pos: int) -> object:
            # the frame's own (type, product_id), or the one a binary frame inherited
            return next(by_frame_key[k] for k in self.feed.keys_at[pos] if k in by_frame_key)

        return self.items(by_frame_key, key_of)


# ---- Bitstamp --------------------------------------------------------------------------------

_BITSTAMP_PREFIXES = (
    "live_trades_",
    "live_orders_",
    "order_book_",
    "detail_order_book_",
    "diff_order_book_",
    "full_order_book_",
)


class _Bitstamp(_Protocol):
    reconnect_request = '{"event":"bts:request_reconnect","channel":"","data":""}'

    async def on_message(self, text: str) -> None:
        msg = _loads(text)
        event = msg.get("event") if isinstance(msg, dict) else None
        data = msg.get("data") if isinstance(msg, dict) else None
        channel = data.get("channel") if isinstance(data, dict) else None
        if event == "bts:heartbeat":
            reply = {"event": "bts:heartbeat", "channel": "", "data": {"status": "success"}}
            await self.s.send_control(_dumps(reply))
        elif event in ("bts:subscribe", "bts:unsubscribe") and self._valid(channel):
            assert isinstance(channel, str)
            done = "bts:subscription_succeeded"
            if event == "bts:unsubscribe":
                done = "bts:unsubscription_succeeded"
                self.live.pop(channel, None)
            await self.s.send_control(_dumps({"event": done, "channel": channel, "data": {}}))
            if event == "bts:subscribe" and channel not in self.live:
                token = self.add_live(channel)
                self.s.start_stream(self.items([channel], lambda pos: token))
        else:
            message = "Bad subscription string." if event == "bts:subscribe" else "Bad request."
            error = {
                "event": "bts:error",
                "channel": "",
                "data": {"code": None, "message": message},
            }
            await self.s.send_control(_dumps(error))

    def _valid(self, channel: object) -> bool:
        if not isinstance(channel, str):
            return False
        prefix = next((p for p in _BITSTAMP_PREFIXES if channel.startswith(p)), None)
        return prefix is not None and channel[len(prefix) :] in self.feed.known_names()


# ---- Bitfinex --------------------------------------------------------------------------------


class _Bitfinex(_Protocol):
    reconnect_request = '{"event":"info","code":20051,"msg":"Stopping. Please try to reconnect"}'

    async def on_open(self, target: str) -> None:
        self.subscribed_any = False
        self.next_chan = 1_000_000
        await self.s.send_control('{"event":"info","version":2,"platform":{"status":1}}')

    async def on_message(self, text: str) -> None:
        msg = _loads(text)
        event = msg.get("event") if isinstance(msg, dict) else None
        if not isinstance(msg, dict):
            await self.s.send_control('{"event":"error","msg":"unknown event","code":10000}')
        elif event == "ping":
            pong = {"event": "pong", "ts": int(time.time() * 1000), "cid": msg.get("cid")}
            await self.s.send_control(_dumps(pong))
        elif event == "conf":
            await self.s.send_control(
                _dumps({"event": "conf", "status": "OK", "flags": msg.get("flags")})
            )
        elif event == "subscribe":
            await self._subscribe(msg)
        elif event == "unsubscribe":
            if isinstance(msg.get("chanId"), int):
                self.live.pop(msg["chanId"], None)
            reply = {"event": "unsubscribed", "status": "OK", "chanId": msg.get("chanId")}
            await self.s.send_control(_dumps(reply))
        else:
            await self.s.send_control('{"event":"error","msg":"unknown event","code":10000}')

    async def _subscribe(self, req: Mapping[str, Json]) -> None:
        wanted = set(_bitfinex_symbols(req))
        if not wanted & self.feed.known_names():
            await self.s.send_control('{"event":"error","msg":"symbol: invalid","code":10300}')
            return
        found = self._find_subscribed(req, wanted)
        if found is None:
            self.next_chan += 1
            ack = {k: v for k, v in req.items() if k != "event"}
            await self.s.send_control(
                _dumps({"event": "subscribed", "chanId": self.next_chan, **ack})
            )
            return
        pos, ack_frame = found
        chan_id = ack_frame.msg.get("chanId")
        await self.s.send_control(ack_frame.data)
        first, self.subscribed_any = not self.subscribed_any, True
        token = self.add_live(chan_id)
        info = self.add_live("info") if first else None
        items: list[_Item] = []
        prev: object = None  # the token of the frame before on the recorded connection
        for frame in self.feed.frames[pos + 1 :]:
            if frame.conn != ack_frame.conn:
                continue
            msg = frame.msg
            tok: object = None
            if isinstance(msg, list) and msg and msg[0] == chan_id:
                tok = token
            elif info and isinstance(msg, dict) and msg.get("event") == "info" and "code" in msg:
                tok = info
            elif msg is None and isinstance(frame.data, bytes):
                tok = prev  # a non-JSON binary frame goes where it was recorded
            if tok is not None:
                items.append(_Item(frame.ts, frame.data, tok))
            prev = tok
        self.s.start_stream(items)

    def _find_subscribed(
        self, req: Mapping[str, Json], wanted: set[str]
    ) -> tuple[int, Frame] | None:
        for pos, frame in enumerate(self.feed.frames):
            msg = frame.msg
            if not isinstance(msg, dict) or msg.get("event") != "subscribed":
                continue
            if msg.get("channel") != req.get("channel") or not wanted & set(_bitfinex_symbols(msg)):
                continue
            if req.get("channel") == "book" and msg.get("prec", "P0") != req.get("prec", "P0"):
                continue
            return pos, frame
        return None


_PROTOCOLS: dict[str, Callable[[_Session], _Protocol]] = {
    "binance": _Binance,
    "coinbase": _Coinbase,
    "bitstamp": _Bitstamp,
    "bitfinex": _Bitfinex,
}


# --------------------------------------------------------------------------------------------
# Background thread for synchronous code
# --------------------------------------------------------------------------------------------


class ReplayThread:
    """Runs a ``ReplayServer`` in a background thread: ``with ReplayThread([path]) as r: ...``.

    Takes the same arguments as ``ReplayServer`` plus ``port``.
    """

    def __init__(
        self,
        captures: Sequence[str | os.PathLike[str] | Capture],
        *,
        port: int = 0,
        **kwargs: Any,
    ) -> None:
        self.server = ReplayServer(captures, **kwargs)
        self._port_wanted = port
        self._ready = threading.Event()
        self._error: Exception | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server._port()

    @property
    def http_url(self) -> str:
        return self.server.http_url

    @property
    def ws_url(self) -> str:
        return self.server.ws_url

    @property
    def faults(self) -> Faults:
        return self.server.faults

    @property
    def stats(self) -> ReplayStats:
        return self.server.stats

    def set_http(
        self,
        path_and_query: str,
        body: str | bytes,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.server.set_http(path_and_query, body, status, headers)

    def __enter__(self) -> ReplayThread:
        self._thread = threading.Thread(target=self._run, name="replay-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError("replay server did not start") from self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None and self._scope is not None:
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(self._scope.cancel)
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except Exception as exc:  # reported to the starting thread by __enter__
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        async with trio.open_nursery() as nursery:
            self._token = trio.lowlevel.current_trio_token()
            self._scope = nursery.cancel_scope
            await nursery.start(self.server.serve, self._port_wanted)
            self._ready.set()


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ops.replay",
        description="Serve exchange captures (REST + websocket) on 127.0.0.1.",
    )
    p.add_argument("--capture", action="append", required=True, type=Path, metavar="FILE")
    p.add_argument("--port", type=int, default=0, help="0 = any free port (logged)")
    p.add_argument("--speed", type=float, default=0.0, help="pace multiplier; 0 = max speed")
    p.add_argument("--loop", action="store_true", help="close with 1001 at the end of frames")
    p.add_argument("--coinbase-test-key", metavar="KEY:SECRET:PASS", default=None)
    p.add_argument("--ping-interval", type=float, default=20.0, metavar="S")
    p.add_argument("--log-level", default="info")
    f = p.add_argument_group(
        "faults",
        "Websocket faults fire once per connection, after N data frames, on the next "
        "--fault-connections connections; handshake and HTTP faults on the next K requests.",
    )
    f.add_argument("--fault-connections", type=int, default=1, metavar="K", help="0 = all")
    f.add_argument(
        "--drop-after",
        type=int,
        metavar="N",
        help="cut the TCP stream after N data frames; --drop-after 0 --fault-connections 0 "
        "is a flapping server (every connection closes right after the subscription ack)",
    )
    f.add_argument("--stall-after", type=int, metavar="N")
    f.add_argument("--stall-s", type=float, default=30.0, metavar="S")
    f.add_argument("--skip-frame", type=int, action="append", default=[], metavar="K")
    f.add_argument("--garbage-after", type=int, metavar="N")
    f.add_argument("--oversized-after", type=int, metavar="N")
    f.add_argument("--oversized-bytes", type=int, default=2 * 1024 * 1024, metavar="B")
    f.add_argument("--reconnect-request-after", type=int, metavar="N")
    f.add_argument("--http-errors", type=int, default=0, metavar="K")
    f.add_argument("--http-error-status", type=int, default=429, choices=(429, 418))
    f.add_argument("--retry-after", type=int, default=1, metavar="S")
    f.add_argument("--reject-handshakes", type=int, default=0, metavar="K")
    f.add_argument("--reject-status", type=int, default=503)
    f.add_argument("--reject-retry-after", type=int, metavar="S")
    f.add_argument(
        "--bad-handshakes",
        type=int,
        default=0,
        metavar="K",
        help="answer the next K websocket handshakes with --bad-handshake",
    )
    f.add_argument(
        "--bad-handshake",
        choices=HANDSHAKE_FAULTS,
        default="hang",
        help="hang: never answer; bad_accept: 101 with a wrong Sec-WebSocket-Accept; "
        "no_upgrade: 101 without Upgrade/Connection; garbage: random bytes; "
        "close: half a 101 reply, then close (default: hang)",
    )
    f.add_argument("--nested-after", type=int, metavar="N", help="send a deeply nested JSON array")
    f.add_argument("--nested-depth", type=int, default=100_000, metavar="D")
    f.add_argument(
        "--inject",
        action=_InjectAction,
        default=[],
        metavar="N:TEXT",
        help="send TEXT as a text frame after N data frames (repeatable, in order)",
    )
    f.add_argument(
        "--inject-base64",
        action=_InjectAction,
        dest="inject",
        metavar="N:BASE64",
        help="send the decoded bytes as a binary frame after N data frames (repeatable)",
    )
    return p


class _InjectAction(argparse.Action):
    """Keeps --inject and --inject-base64 values in command-line order."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        getattr(namespace, self.dest).append((option_string, str(values)))


def _parse_inject(specs: Sequence[tuple[str, str]]) -> tuple[tuple[int, str | bytes], ...]:
    """``(flag, "N:VALUE")`` pairs as ``Faults.inject``; raises ValueError naming a bad one."""
    out: list[tuple[int, str | bytes]] = []
    for flag, spec in specs:
        after, sep, value = spec.partition(":")
        if not sep or not after.isdigit():
            raise ValueError(f"{flag} must be N:VALUE with N >= 0, got {spec[:60]!r}")
        frame: str | bytes = value
        if flag == "--inject-base64":
            try:
                frame = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"{flag} value is not base64: {value[:60]!r}") from None
        out.append((int(after), frame))
    return tuple(out)


def _fail(message: str) -> int:
    print(f"ops.replay: error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m ops.replay``; returns the exit code."""
    from collector.common.logs import configure_logging

    args = _build_parser().parse_args(argv)
    if args.speed < 0:
        return _fail(f"--speed must be >= 0, got {args.speed}")
    if not 0 <= args.port <= 65535:
        return _fail(f"--port out of range: {args.port}")
    if not 100 <= args.reject_status <= 599:
        return _fail(f"--reject-status is not an HTTP status: {args.reject_status}")
    if args.nested_depth < 1:
        return _fail(f"--nested-depth must be >= 1, got {args.nested_depth}")
    try:
        inject = _parse_inject(args.inject)
    except ValueError as exc:
        return _fail(str(exc))
    auth: CoinbaseTestKey | None = None
    spec = args.coinbase_test_key or os.environ.get("REPLAY_COINBASE_TEST_KEY")
    if spec:
        key, secret, passphrase = (spec.split(":", 2) + ["", ""])[:3]
        try:
            base64.b64decode(secret, validate=True)
        except (binascii.Error, ValueError):
            secret = ""
        if not (key and secret and passphrase):
            return _fail("--coinbase-test-key must be KEY:BASE64SECRET:PASSPHRASE")
        auth = CoinbaseTestKey(key, secret, passphrase)
    captures: list[Capture] = []
    for path in args.capture:
        try:
            captures.append(Capture.load(path))
        except CaptureError as exc:
            return _fail(str(exc))
    faults = Faults(
        ws_fault_connections=args.fault_connections or None,
        drop_after=args.drop_after,
        stall_after=args.stall_after,
        stall_s=args.stall_s,
        skip_frames=tuple(args.skip_frame),
        garbage_after=args.garbage_after,
        oversized_after=args.oversized_after,
        oversized_bytes=args.oversized_bytes,
        reconnect_request_after=args.reconnect_request_after,
        http_errors=args.http_errors,
        http_error_status=args.http_error_status,
        http_retry_after_s=args.retry_after,
        reject_handshakes=args.reject_handshakes,
        reject_status=args.reject_status,
        reject_retry_after_s=args.reject_retry_after,
        bad_handshakes=args.bad_handshakes,
        bad_handshake=args.bad_handshake,
        nested_after=args.nested_after,
        nested_depth=args.nested_depth,
        inject=inject,
    )
    configure_logging(args.log_level)
    server = ReplayServer(
        captures,
        speed=args.speed or None,
        loop=args.loop,
        faults=faults,
        coinbase_auth=auth,
        ping_interval_s=args.ping_interval,
    )
    try:
        trio.run(_run_until_signal, server, args.port)
    except OSError as exc:
        return _fail(f"cannot listen on {HOST}:{args.port}: {exc}")
    return 0


async def _run_until_signal(server: ReplayServer, port: int) -> None:
    import signal

    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            await nursery.start(server.serve, port)
            async for _ in signals:
                log.info("replay.stopping")
                nursery.cancel_scope.cancel()
                break


if __name__ == "__main__":
    sys.exit(main())
