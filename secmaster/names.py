"""What a name in the tracked universe must be: pairs, data types and listing filters.

Pair names are untrusted (they come from exchange listings, the command line, a shared
document in S3): a pair is a symbol of its exchange only if it fits the adapter's
``SYMBOL_PATTERN``; a data type only if the adapter collects it; a listing filter (``--quote``,
``--base``, ``--status``, ``[secmaster] auto_track``) only if it fits the grammar the listings
themselves pass (``collector.exchanges.listing``), so a filter that could never match (a
lowercase quote, a newline) is refused instead of silently selecting nothing. Every message is
one line with the value repr'd and truncated.

Its own module so that the settings, the universe and the tracking commands all use it without
importing each other.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from collector.exchanges import ADAPTERS
from collector.exchanges.listing import ASSET_PATTERN, STATUS_PATTERN, shown
from collector.model import DATA_TYPES

Stream = tuple[str, str, str]  # (exchange, trading pair, data type)

# Longest trading pair the tables hold (models.Tracked.trading_pair).
MAX_PAIR_LEN = 64

# The grammar of each listing filter: what the listings' own attributes pass.
FILTER_PATTERNS: dict[str, re.Pattern[str]] = {
    "quote": ASSET_PATTERN,
    "base": ASSET_PATTERN,
    "status": STATUS_PATTERN,
}


class UniverseError(Exception):
    """A track/untrack request that cannot be honoured (the message says why)."""


class UniverseStoreError(RuntimeError):
    """The universe's store cannot be used now (the bucket is unreachable, its document is
    broken, or it kept changing under us): one line naming the store, exit code 1."""


def stream_key(stream: Stream) -> str:
    """``exchange:pair:data_type``: as printed, as the config's per-stream tables key it, and
    as the fleet's placement hashes it (``ops.placement``)."""
    return ":".join(stream)


def pair_error(exchange: str, pair: str) -> str | None:
    """Why ``pair`` is not a symbol of ``exchange`` (one line, repr'd), or None if it fits."""
    if exchange not in ADAPTERS:
        return f"unknown exchange {shown(exchange)}"
    pattern = ADAPTERS[exchange].SYMBOL_PATTERN
    if not pattern.fullmatch(pair):
        return (
            f"{exchange} pair {shown(pair)} does not fit the {exchange} symbol grammar "
            f"{pattern.pattern}"
        )
    return None


def data_types_of(exchange: str) -> tuple[str, ...]:
    """Data types the exchange's adapter collects (none for an exchange not in the registry)."""
    adapter = ADAPTERS.get(exchange)
    return adapter.DATA_TYPES if adapter is not None else ()


def stream_error(exchange: str, pair: str, data_type: str) -> str | None:
    """Why a universe row must not reach the fleet (one line, values repr'd), or None."""
    error = pair_error(exchange, pair)
    if error is None and data_type not in data_types_of(exchange):
        error = f"data type {shown(data_type)} is not collected on {exchange}"
    return error


def check_pair(exchange: str, pair: str) -> None:
    """Refuse a pair that could not even be shown on one line (a control character) or is
    longer than the table allows, before any lookup.

    Raises:
        UniverseError: naming the pair (repr'd, truncated) and the grammar.
    """
    if pair.isprintable() and 0 < len(pair) <= MAX_PAIR_LEN and exchange in ADAPTERS:
        return
    raise UniverseError(pair_error(exchange, pair) or f"pair {shown(pair)} is not a symbol")


def check_data_types(exchange: str, data_types: Sequence[str]) -> list[str]:
    """Validate a data type list; raises UniverseError naming the bad value."""
    if not data_types:
        raise UniverseError("no data types given (e.g. --data-types trade,book)")
    supported = data_types_of(exchange)
    for d in data_types:
        if d not in DATA_TYPES:
            raise UniverseError(
                f"unknown data type {shown(d)} (choose from {', '.join(DATA_TYPES)})"
            )
        if d not in supported:
            raise UniverseError(
                f"data type {shown(d)} is not collected on {exchange} "
                f"(supported: {', '.join(supported)})"
            )
    return sorted(set(data_types))


def check_filter(name: str, value: str) -> str:
    """A listing filter value (``quote``, ``base``, ``status``) that fits its grammar.

    Raises:
        UniverseError: the value could never match a stored listing (message names it).
    """
    pattern = FILTER_PATTERNS[name]
    if not pattern.fullmatch(value):
        raise UniverseError(
            f"{name} {shown(value)} does not fit the listings' {name} grammar {pattern.pattern} "
            "(it would match nothing)"
        )
    return value
