"""Prometheus text-format metrics of one host, for node_exporter's textfile collector.

Read-only sources: each collector's ``status.json`` and each periodic program's state file, and
(on the alert listener's tick, :func:`write_observed_metrics`) supervisord's state of each
collector program and the listener's open quiet-stream episodes. ``[fleet] metrics_textfile``
names the file (a ``*.prom`` in node_exporter's ``--collector.textfile.directory``; the
CloudWatch agent's Prometheus scraping reads the same format); empty = not written. The
Grafana dashboard ``ops/grafana/l3c-fleet.json`` queries these names. The file is written
atomically (a temp file, then a rename into place), so a scrape never sees half of it.
Label values are escaped as the text format requires, although everything
that becomes a label (host id, exchange, symbol, data type, job) already fits a strict
grammar. Metrics (all prefixed ``l3c_``):

========================================= ======= ============================================
metric                                    type    meaning
========================================= ======= ============================================
stream_frames_total                       counter frames received by the running collector
stream_rows_total                         counter rows written
stream_gaps_total                         counter gaps (sequence, trade id, disconnect)
stream_reconnects_total                   counter websocket reconnects
stream_resyncs_total                      counter book resyncs
stream_rows_hour                          gauge   rows of the current UTC hour
stream_parse_errors_total{reason}         counter frames that produced no row, by reason
stream_connected                          gauge   1 while the websocket is open
stream_last_frame_age_seconds             gauge   seconds since the last frame
stream_status_age_seconds                 gauge   seconds since status.json was rewritten
stream_disk_full                          gauge   1 while writes fail for lack of room
stream_up                                 gauge   1 while supervisord reports it RUNNING
stream_silent                             gauge   1 during a quiet-stream episode (watch)
periodic_last_start_timestamp_seconds     gauge   last run's start (epoch seconds)
periodic_last_ok                          gauge   1 if the last run succeeded, 0 if not
periodic_last_duration_seconds            gauge   how long the last run took
periodic_runs_total / periodic_failures_total counter
========================================= ======= ============================================

Counters restart from zero when their process restarts (as Prometheus expects of counters).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collector.common import layout

if TYPE_CHECKING:
    from ops.watch import Observed

PREFIX = "l3c_"
STREAM_COUNTERS = {
    "frames": "stream_frames_total",
    "rows": "stream_rows_total",
    "gaps": "stream_gaps_total",
    "reconnects": "stream_reconnects_total",
    "resyncs": "stream_resyncs_total",
}
HELP = {
    "stream_frames_total": ("counter", "Frames received by the running collector."),
    "stream_rows_total": ("counter", "Rows written by the running collector."),
    "stream_gaps_total": ("counter", "Gaps recorded (sequence, trade id, disconnect)."),
    "stream_reconnects_total": ("counter", "Websocket reconnects."),
    "stream_resyncs_total": ("counter", "Book resyncs."),
    "stream_rows_hour": ("gauge", "Rows written in the current UTC hour."),
    "stream_parse_errors_total": ("counter", "Frames that produced no row, by reason."),
    "stream_connected": ("gauge", "1 while the collector's websocket is open."),
    "stream_last_frame_age_seconds": ("gauge", "Seconds since the stream's last frame."),
    "stream_status_age_seconds": ("gauge", "Seconds since the collector rewrote its status."),
    "stream_disk_full": ("gauge", "1 while the collector cannot write for lack of room."),
    "stream_up": ("gauge", "1 while supervisord reports the collector RUNNING."),
    "stream_silent": ("gauge", "1 while the stream is in a quiet-stream episode."),
    "periodic_last_start_timestamp_seconds": ("gauge", "Start of the job's last run."),
    "periodic_last_ok": ("gauge", "1 if the job's last run succeeded."),
    "periodic_last_duration_seconds": ("gauge", "Duration of the job's last run."),
    "periodic_runs_total": ("counter", "Runs of the periodic job."),
    "periodic_failures_total": ("counter", "Failed runs of the periodic job."),
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Mapping[str, str]) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    return None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


Stream = tuple[str, str, str]  # (exchange, symbol, data_type)


def render(
    host_id: str,
    statuses: Iterable[Mapping[str, Any]],
    periodic: Mapping[str, Mapping[str, Any]],
    *,
    now: float,
    programs: Mapping[Stream, tuple[bool, bool]] | None = None,
) -> str:
    """The textfile for ``statuses`` (status.json contents), ``periodic`` (job → state) and
    ``programs`` (stream → (running, silent), from supervisord and the watcher)."""
    samples: dict[str, list[str]] = {name: [] for name in HELP}

    def add(metric: str, labels: Mapping[str, str], value: float | None) -> None:
        if value is not None:
            samples[metric].append(f"{PREFIX}{metric}{_labels(labels)} {value:g}")

    for (exchange, symbol, data_type), (running, silent) in sorted((programs or {}).items()):
        labels = {"host": host_id, "exchange": exchange, "symbol": symbol, "data_type": data_type}
        add("stream_up", labels, 1.0 if running else 0.0)
        add("stream_silent", labels, 1.0 if silent else 0.0)
    for st in statuses:
        labels = {
            "host": host_id,
            "exchange": str(st.get("exchange", "")),
            "symbol": str(st.get("symbol", "")),
            "data_type": str(st.get("data_type", "")),
        }
        for key, metric in STREAM_COUNTERS.items():
            add(metric, labels, _number(st.get(key)))
        by_reason = st.get("parse_errors_by_reason")
        if isinstance(by_reason, dict) and by_reason:
            for reason, n in sorted(by_reason.items()):
                add("stream_parse_errors_total", {**labels, "reason": str(reason)}, _number(n))
        else:
            add(
                "stream_parse_errors_total",
                {**labels, "reason": "all"},
                _number(st.get("parse_errors")),
            )
        add("stream_connected", labels, _number(bool(st.get("connected"))))
        last = _number(st.get("last_frame_at"))
        add("stream_last_frame_age_seconds", labels, None if last is None else max(0.0, now - last))
        updated = _number(st.get("updated_at"))
        add(
            "stream_status_age_seconds",
            labels,
            None if updated is None else max(0.0, now - updated),
        )
        add("stream_disk_full", labels, _number(bool(st.get("disk_full"))))
        add("stream_rows_hour", labels, _number(st.get("hour_rows")))
    for job, state in sorted(periodic.items()):
        labels = {"host": host_id, "job": job}
        add("periodic_last_start_timestamp_seconds", labels, _number(state.get("last_start")))
        ok = state.get("last_ok")
        add("periodic_last_ok", labels, None if ok is None else _number(bool(ok)))
        add("periodic_last_duration_seconds", labels, _number(state.get("last_duration_s")))
        add("periodic_runs_total", labels, _number(state.get("runs")))
        add("periodic_failures_total", labels, _number(state.get("failures")))
    out: list[str] = []
    for metric, lines in samples.items():
        if lines:
            kind, text = HELP[metric]
            out += [f"# HELP {PREFIX}{metric} {text}", f"# TYPE {PREFIX}{metric} {kind}", *lines]
    return "\n".join(out) + "\n"


def read_periodic(data_dir: Path) -> dict[str, dict[str, Any]]:
    """Every periodic job's state under ``data_dir`` (job → its state file's content)."""
    periodic: dict[str, dict[str, Any]] = {}
    state_dir = layout.periodic_dir(data_dir)
    for path in sorted(state_dir.glob("*.json")) if state_dir.is_dir() else []:
        state = _read_json(path)
        if state is not None:
            periodic[path.stem] = state
    return periodic


def read_host(data_dir: Path) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Every stream's status.json (``{exchange}/{symbol}/{data_type}/status.json``, no
    symlinks followed) and every periodic job's state under ``data_dir``."""
    statuses: list[dict[str, Any]] = []
    for path in sorted(layout.status_files(data_dir)):
        if any(p.is_symlink() for p in (path, path.parent, path.parent.parent)):
            continue
        st = _read_json(path)
        if st is not None:
            statuses.append(st)
    return statuses, read_periodic(data_dir)


def write_textfile(path: Path, text: str) -> None:
    """Atomically replace ``path`` (node_exporter reads ``*.prom`` files whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_host_metrics(
    data_dir: Path, host_id: str, path: Path, *, now: float | None = None
) -> str:
    """Read this host's state and write its textfile; returns the text."""
    statuses, periodic = read_host(data_dir)
    text = render(host_id, statuses, periodic, now=time.time() if now is None else now)
    write_textfile(path, text)
    return text


def write_observed_metrics(
    path: Path,
    host_id: str,
    data_dir: Path,
    observed: Iterable[Observed],
    silent: set[str],
    *,
    now: float,
) -> str:
    """The listener's tick: the textfile of the collectors supervisord runs here (their
    status files as read by the watch), their state, and the periodic jobs."""
    observed = list(observed)
    programs = {
        (o.exchange, o.symbol, o.data_type): (o.running, o.program in silent) for o in observed
    }
    statuses = [o.status for o in observed if o.status is not None]
    text = render(host_id, statuses, read_periodic(data_dir), now=now, programs=programs)
    write_textfile(path, text)
    return text
