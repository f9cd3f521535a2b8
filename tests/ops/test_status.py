"""``ops status`` judges a stream by the collector's own settings (same getters, same defaults):
a status.json in tmp_path and the process info supervisord would report for the program."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from collector.common import layout
from collector.config import load_config
from collector.settings import build_collector_settings
from ops.status import stream_row

STREAM = ("binance", "BTCUSDT", "trade")
RUNNING = {"collector:binance-btcusdt-trade": {"statename": "RUNNING", "pid": 4242}}


def _config(tmp_path: Path, collector: str = "") -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'data_dir = "{tmp_path}/data"\n{collector}')
    return cfg


def _problems(cfg: Path, *, frame_age_s: float, status_age_s: float = 0.0) -> list[str]:
    config = load_config(cfg)
    now = time.time()
    status = layout.status_path(layout.stream_dir(config.data_dir, *STREAM))
    status.parent.mkdir(parents=True)
    status.write_text(
        json.dumps(
            {
                "updated_at": now - status_age_s,
                "connected": True,
                "last_frame_at": now - frame_age_s,
                "hour_rows": 10,
            }
        )
    )
    row = stream_row(config, "binance-btcusdt-trade", STREAM, RUNNING, now=now, synced={})
    return row.problems


@pytest.mark.parametrize(
    ("collector", "frame_age_s", "problems"),
    [
        ("", 59.0, []),  # twice the collector's default watchdog (30 s) is 60 s
        ("", 61.0, ["no frame for 61 s"]),
        ("[collector.watchdog]\ntrade_s = 90.0\n", 179.0, []),
        ("[collector.watchdog]\ntrade_s = 90.0\n", 181.0, ["no frame for 181 s"]),
    ],
)
def test_silence_is_judged_by_the_collectors_own_watchdog(
    tmp_path: Path, collector: str, frame_age_s: float, problems: list[str]
) -> None:
    """A stream needs a human once its last frame is older than twice its watchdog."""
    cfg = _config(tmp_path, collector)
    watchdog_s = build_collector_settings(
        load_config(cfg), exchange="binance", symbol="BTCUSDT", data_type="trade", environ={}
    ).watchdog_s

    found = _problems(cfg, frame_age_s=frame_age_s)

    assert found == problems
    assert (frame_age_s > 2 * watchdog_s) == bool(problems)


def test_status_file_staleness_uses_the_collectors_status_interval(tmp_path: Path) -> None:
    """Stale = older than 3 × status_interval_s + 10 s, with the collector's default (2 s)."""
    fresh = _problems(_config(tmp_path / "a"), frame_age_s=1.0, status_age_s=15.0)
    stale = _problems(_config(tmp_path / "b"), frame_age_s=1.0, status_age_s=17.0)

    assert (fresh, stale) == ([], ["status file stale"])


def test_a_bad_collector_value_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """`ops status` with `[collector] status_interval_s = "fast"`: no traceback."""
    import subprocess
    import sys

    from tests.conftest import REPO

    cfg = _config(tmp_path, '[collector]\nstatus_interval_s = "fast"\n')

    proc = subprocess.run(
        [sys.executable, "-m", "ops", "status", "--config", str(cfg)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert proc.returncode == 2
    assert proc.stderr.startswith("ops: error: ")
    assert "status_interval_s = 'fast' must be a number" in proc.stderr
    assert proc.stderr.count("\n") == 1
