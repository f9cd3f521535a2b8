"""Alerts of real ``python -m secmaster sync`` runs, read from their JSON log lines."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from ops.replay import ReplayThread
from secmaster.cli import run
from tests.secmaster.conftest import (
    BINANCE_PATH,
    RecordedBodies,
    log_events,
    modified_binance,
    run_secmaster,
    write_config,
)

pytestmark = pytest.mark.timeout(120)


def _alerts(stderr: str) -> list[dict[str, Any]]:
    return [e for e in log_events(stderr) if e["event"] == "alert"]


def _first_sync(cfg: Path) -> None:
    assert run(["--config", str(cfg), "sync", "--exchange", "binance"], io.StringIO()) == 0


def test_first_load_raises_no_alert(tmp_path: Path, replay: ReplayThread) -> None:
    """Loading an exchange into an empty table is not news: no alert, one summary log line."""
    cfg = write_config(tmp_path, replay)

    proc = run_secmaster(cfg, "sync", "--exchange", "binance")

    assert proc.returncode == 0, proc.stderr
    assert _alerts(proc.stderr) == []
    (done,) = [e for e in log_events(proc.stderr) if e["event"] == "secmaster.sync.done"]
    assert (done["new"], done["rows_written"], done["level"]) == (1695, 1695, "info")
    assert done["summary"] == proc.stdout.strip()


def test_new_and_delisted_pairs_one_warning(
    tmp_path: Path, replay: ReplayThread, recorded_bodies: RecordedBodies
) -> None:
    """One pair gone, one new, one re-ticked: one warning alert listing both pairs."""
    cfg = write_config(tmp_path, replay)
    _first_sync(cfg)
    replay.set_http(BINANCE_PATH, modified_binance(recorded_bodies.binance))

    proc = run_secmaster(cfg, "sync", "--exchange", "binance")

    assert proc.returncode == 0, proc.stderr
    (alert,) = _alerts(proc.stderr)
    assert (alert["level"], alert["source"], alert["severity"]) == (
        "warning",
        "secmaster",
        "warning",
    )
    assert (alert["exchange"], alert["new"], alert["delisted"]) == ("binance", "NEWUSDT", "ETHBTC")
    assert alert["title"] == "binance listings: 1 new, 1 delisted, 0 status changes"
    assert "status_changes" not in alert
    assert alert["key"].startswith("secmaster:binance:listings:")


def test_tracked_pair_delisted_is_an_error(
    tmp_path: Path, replay: ReplayThread, recorded_bodies: RecordedBodies
) -> None:
    """BTCUSDT (default universe) vanishing raises an error-level alert naming it."""
    cfg = write_config(tmp_path, replay)
    _first_sync(cfg)
    replay.set_http(
        BINANCE_PATH, modified_binance(recorded_bodies.binance, remove="BTCUSDT", add="", tick=None)
    )

    proc = run_secmaster(cfg, "sync", "--exchange", "binance")

    assert proc.returncode == 0, proc.stderr
    (alert,) = _alerts(proc.stderr)
    assert (alert["level"], alert["severity"]) == ("error", "error")
    assert (alert["delisted"], alert["tracked_delisted"]) == ("BTCUSDT", "BTCUSDT")
    assert "TRACKED pair(s) delisted: BTCUSDT" in alert["title"]


def test_tracked_pair_halted_is_a_status_change(
    tmp_path: Path, replay: ReplayThread, recorded_bodies: RecordedBodies
) -> None:
    """BTCUSDT going TRADING -> BREAK is one warning alert with the status change."""
    cfg = write_config(tmp_path, replay)
    _first_sync(cfg)
    replay.set_http(
        BINANCE_PATH,
        modified_binance(
            recorded_bodies.binance, remove="", add="", tick=None, status=("BTCUSDT", "BREAK")
        ),
    )

    proc = run_secmaster(cfg, "sync", "--exchange", "binance")

    assert proc.returncode == 0, proc.stderr
    assert "binance: 0 new, 1 changed, 0 delisted, 1694 unchanged (2 rows written" in proc.stdout
    (alert,) = _alerts(proc.stderr)
    assert alert["severity"] == "warning"
    assert alert["status_changes"] == "BTCUSDT TRADING->BREAK"
    assert alert["tracked_status_changes"] == "BTCUSDT TRADING->BREAK"


def test_failed_poll_alerts_and_exits_1(tmp_path: Path, replay: ReplayThread) -> None:
    """An HTTP 503 (no retries configured) is an error alert, exit code 1, nothing written."""
    cfg = write_config(tmp_path, replay, http_retries=0)
    replay.faults.http_error_status = 503
    replay.faults.http_errors = 1

    proc = run_secmaster(cfg, "sync", "--exchange", "binance")

    assert proc.returncode == 1
    (alert,) = _alerts(proc.stderr)
    assert (alert["severity"], alert["key"]) == ("error", "secmaster:binance:poll-failed")
    assert alert["error"] == (
        f"HTTP 503 from {replay.http_url}/binance/api/v3/exchangeInfo after 1 attempt"
    )
    assert proc.stdout.startswith("binance: FAILED, nothing changed: HTTP 503")
