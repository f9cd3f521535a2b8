"""The pure SCD2 diff."""

from __future__ import annotations

import dataclasses

import pytest

from collector.exchanges import binance
from collector.exchanges.listing import Listing
from secmaster.scd2 import CurrentVersion, Diff, DuplicateListingError, attr_hash, diff
from tests.secmaster.conftest import RecordedBodies
from tests.secmaster.listingkit import parse_listings


def _lst(pair: str, status: str = "TRADING", tick: str | None = "0.01") -> Listing:
    return Listing(
        "binance", pair, pair[:3], pair[3:], status, status == "TRADING", tick, "0.001", "10"
    )


def _current(listings: list[Listing]) -> list[CurrentVersion]:
    return [
        CurrentVersion(i, x.trading_pair, attr_hash(x), x.status, x.trading_enabled)
        for i, x in enumerate(listings, start=1)
    ]


class TestDiff:
    def test_empty_table_everything_is_new(self) -> None:
        """Against no current rows every listing is new, sorted by pair."""
        listings = [_lst("ETHBTC"), _lst("BNBBTC")]

        d = diff([], listings)

        assert [x.trading_pair for x, _ in d.new] == ["BNBBTC", "ETHBTC"]
        assert (d.changed, d.delisted, d.unchanged) == ([], [], 0)

    def test_second_run_on_same_listings_changes_nothing(
        self, recorded_bodies: RecordedBodies
    ) -> None:
        """The recorded exchangeInfo diffed against itself is empty."""
        listings = parse_listings(binance, recorded_bodies.binance)

        d = diff(_current(listings), listings)

        assert d.is_empty
        assert d.unchanged == 1695

    def test_new_changed_delisted(self) -> None:
        """One added, one tick change, one removed, one status change; the rest unchanged."""
        old = [_lst("AAABTC"), _lst("BBBBTC"), _lst("CCCBTC"), _lst("DDDBTC")]
        current = _current(old)
        now = [_lst("AAABTC"), _lst("BBBBTC", tick="0.1"), _lst("DDDBTC", "BREAK"), _lst("EEEBTC")]

        d = diff(current, now)

        assert [x.trading_pair for x, _ in d.new] == ["EEEBTC"]
        assert [(c.old.id, c.new.tick_size, c.status_changed) for c in d.changed] == [
            (2, "0.1", False),
            (4, "0.01", True),
        ]
        assert [c.trading_pair for c in d.delisted] == ["CCCBTC"]
        assert d.unchanged == 1
        assert rows_to_close(d) == [2, 4, 3]

    def test_duplicate_pair_is_refused(self) -> None:
        """A listing that names a pair twice cannot be trusted."""
        with pytest.raises(DuplicateListingError, match="ETHBTC"):
            diff([], [_lst("ETHBTC"), _lst("ETHBTC")])

    def test_kept_pairs_are_neither_changed_nor_delisted(self) -> None:
        """A current pair whose listing was refused (in ``keep``) is left as it is."""
        current = _current([_lst("AAABTC"), _lst("BBBBTC")])

        d = diff(current, [_lst("AAABTC")], keep={"BBBBTC", "ZZZ\nBTC"})

        assert (d.new, d.changed, d.delisted, d.unchanged, d.kept) == ([], [], [], 1, 1)

    def test_pair_both_listed_and_refused_is_a_duplicate(self) -> None:
        """Listed twice, once refused: the poll cannot be trusted either."""
        with pytest.raises(DuplicateListingError, match="ETHBTC"):
            diff([], [_lst("ETHBTC")], keep={"ETHBTC"})


class TestAttrHash:
    def test_every_tracked_attribute_counts(self) -> None:
        """Changing any tracked attribute changes the hash; None differs from ''."""
        base = _lst("ETHBTC")
        variants = [
            dataclasses.replace(base, base="X"),
            dataclasses.replace(base, quote="X"),
            dataclasses.replace(base, status="BREAK"),
            dataclasses.replace(base, trading_enabled=False),
            dataclasses.replace(base, tick_size="0.1"),
            dataclasses.replace(base, lot_size="1"),
            dataclasses.replace(base, min_notional=None),
            dataclasses.replace(base, min_notional=""),
        ]

        hashes = {attr_hash(v) for v in variants}

        assert len(hashes) == len(variants)
        assert attr_hash(base) not in hashes
        assert attr_hash(dataclasses.replace(base, trading_pair="OTHER")) == attr_hash(base)


def rows_to_close(d: Diff) -> list[int]:
    """Ids of the current rows a diff closes: changed versions, then delisted ones."""
    return [c.old.id for c in d.changed] + [x.id for x in d.delisted]
