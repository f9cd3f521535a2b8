"""Configuration: the TOML file, CLI values and the environment become frozen settings.

This is the only module of the collector that reads ``os.environ`` (secrets only).
Every other package builds its own settings from :class:`Config` (the parsed file),
using the typed getters here so that every bad value gets the same kind of message:
the key, the value and what was expected.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import json
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

# --- the schema of the config file ------------------------------------------------------
#
# Every table of the file and the keys it may hold. ``load_config`` refuses any other key or
# table, naming it and the file, so a typo ("flush_intervall_s") never silently means "the
# default" in any program. Values are checked by the builder that reads them.
#
# To add a key: append its name to the tuple of its table (one line). To add a table: one
# entry "parent.name": (keys...); its parent then accepts it (as [parent.name] or as an
# inline table ``name = {...}``). A table whose keys are free (exchange ids, stream keys,
# environment names) holds ``(ANY_KEY,)``; "table.*" gives the shape of each of its
# sub-tables. Keys of a table are either leaves (listed here) or sub-tables (their own entry).
ANY_KEY = "*"
_EXCHANGE_KEYS = ("ws_url", "rest_url", "max_connection_age_s")
CONFIG_SCHEMA: dict[str, tuple[str, ...]] = {
    "": ("data_dir", "host_id"),
    "collector": (
        "flush_interval_s",
        "rotation",
        "status_interval_s",
        "stats_interval_s",
        "shutdown_timeout_s",
        "binance_trade_stream",
        "depth_update_speed_ms",
        "book_depth",
        "snapshot_limit",
        "l2_view_interval_s",
        "max_message_size",
    ),
    "collector.backoff": ("initial_s", "max_s", "multiplier"),
    "collector.watchdog": tuple(f"{dt}_s" for dt in DATA_TYPES),
    "exchanges": (),
    "exchanges.binance": _EXCHANGE_KEYS,
    "exchanges.coinbase": _EXCHANGE_KEYS,
    "exchanges.bitstamp": _EXCHANGE_KEYS,
    "exchanges.bitfinex": (*_EXCHANGE_KEYS, "book_len"),
    "secmaster": (
        "database_url",
        "poll_interval_min",
        "http_timeout_s",
        "http_retries",
        "backoff_initial_s",
        "backoff_max_s",
        "lock_file",
        "apply_cmd",
        "max_delist_pct",
    ),
    "secmaster.min_listings": EXCHANGES,
    "qa": (
        "interval_min",
        "bad_rows_warn_pct",
        "bad_rows_fail_pct",
        "missing_ids_warn_pct",
        "missing_ids_fail_pct",
        "disorder_warn_pct",
        "disorder_fail_pct",
        "backwards_tolerance_ms",
        "downtime_warn_s",
        "downtime_fail_s",
        "hour_tolerance_s",
        "plausible_window_h",
        "compare_raw",
    ),
    "qa.row_count": DATA_TYPES,
    "qa.max_silence_s": DATA_TYPES,
    "qa.overrides": (ANY_KEY,),  # "exchange:symbol:data_type" (checked by qa.settings)
    "qa.overrides.*": ("row_count", "max_silence_s"),
    "alerts": (
        "suppress_window_s",
        "timeout_s",
        "retries",
        "retry_backoff_s",
        "chat_min_severity",
        "telegram_api_url",
        "pagerduty_events_url",
    ),
    "sync": (
        "bucket",
        "prefix",
        "endpoint_url",
        "region",
        "interval_min",
        "concurrency",
        "retention_days",
        "min_age_s",
        "multipart_threshold_mb",
        "part_size_mb",
        "retry_mode",
        "max_attempts",
        "confirm_with_head",
    ),
    "fleet": (
        "programs_file",
        "log_dir",
        "log_maxbytes_mb",
        "log_backups",
        "socket",
        "startsecs",
        "startretries",
        "periodic",
        "listener",
    ),
    "fleet.environment": (ANY_KEY,),  # NAME = "value" (checked by ops.fleet)
}

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _show_key(key: str) -> str:
    """A key as TOML writes it: bare when it can be, else quoted (never a raw newline)."""
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def _show_table(path: tuple[str, ...]) -> str:
    return ".".join(_show_key(k) for k in path)


def _schema_of(path: tuple[str, ...]) -> tuple[str, ...] | None:
    """The schema entry of a table: exact, else the parent's ``.*`` entry, else None."""
    dotted = ".".join(path)
    if dotted in CONFIG_SCHEMA:
        return CONFIG_SCHEMA[dotted]
    if path:
        return CONFIG_SCHEMA.get(".".join((*path[:-1], "*")))
    return None


