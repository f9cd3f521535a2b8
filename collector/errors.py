"""Exception tree of the collector.

    CollectorError                  base of everything raised on purpose
    ├── ConfigError                 bad CLI argument, config file or environment (exit code 2)
    ├── FeedError                   the exchange refused us (unknown symbol, auth failure): fatal
    └── ProtocolError               a frame we cannot make sense of
        ├── UnexpectedMessage       a shape the adapter does not know
        ├── SequenceGap             a missing update in a sequenced stream (triggers a resync)
        └── SnapshotMismatch        a snapshot that cannot be aligned with the buffered stream

Errors carry fields (exchange, symbol, excerpt) as attributes, not only a message.
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


class UnexpectedMessage(ProtocolError):
    """A message shape the adapter does not know: a protocol change must be loud."""


class SequenceGap(ProtocolError):
    """Updates were missed: ``expected`` is the id we needed, ``got`` the one that came."""

    def __init__(self, message: str, *, expected: int, got: int, excerpt: str = ""):
        super().__init__(message, excerpt=excerpt)
        self.expected = expected
        self.got = got


class SnapshotMismatch(ProtocolError):
    """A snapshot that does not overlap the buffered updates (stale or too new)."""
