"""One status view of the fleet: every stream and every periodic program, and what needs a human.

Sources, all read-only: supervisord (XML-RPC over the control socket) for program states,
each collector's ``status.json`` (connection, last frame, counters of today), the newest QA
report of each stream, the S3 sync ledger (last delivery of each stream), and the periodic
programs' state files (``{data_dir}/.fleet/periodic/{job}.json``).

"Rows this hour" is ``hour_rows`` of status.json when the collector writes it, else the data
rows of the open ``.part`` parsed file (counted when it is small enough to read at once).
"Last hour" is the last closed UTC hour judged from QA's completeness records of its files
(``{stream}/completeness/{day}/{stem}.completeness.json``, the rule of ``python -m qa
completeness``), ``-`` while QA has written none.

With ``[fleet] hosts`` the streams are this host's share of the tracked universe (placement,
``python -m ops.fleet plan``); a tracked stream placed on no host needs a human too.

A stream needs a human when its program is not RUNNING, its status file is missing or stale,
it is disconnected, its last frame is older than twice its watchdog, its last QA report
failed, or, in the last hour (:data:`FRAME_TROUBLE_S`), the exchange sent something new (an
unknown message type, a known type with an unexpected or a missing field: ``new_kinds``) or
frames the adapter could not read for a reason other than the known-harmless ones
(:data:`HARMLESS_REASONS`: a frame of another symbol is kept in raw and costs this stream
nothing); a periodic program when it is not RUNNING, its last run failed, or it is overdue;
and the whole fleet when supervisord does not answer.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
import xmlrpc.client
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from collector.common import layout
from collector.common.config import Config
from collector.common.errors import FOREIGN_SYMBOL, NEW_KINDS, REASONS, clean_excerpt
from collector.config import get_status_interval_s, get_watchdog_s
from collector.model import DATA_TYPES
from ops.fleet import (
    COLLECTOR_GROUP,
    LISTENER_NAME,
    PERIODIC_GROUP,
    build_fleet_settings,
    connect,
    program_name,
    tracked_plan,
)
from ops.periodic import JOBS, read_state
from ops.sync.settings import build_s3_settings
from ops.tables import cell, needs_a_human, table
from qa.completeness import HourRow, why_incomplete
from qa.completeness import hours as completeness_hours
from qa.ledger import read_record
from qa.settings import build_thresholds

MAX_PART_BYTES = 4 * 1024 * 1024  # larger open files are not decompressed to count rows
# New kinds and parse errors keep a stream on the list this long after the last such frame.
FRAME_TROUBLE_S = 3600.0
# Parse-error reasons that need nobody (errors.REASONS; the collector counts them all).
HARMLESS_REASONS = frozenset({FOREIGN_SYMBOL})


@dataclass
class StreamRow:
    program: str
    exchange: str
    symbol: str
    data_type: str
    state: str = "-"
    pid: int | None = None
    connected: bool | None = None
    last_frame_age_s: float | None = None
    rows_hour: int | None = None
    gaps_today: int | None = None
    reconnects_today: int | None = None
    qa: str | None = None
    qa_file: str | None = None
    synced_at: float | None = None
    # the last closed UTC hour (epoch s of its start) and its completeness records' verdict
    last_hour: float | None = None
    complete: bool | None = None
    completeness: str | None = None
    problems: list[str] = field(default_factory=list)


@dataclass
class PeriodicRow:
    program: str
    state: str = "-"
    last_start: float | None = None
    last_end: float | None = None
    last_ok: bool | None = None
    last_exit: list[int] = field(default_factory=list)
    last_duration_s: float | None = None
    runs: int = 0
    failures: int = 0
    next_start: float | None = None
    problems: list[str] = field(default_factory=list)


@dataclass
class FleetStatus:
    at: float
    supervisord: bool
    streams: list[StreamRow]
    periodic: list[PeriodicRow]
    listener: str
    problems: list[str]
    host_id: str = "local"
    region: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        return out


def _process_infos(socket_path: Path) -> dict[str, dict[str, Any]] | None:
    if not socket_path.exists():
        return None
    rpc = connect(socket_path, timeout_s=10.0)
    try:
        infos = rpc.supervisor.getAllProcessInfo()
    except (OSError, xmlrpc.client.Error):
        return None
    finally:
        rpc("close")()
    return {f"{i['group']}:{i['name']}": i for i in infos}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def count_part_rows(path: Path) -> int | None:
    """Data rows (header excluded) in an open gzip file, tolerating a member being written."""
    try:
        if path.stat().st_size > MAX_PART_BYTES:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    lines = 0
    while data:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            lines += d.decompress(data).count(b"\n")
        except zlib.error:
            break
        if not d.eof:
            break  # the last member is still being written
        data = d.unused_data
    return max(lines - 1, 0)


def _latest(paths: list[Path]) -> Path | None:
    return max(paths, key=lambda p: (p.parent.name, p.name)) if paths else None


def latest_qa(stream_dir: Path) -> tuple[str, str] | None:
    """(status, file) of the newest QA report of a stream."""
    days = sorted((stream_dir / layout.PARSED).glob("????-??-??"), reverse=True)
    for day in days[:2]:
        report = _latest(list(day.glob(f"*{layout.REPORT_SUFFIX}")))
        if report is not None:
            data = _read_json(report) or {}
            return str(data.get("status", "?")), report.name
    return None


def completeness_summary(row: HourRow) -> str:
    """``complete`` or ``INCOMPLETE (what is missing, covered N%)`` (QA's own words)."""
    if row.complete:
        return "complete"
    return f"INCOMPLETE ({why_incomplete(row)}, covered {row.pct:.0f}%)"


def last_hour_completeness(
    stream_dir: Path, now: float, tolerance_s: float = 5.0
) -> tuple[float, bool | None, str | None]:
    """The last closed UTC hour's start and its (complete, summary), from QA's completeness
    records of the files of that hour (``qa.completeness``'s hour rule); (None, None) while
    QA has written none."""
    hour = now - now % 3600 - 3600
    t = dt.datetime.fromtimestamp(hour, dt.UTC)
    day = stream_dir / layout.LEDGER / t.strftime("%Y-%m-%d")
    records = [
        r
        for path in sorted(day.glob(f"{t:%Y%m%dT%H}*{layout.COMPLETENESS_SUFFIX}"))
        if (r := read_record(path)) is not None
    ]
    rows = completeness_hours(
        records, from_s=hour, to_s=hour + 3600, now_s=now, tolerance_s=tolerance_s
    )
    if not rows:
        return hour, None, None
    return hour, rows[0].complete, completeness_summary(rows[0])


def last_synced(ledger: Path) -> dict[str, float]:
    """Last delivery time per stream prefix ``exchange/symbol/data_type`` (sync ledger)."""
    if not ledger.exists():
        return {}
    out: dict[str, float] = {}
    try:
        db = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=5.0)
        try:
            rows = db.execute("SELECT path, delivered_at FROM delivered").fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return {}
    for path, at in rows:
        key = "/".join(str(path).split("/")[:3])
        out[key] = max(out.get(key, 0.0), float(at))
    return out


