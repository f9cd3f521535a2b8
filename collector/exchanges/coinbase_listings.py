"""Coinbase Exchange listings: ``GET /products`` body → ``Listing`` records (pure).

Docs: docs.cdp.coinbase.com/exchange/reference/exchangerestapi_getproducts; see
shared/docs/exchanges.md §2.

Coverage (field → source → evidence):

| Listing field | /products field | evidence |
|---|---|---|
| trading_pair | ``id`` (BTC-USD) | recorded 2021-04-17 (162 products) |
| base / quote | ``base_currency`` / ``quote_currency`` | recorded |
| status | ``status`` verbatim (online, offline, delisted) | recorded (online) + docs |
| trading_enabled | ``status == "online"`` and not ``trading_disabled`` | recorded + docs |
| tick_size | ``quote_increment`` | recorded |
| lot_size | ``base_increment`` | recorded |
| min_notional | ``min_market_funds`` | recorded (string) |

Quirks: ``trading_disabled`` can be true while ``status`` still says ``online`` (a halt), so
it is folded into ``trading_enabled`` rather than dropped. Fields removed in 2022-06
(``base_min_size``, ``base_max_size``, ``max_market_funds``) are not used.

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

EXCHANGE = "coinbase"
LISTINGS_PATH = "/products"


class RawProduct(TypedDict, total=False):
    id: str  # exchange-native product id, e.g. BTC-USD
    base_currency: str  # base asset
    quote_currency: str  # quote asset
    quote_increment: str  # price tick
    base_increment: str  # size increment
    min_market_funds: str  # minimum order value in quote currency
    status: str  # online | offline | delisted
    trading_disabled: bool  # a halt, even while status is online


def build_listings_url(base_url: str) -> str:
    """The /products URL under a REST base URL (``https://api.exchange.coinbase.com``)."""
    return base_url.rstrip("/") + LISTINGS_PATH


def _str_field(obj: Mapping[str, Any], key: str, excerpt: str) -> str:
    # An empty string is a shape the grammar refuses (one listing skipped), not a broken body.
    value = obj.get(key)
    if not isinstance(value, str):
        raise UnexpectedMessage(
            f"coinbase /products: field {key!r} missing or not a string", excerpt=excerpt
        )
    return value


def _opt_str(obj: Mapping[str, Any], key: str, excerpt: str) -> str | None:
    value = obj.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):  # a number or an object is not the documented shape
        raise UnexpectedMessage(f"coinbase /products: {key!r} is not a string", excerpt=excerpt)
    return value


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
    """Parse a /products body into listings, in the order the exchange gives them.

    Raises:
        UnexpectedMessage: the body is not JSON, or not a list of products.
    """
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UnexpectedMessage(
            f"coinbase /products: not JSON ({exc})", excerpt=_excerpt(body)
        ) from exc
    if not isinstance(doc, list):
        raise UnexpectedMessage("coinbase /products: body is not a list", excerpt=_excerpt(body))
    out: list[Listing] = []
    for prod in doc:
        if not isinstance(prod, dict):
            raise UnexpectedMessage(
                "coinbase /products: entry is not an object", excerpt=repr(prod)[:200]
            )
        excerpt = repr(prod)[:200]
        status = _str_field(prod, "status", excerpt)
        disabled = prod.get("trading_disabled", False)
        if not isinstance(disabled, bool):
            raise UnexpectedMessage(
                "coinbase /products: 'trading_disabled' is not a boolean", excerpt=excerpt
            )
        out.append(
            Listing(
                exchange=EXCHANGE,
                trading_pair=_str_field(prod, "id", excerpt),
                base=_str_field(prod, "base_currency", excerpt),
                quote=_str_field(prod, "quote_currency", excerpt),
                status=status,
                trading_enabled=status == "online" and not disabled,
                tick_size=_opt_str(prod, "quote_increment", excerpt),
                lot_size=_opt_str(prod, "base_increment", excerpt),
                min_notional=_opt_str(prod, "min_market_funds", excerpt),
            )
        )
    return out


def _excerpt(body: str | bytes) -> str:
    text = body if isinstance(body, str) else body[:400].decode("utf-8", "replace")
    return text[:200]
