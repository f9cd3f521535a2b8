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


class UnexpectedMessage(ProtocolError):
    """A message the adapter cannot turn into records: a protocol change must be loud.

    ``reason`` is one of :data:`REASONS`; ``field`` names the offending field for
    ``missing_field`` and ``bad_value`` (e.g. ``"price"``, ``"E"``).
    """

    def __init__(
        self, message: str, *, excerpt: str = "", reason: str = MALFORMED, field: str = ""
    ):
        super().__init__(message, excerpt=excerpt)
        self.reason = reason
        self.field = field

    @property
    def reason_key(self) -> str:
        """``reason`` or ``reason:field``: the key it is counted under."""
        return f"{self.reason}:{self.field}" if self.field else self.reason
