"""Hostile listing names: screened at parse, refused at track, never rendered (issue 16, 1).

A listing body with hostile names is served over HTTP by the replay server and goes through
the real path: ``secmaster sync`` → SQLite → ``secmaster track`` → ``ops.fleet render``.
Nothing hostile may be stored or rendered, and the rendered file must parse with supervisor's
own config parser to exactly the expected programs. The database is read with plain sqlite3.
"""

from __future__ import annotations

import io
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from collector.common.errors import UnexpectedMessage
from collector.config import load_config
from collector.exchanges import ADAPTERS, binance, coinbase
from collector.exchanges.listing import ASSET_PATTERN
from ops.fleet import program_name, render
from ops.replay import ReplayThread
from secmaster.cli import run
from secmaster.universe import tracked_streams
from tests.ops.fleet_harness import prepare_root, supervisor_programs
from tests.secmaster.conftest import (
    BINANCE_PATH,
    HOSTILE_NAMES,
    RecordedBodies,
    db_path,
    dump_db,
    hostile_binance,
    log_events,
    query,
    run_secmaster,
    write_config,
)
from tests.secmaster.listingkit import parse_listings

pytestmark = pytest.mark.timeout(300)

BINANCE_GRAMMAR = ADAPTERS["binance"].SYMBOL_PATTERN
# The grammars as their messages show them (read from the adapters, which own them).
BINANCE_SHOWN = BINANCE_GRAMMAR.pattern
COINBASE_SHOWN = ADAPTERS["coinbase"].SYMBOL_PATTERN.pattern


def _run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = run(list(argv), out)
    return code, out.getvalue()


def _exit_code(*argv: str) -> int:
    """The exit code of a run, argparse's own exit included (a name starting with ``-``)."""
    try:
        return _run(*argv)[0]
    except SystemExit as exc:
        return int(exc.code or 0)


def _alerts(stderr: str) -> list[dict[str, Any]]:
    return [e for e in log_events(stderr) if e["event"] == "alert"]


# Hostile fragments glued together by hypothesis: every class the issue names.
_FRAGMENTS = (
    "\n",
    "\r",
    "%",
    "%(here)s",
    "%(ENV_PATH)s",
    ";",
    "#",
    "[program:x]",
    "[group:collector]",
    "=",
    "command=/bin/sh -c id",
    " ",
    "\t",
    "'",
    '"',
    "/",
    "..",
    "\\",
    "\x00",
    "\x1b",
    "\u2028",
    "币",
    "Ü",
    "BTC",
    "USDT",
    "btc",
)
_hostile_text = st.one_of(
    st.lists(st.sampled_from(_FRAGMENTS), min_size=1, max_size=8).map("".join),
    st.text(min_size=0, max_size=40),
    st.sampled_from(HOSTILE_NAMES),
)
hostile_symbol = _hostile_text.filter(lambda name: not BINANCE_GRAMMAR.fullmatch(name))
hostile_asset = _hostile_text.filter(lambda name: not ASSET_PATTERN.fullmatch(name))


