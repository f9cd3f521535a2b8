"""CLI behaviour: list filters and formats, the tracked universe, bad input, the apply hook."""

from __future__ import annotations

import csv
import io
import shlex
import sys
from pathlib import Path

import pytest

from collector.config import load_config
from collector.exchanges import binance
from ops.replay import ReplayThread
from secmaster.cli import run
from secmaster.universe import tracked_streams
from tests.secmaster.conftest import (
    BINANCE_PATH,
    RecordedBodies,
    dump_db,
    modified_binance,
    query,
    write_config,
)
from tests.secmaster.listingkit import parse_listings

pytestmark = pytest.mark.timeout(60)

DEFAULT_STREAMS = [
    ("binance", "BTCUSDT", "book"),
    ("binance", "BTCUSDT", "trade"),
    ("coinbase", "BTC-USD", "book"),
    ("coinbase", "BTC-USD", "trade"),
]


def _run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = run(list(argv), out)
    return code, out.getvalue()


@pytest.fixture
def synced(tmp_path: Path, replay: ReplayThread) -> Path:
    """A config whose database holds the recorded listings of both exchanges."""
    cfg = write_config(tmp_path, replay)
    assert _run("--config", str(cfg), "sync")[0] == 0
    return cfg


class TestList:
    def test_filters_and_csv(self, synced: Path, recorded_bodies: RecordedBodies) -> None:
        """--exchange/--quote/--status select exactly the matching current instruments."""
        expected = sorted(
            x.trading_pair
            for x in parse_listings(binance, recorded_bodies.binance)
            if x.quote == "USDT" and x.status == "TRADING"
        )

        code, out = _run(
            "--config",
            str(synced),
            "list",
            "--exchange",
            "binance",
            "--quote",
            "USDT",
            "--status",
            "TRADING",
            "--format",
            "csv",
        )

        assert code == 0
        rows = list(csv.DictReader(io.StringIO(out)))
        assert [r["trading_pair"] for r in rows] == expected
        assert len(expected) > 100
        btc = next(r for r in rows if r["trading_pair"] == "BTCUSDT")
        assert (btc["tick_size"], btc["lot_size"], btc["min_notional"], btc["valid_to"]) == (
            "0.01000000",
            "0.00001000",
            "10.00000000",
            "",
        )

    def test_table_format(self, synced: Path) -> None:
        """The default table has a header line and one line per instrument."""
        code, out = _run(
            "--config", str(synced), "list", "--exchange", "coinbase", "--quote", "USD"
        )

        assert code == 0
        lines = out.splitlines()
        assert lines[0].split() == [
            "exchange",
            "trading_pair",
            "base",
            "quote",
            "status",
            "trading_enabled",
            "tick_size",
            "lot_size",
            "min_notional",
            "valid_from",
            "valid_to",
        ]
        btc = next(line for line in lines if " BTC-USD " in line).split()
        assert btc[:9] == [
            "coinbase",
            "BTC-USD",
            "BTC",
            "USD",
            "online",
            "True",
            "0.01",
            "0.00000001",
            "5",
        ]


