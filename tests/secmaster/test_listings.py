"""Listing parsers on the recorded bodies and on hand-built shapes from the docs."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest

from collector.common.errors import UnexpectedMessage
from collector.exchanges import binance, bitfinex, bitstamp, coinbase
from collector.exchanges.listing import Listing
from tests.secmaster.conftest import BITFINEX_LISTING, RecordedBodies
from tests.secmaster.listingkit import parse_listings


class TestBinance:
    def test_recorded_every_symbol_parses(self, recorded_bodies: RecordedBodies) -> None:
        """All 1695 recorded symbols become listings with the venue's strings."""
        listings = parse_listings(binance, recorded_bodies.binance)

        assert len(listings) == 1695
        assert len({x.trading_pair for x in listings}) == 1695
        assert Counter(x.status for x in listings) == {"TRADING": 1262, "BREAK": 433}
        assert all(x.tick_size and x.lot_size and x.min_notional for x in listings)
        assert listings[0] == Listing(
            exchange="binance",
            trading_pair="ETHBTC",
            base="ETH",
            quote="BTC",
            status="TRADING",
            trading_enabled=True,
            tick_size="0.00000100",
            lot_size="0.00010000",
            min_notional="0.00010000",
        )

    def test_notional_filter_when_min_notional_is_gone(self) -> None:
        """The 2023 NOTIONAL filter supplies min_notional; a halted symbol is not trading."""
        body = orjson.dumps(
            {
                "symbols": [
                    {
                        "symbol": "BTCUSDT",
                        "status": "HALT",
                        "baseAsset": "BTC",
                        "quoteAsset": "USDT",
                        "filters": [
                            {"filterType": "PRICE_FILTER", "tickSize": "0.01000000"},
                            {"filterType": "LOT_SIZE", "stepSize": "0.00001000"},
                            {"filterType": "NOTIONAL", "minNotional": "5.00000000"},
                        ],
                    }
                ]
            }
        )

        (listing,) = parse_listings(binance, body)

        assert listing == Listing(
            "binance",
            "BTCUSDT",
            "BTC",
            "USDT",
            "HALT",
            False,
            "0.01000000",
            "0.00001000",
            "5.00000000",
        )

    @pytest.mark.parametrize(
        "body",
        [b'{"symbols":[{"symbol":"ETHBTC"', b"[]", b'{"symbols":[{"symbol":"X"}]}', b""],
    )
    def test_malformed_body_raises(self, body: bytes) -> None:
        """Truncated JSON, a wrong shape or missing fields raise UnexpectedMessage."""
        with pytest.raises(UnexpectedMessage):
            parse_listings(binance, body)

    def test_url(self) -> None:
        """The listings URL hangs off the REST base URL."""
        assert (
            binance.build_listings_url("http://127.0.0.1:9/")
            == "http://127.0.0.1:9/api/v3/exchangeInfo"
        )


class TestCoinbase:
    def test_recorded_every_product_parses(self, recorded_bodies: RecordedBodies) -> None:
        """All 162 recorded products become listings; BTC-USD keeps the venue's strings."""
        listings = parse_listings(coinbase, recorded_bodies.coinbase)

        assert len(listings) == 162
        by_pair = {x.trading_pair: x for x in listings}
        assert len(by_pair) == 162
        assert by_pair["BTC-USD"] == Listing(
            exchange="coinbase",
            trading_pair="BTC-USD",
            base="BTC",
            quote="USD",
            status="online",
            trading_enabled=True,
            tick_size="0.01",
            lot_size="0.00000001",
            min_notional="5",
        )

    def test_trading_disabled_keeps_status(self) -> None:
        """trading_disabled turns trading_enabled off while status stays the venue's."""
        body = orjson.dumps(
            [
                {
                    "id": "BTC-USD",
                    "base_currency": "BTC",
                    "quote_currency": "USD",
                    "quote_increment": "0.01",
                    "base_increment": "0.00000001",
                    "min_market_funds": "1",
                    "status": "online",
                    "trading_disabled": True,
                }
            ]
        )

        (listing,) = parse_listings(coinbase, body)

        assert (listing.status, listing.trading_enabled) == ("online", False)

    @pytest.mark.parametrize("body", [b'[{"id":"BTC-USD"', b"{}", b'[{"id":"BTC-USD"}]'])
    def test_malformed_body_raises(self, body: bytes) -> None:
        """Truncated JSON, a wrong shape or missing fields raise UnexpectedMessage."""
        with pytest.raises(UnexpectedMessage):
            parse_listings(coinbase, body)


