"""Prometheus textfile (ops/metrics.py): parsed back with the reference client's parser."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from ops.metrics import HELP, PREFIX, render, write_host_metrics, write_observed_metrics
from ops.watch import Observed
from tests.conftest import REPO

STATUS = {
    "exchange": "binance", "symbol": "BTCUSDT", "data_type": "trade", "frames": 120,
    "rows": 118, "gaps": 1, "reconnects": 2, "parse_errors": 2,
    "parse_errors_by_reason": {"bad_value:p": 1, "foreign_symbol": 1}, "connected": True,
    "last_frame_at": 990.0, "updated_at": 999.5, "disk_full": False,
}  # fmt: skip
PERIODIC = {"qa": {"last_start": 900.0, "last_ok": False, "last_duration_s": 1.5, "runs": 3,
                   "failures": 1}}  # fmt: skip


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_stream_and_periodic_figures_parse_back_exactly() -> None:
    """Every figure of status.json and the periodic state, under the right labels."""
    got = samples(render("euw1-a", [STATUS], PERIODIC, now=1000.0))

    base = (("data_type", "trade"), ("exchange", "binance"), ("host", "euw1-a"),
            ("symbol", "BTCUSDT"))  # fmt: skip
    assert got[("l3c_stream_frames_total", base)] == 120
    assert got[("l3c_stream_rows_total", base)] == 118
    assert got[("l3c_stream_gaps_total", base)] == 1
    assert got[("l3c_stream_reconnects_total", base)] == 2
    assert got[("l3c_stream_connected", base)] == 1
    assert got[("l3c_stream_last_frame_age_seconds", base)] == 10.0
    assert got[("l3c_stream_status_age_seconds", base)] == 0.5
    assert got[("l3c_stream_disk_full", base)] == 0
    reasons = {dict(k[1])["reason"]: v for k, v in got.items()
               if k[0] == "l3c_stream_parse_errors_total"}  # fmt: skip
    assert reasons == {"bad_value:p": 1, "foreign_symbol": 1}
    job = (("host", "euw1-a"), ("job", "qa"))
    assert got[("l3c_periodic_last_ok", job)] == 0
    assert got[("l3c_periodic_failures_total", job)] == 1
    assert got[("l3c_periodic_last_duration_seconds", job)] == 1.5


def test_label_values_are_escaped() -> None:
    """A value with a quote, a backslash and a newline cannot break the format."""
    hostile = {**STATUS, "symbol": 'A"B\\C\nD'}

    got = samples(render("h", [hostile], {}, now=1000.0))

    symbols = {dict(k[1]).get("symbol") for k in got}
    assert 'A"B\\C\nD' in symbols


def test_the_textfile_is_written_from_the_data_dir(tmp_path: Path) -> None:
    """Status files under the layout and periodic state files become one .prom file."""
    stream = tmp_path / "data" / "binance" / "BTCUSDT" / "trade"
    stream.mkdir(parents=True)
    (stream / "status.json").write_text(json.dumps(STATUS))
    periodic = tmp_path / "data" / ".fleet" / "periodic"
    periodic.mkdir(parents=True)
    (periodic / "qa.json").write_text(json.dumps(PERIODIC["qa"]))
    out = tmp_path / "textfile" / "l3c.prom"

    write_host_metrics(tmp_path / "data", "local", out, now=1000.0)

    got = samples(out.read_text())
    assert any(k[0] == "l3c_stream_frames_total" for k in got)
    assert any(k[0] == "l3c_periodic_runs_total" for k in got)
    assert not list(out.parent.glob(".*.tmp"))


def test_the_listener_s_tick_adds_program_state_and_quiet_streams(tmp_path: Path) -> None:
    """From what the watch observed: up (RUNNING), silent (an open episode), rows this hour;
    a program without a status file still has its up/silent gauges."""
    running = Observed("binance-btcusdt-trade", "binance", "BTCUSDT", "trade", True, 1.0,
                       {**STATUS, "hour_rows": 7})  # fmt: skip
    down = Observed("coinbase-btc-usd-book", "coinbase", "BTC-USD", "book", False, None, None)
    out = tmp_path / "l3c.prom"

    write_observed_metrics(
        out, "h", tmp_path / "data", [running, down], {"coinbase-btc-usd-book"}, now=1000.0
    )

    got = {(k[0], dict(k[1])["symbol"]): v for k, v in samples(out.read_text()).items()}
    assert got[("l3c_stream_up", "BTCUSDT")] == 1
    assert got[("l3c_stream_silent", "BTCUSDT")] == 0
    assert got[("l3c_stream_rows_hour", "BTCUSDT")] == 7
    assert got[("l3c_stream_up", "BTC-USD")] == 0
    assert got[("l3c_stream_silent", "BTC-USD")] == 1
    assert ("l3c_stream_frames_total", "BTC-USD") not in got


DASHBOARD = REPO / "ops" / "grafana" / "l3c-fleet.json"


def _queries(node: object) -> list[str]:
    """Every PromQL text of a dashboard: panel targets and template variable queries."""
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        if isinstance(node.get("definition"), str):
            found.append(node["definition"])
        return found + [q for v in node.values() for q in _queries(v)]
    if isinstance(node, list):
        return [q for v in node for q in _queries(v)]
    return []


def test_the_grafana_dashboard_queries_only_metrics_that_exist() -> None:
    """ops/grafana/l3c-fleet.json is valid JSON; every l3c_* name it queries is written by
    ops/metrics.py; panel ids are unique and every panel fits the 24-column grid."""
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = _queries(dash["panels"]) + _queries(dash["templating"])

    used = {m for q in queries for m in re.findall(r"\bl3c_[a-z0-9_]+", q)}
    known = {f"{PREFIX}{name}" for name in HELP}
    assert used
    assert used <= known, sorted(used - known)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    assert all(p["gridPos"]["x"] + p["gridPos"]["w"] <= 24 for p in dash["panels"])
    assert all(q.count("(") == q.count(")") for q in queries)
