"""S3 sync settings: the ``[sync]`` table of the config file plus ``data_dir`` and ``host_id``.

Built once in ``__main__`` and passed down. Credentials are not settings: boto3 finds them
itself through the normal AWS chain (environment locally, the instance role on EC2).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from collector.common.config import Config, check_url, get_float, get_int, get_str, redact_url
from collector.common.errors import ConfigError
from collector.common.layout import sync_dir, sync_lock_path

MIB = 1024 * 1024
RETRY_MODES = ("standard", "adaptive")


@dataclass(frozen=True)
class S3Settings:
    """Everything one sync run needs; ``bucket == ""`` means sync is disabled."""

    data_dir: Path
    host_id: str
    bucket: str = ""
    prefix: str = "collector"
    endpoint_url: str | None = None
    region: str = "eu-west-1"
    interval_s: float = 600.0
    concurrency: int = 16
    retention_days: float = 3.0
    min_age_s: float = 5.0
    multipart_threshold_bytes: int = 100 * MIB
    part_size_bytes: int = 16 * MIB
    retry_mode: str = "adaptive"
    max_attempts: int = 8
    confirm_with_head: bool = False

    @property
    def state_dir(self) -> Path:
        """Ledger and lock live here (a dot directory the scan never enters)."""
        return sync_dir(self.data_dir)

    @property
    def ledger_path(self) -> Path:
        return self.state_dir / "ledger.sqlite"

    @property
    def lock_path(self) -> Path:
        return sync_lock_path(self.data_dir)

    @cached_property
    def key_prefix(self) -> str:
        """``{prefix}/{host_id}/``: every key of this host starts with it."""
        parts = [p for p in self.prefix.strip("/").split("/") if p]
        return "/".join([*parts, self.host_id]) + "/"

    def key_for(self, rel_path: str) -> str:
        return self.key_prefix + rel_path


def _get_bool(table: Mapping[str, Any], key: str, default: bool, *, where: str) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: {key} = {value!r} must be true or false")
    return value


def build_s3_settings(config: Config) -> S3Settings:
    """Validate ``[sync]``; raises ConfigError naming the bad value."""
    t = config.section("sync")
    w = f"{config.path} [sync]"
    bucket = get_str(t, "bucket", "", where=w).strip()
    endpoint = get_str(t, "endpoint_url", "", where=w).strip()
    retry_mode = get_str(t, "retry_mode", "adaptive", where=w)
    if retry_mode not in RETRY_MODES:
        raise ConfigError(f"{w}: retry_mode = {retry_mode!r} must be standard or adaptive")
    endpoint_url = (
        check_url(endpoint, ("http", "https"), what=f"{w}: endpoint_url") if endpoint else None
    )
    if endpoint_url is not None and "@" in urlsplit(endpoint_url).netloc:
        # S3 requests are signed with the AWS credentials; a user:password in the URL is a
        # mistake that botocore would echo into every connection error (and so the logs)
        raise ConfigError(
            f"{w}: endpoint_url = {redact_url(endpoint)!r} must not contain user:password@"
            " (S3 credentials come from the AWS environment or the instance role)"
        )
    threshold_mb = get_int(t, "multipart_threshold_mb", 100, where=w, min_value=5)
    part_mb = get_int(t, "part_size_mb", 16, where=w, min_value=5, max_value=5120)
    return S3Settings(
        data_dir=config.data_dir,
        host_id=config.host_id,
        bucket=bucket,
        prefix=get_str(t, "prefix", "collector", where=w),
        endpoint_url=endpoint_url,
        region=get_str(t, "region", "eu-west-1", where=w),
        interval_s=60.0 * get_float(t, "interval_min", 10.0, where=w, min_value=0.01),
        concurrency=get_int(t, "concurrency", 16, where=w, min_value=1, max_value=256),
        retention_days=get_float(t, "retention_days", 3.0, where=w),
        min_age_s=get_float(t, "min_age_s", 5.0, where=w, min_value=0.0),
        multipart_threshold_bytes=threshold_mb * MIB,
        part_size_bytes=part_mb * MIB,
        retry_mode=retry_mode,
        max_attempts=get_int(t, "max_attempts", 8, where=w, min_value=1, max_value=50),
        confirm_with_head=_get_bool(t, "confirm_with_head", False, where=w),
    )
