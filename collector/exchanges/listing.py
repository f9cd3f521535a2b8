"""The ``Listing`` record: one instrument as an exchange lists it (pure, no I/O).

Produced by the per-exchange ``*_listings.parse_listings`` functions and consumed by the
security master. Every attribute keeps the venue's own string (decimal strings stay strings).
"""

from __future__ import annotations

from dataclasses import dataclass


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
