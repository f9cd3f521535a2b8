"""Registry of exchange adapters: exchange id → pure adapter module (an ExchangeAdapter).

The one exchange list: ``--exchange`` choices, the config schema, the security master's
listing sources and QA's views are all derived from it (``base.py`` has the checklist for
adding an exchange). Kept import-light: adapters need only orjson, the model and the
stdlib-only plumbing of ``collector.common``, never trio.
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
