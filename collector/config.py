"""The fleet's config file, whole: the common loader with the full schema.

``collector.common.config`` reads the file and knows every table that names no exchange and
no data type; this module adds what depends on the exchange registry and the data types:
``[exchanges.X]`` for each adapter with the options that adapter declares (``OPTIONS``; an
option kept in the shared ``[collector]`` table joins that table's keys), the per-data-type
tables and the keys of a per-stream ``[collector.overrides]`` entry, so that every program
refuses the same typos. Every program loads the file through :func:`load_config` here.

``[collector.overrides]`` gives one stream its own values:
``"binance:BTCUSDT:book" = { book_depth = 20, depth_update_speed_ms = 100 }``. A key is a
stream (``exchange:symbol:data_type``: a known exchange, a symbol of its grammar, a data type it
collects; it need not be tracked yet). Its values are the :data:`STREAM_VALUES` (the
``[collector]`` values only the collector itself reads, each where it applies: ``book_depth``
to book streams, ``l2_view_interval_s`` to l3 streams) and the options of that stream's
adapter. Each is checked by the same getter as its default, the message naming the stream
key. ``status_interval_s``, ``shutdown_timeout_s`` and the watchdog stay fleet-wide: ``ops``
reads them for every stream.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector.common.config import (
    ANY_KEY,
    BASE_SCHEMA,
    REGION,
    Config,
    get_float,
    get_int,
    region_allowed,
)
from collector.common.config import load_config as _load
from collector.common.errors import ConfigError
from collector.exchanges import ADAPTERS, EXCHANGES
from collector.exchanges.base import OptionValue
from collector.exchanges.listing import shown
from collector.model import DATA_TYPES, DEFAULT_BOOK_DEPTH, MAX_BOOK_DEPTH

# Keys every [exchanges.X] table may hold; an adapter adds its own options. ``regions``:
# where the fleet may collect it (read by ops.fleet; the adapter's EXCLUDED_REGION_PREFIXES
# is the default).
EXCHANGE_KEYS = ("ws_url", "rest_url", "max_connection_age_s", "regions")

# Adapter options that live in [collector] (one table for every exchange: keys must not clash).
_COLLECTOR_OPTIONS = tuple(
    option.key
    for adapter in ADAPTERS.values()
    for option in adapter.OPTIONS
    if option.table == "collector"
)
assert len(set(_COLLECTOR_OPTIONS)) == len(_COLLECTOR_OPTIONS)
assert not set(_COLLECTOR_OPTIONS) & set(BASE_SCHEMA["collector"])

Number = int | float


@dataclass(frozen=True)
class StreamValue:
    """A ``[collector]`` value a stream may override: its default, its one getter, and the
    data types it applies to (None: every one)."""

    key: str
    default: Number
    read: Callable[[Mapping[str, Any], str, Number], Number]  # (table, where, default)
    data_types: tuple[str, ...] | None = None


def _float(key: str, min_value: float) -> Callable[[Mapping[str, Any], str, Number], Number]:
    return lambda t, w, d: get_float(t, key, float(d), where=w, min_value=min_value)


def _int(
    key: str, min_value: int, max_value: int | None = None
) -> Callable[[Mapping[str, Any], str, Number], Number]:
    return lambda t, w, d: get_int(
        t, key, int(d), where=w, min_value=min_value, max_value=max_value
    )


STREAM_VALUES: dict[str, StreamValue] = {
    v.key: v
    for v in (
        StreamValue("flush_interval_s", 1.0, _float("flush_interval_s", 0.01)),
        StreamValue("sync_interval_s", 10.0, _float("sync_interval_s", 0.0)),
        StreamValue("stats_interval_s", 60.0, _float("stats_interval_s", 0.1)),
        StreamValue(
            "book_depth", DEFAULT_BOOK_DEPTH, _int("book_depth", 1, MAX_BOOK_DEPTH), ("book",)
        ),
        StreamValue("l2_view_interval_s", 60.0, _float("l2_view_interval_s", 0.0), ("l3",)),
        StreamValue("max_message_size", 16 * 1024 * 1024, _int("max_message_size", 1)),
    )
}
assert set(STREAM_VALUES) <= set(BASE_SCHEMA["collector"])
_OPTION_KEYS = tuple(dict.fromkeys(o.key for a in ADAPTERS.values() for o in a.OPTIONS))

CONFIG_SCHEMA: dict[str, tuple[str, ...]] = {
    **BASE_SCHEMA,
    "collector": (*BASE_SCHEMA["collector"], *_COLLECTOR_OPTIONS),
    "collector.watchdog": tuple(f"{dt}_s" for dt in DATA_TYPES),
    **{
        f"exchanges.{name}": (
            *EXCHANGE_KEYS,
            *(option.key for option in adapter.OPTIONS if option.table == "exchange"),
        )
        for name, adapter in ADAPTERS.items()
    },
    "collector.overrides.*": (*STREAM_VALUES, *_OPTION_KEYS),
    "secmaster.min_listings": EXCHANGES,
    "qa.row_count": DATA_TYPES,
    "qa.max_silence_s": DATA_TYPES,
}
assert ANY_KEY not in CONFIG_SCHEMA["exchanges"]


def load_config(path: Path | str | None = None) -> Config:
    """Read and check the config file (default: the repository's ``config.toml``)."""
    return _load(path, schema=CONFIG_SCHEMA)


# --- [collector] values other programs read too (ops status, ops.fleet, qa) ----------
# One getter each, used by collector.settings as well: a default is written once.


def get_status_interval_s(config: Config) -> float:
    """``[collector] status_interval_s``: seconds between rewrites of status.json."""
    w = f"{config.path} [collector]"
    return get_float(config.section("collector"), "status_interval_s", 2.0, where=w, min_value=0.05)


def get_shutdown_timeout_s(config: Config) -> float:
    """``[collector] shutdown_timeout_s``: the bound of a clean stop after SIGTERM."""
    w = f"{config.path} [collector]"
    return get_float(config.section("collector"), "shutdown_timeout_s", 5.0, where=w, min_value=0.1)


def get_watchdog_s(config: Config, data_type: str) -> float:
    """``[collector.watchdog] {data_type}_s``: a feed silent this long is reconnected."""
    table = config.section("collector", "watchdog")
    w = f"{config.path} [collector].watchdog"
    return get_float(table, f"{data_type}_s", 30.0, where=w, min_value=0.1)


def get_book_depth(config: Config, stream: Stream | None = None) -> int:
    """``[collector] book_depth``: levels per side in book files (QA checks the same), or
    ``stream``'s override of it."""
    return int(stream_values(config, stream)["book_depth"])


# --- [collector.overrides] -----------------------------------------------------------------

Stream = tuple[str, str, str]  # (exchange, symbol, data_type)


def stream_values(config: Config, stream: Stream | None = None) -> dict[str, Number]:
    """Every :data:`STREAM_VALUES` key: the ``[collector]`` value (else the default), then
    ``stream``'s override where it has one. Checks the whole overrides table."""
    col = config.section("collector")
    w = f"{config.path} [collector]"
    values = {k: v.read(col, w, v.default) for k, v in STREAM_VALUES.items()}
    overrides = stream_overrides(config)
    if stream is not None and stream in overrides:
        values.update(overrides[stream].values)
    return values


@dataclass(frozen=True)
class StreamOverride:
    """One ``[collector.overrides]`` entry: :data:`STREAM_VALUES` and adapter options."""

    values: Mapping[str, Number]
    options: Mapping[str, OptionValue]


def stream_overrides(config: Config) -> dict[Stream, StreamOverride]:
    """``[collector.overrides]``, every entry checked: stream key → its values.

    Raises:
        ConfigError: a malformed stream key, a key that is not a setting of that stream, or a
            bad value (the message names the stream key, as the default's names [collector]).
    """
    out: dict[Stream, StreamOverride] = {}
    for key, table in config.section("collector", "overrides").items():
        where = f"{config.path} [collector.overrides.{json.dumps(key)[:120]}]"
        stream = _stream_of(str(key), where)
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where} must be a table, e.g. {{ book_depth = 20 }}")
        exchange, _, data_type = stream
        options = {o.key: o for o in ADAPTERS[exchange].OPTIONS}
        values: dict[str, Number] = {}
        own_options: dict[str, OptionValue] = {}
        for k in table:
            value = STREAM_VALUES.get(k)
            if value is not None:
                if value.data_types is not None and data_type not in value.data_types:
                    raise ConfigError(
                        f"{where}: {k} applies to {'/'.join(value.data_types)} streams only"
                    )
                values[k] = value.read(table, where, value.default)
            elif k in options:
                own_options[k] = options[k].read(table, where)
            else:
                own = [*STREAM_VALUES, *options]
                raise ConfigError(
                    f"{where}: {k} is not a setting of a {exchange} stream ({', '.join(own)})"
                )
        out[stream] = StreamOverride(values, own_options)
    return out


