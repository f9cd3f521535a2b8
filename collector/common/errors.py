"""Exception tree of the collector.

    CollectorError                  base of everything raised on purpose
    ├── ConfigError                 bad CLI argument, config file or environment (exit code 2)
    ├── FeedError                   the exchange refused us (unknown symbol, auth failure): fatal
    └── ProtocolError               a frame we cannot make sense of
        └── UnexpectedMessage       a shape the adapter does not know

Errors carry fields (exchange, symbol, excerpt) as attributes, not only a message.

A sequence gap or a snapshot that does not align is not an error: it is an expected event of a
sequenced stream, so the pure state machines (``book.BookSync``, ``tradeseq.TradeSequence``,
``l3book.L3Sync``) return it as a verdict, and the collector records it (a ``gap`` or ``resync``
marker), counts it and resyncs.
"""

from __future__ import annotations

from typing import Final


class CollectorError(Exception):
    """Base class of the collector's own errors."""


class ConfigError(CollectorError):
    """Invalid configuration: the message names the bad value."""


class FeedError(CollectorError):
    """The exchange rejected the subscription or the credentials; retrying will not help."""

    def __init__(self, message: str, *, exchange: str = "", symbol: str = "", excerpt: str = ""):
        super().__init__(message)
        self.exchange = exchange
        self.symbol = symbol
        self.excerpt = excerpt


class ProtocolError(CollectorError):
    """A frame that breaks the exchange's protocol as we understand it."""

    def __init__(self, message: str, *, excerpt: str = ""):
        super().__init__(message)
        self.excerpt = excerpt


# Why a frame produced no rows (``UnexpectedMessage.reason``); counted per reason in the
# status file and the stats line.
MALFORMED = "malformed"  # not JSON / not the expected structure at all
UNKNOWN_TYPE = "unknown_type"  # valid JSON, but a message type the adapter does not know
MISSING_FIELD = "missing_field"  # a known type without a field it must have (``field`` names it)
BAD_VALUE = "bad_value"  # a field that fails the boundary grammar (``field`` names it)
FOREIGN_SYMBOL = "foreign_symbol"  # a frame of another symbol than the stream's
REASONS = (MALFORMED, UNKNOWN_TYPE, MISSING_FIELD, BAD_VALUE, FOREIGN_SYMBOL)

# What a websocket frame was, one kind each (``Stats.frames_by_kind``: they add up to the
# frames): parsed into records; parsed, but carrying fields the adapter does not know (a
# notice, ``Control("unexpected_field")``: rows are still written); a known control frame
# (subscription ack, heartbeat, error, reconnect or maintenance notice); a known type this
# stream does not record (Binance ``bookTicker``, Coinbase ``ticker``, Bitfinex ``tu``); or
# one of the reasons above (no records).
PARSED = "parsed"
UNEXPECTED_FIELD: Final = "unexpected_field"
CONTROL = "control"
IGNORED = "ignored"
FRAME_KINDS = (PARSED, UNEXPECTED_FIELD, CONTROL, IGNORED, *REASONS)
# The kinds that say the exchange changed its messages: each distinct key (``new_kind_key``,
# e.g. ``unknown_type:teleport``, ``unexpected_field:trade.X``, ``missing_field:match.price``)
# is alerted once and counted in ``Stats.new_kinds``.
NEW_KINDS = (UNKNOWN_TYPE, UNEXPECTED_FIELD, MISSING_FIELD)

# Names that come from a frame (a message type, a field) become counter keys, alert text and
# report keys: one bounded token of these characters, whatever the exchange sent.
MAX_NAME_CHARS = 40
_NAME_OK = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-@:[]")


def clean_name(value: object) -> str:
    """A message type or field name as one short, printable token: at most
    :data:`MAX_NAME_CHARS` characters of ``[A-Za-z0-9_-@:[]]``, every other character
    (a newline, a dot, a comma, a space, a quote...) replaced by ``?``, a longer name cut and
    marked with ``~``. Not a string: its JSON-ish text, cleaned the same way; None: ``""``."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else repr(value)
    head = text[: MAX_NAME_CHARS + 1]
    out = "".join(c if c in _NAME_OK else "?" for c in head[:MAX_NAME_CHARS])
    return out + "~" if len(head) > MAX_NAME_CHARS else out


def clean_excerpt(text: str, limit: int = 200) -> str:
    """The start of a frame for a human (an alert, a report): at most ``limit`` characters,
    every character that is not printable (newline, tab, control, non-characters) escaped,
    so an excerpt is always one line."""
    head = text[:limit]
    if head.isprintable():
        return head
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in head)[
        :limit
    ]


class UnexpectedMessage(ProtocolError):
    """A message the adapter cannot turn into records: a protocol change must be loud.

    ``reason`` is one of :data:`REASONS`; ``field`` names the offending field for
    ``missing_field`` and ``bad_value`` (e.g. ``"price"``, ``"E"``); ``kind`` is the
    message type as the exchange names it (``"trade"``, ``"l2update"``, an unknown type's
    name), cleaned by :func:`clean_name`, or ``""`` where the frame has none.
    """

    def __init__(
        self,
        message: str,
        *,
        excerpt: str = "",
        reason: str = MALFORMED,
        field: str = "",
        kind: object = "",
    ):
        super().__init__(message, excerpt=excerpt)
        self.reason = reason
        self.field = field
        self.kind = clean_name(kind)

    @property
    def reason_key(self) -> str:
        """``reason`` or ``reason:field``: the key it is counted under."""
        return f"{self.reason}:{self.field}" if self.field else self.reason

    @property
    def new_kind_key(self) -> str | None:
        """The key of what is new in the stream (``unknown_type:<type>``,
        ``missing_field:<type>.<field>``), or None for the other reasons."""
        kind = self.kind or "-"
        if self.reason == UNKNOWN_TYPE:
            return f"{UNKNOWN_TYPE}:{kind}"
        if self.reason == MISSING_FIELD:
            return f"{MISSING_FIELD}:{kind}.{clean_name(self.field)}"
        return None
