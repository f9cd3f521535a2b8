"""Knowing that an exchange changed (issue 19): every frame's kind is counted, what is new in a
stream (an unknown type, a known type with an unexpected or a missing field) is named, alerted
once, and shown by ``ops status`` as needing a human.

Real collectors against the replay server, which injects the new kinds (``inject``) among
ordinary Binance trades, report to a local alert receiver (the Slack sink of the alert
service) and write the status file ``ops status`` reads. A second collector on the same data
dir sees the same frames: the alert service's suppression state (per data dir) keeps it quiet.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from collector.config import load_config
from ops.replay import ReplayThread
from ops.status import stream_row
from tests.collector.harness import collector, write_config
from tests.collector.test_hostile_frames import binance_trade, capture
from tests.ops.alert_sink import WatchedAlertSink

LONG_TYPE = "a" * 10_000  # an unknown type name of 10 kB
# the frames the replay server injects after N data frames: (N, frame)
WITH_X = binance_trade(3, X="new")  # a known trade with a field nobody documented
INJECT = (
    (3, orjson.dumps(WITH_X).decode()),
    (5, orjson.dumps({"stream": "btcusdt@trade", "data": {"e": LONG_TYPE, "E": 1}}).decode()),
    (6, '{"stream":"btcusdt@trade","data":{"e":"evil\\nname","E":1}}'),
    (
        7,
        orjson.dumps(
            {
                "stream": "btcusdt@trade",
                "data": {k: v for k, v in binance_trade(50)["data"].items() if k != "q"},
            }
        ).decode(),
    ),  # fmt: skip
)
NEW_KINDS = {
    "unexpected_field:trade.X": 1,
    f"unknown_type:{'a' * 40}~": 1,
    "unknown_type:evil?name": 1,
    "missing_field:trade.q": 1,
}
STREAM = ("binance", "BTCUSDT", "trade")
RUNNING = {"collector:binance-btcusdt-trade": {"statename": "RUNNING", "pid": 1}}


def _run(tmp_path: Path, sink: WatchedAlertSink) -> tuple[dict[str, Any], list[Any], Path]:
    frames: list[object] = [binance_trade(i) for i in range(10) if i != 3]
    with ReplayThread([capture(tmp_path, frames)]) as r:
        r.faults.inject = INJECT
        cfg = write_config(tmp_path / "c.toml", "binance", r, "stats_interval_s = 0.2")
        env = {"SLACK_WEBHOOK_URL": f"{sink.url}/slack"}
        with collector(tmp_path, *STREAM, cfg, env=env) as c:
            # (a second collector resumes after 1009: every trade is then a duplicate)
            c.wait_for(lambda s: s.get("frames", 0) >= 14 and s.get("last_trade_id") == 1009)
            # a stats line that counts every frame (one comes every 0.2 s)
            c.wait_for(lambda s: any(_counts_all(e) for e in c.log_events()))
            status = c.status()
            assert c.stop() == 0
    return status, c.log_events(), cfg


def _counts_all(event: dict[str, Any]) -> bool:
    return event.get("event") == "collector.stats" and event.get("frames", 0) >= 14


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two collectors, one after the other, on one data dir, seeing the same frames."""
    tmp = tmp_path_factory.mktemp("new-kinds")
    with WatchedAlertSink() as sink:
        status, logs, cfg = _run(tmp, sink)
        sink.wait_for(lambda t: "missing_field:trade.q" in t, 10.0)
        first = sink.texts()
        status2, _, _ = _run(tmp, sink)
        time.sleep(0.5)  # any (wrong) delivery of the second process would be in by now
        second = sink.texts()[len(first) :]
    return {"status": status, "status2": status2, "logs": logs, "cfg": cfg, "alerts": first,
            "alerts2": second}  # fmt: skip