class TestParse:
    def test_every_hostile_name_is_refused_with_a_one_line_reason(
        self, recorded_bodies: RecordedBodies
    ) -> None:
        """Each hostile symbol is refused (reason on one printable line); the rest is kept."""
        body = hostile_binance(recorded_bodies.binance, HOSTILE_NAMES)

        parsed = binance.parse_listing_body(body)

        assert len(parsed.listings) == 1695
        assert all(BINANCE_GRAMMAR.fullmatch(x.trading_pair) for x in parsed.listings)
        assert [r.trading_pair for r in parsed.refused] == list(HOSTILE_NAMES)
        assert all(r.reason.isprintable() and len(r.reason) < 200 for r in parsed.refused)
        assert parsed.refused[0].reason == (
            "trading_pair 'NKNUSDT\\n[program:pwn]\\ncommand=/bin/true\\n[program:z' "
            f"does not fit the binance symbol grammar {BINANCE_SHOWN}"
        )
        assert parse_listings(binance, body) == list(parsed.listings)

    @pytest.mark.parametrize(
        ("field", "value", "shown"),
        [
            ("baseAsset", "BTC\n[program:x]", "base 'BTC\\n[program:x]'"),
            ("quoteAsset", "US%DT", "quote 'US%DT'"),
            ("quoteAsset", "", "quote ''"),
            ("status", "TRADING\n", "status 'TRADING\\n'"),
        ],
    )
    def test_hostile_assets_and_status_are_refused(
        self, field: str, value: str, shown: str
    ) -> None:
        """A fitting symbol with a hostile base, quote or status is refused whole."""
        entry = {
            "symbol": "EVILUSDT",
            "status": "TRADING",
            "baseAsset": "EVIL",
            "quoteAsset": "USDT",
            "filters": [{"filterType": "PRICE_FILTER", "tickSize": "0.01"}],
        }
        body = orjson.dumps({"symbols": [{**entry, field: value}]})

        parsed = binance.parse_listing_body(body)

        assert parsed.listings == ()
        (refused,) = parsed.refused
        assert refused.trading_pair == "EVILUSDT"
        assert refused.reason.startswith(f"EVILUSDT {shown} does not fit the grammar ")

    def test_hostile_decimal_is_refused(self) -> None:
        """A tick size that is not a plain decimal (here a forged newline) is refused."""
        body = orjson.dumps(
            [
                {
                    "id": "BTC-USD",
                    "base_currency": "BTC",
                    "quote_currency": "USD",
                    "quote_increment": "0.01\n[program:x]",
                    "status": "online",
                }
            ]
        )

        parsed = coinbase.parse_listing_body(body)

        assert parsed.listings == ()
        assert parsed.refused[0].reason.startswith("BTC-USD tick_size '0.01\\n[program:x]'")

    def test_coinbase_hostile_product_ids_are_refused(
        self, recorded_bodies: RecordedBodies
    ) -> None:
        """Coinbase product ids outside BASE-QUOTE of [A-Z0-9] are refused, the rest kept."""
        ids = ["BTC-USD\n[program:x]", "BTC_USD", "-USD", "BTC-", "BTC-USD-EUR", "btc-usd", "%-%"]
        products = orjson.loads(recorded_bodies.coinbase)
        template = next(p for p in products if p["id"] == "BTC-USD")
        body = orjson.dumps([*products, *({**template, "id": i} for i in ids)])

        parsed = coinbase.parse_listing_body(body)

        assert len(parsed.listings) == 162
        assert [r.trading_pair for r in parsed.refused] == ids
        assert parsed.refused[0].reason == (
            "trading_pair 'BTC-USD\\n[program:x]' does not fit the coinbase symbol grammar "
            f"{COINBASE_SHOWN}"
        )

    @pytest.mark.parametrize(
        "entry",
        [
            {"symbol": 123},
            {"symbol": ["BTCUSDT"]},
            {"symbol": {"a": "b"}},
            {"symbol": None},
        ],
    )
    def test_wrong_json_type_is_a_broken_body(self, entry: dict[str, object]) -> None:
        """A symbol that is not a string is not a listing at all: the body is malformed."""
        template = {
            "status": "TRADING",
            "baseAsset": "BTC",
            "quoteAsset": "USDT",
            "filters": [],
        }
        body = orjson.dumps({"symbols": [{**template, **entry}]})

        with pytest.raises(UnexpectedMessage, match="'symbol' missing or not a string"):
            binance.parse_listing_body(body)

    def test_non_string_tick_size_is_a_broken_body(self) -> None:
        """A number where the docs give a decimal string is not silently dropped to None."""
        body = orjson.dumps(
            {
                "symbols": [
                    {
                        "symbol": "BTCUSDT",
                        "status": "TRADING",
                        "baseAsset": "BTC",
                        "quoteAsset": "USDT",
                        "filters": [{"filterType": "PRICE_FILTER", "tickSize": 0.01}],
                    }
                ]
            }
        )

        with pytest.raises(UnexpectedMessage, match="PRICE_FILTER.tickSize is not a string"):
            binance.parse_listing_body(body)

    @settings(max_examples=300, deadline=None, database=None)
    @given(names=st.lists(hostile_symbol, min_size=1, max_size=5))
    def test_property_only_grammar_names_are_accepted(self, names: list[str]) -> None:
        """For any names, parse accepts exactly those fitting the grammar and refuses the rest."""
        entry = {"status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT", "filters": []}
        body = orjson.dumps({"symbols": [{**entry, "symbol": n} for n in [*names, "BTCUSDT"]]})

        parsed = binance.parse_listing_body(body)

        assert [x.trading_pair for x in parsed.listings] == ["BTCUSDT"]
        assert [r.trading_pair for r in parsed.refused] == names
        assert all(r.reason.isprintable() for r in parsed.refused)