def _streams(
    share: Sequence[tuple[str, str, str]], infos: dict[str, dict[str, Any]] | None
) -> dict[str, tuple[str, str, str]]:
    """Program name → stream: this host's share plus any collector supervisord runs."""
    streams = {program_name(*st): st for st in share}
    for key in infos or {}:
        group, _, name = key.partition(":")
        if group == COLLECTOR_GROUP and name not in streams:
            parts = name.split("-")
            streams[name] = (parts[0], "-".join(parts[1:-1]), parts[-1])
    return streams


def _read_status_file(row: StreamRow, st: dict[str, Any], config: Config, now: float) -> None:
    """Fill ``row`` from the collector's status.json and add what needs a human."""
    # The collector's own values (same getters, same defaults), not a second guess.
    status_every = get_status_interval_s(config)
    watchdog_s = get_watchdog_s(config, row.data_type)
    today = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%d")
    fresh = now - float(st.get("updated_at") or 0.0) <= 3 * status_every + 10.0
    row.connected = bool(st.get("connected")) if fresh else None
    if st.get("last_frame_at"):
        row.last_frame_age_s = round(now - float(st["last_frame_at"]), 1)
    t = st.get("today") or {}
    if t.get("date") == today:
        row.gaps_today = int(t.get("gaps", 0))
        row.reconnects_today = int(t.get("reconnects", 0))
    else:
        row.gaps_today = row.reconnects_today = 0
    if "hour_rows" in st:
        row.rows_hour = int(st["hour_rows"])
    elif (st.get("files") or {}).get("parsed"):
        row.rows_hour = count_part_rows(Path(st["files"]["parsed"]))
    if row.state != "RUNNING":
        return
    if not fresh:
        row.problems.append("status file stale")
    elif row.connected is False:
        row.problems.append("disconnected")
    age = row.last_frame_age_s
    if age is not None and age > 2 * watchdog_s:
        row.problems.append(f"no frame for {age:.0f} s")
    row.problems += frame_trouble(st, now)