class TestCounts:
    def test_every_frame_has_one_kind_and_the_new_ones_are_named(self, run):
        """14 frames: the ack (control), 9 trades (parsed), the trade with an unexpected
        field (written all the same), two unknown types and a trade without `q`."""
        st = run["status"]

        assert st["frames_by_kind"] == {
            "parsed": 9,
            "unexpected_field": 1,
            "control": 1,
            "ignored": 0,
            "malformed": 0,
            "unknown_type": 2,
            "missing_field": 1,
            "bad_value": 0,
            "foreign_symbol": 0,
        }
        assert sum(st["frames_by_kind"].values()) == st["frames"] == 14
        assert st["new_kinds"] == NEW_KINDS
        assert st["parse_errors_by_reason"] == {"unknown_type": 2, "missing_field:q": 1}
        assert st["rows"] == 10  # 1000..1009, the trade with "X" among them
        assert set(st["frame_kind_last_at"]) == {
            "unexpected_field",
            "unknown_type",
            "missing_field",
        }

    def test_the_stats_line_carries_the_same_counts(self, run):
        stats = [e for e in run["logs"] if e.get("event") == "collector.stats"]

        assert stats[-1]["frames_by_kind"]["parsed"] >= 1
        assert "new_kinds" in stats[-1]
        new = [e["key"] for e in run["logs"] if e.get("event") == "frame.new_kind"]
        assert sorted(new) == sorted(NEW_KINDS)

    def test_the_stats_line_counts_parse_errors_by_reason(self, run: dict[str, Any]) -> None:
        """Once every frame is in, the stats line names the three unreadable frames by
        reason, as the status file does."""
        stats = [e for e in run["logs"] if _counts_all(e)]

        assert stats[-1]["parse_errors"] == 3
        assert stats[-1]["parse_errors_by_reason"] == {"unknown_type": 2, "missing_field:q": 1}
        assert stats[-1]["parse_errors_by_reason"] == run["status"]["parse_errors_by_reason"]


class TestAlerts:
    def test_one_alert_per_new_kind_bounded_and_on_one_line(self, run):
        alerts = [t for t in run["alerts"] if "new kind of frame" in t]

        assert len(alerts) == 4
        for key in NEW_KINDS:
            assert sum(f"kind={key} " in t or t.endswith(f"kind={key}") for t in alerts) == 1
        for text in alerts:
            assert "\n" not in text
            assert len(text) <= 600
            assert "aaaaaaaaaa" * 20 not in text  # 10 kB never reaches a message
            assert text.startswith("[WARNING] collector: new kind of frame: ")
            assert "stream=binance:BTCUSDT:trade" in text
        x = next(t for t in alerts if "unexpected_field:trade.X" in t)
        assert 'excerpt={"stream":"btcusdt@trade","data":{"e":"trade"' in x

    def test_a_second_process_does_not_alert_the_same_kinds_again(self, run):
        """Suppressed across processes: the second collector counts them, says nothing."""
        assert run["status2"]["new_kinds"] == NEW_KINDS
        assert [t for t in run["alerts2"] if "new kind of frame" in t] == []


class TestOpsStatus:
    def test_new_kinds_need_a_human_for_an_hour(self, run):
        """The collector's own status file: new kinds in the last hour → a problem naming
        them; an hour after the last one, none."""
        st = run["status"]

        found = _frame_problems(run["cfg"], st, st["updated_at"])
        later = _frame_problems(run["cfg"], st, st["last_new_kind_at"] + 3601)

        assert len(found) == 1
        assert found[0].startswith("new kind of frame (adapter needs a look): ")
        assert "unexpected_field:trade.X (1)" in found[0]
        assert found[0].endswith(" ...")  # 3 of the 4 named
        assert "\n" not in found[0]
        assert len(found[0]) < 400
        assert later == []

    def test_unreadable_frames_need_a_human_frames_of_another_symbol_do_not(self, run):
        """A malformed frame in the last hour is a problem; a frame of another symbol (kept
        in raw, nothing of this stream lost) is not."""
        st = dict(run["status"], last_new_kind_at=None)
        now = st["updated_at"]
        foreign = dict(st, frame_kind_last_at={"foreign_symbol": now},
                       parse_errors_by_reason={"foreign_symbol": 3})  # fmt: skip
        broken = dict(st, frame_kind_last_at={"malformed": now, "foreign_symbol": now},
                      parse_errors_by_reason={"malformed": 2, "foreign_symbol": 3})  # fmt: skip

        assert _frame_problems(run["cfg"], foreign, now) == []
        assert _frame_problems(run["cfg"], broken, now) == [
            "frames the adapter could not read in the last hour: malformed 2"
        ]
        assert _frame_problems(run["cfg"], broken, now + 3601) == []


def _frame_problems(cfg: Path, status: dict[str, Any], now: float) -> list[str]:
    """What ``ops status`` says of the frames of a stream whose status file is ``status``."""
    config = load_config(cfg)
    path = config.data_dir / "binance" / "BTCUSDT" / "trade" / "status.json"
    path.write_text(json.dumps(status))
    row = stream_row(config, "binance-btcusdt-trade", STREAM, RUNNING, now=now, synced={})
    return [p for p in row.problems if "frame" in p and not p.startswith("no frame")]
