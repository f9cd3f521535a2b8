"""One host's copy of one file, ready to merge: its rows, QA verdict, rank and markers.

The QA gate lives here: a copy's ``rank`` orders copies (ok < warn < unchecked < failed),
and a ``gated`` copy (QA ``fail``, or no report while reports are required) is used only
where no other copy covers the same trade id or interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import polars as pl

from ops.dataset.inventory import HostFile
from ops.dataset.markers import Markers

OK, WARN, FAIL = "ok", "warn", "fail"
UNCHECKED = "unchecked"  # no QA report (yet)
_RANK = {OK: 0, WARN: 1, UNCHECKED: 2, FAIL: 3}
GATED_RANK = 3


@dataclass(frozen=True, slots=True)
class Copy:
    host: str
    file: HostFile
    verdict: str
    rank: int
    df: pl.DataFrame
    markers: Markers | None = None

    @property
    def gated(self) -> bool:
        return self.rank >= GATED_RANK


def verdict_of(report: bytes | None) -> str:
    """``status`` of a QA report (anything unreadable or unknown counts as ``fail``)."""
    if report is None:
        return UNCHECKED
    try:
        status = orjson.loads(report).get("status")
    except (orjson.JSONDecodeError, AttributeError):
        return FAIL
    return status if status in (OK, WARN, FAIL) else FAIL


def rank_of(verdict: str, *, require_qa: bool) -> int:
    if verdict == UNCHECKED and require_qa:
        return GATED_RANK  # past the deadline without a report: like a failed copy
    return _RANK[verdict]
