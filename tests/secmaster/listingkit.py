"""The listings an adapter accepts from a body (what secmaster stores), for tests."""

from __future__ import annotations

from collector.exchanges.base import ExchangeAdapter
from collector.exchanges.listing import Listing


def parse_listings(adapter: ExchangeAdapter, body: str | bytes) -> list[Listing]:
    """The listings of ``body`` that fit the adapter's grammar (refused ones dropped)."""
    assert adapter.parse_listing_body is not None
    return list(adapter.parse_listing_body(body).listings)
