"""Security-master settings, built once from the ``[secmaster]`` and ``[exchanges.*]`` tables.

Every URL (database, exchange REST bases) and every path (lock file) is a setting: that is the
seam tests use to point the security master at a local server and a database in ``tmp_path``.

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

from collector.common.config import Config, check_url, get_float, get_int, get_str
from collector.common.errors import ConfigError
from collector.exchanges import ADAPTERS

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
    )
