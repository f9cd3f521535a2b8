"""``python -m ops status --fleet``: every host's published status in one table.

Answers "is every tracked stream collected, and complete for the last hour, in every region?"
from the snapshots each host's sync publishes (ops/sync/publish.py): one row per stream and
host with the host's own view (state, connected, last frame, rows this hour, QA verdict,
completeness of the last closed hour), plus what only the whole fleet can tell:

- the hosts: ``[fleet] hosts`` when listed (a listed host without a snapshot is *missing*),
  else every host that published one under ``{prefix}/``; a snapshot older than three sync
  intervals (``[sync] interval_min``) is *stale*: its rows are shown, marked, and count for
  nothing;
- per tracked stream, the hosts expected to collect it (the placement plan, or every host
  without ``[fleet] hosts``) and the hosts whose fresh snapshot shows it RUNNING.

Needs a human (exit 1): a host missing, stale or unreadable; any problem a host reports about
itself (its ``ops status`` problems: a stopped collector, a failed QA, an incomplete hour...);
a tracked stream collected by no host, or by fewer hosts than the plan gives it.

Snapshots come from other machines: a field is shown only when it has the expected type, and
a row whose stream does not fit the exchange grammar is left out (counted as a problem).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from collector.common.config import HOST_ID, Config
from ops.fleet import FleetSettings, build_fleet_settings, fleet_plan, stream_error
from ops.placement import Stream
from ops.sync.publish import list_hosts, read_snapshot
from ops.sync.settings import S3Settings
from ops.tables import cell, needs_a_human, table

STALE_INTERVALS = 3  # a snapshot older than this many sync intervals is stale
MAX_PROBLEMS_PER_HOST = 50  # a host's own problems shown (the count is always given)


@dataclass
class HostView:
    id: str
    region: str | None
    snapshot: str  # "ok", "stale", "missing", "unreadable: ..."
    at: float | None = None
    streams: int = 0
    problems: list[str] = field(default_factory=list)  # the host's own, from its snapshot

    @property
    def fresh(self) -> bool:
        return self.snapshot == "ok"


@dataclass
class FleetRow:
    exchange: str
    symbol: str
    data_type: str
    host: str
    planned: bool
    snapshot: str
    state: str = "-"
    connected: bool | None = None
    last_frame_age_s: float | None = None  # as of now
    rows_hour: int | None = None
    qa: str | None = None
    completeness: str | None = None


@dataclass
class FleetView:
    at: float
    replicas: int
    hosts: list[HostView]
    rows: list[FleetRow]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        return out


# --- reading snapshots -------------------------------------------------------------------


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _text(value: object, limit: int = 200) -> str | None:
    """A string fit for one table cell (printable, bounded), else None."""
    if not isinstance(value, str):
        return None
    text = value if value.isprintable() else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _stream_of(row: dict[str, Any]) -> Stream | None:
    exchange, symbol, data_type = (row.get(k) for k in ("exchange", "symbol", "data_type"))
    if not (isinstance(exchange, str) and isinstance(symbol, str) and isinstance(data_type, str)):
        return None
    return None if stream_error(exchange, symbol, data_type) else (exchange, symbol, data_type)


@dataclass
class Snapshot:
    """What one host published, checked field by field."""

    at: float
    region: str | None
    problems: list[str]
    rows: dict[Stream, dict[str, Any]]
    refused: int


def parse_snapshot(value: Any) -> Snapshot | None:
    """A snapshot's checked content, or None when it is not one at all."""
    if not isinstance(value, dict) or _num(value.get("at")) is None:
        return None
    streams = value.get("streams")
    problems = value.get("problems")
    if not isinstance(streams, list) or not isinstance(problems, list):
        return None
    rows: dict[Stream, dict[str, Any]] = {}
    refused = 0
    for row in streams:
        stream = _stream_of(row) if isinstance(row, dict) else None
        if stream is None:
            refused += 1
            continue
        rows[stream] = row
    shown = [t for p in problems if (t := _text(p)) is not None]
    return Snapshot(float(value["at"]), _text(value.get("region"), 32), shown, rows, refused)


def _cells(row: FleetRow, data: dict[str, Any], age_at_snapshot_s: float) -> None:
    """Fill a table row from a host's stream row (only fields of the expected type)."""
    row.state = _text(data.get("state"), 20) or "-"
    connected = data.get("connected")
    row.connected = connected if isinstance(connected, bool) else None
    age = _num(data.get("last_frame_age_s"))
    row.last_frame_age_s = None if age is None else round(age + age_at_snapshot_s, 1)
    rows_hour = data.get("rows_hour")
    row.rows_hour = rows_hour if type(rows_hour) is int else None
    row.qa = _text(data.get("qa"), 20)
    row.completeness = _text(data.get("completeness"), 80)


# --- the view ----------------------------------------------------------------------------


def _host_ids(client: Any, s3s: S3Settings, fs: FleetSettings) -> list[tuple[str, str | None]]:
    if fs.hosts:
        return [(h.id, h.region) for h in fs.hosts]
    return [(h, None) for h in list_hosts(client, s3s) if HOST_ID.fullmatch(h)]


def _read_hosts(
    client: Any, s3s: S3Settings, fs: FleetSettings, now: float
) -> tuple[list[HostView], dict[str, Snapshot]]:
    stale_after_s = STALE_INTERVALS * s3s.interval_s
    views: list[HostView] = []
    snaps: dict[str, Snapshot] = {}
    for host_id, region in _host_ids(client, s3s, fs):
        raw, error = read_snapshot(client, s3s, host_id)
        snap = None if error else parse_snapshot(raw)
        if snap is None:
            views.append(HostView(host_id, region, error or "unreadable: not a status snapshot"))
            continue
        state = "stale" if now - snap.at > stale_after_s else "ok"
        views.append(
            HostView(host_id, region or snap.region, state, snap.at, len(snap.rows), snap.problems)
        )
        snaps[host_id] = snap
    return views, snaps