def _counts(value: object) -> dict[str, int]:
    """A ``{key: count}`` of a status file, keys shown bounded and on one line."""
    if not isinstance(value, dict):
        return {}
    return {clean_excerpt(str(k), 80): v for k, v in value.items() if type(v) is int and v > 0}


def _recent(at: object, now: float) -> bool:
    return isinstance(at, int | float) and not isinstance(at, bool) and now - at <= FRAME_TROUBLE_S


def frame_trouble(st: dict[str, Any], now: float) -> list[str]:
    """What in a collector's status says the exchange's messages changed or could not be
    read, in the last hour (see the module docstring): new kinds (unknown types, missing
    and unexpected fields) in one line, the other reasons (malformed, bad values) in another."""
    out = []
    if _recent(st.get("last_new_kind_at"), now):
        new = sorted(_counts(st.get("new_kinds")).items(), key=lambda kv: -kv[1])
        shown = ", ".join(f"{k} ({v})" for k, v in new[:3]) + (" ..." if len(new) > 3 else "")
        out.append(f"new kind of frame (adapter needs a look): {shown or '?'}")
    last_at = st.get("frame_kind_last_at")
    if isinstance(last_at, dict):
        bad = [
            r
            for r, at in last_at.items()
            if r in REASONS
            and r not in HARMLESS_REASONS
            and r not in NEW_KINDS
            and _recent(at, now)
        ]
        if bad:
            by = _counts(st.get("parse_errors_by_reason"))
            shown = ", ".join(
                f"{k} {v}" for k, v in sorted(by.items()) if k.partition(":")[0] in bad
            )
            out.append(f"frames the adapter could not read in the last hour: {shown or bad}")
    return out


def stream_row(
    config: Config,
    name: str,
    stream: tuple[str, str, str],
    infos: dict[str, dict[str, Any]] | None,
    *,
    now: float,
    synced: dict[str, float],
) -> StreamRow:
    """One stream's row (``infos`` None: supervisord did not answer)."""
    exchange, symbol, data_type = stream
    row = StreamRow(name, exchange, symbol, data_type)
    info = (infos or {}).get(f"{COLLECTOR_GROUP}:{name}")
    if info is not None:
        row.state = str(info["statename"])
        row.pid = int(info["pid"]) or None
    elif infos is not None:
        row.state = "NOT LOADED"
    stream_dir = layout.stream_dir(config.data_dir, exchange, symbol, data_type)
    st = _read_json(layout.status_path(stream_dir))
    if st is not None:
        _read_status_file(row, st, config, now)
    elif row.state == "RUNNING":
        row.problems.append("no status file")
    qa = latest_qa(stream_dir)
    if qa is not None:
        row.qa, row.qa_file = qa
        if row.qa == "fail":
            row.problems.append(f"QA failed: {row.qa_file}")
    row.synced_at = synced.get(f"{exchange}/{symbol}/{data_type}")
    row.last_hour, row.complete, row.completeness = last_hour_completeness(
        stream_dir, now, build_thresholds(config).hour_tolerance_s
    )
    if row.complete is False:
        row.problems.append(f"last hour incomplete: {row.completeness}")
    if infos is not None and row.state != "RUNNING":
        row.problems.insert(0, f"state {row.state}")
    return row


def periodic_row(
    config: Config,
    job: str,
    infos: dict[str, dict[str, Any]] | None,
    *,
    now: float,
    enabled: bool,
) -> PeriodicRow | None:
    """One periodic program's row from its state file (None: not enabled and never ran)."""
    prow = PeriodicRow(job)
    info = (infos or {}).get(f"{PERIODIC_GROUP}:{job}")
    if info is not None:
        prow.state = str(info["statename"])
    state = read_state(config, job) or {}
    for k in ("last_start", "last_end", "last_ok", "last_duration_s", "next_start"):
        setattr(prow, k, state.get(k))
    prow.last_exit = list(state.get("last_exit") or [])
    prow.runs, prow.failures = int(state.get("runs", 0)), int(state.get("failures", 0))
    if enabled and infos is not None:
        if prow.state != "RUNNING":
            prow.problems.append(f"state {prow.state}")
        if prow.last_ok is False:
            prow.problems.append(f"last run failed (exit codes {prow.last_exit})")
        interval = float(state.get("interval_s") or 0.0)
        if prow.next_start is not None and now > prow.next_start + max(interval, 60.0):
            prow.problems.append("overdue")
    return prow if enabled or state else None


