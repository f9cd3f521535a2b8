"""QA reads each raw file back through the collector's own processor (issue 19): the frames
that produced no row are reported per reason, exactly as the collector counted them, and
each file gets a completeness record (connected time, gaps with their ids, trade ids
expected versus written, book time out of sync).

Real collectors against the replay server with its fault switches write the files; QA runs
on them as it does on a host (``run_once``, the config the collectors had).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from collector.common import layout
from collector.config import load_config
from ops.replay import ReplayThread
from qa.runner import run_once
from qa.settings import build_qa_settings
from tests.collector.harness import Collector, collector, write_config
from tests.collector.test_hostile_frames import binance_trade, capture
from tests.collector.test_process_books import binance_done
from tests.conftest import CAPTURES


def qa(c: Collector, cfg: Path) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """QA over the run's data dir: (report, completeness record) of each parsed file."""
    settings = build_qa_settings(load_config(cfg))
    run_once(settings)
    out = []
    for p in c.files("parsed"):
        report = orjson.loads(layout.report_path(p).read_bytes())
        record = orjson.loads(layout.completeness_path(p).read_bytes())
        out.append((report, record))
    return out


def finding(report: dict[str, Any], check: str) -> dict[str, Any]:
    return next(f for f in report["findings"] if f["check"] == check)


