"""Per-stream settings: ``[collector.overrides]`` in the collector's settings and in QA."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from collector.common.errors import ConfigError
from collector.config import load_config
from collector.settings import build_collector_settings
from ops.replay import ReplayThread
from qa.runner import check_file
from qa.settings import build_thresholds
from tests.collector.test_process_books import binance_done, run_books
from tests.conftest import CAPTURES
from tests.qa.helpers import book_rows, parsed_path, write_parsed

BOOK = '"binance:BTCUSDT:book" = { book_depth = 20, depth_update_speed_ms = 100 }\n'


def config_with(tmp_path: Path, overrides: str, collector: str = "") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f"[collector]\n{collector}\n[collector.overrides]\n{overrides}", encoding="utf-8"
    )
    return path


def settings(path: Path, exchange: str, symbol: str, data_type: str) -> object:
    return build_collector_settings(
        load_config(path), exchange=exchange, symbol=symbol, data_type=data_type
    )


def error_of(path: Path, exchange: str = "binance", symbol: str = "ETHUSDT") -> str:
    with pytest.raises(ConfigError) as info:
        settings(path, exchange, symbol, "trade")
    return str(info.value)


class TestCollector:
    def test_the_stream_gets_its_values_the_others_the_defaults(self, tmp_path: Path) -> None:
        """book_depth and Binance's depth speed change for that stream only."""
        path = config_with(tmp_path, BOOK, collector="book_depth = 10\n")

        own = build_collector_settings(
            load_config(path), exchange="binance", symbol="BTCUSDT", data_type="book"
        )
        other = build_collector_settings(
            load_config(path), exchange="binance", symbol="ETHUSDT", data_type="book"
        )

        assert (own.book_depth, own.options["depth_update_speed_ms"]) == (20, 100)
        assert (other.book_depth, other.options["depth_update_speed_ms"]) == (10, 1000)
        assert own.stream_spec().options["depth_update_speed_ms"] == 100

    def test_a_bitfinex_symbol_with_a_colon_and_its_own_option(self, tmp_path: Path) -> None:
        """The key splits at its first and last colon; book_len is Bitfinex's option."""
        path = config_with(tmp_path, '"bitfinex:TESTBTC:TESTUSD:l3" = { book_len = 25 }\n')

        s = build_collector_settings(
            load_config(path), exchange="bitfinex", symbol="TESTBTC:TESTUSD", data_type="l3"
        )

        assert s.options["book_len"] == 25

    def test_a_stream_not_tracked_is_fine(self, tmp_path: Path) -> None:
        """A key of a stream nobody collects yet is accepted (it may be tracked later)."""
        path = config_with(tmp_path, '"coinbase:DOGE-EUR:trade" = { flush_interval_s = 0.5 }\n')

        s = build_collector_settings(
            load_config(path), exchange="coinbase", symbol="DOGE-EUR", data_type="trade"
        )

        assert s.flush_interval_s == 0.5

    @pytest.mark.timeout(90)
    def test_real_collectors_write_and_subscribe_what_their_stream_says(
        self, tmp_path: Path, recorded: dict[str, Path]
    ) -> None:
        """Two real book collectors on one config (its depth speed left at 1000 ms): the
        overridden one writes 2 levels and subscribes the 100 ms stream, the other keeps 5
        levels and 1000 ms; QA, from the same config, finds both files as their raw says."""
        extra = (
            "[collector.overrides]\n"
            '"binance:NKNUSDT:book" = { book_depth = 2, depth_update_speed_ms = 100 }\n'
        )
        with ReplayThread([CAPTURES["binance"]]) as r:
            own, other = run_books(
                tmp_path, r, "binance", ["NKNUSDT", "BLZETH"], binance_done, extra=extra
            )

        def subscribed(c: object) -> list[str]:
            sent = next(e for e in c.raw_events() if e["t"] == "send")  # type: ignore[attr-defined]
            return list(json.loads(sent["data"])["params"])

        th = build_thresholds(load_config(tmp_path / "c.toml"))

        def replayed_rows(c: object) -> int:
            """The rows QA's replay of the raw files (processor, depth, options) made."""
            files = c.files("parsed")  # type: ignore[attr-defined]
            found = [f for p in files for f in check_file(p, th)["findings"]]
            return sum(f["details"]["rows"] for f in found if f["check"] == "raw_frames")

        assert {row[5] for row in own.rows()} == {"1", "2"}
        assert {row[5] for row in other.rows()} == {"1", "2", "3", "4", "5"}
        assert (subscribed(own), subscribed(other)) == (["nknusdt@depth@100ms"], ["blzeth@depth"])
        # QA replays each raw file with its own stream's depth and speed: the same rows.
        assert (replayed_rows(own), replayed_rows(other)) == (len(own.rows()), len(other.rows()))

    @pytest.mark.parametrize(
        ("overrides", "message"),
        [
            (
                '"binance:BTCUSDT:book" = { book_depth = 0 }\n',
                '[collector.overrides."binance:BTCUSDT:book"]: book_depth = 0 must be >= 1',
            ),
            (
                '"binance:BTCUSDT:book" = { depth_update_speed_ms = 250 }\n',
                '[collector.overrides."binance:BTCUSDT:book"]: depth_update_speed_ms = 250 '
                "must be one of (100, 1000)",
            ),
            (
                '"binance:BTCUSDT:book" = { flush_interval_s = "fast" }\n',
                "flush_interval_s = 'fast' must be a number",
            ),
            (
                '"coinbase:BTC-USD:book" = { depth_update_speed_ms = 100 }\n',
                "depth_update_speed_ms is not a setting of a coinbase stream",
            ),
            (
                '"binance:BTCUSDT:trade" = { book_depth = 20 }\n',
                "book_depth applies to book streams only",
            ),
            (
                '"binance:BTCUSDT:book" = 20\n',
                "must be a table",
            ),
        ],
    )
    def test_bad_values_are_refused_naming_the_stream(
        self, tmp_path: Path, overrides: str, message: str
    ) -> None:
        """Checked by the default's getter; every collector refuses a bad entry (exit 2)."""
        assert message in error_of(config_with(tmp_path, overrides))

    @pytest.mark.parametrize(
        ("key", "why"),
        [
            ("kraken:XBTUSD:trade", "unknown exchange 'kraken'"),
            ("binance:BTC USDT:book", "'BTC USDT' is not a binance symbol"),
            ("binance:btcusdt:book", "'btcusdt' is not a binance symbol"),
            ("binance:BTCUSDT:l3", "binance collects no data type 'l3'"),
            ("binance:BTCUSDT", "(a symbol and a data type after the exchange)"),
            ("binance:BTC\\nUSDT:book", "'BTC\\nUSDT' is not a binance symbol"),
        ],
    )
    def test_a_malformed_stream_key_is_refused(self, tmp_path: Path, key: str, why: str) -> None:
        """Exchange, symbol grammar and data type are checked; the message is one line."""
        message = error_of(config_with(tmp_path, f'"{key}" = {{ flush_interval_s = 1.0 }}\n'))

        assert "the key must be 'exchange:symbol:data_type'" in message
        assert why in message
        assert "\n" not in message

    def test_an_unknown_key_is_refused_by_the_schema(self, tmp_path: Path) -> None:
        """Like any typo in the file: at load, naming the stream's table and the key."""
        path = config_with(tmp_path, '"binance:BTCUSDT:book" = { book_dept = 20 }\n')

        with pytest.raises(ConfigError) as info:
            load_config(path)

        assert 'unknown key [collector.overrides."binance:BTCUSDT:book"] book_dept' in str(
            info.value
        )
        assert "(did you mean book_depth?)" in str(info.value)

    def test_fleet_wide_values_cannot_be_overridden(self, tmp_path: Path) -> None:
        """status_interval_s is read by ops status for every stream: not a stream setting."""
        path = config_with(tmp_path, '"binance:BTCUSDT:book" = { status_interval_s = 9.0 }\n')

        with pytest.raises(ConfigError, match="unknown key"):
            load_config(path)


class TestQA:
    def test_book_files_are_checked_against_the_streams_own_depth(self, tmp_path: Path) -> None:
        """20 levels are well formed in the overridden stream's file, not in another's."""
        th = build_thresholds(load_config(config_with(tmp_path, BOOK)))
        th = replace(th, max_silence_s={"book": 60.0})
        own = parsed_path(tmp_path / "a", "binance", "BTCUSDT", "book")
        other = parsed_path(tmp_path / "b", "binance", "ETHUSDT", "book")

        own_report = check_file(write_parsed(own, "book", book_rows(200, depth=20)), th)
        other_rows = book_rows(200, depth=20, symbol="ETHUSDT")
        other_report = check_file(write_parsed(other, "book", other_rows), th)

        assert (th.depth_of("binance", "BTCUSDT"), th.depth_of("binance", "ETHUSDT")) == (20, 5)
        assert "ill_formed" not in {
            f["check"] for f in own_report["findings"] if f["severity"] != "ok"
        }
        bad = [f for f in other_report["findings"] if f["check"] == "ill_formed"]
        assert "level: not in 1..5" in bad[0]["message"]
