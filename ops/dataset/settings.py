"""Dataset settings: ``[dataset]`` plus what it reads of ``[sync]`` and ``[exchanges.X]``.

Built once in ``__main__`` (or by :func:`ops.dataset.load`) and passed down. Credentials are
not settings: boto3 finds them through the normal AWS chain.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector.common.config import HOST_ID, Config, check_url, get_float, get_int, get_str
from collector.common.errors import ConfigError
from collector.exchanges import ADAPTERS
from collector.exchanges.base import OptionValue
from collector.settings import read_options
from ops.sync.settings import S3Settings, build_s3_settings

_PREFIX = re.compile(r"[A-Za-z0-9._=-]+(?:/[A-Za-z0-9._=-]+)*")


@dataclass(frozen=True)
class DatasetSettings:
    """Everything one build needs."""

    s3: S3Settings  # bucket, endpoint and the hosts' prefix come from [sync]
    prefix: str = "dataset"
    hosts: tuple[str, ...] = ()  # empty: discovered by listing the hosts' prefix
    backfill: bool = True
    require_qa: bool = True
    deadline_s: float = 6 * 3600.0
    lookback_s: float = 48 * 3600.0
    rest_budget: int = 500
    rest_share: float = 0.25
    interval_s: float = 3600.0
    out_dir: Path | None = None  # a local dataset root instead of S3
    rest_urls: Mapping[str, str] | None = None  # exchange -> REST base URL
    # exchange -> the adapter's options as configured (e.g. which trade id a stream carries)
    options: Mapping[str, Mapping[str, OptionValue]] | None = None

    @property
    def lock_path(self) -> Path:
        return self.s3.data_dir / ".dataset" / "build.lock"

    @property
    def state_dir(self) -> Path:
        """Where fetched REST pages are cached when the dataset is local."""
        return self.s3.data_dir / ".dataset"

    def rest_url(self, exchange: str) -> str:
        urls = self.rest_urls or {}
        return urls.get(exchange) or ADAPTERS[exchange].DEFAULT_REST_URL


def _bool(table: Mapping[str, Any], key: str, default: bool, where: str) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: {key} = {value!r} must be true or false")
    return value


def _hosts(table: Mapping[str, Any], where: str) -> tuple[str, ...]:
    value = table.get("hosts", [])
    if not isinstance(value, list) or not all(isinstance(h, str) for h in value):
        raise ConfigError(f"{where}: hosts = {value!r} must be a list of host ids")
    return check_hosts(value, what=f"{where}: hosts")


def check_hosts(hosts: list[str], *, what: str) -> tuple[str, ...]:
    for h in hosts:
        if not HOST_ID.fullmatch(h):
            raise ConfigError(f"{what}: {h!r} is not a host id (1-63 of [A-Za-z0-9._-])")
    return tuple(sorted(set(hosts)))


def build_dataset_settings(config: Config) -> DatasetSettings:
    """Validate ``[dataset]``; raises ConfigError naming the bad value."""
    t = config.section("dataset")
    w = f"{config.path} [dataset]"
    prefix = get_str(t, "prefix", "dataset", where=w).strip("/")
    if not _PREFIX.fullmatch(prefix):
        raise ConfigError(f"{w}: prefix = {prefix!r} must be a key prefix like 'dataset'")
    s3 = build_s3_settings(config)
    if prefix == s3.prefix.strip("/") or prefix.startswith(s3.prefix.strip("/") + "/"):
        raise ConfigError(f"{w}: prefix = {prefix!r} must lie outside the hosts' [sync] prefix")
    out = get_str(t, "out_dir", "", where=w).strip()
    urls: dict[str, str] = {}
    for name, adapter in ADAPTERS.items():
        ex = config.section("exchanges", name)
        wex = f"{config.path} [exchanges.{name}]"
        url = get_str(ex, "rest_url", adapter.DEFAULT_REST_URL, where=wex)
        urls[name] = check_url(url, ("http", "https"), what=f"{wex} rest_url", userinfo=False)
    options = {name: read_options(config, name) for name in ADAPTERS}
    return DatasetSettings(
        s3=s3,
        prefix=prefix,
        hosts=_hosts(t, w),
        backfill=_bool(t, "backfill", True, w),
        require_qa=_bool(t, "require_qa", True, w),
        deadline_s=3600.0 * get_float(t, "deadline_h", 6.0, where=w, min_value=0.0),
        lookback_s=3600.0 * get_float(t, "lookback_h", 48.0, where=w, min_value=1.0),
        rest_budget=get_int(t, "rest_budget", 500, where=w, min_value=0),
        rest_share=get_float(t, "rest_share", 0.25, where=w, min_value=0.01, max_value=1.0),
        interval_s=60.0 * get_float(t, "interval_min", 60.0, where=w, min_value=0.01),
        out_dir=config.resolve_path(out) if out else None,
        rest_urls=urls,
        options=options,
    )
