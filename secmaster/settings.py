"""Security-master settings, built once from the ``[secmaster]`` and ``[exchanges.*]`` tables.

Every URL (database, exchange REST bases) and every path (lock file) is a setting: that is the
seam tests use to point the security master at a local server and a database in ``tmp_path``.

``universe`` chooses where the tracked universe lives: ``local`` (the default: the ``tracked``
table of this host's database) or ``s3`` (one document every host reads,
``s3://{[sync] bucket}/{[sync] prefix}/universe.json``; see ``secmaster.shared_universe``).
``exchanges`` are the exchanges a ``sync`` polls when none is named (default: every exchange
with a listings source that this host's region may reach: its ``[fleet] hosts`` region and the
exchanges' region rules, so a ``us-*`` host does not poll Binance.com). ``auto_track`` rules
track new listings that match them after a sync.

``apply_cmd`` always runs against the configuration secmaster itself was given: every
``{config}`` in its arguments becomes the absolute path of that file, and a command without
``{config}`` gets ``--config PATH`` appended (``python -m ops.fleet apply`` accepts it after
the subcommand). So ``secmaster --config X track ...`` applies the fleet of X, never the
checkout's default config.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collector.common.config import Config, check_url, get_float, get_int, get_str
from collector.common.errors import ConfigError
from collector.config import allowed_here
from collector.exchanges import ADAPTERS
from collector.exchanges.listing import Listing, shown
from secmaster.names import UniverseError, check_data_types, check_filter

# Exchanges whose listings the security master can poll: those whose adapter has the listings
# capability, in registry order.
LISTING_EXCHANGES = tuple(
    name for name, adapter in ADAPTERS.items() if adapter.build_listings_url is not None
)
# In ``apply_cmd``: replaced by the absolute path of the config file in use.
CONFIG_PLACEHOLDER = "{config}"


@dataclass(frozen=True)
class RetrySettings:
    """Retry policy of one listings fetch (5xx, 429/418 and network errors)."""

    retries: int = 4
    initial_s: float = 0.5
    max_s: float = 30.0
    multiplier: float = 2.0
    # Never wait longer than this for a Retry-After header (a longer one fails the poll).
    max_retry_after_s: float = 120.0


# Where the tracked universe lives ([secmaster] universe).
UNIVERSE_STORES = ("local", "s3")
# The keys of one [secmaster] auto_track rule.
AUTO_TRACK_KEYS = ("exchange", "quote", "base", "status", "all", "data_types")


@dataclass(frozen=True)
class SharedUniverseSettings:
    """Where the fleet's universe document is: ``s3://{bucket}/{key}`` (from ``[sync]``)."""

    bucket: str
    key: str
    endpoint_url: str | None = None
    region: str = "eu-west-1"

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class AutoTrackRule:
    """One ``[secmaster] auto_track`` entry: new listings of ``exchange`` that match every
    given filter (or any, with ``all``) are tracked with ``data_types`` after a sync."""

    exchange: str
    data_types: tuple[str, ...]
    quote: str | None = None
    base: str | None = None
    status: str | None = None
    all: bool = False

    def matches(self, listing: Listing) -> bool:
        return (
            listing.exchange == self.exchange
            and self.quote in (None, listing.quote)
            and self.base in (None, listing.base)
            and self.status in (None, listing.status)
        )

    def describe(self) -> str:
        """The rule as one line (``binance quote=USDT -> trade``)."""
        filters = [f"{k}={v}" for k, v in self._filters() if v is not None] or ["all"]
        return f"{self.exchange} {' '.join(filters)} -> {','.join(self.data_types)}"

    def _filters(self) -> list[tuple[str, str | None]]:
        return [("quote", self.quote), ("base", self.base), ("status", self.status)]