class TestSync:
    def test_refused_listings_are_skipped_counted_and_alerted(
        self, tmp_path: Path, replay: ReplayThread, recorded_bodies: RecordedBodies
    ) -> None:
        """The rest of the poll applies; the summary counts the refused; one alert names them."""
        cfg = write_config(tmp_path, replay)
        replay.set_http(BINANCE_PATH, hostile_binance(recorded_bodies.binance, HOSTILE_NAMES))

        proc = run_secmaster(cfg, "sync", "--exchange", "binance")

        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(
            f"binance: 1695 new, 0 changed, 0 delisted, 0 unchanged, {len(HOSTILE_NAMES)} "
            "refused (1695 rows written, "
        )
        stored = {r[0] for r in query(tmp_path, "SELECT trading_pair FROM instrument")}
        assert stored == {x.trading_pair for x in parse_listings(binance, recorded_bodies.binance)}
        (alert,) = _alerts(proc.stderr)
        assert (alert["severity"], alert["exchange"]) == ("warning", "binance")
        assert alert["title"] == (
            f"binance listings: {len(HOSTILE_NAMES)} refused (outside the name grammar; not "
            "stored, not trackable)"
        )
        assert alert["key"].startswith("secmaster:binance:refused:")
        assert "'NKNUSDT\\n[program:pwn]\\ncommand=/bin/true\\n[program:z'" in (alert["refused"])
        assert f"{'A' * 60!r}...(100000 chars)" in alert["refused"]
        assert all(str(v).isprintable() for v in alert.values())
        (refused_log,) = [
            e for e in log_events(proc.stderr) if e["event"] == "secmaster.sync.refused"
        ]
        assert refused_log["count"] == len(HOSTILE_NAMES)

    def test_refused_listing_of_a_stored_pair_leaves_its_row(
        self, tmp_path: Path, replay: ReplayThread, recorded_bodies: RecordedBodies
    ) -> None:
        """BTCUSDT with a forged status is refused: its current row stays, not delisted."""
        cfg = write_config(tmp_path, replay)
        assert _run("--config", str(cfg), "sync", "--exchange", "binance")[0] == 0
        before = dump_db(tmp_path)
        doc = orjson.loads(recorded_bodies.binance)
        for s in doc["symbols"]:
            if s["symbol"] == "BTCUSDT":
                s["status"] = "TRADING\n[program:x]"
        replay.set_http(BINANCE_PATH, orjson.dumps(doc))

        code, out = _run("--config", str(cfg), "sync", "--exchange", "binance")

        assert code == 0
        assert out.startswith(
            "binance: 0 new, 0 changed, 0 delisted, 1694 unchanged, 1 refused (0 rows written"
        )
        assert dump_db(tmp_path) == before