def collect(config: Config, *, now: float | None = None) -> FleetStatus:
    """Everything ``python -m ops status`` shows."""
    now = time.time() if now is None else now
    s = build_fleet_settings(config)
    # the collector values every row is judged by: a bad one is a ConfigError now, not
    # only once some stream has a status file
    get_status_interval_s(config)
    for data_type in DATA_TYPES:
        get_watchdog_s(config, data_type)
    infos = _process_infos(s.socket_path)
    problems: list[str] = []
    if infos is None:
        problems.append(f"supervisord is not running (no answer on {s.socket_path})")
    synced = last_synced(build_s3_settings(config).ledger_path)
    plan = tracked_plan(config, s)
    if plan.unplaced:
        problems.append(
            f"{len(plan.unplaced)} tracked stream(s) placed on no host, e.g. "
            f"{':'.join(plan.unplaced[0])} (python -m ops.fleet plan)"
        )
    streams = _streams(plan.by_host[s.host_id], infos)
    rows = [
        stream_row(config, name, streams[name], infos, now=now, synced=synced)
        for name in sorted(streams)
    ]
    periodic = [
        prow
        for job in JOBS
        if (prow := periodic_row(config, job, infos, now=now, enabled=job in s.periodic))
    ]
    listener = "-"
    if infos is not None:
        info = infos.get(f"{LISTENER_NAME}:{LISTENER_NAME}")
        listener = str(info["statename"]) if info else "NOT LOADED"
        if s.listener and listener != "RUNNING":
            problems.append(f"alert listener {listener}")
    problems += [f"{r.program}: {p}" for r in rows for p in r.problems]
    problems += [f"{p.program}: {q}" for p in periodic for q in p.problems]
    return FleetStatus(
        now, infos is not None, rows, periodic, listener, problems, s.host_id, s.region
    )


# --- rendering ---------------------------------------------------------------------------


def _age(now: float, at: float | None) -> str:
    if at is None:
        return "-"
    s = max(0.0, now - at)
    if s < 120:
        return f"{s:.0f}s ago"
    if s < 7200:
        return f"{s / 60:.0f}m ago"
    return f"{s / 3600:.1f}h ago"


def _in(now: float, at: float | None) -> str:
    if at is None:
        return "-"
    s = at - now
    return "now" if s <= 0 else (f"in {s:.0f}s" if s < 120 else f"in {s / 60:.0f}m")


def render_table(st: FleetStatus) -> str:
    now = st.at
    lines = [
        f"fleet status at {dt.datetime.fromtimestamp(now, dt.UTC):%Y-%m-%d %H:%M:%S}Z  "
        f"supervisord: {'running' if st.supervisord else 'NOT RUNNING'}  "
        f"alert listener: {st.listener}",
        "",
    ]
    header = ["STREAM", "STATE", "CONN", "LAST FRAME", "ROWS/H", "GAPS", "RECONN", "QA", "SYNCED"]
    rows = [
        [
            f"{r.exchange} {r.symbol} {r.data_type}",
            r.state,
            cell(r.connected),
            "-" if r.last_frame_age_s is None else f"{r.last_frame_age_s:.1f}s",
            cell(r.rows_hour),
            cell(r.gaps_today),
            cell(r.reconnects_today),
            cell(r.qa),
            _age(now, r.synced_at),
        ]
        for r in st.streams
    ]
    lines += table(header, rows) if rows else ["(no streams tracked)"]
    lines.append("")
    header = ["PERIODIC", "STATE", "LAST RUN", "RESULT", "TOOK", "RUNS", "FAILED", "NEXT"]
    prows = [
        [
            p.program,
            p.state,
            _age(now, p.last_start),
            "-" if p.last_ok is None else ("ok" if p.last_ok else f"FAILED {p.last_exit}"),
            "-" if p.last_duration_s is None else f"{p.last_duration_s:.1f}s",
            str(p.runs),
            str(p.failures),
            _in(now, p.next_start),
        ]
        for p in st.periodic
    ]
    lines += table(header, prows) if prows else ["(no periodic programs)"]
    lines.append("")
    lines += needs_a_human(st.problems, "all good")
    return "\n".join(lines) + "\n"


def render_json(st: FleetStatus) -> str:
    return orjson.dumps(st.as_dict(), option=orjson.OPT_INDENT_2).decode() + "\n"