@dataclass(frozen=True)
class SecmasterSettings:
    """Everything the security master needs, validated at load."""

    database_url: str
    data_dir: Path
    lock_path: Path
    poll_interval_min: float = 60.0
    min_listings: Mapping[str, int] = field(default_factory=dict)
    rest_urls: Mapping[str, str] = field(default_factory=dict)
    http_timeout_s: float = 30.0
    retry: RetrySettings = RetrySettings()
    # argv run after a scheduled sync that polled an exchange (`sync --apply`, what the
    # periodic secmaster job runs) and after track/untrack; () = none.
    apply_cmd: tuple[str, ...] = ()
    # A poll that would delist more than this share (%) of the current listings is partial.
    max_delist_pct: float = 10.0
    # The config file these settings came from (what apply_cmd is pointed at).
    config_path: Path | None = None
    # Where the tracked universe lives: "local" (the tracked table) or "s3" (``shared``).
    universe: str = "local"
    shared: SharedUniverseSettings | None = None
    # Exchanges a sync polls when none is named.
    exchanges: tuple[str, ...] = ()
    auto_track: tuple[AutoTrackRule, ...] = ()

    def apply_argv(self) -> tuple[str, ...]:
        """``apply_cmd`` pointed at ``config_path``: ``{config}`` replaced, else appended."""
        if not self.apply_cmd or self.config_path is None:
            return self.apply_cmd
        cfg = str(self.config_path)
        if any(CONFIG_PLACEHOLDER in a for a in self.apply_cmd):
            return tuple(a.replace(CONFIG_PLACEHOLDER, cfg) for a in self.apply_cmd)
        return (*self.apply_cmd, "--config", cfg)

    def check_exchange(self, exchange: str) -> str:
        """Return ``exchange`` if it has a listings source, else raise naming it."""
        if exchange not in LISTING_EXCHANGES:
            raise ConfigError(
                f"unknown exchange {exchange!r} (choose from {', '.join(LISTING_EXCHANGES)})"
            )
        return exchange


def build_secmaster_settings(config: Config) -> SecmasterSettings:
    """Read ``[secmaster]`` and the exchanges' ``rest_url``; raises ConfigError naming the value."""
    where = f"{config.path} [secmaster]"
    sm = config.section("secmaster")
    data_dir = config.data_dir
    url = get_str(sm, "database_url", "", where=where)
    if not url:
        url = f"sqlite:///{data_dir / 'secmaster.sqlite'}"
    elif "://" not in url:
        raise ConfigError(f"{where}: database_url = {url!r} is not an SQLAlchemy URL")
    min_t = config.section("secmaster", "min_listings")
    min_listings = {
        ex: get_int(min_t, ex, 1, where=f"{where}.min_listings", min_value=1)
        for ex in LISTING_EXCHANGES
    }
    rest_urls: dict[str, str] = {}
    for ex in LISTING_EXCHANGES:
        wex = f"{config.path} [exchanges.{ex}]"
        default = ADAPTERS[ex].DEFAULT_REST_URL
        rest_urls[ex] = check_url(
            get_str(config.section("exchanges", ex), "rest_url", default, where=wex),
            ("http", "https"),
            what=f"{wex} rest_url",
            userinfo=False,
        )
    lock = get_str(sm, "lock_file", "", where=where)
    apply_raw = get_str(sm, "apply_cmd", "", where=where)
    try:
        apply_cmd = tuple(shlex.split(apply_raw))
    except ValueError as exc:
        raise ConfigError(f"{where}: apply_cmd = {apply_raw!r} cannot be split: {exc}") from None
    universe = get_str(sm, "universe", "local", where=where)
    if universe not in UNIVERSE_STORES:
        raise ConfigError(f"{where}: universe = {universe!r} must be 'local' or 's3'")
    retry = RetrySettings(
        retries=get_int(sm, "http_retries", 4, where=where, min_value=0, max_value=20),
        initial_s=get_float(sm, "backoff_initial_s", 0.5, where=where, min_value=0.0),
        max_s=get_float(sm, "backoff_max_s", 30.0, where=where, min_value=0.0),
    )
    if retry.max_s < retry.initial_s:
        raise ConfigError(f"{where}: backoff_max_s must be >= backoff_initial_s")
    return SecmasterSettings(
        database_url=url,
        data_dir=data_dir,
        lock_path=config.resolve_path(lock) if lock else data_dir / "secmaster.lock",
        poll_interval_min=get_float(sm, "poll_interval_min", 60.0, where=where, min_value=0.001),
        min_listings=min_listings,
        rest_urls=rest_urls,
        http_timeout_s=get_float(sm, "http_timeout_s", 30.0, where=where, min_value=0.1),
        retry=retry,
        apply_cmd=apply_cmd,
        max_delist_pct=get_float(
            sm, "max_delist_pct", 10.0, where=where, min_value=0.0, max_value=100.0
        ),
        config_path=config.path,
        universe=universe,
        shared=_shared_universe(config) if universe == "s3" else None,
        exchanges=_exchanges(sm, where, config),
        auto_track=_auto_track(sm.get("auto_track", []), where),
    )


