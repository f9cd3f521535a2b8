"""The fleet's one tracked universe as a document in the fleet's bucket.

``s3://{sync.bucket}/{sync.prefix}/universe.json`` holds every tracked stream. Every host
reads it (each applies only its own share); any host, or an operator's laptop with the
config, changes it with an optimistic read-modify-write: read the document and its ETag,
apply the change, write it back with ``If-Match: <etag>`` (``If-None-Match: *`` when there is
none yet). S3 refuses the write with 412 when someone else wrote in between; then the change
is applied again to the new document, so two concurrent ``track`` commands never lose one.

Why a document and not a shared database: the fleet already has the bucket (every host can
reach it, with per-host IAM roles), the universe is small (thousands of streams, tens of
KB), changes are rare and human-driven, and S3's conditional writes make the update safe
without running and securing a database server in three regions. The listings (the SCD2
history) stay in each host's local SQLite: every host polls the exchanges itself.

Document (version 1, sorted, deterministic):
``{"version": 1, "initialized": true, "streams": [{"exchange", "symbol", "data_type",
"added_at", "added_by"}, ...]}``; a missing document is an empty universe that was never
initialized (the default universe is written on first use, as in the local table).
"""

from __future__ import annotations

import datetime as dt
import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from collector.common.errors import ConfigError

StreamKey = tuple[str, str, str]
MAX_ATTEMPTS = 20
MAX_BYTES = 16 * 1024 * 1024  # a hostile or broken document is refused, not read whole


class UniverseConflictError(Exception):
    """The document kept changing under us (more than MAX_ATTEMPTS writers at once)."""


class BadUniverseError(Exception):
    """The document in the bucket is not a universe document (the message says why)."""


@dataclass(frozen=True)
class Added:
    added_at: dt.datetime
    added_by: str


@dataclass
class UniverseDoc:
    streams: dict[StreamKey, Added] = field(default_factory=dict)
    initialized: bool = False

    def to_bytes(self) -> bytes:
        rows = [
            {
                "exchange": ex,
                "symbol": sym,
                "data_type": d,
                "added_at": a.added_at.astimezone(dt.UTC).isoformat(),
                "added_by": a.added_by,
            }
            for (ex, sym, d), a in sorted(self.streams.items())
        ]
        doc = {"version": 1, "initialized": self.initialized, "streams": rows}
        return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> UniverseDoc:
        if len(data) > MAX_BYTES:
            raise BadUniverseError(f"universe document is {len(data)} bytes (max {MAX_BYTES})")
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise BadUniverseError(f"universe document is not JSON: {exc}") from None
        if not isinstance(doc, dict) or doc.get("version") != 1:
            raise BadUniverseError("universe document has no version 1")
        rows = doc.get("streams")
        if not isinstance(rows, list):
            raise BadUniverseError("universe document has no streams list")
        out = cls(initialized=bool(doc.get("initialized")))
        for row in rows:
            if not isinstance(row, dict):
                raise BadUniverseError(f"universe stream {row!r:.80} is not an object")
            try:
                key = (str(row["exchange"]), str(row["symbol"]), str(row["data_type"]))
                added = Added(dt.datetime.fromisoformat(str(row["added_at"])), str(row["added_by"]))
            except (KeyError, ValueError) as exc:
                raise BadUniverseError(f"universe stream {row!r:.80}: {exc}") from None
            if added.added_at.tzinfo is None:
                added = Added(added.added_at.replace(tzinfo=dt.UTC), added.added_by)
            out.streams[key] = added
        return out


def _code(exc: Exception) -> str:
    response: Mapping[str, Any] = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class S3Universe:
    """Read and change the universe document with conditional writes."""

    def __init__(self, client: Any, bucket: str, key: str) -> None:
        self.client = client
        self.bucket = bucket
        self.key = key

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def read(self) -> tuple[UniverseDoc, str | None]:
        """The document and its ETag (None: there is none yet)."""
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except Exception as exc:  # botocore's ClientError: only a missing key is "empty"
            if _code(exc) in ("NoSuchKey", "404"):
                return UniverseDoc(), None
            raise
        body = obj["Body"].read(MAX_BYTES + 1)
        return UniverseDoc.from_bytes(body), str(obj["ETag"])

    def update(
        self,
        change: Callable[[UniverseDoc], UniverseDoc | None],
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> UniverseDoc:
        """Apply ``change`` (returning the new document, or None for "nothing to write")
        until the conditional write wins; returns the document as written (or read)."""
        for attempt in range(MAX_ATTEMPTS):
            doc, etag = self.read()
            new = change(doc)
            if new is None:
                return doc
            cond = {"IfMatch": etag} if etag is not None else {"IfNoneMatch": "*"}
            try:
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=self.key,
                    Body=new.to_bytes(),
                    ContentType="application/json",
                    **cond,
                )
            except Exception as exc:
                if _code(exc) not in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                    raise
                sleep(random.uniform(0.0, min(1.0, 0.02 * 2**attempt)))
                continue
            return new
        raise UniverseConflictError(
            f"{self.url} changed under us {MAX_ATTEMPTS} times in a row; try again"
        )


def universe_key(prefix: str) -> str:
    """The document's key under the fleet's prefix."""
    if not prefix or prefix.startswith("/") or ".." in prefix.split("/"):
        raise ConfigError(f"[sync] prefix {prefix!r} cannot hold the universe document")
    return f"{prefix.rstrip('/')}/universe.json"
