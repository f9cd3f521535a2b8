"""L3 cross-check: a file's rebuilt book vs the exchange's own view, gaps explaining misses."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from collector.common.layout import FileInfo
from ops.replay import ReplayThread
from qa import l3check, runner
from qa.checks.findings import FAIL, OK, WARN
from qa.settings import Thresholds
from tests.collector.harness import collector, write_config
from tests.collector.test_process_l3 import GOOD_CS, bitfinex_capture

HEADER = "timestamp,symbol,sequence,action,order_id,side,price,size,trade_id,maker_order_id,taker_order_id,reason,local_time"  # noqa: E501


def row(
    seq: int, action: str, oid: str, side: str, price: str, size: str, local_us: int
) -> dict[str, str]:  # noqa: E501
    values = [
        "1",
        "BTC-USD",
        str(seq),
        action,
        oid,
        side,
        price,
        size,
        "",
        "",
        "",
        "",
        str(local_us),
    ]
    return dict(zip(HEADER.split(","), values, strict=True))


def level2(seq: int, ts: float, bids: list[list[str]], asks: list[list[str]]) -> dict[str, object]:
    body = {"sequence": seq, "bids": bids, "asks": asks}
    return {"t": "http", "conn": "rest", "ts": ts, "status": 200, "data": json.dumps(body),
            "url": "https://api.exchange.coinbase.com/products/BTC-USD/book?level=2"}  # fmt: skip


ROWS = [
    row(10, "snapshot", "a", "B", "100", "1", 1_000_000),
    row(10, "snapshot", "b", "A", "101", "2", 1_000_000),
    row(11, "add", "c", "B", "100", "0.5", 1_100_000),
    row(12, "match", "b", "A", "101", "0.5", 1_200_000),
    row(13, "delete", "a", "B", "100", "", 1_300_000),
]


class TestCrosscheck:
    def test_coinbase_level2_moments_align_on_sequence(self):
        """A REST level=2 body is compared with the book at its own sequence, not its time."""
        raw = [
            level2(11, 5.0, [["100", "1.5", 2]], [["101", "2", 1]]),
            level2(12, 5.1, [["100", "1.5", 2]], [["101", "1.5", 1]]),
            level2(13, 5.2, [["100", "0.5", 1]], [["101", "1.5", 1]]),
        ]

        result = l3check.crosscheck("coinbase", ROWS, raw)

        assert (result.moments, result.agree, result.explained, result.unexplained) == (3, 3, 0, 0)

    def test_unexplained_disagreement(self):
        raw = [level2(12, 5.0, [["100", "9", 2]], [["101", "1.5", 1]])]

        result = l3check.crosscheck("coinbase", ROWS, raw)

        assert (result.agree, result.unexplained) == (0, 1)
        assert result.examples == [{"ts": 5.0, "cut": ["sequence", 12]}]

    def test_disagreement_after_a_gap_marker_is_explained(self):
        raw = [
            {"t": "gap", "conn": "c", "ts": 1.15, "kind": "sequence", "expected": 12, "got": 14},
            level2(12, 5.0, [["100", "9", 2]], [["101", "1.5", 1]]),
        ]

        result = l3check.crosscheck("coinbase", ROWS, raw)

        assert (result.explained, result.unexplained) == (1, 0)

    def test_moment_before_any_snapshot_is_explained(self):
        raw = [level2(5, 0.5, [["100", "1", 1]], [])]

        assert l3check.crosscheck("coinbase", ROWS, raw).explained == 1


class TestCollectorFiles:
    def run(self, tmp_path: Path, checksum: int, until) -> tuple[Path, Path]:
        cap = bitfinex_capture(tmp_path / "bf.jsonl.gz", checksum)
        with ReplayThread([cap]) as r:
            cfg = write_config(tmp_path / "c.toml", "bitfinex", r)
            with collector(tmp_path, "bitfinex", "BTCUSD", "l3", cfg) as c:
                c.wait_for(until)
                assert c.stop() == 0
        [parsed] = c.files("parsed")
        [raw] = c.files("raw")
        return parsed, raw

    def test_bitfinex_checksums_agree_and_runner_reports_it(self, tmp_path):
        """Real collector output: every recorded checksum matches the rebuilt book."""
        parsed, raw = self.run(
            tmp_path, GOOD_CS, lambda s: s.get("rows", 0) >= 5 and s.get("frames", 0) >= 8
        )

        [finding] = l3check.check_l3_files(
            parsed, raw, FileInfo("bitfinex", "BTCUSD", "l3", 0, parsed.name)
        )
        report = runner.check_file(parsed, Thresholds())

        assert (finding.severity, finding.details["moments"], finding.details["agree"]) == (
            OK,
            1,
            1,
        )
        [cross] = [f for f in report["findings"] if f["check"] == "l3_crosscheck"]
        assert cross["severity"] == OK
        # the capture's exchange times are fixed (2023) while the file is from today: only
        # that plausibility check may fail
        fails = {f["check"] for f in report["findings"] if f["severity"] == FAIL}
        assert fails <= {"ill_formed"}

    def test_checksum_mismatches_are_explained_by_recorded_gaps(self, tmp_path):
        parsed, raw = self.run(
            tmp_path, GOOD_CS + 1, lambda s: s.get("resyncs", 0) >= 2 and s.get("rows", 0) >= 10
        )

        [finding] = l3check.check_l3_files(
            parsed, raw, FileInfo("bitfinex", "BTCUSD", "l3", 0, parsed.name)
        )

        assert finding.severity == WARN
        assert finding.details["unexplained"] == 0
        assert finding.details["explained"] == finding.details["moments"] >= 2
        assert gzip.decompress(parsed.read_bytes()).decode().startswith(HEADER)