def _shared_universe(config: Config) -> SharedUniverseSettings:
    """The universe document's location, from the fleet's ``[sync]`` bucket and prefix."""
    from secmaster.shared_universe import universe_key

    t = config.section("sync")
    w = f"{config.path} [sync]"
    bucket = get_str(t, "bucket", "", where=w).strip()
    if not bucket:
        raise ConfigError(
            f"{config.path} [secmaster]: universe = 's3' needs [sync] bucket (the fleet's bucket "
            "holds the universe document)"
        )
    endpoint = get_str(t, "endpoint_url", "", where=w).strip()
    return SharedUniverseSettings(
        bucket=bucket,
        key=universe_key(get_str(t, "prefix", "collector", where=w)),
        endpoint_url=(
            check_url(endpoint, ("http", "https"), what=f"{w}: endpoint_url", userinfo=False)
            if endpoint
            else None
        ),
        region=get_str(t, "region", "eu-west-1", where=w),
    )


def _exchanges(sm: Mapping[str, Any], where: str, config: Config) -> tuple[str, ...]:
    # By default only what this host's region may reach: a US host's polls of Binance.com
    # would all be HTTP 451 (another region's host polls its listings into the universe).
    default = [ex for ex in LISTING_EXCHANGES if allowed_here(config, ex)]
    value = sm.get("exchanges", default)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: exchanges = {value!r:.200} must be a list of exchange names")
    for v in value:
        if v not in LISTING_EXCHANGES:
            raise ConfigError(
                f"{where}: exchanges: unknown exchange {shown(v)} (choose from "
                f"{', '.join(LISTING_EXCHANGES)})"
            )
    return tuple(dict.fromkeys(value))


def _auto_track(value: object, where: str) -> tuple[AutoTrackRule, ...]:
    """``[secmaster] auto_track``: a list of rules, each validated; unknown keys refused."""
    if not isinstance(value, list):
        raise ConfigError(f"{where}: auto_track = {value!r:.200} must be a list of tables")
    return tuple(_auto_track_rule(rule, f"{where} auto_track[{i}]") for i, rule in enumerate(value))


def _auto_track_rule(rule: object, where: str) -> AutoTrackRule:
    if not isinstance(rule, Mapping):
        raise ConfigError(f"{where} = {rule!r:.200} must be a table")
    for key in rule:
        if key not in AUTO_TRACK_KEYS:
            raise ConfigError(
                f"{where}: unknown key {shown(str(key))} (keys: {', '.join(AUTO_TRACK_KEYS)})"
            )
    exchange = get_str(rule, "exchange", "", where=where)
    if exchange not in LISTING_EXCHANGES:
        raise ConfigError(
            f"{where}: exchange = {shown(exchange)} must be one of {', '.join(LISTING_EXCHANGES)}"
        )
    data_types = rule.get("data_types")
    if not isinstance(data_types, list) or not all(isinstance(d, str) for d in data_types):
        raise ConfigError(f"{where}: data_types = {data_types!r:.200} must be a list of strings")
    filters: dict[str, str | None] = {}
    try:
        checked = tuple(check_data_types(exchange, data_types))
        for name in ("quote", "base", "status"):
            v = rule.get(name)
            filters[name] = None if v is None else check_filter(name, get_str(rule, name, ""))
    except UniverseError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    take_all = rule.get("all", False)
    if not isinstance(take_all, bool):
        raise ConfigError(f"{where}: all = {take_all!r:.200} must be true or false")
    given = [k for k, v in filters.items() if v is not None]
    if take_all == bool(given):
        raise ConfigError(
            f"{where}: give a filter (quote, base or status) or all = true"
            if not take_all
            else f"{where}: all = true takes no filter ({', '.join(given)} given)"
        )
    return AutoTrackRule(
        exchange=exchange,
        data_types=checked,
        quote=filters["quote"],
        base=filters["base"],
        status=filters["status"],
        all=take_all,
    )
