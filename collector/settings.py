"""Configuration: the TOML file, CLI values and the environment become frozen settings.

This is the only module of the collector that reads ``os.environ`` (secrets only).
Every other package builds its own settings from :class:`Config` (the parsed file),
using the typed getters here so that every bad value gets the same kind of message:
the key, the value and what was expected.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from collector.errors import ConfigError
from collector.model import MAX_BOOK_DEPTH

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "config.toml"
EXCHANGES = ("binance", "coinbase", "bitstamp", "bitfinex")
DATA_TYPES = ("trade", "book", "l3")

# Production endpoints, used when the config file does not name them.
DEFAULT_ENDPOINTS = {
    "binance": ("wss://stream.binance.com:9443", "https://api.binance.com"),
    "coinbase": ("wss://ws-feed.exchange.coinbase.com", "https://api.exchange.coinbase.com"),
    "bitstamp": ("wss://ws.bitstamp.net", "https://www.bitstamp.net"),
    "bitfinex": ("wss://api-pub.bitfinex.com/ws/2", "https://api-pub.bitfinex.com"),
}

_UNSAFE_SYMBOL = re.compile(r"[/\\\s\x00-\x1f\x7f]|\.\.")


@dataclass(frozen=True)
class Config:
    """The parsed config file: its sections plus the two paths every program needs."""

    path: Path
    raw: Mapping[str, Any]

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def section(self, *names: str) -> Mapping[str, Any]:
        """Return a (possibly nested) table, or an empty mapping when it is absent."""
        table: Any = self.raw
        dotted = ""
        for name in names:
            dotted = f"{dotted}.{name}" if dotted else name
            table = table.get(name, {}) if isinstance(table, Mapping) else None
            if not isinstance(table, Mapping):
                raise ConfigError(f"{self.path}: [{dotted}] must be a table")
        result: Mapping[str, Any] = table
        return result

    def resolve_path(self, value: str) -> Path:
        """A path from the file: relative paths are relative to the file's directory."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)

    @property
    def data_dir(self) -> Path:
        return self.resolve_path(get_str(self.raw, "data_dir", "data", where=str(self.path)))

    @property
    def host_id(self) -> str:
        host = get_str(self.raw, "host_id", "local", where=str(self.path))
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", host):
            raise ConfigError(f"{self.path}: host_id {host!r} must be 1-63 of [A-Za-z0-9._-]")
        return host


def load_config(path: Path | str | None = None) -> Config:
    """Read and parse the TOML config file (default: the repository's ``config.toml``)."""
    p = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror}") from exc
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"malformed config file {p}: {exc}") from exc
    return Config(path=p.resolve(), raw=raw)


# --- typed getters: one message format for every bad value -------------------------------


def _where(where: str, key: str) -> str:
    return f"{where}: {key}" if where else key


def get_str(table: Mapping[str, Any], key: str, default: str, *, where: str = "") -> str:
    value = table.get(key, default)
    if not isinstance(value, str):
        raise ConfigError(f"{_where(where, key)} = {value!r} must be a string")
    return value


def get_float(
    table: Mapping[str, Any],
    key: str,
    default: float,
    *,
    where: str = "",
    min_value: float | None = None,
    max_value: float | None = None,
) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{_where(where, key)} = {value!r} must be a number")
    if min_value is not None and value < min_value:
        raise ConfigError(f"{_where(where, key)} = {value!r} must be >= {min_value}")
    if max_value is not None and value > max_value:
        raise ConfigError(f"{_where(where, key)} = {value!r} must be <= {max_value}")
    return float(value)


def get_int(
    table: Mapping[str, Any],
    key: str,
    default: int,
    *,
    where: str = "",
    min_value: int | None = None,
    max_value: int | None = None,
    choices: tuple[int, ...] | None = None,
) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{_where(where, key)} = {value!r} must be an integer")
    if choices is not None and value not in choices:
        raise ConfigError(f"{_where(where, key)} = {value!r} must be one of {choices}")
    if min_value is not None and value < min_value:
        raise ConfigError(f"{_where(where, key)} = {value!r} must be >= {min_value}")
    if max_value is not None and value > max_value:
        raise ConfigError(f"{_where(where, key)} = {value!r} must be <= {max_value}")
    return value


def check_url(url: str, schemes: tuple[str, ...], *, what: str) -> str:
    """Return ``url`` without a trailing slash, or raise naming the bad value."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        raise ConfigError(f"{what} = {url!r} is not a valid URL") from None
    if parts.scheme not in schemes or not parts.hostname:
        raise ConfigError(f"{what} = {url!r} must be a {'/'.join(schemes)}:// URL with a host")
    return url.rstrip("/")


def check_symbol_is_path_safe(symbol: str) -> str:
    """Reject anything that could escape the data directory once the symbol becomes a path."""
    if not symbol or _UNSAFE_SYMBOL.search(symbol) or symbol in {".", ".."}:
        raise ConfigError(f"symbol {symbol!r} is not allowed (it becomes part of a file path)")
    return symbol


def ensure_writable_dir(path: Path) -> Path:
    """Create ``path`` if needed and prove we can write into it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise ConfigError(f"data_dir {str(path)!r} is not writable: {exc.strerror}") from None
    return path


# --- collector settings ----------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """An exchange API key. ``repr`` never shows the secret or the passphrase."""

    key: str
    secret: str = field(repr=False)
    passphrase: str = field(repr=False)


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
    return Credentials(key=values[0], secret=values[1], passphrase=values[2])


@dataclass(frozen=True)
class BackoffSettings:
    initial_s: float = 0.5
    max_s: float = 60.0
    multiplier: float = 2.0


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


def build_collector_settings(
    config: Config,
    *,
    exchange: str,
    symbol: str,
    data_type: str,
    data_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> CollectorSettings:
    """Validate the CLI values against the config file; raises ConfigError naming the value."""
    if exchange not in EXCHANGES:
        raise ConfigError(f"unknown exchange {exchange!r} (choose from {', '.join(EXCHANGES)})")
    if data_type not in DATA_TYPES:
        raise ConfigError(f"unknown data_type {data_type!r} (choose from {', '.join(DATA_TYPES)})")
    check_symbol_is_path_safe(symbol)
    where = str(config.path)
    col = config.section("collector")
    ex = config.section("exchanges", exchange)
    backoff_t = config.section("collector", "backoff")
    watchdog_t = config.section("collector", "watchdog")
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
        data_dir=ensure_writable_dir(data_dir if data_dir is not None else config.data_dir),
        ws_url=check_url(
            get_str(ex, "ws_url", DEFAULT_ENDPOINTS[exchange][0], where=wex),
            ("ws", "wss"),
            what=f"{wex} ws_url",
        ),
        rest_url=check_url(
            get_str(ex, "rest_url", DEFAULT_ENDPOINTS[exchange][1], where=wex),
            ("http", "https"),
            what=f"{wex} rest_url",
        ),
        flush_interval_s=get_float(col, "flush_interval_s", 1.0, where=w, min_value=0.01),
        status_interval_s=get_float(col, "status_interval_s", 2.0, where=w, min_value=0.05),
        stats_interval_s=get_float(col, "stats_interval_s", 60.0, where=w, min_value=0.1),
        shutdown_timeout_s=get_float(col, "shutdown_timeout_s", 5.0, where=w, min_value=0.1),
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
        watchdog_s=get_float(
            watchdog_t, f"{data_type}_s", 30.0, where=w + ".watchdog", min_value=0.1
        ),
        backoff=backoff,
        credentials=coinbase_credentials(environ) if exchange == "coinbase" else None,
    )
    return settings
