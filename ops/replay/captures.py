"""Captures: loading, writing, and the per-venue view the server serves from.

A capture uses the raw JSONL envelope of ``shared/data/recorded`` (``t``/``conn``/``ts``/
``data``, optionally a ``header`` line naming the exchange); a collector's raw file is one
too. ``write_capture`` builds small ones for unrecorded shapes. An event with
``"encoding": "base64"`` carries the exact bytes of a binary websocket frame (or a REST
body), base64-encoded; it is served as exactly those bytes.

``Feed`` is what one venue serves: the REST answers and every recorded recv frame of its
captures, in file order, indexed by the subscription keys its venue gives each frame.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import gzip
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import orjson

from ops.replay.venues import VENUES, Venue, venue_named_in
from ops.replay.venues.base import Json


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


def norm_path(path: str) -> str:
    return path.rstrip("/") or "/"


def split_target(target: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """A request target as (path without trailing slash, sorted query parameters)."""
    parts = urlsplit(target)
    params = tuple(sorted(parse_qsl(parts.query, keep_blank_values=True)))
    return norm_path(parts.path), params


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
        fallback = venue_named_in(p.name)
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
        ``exchange`` if given, else the ``header`` line's, else the first venue named by a
        host in the URLs, else ``fallback``.

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
                guess = guess or venue_named_in(str(event.get("exchange", "")))
                continue
            text = _event_data(event, source)
            if kind == "http":
                url = str(event.get("url", ""))
                guess = guess or venue_named_in(urlsplit(url).netloc)
                http_records.append(_http_record(event, url, text))
                continue
            name = str(event.get("conn", ""))
            conn = conns.setdefault(name, RecordedConnection(name))
            if kind == "connect":
                conn.addr = str(event.get("addr", ""))
                guess = guess or venue_named_in(urlsplit(conn.addr).netloc)
            elif kind in ("send", "recv"):
                try:
                    msg = orjson.loads(text)
                except orjson.JSONDecodeError:
                    msg = None
                frame = Frame(name, float(event.get("ts", 0.0)), text, msg)
                (conn.sends if kind == "send" else conn.recvs).append(frame)
        chosen = exchange or guess or fallback
        if chosen not in VENUES:
            raise CaptureError(f"{source}: cannot tell the exchange (got {chosen!r})")
        return cls(chosen, http_records, conns, header, source)


def _http_record(event: Mapping[str, Json], url: str, body: str | bytes) -> HttpRecord:
    path, params = split_target(url)
    hdrs = event.get("headers") or {}
    return HttpRecord(
        path=path,
        params=params,
        status=int(event.get("status", 200)),
        body=body.encode() if isinstance(body, str) else body,
        headers=tuple((str(k), str(v)) for k, v in dict(hdrs).items()),
    )


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


class Feed:
    """Everything one venue serves: REST answers and all recorded recv frames, in order."""

    def __init__(self, venue: Venue, captures: Sequence[Capture]) -> None:
        self.venue = venue
        self.exchange = venue.NAME
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
            keys = venue.frame_keys(frame, addrs.get(frame.conn, ""))
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
        """The decoded body of the first recorded 200 answer for ``path``, or None."""
        for rec in self.http:
            if rec.path == path and rec.status == 200:
                with contextlib.suppress(orjson.JSONDecodeError):
                    return orjson.loads(rec.body)
        return None

    def known_names(self) -> set[str]:
        """Valid symbols/products/pairs: from the listing body when recorded, else the frames."""
        if self._known is None:
            self._known = self.venue.known_names(self)
        return self._known