def _children(path: tuple[str, ...]) -> set[str]:
    """Names of the sub-tables the schema defines under ``path``."""
    prefix = ".".join(path) + "." if path else ""
    return {
        name[len(prefix) :]
        for name in CONFIG_SCHEMA
        if name.startswith(prefix) and name and "." not in name[len(prefix) :]
    }


def check_schema(raw: Mapping[str, Any], where: str) -> None:
    """Refuse any key or table that :data:`CONFIG_SCHEMA` does not know; raises ConfigError
    naming the first one (``config.toml: unknown key [collector] flush_intervall_s``)."""
    _check_table(raw, (), where)


def _check_table(table: Mapping[str, Any], path: tuple[str, ...], where: str) -> None:
    keys = _schema_of(path) or ()
    free = ANY_KEY in keys
    subtables = _children(path)
    for key, value in table.items():
        child = (*path, key)
        if free or key in subtables:
            if _schema_of(child) is None:
                continue  # a leaf of a free table, e.g. [fleet.environment] TZ
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: [{_show_table(child)}] must be a table")
            _check_table(value, child, where)
            continue
        if key in keys:
            continue
        known = sorted({*keys, *(s for s in subtables if s != ANY_KEY)})
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        kind = "section" if isinstance(value, Mapping) else "key"
        if kind == "section":
            raise ConfigError(f"{where}: unknown section [{_show_table(child)}]{hint}")
        at = f"[{_show_table(path)}] " if path else ""
        raise ConfigError(f"{where}: unknown key {at}{_show_key(key)}{hint}")


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
        value = get_str(self.raw, "data_dir", "data", where=str(self.path))
        return self.resolve_path(str(check_path_value(value, what=f"{self.path}: data_dir")))

    @property
    def host_id(self) -> str:
        host = get_str(self.raw, "host_id", "local", where=str(self.path))
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", host):
            raise ConfigError(f"{self.path}: host_id {host!r} must be 1-63 of [A-Za-z0-9._-]")
        return host


def load_config(path: Path | str | None = None) -> Config:
    """Read, parse and schema-check the TOML config file (default: the repository's
    ``config.toml``). Every problem is one ConfigError line naming the file."""
    p = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    if not str(p).strip():
        raise ConfigError("--config is empty (give the path of a config file)")
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror}") from None
    except ValueError:  # an embedded NUL byte in the path
        raise ConfigError(f"config file path {str(p)!r} is not a valid path") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"config file {p} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line})"
        ) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"malformed config file {p}: {exc}") from None
    resolved = p.resolve()
    check_schema(raw, str(resolved))
    return Config(path=resolved, raw=raw)


# --- typed getters: one message format for every bad value -------------------------------


def _where(where: str, key: str) -> str:
    return f"{where}: {key}" if where else key


_USERINFO = re.compile(r"//[^/?#@\s'\"]*@")


def _show(value: object) -> str:
    """A bad value for a message: its repr (one line, bounded), any URL userinfo inside it
    replaced by ``***`` (a list of URLs given where one string is expected...)."""
    text = _USERINFO.sub("//***@", repr(value))
    return text if len(text) <= 200 else text[:199] + "…"


