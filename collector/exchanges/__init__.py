"""Registry of exchange adapters: exchange id → pure adapter module (an ExchangeAdapter).

Kept import-light: adapters need only orjson and the model, never trio.
"""

from __future__ import annotations

from collector.exchanges import binance, bitfinex, bitstamp, coinbase
from collector.exchanges.base import ExchangeAdapter

ADAPTERS: dict[str, ExchangeAdapter] = {
    binance.EXCHANGE: binance,
    coinbase.EXCHANGE: coinbase,
    bitstamp.EXCHANGE: bitstamp,
    bitfinex.EXCHANGE: bitfinex,
}

# The one exchange list of the fleet.
EXCHANGES = tuple(ADAPTERS)
