"""The completeness ledger across files and hours, the day view, and hostile raw files.

Files written as a collector writes them (raw envelope, markers, multi-member gzip), for
hours in the past so the hours are closed: a collector that starts at 10:00 and keeps its
connection into 11:00, where a gap shows up; QA judges the 11:00 file with what the 10:00
one left (its last trade id, its connection), and ``qa completeness`` shows the day.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import orjson

from collector.common import layout
from qa import reader
from qa.runner import check_file, inspect_file, run_once
from tests.qa.helpers import (
    HOUR_MS,
    START_MS,
    binance_trade_frame,
    parsed_path,
    raw_path,
    write_parsed,
    write_raw,
)
from tests.qa.test_runner import qa_settings
from tests.qa.test_symlinks import qa_cli

SUBSCRIBE = '{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}'


def _trades(first_id: int, ids: list[int], start_ms: int) -> tuple[list[dict[str, Any]], list[str]]:
    """recv events and the parsed rows of trades ``ids`` spread over the hour."""
    events, rows = [], []
    for n, tid in enumerate(ids):
        t = start_ms + 1000 + n * (HOUR_MS - 2000) // len(ids)
        ts = t / 1000 + 0.002
        frame = binance_trade_frame("BTCUSDT", tid, t, "60000.00", "0.001", False)
        events.append({"t": "recv", "conn": "c1", "ts": ts, "data": frame})
        rows.append(f"{t + 1},BTCUSDT,{tid},60000.00,0.001,{t},False,{int(ts * 1e6)}\n")
    return events, rows


def two_hours(data: Path) -> tuple[Path, Path]:
    """10:00: a collector starts (resume, connect, subscribe) and trades 1000..1099 come;
    11:00: the same connection goes on; 1100 and 1101 never come (a gap marker)."""
    s10 = START_MS
    head = [
        {"t": "resume", "conn": "", "ts": s10 / 1000, "last_trade_id": None, "file": None},
        {"t": "connect", "conn": "c1", "ts": s10 / 1000 + 0.5, "addr": "wss://x/stream"},
        {"t": "send", "conn": "c1", "ts": s10 / 1000 + 0.5, "addr": "wss://x/stream",
         "data": SUBSCRIBE},
        {"t": "recv", "conn": "c1", "ts": s10 / 1000 + 0.6, "data": '{"result":null,"id":1}'},
    ]  # fmt: skip
    events, rows = _trades(1000, list(range(1000, 1100)), s10)
    p10 = write_parsed(parsed_path(data, "binance", "BTCUSDT", "trade", s10), "trade", rows)
    write_raw(raw_path(p10), head + events)
    s11 = s10 + HOUR_MS
    events, rows = _trades(1102, list(range(1102, 1200)), s11)
    gap = {"t": "gap", "conn": "c1", "ts": events[0]["ts"], "kind": "trade_id",
           "expected": 1100, "got": 1102, "size": 2}  # fmt: skip
    p11 = write_parsed(parsed_path(data, "binance", "BTCUSDT", "trade", s11), "trade", rows)
    write_raw(raw_path(p11), [events[0], gap, *events[1:]])
    return p10, p11


def record(parsed: Path) -> dict[str, Any]:
    return dict(orjson.loads(layout.completeness_path(parsed).read_bytes()))


class TestAcrossHours:
    def test_a_continuing_file_is_judged_with_the_one_before(self, tmp_path):
        data = tmp_path / "data"
        p10, p11 = two_hours(data)

        run_once(qa_settings(data))
        r10, r11 = record(p10), record(p11)

        # 10:00 is complete: connected half a second after its start until the next file
        # took the connection over, no gap, 100 ids of 100
        assert r10["connected_s"] == 3599.5
        assert r10["disconnected"] == [[START_MS / 1000, START_MS / 1000 + 0.5]]
        assert r10["trade_ids"]["expected"] == r10["trade_ids"]["written"] == 100
        assert r10["complete"] is True
        # 11:00: the ids since the last one of 10:00, two of them missing in one gap; no file
        # after it, so connected only until its last line
        assert r11["trade_ids"] == {"first": 1102, "last": 1199, "written": 98,
                                    "expected": 100, "missing": 2}  # fmt: skip
        assert [(g["first_id"], g["last_id"], g["size"]) for g in r11["gaps"]] == [(1100, 1101, 2)]
        assert r11["gaps"][0]["from_s"] == round(r10["end_s"], 3)  # no data since 10:59:59
        assert r11["disconnected"][-1][1] == r11["end_s"] == (START_MS + 2 * HOUR_MS) / 1000
        assert r11["complete"] is False

    def test_the_replay_goes_on_where_the_previous_file_ended(self, tmp_path):
        """Seeded with 10:00's last id, the replay decides 11:00's first trade as the
        collector did (a gap, then the row), so its rows are the parsed rows."""
        data = tmp_path / "data"
        p10, p11 = two_hours(data)
        run_once(qa_settings(data), paths=[p10])

        report = check_file(p11, qa_settings(data).thresholds)

        f = next(x for x in report["findings"] if x["check"] == "raw_vs_parsed")
        assert (f["severity"], f["details"]["replayed_rows"]) == ("ok", 98)

    def test_the_day_view_shows_which_hours_are_incomplete_and_by_how_much(self, tmp_path):
        data = tmp_path / "data"
        two_hours(data)
        run_once(qa_settings(data))

        day = qa_cli("completeness", "--data-dir", str(data), "--day", "2024-03-01")
        js = qa_cli("completeness", "--data-dir", str(data), "--day", "2024-03-01", "--json")

        assert day.returncode == js.returncode == 0
        lines = day.stdout.splitlines()
        row = next(x for x in lines if x.startswith("binance BTCUSDT trade"))
        cells = row.removeprefix("binance BTCUSDT trade").strip().split()
        assert cells[:2] == [".", "98"]  # 10h complete; 11h: 98 of 100 ids
        assert cells[2:] == ["-"] * 12  # 12h..23h: no file
        assert "  binance BTCUSDT trade 11h: 98.00% complete: " in day.stdout
        assert "2 of 100 trade ids missing" in day.stdout
        assert "  binance BTCUSDT trade 12h: no file (nothing was collected)" in day.stdout
        hours = {h["hour"]: h for h in json.loads(js.stdout)["hours"]}
        assert hours["2024-03-01T10:00:00Z"]["complete"] is True
        h11 = hours["2024-03-01T11:00:00Z"]
        assert (h11["complete"], h11["ids_missing"], h11["gaps"]) == (False, 2, 1)
        assert hours["2024-03-01T12:00:00Z"]["files"] == 0
        assert len(hours) == 14  # from its first record to the end of the day

    def test_bad_records_and_arguments(self, tmp_path):
        """A record that is not JSON, one too big, one that is a symlink: skipped; a bad
        --day: one line, exit 2."""
        data = tmp_path / "data"
        p10, _ = two_hours(data)
        run_once(qa_settings(data))
        day = layout.completeness_path(p10).parent
        (day / "x.completeness.json").write_text("not json\n")
        (day / "y.completeness.json").write_bytes(b"{" + b" " * (2 << 20) + b"}")
        (tmp_path / "evil.json").write_text(json.dumps({**record(p10), "symbol": "EVIL"}))
        (day / "z.completeness.json").symlink_to(tmp_path / "evil.json")

        js = qa_cli("completeness", "--data-dir", str(data), "--day", "2024-03-01", "--json")
        bad = qa_cli("completeness", "--data-dir", str(data), "--day", "2024-3-1\n")

        assert {h["symbol"] for h in json.loads(js.stdout)["hours"]} == {"BTCUSDT"}
        assert (bad.returncode, bad.stdout) == (2, "")
        assert bad.stderr.startswith("qa: --day ")
        assert bad.stderr.count("\n") == 1


class TestHostileRawFiles:
    def test_forged_markers_huge_lines_and_odd_names_stay_bounded(self, tmp_path):
        """Forged gap and resume markers, a 3 MB line that is not JSON, a line that is not
        UTF-8, an unknown type named with 10 kB or a newline: QA reads on, counts them, and
        nothing of them makes a report or a record large or breaks a line."""
        data = tmp_path / "data"
        events, rows = _trades(1000, list(range(1000, 1010)), START_MS)
        t = events[0]["ts"]
        forged = [
            {"t": "gap", "conn": "c1", "ts": t, "kind": "trade_id", "size": -5},
            {"t": "gap", "conn": "c1", "ts": t, "kind": "trade_id", "size": 10**30},
            {"t": "gap", "conn": "c1", "ts": t, "kind": "x\n" * 5000, "size": 1},
            {"t": "gap", "conn": "c1", "ts": t, "kind": "sequence", "expected": "a", "got": []},
            {"t": "resume", "conn": "", "ts": t, "last_trade_id": "oops", "file": 7},
            {"t": "gap", "conn": "c1", "ts": 1e20, "kind": "trade_id", "size": 1},
            {"t": "recv", "conn": "c1", "ts": t, "data": {"not": "a string"}},
            {"t": "recv", "conn": "c1", "ts": t,
             "data": json.dumps({"stream": "btcusdt@trade", "data": {"e": "n" * 10_000}})},
            {"t": "recv", "conn": "c1", "ts": t,
             "data": json.dumps({"stream": "btcusdt@trade", "data": {"e": "two\nlines"}})},
        ]  # fmt: skip
        lines = [json.dumps(e) + "\n" for e in [*events[:1], *forged, *events[1:]]]
        lines.insert(3, "z" * (3 << 20) + "\n")
        parsed = write_parsed(parsed_path(data, "binance", "BTCUSDT", "trade"), "trade", rows)
        raw = raw_path(parsed)
        raw.parent.mkdir(parents=True)
        body = "".join(lines).encode()
        raw.write_bytes(gzip.compress(body) + gzip.compress(b"\xff\xfe not utf-8\n"))

        report, rec = inspect_file(parsed, qa_settings(data).thresholds)

        assert rec is not None
        frames = next(f for f in report["findings"] if f["check"] == "raw_frames")["details"]
        gaps = next(f for f in report["findings"] if f["check"] == "collector_gaps")["details"]
        assert frames["new_kinds"] == {
            "unknown_type:" + "n" * 40 + "~": 1,
            "unknown_type:two?lines": 1,
        }
        assert frames["bad_markers"] == 5  # two sizes, a kind, two ids; the resume
        assert gaps["raw_bad_lines"] == 4  # the 3 MB line, non-UTF-8, data not a string, ts
        assert set(gaps["gaps"]) == {"trade_id", "other", "sequence"}
        assert all(g["size"] is None or 0 <= g["size"] < 2**63 for g in rec["gaps"])
        assert {g["kind"] for g in rec["gaps"]} <= {"trade_id", "other", "sequence"}
        assert rec["trade_ids"]["written"] == 10
        for body_ in (orjson.dumps(report), orjson.dumps(rec)):
            assert len(body_) < 50_000
        assert "\\n" not in json.dumps(frames["new_kinds"])

    def test_a_line_longer_than_the_limit_is_skipped_not_held(self, tmp_path):
        path = tmp_path / "r.jsonl.gz"
        path.write_bytes(gzip.compress(b'{"a":1}\n' + b"x" * 5000 + b"\n" + b'{"b":2}\n'))

        got = list(reader.iter_lines(path, max_line=1000))

        assert got == [b'{"a":1}\n', reader.OVERSIZED, b'{"b":2}\n']

    def test_a_symlinked_completeness_tree_is_neither_written_nor_read(self, tmp_path):
        """`completeness/` planted as a link out of the data dir, holding a forged record of
        10:00: QA writes no record through it and judges 11:00 from the files themselves."""
        data, outside = tmp_path / "data", tmp_path / "outside"
        p10, p11 = two_hours(data)
        forged = outside / "2024-03-01" / layout.completeness_path(p10).name
        forged.parent.mkdir(parents=True)
        forged.write_text(json.dumps({"completeness_version": 1, "trade_ids": {"last": 1050}}))
        (data / "binance" / "BTCUSDT" / "trade" / "completeness").symlink_to(outside)

        run_once(qa_settings(data))
        _, rec = inspect_file(p11, qa_settings(data).thresholds)

        assert sorted(p.name for p in outside.rglob("*")) == ["2024-03-01", forged.name]
        assert layout.report_path(p11).is_file()
        assert rec is not None
        assert rec["trade_ids"]["expected"] == 100  # 1099 from the 10:00 file, not 1050
