"""Collector settings: the config file, CLI values and the environment become one frozen
:class:`CollectorSettings` (validated once in ``__main__``).

This is the only module of the collector that reads ``os.environ`` (exchange credentials,
through the variable names the adapter declares, ``CREDENTIAL_ENV``; the adapter validates
them). Generic config reading and getters live in ``collector.common.config``; exchange facts
(default endpoints, options with their defaults and validation) in the adapters: this module
names no exchange.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from collector.common.config import (
    Config,
    check_url,
    get_float,
    get_str,
)
from collector.common.errors import ConfigError
from collector.common.layout import check_path_safe
from collector.common.retry import BackoffSettings
from collector.config import (
    get_shutdown_timeout_s,
    get_status_interval_s,
    get_watchdog_s,
    stream_overrides,
    stream_values,
)
from collector.exchanges import ADAPTERS, EXCHANGES
from collector.exchanges.base import Credentials, ExchangeAdapter, OptionValue, StreamSpec
from collector.model import DATA_TYPES

# --- collector settings ----------------------------------------------------------------


def credentials_from_env(
    adapter: ExchangeAdapter, environ: Mapping[str, str] | None = None
) -> Credentials | None:
    """The exchange's API key from the variables its adapter names, or None (the adapter
    takes none, or none is set); the adapter validates them (ConfigError, value not shown)."""
    if adapter.CREDENTIAL_ENV is None or adapter.read_credentials is None:
        return None
    env = os.environ if environ is None else environ
    return adapter.read_credentials({name: env.get(name, "") for name in adapter.CREDENTIAL_ENV})


def read_options(config: Config, exchange: str) -> dict[str, OptionValue]:
    """The values of the options ``exchange``'s adapter declares, checked by the adapter.

    An option in the shared ``[collector]`` table is checked for every adapter that declares
    one, whatever this collector's exchange (one file serves the fleet, and a bad value there
    was always refused by every collector); one in ``[exchanges.<id>]`` only by its own.
    """
    where = str(config.path)
    own: dict[str, OptionValue] = {}
    for name, adapter in ADAPTERS.items():
        for option in adapter.OPTIONS:
            if option.table == "collector":
                value = option.read(config.section("collector"), f"{where} [collector]")
            elif name == exchange:
                value = option.read(
                    config.section("exchanges", name), f"{where} [exchanges.{name}]"
                )
            else:
                continue
            if name == exchange:
                own[option.key] = value
    return own


@dataclass(frozen=True)
class CollectorSettings:
    """Everything one collector process needs, validated once in ``__main__``."""

    exchange: str
    symbol: str
    data_type: str
    data_dir: Path
    ws_url: str
    rest_url: str
    flush_interval_s: float = 1.0
    sync_interval_s: float = 10.0  # 0 = fsync with every flush
    status_interval_s: float = 2.0
    stats_interval_s: float = 60.0
    shutdown_timeout_s: float = 5.0
    book_depth: int = 5
    l2_view_interval_s: float = 60.0
    max_message_size: int = 16 * 1024 * 1024
    max_connection_age_s: float = 0.0
    watchdog_s: float = 30.0
    backoff: BackoffSettings = BackoffSettings()
    credentials: Credentials | None = None
    # The exchange's own options (its adapter's OPTIONS), by config key.
    options: Mapping[str, OptionValue] = field(default_factory=dict)
    # who runs it: named when the exchange refuses this host's location (HTTP 451)
    host_id: str = "local"
    region: str | None = None  # this host's entry in [fleet] hosts

    def stream_spec(self) -> StreamSpec:
        """What the adapter needs to know of this stream."""
        return StreamSpec(
            symbol=self.symbol,
            data_type=self.data_type,
            options=self.options,
            credentials=self.credentials,
        )

    @property
    def snapshot_limit(self) -> int:
        """Levels asked of a REST book snapshot: the adapter's ``snapshot_limit`` option, 0
        where it declares none (the exchange sends its whole book).

        Transitional (issue 17): the wiring still passes it to ``build_snapshot_url`` and
        ``snapshot_weight``; once those take the spec, the adapter reads it from there.
        """
        for option in ADAPTERS[self.exchange].OPTIONS:
            if option.key == "snapshot_limit":
                value = option.of(self.stream_spec())
                return value if isinstance(value, int) else 0
        return 0


def build_collector_settings(
    config: Config,
    *,
    exchange: str,
    symbol: str,
    data_type: str,
    data_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> CollectorSettings:
    """Validate the CLI values against the config file; raises ConfigError naming the value.

    The stream's ``[collector.overrides]`` entry, if any, wins over ``[collector]`` and the
    adapter's options (the whole overrides table is checked, as the rest of the file is).
    Creates nothing: the caller makes the data directory (:func:`ensure_writable_dir`) once
    every other check has passed, so refused input leaves nothing behind.
    """
    if exchange not in EXCHANGES:
        raise ConfigError(f"unknown exchange {exchange!r} (choose from {', '.join(EXCHANGES)})")
    if data_type not in DATA_TYPES:
        raise ConfigError(f"unknown data_type {data_type!r} (choose from {', '.join(DATA_TYPES)})")
    check_path_safe(symbol)
    where = str(config.path)
    col = config.section("collector")
    ex = config.section("exchanges", exchange)
    backoff_t = config.section("collector", "backoff")
    w = f"{where} [collector]"
    rotation = get_str(col, "rotation", "hourly", where=w)
    if rotation != "hourly":
        raise ConfigError(f"{w}: rotation = {rotation!r} must be 'hourly'")
    stream = (exchange, symbol, data_type)
    override = stream_overrides(config).get(stream)
    options = {**read_options(config, exchange), **(override.options if override else {})}
    values = stream_values(config, stream)
    backoff = BackoffSettings(
        initial_s=get_float(backoff_t, "initial_s", 0.5, where=w + ".backoff", min_value=0.0),
        max_s=get_float(backoff_t, "max_s", 60.0, where=w + ".backoff", min_value=0.0),
        multiplier=get_float(backoff_t, "multiplier", 2.0, where=w + ".backoff", min_value=1.0),
    )
    if backoff.max_s < backoff.initial_s:
        raise ConfigError(f"{w}.backoff: max_s must be >= initial_s")
    wex = f"{where} [exchanges.{exchange}]"
    settings = CollectorSettings(
        exchange=exchange,
        symbol=symbol,
        data_type=data_type,
        data_dir=data_dir if data_dir is not None else config.data_dir,
        ws_url=check_url(
            get_str(ex, "ws_url", ADAPTERS[exchange].DEFAULT_WS_URL, where=wex),
            ("ws", "wss"),
            what=f"{wex} ws_url",
            userinfo=False,
        ),
        rest_url=check_url(
            get_str(ex, "rest_url", ADAPTERS[exchange].DEFAULT_REST_URL, where=wex),
            ("http", "https"),
            what=f"{wex} rest_url",
            userinfo=False,
        ),
        flush_interval_s=float(values["flush_interval_s"]),
        sync_interval_s=float(values["sync_interval_s"]),
        status_interval_s=get_status_interval_s(config),
        stats_interval_s=float(values["stats_interval_s"]),
        shutdown_timeout_s=get_shutdown_timeout_s(config),
        book_depth=int(values["book_depth"]),
        l2_view_interval_s=float(values["l2_view_interval_s"]),
        max_message_size=int(values["max_message_size"]),
        max_connection_age_s=get_float(ex, "max_connection_age_s", 0.0, where=wex, min_value=0.0),
        watchdog_s=get_watchdog_s(config, data_type),
        backoff=backoff,
        credentials=credentials_from_env(ADAPTERS[exchange], environ),
        options=options,
        host_id=config.host_id,
        region=config.host_region,
    )
    return settings