def _bitstamp_pair(**changes: object) -> dict[str, object]:
    """One trading-pairs-info entry as recorded (btcusd), with ``changes``."""
    entry: dict[str, object] = {
        "trading": "Enabled",
        "base_decimals": 8,
        "url_symbol": "btcusd",
        "name": "BTC/USD",
        "instant_and_market_orders": "Enabled",
        "minimum_order": "20.0 USD",
        "counter_decimals": 2,
        "description": "Bitcoin / U.S. dollar",
    }
    entry.update(changes)
    return entry


class TestBitstamp:
    def test_recorded_every_pair_parses(self, recorded_bodies: RecordedBodies) -> None:
        """All 140 recorded pairs become listings: url_symbol, name's assets, decimals."""
        parsed = bitstamp.parse_listing_body(recorded_bodies.bitstamp)

        assert (len(parsed.listings), parsed.refused) == (140, ())
        by_pair = {x.trading_pair: x for x in parsed.listings}
        assert by_pair["btcusd"] == Listing(
            exchange="bitstamp",
            trading_pair="btcusd",
            base="BTC",
            quote="USD",
            status="Enabled",
            trading_enabled=True,
            tick_size="0.01",
            lot_size="0.00000001",
            min_notional="20.0",
        )
        assert (by_pair["gbpusd"].tick_size, by_pair["gbpusd"].lot_size) == ("0.00001", "0.00001")
        assert Counter(x.quote for x in parsed.listings)["USD"] == 51

    def test_disabled_trading_keeps_the_status(self) -> None:
        """`trading: Disabled` is a status (trading off), not a delisting."""
        body = orjson.dumps([_bitstamp_pair(trading="Disabled")])

        (listing,) = bitstamp.parse_listing_body(body).listings

        assert (listing.status, listing.trading_enabled) == ("Disabled", False)

    @pytest.mark.parametrize(
        ("entry", "reason"),
        [
            (_bitstamp_pair(url_symbol="btc\nusd"), "trading_pair 'btc\\nusd' does not fit"),
            (_bitstamp_pair(url_symbol="BTCUSD"), "trading_pair 'BTCUSD' does not fit"),
            (_bitstamp_pair(url_symbol="btc%usd"), "trading_pair 'btc%usd' does not fit"),
            (_bitstamp_pair(url_symbol="btcusd\u00e9"), "trading_pair 'btcusd\u00e9' does not"),
            (_bitstamp_pair(url_symbol="b" * 100_000), "...(100000 chars) does not fit"),
            (_bitstamp_pair(name="BT\u00c7/USD"), "base 'BT\u00c7' does not fit"),
            (_bitstamp_pair(name="BTCUSD"), "quote '' does not fit"),
            (_bitstamp_pair(name="BTC/USD/X"), "quote 'USD/X' does not fit"),
            (_bitstamp_pair(minimum_order="20.0 EUR"), "min_notional '20.0 EUR' does not fit"),
            (_bitstamp_pair(minimum_order="20%"), "min_notional '20%' does not fit"),
            (_bitstamp_pair(counter_decimals=10**9), "tick_size '1e-1000000000' does not fit"),
            (_bitstamp_pair(base_decimals=-1), "lot_size '1e--1' does not fit"),
        ],
    )
    def test_a_listing_outside_the_grammar_is_refused(
        self, entry: dict[str, object], reason: str
    ) -> None:
        """Refused (with the reason), not stored; the good pair beside it still parses."""
        good = _bitstamp_pair(url_symbol="ethusd", name="ETH/USD")
        body = orjson.dumps([good, entry])

        parsed = bitstamp.parse_listing_body(body)

        assert [x.trading_pair for x in parsed.listings] == ["ethusd"]
        (refused,) = parsed.refused
        assert reason in refused.reason

    @pytest.mark.parametrize(
        "body",
        [
            b'[{"url_symbol":"btcusd"',
            b"{}",
            b"\xff\xfe",
            orjson.dumps([_bitstamp_pair(base_decimals=True)]),
            orjson.dumps([_bitstamp_pair(base_decimals="8")]),
            orjson.dumps([_bitstamp_pair(minimum_order=20)]),
            orjson.dumps([{k: v for k, v in _bitstamp_pair().items() if k != "name"}]),
            orjson.dumps(["btcusd"]),
        ],
    )
    def test_malformed_body_raises(self, body: bytes) -> None:
        """Truncated or non-UTF-8 JSON, a wrong shape or type: the poll fails whole."""
        with pytest.raises(UnexpectedMessage, match="bitstamp trading-pairs-info"):
            bitstamp.parse_listing_body(body)

    def test_url(self) -> None:
        """The recorded path, trailing slash included, under the REST base URL."""
        assert (
            bitstamp.build_listings_url("https://www.bitstamp.net/")
            == "https://www.bitstamp.net/api/v2/trading-pairs-info/"
        )


