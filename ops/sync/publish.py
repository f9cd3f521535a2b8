"""This host's status snapshot in the fleet's bucket, and reading every host's back.

Each sync run (``python -m ops.sync run``, the periodic job's command) ends by publishing the
content of ``python -m ops status --json`` to
``s3://{bucket}/{prefix}/{host_id}/_status/status.json`` (one small PUT; the host's role
already may write under its own prefix). ``_status`` cannot clash with the data it sits next
to: delivered files start with an exchange id, which is lowercase letters only.
``python -m ops status --fleet`` reads them all (ops/fleetstatus.py).

Snapshots are input from other machines: :func:`read_snapshot` bounds the size, and the
fleet view checks every field it shows.
"""

from __future__ import annotations

from typing import Any

import orjson
import structlog

from collector.common.config import Config
from collector.common.errors import ConfigError
from ops.sync import s3
from ops.sync.settings import S3Settings

log = structlog.get_logger()

STATUS_REL = "_status/status.json"
MAX_SNAPSHOT_BYTES = 64 * 1024 * 1024  # ~3,000 streams are ~3 MB


def status_key(settings: S3Settings, host_id: str | None = None) -> str:
    """``{prefix}/{host_id}/_status/status.json`` of this host (or of ``host_id``)."""
    return host_prefix(settings, host_id or settings.host_id) + STATUS_REL


def fleet_prefix(settings: S3Settings) -> str:
    """``{prefix}/``: every host's keys start with it (``""`` for an empty prefix)."""
    parts = [p for p in settings.prefix.strip("/").split("/") if p]
    return "".join(f"{p}/" for p in parts)


def host_prefix(settings: S3Settings, host_id: str) -> str:
    return f"{fleet_prefix(settings)}{host_id}/"


def publish_status(config: Config, settings: S3Settings, client: Any = None) -> bool:
    """PUT this host's ``ops status --json`` snapshot; False (logged) when it failed."""
    from ops.status import collect, render_json

    try:
        body = render_json(collect(config)).encode()
    except ConfigError as exc:
        log.warning("sync.status_not_published", error=str(exc))
        return False
    key = status_key(settings)
    try:
        (client or s3.make_client(settings)).put_object(
            Bucket=settings.bucket,
            Key=key,
            Body=body,
            ContentType="application/json",
            ChecksumAlgorithm="SHA256",
        )
    except Exception as exc:  # noqa: BLE001 - any S3/network error: the snapshot goes stale
        log.warning("sync.status_not_published", key=key, error=s3.error_code(exc))
        return False
    log.info("sync.status_published", key=key, bytes=len(body))
    return True


def list_hosts(client: Any, settings: S3Settings) -> list[str]:
    """The host ids that have published a snapshot (the first path level under the prefix)."""
    prefix = fleet_prefix(settings)
    hosts: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=settings.bucket, Prefix=prefix, Delimiter="/"
    ):
        for cp in page.get("CommonPrefixes", []):
            name = str(cp.get("Prefix", ""))[len(prefix) :].rstrip("/")
            if name:
                hosts.append(name)
    return sorted(hosts)


def read_snapshot(client: Any, settings: S3Settings, host_id: str) -> tuple[Any, str | None]:
    """(the decoded snapshot, None), or (None, why not: "missing", "unreadable: ...")."""
    key = status_key(settings, host_id)
    try:
        obj = client.get_object(Bucket=settings.bucket, Key=key)
    except Exception as exc:  # noqa: BLE001 - reported per host, never a crash
        code = s3.error_code(exc)
        return None, "missing" if code in ("NoSuchKey", "404") else f"unreadable: {code}"
    size = int(obj.get("ContentLength") or 0)
    if size > MAX_SNAPSHOT_BYTES:
        obj["Body"].close()
        return None, f"unreadable: {size} bytes (more than {MAX_SNAPSHOT_BYTES})"
    try:
        return orjson.loads(obj["Body"].read(MAX_SNAPSHOT_BYTES + 1)), None
    except orjson.JSONDecodeError:
        return None, "unreadable: not JSON"
