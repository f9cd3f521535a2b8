"""Listing parsers on the recorded bodies and on hand-built shapes from the docs."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest

from collector.common.errors import UnexpectedMessage
from collector.exchanges import binance, coinbase
from collector.exchanges.listing import Listing
from tests.secmaster.conftest import RecordedBodies


class TestBinance:
    def test_recorded_every_symbol_parses(self, recorded_bodies: RecordedBodies) -> None:
        """All 1695 recorded symbols become listings with the venue's strings."""
        listings = binance.parse_listings(recorded_bodies.binance)

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

        (listing,) = binance.parse_listings(body)

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
            binance.parse_listings(body)

    def test_url(self) -> None:
        """The listings URL hangs off the REST base URL."""
        assert (
            binance.build_listings_url("http://127.0.0.1:9/")
            == "http://127.0.0.1:9/api/v3/exchangeInfo"
        )


class TestCoinbase:
    def test_recorded_every_product_parses(self, recorded_bodies: RecordedBodies) -> None:
        """All 162 recorded products become listings; BTC-USD keeps the venue's strings."""
        listings = coinbase.parse_listings(recorded_bodies.coinbase)

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

        (listing,) = coinbase.parse_listings(body)

        assert (listing.status, listing.trading_enabled) == ("online", False)

    @pytest.mark.parametrize("body", [b'[{"id":"BTC-USD"', b"{}", b'[{"id":"BTC-USD"}]'])
    def test_malformed_body_raises(self, body: bytes) -> None:
        """Truncated JSON, a wrong shape or missing fields raise UnexpectedMessage."""
        with pytest.raises(UnexpectedMessage):
            coinbase.parse_listings(body)
