"""Progress of an upload phase: a bar on a TTY, else a ``sync.progress`` log line now and then."""

from __future__ import annotations

import sys
import time
from typing import TextIO

import structlog

log = structlog.get_logger()


class Progress:
    def __init__(
        self,
        total_files: int,
        total_bytes: int,
        *,
        bar: bool,
        stream: TextIO | None = None,
        log_every_s: float = 10.0,
    ) -> None:
        self.total_files = total_files
        self.total_bytes = total_bytes
        self.files = 0
        self.bytes = 0
        self.failures = 0
        self._bar = bar
        self._out = stream if stream is not None else sys.stderr
        self._every = 0.1 if bar else log_every_s
        self._t0 = time.monotonic()
        self._last = self._t0

    def advance(self, nbytes: int, *, failed: bool = False) -> None:
        self.files += 1
        self.bytes += nbytes
        self.failures += failed
        now = time.monotonic()
        if now - self._last >= self._every:
            self._last = now
            self._show(now)

    def _show(self, now: float) -> None:
        elapsed = max(now - self._t0, 1e-6)
        rate_mb = self.bytes / elapsed / 1e6
        if self._bar:
            frac = self.bytes / self.total_bytes if self.total_bytes else 1.0
            filled = int(30 * frac)
            self._out.write(
                f"\r[{'#' * filled}{'.' * (30 - filled)}] {self.files}/{self.total_files} files"
                f" {self.bytes / 1e6:.1f}/{self.total_bytes / 1e6:.1f} MB {rate_mb:.1f} MB/s"
                f" {self.failures} failed "
            )
            self._out.flush()
        else:
            log.info(
                "sync.progress",
                files=self.files,
                total_files=self.total_files,
                bytes=self.bytes,
                total_bytes=self.total_bytes,
                mb_per_s=round(rate_mb, 2),
                failures=self.failures,
            )

    def close(self) -> None:
        if self._bar:
            self._show(time.monotonic())
            self._out.write("\n")
            self._out.flush()
