"""Collector settings: the config file, CLI values and the environment become one frozen
:class:`CollectorSettings` (validated once in ``__main__``).

This is the only module of the collector that reads ``os.environ`` (exchange credentials,
through the variable names the adapter declares). Generic config reading and getters live in
``collector.common.config``; exchange facts (default endpoints, options) in the adapters.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from collector.common.config import (
    Config,
    check_url,
    get_float,
    get_int,
    get_str,
)
from collector.common.errors import ConfigError
from collector.common.layout import check_path_safe
from collector.common.retry import BackoffSettings
from collector.exchanges import ADAPTERS, EXCHANGES
from collector.exchanges.base import Credentials, StreamSpec
from collector.model import DATA_TYPES, MAX_BOOK_DEPTH

# --- collector settings ----------------------------------------------------------------


def coinbase_credentials(environ: Mapping[str, str] | None = None) -> Credentials | None:
    """Coinbase Exchange key from the environment, or None when none is set."""
    env = os.environ if environ is None else environ
    names = ("COINBASE_API_KEY", "COINBASE_API_SECRET", "COINBASE_API_PASSPHRASE")
    values = [env.get(n, "") for n in names]
    if not any(values):
        return None
    missing = [n for n, v in zip(names, values, strict=True) if not v]
    if missing:
        raise ConfigError(f"incomplete Coinbase credentials: {', '.join(missing)} not set")
    for name, value in zip(names, values, strict=True):
        if not value.isprintable() or value != value.strip():
            # e.g. a trailing newline from a sourced .cred file; the value is never shown
            raise ConfigError(f"{name} contains whitespace or control characters")
    try:
        base64.b64decode(values[1], validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("COINBASE_API_SECRET is not valid base64 (value not shown)") from None
    return Credentials(key=values[0], secret=values[1], passphrase=values[2])


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
    status_interval_s: float = 2.0
    stats_interval_s: float = 60.0
    shutdown_timeout_s: float = 5.0
    binance_trade_stream: str = "trade"
    depth_update_speed_ms: int = 1000
    book_depth: int = 5
    snapshot_limit: int = 1000
    book_len: int = 100
    l2_view_interval_s: float = 60.0
    max_message_size: int = 16 * 1024 * 1024
    max_connection_age_s: float = 0.0
    watchdog_s: float = 30.0
    backoff: BackoffSettings = BackoffSettings()
    credentials: Credentials | None = None

    def stream_spec(self) -> StreamSpec:
        """What the adapter needs to know of this stream."""
        return StreamSpec(
            symbol=self.symbol,
            data_type=self.data_type,
            trade_stream=self.binance_trade_stream,
            depth_speed_ms=self.depth_update_speed_ms,
            book_len=self.book_len,
            credentials=self.credentials,
        )


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
    trade_stream = get_str(col, "binance_trade_stream", "trade", where=w)
    if trade_stream not in ("trade", "aggTrade"):
        raise ConfigError(f"{w}: binance_trade_stream = {trade_stream!r} must be trade or aggTrade")
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
        flush_interval_s=get_float(col, "flush_interval_s", 1.0, where=w, min_value=0.01),
        status_interval_s=get_status_interval_s(config),
        stats_interval_s=get_float(col, "stats_interval_s", 60.0, where=w, min_value=0.1),
        shutdown_timeout_s=get_shutdown_timeout_s(config),
        binance_trade_stream=trade_stream,
        depth_update_speed_ms=get_int(
            col, "depth_update_speed_ms", 1000, where=w, choices=(100, 1000)
        ),
        book_depth=get_int(col, "book_depth", 5, where=w, min_value=1, max_value=MAX_BOOK_DEPTH),
        snapshot_limit=get_int(col, "snapshot_limit", 1000, where=w, min_value=1, max_value=5000),
        l2_view_interval_s=get_float(col, "l2_view_interval_s", 60.0, where=w, min_value=0.0),
        book_len=get_int(ex, "book_len", 100, where=wex, choices=(1, 25, 100, 250)),
        max_message_size=get_int(col, "max_message_size", 16 * 1024 * 1024, where=w, min_value=1),
        max_connection_age_s=get_float(ex, "max_connection_age_s", 0.0, where=wex, min_value=0.0),
        watchdog_s=get_watchdog_s(config, data_type),
        backoff=backoff,
        credentials=coinbase_credentials(environ) if exchange == "coinbase" else None,
    )
    return settings


# --- [collector] values other programs read too (ops status, ops.fleet) -------------
# One getter each, used by build_collector_settings as well: a default is written once.


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
