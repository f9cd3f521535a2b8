"""The raw file of the same hour, as the collector's processor reads it back
(:mod:`qa.replay`): its markers (gaps, disconnects, resyncs), the trade records its frames
parse into against the parsed file's rows, and the frames that produced no row, by reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from qa.checks.context import Context
from qa.checks.findings import FAIL, OK, WARN, Finding

# Reasons for a frame without rows that are part of normal operation (qa/replay.py says
# what each means); any other is worth a look (a warning).
HARMLESS = frozenset(
    {
        "ignored",
        "foreign_symbol",
        "duplicate",
        "top_unchanged",
        "waiting_for_snapshot",
        "no_book_change",
        "checksum",
        "other_data_type",
        "not_judged",
    }
)
# Distinct reasons kept apart (then "other"), like the collector's counters.
MAX_REASONS = 64
# Marker lists kept (the rest only counted): a hostile file cannot make a report huge.
MAX_MARKS = 10_000


@dataclass(frozen=True)
class GapMark:
    """One ``gap`` marker: when it was seen, since when data was missing (the previous data
    frame), its kind and, where the collector knows them, the missing ids ``expected`` ..
    ``got - 1`` (trade ids or update/sequence numbers) and their number."""

    ts: float
    since: float | None
    kind: str
    expected: int | None
    got: int | None
    size: int | None


@dataclass
class RawSummary:
    """What the raw file of the same hour says (one pass, :func:`replay_raw`)."""

    lines: int = 0
    frames: int = 0
    records: int = 0  # trades of the file's symbol, when counted
    parse_errors: int = 0
    gaps: dict[str, dict[str, int]] = field(default_factory=dict)
    disconnects: int = 0
    connects: int = 0
    resyncs: int = 0
    downtime_s: float = 0.0
    bad_lines: int = 0
    first_ts: float | None = None
    last_ts: float | None = None
    # --- from the replay through the processor
    replayed: bool = False
    replay_error: str = ""  # why the frames could not be replayed (markers only)
    kinds: dict[str, int] = field(default_factory=dict)  # Stats.frames_by_kind
    new_kinds: dict[str, int] = field(default_factory=dict)
    without_rows: dict[str, int] = field(default_factory=dict)  # reason → frames
    rows: int = 0  # rows the replay wrote
    bad_markers: int = 0  # markers with a field that is not what the collector writes
    # --- the timeline the completeness ledger is made of
    starts_connected: bool = False  # the connection was up when the file began
    conn_events: list[tuple[float, bool]] = field(default_factory=list)  # (ts, connected)
    gap_marks: list[GapMark] = field(default_factory=list)
    desyncs: list[float] = field(default_factory=list)  # gap/resync markers, disconnects
    syncs: list[float] = field(default_factory=list)  # the replay's book (re)synced
    trade_resets: int = 0
    resume_trade_id: int | None = None  # the `resume` marker: last id on disk at start-up
    synced_at_end: bool | None = None  # the replay's book at the end (None: not a book)

    def count_without_rows(self, reason: str) -> None:
        by = self.without_rows
        if reason not in by and len(by) >= MAX_REASONS:
            reason = "other"
        by[reason] = by.get(reason, 0) + 1


def check_raw(
    raw: RawSummary | None, parsed_rows: int | None, ctx: Context, *, counted: bool
) -> list[Finding]:
    """Completeness from the collector's markers, and raw vs parsed trade counts."""
    th = ctx.thresholds
    info = ctx.info
    if raw is None:
        return [Finding("collector_gaps", OK, "no raw file of the same hour", {})]
    span_s = (info.hour_end_ms - info.start_ms) / 1000
    complete = round(100.0 * max(0.0, 1.0 - raw.downtime_s / span_s), 3)
    details: dict[str, Any] = {
        "gaps": raw.gaps,
        "disconnects": raw.disconnects,
        "resyncs": raw.resyncs,
        "downtime_s": round(raw.downtime_s, 3),
        "time_complete_pct": complete,
        "raw_lines": raw.lines,
        "raw_bad_lines": raw.bad_lines,
    }
    n_gaps = sum(g["count"] for g in raw.gaps.values())
    sev = OK
    if raw.downtime_s > th.downtime_fail_s:
        sev = FAIL
    elif raw.downtime_s > th.downtime_warn_s or n_gaps or raw.resyncs or raw.bad_lines:
        sev = WARN
    parts = []
    if n_gaps:
        parts.append(
            "gaps " + ", ".join(f"{k} {v['count']} (size {v['size']})" for k, v in raw.gaps.items())
        )
    if raw.disconnects:
        parts.append(f"{raw.disconnects} disconnects, down {raw.downtime_s:.1f} s")
    if raw.resyncs:
        parts.append(f"{raw.resyncs} resyncs")
    if raw.bad_lines:
        parts.append(f"{raw.bad_lines} unreadable raw lines")
    msg = f"{complete}% of the time covered" + (": " + "; ".join(parts) if parts else "")
    out = [Finding("collector_gaps", sev, msg, details)]
    if counted and parsed_rows is not None:
        d = {
            "raw_records": raw.records,
            "parsed_rows": parsed_rows,
            "raw_frames": raw.frames,
            "raw_parse_errors": raw.parse_errors,
        }
        # The rows the collector's processor makes of the raw file (duplicates and strays
        # skipped, as live) must be the parsed file's; where the file was not replayed, the
        # raw file's records are all there is to compare.
        expected = raw.rows if raw.replayed else raw.records
        if raw.replayed:
            d["replayed_rows"] = raw.rows
        if expected == parsed_rows:
            skipped = raw.records - raw.rows if raw.replayed else 0
            note = f" ({skipped} raw records were duplicates or strays)" if skipped else ""
            out.append(Finding("raw_vs_parsed", OK, f"{parsed_rows} rows in both{note}", d))
        else:
            out.append(
                Finding(
                    "raw_vs_parsed",
                    FAIL,
                    f"raw has {raw.records} records, parsed {parsed_rows} rows",
                    d,
                )
            )
    return out


