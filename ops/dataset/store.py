"""Object stores the dataset reads and writes: a local directory or an S3 prefix.

One small interface, two implementations: keys are POSIX paths relative to the store's root;
``objects`` returns every object under a key prefix with a ``tag`` that changes whenever its
content may have (S3: the ETag; local: size and mtime). Local stores never follow a symlink
(as QA and sync): what is outside the directory is not the host's delivery. boto3 is
imported lazily.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ops.sync.settings import S3Settings


class StoreError(Exception):
    """The store cannot be used at all (no such bucket, access refused, not a directory)."""


@dataclass(frozen=True, slots=True)
class Obj:
    key: str  # relative to the store's root
    size: int
    tag: str


class Store(Protocol):
    """Where objects live: ``objects`` / ``get`` / ``put`` by key relative to the root."""

    @property
    def url(self) -> str: ...  # for messages: s3://bucket/prefix or a directory

    def objects(self, prefix: str) -> Iterator[Obj]: ...

    def children(self, prefix: str) -> list[str]: ...  # names one level below ``prefix``

    def get(self, key: str) -> bytes: ...

    def put(self, key: str, data: bytes, content_type: str) -> bool: ...  # False: unchanged


class LocalStore:
    """A directory (a host's data dir, or a local dataset)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)

    def _path(self, key: str) -> Path:
        if ".." in key.split("/") or key.startswith("/"):
            raise StoreError(f"{key!r} is not a key inside {self.root}")
        return self.root / key

    def children(self, prefix: str) -> list[str]:
        d = self._path(prefix) if prefix else self.root
        try:
            with os.scandir(d) as it:
                return sorted(
                    e.name
                    for e in it
                    if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)
                )
        except (FileNotFoundError, NotADirectoryError):
            return []

    def objects(self, prefix: str) -> Iterator[Obj]:
        base = self._path(prefix.rstrip("/")) if prefix else self.root
        if not base.is_dir() or base.is_symlink():
            return
        for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
            dirnames[:] = sorted(
                d
                for d in dirnames
                if not d.startswith(".") and not os.path.islink(f"{dirpath}/{d}")
            )
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                path = os.path.join(dirpath, name)
                st = os.lstat(path)
                if not os.path.isfile(path) or os.path.islink(path):
                    continue
                key = Path(path).relative_to(self.root).as_posix()
                yield Obj(key, st.st_size, f"{st.st_size}:{st.st_mtime_ns}")

    def get(self, key: str) -> bytes:
        path = self._path(key)
        if path.is_symlink():
            raise FileNotFoundError(key)
        return path.read_bytes()

    def put(self, key: str, data: bytes, content_type: str) -> bool:
        path = self._path(key)
        try:
            if path.read_bytes() == data:
                return False  # identical: leave the file (and its mtime) alone
        except FileNotFoundError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return True


class S3Store:
    """``s3://{bucket}/{root}/``; one boto3 client (thread-safe) per store."""

    def __init__(self, client: Any, bucket: str, root: str) -> None:
        self.client = client
        self.bucket = bucket
        self.root = root.strip("/")
        self.url = f"s3://{bucket}/{self.root}"

    def _key(self, key: str) -> str:
        return f"{self.root}/{key}" if self.root else key

    def _rel(self, key: str) -> str:
        return key[len(self.root) + 1 :] if self.root else key

    def children(self, prefix: str) -> list[str]:
        inner = prefix.strip("/")
        full = "/".join(p for p in (self.root, inner) if p)
        full = full + "/" if full else ""
        names: list[str] = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full, Delimiter="/"
            )
            for page in pages:
                for cp in page.get("CommonPrefixes", []):
                    names.append(cp["Prefix"][len(full) :].rstrip("/"))
        except Exception as exc:
            raise _store_error(self, exc) from exc
        return sorted(names)

    def objects(self, prefix: str) -> Iterator[Obj]:
        full = self._key(prefix)
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full
            )
            for page in pages:
                for o in page.get("Contents", []):
                    yield Obj(self._rel(o["Key"]), int(o["Size"]), str(o["ETag"]).strip('"'))
        except Exception as exc:
            raise _store_error(self, exc) from exc

    def get(self, key: str) -> bytes:
        try:
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=self._key(key))[
                "Body"
            ].read()
        except Exception as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                raise FileNotFoundError(key) from None
            raise _store_error(self, exc) from exc
        return body

    def put(self, key: str, data: bytes, content_type: str) -> bool:
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            if str(head.get("ETag", "")).strip('"') == md5:
                return False  # the same bytes are there: no new object version
        except Exception as exc:
            if _code(exc) not in ("404", "NoSuchKey", "NotFound"):
                raise _store_error(self, exc) from exc
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._key(key),
                Body=data,
                ContentType=content_type,
                ChecksumAlgorithm="SHA256",
            )
        except Exception as exc:
            raise _store_error(self, exc) from exc
        return True


def _code(exc: BaseException) -> str:
    from ops.sync.s3 import error_code

    return error_code(exc)


def _store_error(store: S3Store, exc: BaseException) -> StoreError:
    return StoreError(f"{store.url}: {_code(exc)}: {exc}")


def make_s3_client(settings: S3Settings) -> Any:
    """The same client configuration as the sync (endpoint, region, retries)."""
    from ops.sync.s3 import make_client

    return make_client(settings)


def check_bucket(client: Any, bucket: str, prefix: str) -> None:
    """Raise StoreError unless the bucket exists and answers a listing of ``prefix`` (a
    listing, not HeadBucket: the builder's role may list only the prefixes it reads)."""
    try:
        client.list_objects_v2(Bucket=bucket, Prefix=prefix.strip("/") + "/", MaxKeys=1)
    except Exception as exc:
        raise StoreError(f"s3://{bucket}: {_code(exc)}") from exc
