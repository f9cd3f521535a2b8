"""QA checks on hand-made files: good files pass, each defect gets its finding and severity."""

from __future__ import annotations

import gzip
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest

from collector.common.layout import parse_file_name
from collector.exchanges import ADAPTERS
from collector.model import Trade
from qa.runner import check_file
from qa.settings import Thresholds
from tests.qa.helpers import (
    HOUR_MS,
    START_MS,
    binance_trade_frame,
    book_rows,
    header,
    parsed_path,
    raw_path,
    trade_rows,
    write_members,
    write_parsed,
    write_raw,
)

TH = Thresholds()
N = 2000  # one bad row = 0.05 % of rows: above warn (0 %), below fail (0.1 %)
RECORDED = Path("/work/shared/data/recorded")


def finding(report: dict[str, Any], check: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [f for f in report["findings"] if f["check"] == check]
    assert len(found) == 1, (check, report["findings"])
    return found[0]


def severities(report: dict[str, Any]) -> dict[str, str]:
    return {f["check"]: f["severity"] for f in report["findings"]}


def trade_file(tmp_path: Path, rows: list[str], **kw: Any) -> Path:
    return write_parsed(parsed_path(tmp_path, "binance", "BTCUSDT", "trade", **kw), "trade", rows)


def test_file_name_gives_stream_and_hour() -> None:
    """The name's stamp is the start; the hour ends at the next full hour."""
    info = parse_file_name("20240301T103000Z_coinbase_BTC-USD_trade-2.csv.gz")

    assert (info.exchange, info.symbol, info.data_type) == ("coinbase", "BTC-USD", "trade")
    assert info.start_ms == START_MS + HOUR_MS // 2
    assert info.hour_end_ms == START_MS + HOUR_MS


def test_file_name_with_milliseconds() -> None:
    """The collector's stamps carry milliseconds, so names sort by start time."""
    info = parse_file_name("20240301T103000.250Z_binance_BTCUSDT_book.csv.gz")

    assert (info.exchange, info.symbol, info.data_type) == ("binance", "BTCUSDT", "book")
    assert info.start_ms == START_MS + HOUR_MS // 2 + 250


def test_good_trade_file_is_ok_with_pandas_statistics(tmp_path: Path) -> None:
    """A clean file passes every check; the statistics are exactly pandas.describe's."""
    path = trade_file(tmp_path, trade_rows(N))

    report = check_file(path, TH)

    assert report["status"] == "ok", report["summary"]
    assert report["rows"] == N
    assert set(severities(report).values()) == {"ok"}
    assert finding(report, "ids")["details"]["missing"] == 0
    expected = pd.read_csv(path).describe()
    for col, st in report["stats"].items():
        for name, value in st.items():
            assert value == pytest.approx(float(expected[col][name]), rel=1e-9), (col, name)
    assert set(report["stats"]) == set(expected.columns)


def test_good_book_file_is_ok(tmp_path: Path) -> None:
    """Top-5 books with ordered levels and no crossing pass."""
    path = write_parsed(parsed_path(tmp_path, "binance", "BTCUSDT", "book"), "book", book_rows(400))

    report = check_file(path, replace(TH, max_silence_s={"book": 60.0}))

    assert report["status"] == "ok", report["summary"]
    assert finding(report, "book")["details"]["changes"] == 400


def _set(rows: list[str], i: int, col: int, value: str) -> list[str]:
    fields = rows[i].rstrip("\n").split(",")
    fields[col] = value
    rows[i] = ",".join(fields) + "\n"
    return rows


TRADE_DEFECTS = [
    # (id, mutate, check, severity, expected key in details or message)
    ("missing", lambda r: _set(r, 5, 3, ""), "missing_values", "warn", "price 1"),
    ("empty_row", lambda r: r[:5] + ["\n"] + r[5:], "empty_rows", "warn", "1 empty rows"),
    ("comma_row", lambda r: r[:5] + [",,,,,,,\n"] + r[5:], "empty_rows", "warn", "1 empty rows"),
    (
        "non_numeric",
        lambda r: _set(r, 5, 3, "abc"),
        "ill_formed",
        "warn",
        "price: not a valid value (1)",
    ),
    ("negative", lambda r: _set(r, 5, 4, "-0.5"), "ill_formed", "warn", "quantity: not > 0 (1)"),
    (
        "seconds",
        lambda r: _set(r, 5, 5, "1709287200"),
        "ill_formed",
        "warn",
        "trade_time: not plausible epoch ms (1)",
    ),
    (
        "bool",
        lambda r: _set(r, 5, 6, "true"),
        "ill_formed",
        "warn",
        "is_buyer_maker: not one of True/False (1)",
    ),
    ("symbol", lambda r: _set(r, 5, 1, "ETHUSDT"), "ill_formed", "warn", "symbol: not BTCUSDT (1)"),
    (
        "ragged",
        lambda r: r[:5] + [r[5].rstrip("\n") + ",9\n"] + r[6:],
        "ill_formed",
        "warn",
        "wrong number of fields (1)",
    ),
    ("id_gap", lambda r: r[:100] + r[103:], "ids", "warn", "3 missing in 1 gaps"),
    ("duplicate", lambda r: r[:100] + [r[100]] + r[100:], "ids", "warn", "1 duplicate"),
    (
        "backwards",
        lambda r: r[:100] + [r[101], r[100]] + r[102:],
        "time_order",
        "warn",
        "trade_time 1",
    ),
    (
        "outside_hour",
        lambda r: _set(r, 5, 7, str((START_MS + 2 * HOUR_MS) * 1000)),
        "hour",
        "warn",
        "1 rows outside the hour",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "check", "severity", "text"),
    [d[1:] for d in TRADE_DEFECTS],
    ids=[d[0] for d in TRADE_DEFECTS],
)
def test_trade_defect_is_found(
    tmp_path: Path, mutate: Any, check: str, severity: str, text: str
) -> None:
    """One defective row in 2000 gives a warning from the check that looks for it."""
    path = trade_file(tmp_path, mutate(trade_rows(N)))

    report = check_file(path, TH)

    f = finding(report, check)
    assert f["severity"] == severity, f
    assert text in f["message"], f
    assert report["status"] == severity
    assert text in report["summary"]


def test_small_step_back_in_exchange_time_is_jitter_not_disorder(tmp_path: Path) -> None:
    """A step back within backwards_tolerance_ms (a snapshot stamped with its receive time,
    then an update stamped by the exchange) is reported but does not make the file warn."""
    rows = trade_rows(N)
    before = int(rows[99].split(",")[5])
    _set(rows, 100, 0, str(before - 5))
    _set(rows, 100, 5, str(before - 5))

    report = check_file(trade_file(tmp_path, rows), TH)

    f = finding(report, "time_order")
    assert f["severity"] == "ok", f
    assert f["details"] == {"backwards": {}, "jitter": {"event_time": 1, "trade_time": 1}}
    assert "(within 1000 ms: event_time 1, trade_time 1)" in f["message"]


def test_ill_formed_value_is_located_by_line(tmp_path: Path) -> None:
    """The report names the line of an ill-formed value (header = line 1)."""
    path = trade_file(tmp_path, _set(trade_rows(N), 41, 3, "1.2.3"))

    report = check_file(path, TH)

    assert finding(report, "ill_formed")["details"]["lines"] == {"price: not a valid value": [43]}


def test_many_bad_rows_fail(tmp_path: Path) -> None:
    """Defects above bad_rows_fail_pct turn the file into a failure."""
    rows = trade_rows(N)
    for i in range(0, N, 100):
        _set(rows, i, 4, "-1")

    report = check_file(trade_file(tmp_path, rows), TH)

    assert finding(report, "ill_formed")["severity"] == "fail"
    assert report["status"] == "fail"


def test_large_id_gap_fails(tmp_path: Path) -> None:
    """More than missing_ids_fail_pct of the id range missing fails."""
    rows = trade_rows(N)

    report = check_file(trade_file(tmp_path, rows[:500] + rows[600:]), TH)

    ids = finding(report, "ids")
    assert ids["severity"] == "fail"
    assert ids["details"]["first_gaps"] == [[1500, 1599]]


@pytest.mark.parametrize(
    ("content", "check", "text"),
    [
        (b"", "gzip", "empty file"),
        (b"event_time,symbol\n1,2\n", "gzip", "not a readable gzip file"),
        ("truncated", "gzip", "truncated or corrupt gzip"),
        ("header_only", "row_count", "no data rows"),
        ("wrong_header", "header", "wrong header"),
    ],
)
def test_broken_file_fails(tmp_path: Path, content: Any, check: str, text: str) -> None:
    """Unreadable, truncated, header-only and wrong-header files fail with the reason."""
    path = parsed_path(tmp_path, "binance", "BTCUSDT", "trade")
    if content == "truncated":
        write_parsed(path, "trade", trade_rows(N))
        data = path.read_bytes()
        path.write_bytes(data[: len(data) - 100])
    elif content == "header_only":
        write_parsed(path, "trade", [])
    elif content == "wrong_header":
        write_members(path, ["time,symbol,id,price,qty,trade_time,maker,local\n"] + trade_rows(5))
    else:
        path.parent.mkdir(parents=True)
        path.write_bytes(content)

    report = check_file(path, TH)

    f = finding(report, check)
    assert f["severity"] == "fail"
    assert text in f["message"]
    assert report["status"] == "fail"


def _book(tmp_path: Path, rows: list[str]) -> dict[str, Any]:
    path = write_parsed(parsed_path(tmp_path, "binance", "BTCUSDT", "book"), "book", rows)
    return check_file(path, replace(TH, max_silence_s={"book": 60.0}))


def test_crossed_book_is_found(tmp_path: Path) -> None:
    """A change whose best bid is at or above its best ask is crossed."""
    rows = book_rows(400)
    _set(rows, 10 * 7, 3, "70000.00")  # change 7, bid level 1

    book = finding(_book(tmp_path, rows), "book")

    assert book["severity"] == "warn"
    assert book["details"]["crossed"] == 1
    assert book["details"]["crossed_examples"] == [{"bid": 70000.0, "ask": 60008.0}]


def test_book_levels_out_of_order_are_found(tmp_path: Path) -> None:
    """Bid prices must fall and levels count 1..N within a change."""
    rows = book_rows(400)
    rows[10 * 3 + 1], rows[10 * 3 + 2] = rows[10 * 3 + 2], rows[10 * 3 + 1]  # bids 2 and 3

    book = finding(_book(tmp_path, rows), "book")

    assert book["severity"] == "warn"
    assert book["details"]["changes_out_of_order"] == 1
    assert book["details"]["crossed"] == 0


@pytest.mark.parametrize(
    ("col", "value", "text"),
    [(2, "X", "side: not one of B/A (1)"), (5, "9", "level: not in 1..5 (1)")],
)
def test_book_ill_formed_side_and_level(tmp_path: Path, col: int, value: str, text: str) -> None:
    """A side other than B/A and a level beyond the configured depth are ill-formed."""
    rows = book_rows(400)
    _set(rows, 10 * 5 + 9, col, value)

    f = finding(_book(tmp_path, rows), "ill_formed")

    assert text in f["message"]


def test_row_count_override_and_partial_hour(tmp_path: Path) -> None:
    """A per-stream override sets the range; a file starting at :30 needs half the minimum."""
    th = replace(TH, overrides={"binance:BTCUSDT:trade": {"row_count": (100, 1000)}})
    half = START_MS + HOUR_MS // 2
    low = check_file(trade_file(tmp_path / "a", trade_rows(40)), th)
    ok = check_file(trade_file(tmp_path / "b", trade_rows(60, start_ms=half), start_ms=half), th)

    assert finding(low, "row_count")["severity"] == "warn"
    assert finding(low, "row_count")["message"] == "40 rows outside [100, 1000]"
    assert finding(ok, "row_count")["severity"] == "ok"
    assert finding(ok, "row_count")["details"]["min"] == 50


def test_long_silence_warns(tmp_path: Path) -> None:
    """Rows covering only the first half of the hour leave a silence longer than allowed."""
    rows = trade_rows(N)[: N // 2]

    hour = finding(check_file(trade_file(tmp_path, rows), TH), "hour")

    assert hour["severity"] == "warn"
    assert "silent for" in hour["message"]
    assert hour["details"]["end_gap_s"] == pytest.approx(1800.0, abs=5)


def _raw_for(parsed: Path, rows: list[str], markers: list[dict[str, Any]]) -> Path:
    events: list[dict[str, Any]] = [
        {"t": "connect", "conn": "c1", "ts": START_MS / 1000, "addr": "wss://x/stream"}
    ]
    for line in rows:
        f = line.split(",")
        data = binance_trade_frame("BTCUSDT", int(f[2]), int(f[5]), f[3], f[4], f[6] == "True")
        events.append({"t": "recv", "conn": "c1", "ts": int(f[7]) / 1e6, "data": data})
    events[50:50] = markers
    return write_raw(raw_path(parsed), events)


def test_raw_markers_and_trade_count_agree(tmp_path: Path) -> None:
    """The raw file of the same hour: its trades match the parsed rows; no markers → ok."""
    rows = trade_rows(300)
    path = trade_file(tmp_path, rows)
    _raw_for(path, rows, [])

    report = check_file(path, TH)

    assert report["status"] == "ok", report["summary"]
    assert report["raw_file"] == raw_path(path).name
    assert finding(report, "raw_vs_parsed")["details"]["raw_records"] == 300


def test_parsed_row_missing_from_raw_count_fails(tmp_path: Path) -> None:
    """A trade in the raw file that is not in the parsed file fails the comparison."""
    rows = trade_rows(300)
    path = trade_file(tmp_path, rows[:-1])
    _raw_for(path, rows, [])

    f = finding(check_file(path, TH), "raw_vs_parsed")

    assert f["severity"] == "fail"
    assert f["message"] == "raw has 300 records, parsed 299 rows"


def test_collector_markers_are_summarized(tmp_path: Path) -> None:
    """Gap, disconnect and resync markers give the file's completeness."""
    rows = trade_rows(300)
    path = trade_file(tmp_path, rows)
    t = START_MS / 1000 + 600
    _raw_for(
        path,
        rows,
        [
            {
                "t": "gap",
                "conn": "c1",
                "ts": t,
                "kind": "trade_id",
                "expected": 5,
                "got": 8,
                "size": 3,
            },
            {"t": "disconnect", "conn": "c1", "ts": t + 1, "reason": "timeout"},
            {"t": "connect", "conn": "c2", "ts": t + 37, "addr": "wss://x/stream"},
            {"t": "resync", "conn": "c2", "ts": t + 38, "reason": "gap"},
        ],
    )

    f = finding(check_file(path, TH), "collector_gaps")

    assert f["severity"] == "warn"
    assert f["details"]["gaps"] == {"trade_id": {"count": 1, "size": 3}}
    assert f["details"]["downtime_s"] == pytest.approx(36.0)
    assert f["details"]["time_complete_pct"] == pytest.approx(99.0)
    assert (f["details"]["disconnects"], f["details"]["resyncs"]) == (1, 1)
    long = check_file(path, replace(TH, downtime_fail_s=30.0))
    assert finding(long, "collector_gaps")["severity"] == "fail"


def test_recorded_coinbase_capture_passes(tmp_path: Path) -> None:
    """Raw = the recorded Coinbase capture; parsed = its SKL-USD trades via the adapter."""
    capture = (RECORDED / "coinbase-exchange-2021-04-17.jsonl.gz").read_bytes()
    lines = gzip.decompress(capture).splitlines()
    events = [orjson.loads(x) for x in lines]
    start_s = int(events[0]["ts"])
    rows = []
    for e in events:
        if e["t"] != "recv":
            continue
        for r in ADAPTERS["coinbase"].parse(e["data"], int(e["ts"] * 1e6)):
            if isinstance(r, Trade) and r.symbol == "SKL-USD":
                rows.append(
                    f"{r.event_time_ms},{r.symbol},{r.trade_id},{r.price},{r.quantity},"
                    f"{r.trade_time_ms},{r.is_buyer_maker},{int(e['ts'] * 1e6)}\n"
                )
    path = parsed_path(tmp_path, "coinbase", "SKL-USD", "trade", start_ms=start_s * 1000)
    write_members(path, [header("trade"), *rows])
    write_members(raw_path(path), [x.decode() + "\n" for x in lines])
    th = replace(TH, max_silence_s={"trade": 3600.0})

    report = check_file(path, th)

    assert finding(report, "raw_vs_parsed")["details"]["raw_records"] == len(rows) == 53
    non_ok = {k: v for k, v in severities(report).items() if v != "ok"}
    assert non_ok == {}, report["summary"]