class TestBitfinex:
    def test_fixture_from_the_docs_parses(self) -> None:
        """3 + 3 names split in the middle, longer ones at their colon; no status given."""
        parsed = bitfinex.parse_listing_body(BITFINEX_LISTING.read_bytes())

        assert (len(parsed.listings), parsed.refused) == (23, ())
        by_pair = {x.trading_pair: x for x in parsed.listings}
        assert by_pair["BTCUSD"] == Listing("bitfinex", "BTCUSD", "BTC", "USD", "listed", True)
        assert (by_pair["TESTBTC:TESTUSD"].base, by_pair["TESTBTC:TESTUSD"].quote) == (
            "TESTBTC",
            "TESTUSD",
        )
        assert (by_pair["1INCH:USD"].base, by_pair["BTCUST"].quote) == ("1INCH", "UST")

    @pytest.mark.parametrize(
        ("name", "reason"),
        [
            ("BTCUSDT", "base '' does not fit"),
            ("btcusd", "trading_pair 'btcusd' does not fit"),
            ("BTC:USD:X", "trading_pair 'BTC:USD:X' does not fit"),
            ("BTC\nUS", "trading_pair 'BTC\\nUS' does not fit"),
            ("[prog]", "trading_pair '[prog]' does not fit"),
            ("BTC%US", "trading_pair 'BTC%US' does not fit"),
            ("BTC\u00dcSD", "trading_pair 'BTC\u00dcSD' does not fit"),
            ("A" * 100_000, "...(100000 chars) does not fit"),
        ],
    )
    def test_a_name_outside_the_grammar_is_refused(self, name: str, reason: str) -> None:
        """Neither 3 + 3 letters nor BASE:QUOTE, or outside SYMBOL_PATTERN: refused."""
        parsed = bitfinex.parse_listing_body(orjson.dumps([["ETHUSD", name]]))

        assert [x.trading_pair for x in parsed.listings] == ["ETHUSD"]
        (refused,) = parsed.refused
        assert reason in refused.reason

    @pytest.mark.parametrize(
        "body",
        [b'[["BTCUSD"', b"{}", b"[]", b'["BTCUSD"]', b'[["BTCUSD", 1]]', b"[[],[]]", b"\xff"],
    )
    def test_malformed_body_raises(self, body: bytes) -> None:
        """Anything but ``[[name, ...]]`` of strings fails the poll whole."""
        with pytest.raises(UnexpectedMessage, match="bitfinex pub:list:pair:exchange"):
            bitfinex.parse_listing_body(body)

    def test_url(self) -> None:
        """The config path under the REST base URL."""
        assert (
            bitfinex.build_listings_url("https://api-pub.bitfinex.com")
            == "https://api-pub.bitfinex.com/v2/conf/pub:list:pair:exchange"
        )
