"""boto3 side of the sync: the client, checksummed uploads and their confirmation.

Every upload carries the SHA-256 of what is sent (``x-amz-checksum-sha256``); S3 computes it
again on receipt and refuses the request (``BadDigest``) on a mismatch. An upload counts as
delivered only when S3's answer carries back the same checksum (single PUT: the PUT response,
plus a HEAD when ``confirm_with_head``) or, for multipart uploads, when a HEAD shows the
expected size and composite checksum: SHA-256 of the concatenated binary part digests, base64,
suffixed ``-{parts}`` (S3's "checksum of checksums"). The whole-file SHA-256 goes into the
object's metadata (``x-amz-meta-sha256``) for readers who want it.

boto3 is imported lazily: the sync of a run with nothing to upload never pays for it (the
status snapshot that ends every ``ops.sync run`` does: one PUT, ops/sync/publish.py).
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ops.sync.settings import S3Settings

# Files up to this size are read into memory; larger ones are streamed from the descriptor.
_IN_MEMORY_MAX = 8 * 1024 * 1024
_READ_CHUNK = 1024 * 1024

# Errors after which the whole run stops: retrying other files cannot help.
FATAL_CODES = frozenset(
    {
        "NoSuchBucket",
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "AllAccessDisabled",
        "403",  # a HEAD's refusal has no body, so botocore has no code but the status
    }
)
# Fatal errors that may concern one key only (a bucket policy or KMS key scoped to a prefix):
# the run goes on with the other files and stops only when they are refused too.
PER_KEY_CODES = frozenset({"AccessDenied", "403"})


class ChecksumMismatchError(Exception):
    """S3 reported a size or checksum other than what was sent."""


@dataclass(frozen=True, slots=True)
class Uploaded:
    size: int
    mtime_ns: int
    sha256: str  # hex of the whole file
    s3_checksum: str  # as S3 reports it (composite ``...-N`` for multipart)


@dataclass(frozen=True, slots=True)
class Head:
    size: int
    checksum: str | None


def make_client(settings: S3Settings) -> Any:
    """One thread-safe S3 client shared by every upload of the run."""
    import boto3
    from botocore.config import Config as BotoConfig

    cfg = BotoConfig(
        region_name=settings.region,
        # file tasks and multipart part tasks run in two pools of ``concurrency`` threads
        max_pool_connections=2 * settings.concurrency,
        retries={"mode": settings.retry_mode, "max_attempts": settings.max_attempts},
        connect_timeout=10,
        read_timeout=120,
        tcp_keepalive=True,
        # Integrity comes from the explicit x-amz-checksum-sha256 header that S3 verifies, so
        # the body is not hashed a second time for the signature (boto3 already skips this on
        # HTTPS when a checksum header is present; this makes http endpoints behave the same).
        s3={"payload_signing_enabled": False},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    client = boto3.session.Session().client("s3", endpoint_url=settings.endpoint_url, config=cfg)
    # botocore turns every PutObject body into a file and asks for "Expect: 100-continue",
    # which costs a full round trip before the body is sent. Worth it for big bodies (a
    # rejected request does not send them); for small ones it doubles the latency of a PUT.
    client.meta.events.register("before-sign.s3.PutObject", _no_expect_for_small_bodies)
    return client


def _no_expect_for_small_bodies(request: Any, **kwargs: Any) -> None:
    length = request.headers.get("Content-Length")
    if length is not None and int(length) <= _IN_MEMORY_MAX:
        del request.headers["Expect"]


def error_code(exc: BaseException) -> str:
    """The S3 error code of a botocore ClientError, else the exception's class name."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return str(code)
    return type(exc).__name__


def is_fatal(exc: BaseException) -> bool:
    """Errors that will hit every file the same way (credentials, permissions, bucket)."""
    return error_code(exc) in FATAL_CODES or type(exc).__name__ in (
        "NoCredentialsError",
        "PartialCredentialsError",
    )


def is_per_key(exc: BaseException) -> bool:
    """A fatal error that may hit this object only (see PER_KEY_CODES)."""
    return error_code(exc) in PER_KEY_CODES


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def composite_checksum(part_digests: list[bytes]) -> str:
    return f"{b64(hashlib.sha256(b''.join(part_digests)).digest())}-{len(part_digests)}"


def checksum_matches(expected: str, got: str | None) -> bool:
    """Compare checksums in S3's notation; a missing ``-N`` suffix on ``got`` is tolerated
    (some S3 implementations omit it from HEAD), a different part count is not."""
    if not got:
        return False
    e_val, _, e_parts = expected.partition("-")
    g_val, _, g_parts = got.partition("-")
    return e_val == g_val and (not g_parts or g_parts == e_parts)


def content_type(name: str) -> str:
    return "application/json" if name.endswith(".json") else "application/gzip"


def head(client: Any, bucket: str, key: str) -> Head | None:
    """Size and checksum of an object, or None when it does not exist."""
    from botocore.exceptions import ClientError

    try:
        r = client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except ClientError as exc:
        if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return Head(size=int(r["ContentLength"]), checksum=r.get("ChecksumSHA256"))


def confirm(client: Any, bucket: str, key: str, size: int, checksum: str) -> None:
    h = head(client, bucket, key)
    if h is None:
        raise ChecksumMismatchError(f"{key}: missing right after upload")
    if h.size != size or not checksum_matches(checksum, h.checksum):
        raise ChecksumMismatchError(
            f"{key}: S3 has size {h.size} checksum {h.checksum}, sent {size} {checksum}"
        )


