"""The delivery ledger: a SQLite file recording every file confirmed in S3.

A row means: the local file ``path`` with this ``size``/``mtime_ns`` and SHA-256 was uploaded
to ``bucket``/``key`` and S3 reported the same size and checksum (``s3_checksum`` is the value
S3 returns: the object's SHA-256, or for multipart uploads the checksum of the part checksums,
suffixed ``-N``). Rows are written in batches, one transaction per batch, by one thread.

``pending_uploads`` holds multipart uploads in progress, so a killed run's leftovers are
aborted by the next run without listing the bucket.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

_SCHEMA = """
CREATE TABLE IF NOT EXISTS delivered (
    path TEXT PRIMARY KEY,          -- relative to the data directory, POSIX
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL,           -- hex SHA-256 of the whole file
    s3_checksum TEXT NOT NULL,      -- ChecksumSHA256 as S3 reports it
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    delivered_at REAL NOT NULL,     -- epoch s of the upload
    verified_at REAL NOT NULL       -- epoch s of the last confirmation against S3
);
CREATE TABLE IF NOT EXISTS pending_uploads (
    upload_id TEXT PRIMARY KEY,
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    started_at REAL NOT NULL
);
"""


_SELECT_DELIVERED = (
    "SELECT path, size, mtime_ns, sha256, s3_checksum, bucket, key, delivered_at, verified_at"
    " FROM delivered"
)


class Delivery(NamedTuple):
    path: str
    size: int
    mtime_ns: int
    sha256: str
    s3_checksum: str
    bucket: str
    key: str
    delivered_at: float
    verified_at: float


class Ledger:
    """Open (creating if needed) the ledger file; use as a context manager."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Worker threads record pending multipart uploads, so one connection is shared
        # under a lock; delivered rows are only written by the coordinating thread.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def all(self) -> dict[str, Delivery]:
        with self._lock:
            rows = self._db.execute(_SELECT_DELIVERED).fetchall()
        return {r[0]: Delivery._make(r) for r in rows}

    def put_many(self, rows: Iterable[Delivery]) -> None:
        """Insert or replace rows in one transaction."""
        data = list(rows)
        if not data:
            return
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO delivered VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", data
            )
            self._db.execute("COMMIT")

    def forget(self, paths: Iterable[str]) -> None:
        data = [(p,) for p in paths]
        if not data:
            return
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("DELETE FROM delivered WHERE path = ?", data)
            self._db.execute("COMMIT")

    def add_pending(self, upload_id: str, bucket: str, key: str, started_at: float) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO pending_uploads VALUES (?, ?, ?, ?)",
                (upload_id, bucket, key, started_at),
            )

    def drop_pending(self, upload_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM pending_uploads WHERE upload_id = ?", (upload_id,))

    def pending(self) -> list[tuple[str, str, str]]:
        """``(upload_id, bucket, key)`` of multipart uploads a previous run left open."""
        with self._lock:
            rows = self._db.execute("SELECT upload_id, bucket, key FROM pending_uploads").fetchall()
        return [(r[0], r[1], r[2]) for r in rows]


def read_delivered(path: Path) -> dict[str, Delivery]:
    """The ledger's delivered rows, opened read-only (nothing created); {} without a ledger."""
    if not path.exists():
        return {}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {r[0]: Delivery._make(r) for r in db.execute(_SELECT_DELIVERED)}
    finally:
        db.close()
