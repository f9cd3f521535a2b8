"""What a host's raw file says about its own completeness: the collector's markers.

The one place the dataset reads a host's markers (``gap``, ``resync``, ``disconnect``; see
the README "Files"). Issue 19 will add a per-host completeness ledger next to the QA report;
this module is then where the dataset reads it instead of scanning the raw file.

A book is out of sync from a ``gap``, ``resync`` or ``disconnect`` event until its next
written state (the collector writes no rows while out of sync, and the first rows after a
(re)sync come from the new snapshot).
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass

import orjson

OUT_OF_SYNC = frozenset({"gap", "resync", "disconnect"})


@dataclass(frozen=True, slots=True)
class Markers:
    """The times (epoch µs, the host's receive clock) the stream went out of sync, and the
    time of the raw file's last event (the host was recording until then)."""

    out_of_sync_us: tuple[int, ...]
    last_event_us: int | None
    bad_lines: int = 0


def read_markers(raw_gz: bytes) -> Markers | None:
    """The markers of one raw file; None when it is not a readable gzip file."""
    try:
        data = gzip.decompress(raw_gz)
    except (OSError, EOFError, zlib.error):
        return None
    times: list[int] = []
    last: int | None = None
    bad = 0
    lines = data.splitlines()
    for i, line in enumerate(lines):
        # Frames are most of the file and the collector writes them with this exact prefix:
        # only the markers and the last line (the file's last event time) are decoded.
        if line.startswith(_RECV) and i != len(lines) - 1:
            continue
        if not line.strip():
            continue
        try:
            ev = orjson.loads(line)
            t = ev["t"]
            ts_us = round(float(ev["ts"]) * 1_000_000)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, OverflowError):
            bad += 1
            continue
        last = ts_us if last is None else max(last, ts_us)
        if t in OUT_OF_SYNC:
            times.append(ts_us)
    return Markers(tuple(sorted(times)), last, bad)


_RECV = b'{"t":"recv",'
