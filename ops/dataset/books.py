"""Books (top N): one sequence of intervals, each taken from one host in sync for all of it.

Each change in a book file is a complete top-N state (N bid rows, then N ask rows, with one
``timestamp`` and ``local_time``), so a merged book needs no replay: it is a run of states,
cut where it switches host. A copy covers, on its host's receive clock, from one written
state to the next out-of-sync marker (``gap``/``resync``/``disconnect``, see
:mod:`ops.dataset.markers`), and again from its next state on; its last interval ends at its
raw file's last event. From the hour's start, the merge takes at each moment the copy that
stays in sync longest from there (the fewest switches; ties: better QA, fewer intervals,
host id); a gated copy (failed QA, no report, no raw twin) only where no other covers.
After a switch the new host's rows start with its next state (both were in sync, so they
held the same book). Seconds no copy covered are ``out_of_sync_s``.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import polars as pl

from collector.common.layout import HOUR_MS
from ops.dataset.copies import FAIL, UNCHECKED, Copy


@dataclass(frozen=True, slots=True)
class Segment:
    copy: int  # index into the copies
    start_us: int
    end_us: int


@dataclass
class BookMerge:
    rows: pl.DataFrame  # parsed schema + source
    hosts: list[str]
    best_host: str | None
    best_uncovered_s: float
    uncovered_s: float
    from_failed_qa: int
    from_unchecked: int
    switches: int


def intervals(copy: Copy, hour_ms: int) -> list[tuple[int, int]]:
    """``[start, end)`` receive times (µs) in which this copy's book was in sync."""
    times = copy.df.get_column("local_time").unique(maintain_order=True).to_list()
    if not times:
        return []
    end_cap = (hour_ms + HOUR_MS) * 1000
    marks = list(copy.markers.out_of_sync_us) if copy.markers else []
    last_event = copy.markers.last_event_us if copy.markers else None
    tail = max(times[-1], last_event or times[-1]) + 1
    out: list[tuple[int, int]] = []
    i = 0
    start = times[0]
    while True:
        # the first marker after this interval's start ends it
        j = bisect.bisect_right(marks, start)
        if j == len(marks):
            out.append((start, min(tail, end_cap)))
            break
        out.append((start, marks[j]))
        i = bisect.bisect_right(times, marks[j], lo=i)
        if i == len(times):
            break
        start = times[i]
    return [(a, b) for a, b in out if b > a]


def merge_books(copies: list[Copy], hour_ms: int) -> BookMerge:
    spans = [intervals(c, hour_ms) for c in copies]
    start_us, end_us = hour_ms * 1000, (hour_ms + HOUR_MS) * 1000
    segments, uncovered = _cover(copies, spans, start_us, end_us)
    frames = []
    failed = unchecked = 0
    for seg in segments:
        c = copies[seg.copy]
        lt = pl.col("local_time")
        part = c.df.filter((lt >= seg.start_us) & (lt < seg.end_us))
        frames.append(part.with_columns(pl.lit(c.host).alias("source")))
        if c.verdict == UNCHECKED:
            unchecked += part.height
        elif c.verdict == FAIL:
            failed += part.height
    columns = [*copies[0].df.columns, "source"] if copies else []
    rows = pl.concat(frames) if frames else pl.DataFrame(schema={c: pl.String for c in columns})
    # best single host: the one in sync the longest (one that passed the QA gate first)
    covered: dict[str, int] = {}
    gated: dict[str, bool] = {}
    for c, sp in zip(copies, spans, strict=True):
        covered[c.host] = covered.get(c.host, 0) + sum(b - a for a, b in sp)
        gated[c.host] = gated.get(c.host, True) and c.gated
    best = min(covered, key=lambda h: (gated[h], -covered[h], h)) if covered else None
    return BookMerge(
        rows=rows,
        hosts=sorted({c.host for c in copies}),
        best_host=best,
        best_uncovered_s=(end_us - start_us - covered.get(best or "", 0)) / 1e6,
        uncovered_s=uncovered / 1e6,
        from_failed_qa=failed,
        from_unchecked=unchecked,
        switches=max(0, len(segments) - 1),
    )


def _cover(
    copies: list[Copy], spans: list[list[tuple[int, int]]], start_us: int, end_us: int
) -> tuple[list[Segment], int]:
    """Greedy interval cover of ``[start_us, end_us)`` (the fewest segments)."""
    segments: list[Segment] = []
    uncovered = 0
    t = start_us
    while t < end_us:
        candidates = []
        next_start = end_us
        for i, sp in enumerate(spans):
            for a, b in sp:
                if a <= t < b:
                    candidates.append((i, b))
                elif a > t:
                    next_start = min(next_start, a)
        if not candidates:
            uncovered += next_start - t
            t = next_start
            continue
        if any(not copies[i].gated for i, _ in candidates):
            candidates = [(i, b) for i, b in candidates if not copies[i].gated]
        i, b = min(
            candidates,
            key=lambda ib: (-ib[1], copies[ib[0]].rank, len(spans[ib[0]]), copies[ib[0]].host),
        )
        b = min(b, end_us)
        # A gated copy yields as soon as a better one can take over.
        if copies[i].gated:
            better = [
                a for j, sp in enumerate(spans) if not copies[j].gated for a, _ in sp if t < a < b
            ]
            if better:
                b = min(better)
        if segments and segments[-1].copy == i and segments[-1].end_us == t:
            segments[-1] = Segment(i, segments[-1].start_us, b)
        else:
            segments.append(Segment(i, t, b))
        t = b
    return segments, uncovered