def check_frames(raw: RawSummary | None) -> list[Finding]:
    """The raw frames that produced no row for another reason than a control frame, counted
    per reason (as the collector's processor replays them), and what is new in the stream:
    ``warn`` when a reason is not :data:`HARMLESS`, a new kind was seen (an unknown type, an
    unexpected or a missing field) or a marker is not what the collector writes."""
    if raw is None:
        return []
    if not raw.replayed:
        if not raw.replay_error:
            return []  # an exchange QA does not know: its markers only
        why = f"frames not read as the collector would: {raw.replay_error}"
        return [Finding("raw_frames", WARN, why, {"frames": raw.frames})]
    without = dict(sorted(raw.without_rows.items(), key=lambda kv: (-kv[1], kv[0])))
    worth = {k: v for k, v in without.items() if k not in HARMLESS}
    details: dict[str, Any] = {
        "frames": raw.frames,
        "kinds": raw.kinds,
        "without_rows": without,
        "worth_a_look": worth,
        "new_kinds": raw.new_kinds,
        "bad_markers": raw.bad_markers,
        "rows": raw.rows,
    }
    parts = []
    total = sum(without.values())
    if total:
        shown = ", ".join(f"{k} {v}" for k, v in list(without.items())[:8])
        parts.append(f"{total} of {raw.frames} frames gave no row ({shown})")
    if raw.new_kinds:
        shown = ", ".join(f"{k} ({v})" for k, v in list(raw.new_kinds.items())[:5])
        parts.append(f"new in the stream: {shown}")
    if raw.bad_markers:
        parts.append(f"{raw.bad_markers} markers not as the collector writes them")
    sev = WARN if worth or raw.new_kinds or raw.bad_markers else OK
    msg = "; ".join(parts) or f"each of {raw.frames} frames gave rows or was a control frame"
    return [Finding("raw_frames", sev, msg, details)]