class TestBadInput:
    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            (["sync", "--exchange", "kraken"], "unknown exchange 'kraken'"),
            (["list", "--exchange", "kraken"], "unknown exchange 'kraken'"),
            (["list", "--as-of", "2026-13-01"], "malformed date '2026-13-01'"),
            (["list", "--as-of", "yesterday"], "malformed date 'yesterday'"),
            (["history", "kraken", "XBTUSD"], "unknown exchange 'kraken'"),
            (
                ["track", "binance", "ETHBTC", "--data-types", "trade,candles"],
                "unknown data type 'candles'",
            ),
            (
                ["track", "binance", "ETHBTC", "--data-types", "l3"],
                "data type 'l3' is not collected on binance",
            ),
        ],
    )
    def test_one_line_error_exit_2_nothing_written(
        self,
        synced: Path,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        argv: list[str],
        message: str,
    ) -> None:
        """Bad values give one line on stderr naming them, exit code 2, no change."""
        before = dump_db(tmp_path)
        capsys.readouterr()

        code, out = _run("--config", str(synced), *argv)

        assert code == 2
        assert out == ""
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert err.startswith("secmaster: error: ")
        assert message in err
        assert dump_db(tmp_path) == before

    def test_argparse_errors_are_one_line_too(self, capsys: pytest.CaptureFixture[str]) -> None:
        """An unknown option is one line on stderr and exit code 2."""
        with pytest.raises(SystemExit) as exc:
            run(["list", "--colour", "red"])

        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert "unrecognized arguments: --colour red" in err

    def test_missing_config_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A config path that does not exist is bad input."""
        code, _ = _run("--config", str(tmp_path / "nope.toml"), "list")

        assert code == 2
        assert "config file not found" in capsys.readouterr().err


class TestUniverse:
    def test_default_universe_on_first_use(self, synced: Path) -> None:
        """tracked_streams creates BTCUSDT and BTC-USD, trade and book, the first time."""
        assert tracked_streams(load_config(synced)) == DEFAULT_STREAMS

    def test_track_and_untrack(self, synced: Path, tmp_path: Path) -> None:
        """track adds streams of a listed pair; untrack removes them; both are sorted."""
        code, out = _run(
            "--config",
            str(synced),
            "track",
            "binance",
            "ETHBTC",
            "--data-types",
            "trade,book",
            "--user",
            "dave",
        )

        assert (code, out) == (0, "tracking binance:ETHBTC:book, binance:ETHBTC:trade\n")
        assert tracked_streams(load_config(synced)) == sorted(
            [*DEFAULT_STREAMS, ("binance", "ETHBTC", "book"), ("binance", "ETHBTC", "trade")]
        )
        assert query(
            tmp_path, "SELECT DISTINCT added_user FROM tracked WHERE trading_pair = 'ETHBTC'"
        ) == [("dave",)]

        code, out = _run(
            "--config", str(synced), "untrack", "binance", "ETHBTC", "--data-types", "book"
        )

        assert (code, out) == (0, "untracked binance:ETHBTC:book\n")
        assert ("binance", "ETHBTC", "trade") in tracked_streams(load_config(synced))

    def test_untracked_default_does_not_come_back(self, synced: Path) -> None:
        """The default universe is written once: removing it sticks."""
        assert _run("--config", str(synced), "untrack", "binance", "BTCUSDT")[0] == 0
        assert _run("--config", str(synced), "untrack", "coinbase", "BTC-USD")[0] == 0

        assert tracked_streams(load_config(synced)) == []

    def test_tracked_table(self, synced: Path) -> None:
        """`tracked` shows each stream with the pair's listing status."""
        code, out = _run("--config", str(synced), "tracked", "--format", "csv")

        assert code == 0
        rows = [r[:4] for r in csv.reader(io.StringIO(out))]
        assert rows == [
            ["exchange", "trading_pair", "data_type", "listing"],
            ["binance", "BTCUSDT", "book", "TRADING"],
            ["binance", "BTCUSDT", "trade", "TRADING"],
            ["coinbase", "BTC-USD", "book", "online"],
            ["coinbase", "BTC-USD", "trade", "online"],
        ]

    @pytest.mark.parametrize(
        ("pair", "message"),
        [
            ("FOOBAR", "binance FOOBAR is not listed"),
            ("btcusdt", "binance btcusdt is not listed (did you mean BTCUSDT?)"),
        ],
    )
    def test_track_unlisted_pair_is_an_error(
        self,
        synced: Path,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        pair: str,
        message: str,
    ) -> None:
        """A pair that is not listed cannot be tracked: exit 2, clear message, no change."""
        before = dump_db(tmp_path)

        code, _ = _run("--config", str(synced), "track", "binance", pair, "--data-types", "trade")

        assert code == 2
        errors = [ln for ln in capsys.readouterr().err.splitlines() if not ln.startswith("{")]
        assert errors == [f"secmaster: error: {message}"]  # log lines aside
        assert dump_db(tmp_path) == before

    def test_track_before_any_sync_says_so(
        self, tmp_path: Path, replay: ReplayThread, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """With no listings yet, the message says to sync first."""
        cfg = write_config(tmp_path, replay)

        code, _ = _run("--config", str(cfg), "track", "binance", "ETHBTC", "--data-types", "trade")

        assert code == 2
        assert "no binance listings yet (run `secmaster sync --exchange binance` first)" in (
            capsys.readouterr().err
        )

    def test_delisted_pair(
        self,
        synced: Path,
        replay: ReplayThread,
        recorded_bodies: RecordedBodies,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """A delisted pair cannot be tracked, and a tracked one drops out of tracked_streams."""
        assert (
            _run("--config", str(synced), "track", "binance", "ETHBTC", "--data-types", "trade")[0]
            == 0
        )
        replay.set_http(
            BINANCE_PATH,
            modified_binance(recorded_bodies.binance, remove="ETHBTC", add="", tick=None),
        )
        assert _run("--config", str(synced), "sync", "--exchange", "binance")[0] == 0
        capsys.readouterr()

        code, _ = _run(
            "--config", str(synced), "track", "binance", "ETHBTC", "--data-types", "book"
        )

        assert code == 2
        assert capsys.readouterr().err == (
            "secmaster: error: binance ETHBTC is delisted: it cannot be tracked\n"
        )
        assert tracked_streams(load_config(synced)) == DEFAULT_STREAMS
        code, out = _run("--config", str(synced), "tracked", "--format", "csv")
        assert "binance,ETHBTC,trade,delisted," in out


class TestApplyHook:
    def _hook_cfg(self, tmp_path: Path, replay: ReplayThread, script: str) -> Path:
        cmd = shlex.join([sys.executable, "-c", script, str(tmp_path / "hook.log")])
        cfg = write_config(tmp_path, replay, apply_cmd=cmd)
        assert _run("--config", str(cfg), "sync")[0] == 0
        return cfg

    def test_track_runs_apply_cmd(self, tmp_path: Path, replay: ReplayThread) -> None:
        """apply_cmd runs once after a track and once after an untrack."""
        cfg = self._hook_cfg(
            tmp_path, replay, "import sys\nwith open(sys.argv[1], 'a') as f: f.write('applied\\n')"
        )

        assert (
            _run("--config", str(cfg), "track", "binance", "ETHBTC", "--data-types", "trade")[0]
            == 0
        )
        assert _run("--config", str(cfg), "untrack", "binance", "ETHBTC")[0] == 0

        assert (tmp_path / "hook.log").read_text() == "applied\napplied\n"

    def test_failing_apply_cmd_exit_1(
        self, tmp_path: Path, replay: ReplayThread, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A failing apply_cmd makes track exit 1, but the stream is tracked."""
        cfg = self._hook_cfg(tmp_path, replay, "import sys; sys.exit(3)")

        code, _ = _run("--config", str(cfg), "track", "binance", "ETHBTC", "--data-types", "trade")

        assert code == 1
        assert "tracked, but the apply command failed" in capsys.readouterr().err
        assert ("binance", "ETHBTC", "trade") in tracked_streams(load_config(cfg))
