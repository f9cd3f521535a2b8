"""The fleet's one tracked universe as a document in the fleet's bucket (``universe = "s3"``).

``s3://{sync.bucket}/{sync.prefix}/universe.json`` holds every tracked stream. Every host
reads it (each applies only its own share); any host, or an operator's laptop with the
config, changes it with an optimistic read-modify-write: read the document and its ETag,
apply the change, write it back with ``If-Match: <etag>`` (``If-None-Match: *`` when there is
none yet). S3 refuses the write with 412 when someone else wrote in between; then the change
is applied again to the new document, so two concurrent ``track`` commands never lose one.
Nothing is cached: every read (each ``ops.fleet apply`` render) is a GET of the document.
Why a document and not a shared database: see the README ("Security master").

:class:`SharedUniverse` is the ``Universe`` (``secmaster.universe``) kept here;
:class:`S3Universe` the conditional read-modify-write under it. A failure to reach the bucket
(network, credentials, permissions) is a :class:`UniverseUnavailableError` naming the document
and S3's error code, never a traceback, and never an empty universe: a render that cannot read
the universe fails (``ops.fleet`` exits 1, the running collectors stay as they are).

Document (version 1, sorted, deterministic):
``{"version": 1, "initialized": true, "streams": [{"exchange", "symbol", "data_type",
"added_at", "added_by"}, ...], "removed": [{"exchange", "symbol", "data_type", "removed_at",
"removed_by"}, ...]}``; ``removed`` (optional) lists the streams an operator untracked, which
auto-track never adds again. A missing document is an empty universe that was never
initialized (the default universe is written on first use, as in the local table). A
document that is not this shape (not JSON, a field that is not a string, over 16 MiB) is a
:class:`BadUniverseError`: nothing of it is used. Names inside are checked again by every
reader (``secmaster.universe.tracked_streams``), as rows of the local table are.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from collector.common.errors import ConfigError
from secmaster.names import UniverseStoreError
from secmaster.universe import DEFAULT_UNIVERSE, UniverseRow

if TYPE_CHECKING:
    from secmaster.settings import SharedUniverseSettings

log = structlog.get_logger()

StreamKey = tuple[str, str, str]
MAX_ATTEMPTS = 20
MAX_BYTES = 16 * 1024 * 1024  # a hostile or broken document is refused, not read whole
# One request to the bucket: a short bound, a few retries (botocore's standard mode).
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 20.0
MAX_REQUEST_ATTEMPTS = 3
_FIELDS = ("exchange", "symbol", "data_type")


class UniverseConflictError(UniverseStoreError):
    """The document kept changing under us (more than MAX_ATTEMPTS writers at once)."""


class BadUniverseError(UniverseStoreError):
    """The document in the bucket is not a universe document (the message says why)."""


class UniverseUnavailableError(UniverseStoreError):
    """The bucket could not be read or written (the message names the document and why)."""


@dataclass(frozen=True)
class Added:
    added_at: dt.datetime
    added_by: str


@dataclass
class UniverseDoc:
    streams: dict[StreamKey, Added] = field(default_factory=dict)
    initialized: bool = False
    # Streams an operator removed (when, who): auto-track never adds them again.
    removed: dict[StreamKey, Added] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        doc: dict[str, Any] = {
            "version": 1,
            "initialized": self.initialized,
            "streams": _rows(self.streams, "added"),
        }
        if self.removed:
            doc["removed"] = _rows(self.removed, "removed")
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
        initialized = doc.get("initialized", False)
        if not isinstance(initialized, bool):
            raise BadUniverseError(f"universe document: initialized = {initialized!r:.60}")
        return cls(
            streams=_parse_rows(doc.get("streams"), "streams", "added"),
            initialized=initialized,
            removed=_parse_rows(doc.get("removed", []), "removed", "removed"),
        )


def _rows(streams: Mapping[StreamKey, Added], verb: str) -> list[dict[str, str]]:
    return [
        {
            "exchange": ex,
            "symbol": sym,
            "data_type": d,
            f"{verb}_at": a.added_at.astimezone(dt.UTC).isoformat(),
            f"{verb}_by": a.added_by,
        }
        for (ex, sym, d), a in sorted(streams.items())
    ]


def _parse_rows(rows: object, name: str, verb: str) -> dict[StreamKey, Added]:
    if not isinstance(rows, list):
        raise BadUniverseError(f"universe document has no {name} list")
    out: dict[StreamKey, Added] = {}
    for row in rows:
        if not isinstance(row, dict):
            raise BadUniverseError(f"universe {name} entry {row!r:.80} is not an object")
        values = [row.get(k) for k in (*_FIELDS, f"{verb}_at", f"{verb}_by")]
        if not all(isinstance(v, str) for v in values):
            raise BadUniverseError(f"universe {name} entry {row!r:.80}: a field is not a string")
        ex, sym, d, at, by = (str(v) for v in values)
        try:
            when = dt.datetime.fromisoformat(at)
        except ValueError as exc:
            raise BadUniverseError(f"universe {name} entry {row!r:.80}: {exc}") from None
        out[(ex, sym, d)] = Added(when if when.tzinfo else when.replace(tzinfo=dt.UTC), by)
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
    """The document's key under the fleet's prefix (``collector`` → ``collector/universe.json``;
    the prefix is read as ``ops.sync`` reads it: slashes at either end do not count)."""
    parts = [p for p in prefix.strip("/").split("/") if p]
    if ".." in parts or not prefix.isprintable():
        raise ConfigError(f"[sync] prefix {prefix!r:.80} cannot hold the universe document")
    return "/".join([*parts, "universe.json"])


def make_client(settings: SharedUniverseSettings) -> Any:
    """An S3 client for the document (credentials: the normal AWS chain, never logged)."""
    import boto3
    from botocore.config import Config as BotoConfig

    cfg = BotoConfig(
        region_name=settings.region,
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
        retries={"mode": "standard", "max_attempts": MAX_REQUEST_ATTEMPTS},
    )
    return boto3.session.Session().client("s3", endpoint_url=settings.endpoint_url, config=cfg)


class SharedUniverse:
    """The ``Universe`` kept in the fleet's bucket (``[secmaster] universe = "s3"``)."""

    def __init__(self, store: S3Universe) -> None:
        self.store = store

    @classmethod
    def open(cls, settings: SharedUniverseSettings) -> SharedUniverse:
        return cls(S3Universe(make_client(settings), settings.bucket, settings.key))

    @property
    def location(self) -> str:
        return self.store.url

    def rows(self, *, now: dt.datetime, user: str, dry_run: bool = False) -> list[UniverseRow]:
        if dry_run:
            doc = self._guarded(lambda: self.store.read()[0])
            doc = doc if doc.initialized else _with_default(doc, now, user)
        else:
            doc = self._update(lambda d: None if d.initialized else _with_default(d, now, user))
        return [UniverseRow(k, a.added_at, a.added_by) for k, a in sorted(doc.streams.items())]

    def add(
        self,
        streams: Sequence[StreamKey],
        *,
        now: dt.datetime,
        user: str,
        skip_removed: bool = False,
    ) -> list[StreamKey]:
        added: list[StreamKey] = []

        def change(doc: UniverseDoc) -> UniverseDoc | None:
            fresh = not doc.initialized
            doc = _with_default(doc, now, user) if fresh else doc
            added[:] = [
                s
                for s in dict.fromkeys(streams)
                if s not in doc.streams and not (skip_removed and s in doc.removed)
            ]
            if not added and not fresh:
                return None
            for s in added:
                doc.streams[s] = Added(now, user)
                doc.removed.pop(s, None)
            return doc

        self._update(change)
        return sorted(added)

    def remove(
        self, streams: Sequence[StreamKey], *, now: dt.datetime, user: str
    ) -> list[StreamKey]:
        removed: list[StreamKey] = []

        def change(doc: UniverseDoc) -> UniverseDoc | None:
            fresh = not doc.initialized
            doc = _with_default(doc, now, user) if fresh else doc
            removed[:] = [s for s in dict.fromkeys(streams) if s in doc.streams]
            if not removed and not fresh:
                return None
            for s in removed:
                del doc.streams[s]
                doc.removed[s] = Added(now, user)
            return doc

        self._update(change)
        return sorted(removed)

    def _update(self, change: Callable[[UniverseDoc], UniverseDoc | None]) -> UniverseDoc:
        return self._guarded(lambda: self.store.update(change))

    def _guarded(self, call: Callable[[], UniverseDoc]) -> UniverseDoc:
        """Run a request; a failure of the bucket becomes one UniverseUnavailableError line."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return call()
        except ClientError as exc:
            raise UniverseUnavailableError(
                f"universe {self.location}: S3 refused: {_code(exc) or 'error'}"
            ) from None
        except BotoCoreError as exc:
            raise UniverseUnavailableError(
                f"universe {self.location}: S3 unreachable: {type(exc).__name__}"
            ) from None


def _with_default(doc: UniverseDoc, now: dt.datetime, user: str) -> UniverseDoc:
    """The never-initialized document with the default universe written into it."""
    out = UniverseDoc(dict(doc.streams), True, dict(doc.removed))
    for stream in DEFAULT_UNIVERSE:
        out.streams.setdefault(stream, Added(now, user))
    log.info("secmaster.universe.default_created", streams=len(DEFAULT_UNIVERSE))
    return out
