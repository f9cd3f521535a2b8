"""Registry of exchange adapters: exchange id → pure adapter module.

Kept import-light: adapters need only orjson and the model, never trio.
"""

from __future__ import annotations

from types import ModuleType

from collector.exchanges import binance, bitfinex, bitstamp, coinbase

ADAPTERS: dict[str, ModuleType] = {
    binance.EXCHANGE: binance,
    coinbase.EXCHANGE: coinbase,
    bitstamp.EXCHANGE: bitstamp,
    bitfinex.EXCHANGE: bitfinex,
}
