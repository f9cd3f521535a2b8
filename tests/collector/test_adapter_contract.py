"""The adapter contract: capabilities come in consistent sets, options are declared once,
and every exchange fact generic code needs is answered by the registry."""

from __future__ import annotations

import random
import zlib
from pathlib import Path

import pytest

from collector.common.errors import ConfigError, UnexpectedMessage
from collector.config import CONFIG_SCHEMA, load_config
from collector.exchanges import ADAPTERS, binance, bitfinex, bitstamp, coinbase
from collector.exchanges.base import IntOption, L2View, StreamSpec, StrOption
from collector.l3book import L3Book
from collector.settings import build_collector_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


class TestRegistry:
    @pytest.mark.parametrize("name", list(ADAPTERS))
    def test_paired_capabilities_are_all_or_none(self, name: str) -> None:
        """Members that only work together are all set or all None."""
        a = ADAPTERS[name]

        assert name == a.EXCHANGE
        assert (a.CREDENTIAL_ENV is None) == (a.read_credentials is None)
        assert (a.parse_checksum is None) == (a.book_checksum is None) == (not a.L3_CHECKSUM)
        assert (a.build_listings_url is None) == (a.parse_listing_body is None)
        assert (a.build_l2_view_url is None) == (a.parse_l2_view is None)

    def test_every_option_is_in_the_schema_of_its_table(self) -> None:
        """An option's key is accepted in the table it is read from, and only there."""
        for name, adapter in ADAPTERS.items():
            for option in adapter.OPTIONS:
                table = "collector" if option.table == "collector" else f"exchanges.{name}"

                assert option.key in CONFIG_SCHEMA[table]
                others = [t for t in CONFIG_SCHEMA if t.startswith("exchanges.") and t != table]
                assert all(option.key not in CONFIG_SCHEMA[t] for t in others)

    def test_options_reach_the_stream_spec(self, tmp_path: Path) -> None:
        """Config values of an exchange's own options become its StreamSpec options."""
        path = write(
            tmp_path,
            '[collector]\nbinance_trade_stream = "aggTrade"\ndepth_update_speed_ms = 100\n'
            "[exchanges.bitfinex]\nbook_len = 25\n",
        )

        b = build_collector_settings(
            load_config(path), exchange="binance", symbol="BTCUSDT", data_type="trade"
        )
        f = build_collector_settings(
            load_config(path), exchange="bitfinex", symbol="BTCUSD", data_type="l3"
        )

        assert b.stream_spec().options == {
            "binance_trade_stream": "aggTrade",
            "depth_update_speed_ms": 100,
            "snapshot_limit": 1000,
        }
        assert b.snapshot_limit == 1000
        assert binance.stream_name(b.stream_spec()) == "btcusdt@aggTrade"
        assert f.stream_spec().options == {"book_len": 25}
        assert f.snapshot_limit == 0

    @pytest.mark.parametrize(
        ("toml", "message"),
        [
            (
                '[collector]\nbinance_trade_stream = "agg"\n',
                "[collector]: binance_trade_stream = 'agg' must be trade or aggTrade",
            ),
            (
                "[collector]\nsnapshot_limit = 5001\n",
                "[collector]: snapshot_limit = 5001 must be <= 5000",
            ),
        ],
    )
    def test_options_in_the_shared_table_are_checked_by_every_collector(
        self, tmp_path: Path, toml: str, message: str
    ) -> None:
        """A bad Binance option in [collector] is refused by a Coinbase collector too (as
        before the options moved into the adapter)."""
        path = write(tmp_path, toml)

        with pytest.raises(ConfigError) as info:
            build_collector_settings(
                load_config(path), exchange="coinbase", symbol="BTC-USD", data_type="trade"
            )

        assert str(info.value) == f"{path} {message}"

    def test_own_table_options_are_checked_by_their_exchange_only(self, tmp_path: Path) -> None:
        """[exchanges.bitfinex] book_len is Bitfinex's: only its collectors read it."""
        path = write(tmp_path, "[exchanges.bitfinex]\nbook_len = 7\n")

        build_collector_settings(
            load_config(path), exchange="binance", symbol="BTCUSDT", data_type="trade"
        )
        with pytest.raises(ConfigError, match=r"book_len = 7 must be one of \(1, 25, 100, 250\)"):
            build_collector_settings(
                load_config(path), exchange="bitfinex", symbol="BTCUSD", data_type="book"
            )


