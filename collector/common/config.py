"""The config file: reading, the schema check, typed getters, URL and path checks.

Every program reads the one TOML file through :func:`load_config` (``collector.config`` adds
the tables that depend on the exchange registry and the data types) and builds its own frozen
settings from :class:`Config` with the typed getters here, so every bad value gets the same
kind of message: the file, the key, the value and what was expected. Standard library only.

The schema: every table of the file and the keys it may hold. ``load_config`` refuses any
other key or table, naming it and the file, so a typo ("flush_intervall_s") never silently
means "the default" in any program. Values are checked by the builder that reads them. To add
a key: append its name to the tuple of its table (one line). To add a table: one entry
"parent.name": (keys...); its parent then accepts it (as [parent.name] or as an inline table
``name = {...}``). A table whose keys are free (exchange ids, stream keys, environment names)
holds ``(ANY_KEY,)``; "table.*" gives the shape of each of its sub-tables.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from collector.common.errors import ConfigError

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[2] / "config.toml"
ANY_KEY = "*"
Schema = Mapping[str, tuple[str, ...]]

# The tables that name no exchange and no data type (collector.config adds those, and the
# adapters' options: those in [collector] too).
BASE_SCHEMA: dict[str, tuple[str, ...]] = {
    "": ("data_dir", "host_id"),
    "collector": (
        "flush_interval_s",
        "sync_interval_s",
        "rotation",
        "status_interval_s",
        "stats_interval_s",
        "shutdown_timeout_s",
        "book_depth",
        "l2_view_interval_s",
        "max_message_size",
    ),
    "collector.backoff": ("initial_s", "max_s", "multiplier"),
    # "exchange:symbol:data_type" = {...} (keys: collector.config; checked there too)
    "collector.overrides": (ANY_KEY,),
    "exchanges": (),
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
        "universe",
        "exchanges",
        "auto_track",
    ),
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
        # placement and watching (ops.fleet, ops.listener)
        "hosts",
        "replicas",
        "silent_after_s",
        "listener_tick_s",
        "metrics_textfile",
    ),
    "fleet.environment": (ANY_KEY,),  # NAME = "value" (checked by ops.fleet)
    "dataset": (  # ops.dataset (checked by ops.dataset.settings)
        *("prefix", "hosts", "backfill", "require_qa", "deadline_h", "lookback_h"),
        *("rest_budget", "rest_share", "interval_min", "out_dir"),
    ),
}

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
# A host id (paths, S3 prefixes, program names) and a cloud region name (eu-west-1).
HOST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}")


def region_allowed(
    region: str, explicit: tuple[str, ...] | None, excluded: tuple[str, ...]
) -> bool:
    """May an exchange be collected in ``region``: in its ``[exchanges.X] regions`` when set
    (``explicit``), else in any region not starting with one of its adapter's excluded
    prefixes (EXCLUDED_REGION_PREFIXES: Binance.com's HTTP 451 to US addresses)."""
    if explicit is not None:
        return region in explicit
    return not region.startswith(excluded)


def _show_key(key: str) -> str:
    """A key as TOML writes it: bare when it can be, else quoted (never a raw newline)."""
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def _show_table(path: tuple[str, ...]) -> str:
    return ".".join(_show_key(k) for k in path)


def _schema_of(schema: Schema, path: tuple[str, ...]) -> tuple[str, ...] | None:
    """The schema entry of a table: exact, else the parent's ``.*`` entry, else None."""
    dotted = ".".join(path)
    if dotted in schema:
        return schema[dotted]
    if path:
        return schema.get(".".join((*path[:-1], "*")))
    return None


def _children(schema: Schema, path: tuple[str, ...]) -> set[str]:
    """Names of the sub-tables the schema defines under ``path``."""
    prefix = ".".join(path) + "." if path else ""
    return {
        name[len(prefix) :]
        for name in schema
        if name.startswith(prefix) and name and "." not in name[len(prefix) :]
    }


def check_schema(raw: Mapping[str, Any], where: str, schema: Schema = BASE_SCHEMA) -> None:
    """Refuse any key or table that ``schema`` does not know; raises ConfigError naming the
    first one (``config.toml: unknown key [collector] flush_intervall_s``)."""
    _check_table(schema, raw, (), where)


def _check_table(
    schema: Schema, table: Mapping[str, Any], path: tuple[str, ...], where: str
) -> None:
    keys = _schema_of(schema, path) or ()
    free = ANY_KEY in keys
    subtables = _children(schema, path)
    for key, value in table.items():
        child = (*path, key)
        if free or key in subtables:
            if _schema_of(schema, child) is None:
                continue  # a leaf of a free table, e.g. [fleet.environment] TZ
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: [{_show_table(child)}] must be a table")
            _check_table(schema, value, child, where)
            continue
        if key in keys:
            continue
        known = sorted({*keys, *(s for s in subtables if s != ANY_KEY)})
        import difflib  # only on this error path: a collector's start need not load it

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
        if not HOST_ID.fullmatch(host):
            raise ConfigError(f"{self.path}: host_id {host!r} must be 1-63 of [A-Za-z0-9._-]")
        return host

    @property
    def host_region(self) -> str | None:
        """This host's cloud region: its entry in ``[fleet] hosts`` (None without one, or
        when the entry is not a valid region name; ``ops.fleet`` checks the list itself)."""
        hosts = self.section("fleet").get("hosts")
        if not isinstance(hosts, list):
            return None
        host_id = self.host_id
        for entry in hosts:
            if isinstance(entry, dict) and entry.get("id") == host_id:
                region = entry.get("region")
                if isinstance(region, str) and REGION.fullmatch(region):
                    return region
                return None
        return None


def load_config(path: Path | str | None = None, *, schema: Schema = BASE_SCHEMA) -> Config:
    """Read, parse and schema-check the TOML config file (default: the repository's
    ``config.toml``). Every problem is one ConfigError line naming the file. Programs call
    ``collector.config.load_config``, which passes the whole schema."""
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
    check_schema(raw, str(resolved), schema)
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
