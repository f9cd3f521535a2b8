"""The single alert function used by every program (qa, secmaster, the listener, s3 sync).

Until sinks are configured this logs at warning/error with structured fields. The QA issue
adds Slack, Telegram and PagerDuty sinks behind the same API.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger()

SEVERITIES = ("info", "warning", "error", "critical")


@dataclass(frozen=True)
class Alert:
    """One alert.

    Attributes:
        source: the program raising it (``qa``, ``secmaster``, ``listener``, ``sync``).
        severity: ``info`` | ``warning`` | ``error`` | ``critical``.
        title: one short line saying what happened.
        key: a stable dedup key for the condition, e.g. ``qa:binance:BTCUSDT:trade``;
            repeats of the same key are suppressed and PagerDuty resolves by it.
        fields: short name → value details (host, exchange, symbol, file, ...).
        resolve: True when the condition named by ``key`` is over.
    """

    source: str
    severity: str
    title: str
    key: str
    fields: Mapping[str, str] = field(default_factory=dict)
    resolve: bool = False


def send_alert(alert: Alert) -> None:
    """Deliver an alert; never raises and never blocks for long."""
    level = "error" if alert.severity in ("error", "critical") else "warning"
    getattr(log, level)(
        "alert", source=alert.source, severity=alert.severity, title=alert.title,
        key=alert.key, resolve=alert.resolve, **dict(alert.fields),
    )