def get_str(table: Mapping[str, Any], key: str, default: str, *, where: str = "") -> str:
    value = table.get(key, default)
    if not isinstance(value, str):
        raise ConfigError(f"{_where(where, key)} = {_show(value)} must be a string")
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
        raise ConfigError(f"{_where(where, key)} = {_show(value)} must be a number")
    if min_value is not None and value < min_value:
        raise ConfigError(f"{_where(where, key)} = {_show(value)} must be >= {min_value}")
    if max_value is not None and value > max_value:
        raise ConfigError(f"{_where(where, key)} = {_show(value)} must be <= {max_value}")
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
        raise ConfigError(f"{_where(where, key)} = {_show(value)} must be an integer")
    if choices is not None and value not in choices:
        raise ConfigError(f"{_where(where, key)} = {_show(value)} must be one of {choices}")
    if min_value is not None and value < min_value:
        raise ConfigError(f"{_where(where, key)} = {_show(value)} must be >= {min_value}")
    if max_value is not None and value > max_value:
        raise ConfigError(f"{_where(where, key)} = {_show(value)} must be <= {max_value}")
    return value


def redact_url(url: str) -> str:
    """``url`` fit for a log line or an error message: userinfo becomes ``***``
    (``https://user:pass@host/x`` → ``https://***@host/x``). Never raises, whatever the text."""
    start = url.find("//") + 2 if "//" in url else 0
    end = len(url)
    for sep in "/?#":
        i = url.find(sep, start)
        if i != -1:
            end = min(end, i)
    at = url.rfind("@", start, end)
    return url if at == -1 else f"{url[:start]}***{url[at:]}"


_URL_UNSAFE = re.compile(r"[\x00-\x20\x7f]")


def check_url(
    url: str,
    schemes: tuple[str, ...],
    *,
    what: str,
    secret: bool = False,
    userinfo: bool = True,
) -> str:
    """Return ``url`` without a trailing slash, or raise naming the bad value.

    The value in the message has its userinfo redacted; a ``secret`` URL (a webhook whose
    path is the credential) is never shown at all, only ``what`` names it. ``userinfo=False``
    refuses ``user:pass@`` (exchange endpoints: the URL is written into every raw file).
    """
    shown = f"{what} (value not shown)" if secret else f"{what} = {redact_url(url)!r}"
    if _URL_UNSAFE.search(url):
        # urlsplit silently drops tabs and newlines: refuse them instead of guessing
        raise ConfigError(f"{shown} must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        raise ConfigError(f"{shown} is not a valid URL") from None
    if parts.scheme not in schemes or not parts.hostname:
        raise ConfigError(f"{shown} must be a {'/'.join(schemes)}:// URL with a host")
    if not userinfo and "@" in parts.netloc:
        raise ConfigError(
            f"{shown} must not carry credentials (user:password@): the URL is recorded in "
            "every raw file"
        )
    return url.rstrip("/")


def check_symbol_is_path_safe(symbol: str) -> str:
    """Reject anything that could escape the data directory once the symbol becomes a path."""
    if not symbol or _UNSAFE_SYMBOL.search(symbol) or symbol in {".", ".."}:
        raise ConfigError(f"symbol {symbol!r} is not allowed (it becomes part of a file path)")
    return symbol


def check_path_value(value: str | os.PathLike[str], *, what: str) -> Path:
    """A path named on the command line or in the file (a data dir, a file), as a Path;
    raises ConfigError for an empty value (``Path("")`` silently means the current
    directory) or one with a NUL byte (no system call accepts it)."""
    text = os.fspath(value)
    if not text.strip():
        raise ConfigError(f"{what} is empty (write . for the current directory)")
    if "\x00" in text:
        raise ConfigError(f"{what} = {text!r} contains a NUL byte")
    return Path(text)


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
    """Validate the CLI values against the config file; raises ConfigError naming the value.

    Creates nothing: the caller makes the data directory (:func:`ensure_writable_dir`) once
    every other check has passed, so refused input leaves nothing behind.
    """
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
        data_dir=data_dir if data_dir is not None else config.data_dir,
        ws_url=check_url(
            get_str(ex, "ws_url", DEFAULT_ENDPOINTS[exchange][0], where=wex),
            ("ws", "wss"),
            what=f"{wex} ws_url",
            userinfo=False,
        ),
        rest_url=check_url(
            get_str(ex, "rest_url", DEFAULT_ENDPOINTS[exchange][1], where=wex),
            ("http", "https"),
            what=f"{wex} rest_url",
            userinfo=False,
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
