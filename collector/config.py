"""The fleet's config file, whole: the common loader with the full schema.

``collector.common.config`` reads the file and knows every table that names no exchange and
no data type; this module adds what depends on the exchange registry and the data types:
``[exchanges.X]`` for each adapter with the options that adapter declares (``OPTIONS``; an
option kept in the shared ``[collector]`` table joins that table's keys), and the
per-data-type tables, so that every program refuses the same typos. Every program loads the
file through :func:`load_config` here.
"""

from __future__ import annotations

from pathlib import Path

from collector.common.config import ANY_KEY, BASE_SCHEMA, Config, get_float, get_int
from collector.common.config import load_config as _load
from collector.exchanges import ADAPTERS, EXCHANGES
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


def get_book_depth(config: Config) -> int:
    """``[collector] book_depth``: levels per side in book files (QA checks the same)."""
    w = f"{config.path} [collector]"
    return get_int(
        config.section("collector"),
        "book_depth",
        DEFAULT_BOOK_DEPTH,
        where=w,
        min_value=1,
        max_value=MAX_BOOK_DEPTH,
    )