class TestTrack:
    def test_hostile_names_cannot_be_tracked_or_untracked(
        self,
        tmp_path: Path,
        replay: ReplayThread,
        recorded_bodies: RecordedBodies,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """After a hostile poll, track/untrack of each hostile name: exit 2, one line, no change."""
        cfg = write_config(tmp_path, replay)
        replay.set_http(BINANCE_PATH, hostile_binance(recorded_bodies.binance, HOSTILE_NAMES))
        assert _run("--config", str(cfg), "sync")[0] == 0
        assert _run("--config", str(cfg), "tracked")[0] == 0  # the default universe, written
        before = dump_db(tmp_path)

        for name in HOSTILE_NAMES:
            for argv in (
                ["track", "binance", name, "--data-types", "trade"],
                ["untrack", "binance", name],
            ):
                capsys.readouterr()

                code, out = _run("--config", str(cfg), *argv)

                err = capsys.readouterr().err
                assert (code, out) == (2, ""), (name, err)
                assert err.count("\n") == 1, (name, err)
                assert err.startswith("secmaster: error: ")
                assert err[:-1].isprintable()
        assert dump_db(tmp_path) == before

    def test_stored_row_outside_the_grammar_cannot_be_tracked(
        self, tmp_path: Path, replay: ReplayThread
    ) -> None:
        """A listing stored before screening (inserted by hand here) is still refused."""
        cfg = write_config(tmp_path, replay)
        assert _run("--config", str(cfg), "sync")[0] == 0
        with sqlite3.connect(db_path(tmp_path)) as conn:
            conn.execute(
                "INSERT INTO instrument (exchange, datetime, trading_pair, is_current, "
                "last_modified_datetime, last_modified_user, base, quote, status, "
                "trading_enabled, valid_from, is_delisted, attr_hash) SELECT exchange, "
                "datetime, 'BTC%USDT', 1, last_modified_datetime, 'x', base, quote, status, "
                "trading_enabled, valid_from, 0, attr_hash FROM instrument "
                "WHERE trading_pair = 'BTCUSDT'"
            )
        before = dump_db(tmp_path)

        code, _ = _run(
            "--config", str(cfg), "track", "binance", "BTC%USDT", "--data-types", "trade"
        )

        assert code == 2
        assert dump_db(tmp_path) == before

    def test_table_output_shows_a_stored_hostile_value_on_one_line(
        self, tmp_path: Path, replay: ReplayThread
    ) -> None:
        """`list` (table) shows a value with a control character repr'd: no forged lines."""
        cfg = write_config(tmp_path, replay)
        assert _run("--config", str(cfg), "sync", "--exchange", "coinbase")[0] == 0
        with sqlite3.connect(db_path(tmp_path)) as conn:
            conn.execute(
                "UPDATE instrument SET status = ? WHERE trading_pair = 'BTC-USD'",
                ("online\nforged line",),
            )

        code, out = _run("--config", str(cfg), "list", "--exchange", "coinbase", "--quote", "USD")

        assert code == 0
        (btc,) = [line for line in out.splitlines() if " BTC-USD " in line]
        assert "'online\\nforged line'" in btc
        assert "forged line" not in out.replace("'online\\nforged line'", "")

    def test_legacy_tracked_row_is_skipped_logged_and_can_be_untracked(
        self, tmp_path: Path, replay: ReplayThread
    ) -> None:
        """A tracked row outside the grammar never reaches the fleet; untrack removes it."""
        cfg = write_config(tmp_path, replay)
        assert _run("--config", str(cfg), "sync")[0] == 0
        assert _run("--config", str(cfg), "tracked")[0] == 0
        with sqlite3.connect(db_path(tmp_path)) as conn:
            for pair in ("BTC\n[program:x]\ncommand=/bin/true", "BTC%USDT"):
                conn.execute(
                    "INSERT INTO tracked VALUES ('binance', ?, 'trade', '2026-01-01 00:00', 'x')",
                    (pair,),
                )

        with capture_logs() as logs:
            streams = tracked_streams(load_config(cfg))

        assert streams == [
            ("binance", "BTCUSDT", "book"),
            ("binance", "BTCUSDT", "trade"),
            ("coinbase", "BTC-USD", "book"),
            ("coinbase", "BTC-USD", "trade"),
        ]
        (error,) = [e for e in logs if e["event"] == "secmaster.universe.refused"]
        assert error["log_level"] == "error"
        assert error["reasons"] == [
            "binance pair 'BTC\\n[program:x]\\ncommand=/bin/true' does not fit the binance "
            f"symbol grammar {BINANCE_SHOWN}",
            f"binance pair 'BTC%USDT' does not fit the binance symbol grammar {BINANCE_SHOWN}",
        ]
        assert _run("--config", str(cfg), "untrack", "binance", "BTC%USDT") == (
            0,
            "untracked binance:BTC%USDT:trade\n",
        )


class TestCommandLine:
    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            (["sync", "--user", "eve\n[program:x]"], "--user 'eve\\n[program:x]' contains a"),
            (["sync", "--exchange", "binance\n"], "exchange 'binance\\n' contains a"),
            (["sync", "--user", "eve\x00"], "--user 'eve\\x00' contains a control character"),
            (
                ["track", "bin\x1bance", "BTCUSDT", "--data-types", "trade"],
                "exchange 'bin\\x1bance' contains a control character",
            ),
            (
                ["track", "binance", "BTC\nUSDT", "--data-types", "trade"],
                "pair 'BTC\\nUSDT' contains a control character",
            ),
            (["untrack", "binance", "BTC\rUSDT"], "pair 'BTC\\rUSDT' contains a control"),
            (["list", "--quote", "USDT\u2028"], "--quote 'USDT\\u2028' contains a control"),
            (["history", "coinbase\n", "BTC-USD"], "exchange 'coinbase\\n' contains a control"),
        ],
    )
    def test_control_characters_exit_2_one_line_nothing_written(
        self,
        tmp_path: Path,
        replay: ReplayThread,
        capsys: pytest.CaptureFixture[str],
        argv: list[str],
        message: str,
    ) -> None:
        """A control character in any argument: one line naming it, exit 2, no database made."""
        cfg = write_config(tmp_path, replay)

        code, out = _run("--config", str(cfg), *argv)

        assert (code, out) == (2, "")
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert err.startswith(f"secmaster: error: {message}")
        assert dump_db(tmp_path) == {}


