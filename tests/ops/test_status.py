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
from qa.ledger import LEDGER_VERSION

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


def _record(stream_dir: Path, start_s: float, end_s: float, body: object, suffix: str = "") -> None:
    """A completeness record as QA writes it (qa/ledger.py), where QA writes it."""
    t = time.gmtime(start_s)
    day = stream_dir / "completeness" / time.strftime("%Y-%m-%d", t)
    day.mkdir(parents=True, exist_ok=True)
    stem = time.strftime("%Y%m%dT%H%M%S.000Z", t) + f"{suffix}_binance_BTCUSDT_trade"
    if isinstance(body, dict):
        body = {
            "completeness_version": LEDGER_VERSION,
            "exchange": "binance",
            "symbol": "BTCUSDT",
            "data_type": "trade",
            "start_s": start_s,
            "end_s": end_s,
            "gap_count": 0,
            "bad_frames": {},
            **body,
        }
    (day / f"{stem}.completeness.json").write_text(json.dumps(body))


def _ids(written: int, expected: int) -> dict[str, int]:
    return {"written": written, "expected": expected, "missing": expected - written}


class TestLastHour:
    def test_the_last_closed_hour_s_completeness_is_shown_and_judged(self, tmp_path: Path) -> None:
        """The records of the last closed hour (two files: a restart) give the verdict; an
        incomplete hour needs a human; an older hour's record does not count."""
        config = load_config(_config(tmp_path))
        now = time.time()
        last = now - now % 3600 - 3600
        sdir = layout.stream_dir(config.data_dir, *STREAM)
        _record(sdir, last, last + 1700, {"connected_s": 1700.0, "trade_ids": _ids(1000, 1000)})
        half = {"connected_s": 1600.0, "trade_ids": _ids(988, 1000)}
        _record(sdir, last + 1700, last + 3600, half, "-2")
        _record(sdir, last - 3600, last, {"connected_s": 0.0, "trade_ids": _ids(1, 1000)})

        row = stream_row(config, "binance-btcusdt-trade", STREAM, RUNNING, now=now, synced={})

        assert (row.last_hour, row.complete) == (last, False)
        assert (
            row.completeness
            == "INCOMPLETE (connected 3300 of 3600 s, 12 of 2000 trade ids missing, covered 92%)"
        )
        assert row.problems == [
            "no status file",
            "last hour incomplete: INCOMPLETE (connected 3300 of 3600 s, 12 of 2000 trade ids "
            "missing, covered 92%)",
        ]

    def test_no_record_yet_or_an_unreadable_one_is_unknown(self, tmp_path: Path) -> None:
        """QA has not written the hour's record yet (or wrote garbage): "-", not a problem."""
        config = load_config(_config(tmp_path))
        now = time.time()
        sdir = layout.stream_dir(config.data_dir, *STREAM)
        last = now - now % 3600 - 3600
        _record(sdir, last, last + 3600, "not an object")

        row = stream_row(config, "binance-btcusdt-trade", STREAM, None, now=now, synced={})

        assert (row.complete, row.completeness, row.problems) == (None, None, [])


def test_with_fleet_hosts_only_this_host_s_share_is_shown(tmp_path: Path) -> None:
    """Ohio's `ops status` lists the streams placed on it (no Binance: HTTP 451) and says
    when a tracked stream is placed on no host at all."""
    from ops.status import collect

    cfg = _config(
        tmp_path,
        'host_id = "use2-a"\n'
        '[exchanges.binance]\nrest_url = "http://127.0.0.1:9"\n'
        '[exchanges.coinbase]\nrest_url = "http://127.0.0.1:9"\n'
        '[fleet]\nhosts = [{ id = "use2-a", region = "us-east-2" }]\nreplicas = 1\n',
    )

    st = collect(load_config(cfg))

    assert [r.program for r in st.streams] == ["coinbase-btc-usd-book", "coinbase-btc-usd-trade"]
    assert (st.host_id, st.region) == ("use2-a", "us-east-2")
    assert st.problems[1] == (
        "2 tracked stream(s) placed on no host, e.g. binance:BTCUSDT:book "
        "(python -m ops.fleet plan)"
    )


def test_the_command_reads_qa_s_records_without_loading_polars(tmp_path: Path) -> None:
    """`python -m ops status --json`, the real process (each sync's status snapshot runs the
    same code): the last hour's record is read and judged, and polars, which only QA's checks
    need, is never imported (Python's own import log, PYTHONPROFILEIMPORTTIME, tells)."""
    import os
    import re
    import subprocess
    import sys

    from tests.conftest import REPO

    cfg = _config(tmp_path)
    config = load_config(cfg)
    now = time.time()
    last = now - now % 3600 - 3600
    sdir = layout.stream_dir(config.data_dir, *STREAM)
    _record(sdir, last, last + 3600, {"connected_s": 3600.0, "trade_ids": _ids(1000, 1000)})

    proc = subprocess.run(
        [sys.executable, "-m", "ops", "status", "--json", "--config", str(cfg)],
        cwd=REPO,
        env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    rows = {r["program"]: r for r in json.loads(proc.stdout)["streams"]}
    row = rows["binance-btcusdt-trade"]
    assert (row["last_hour"], row["complete"]) == (last, True), proc.stderr[-2000:]
    imported = set(re.findall(r"^import time:.*\|\s*(\S+)$", proc.stderr, re.MULTILINE))
    assert {"ops.status", "qa.ledger", "qa.checks.raw"} <= imported  # the log is read
    assert not {m for m in imported if m.split(".")[0] == "polars"}