@pytest.fixture(scope="module")
def trades(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Binance trades with a stray id, a forged price, another symbol's trade, a field nobody
    documented and a garbage frame; the connection drops and the server starts over, so the
    second connection brings duplicates."""
    tmp = tmp_path_factory.mktemp("qa-trades")
    frames: list[object] = []
    for i in range(20):
        over: dict[str, object] = {5: {"t": 10**12}, 8: {"p": "1\n2"}, 14: {"X": "new"}}.get(i, {})
        frames.append(binance_trade(i, symbol="ETHUSDT" if i == 11 else "BTCUSDT", **over))
    with ReplayThread([capture(tmp, frames)]) as r:
        r.faults.garbage_after = 3
        r.faults.drop_after = 16
        cfg = write_config(tmp / "c.toml", "binance", r)
        with collector(tmp, "binance", "BTCUSDT", "trade", cfg) as c:
            c.wait_for(lambda s: s.get("last_trade_id") == 1019 and s.get("frames", 0) >= 39)
            assert c.stop() == 0
            status = c.status()  # the final one: frames went on arriving until the stop
    [(report, record)] = qa(c, cfg)
    return {"c": c, "status": status, "report": report, "record": record}


class TestFramesWithoutRows:
    def test_the_reasons_are_the_collectors_own(self, trades):
        """Replayed through the processor, the raw file gives the collector's counts: frame
        kinds, parse reasons, duplicates, strays and what is new, exactly."""
        st = trades["status"]
        f = finding(trades["report"], "raw_frames")
        d = f["details"]
        errors = {k: v for k, v in d["without_rows"].items() if k not in ("duplicate", "stray")}

        assert d["kinds"] == st["frames_by_kind"]
        assert (
            errors
            == st["parse_errors_by_reason"]
            == {
                "malformed": 1,
                "bad_value:p": 2,
                "foreign_symbol": 2,
            }
        )
        assert d["without_rows"]["duplicate"] == st["duplicates"] > 0
        assert d["without_rows"]["stray"] == st["stray_ids"] == 2
        assert d["new_kinds"] == st["new_kinds"] == {"unexpected_field:trade.X": 2}
        assert d["worth_a_look"] == {"bad_value:p": 2, "stray": 2, "malformed": 1}
        assert f["severity"] == "warn"
        assert f["message"].startswith(
            f"{sum(d['without_rows'].values())} of 39 frames gave no row"
        )

    def test_replayed_rows_are_the_parsed_rows(self, trades):
        """Duplicates and strays are the collector's decisions, not a mismatch."""
        f = finding(trades["report"], "raw_vs_parsed")

        assert f["severity"] == "ok"
        assert f["details"]["replayed_rows"] == f["details"]["parsed_rows"] == 17


class TestTradeLedger:
    def test_trade_ids_expected_versus_written_and_the_gaps_that_explain_them(self, trades):
        rec = trades["record"]

        assert rec["completeness_version"] == 1
        assert rec["trade_ids"] == {
            "first": 1000,
            "last": 1019,
            "written": 17,
            "expected": 20,
            "missing": 3,
        }
        assert [(g["kind"], g["first_id"], g["last_id"], g["size"]) for g in rec["gaps"]] == [
            ("trade_id", 1005, 1005, 1),
            ("trade_id", 1008, 1008, 1),
            ("trade_id", 1011, 1011, 1),
        ]
        assert (rec["gap_count"], rec["gap_size"]) == (3, 3)
        assert rec["bad_frames"] == {"malformed": 1, "bad_value:p": 2, "stray": 2}
        assert rec["complete"] is False

    def test_connected_time_comes_from_the_raw_events(self, trades):
        """Down before the first connect and between the drop and the reconnect; after the
        last line (the collector stopped, no later file) nothing is assumed."""
        rec = trades["record"]
        events = [e for e in trades["c"].raw_events() if e["t"] in ("connect", "disconnect")]
        last = trades["c"].raw_events()[-1]["ts"]
        (c1, d1, c2) = (round(e["ts"], 3) for e in events)

        assert [e["t"] for e in events] == ["connect", "disconnect", "connect"]
        assert rec["disconnected"] == [
            [rec["start_s"], c1],
            [d1, c2],
            [round(last, 3), rec["end_s"]],
        ]
        assert rec["connected_s"] == pytest.approx((d1 - c1) + (last - c2), abs=0.003)
        assert rec["end_s"] == rec["start_s"] // 3600 * 3600 + 3600


@pytest.fixture(scope="module")
def books(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The recorded NKNUSDT book: synced (a stall lets the snapshot in), then a skipped diff
    (a sequence gap; the recorded snapshot is too old to resync on) and a dropped connection
    (the new one syncs again)."""
    tmp = tmp_path_factory.mktemp("qa-books")
    with ReplayThread([CAPTURES["binance"]]) as r:
        r.faults.stall_after = 15
        r.faults.stall_s = 0.5
        r.faults.skip_frames = (20,)
        r.faults.drop_after = 30
        cfg = write_config(tmp / "c.toml", "binance", r)
        with collector(tmp, "binance", "NKNUSDT", "book", cfg) as c:
            c.wait_for(
                lambda st: binance_done(c, st) and st["reconnects"] >= 1 and st["gaps"] >= 1,
                timeout=40,
            )
            assert c.stop() == 0
            status = c.status()  # the final one: frames went on arriving until the stop
    [(report, record)] = qa(c, cfg)
    return {"c": c, "status": status, "report": report, "record": record}


class TestBookLedger:
    def test_out_of_sync_from_each_gap_and_disconnect_to_the_next_sync(self, books):
        rec = books["record"]
        raw = books["c"].raw_events()
        gaps = [e for e in raw if e["t"] == "gap"]
        seq = next(g for g in gaps if g["kind"] == "sequence")

        assert [(g["kind"], g["first_id"], g["last_id"]) for g in rec["gaps"]][:1] == [
            ("sequence", seq["expected"], seq["got"] - 1)
        ]
        out = rec["out_of_sync"]
        disconnect = next(e for e in raw if e["t"] == "disconnect")
        reconnect = [e for e in raw if e["t"] == "connect"][1]
        assert out[0][0] == rec["start_s"]  # a fresh collector: no book until its snapshot
        assert out[0][1] < seq["ts"]  # in sync when the diff went missing
        assert out[1][0] == pytest.approx(seq["ts"], abs=0.001)
        assert out[1][0] < disconnect["ts"] < reconnect["ts"] < out[1][1]  # synced again
        assert out[-1][1] == rec["end_s"]  # stopped: never in sync after its last line
        assert rec["out_of_sync_s"] == pytest.approx(sum(b - a for a, b in out), abs=0.01)
        assert rec["synced_at_end"] is False
        assert rec["trade_ids"] is None

    def test_book_frames_without_rows_are_explained(self, books):
        """Diffs buffered for a snapshot, or that left the top 5 as it was: normal."""
        f = finding(books["report"], "raw_frames")
        d = f["details"]

        assert d["kinds"] == books["status"]["frames_by_kind"]
        assert d["rows"] == books["report"]["rows"]  # the replay makes the collector's rows
        assert set(d["without_rows"]) <= {"waiting_for_snapshot", "top_unchanged"}
        assert d["worth_a_look"] == {}
        assert f["severity"] == "ok"
