"""What a check gives: a :class:`Finding` of severity ``ok`` | ``warn`` | ``fail``.

:func:`rate` turns a count into a severity by its share of a total, :func:`worst` combines
severities; every check grades with these two, so the thresholds mean the same everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

OK, WARN, FAIL = "ok", "warn", "fail"
_RANK = {OK: 0, WARN: 1, FAIL: 2}


def worst(severities: Iterable[str]) -> str:
    return max(severities, key=_RANK.__getitem__, default=OK)


@dataclass(frozen=True)
class Finding:
    """The result of one check: ``ok`` | ``warn`` | ``fail``, a short message and numbers."""

    check: str
    severity: str
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "severity": self.severity,
            "message": self.message,
            "details": dict(self.details),
        }


def rate(count: int, total: int, warn_pct: float, fail_pct: float) -> str:
    """``count`` of ``total`` → severity: above ``fail_pct`` % fails, above ``warn_pct`` % warns."""
    if count <= 0:
        return OK
    pct = 100.0 * count / max(total, 1)
    if pct > fail_pct:
        return FAIL
    if pct > warn_pct:
        return WARN
    return OK
