"""Sync against the replay server serving the recorded listings, into a real SQLite file.

Assertions read the database with plain sqlite3, not the return values of our code.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from pathlib import Path

import orjson
import pytest

from collector.config import load_config
from ops.replay import ReplayThread
from secmaster.cli import run
from secmaster.poller import sync
from secmaster.settings import build_secmaster_settings
from tests.secmaster.conftest import (
    BINANCE_PATH,
    RecordedBodies,
    dump_db,
    log_events,
    modified_binance,
    query,
    run_secmaster,
    write_config,
)

pytestmark = pytest.mark.timeout(60)


def _run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = run(list(argv), out)
    return code, out.getvalue()


def _ts(value: str) -> dt.datetime:
    """A datetime as SQLAlchemy stores it in SQLite (naive UTC text)."""
    return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)


class TestFirstSync:
    def test_inserts_every_instrument(self, tmp_path: Path, replay: ReplayThread) -> None:
        """The first sync writes one current version per listed instrument."""
        cfg = write_config(tmp_path, replay)

        code, out = _run("--config", str(cfg), "sync", "--user", "alice")

        assert code == 0
        lines = out.splitlines()
        assert len(lines) == 2
        assert re.fullmatch(
            r"binance: 1695 new, 0 changed, 0 delisted, 0 unchanged "
            r"\(1695 rows written, \d+\.\d\d s\)",
            lines[0],
        )
        assert lines[1].startswith(
            "coinbase: 162 new, 0 changed, 0 delisted, 0 unchanged (162 rows written, "
        )
        assert query(
            tmp_path,
            "SELECT exchange, count(*), sum(is_current), count(valid_to), "
            "count(DISTINCT trading_pair) FROM instrument GROUP BY exchange",
        ) == [
            ("binance", 1695, 1695, 0, 1695),
            ("coinbase", 162, 162, 0, 162),
        ]
        (row,) = query(
            tmp_path,
            "SELECT exchange, trading_pair, is_current, last_modified_user, base, "
            "quote, status, trading_enabled, tick_size, lot_size, min_notional, is_delisted, "
            "valid_to, datetime = valid_from AND valid_from = last_modified_datetime "
            "FROM instrument WHERE trading_pair = 'BTCUSDT'",
        )
        assert row == (
            "binance",
            "BTCUSDT",
            1,
            "alice",
            "BTC",
            "USDT",
            "TRADING",
            1,
            "0.01000000",
            "0.00001000",
            "10.00000000",
            0,
            None,
            1,
        )

    def test_identical_resync_writes_nothing(self, tmp_path: Path, replay: ReplayThread) -> None:
        """A second sync of the same listings leaves every row of every table as it was."""
        cfg = write_config(tmp_path, replay)
        assert _run("--config", str(cfg), "sync")[0] == 0
        before = dump_db(tmp_path)

        code, out = _run("--config", str(cfg), "sync", "--user", "bob")

        assert code == 0
        assert dump_db(tmp_path) == before
        assert "binance: 0 new, 0 changed, 0 delisted, 1695 unchanged (0 rows written" in out
        assert "coinbase: 0 new, 0 changed, 0 delisted, 162 unchanged (0 rows written" in out


class TestChanges:
    @pytest.fixture
    def synced_twice(
        self, tmp_path: Path, replay: ReplayThread, recorded_bodies: RecordedBodies
    ) -> tuple[Path, str]:
        cfg = write_config(tmp_path, replay)
        assert _run("--config", str(cfg), "sync", "--exchange", "binance")[0] == 0
        replay.set_http(BINANCE_PATH, modified_binance(recorded_bodies.binance))
        code, out = _run("--config", str(cfg), "sync", "--exchange", "binance", "--user", "bob")
        assert code == 0
        return cfg, out

    def test_one_new_one_changed_one_delisted(
        self, tmp_path: Path, synced_twice: tuple[Path, str]
    ) -> None:
        """Removed, added and re-ticked pairs give exactly three new facts, right intervals."""
        _, out = synced_twice

        assert "binance: 1 new, 1 changed, 1 delisted, 1693 unchanged (4 rows written" in out
        assert query(tmp_path, "SELECT count(*), sum(is_current) FROM instrument") == [(1697, 1695)]
        (t1,), (t2,) = query(
            tmp_path, "SELECT DISTINCT valid_from FROM instrument ORDER BY valid_from"
        )
        assert _ts(t1) < _ts(t2)
        rows = query(
            tmp_path,
            "SELECT trading_pair, tick_size, valid_from, valid_to, is_current, "
            "is_delisted, last_modified_user FROM instrument WHERE trading_pair IN "
            "('BTCUSDT', 'ETHBTC', 'NEWUSDT') ORDER BY trading_pair, valid_from",
        )
        user = rows[0][6]
        assert rows == [
            ("BTCUSDT", "0.01000000", t1, t2, 0, 0, "bob"),
            ("BTCUSDT", "0.10000000", t2, None, 1, 0, "bob"),
            ("ETHBTC", "0.00000100", t1, t2, 0, 1, "bob"),
            ("NEWUSDT", "0.01000000", t2, None, 1, 0, "bob"),
        ]
        assert user == "bob"
        assert query(
            tmp_path,
            "SELECT count(*) FROM instrument WHERE valid_from = ? AND valid_to IS NULL",
            t1,
        ) == [(1693,)]

    def test_as_of_before_and_after(self, tmp_path: Path, synced_twice: tuple[Path, str]) -> None:
        """--as-of answers with the versions valid at that instant."""
        cfg, _ = synced_twice
        (t1,), (t2,) = query(
            tmp_path, "SELECT DISTINCT valid_from FROM instrument ORDER BY valid_from"
        )
        between = _ts(t1) + (_ts(t2) - _ts(t1)) / 2

        def as_of(when: dt.datetime) -> dict[str, str]:
            code, out = _run(
                "--config",
                str(cfg),
                "list",
                "--exchange",
                "binance",
                "--as-of",
                when.isoformat().replace("+00:00", "Z"),
                "--format",
                "json",
            )
            assert code == 0
            return {r["trading_pair"]: r["tick_size"] for r in orjson.loads(out)}

        before_all = as_of(_ts(t1) - dt.timedelta(seconds=1))
        mid = as_of(between)
        after = as_of(_ts(t2))

        assert before_all == {}
        assert len(mid) == 1695
        assert (mid["BTCUSDT"], mid["ETHBTC"], "NEWUSDT" in mid) == (
            "0.01000000",
            "0.00000100",
            False,
        )
        assert len(after) == 1695
        assert (after["BTCUSDT"], after["NEWUSDT"], "ETHBTC" in after) == (
            "0.10000000",
            "0.01000000",
            False,
        )

    def test_history_lists_every_version(
        self, tmp_path: Path, synced_twice: tuple[Path, str]
    ) -> None:
        """history prints both versions of BTCUSDT with their validity intervals."""
        cfg, _ = synced_twice
        (t1,), (t2,) = query(
            tmp_path, "SELECT DISTINCT valid_from FROM instrument ORDER BY valid_from"
        )
        iso1 = _ts(t1).isoformat().replace("+00:00", "Z")
        iso2 = _ts(t2).isoformat().replace("+00:00", "Z")

        code, out = _run("--config", str(cfg), "history", "binance", "BTCUSDT", "--format", "csv")

        assert code == 0
        lines = out.splitlines()
        assert lines[0] == (
            "exchange,trading_pair,valid_from,valid_to,is_current,is_delisted,"
            "status,trading_enabled,base,quote,tick_size,lot_size,min_notional,"
            "last_modified_datetime,last_modified_user"
        )
        assert lines[1].startswith(
            f"binance,BTCUSDT,{iso1},{iso2},False,False,TRADING,True,BTC,USDT,0.01000000,"
        )
        assert lines[2].startswith(
            f"binance,BTCUSDT,{iso2},,True,False,TRADING,True,BTC,USDT,0.10000000,"
        )
        assert len(lines) == 3


class TestFailedPolls:
    @pytest.mark.parametrize(
        ("body", "error"),
        [
            (b'{"timezone":"UTC","symbols":[{"symbol":"ETHBTC","status":"TRAD', "not JSON"),
            (b'{"timezone":"UTC","symbols":[]}', "0 instruments, expected at least 100"),
            (b"<html>maintenance</html>", "not JSON"),
        ],
        ids=["truncated-json", "empty-symbol-list", "html"],
    )
    def test_bad_body_changes_nothing(
        self, tmp_path: Path, replay: ReplayThread, body: bytes, error: str
    ) -> None:
        """A truncated, empty or non-JSON body fails the poll and leaves the database as is."""
        cfg = write_config(tmp_path, replay)
        assert _run("--config", str(cfg), "sync")[0] == 0
        before = dump_db(tmp_path)
        replay.set_http(BINANCE_PATH, body)

        code, out = _run("--config", str(cfg), "sync")

        assert code == 1
        assert dump_db(tmp_path) == before
        assert out.splitlines()[0].startswith("binance: FAILED, nothing changed: ")
        assert error in out.splitlines()[0]
        assert out.splitlines()[1].startswith("coinbase: 0 new, 0 changed, 0 delisted, 162 ")

    def test_guard_threshold_is_a_setting(self, tmp_path: Path, replay: ReplayThread) -> None:
        """With min_listings above what the exchange lists, the poll counts as partial."""
        cfg = write_config(tmp_path, replay, min_listings=(2000, 50))

        code, out = _run("--config", str(cfg), "sync", "--exchange", "binance")

        assert code == 1
        assert "partial listing: 1695 instruments, expected at least 2000" in out
        assert query(tmp_path, "SELECT count(*) FROM instrument") == [(0,)]

    def test_http_500_after_retries_changes_nothing(
        self, tmp_path: Path, replay: ReplayThread
    ) -> None:
        """500 on every attempt: retries run out, nothing is written."""
        cfg = write_config(tmp_path, replay)
        assert _run("--config", str(cfg), "sync")[0] == 0
        before = dump_db(tmp_path)
        settings = build_secmaster_settings(load_config(cfg))
        replay.faults.http_error_status = 500
        replay.faults.http_errors = 100
        slept: list[float] = []

        (result,) = sync(settings, ["binance"], "carol", sleep=slept.append)

        assert not result.ok
        assert result.error.endswith(
            "HTTP 500 from " + replay.http_url + "/binance/api/v3/exchangeInfo after 3 attempts"
        )
        assert slept == [1.0, 1.0]  # the server's Retry-After, once per retry
        assert dump_db(tmp_path) == before

    def test_429_then_success_honours_retry_after(
        self, tmp_path: Path, replay: ReplayThread
    ) -> None:
        """One 429 with Retry-After 7: the poller waits 7 s (injected sleep), then applies."""
        cfg = write_config(tmp_path, replay)
        settings = build_secmaster_settings(load_config(cfg))
        replay.faults.http_error_status = 429
        replay.faults.http_retry_after_s = 7
        replay.faults.http_errors = 1
        slept: list[float] = []

        (result,) = sync(settings, ["binance"], "carol", sleep=slept.append)

        assert result.ok
        assert slept == [7.0]
        assert query(tmp_path, "SELECT count(*), sum(is_current) FROM instrument") == [(1695, 1695)]

    def test_failed_first_poll_creates_no_rows(self, tmp_path: Path, replay: ReplayThread) -> None:
        """A failed poll into a fresh database leaves every table empty."""
        cfg = write_config(tmp_path, replay)
        replay.set_http(BINANCE_PATH, b'{"symbols":[]}')

        code, _ = _run("--config", str(cfg), "sync", "--exchange", "binance")

        assert code == 1
        assert dump_db(tmp_path) == {"instrument": [], "secmaster_meta": [], "tracked": []}


def _truncated_binance(body: str, keep: int) -> bytes:
    """The recorded exchangeInfo cut to its first ``keep`` symbols (BTCUSDT among the lost)."""
    doc = orjson.loads(body)
    symbols = [s for s in doc["symbols"] if s["symbol"] != "BTCUSDT"][:keep]
    return orjson.dumps({**doc, "symbols": symbols})


class TestPartialDelisting:
    def test_truncated_listing_changes_nothing(
        self, tmp_path: Path, replay: ReplayThread, recorded_bodies: RecordedBodies
    ) -> None:
        """A poll that would delist 17.4 % (> 10 %) writes nothing; the tracked pair stays."""
        cfg = write_config(tmp_path, replay)
        assert _run("--config", str(cfg), "sync")[0] == 0
        assert _run("--config", str(cfg), "tracked")[0] == 0
        before = dump_db(tmp_path)
        replay.set_http(BINANCE_PATH, _truncated_binance(recorded_bodies.binance, 1400))

        code, out = _run("--config", str(cfg), "sync")

        assert code == 1
        assert out.splitlines()[0] == (
            "binance: FAILED, nothing changed: partial listing: it would delist 295 of 1695 "
            "current instruments (17.4 %), more than max_delist_pct = 10 %"
        )
        assert out.splitlines()[1].startswith("coinbase: 0 new, 0 changed, 0 delisted, 162 ")
        assert dump_db(tmp_path) == before
        assert query(
            tmp_path,
            "SELECT is_current, is_delisted FROM instrument WHERE trading_pair = 'BTCUSDT'",
        ) == [(1, 0)]

    def test_partial_poll_alert_explains_why(
        self, tmp_path: Path, replay: ReplayThread, recorded_bodies: RecordedBodies
    ) -> None:
        """The alert names the counts, the share and the threshold."""
        cfg = write_config(tmp_path, replay)
        assert _run("--config", str(cfg), "sync", "--exchange", "binance")[0] == 0
        replay.set_http(BINANCE_PATH, _truncated_binance(recorded_bodies.binance, 1400))

        proc = run_secmaster(cfg, "sync", "--exchange", "binance")

        assert proc.returncode == 1
        (alert,) = [e for e in log_events(proc.stderr) if e["event"] == "alert"]
        assert (alert["severity"], alert["key"], alert["title"]) == (
            "error",
            "secmaster:binance:poll-partial",
            "binance listings poll looks partial; nothing changed",
        )
        assert alert["error"] == (
            "partial listing: it would delist 295 of 1695 current instruments (17.4 %), more "
            "than max_delist_pct = 10 %"
        )

    def test_share_is_a_setting(
        self, tmp_path: Path, replay: ReplayThread, recorded_bodies: RecordedBodies
    ) -> None:
        """With max_delist_pct = 20 the same poll passes both guards and delists 295 pairs."""
        cfg = write_config(tmp_path, replay, max_delist_pct=20.0)
        assert _run("--config", str(cfg), "sync", "--exchange", "binance")[0] == 0
        replay.set_http(BINANCE_PATH, _truncated_binance(recorded_bodies.binance, 1400))

        code, out = _run("--config", str(cfg), "sync", "--exchange", "binance")

        assert code == 0
        assert out.startswith("binance: 0 new, 0 changed, 295 delisted, 1400 unchanged ")
        assert query(
            tmp_path, "SELECT count(*) FROM instrument WHERE is_delisted = 1 AND NOT is_current"
        ) == [(295,)]

    def test_exactly_at_the_threshold_passes(
        self, tmp_path: Path, replay: ReplayThread, recorded_bodies: RecordedBodies
    ) -> None:
        """Only more than max_delist_pct is partial: 1 of 2 current coinbase pairs at 50 %."""
        cfg = write_config(tmp_path, replay, min_listings=(100, 1), max_delist_pct=50.0)
        two = [
            p for p in orjson.loads(recorded_bodies.coinbase) if p["id"] in ("BTC-USD", "ETH-USD")
        ]
        replay.set_http("/products", orjson.dumps(two))
        assert _run("--config", str(cfg), "sync", "--exchange", "coinbase")[0] == 0
        replay.set_http("/products", orjson.dumps(two[:1]))

        code, out = _run("--config", str(cfg), "sync", "--exchange", "coinbase")

        assert code == 0
        assert out.startswith("coinbase: 0 new, 0 changed, 1 delisted, 1 unchanged ")

    @pytest.mark.parametrize("value", [101.0, -1.0, "10", True])
    def test_bad_max_delist_pct_exit_2(
        self,
        tmp_path: Path,
        replay: ReplayThread,
        capsys: pytest.CaptureFixture[str],
        value: object,
    ) -> None:
        """max_delist_pct outside 0-100 (or not a number) is bad config: one line, exit 2."""
        cfg = write_config(tmp_path, replay, max_delist_pct=value)

        code, out = _run("--config", str(cfg), "sync")

        assert (code, out) == (2, "")
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert f"[secmaster]: max_delist_pct = {value!r} must be" in err
        assert dump_db(tmp_path) == {}
