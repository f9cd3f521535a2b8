"""Bulk track/untrack over the listings, dry runs, and auto-track of new listings."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from collector.common.errors import ConfigError
from collector.config import load_config
from collector.exchanges import binance
from ops.replay import ReplayThread
from secmaster.settings import build_secmaster_settings
from secmaster.universe import tracked_streams
from tests.secmaster.conftest import (
    BINANCE_PATH,
    DEFAULT_STREAMS,
    RecordedBodies,
    cli,
    db_path,
    dump_db,
    modified_binance,
    write_config,
)
from tests.secmaster.listingkit import parse_listings

pytestmark = pytest.mark.timeout(60)

SELECT = ("--quote", "BTC", "--status", "TRADING")


@pytest.fixture
def synced(tmp_path: Path, replay: ReplayThread) -> Path:
    cfg = write_config(tmp_path, replay)
    assert cli("--config", str(cfg), "sync")[0] == 0
    return cfg


@pytest.fixture
def btc_trading(recorded_bodies: RecordedBodies) -> list[str]:
    """The recorded Binance pairs quoted in BTC and TRADING, sorted."""
    return sorted(
        x.trading_pair
        for x in parse_listings(binance, recorded_bodies.binance)
        if x.quote == "BTC" and x.status == "TRADING"
    )


class TestBulkTrack:
    def test_dry_run_prints_what_would_change_and_writes_nothing(
        self, synced: Path, tmp_path: Path, btc_trading: list[str]
    ) -> None:
        """Every matching pair's stream is printed; no table changes (no default either)."""
        before = dump_db(tmp_path)

        code, out = cli(
            "--config", str(synced), "track", "binance", *SELECT, "--data-types", "trade",
            "--dry-run",
        )  # fmt: skip

        assert code == 0
        first, *streams = out.splitlines()
        assert first == (
            f"dry run: would track {len(btc_trading)} stream(s) of {len(btc_trading)} pair(s) "
            "(binance --quote BTC --status TRADING); nothing changed"
        )
        assert streams == [f"binance:{p}:trade" for p in btc_trading]
        assert dump_db(tmp_path) == before

    def test_track_a_selection_then_again(self, synced: Path, btc_trading: list[str]) -> None:
        """Exactly the matching current listings are tracked; a second run adds nothing."""
        argv = ("--config", str(synced), "track", "binance", *SELECT, "--data-types", "trade,book")

        code, out = cli(*argv)
        again = cli(*argv)

        n = len(btc_trading)
        assert code == 0
        assert out.splitlines()[0] == (
            f"tracking {2 * n} stream(s) of {n} pair(s) (binance --quote BTC --status TRADING)"
        )
        expected = sorted(
            DEFAULT_STREAMS + [("binance", p, d) for p in btc_trading for d in ("book", "trade")]
        )
        assert tracked_streams(load_config(synced)) == expected
        assert again == (
            0,
            f"tracking 0 stream(s) of {n} pair(s) (binance --quote BTC --status TRADING) "
            f"({2 * n} already tracked)\n",
        )

    def test_a_stored_pair_outside_the_grammar_is_skipped_and_named(
        self, synced: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A row written by hand into the listings is never tracked by a selection."""
        with sqlite3.connect(db_path(tmp_path)) as conn:
            cols = [r[1] for r in conn.execute("PRAGMA table_info(instrument)") if r[1] != "id"]
            picked = ", ".join("'EVIL\n[x]'" if c == "trading_pair" else c for c in cols)
            conn.execute(
                f"INSERT INTO instrument ({', '.join(cols)}) SELECT {picked} FROM instrument "
                "WHERE trading_pair = 'ETHBTC'"
            )

        code, out = cli(
            "--config", str(synced), "track", "binance", "--base", "ETH", "--data-types", "trade"
        )

        assert code == 0
        assert "binance:ETHBTC:trade" in out.splitlines()
        err = capsys.readouterr().err
        assert "secmaster: skipped (outside the grammar): binance pair 'EVIL\\n[x]'" in err
        streams = tracked_streams(load_config(synced))
        assert ("binance", "ETHBTC", "trade") in streams
        assert all("EVIL" not in s[1] for s in streams)

    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            (["track", "binance", "--data-types", "trade"], "`track binance` needs a pair"),
            (["untrack", "binance"], "`untrack binance` needs a pair"),
            (
                ["track", "binance", "ETHBTC", "--quote", "BTC", "--data-types", "trade"],
                "give a pair or filters",
            ),
            (
                ["track", "binance", "--all", "--quote", "BTC", "--data-types", "trade"],
                "--all takes no filter",
            ),
            (
                ["track", "binance", "--quote", "btc", "--data-types", "trade"],
                "quote 'btc' does not fit the listings' quote grammar",
            ),
            (
                ["track", "binance", "--quote", "BTC\n", "--data-types", "trade"],
                "--quote 'BTC\\n' contains a control character",
            ),
            (
                ["track", "binance", "--quote", "B%C", "--data-types", "trade"],
                "quote 'B%C' does not fit",
            ),
            (
                ["untrack", "binance", "--base", "\u00c9TH"],
                "base '\u00c9TH' does not fit",
            ),
            (
                ["track", "binance", "--status", "T" * 100_000, "--data-types", "trade"],
                "...(100000 chars) does not fit",
            ),
            (
                ["track", "binance", "X" * 100_000, "--data-types", "trade"],
                "...(100000 chars)",
            ),
            (
                ["track", "binance", "--quote", "XYZ", "--data-types", "trade"],
                "no current listing matches binance --quote XYZ",
            ),
            (
                ["untrack", "binance", "--quote", "XYZ"],
                "no tracked stream matches binance --quote XYZ",
            ),
            (
                ["track", "bitstamp", "--all", "--data-types", "trade"],
                "no bitstamp listings yet (run `secmaster sync --exchange bitstamp` first)",
            ),
        ],
    )
    def test_bad_selections_are_one_line_exit_2_nothing_written(
        self,
        synced: Path,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        argv: list[str],
        message: str,
    ) -> None:
        """Refused before anything is written, with a line that says what to give."""
        before = dump_db(tmp_path)
        capsys.readouterr()

        code, out = cli("--config", str(synced), *argv)

        err = capsys.readouterr().err
        assert (code, out, err.count("\n")) == (2, "", 1)
        assert message in err
        assert dump_db(tmp_path) == before


class TestBulkUntrack:
    def test_untrack_what_the_exchange_delisted(
        self, synced: Path, replay: ReplayThread, recorded_bodies: RecordedBodies
    ) -> None:
        """--status delisted selects the tracked pairs whose listing is gone, nothing else."""
        for pair in ("ETHBTC", "LTCBTC"):
            cli("--config", str(synced), "track", "binance", pair, "--data-types", "trade")
        replay.set_http(BINANCE_PATH, modified_binance(recorded_bodies.binance, add="", tick=None))
        assert cli("--config", str(synced), "sync", "--exchange", "binance")[0] == 0
        argv = ("--config", str(synced), "untrack", "binance", "--status", "delisted")

        dry = cli(*argv, "--dry-run")
        real = cli(*argv)

        assert dry == (
            0,
            "dry run: would untrack 1 stream(s) of 1 pair(s) (binance --status delisted); "
            "nothing changed\nbinance:ETHBTC:trade\n",
        )
        assert real == (
            0,
            "untracked 1 stream(s) of 1 pair(s) (binance --status delisted)\n"
            "binance:ETHBTC:trade\n",
        )
        assert ("binance", "LTCBTC", "trade") in tracked_streams(load_config(synced))

    def test_untrack_one_data_type_of_a_quote(self, synced: Path) -> None:
        """--quote with --data-types removes only those streams of the matching pairs."""
        cli("--config", str(synced), "track", "binance", "ETHBTC", "--data-types", "trade,book")

        code, out = cli(
            "--config", str(synced), "untrack", "binance", "--quote", "BTC", "--data-types", "book"
        )

        assert (code, out.splitlines()[1:]) == (0, ["binance:ETHBTC:book"])
        binance_streams = [s for s in tracked_streams(load_config(synced)) if s[0] == "binance"]
        assert binance_streams == [
            ("binance", "BTCUSDT", "book"),
            ("binance", "BTCUSDT", "trade"),
            ("binance", "ETHBTC", "trade"),
        ]


RULES = [
    {"exchange": "binance", "quote": "USDT", "data_types": ["trade"]},
    {"exchange": "binance", "quote": "EUR", "data_types": ["book"]},
]


class TestAutoTrack:
    def test_new_listings_matching_a_rule_are_tracked_untracked_ones_stay_so(
        self, tmp_path: Path, replay: ReplayThread, recorded_bodies: RecordedBodies
    ) -> None:
        """Not on the first load; a new USDT pair gets the rule's data types once; after an
        untrack, a relisting of it is not tracked again."""
        cfg = write_config(tmp_path, replay, auto_track=RULES)
        sync = ("--config", str(cfg), "sync", "--exchange", "binance")
        with_new = modified_binance(recorded_bodies.binance, remove="", tick=None)
        without = modified_binance(recorded_bodies.binance, remove="", add="", tick=None)

        first = cli(*sync)
        replay.set_http(BINANCE_PATH, with_new)
        with capture_logs() as logs:
            listed = cli(*sync)
        cli("--config", str(cfg), "untrack", "binance", "NEWUSDT")
        replay.set_http(BINANCE_PATH, without)
        cli(*sync)
        replay.set_http(BINANCE_PATH, with_new)
        relisted = cli(*sync)

        assert "auto-tracked" not in first[1]
        assert listed[0] == 0
        assert listed[1].splitlines()[-1] == "auto-tracked 1 stream(s): binance:NEWUSDT:trade"
        alerts = [e for e in logs if e["event"] == "alert" and "auto-track" in e["title"]]
        assert [(a["severity"], a["streams"]) for a in alerts] == [
            ("warning", "binance:NEWUSDT:trade")
        ]
        assert relisted[0] == 0
        assert "auto-tracked" not in relisted[1]
        assert ("binance", "NEWUSDT", "trade") not in tracked_streams(load_config(cfg))

    @pytest.mark.parametrize(
        ("rule", "message"),
        [
            ({"exchange": "binance", "quote": "USDT"}, "data_types = None must be a list"),
            ({"exchange": "kraken", "all": True, "data_types": ["trade"]}, "exchange = 'kraken'"),
            ({"exchange": "binance", "data_types": ["trade"]}, "give a filter (quote, base or"),
            (
                {"exchange": "binance", "quote": "USDT", "data_types": ["l3"]},
                "data type 'l3' is not collected on binance",
            ),
            (
                {"exchange": "binance", "quote": "usdt", "data_types": ["trade"]},
                "quote 'usdt' does not fit",
            ),
            (
                {"exchange": "binance", "qoute": "USDT", "data_types": ["trade"]},
                "unknown key 'qoute'",
            ),
            (
                {"exchange": "binance", "all": True, "base": "BTC", "data_types": ["trade"]},
                "all = true takes no filter (base given)",
            ),
        ],
    )
    def test_a_bad_rule_is_refused_naming_it(
        self, tmp_path: Path, replay: ReplayThread, rule: dict[str, object], message: str
    ) -> None:
        """Each rule is checked at load (unknown keys refused), its index in the message."""
        cfg = write_config(tmp_path, replay, auto_track=[RULES[0], rule])

        with pytest.raises(ConfigError) as info:
            build_secmaster_settings(load_config(cfg))

        assert "[secmaster] auto_track[1]" in str(info.value)
        assert message in str(info.value)
