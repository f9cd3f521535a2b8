"""Binance Spot listings: ``GET /api/v3/exchangeInfo`` body → ``Listing`` records (pure).

Docs: github.com/binance/binance-spot-api-docs ``rest-api.md`` (Exchange information) and
``filters.md``; see shared/docs/exchanges.md §1.

Coverage (field → source → evidence):

| Listing field | exchangeInfo field | evidence |
|---|---|---|
| trading_pair | ``symbol`` | recorded 2021-10-11 (1695 symbols) |
| status | ``status`` (TRADING, BREAK, HALT, END_OF_DAY, ...) | recorded (TRADING, BREAK) |
| base / quote | ``baseAsset`` / ``quoteAsset`` | recorded |
| tick_size | ``PRICE_FILTER.tickSize`` | recorded |
| lot_size | ``LOT_SIZE.stepSize`` | recorded |
| min_notional | ``MIN_NOTIONAL.minNotional`` | recorded |
| min_notional | else ``NOTIONAL.minNotional`` (replaced MIN_NOTIONAL in 2023) | docs |

Quirks: only ``TRADING`` means orders trade; ``BREAK`` is what a pair that is being
wound down (or not yet open) shows, so it is a status, not a delisting. A symbol missing
from the list is a delisting.

Untrusted names: ``parse_listing_body`` screens every listing (``listing.screen``) against the
adapter's ``SYMBOL_PATTERN`` and the asset, status and decimal grammars. One that does not fit
is returned as refused (skipped, counted, alerted by the security master), so the rest of the
body still applies; a wrong JSON type is a broken body (``UnexpectedMessage``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

import orjson

from collector.common.errors import UnexpectedMessage
from collector.exchanges import ADAPTERS
from collector.exchanges.listing import Listing, ParsedListings, screen

EXCHANGE = "binance"
LISTINGS_PATH = "/api/v3/exchangeInfo"


class RawFilter(TypedDict, total=False):
    filterType: str  # PRICE_FILTER | LOT_SIZE | MIN_NOTIONAL | NOTIONAL | ...
    tickSize: str  # PRICE_FILTER: price increment
    stepSize: str  # LOT_SIZE: quantity increment
    minNotional: str  # MIN_NOTIONAL / NOTIONAL: minimum price × quantity


class RawSymbol(TypedDict):
    symbol: str  # exchange-native pair, e.g. BTCUSDT
    status: str  # TRADING | BREAK | HALT | END_OF_DAY | CANCEL_ONLY
    baseAsset: str  # base asset, e.g. BTC
    quoteAsset: str  # quote asset, e.g. USDT
    filters: list[RawFilter]  # trading rules of the symbol


def build_listings_url(base_url: str) -> str:
    """The exchangeInfo URL under a REST base URL (``https://api.binance.com``)."""
    return base_url.rstrip("/") + LISTINGS_PATH


def _str_field(obj: Mapping[str, Any], key: str, body_excerpt: str) -> str:
    # An empty string is a shape the grammar refuses (one listing skipped), not a broken body.
    value = obj.get(key)
    if not isinstance(value, str):
        raise UnexpectedMessage(
            f"binance exchangeInfo: symbol field {key!r} missing or not a string",
            excerpt=body_excerpt,
        )
    return value


def _filter_value(filters: list[Any], types: tuple[str, ...], key: str, excerpt: str) -> str | None:
    for wanted in types:
        for f in filters:
            if isinstance(f, dict) and f.get("filterType") == wanted:
                value = f.get(key)
                if isinstance(value, str):
                    return value
                if value is not None:  # a number or an object is not the documented shape
                    raise UnexpectedMessage(
                        f"binance exchangeInfo: {wanted}.{key} is not a string", excerpt=excerpt
                    )
    return None


def parse_listings(body: str | bytes) -> list[Listing]:
    """The listings of a body that fit the grammar (refused ones are dropped).

    Use :func:`parse_listing_body` to also learn what was refused and why.
    """
    return list(parse_listing_body(body).listings)


def parse_listing_body(body: str | bytes) -> ParsedListings:
    """Parse a body and screen every listing (``listing.screen``, the adapter's
    ``SYMBOL_PATTERN``): listings that fit, and the refused ones with the reason.

    Raises:
        UnexpectedMessage: the body is not JSON, or not the expected shape.
    """
    return screen(_parse_all(body), ADAPTERS[EXCHANGE].SYMBOL_PATTERN)


def _parse_all(body: str | bytes) -> list[Listing]:
    """Parse an exchangeInfo body into listings, in the order the exchange gives them.

    Raises:
        UnexpectedMessage: the body is not JSON, or not the exchangeInfo shape.
    """
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UnexpectedMessage(
            f"binance exchangeInfo: not JSON ({exc})", excerpt=_excerpt(body)
        ) from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("symbols"), list):
        raise UnexpectedMessage("binance exchangeInfo: no 'symbols' list", excerpt=_excerpt(body))
    out: list[Listing] = []
    for sym in doc["symbols"]:
        if not isinstance(sym, dict):
            raise UnexpectedMessage(
                "binance exchangeInfo: symbol entry is not an object", excerpt=repr(sym)[:200]
            )
        excerpt = repr(sym)[:200]
        filters = sym.get("filters")
        if not isinstance(filters, list):
            raise UnexpectedMessage(
                "binance exchangeInfo: 'filters' is not a list", excerpt=excerpt
            )
        status = _str_field(sym, "status", excerpt)
        out.append(
            Listing(
                exchange=EXCHANGE,
                trading_pair=_str_field(sym, "symbol", excerpt),
                base=_str_field(sym, "baseAsset", excerpt),
                quote=_str_field(sym, "quoteAsset", excerpt),
                status=status,
                trading_enabled=status == "TRADING",
                tick_size=_filter_value(filters, ("PRICE_FILTER",), "tickSize", excerpt),
                lot_size=_filter_value(filters, ("LOT_SIZE",), "stepSize", excerpt),
                min_notional=_filter_value(
                    filters, ("MIN_NOTIONAL", "NOTIONAL"), "minNotional", excerpt
                ),
            )
        )
    return out


def _excerpt(body: str | bytes) -> str:
    text = body if isinstance(body, str) else body[:400].decode("utf-8", "replace")
    return text[:200]
