"""The processor: every frame of a stream, in order — raw first, then parse, then dispatch.

    Frame ──▶ raw line (envelope: binary as base64, our credentials redacted) ──▶ effects.raw
          ──▶ adapter.make_parser(spec) ──▶ records ──▶ the stream's handler (handlers.py)
                                        ──▶ Controls: subscription state, error frames,
                                            reconnect notices, maintenance
          ──▶ a frame that cannot be read: counted per reason; the book is dropped

What the processor owns, for every data type:

- the raw envelope (:func:`envelope`), written before anything parses the frame, so a
  parser bug never loses data;
- parse errors, counted per reason (``Stats.parse_errors_by_reason``) and logged at most
  every 10 s; a frame that fails for another reason than an unknown type tells the handler
  (``on_bad_frame``: a book or l3 stream resyncs rather than keep a book it cannot trust);
- what each frame was (``Stats.frames_by_kind``: parsed, unexpected field, control, ignored,
  or the reason it failed; nothing is counted for a data frame, the common case), and what
  is new in the stream (an unknown type, an unexpected or a missing field: ``new_kinds``),
  told once per key to ``on_new_kind`` (live: the alert, ``collector/notices.py``);
- the subscription state of the connection: an error frame is fatal (``FeedError``) only
  when it answers our own subscribe request (before the ack, and naming none of our
  requests' ids or none at all); any other is counted and renews the connection;
- :meth:`Processor.handle` returns True only for a frame that carried market data (the
  session resets its reconnect backoff only then).

It needs no session, no socket, no trio and no clock but the frames' ``ts``: the app feeds
it live frames, and a rebuild feeds it the lines of a raw file (:meth:`Processor.replay`)
with file-mode :class:`collector.effects.Effects`, and gets the same rows. QA replays a raw
file the same way and reads each frame's records through the ``parse`` attribute (it wraps
it), so keep the per-frame parse a call of ``self.parse``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from typing import assert_never

import orjson

from collector.common.errors import UNEXPECTED_FIELD, UNKNOWN_TYPE, FeedError, UnexpectedMessage
from collector.common.structloglib import structlog
from collector.effects import Effects
from collector.exchanges.base import ExchangeAdapter, StreamSpec, excerpt
from collector.handlers import Handler
from collector.model import Control
from collector.session import Frame
from collector.status import Stats

log = structlog.get_logger()

# The raw `conn` of periodic L2 REST views recorded beside an l3 stream (for QA's cross-check).
L2_VIEW_CONN = "l2view"
# What replaces a credential in our own `send` frames in raw (adapter SEND_SECRET_FIELDS).
REDACTED = "<redacted>"
# The raw kinds that are frames (everything else in a raw file is one of our markers).
FRAME_KINDS = frozenset({"connect", "send", "recv", "disconnect", "http"})
# A parse error is logged at most this often (the rest are counted in the next line).
ERROR_LOG_EVERY_S = 10.0
_dumps = orjson.dumps
_NL = orjson.OPT_APPEND_NEWLINE


def redact(text: str, fields: Sequence[str]) -> str:
    """``text`` (one of our JSON `send` frames) with the values of ``fields`` replaced."""
    if not fields or not any(f'"{f}"' in text for f in fields):
        return text
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError:
        return REDACTED  # not ours to keep: it names a secret field but is not JSON
    if not isinstance(msg, dict):
        return REDACTED
    for f in fields:
        if f in msg:
            msg[f] = REDACTED
    return orjson.dumps(msg).decode()


def envelope(frame: Frame, secret_fields: Sequence[str] = ()) -> str:
    """One raw line in the envelope of shared/data/recorded (plus our own kinds).

    Binary websocket frames keep their exact bytes: ``data`` is their base64 and
    ``"encoding": "base64"`` says so.
    """
    d: dict[str, object] = {"t": frame.t, "conn": frame.conn, "ts": frame.ts}
    if frame.t in ("connect", "send"):
        d["addr"] = frame.addr
    data = frame.data
    if frame.t == "send" and isinstance(data, str):
        data = redact(data, secret_fields)
    if frame.t in ("send", "recv"):
        if isinstance(data, bytes):
            d["data"] = base64.b64encode(data).decode("ascii")
            d["encoding"] = "base64"
        else:
            d["data"] = data
    elif frame.t == "http":
        d["url"] = frame.addr
        d["status"] = frame.status
        d["data"] = data
    elif frame.t == "disconnect":
        d["reason"] = frame.reason
    return orjson.dumps(d).decode() + "\n"


def frame_from_raw(event: Mapping[str, object]) -> Frame:
    """The frame a raw line (decoded JSON, ``t`` in ``FRAME_KINDS``) was written from: the
    inverse of :func:`envelope` (a redacted credential stays redacted).

    Raises:
        ValueError: the line is not a frame of our envelope.
    """
    t, conn, ts = event.get("t"), event.get("conn"), event.get("ts")
    data = event.get("data", "")
    addr = event.get("addr", event.get("url", ""))
    reason, status = event.get("reason", ""), event.get("status", 0)
    if (
        t not in FRAME_KINDS
        or type(conn) is not str
        or (type(ts) is not float and type(ts) is not int)
        or type(data) is not str
        or type(addr) is not str
        or type(reason) is not str
        or type(status) is not int
    ):
        raise ValueError(f"not a frame of the raw envelope: {str(event)[:200]}")
    assert isinstance(t, str)
    body: str | bytes = data
    if event.get("encoding") == "base64":
        body = base64.b64decode(data, validate=True)
    return Frame(t, conn, float(ts), data=body, addr=addr, reason=reason, status=status)


class Processor:
    """Consumes one stream's frames in order (see the module docstring).

    Args:
        adapter: the exchange (``make_parser``, ``SEND_SECRET_FIELDS``).
        spec: the stream.
        handler: the stream's data-type handler (``handlers.for_stream``).
        effects: where raw lines, rows, markers and requests go.
        stats: the stream's counters.
        on_new_kind: called with (key, excerpt of the frame) the first time something new
            is seen in the stream (``Stats.add_new_kind``); None (a rebuild, QA) tells no one.
        on_connection: called after a ``connect`` or ``disconnect`` frame (live: the status
            file says so at once).
    """

    def __init__(
        self,
        adapter: ExchangeAdapter,
        spec: StreamSpec,
        handler: Handler,
        effects: Effects,
        stats: Stats,
        on_new_kind: Callable[[str, str], None] | None = None,
        on_connection: Callable[[], None] | None = None,
    ) -> None:
        self.exchange = adapter.EXCHANGE
        self.symbol = spec.symbol
        self.secret_fields: tuple[str, ...] = adapter.SEND_SECRET_FIELDS
        self.parse = adapter.make_parser(spec, self._unexpected)
        self.handler = handler
        self.effects = effects
        self.stats = stats
        self.on_new_kind = on_new_kind
        self.on_connection = on_connection
        # Bound once: the per-frame path calls them without attribute chains.
        self._add_raw = effects.raw.add
        self._on_record = handler.on_record
        # Per connection: has the exchange confirmed our subscription; ids of our requests.
        self._subscribed = False
        self._sent_ids: set[object] = set()
        self._noticed: str | bytes | None = None  # the last frame told to _unexpected
        self._last_error_log_s: float | None = None
        self._suppressed_errors = 0

    def handle(self, frame: Frame) -> bool:
        """One frame in arrival order; True when it carried market data."""
        if frame.t == "recv":
            return self.recv(frame.conn, frame.ts, frame.data)
        st = self.stats
        line = envelope(frame, self.secret_fields)
        self._add_raw(line, frame.ts)
        st.bytes_raw += len(line)
        if frame.t == "connect":
            self.effects.conn = frame.conn
            self._subscribed = False
            self._sent_ids = set()
            st.connected = True
            if self.on_connection is not None:
                self.on_connection()
        elif frame.t == "send":
            self._note_request(frame.data)
        elif frame.t == "disconnect":
            st.connected = False
            st.add_reconnect(frame.ts)
            self.handler.on_disconnect(frame.ts, frame.reason)
            if self.on_connection is not None:
                self.on_connection()
        elif frame.t == "http" and frame.conn != L2_VIEW_CONN:
            # (an L2_VIEW_CONN body is the exchange's own L2 view: for QA's cross-check only)
            try:
                self.handler.on_http(frame.data, frame.ts)
            except UnexpectedMessage as exc:
                self._parse_error(exc, frame.ts)
        return False

    def recv(self, conn: str, ts: float, data: str | bytes) -> bool:
        """A websocket frame received on ``conn`` at ``ts``: :meth:`handle` of a ``recv``
        frame without the Frame (the session's hot path); True when it carried market data."""
        st = self.stats
        if type(data) is str:  # the envelope of recv frames, in one call
            line = _dumps({"t": "recv", "conn": conn, "ts": ts, "data": data}, option=_NL).decode()
        else:
            line = envelope(Frame("recv", conn, ts, data=data))
        self._add_raw(line, ts)
        st.bytes_raw += len(line)
        st.frames += 1
        st.last_frame_at = ts
        if not st.hour_start_s <= ts < st.hour_end_s:
            st.roll(ts)
        ts_us = int(ts * 1_000_000)
        try:
            records = self.parse(data, ts_us)
        except UnexpectedMessage as exc:
            self._bad_frame(exc, Frame("recv", conn, ts, data=data))
            return False
        is_data = False
        on_record = self._on_record
        for rec in records:
            if type(rec) is Control:
                self._control(rec, data)
            else:
                is_data = True
            on_record(rec, ts, ts_us)
        if not is_data and self._noticed is not data:
            st.add_plain(records)  # (a noticed frame was counted as unexpected_field)
        return is_data

    def replay(self, event: Mapping[str, object]) -> None:
        """One line of a raw file (decoded JSON), as a rebuild feeds them: a frame is handled
        as if it came from the socket or REST; a marker that records a live decision
        (``resume``, ``trade_accept``) is repeated; every other marker is an output (the
        processor writes it again where the decision recurs) and is skipped."""
        t = event.get("t")
        if t in FRAME_KINDS:
            self.handle(frame_from_raw(event))
        elif t == "start":  # a run's settings (collector/runinfo.py): written again as read
            ts = event.get("ts")
            if type(ts) is not float and type(ts) is not int:
                raise ValueError(f"a start marker without a receive time: {str(event)[:200]}")
            self.effects.marker("start", float(ts), run=event.get("run"))
        else:
            self.handler.on_marker(event)

    def tick(self, now_s: float, *, final: bool = False) -> None:
        """Periodic, live only (before each flush, and ``final`` at shutdown)."""
        self.handler.tick(now_s, final=final)

    def wants_tick(self) -> bool:
        """Whether :meth:`tick` has anything to do (e.g. a trade held by the sequencer)."""
        return self.handler.wants_tick()

    @property
    def batch_quiet(self) -> bool:
        """Whether a quiet stream's frames may wait for the flush round (the handler's say)."""
        return self.handler.batch_quiet

    def _note_request(self, data: str | bytes) -> None:
        """Remember the id of a request we sent, so an error can be matched to it."""
        try:
            msg = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if isinstance(msg, dict) and msg.get("id") is not None:
            self._sent_ids.add(msg["id"])

    def _control(self, c: Control, data: str | bytes) -> None:
        kind = c.kind
        if kind == "error":
            self._error_frame(c, data)
        elif kind == "reconnect":
            log.warning("ws.server_reconnect", detail=c.detail)
            self.effects.request_reconnect(c.detail or "server asked")
        elif kind == "subscribed":
            self._subscribed = True
            log.info("ws.subscribed", detail=c.detail[:200])
        elif kind == "heartbeat":
            pass  # liveness only (a trade handler reads its last_trade_id)
        elif kind == "pause":
            log.warning("ws.exchange_maintenance", detail=c.detail[:200])
        else:
            assert_never(kind)

    def _error_frame(self, c: Control, data: str | bytes) -> None:
        """An error frame is fatal only when it answers our own subscribe request: before the
        subscription was confirmed, and the exchange names no other request. Any other is
        counted (it is in raw) and the connection is renewed."""
        answers_us = c.request_id is None or c.request_id in self._sent_ids
        if not self._subscribed and answers_us:
            raise FeedError(
                f"{self.exchange} rejected the subscription: {c.detail}",
                exchange=self.exchange,
                symbol=self.symbol,
                excerpt=str(data[:200]),
            )
        self.stats.error_frames += 1
        log.error(
            "ws.error_frame",
            detail=c.detail[:200],
            request_id=c.request_id,
            subscribed=self._subscribed,
            total=self.stats.error_frames,
        )
        self.effects.request_reconnect(f"error frame: {c.detail[:100]}")

    def _unexpected(self, detail: str, raw: str | bytes) -> None:
        """The parser's notice hook (exchanges/base.py ``FieldWatch``): the frame being
        parsed is of a known type but carries fields the adapter does not know (``detail``:
        ``"trade.X,trade.Y"``); it is parsed all the same."""
        st = self.stats
        ts = st.last_frame_at or 0.0
        st.add_unexpected(ts)
        self._noticed = raw
        for name in detail.split(","):
            self._new_kind(f"{UNEXPECTED_FIELD}:{name}", ts, raw)

    def _bad_frame(self, exc: UnexpectedMessage, frame: Frame) -> None:
        """A websocket frame that gave no records: its kind, what is new, the parse error."""
        self.stats.add_bad_frame(exc.reason, frame.ts)
        key = exc.new_kind_key
        if key is not None:
            self._new_kind(key, frame.ts, frame.data)
        self._parse_error(exc, frame.ts)

    def _new_kind(self, key: str, ts: float, raw: str | bytes) -> None:
        if self.stats.add_new_kind(key, ts) and self.on_new_kind is not None:
            self.on_new_kind(key, excerpt(raw))

    def _parse_error(self, exc: UnexpectedMessage, ts: float) -> None:
        """A frame that produced no records: counted per reason, logged (rate-limited on the
        frames' own time); a book or l3 stream cannot trust its book after a frame it could
        not read."""
        self.stats.add_parse_error(exc.reason_key)
        if exc.reason != UNKNOWN_TYPE:
            self.handler.on_bad_frame(exc.reason_key, ts)
        last = self._last_error_log_s
        if last is None or not 0 <= ts - last < ERROR_LOG_EVERY_S:  # (or the clock went back)
            log.error(
                "frame.parse_error",
                error=str(exc),
                reason=exc.reason_key,
                excerpt=exc.excerpt[:200],
                suppressed=self._suppressed_errors,
                total=self.stats.parse_errors,
            )
            self._last_error_log_s = ts
            self._suppressed_errors = 0
        else:
            self._suppressed_errors += 1
