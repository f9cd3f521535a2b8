"""A new kind of frame in a stream → one alert: the live collector's ``on_new_kind`` hook.

The processor calls :class:`NewKindAlerts` the first time a key of what is new in the
stream is seen (``unknown_type:<type>``, ``unexpected_field:<type>.<field>``,
``missing_field:<type>.<field>``; see ``collector/common/errors.py``). Each key is alerted
once per process, as a ``warning`` naming the exchange, the stream, the key and an excerpt
of the frame; keys are cleaned and bounded where they are made, the excerpt here, so no
frame can put a newline or kilobytes into an alert.

Rate limit: at most :data:`MAX_ALERTS_PER_HOUR` alerts per process in any hour; the first key
past the limit sends one more alert saying so, later keys are only counted (``new_kinds`` in
``status.json``) and logged. Across processes (a crash loop, a restart) the alert service
suppresses a repeat of the same key within ``[alerts] suppress_window_s``, as for every
alert (its state is per data dir). There is no resolve: a new kind stays new until the
adapter knows it; ``ops status`` shows the stream as needing a human for an hour after the
last such frame.

Sending happens on the collector's event loop: with a sink configured the alert service
takes a file lock for its suppression state, which this limit keeps to a few times an hour.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from collector.common.alerts import Alert, send_alert
from collector.common.errors import clean_excerpt
from collector.common.structloglib import structlog

log = structlog.get_logger()

MAX_ALERTS_PER_HOUR = 10
_HOUR_S = 3600.0


class NewKindAlerts:
    """``on_new_kind`` of one stream's processor: alerts each new key once, rate-limited."""

    def __init__(
        self,
        exchange: str,
        symbol: str,
        data_type: str,
        *,
        send: Callable[[Alert], None] = send_alert,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stream = f"{exchange}:{symbol}:{data_type}"
        self.label = f"{exchange} {symbol} {data_type}"
        self.send = send
        self.clock = clock
        self._sent: deque[float] = deque()
        self._over_limit_told = False

    def __call__(self, key: str, excerpt: str) -> None:
        shown = clean_excerpt(excerpt)
        log.warning("frame.new_kind", key=key, excerpt=shown)
        now = self.clock()
        while self._sent and now - self._sent[0] >= _HOUR_S:
            self._sent.popleft()
        if len(self._sent) >= MAX_ALERTS_PER_HOUR:
            if not self._over_limit_told:
                self._over_limit_told = True
                self.send(self._alert("more", "more new kinds of frame than alerts allow", ""))
            return
        self._over_limit_told = False
        self._sent.append(now)
        self.send(self._alert(key, f"new kind of frame: {key}", shown))

    def _alert(self, key: str, what: str, excerpt: str) -> Alert:
        fields = {"stream": self.stream, "kind": key}
        if excerpt:
            fields["excerpt"] = excerpt
        else:
            fields["see"] = "status.json new_kinds"
        return Alert(
            source="collector",
            severity="warning",
            title=f"{what} ({self.label})",
            key=f"collector:{self.stream}:new:{key}",
            fields=fields,
        )
