"""The demo's alert receiver (:class:`ops.alertsink.AlertSink`) with the queries tests make."""

from __future__ import annotations

import time
from collections.abc import Callable

from ops.alertsink import AlertSink


class WatchedAlertSink(AlertSink):
    """An :class:`AlertSink` whose received alerts a test can list and wait for."""

    def texts(self) -> list[str]:
        return [self.text(e) for e in list(self.received)]

    def wait_for(self, predicate: Callable[[str], bool], timeout_s: float) -> str:
        """The first received text matching ``predicate``; AssertionError after the timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            for t in self.texts():
                if predicate(t):
                    return t
            if time.monotonic() >= deadline:
                raise AssertionError(f"no matching alert within {timeout_s} s; got {self.texts()}")
            time.sleep(0.02)