def _stream_of(key: str, where: str) -> Stream:
    """``exchange:symbol:data_type`` (a Bitfinex symbol may hold a colon itself)."""
    exchange, _, rest = key.partition(":")
    symbol, _, data_type = rest.rpartition(":")
    adapter = ADAPTERS.get(exchange)
    if adapter is None:
        why = f"unknown exchange {shown(exchange)}"
    elif not symbol:
        why = "a symbol and a data type after the exchange"
    elif not adapter.SYMBOL_PATTERN.fullmatch(symbol):
        why = f"{shown(symbol)} is not a {exchange} symbol ({adapter.SYMBOL_PATTERN.pattern})"
    elif data_type not in adapter.DATA_TYPES:
        why = f"{exchange} collects no data type {shown(data_type)}"
    else:
        return exchange, symbol, data_type
    raise ConfigError(f"{where}: the key must be 'exchange:symbol:data_type' ({why})")


# --- where an exchange may be collected -------------------------------------------------


def read_exchange_regions(config: Config) -> dict[str, tuple[str, ...]]:
    """``[exchanges.X] regions`` of every exchange that sets it (a non-empty list of region
    names); an exchange without it follows its adapter's EXCLUDED_REGION_PREFIXES."""
    out: dict[str, tuple[str, ...]] = {}
    for name in ADAPTERS:
        table = config.section("exchanges", name)
        if "regions" not in table:
            continue
        value = table["regions"]
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(r, str) and REGION.fullmatch(r) for r in value)
        ):
            raise ConfigError(
                f"{config.path} [exchanges.{name}]: regions = {value!r:.200} must be a "
                'non-empty list of region names, e.g. ["eu-west-1", "ap-northeast-1"] '
                "(leave it out for the exchange's default)"
            )
        out[name] = tuple(value)
    return out


def allowed_here(config: Config, exchange: str) -> bool:
    """May this host collect (or poll) ``exchange``: its ``[fleet] hosts`` region allows it
    (True where the host names no region)."""
    region = config.host_region
    if region is None:
        return True
    explicit = read_exchange_regions(config).get(exchange)
    return region_allowed(region, explicit, ADAPTERS[exchange].EXCLUDED_REGION_PREFIXES)