def build_view(
    config: Config, client: Any, s3s: S3Settings, *, now: float | None = None
) -> FleetView:
    """Every host's snapshot against the tracked universe and its placement."""
    from ops.fleet import renderable, tracked_streams

    now = time.time() if now is None else now
    fs = build_fleet_settings(config, own_host=False)
    hosts, snaps = _read_hosts(client, s3s, fs, now)
    tracked, _ = renderable(tracked_streams(config))
    plan = fleet_plan(fs, tracked) if fs.hosts else None
    every = [h.id for h in hosts]
    problems = _host_problems(hosts, snaps, now)
    rows: list[FleetRow] = []
    seen = {st for snap in snaps.values() for st in snap.rows}
    for stream in sorted(set(tracked) | seen):
        expected = (plan.host_of(stream) if plan else every) if stream in tracked else []
        expected = [h for h in every if h in expected]  # in the fleet's order
        reporting = [h for h in every if h in snaps and stream in snaps[h].rows]
        by = []
        for h in sorted(set(expected) | set(reporting), key=every.index):
            view = hosts[every.index(h)]
            row = FleetRow(*stream, host=h, planned=h in expected, snapshot=view.snapshot)
            if h in snaps and stream in snaps[h].rows:
                _cells(row, snaps[h].rows[stream], now - snaps[h].at)
            if view.fresh and row.state == "RUNNING":
                by.append(h)
            rows.append(row)
        problems += _coverage_problems(stream, expected, by, tracked_now=stream in tracked)
    return FleetView(now, fs.replicas, hosts, rows, problems)


def _host_problems(hosts: list[HostView], snaps: dict[str, Snapshot], now: float) -> list[str]:
    out: list[str] = []
    for h in hosts:
        if h.snapshot == "stale" and h.at is not None:
            out.append(f"{h.id}: status snapshot stale ({_age(now - h.at)} old)")
        elif not h.fresh and h.snapshot != "stale":
            out.append(f"{h.id}: status snapshot {h.snapshot}")
        snap = snaps.get(h.id)
        if snap is None:
            continue
        if snap.refused:
            out.append(f"{h.id}: {snap.refused} stream row(s) of its snapshot not understood")
        out += [f"{h.id}: {p}" for p in h.problems[:MAX_PROBLEMS_PER_HOST]]
        if len(h.problems) > MAX_PROBLEMS_PER_HOST:
            out.append(f"{h.id}: ... {len(h.problems) - MAX_PROBLEMS_PER_HOST} more")
    return out


def _coverage_problems(
    stream: Stream, expected: list[str], by: list[str], *, tracked_now: bool
) -> list[str]:
    name = " ".join(stream)
    if not tracked_now:
        return []
    if not expected:
        return [f"{name}: placed on no host (python -m ops.fleet plan)"]
    if not by:
        return [f"{name}: collected by no host (expected on {', '.join(expected)})"]
    missing = [h for h in expected if h not in by]
    if missing:
        return [
            f"{name}: collected by {len(by)} of {len(expected)} host(s) "
            f"(not on {', '.join(missing)})"
        ]
    return []


# --- rendering ---------------------------------------------------------------------------


def _age(s: float) -> str:
    s = max(0.0, s)
    if s < 120:
        return f"{s:.0f}s"
    if s < 7200:
        return f"{s / 60:.0f}m"
    return f"{s / 3600:.1f}h"


def _snapshot_cell(h: HostView, now: float) -> str:
    if h.at is None:
        return h.snapshot.upper()
    age = f"{_age(now - h.at)} ago"
    return age if h.fresh else f"STALE {age}"


def render_table(v: FleetView) -> str:
    now = v.at
    lines = [
        f"fleet status at {dt.datetime.fromtimestamp(now, dt.UTC):%Y-%m-%d %H:%M:%S}Z: "
        f"{len(v.hosts)} host(s), replicas {v.replicas}",
        "",
    ]
    lines += table(
        ["HOST", "REGION", "SNAPSHOT", "STREAMS", "PROBLEMS"],
        [
            [h.id, h.region or "-", _snapshot_cell(h, now), str(h.streams), str(len(h.problems))]
            for h in v.hosts
        ],
    )
    lines.append("")
    by_host = {h.id: h for h in v.hosts}
    header = ["STREAM", "HOST", "STATE", "CONN", "LAST FRAME", "ROWS/H", "QA", "LAST HOUR"]
    rows = [
        [
            f"{r.exchange} {r.symbol} {r.data_type}",
            _host_cell(r, by_host[r.host]),
            r.state,
            cell(r.connected),
            "-" if r.last_frame_age_s is None else f"{_age(r.last_frame_age_s)} ago",
            cell(r.rows_hour),
            cell(r.qa),
            cell(r.completeness),
        ]
        for r in v.rows
    ]
    lines += table(header, rows) if rows else ["(no streams)"]
    lines.append("")
    lines += needs_a_human(v.problems, "all good: every tracked stream is collected where planned")
    return "\n".join(lines) + "\n"


def _host_cell(r: FleetRow, h: HostView) -> str:
    planned = "" if r.planned else " (unplanned)"
    return r.host + planned + ("" if h.fresh else f" [{h.snapshot.upper()}]")


def render_json(v: FleetView) -> str:
    return orjson.dumps(v.as_dict(), option=orjson.OPT_INDENT_2).decode() + "\n"