class TestOptions:
    def test_absent_option_has_its_default(self) -> None:
        assert bitfinex.BOOK_LEN.of(StreamSpec("BTCUSD", "book")) == 100
        assert binance.TRADE_STREAM.of(StreamSpec("BTCUSDT", "trade")) == "trade"

    def test_wrong_type_in_a_spec_is_a_type_error(self) -> None:
        with pytest.raises(TypeError):
            IntOption("n", 1).of(StreamSpec("X", "trade", options={"n": "1"}))
        with pytest.raises(TypeError):
            StrOption("s", "a", choices=("a",)).of(StreamSpec("X", "trade", options={"s": 1}))


class TestL2Views:
    def test_coinbase_level2_body_is_a_view_at_its_sequence(self) -> None:
        body = '{"sequence": 12, "bids": [["100", "1.5", 2]], "asks": [["101", "2", 1]]}'

        view = coinbase.parse_l2_view("https://x/products/BTC-USD/book?level=2", body)

        assert view == L2View(bids=(("100", "1.5"),), asks=(("101", "2"),), sequence=12)
        assert coinbase.parse_l2_view("https://x/products/BTC-USD/book?level=3", body) is None

    def test_bitstamp_order_book_is_a_view_at_its_microtimestamp(self) -> None:
        body = (
            '{"timestamp": "1700000000", "microtimestamp": "1700000000123456",'
            ' "bids": [["100.5", "1"]], "asks": []}'
        )

        view = bitstamp.parse_l2_view("https://x/api/v2/order_book/btcusd", body)

        assert view == L2View(bids=(("100.5", "1"),), asks=(), time_ms=1_700_000_000_123)
        assert bitstamp.parse_l2_view("https://x/api/v2/order_book/btcusd?group=2", body) is None

    def test_bitstamp_view_without_microtimestamp_cannot_be_placed(self) -> None:
        body = '{"timestamp": "1700000000", "bids": [], "asks": []}'

        with pytest.raises(UnexpectedMessage):
            bitstamp.parse_l2_view("https://x/api/v2/order_book/btcusd", body)


class TestBitfinexChecksum:
    def test_parse_checksum_only_from_cs_frames(self) -> None:
        assert bitfinex.parse_checksum('[17470,"cs",-1234567890,4,1574694475300]') == -1234567890
        assert bitfinex.parse_checksum(b'[17470,"cs",5]') == 5
        assert bitfinex.parse_checksum('[17470,"hb",5,1574694475300]') is None

    def test_id_order_within_a_level_and_negative_asks(self) -> None:
        """Same price: ids ascending (Bitfinex OrderBook model); asks hashed as negative."""
        orders = [("20", "B", "100", "1"), ("10", "B", "100", "2"), ("30", "A", "101", "0.5")]

        expected = zlib.crc32(b"10:2:30:-0.5:20:1")
        assert bitfinex.book_checksum(orders) == expected - 2**32

    def test_same_as_the_collectors_book(self) -> None:
        """The adapter's checksum (QA) and L3Book's (the collector) agree on random books."""
        rng = random.Random(17)
        book = L3Book(track_queues=True)
        orders: dict[str, tuple[str, str, str]] = {}
        for i in range(400):
            oid, side = str(1000 + i), rng.choice("BA")
            price = str(100 + rng.randint(-30, 30) / 2)
            size = f"{rng.randint(1, 500) / 100}"
            book.add(oid, side, price, size)
            orders[oid] = (side, price, size)

        ours = bitfinex.book_checksum((oid, *o) for oid, o in orders.items())

        assert ours == book.checksum()