class _FileSlice:
    """A seekable, read-only window on a file descriptor (``pread``: threads share the fd)."""

    def __init__(self, fd: int, offset: int, length: int) -> None:
        self._fd = fd
        self._offset = offset
        self._length = length
        self._pos = 0

    def __len__(self) -> int:
        return self._length

    def read(self, n: int = -1) -> bytes:
        left = self._length - self._pos
        if n < 0 or n > left:
            n = left
        if n <= 0:
            return b""
        data = os.pread(self._fd, n, self._offset + self._pos)
        self._pos += len(data)
        return data

    def seek(self, pos: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._length}[whence]
        self._pos = max(0, min(self._length, base + pos))
        return self._pos

    def tell(self) -> int:
        return self._pos


def upload_file(
    client: Any,
    settings: S3Settings,
    path: os.PathLike[str] | str,
    key: str,
    *,
    part_pool: ThreadPoolExecutor,
    on_pending: Callable[[str, bool], None],
) -> Uploaded:
    """Upload one file and confirm it; raises on any failure (nothing is recorded then).

    ``on_pending(upload_id, started)`` is told when a multipart upload opens and closes, so a
    killed run's open uploads can be aborted later.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        # Size, mtime and bytes all come from this descriptor: a QA report replaced by an
        # atomic rename meanwhile does not mix two versions.
        st = os.fstat(fd)
        size = st.st_size
        name = os.fspath(path)
        if size >= settings.multipart_threshold_bytes:
            sha, s3sum = _multipart(client, settings, fd, size, key, name, part_pool, on_pending)
        else:
            sha, s3sum = _single(client, settings, fd, size, key, name)
        return Uploaded(size=size, mtime_ns=st.st_mtime_ns, sha256=sha, s3_checksum=s3sum)
    finally:
        os.close(fd)


def _single(client: Any, s: S3Settings, fd: int, size: int, key: str, name: str) -> tuple[str, str]:
    body: bytes | _FileSlice
    if size <= _IN_MEMORY_MAX:
        body = os.pread(fd, size, 0)
        if len(body) != size:
            raise ChecksumMismatchError(f"{name}: short read")
        h = hashlib.sha256(body)
    else:
        h = hashlib.sha256()
        for off in range(0, size, _READ_CHUNK):
            h.update(os.pread(fd, min(_READ_CHUNK, size - off), off))
        body = _FileSlice(fd, 0, size)
    checksum = b64(h.digest())
    r = client.put_object(
        Bucket=s.bucket,
        Key=key,
        Body=body,
        ContentLength=size,
        ContentType=content_type(name),
        ChecksumAlgorithm="SHA256",
        ChecksumSHA256=checksum,
        Metadata={"sha256": h.hexdigest()},
    )
    if r.get("ChecksumSHA256") != checksum:
        raise ChecksumMismatchError(f"{key}: PUT answered checksum {r.get('ChecksumSHA256')}")
    if s.confirm_with_head:
        confirm(client, s.bucket, key, size, checksum)
    return h.hexdigest(), checksum


def _multipart(
    client: Any,
    s: S3Settings,
    fd: int,
    size: int,
    key: str,
    name: str,
    part_pool: ThreadPoolExecutor,
    on_pending: Callable[[str, bool], None],
) -> tuple[str, str]:
    # One read pass gives the whole-file digest (metadata) and every part digest (headers).
    whole = hashlib.sha256()
    ranges: list[tuple[int, int, bytes]] = []
    for off in range(0, size, s.part_size_bytes):
        n = min(s.part_size_bytes, size - off)
        ph = hashlib.sha256()
        for sub in range(off, off + n, _READ_CHUNK):
            chunk = os.pread(fd, min(_READ_CHUNK, off + n - sub), sub)
            ph.update(chunk)
            whole.update(chunk)
        ranges.append((off, n, ph.digest()))
    mpu = client.create_multipart_upload(
        Bucket=s.bucket,
        Key=key,
        ContentType=content_type(name),
        ChecksumAlgorithm="SHA256",
        Metadata={"sha256": whole.hexdigest()},
    )
    upload_id: str = mpu["UploadId"]
    on_pending(upload_id, True)
    try:

        def send(i: int) -> dict[str, Any]:
            off, n, digest = ranges[i]
            r = client.upload_part(
                Bucket=s.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=i + 1,
                Body=_FileSlice(fd, off, n),
                ContentLength=n,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=b64(digest),
            )
            if r.get("ChecksumSHA256") not in (None, b64(digest)):
                raise ChecksumMismatchError(f"{key} part {i + 1}: {r.get('ChecksumSHA256')}")
            return {"PartNumber": i + 1, "ETag": r["ETag"], "ChecksumSHA256": b64(digest)}

        parts = list(part_pool.map(send, range(len(ranges))))
        client.complete_multipart_upload(
            Bucket=s.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    except BaseException:
        try:
            client.abort_multipart_upload(Bucket=s.bucket, Key=key, UploadId=upload_id)
        except Exception:  # noqa: BLE001 - best effort; the next run aborts it from the ledger
            pass
        else:
            on_pending(upload_id, False)
        raise
    on_pending(upload_id, False)
    checksum = composite_checksum([d for _, _, d in ranges])
    confirm(client, s.bucket, key, size, checksum)
    return whole.hexdigest(), checksum
