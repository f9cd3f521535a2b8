"""The ``Listing`` record and the screen every listed name passes (pure, no I/O).

Produced by the adapters' ``parse_listing_body`` (an ``ExchangeAdapter`` capability) and
consumed by the security master. Every attribute keeps the venue's own string (decimal
strings stay strings).

Listing names are untrusted input: a trading pair becomes a supervisord program, a command
line argument and a directory name. :func:`screen` therefore checks every listing against
a grammar before anything downstream sees it:

============== ==================================================================
attribute      grammar (``re.fullmatch``)
============== ==================================================================
trading_pair   the exchange adapter's ``SYMBOL_PATTERN`` (``ADAPTERS[exchange]``)
base, quote    ``ASSET_PATTERN``: 1-20 of ``A-Z 0-9`` (conservative: ASCII only)
status         ``STATUS_PATTERN``: 1-32 of ``A-Z a-z 0-9 _``
tick/lot/min   ``DECIMAL_PATTERN``: digits with at most one point, at most 40 chars
============== ==================================================================

A listing that does not fit is refused whole (a :class:`RefusedListing` with the reason),
never half-stored: it is skipped, counted and alerted by the security master. The grammars are
deliberately narrower than what a venue might one day list (e.g. a non-ASCII asset name): such
a listing is refused and a human decides, rather than the name flowing on unchecked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

ASSET_PATTERN = re.compile(r"[A-Z0-9]{1,20}")
STATUS_PATTERN = re.compile(r"[A-Za-z0-9_]{1,32}")
DECIMAL_PATTERN = re.compile(r"[0-9]{1,20}(?:\.[0-9]{1,19})?")
# Refusal reasons quote at most this much of the offending value (repr, so one line).
_MAX_SHOWN = 60


@dataclass(frozen=True, slots=True)
class Listing:
    """One tradable pair as listed by an exchange's REST endpoint.

    Attributes:
        exchange: exchange id (``binance``, ``coinbase``).
        trading_pair: the exchange-native symbol (``BTCUSDT``, ``BTC-USD``).
        base: base asset as the venue spells it.
        quote: quote asset as the venue spells it.
        status: the venue's status string verbatim (``TRADING``, ``BREAK``, ``online``...).
        trading_enabled: True when orders can trade now (Binance ``status == "TRADING"``;
            Coinbase ``status == "online"`` and not ``trading_disabled``).
        tick_size: price increment, venue string, or None where the venue gives none.
        lot_size: quantity increment, venue string, or None.
        min_notional: minimum order value in quote currency, venue string, or None.
    """

    exchange: str
    trading_pair: str
    base: str
    quote: str
    status: str
    trading_enabled: bool
    tick_size: str | None = None
    lot_size: str | None = None
    min_notional: str | None = None


@dataclass(frozen=True, slots=True)
class RefusedListing:
    """A listing that does not fit the grammar: never stored, never trackable.

    Attributes:
        exchange: exchange id.
        trading_pair: the pair exactly as the venue sent it (untrusted: repr it to show it).
        reason: one line naming the attribute and its (repr'd, truncated) value.
    """

    exchange: str
    trading_pair: str
    reason: str


@dataclass(frozen=True, slots=True)
class ParsedListings:
    """One listings body: the listings that fit the grammar and those refused."""

    listings: tuple[Listing, ...]
    refused: tuple[RefusedListing, ...] = ()


def shown(value: str) -> str:
    """``repr`` of an untrusted string, truncated: always one printable line."""
    if len(value) <= _MAX_SHOWN:
        return repr(value)
    return f"{value[:_MAX_SHOWN]!r}...({len(value)} chars)"


def check_listing(listing: Listing, symbol_pattern: re.Pattern[str]) -> str | None:
    """The reason ``listing`` is refused, or None when every attribute fits its grammar."""
    if not symbol_pattern.fullmatch(listing.trading_pair):
        return (
            f"trading_pair {shown(listing.trading_pair)} does not fit the {listing.exchange} "
            f"symbol grammar {symbol_pattern.pattern}"
        )
    for name, value, pattern in (
        ("base", listing.base, ASSET_PATTERN),
        ("quote", listing.quote, ASSET_PATTERN),
        ("status", listing.status, STATUS_PATTERN),
        ("tick_size", listing.tick_size, DECIMAL_PATTERN),
        ("lot_size", listing.lot_size, DECIMAL_PATTERN),
        ("min_notional", listing.min_notional, DECIMAL_PATTERN),
    ):
        if value is not None and not pattern.fullmatch(value):
            return (
                f"{listing.trading_pair} {name} {shown(value)} does not fit the grammar "
                f"{pattern.pattern}"
            )
    return None


def screen(listings: Iterable[Listing], symbol_pattern: re.Pattern[str]) -> ParsedListings:
    """Split parsed listings into those that fit the grammar and those refused (order kept)."""
    ok: list[Listing] = []
    refused: list[RefusedListing] = []
    for listing in listings:
        reason = check_listing(listing, symbol_pattern)
        if reason is None:
            ok.append(listing)
        else:
            refused.append(RefusedListing(listing.exchange, listing.trading_pair, reason))
    return ParsedListings(tuple(ok), tuple(refused))