@pytest.mark.slow
class TestFuzzSyncTrackRender:
    @settings(
        max_examples=25,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        symbols=st.lists(hostile_symbol, min_size=1, max_size=4),
        assets=st.lists(hostile_asset, min_size=0, max_size=2),
    )
    def test_nothing_hostile_is_stored_tracked_or_rendered(
        self,
        replay: ReplayThread,
        symbols: list[str],
        assets: list[str],
    ) -> None:
        """HTTP body → sync → DB → track → render: supervisor parses exactly the good programs."""
        entry = {
            "status": "TRADING",
            "baseAsset": "NKN",
            "quoteAsset": "USDT",
            "filters": [{"filterType": "PRICE_FILTER", "tickSize": "0.00010000"}],
        }
        good = ["BTCUSDT", "NKNUSDT", "ETHBTC"]
        listed = [{**entry, "symbol": s} for s in [*good, *symbols]]
        listed += [
            {**entry, "symbol": f"EVIL{i}USDT", "baseAsset": a} for i, a in enumerate(assets)
        ]
        replay.set_http(BINANCE_PATH, orjson.dumps({"symbols": listed}))
        with tempfile.TemporaryDirectory(prefix="inj", dir="/tmp") as tmp:
            root = Path(tmp)
            cfg = write_config(root, replay, min_listings=(1, 1))

            code, out = _run("--config", str(cfg), "sync", "--exchange", "binance")

            assert code == 0, out
            assert f", {len(symbols) + len(assets)} refused (" in out
            stored = {r[0] for r in query(root, "SELECT trading_pair FROM instrument")}
            assert stored == set(good)
            for name in [*symbols, *(f"EVIL{i}USDT" for i in range(len(assets)))]:
                code = _exit_code(
                    "--config", str(cfg), "track", "binance", name, "--data-types", "trade"
                )
                assert code == 2, name
            assert _run(
                "--config", str(cfg), "track", "binance", "NKNUSDT", "--data-types", "trade"
            ) == (
                0,
                "tracking binance:NKNUSDT:trade\n",
            )

            prepare_root(root)
            render(load_config(cfg), python="/opt/venv/bin/python")
            programs = supervisor_programs(root)

        expected_streams = [
            ("binance", "BTCUSDT", "book"),
            ("binance", "BTCUSDT", "trade"),
            ("binance", "NKNUSDT", "trade"),
            ("coinbase", "BTC-USD", "book"),
            ("coinbase", "BTC-USD", "trade"),
        ]
        collectors = {k: v for k, v in programs.items() if k.startswith("collector:")}
        assert collectors == {
            f"collector:{program_name(*s)}": [
                "/opt/venv/bin/python",
                "-m",
                "collector",
                "--exchange",
                s[0],
                "--symbol",
                s[1],
                "--data_type",
                s[2],
                "--config",
                str(cfg),
            ]
            for s in expected_streams
        }
        assert set(programs) - set(collectors) == {
            "periodic:secmaster",
            "periodic:qa",
            "periodic:sync",
            "alerts:alerts",
        }
