"""Pure SCD type 2 diff: the current versions against what the exchange lists now.

No I/O and no clock: the poller reads the current rows, calls :func:`diff`, and applies the
result in one transaction. Unchanged instruments produce nothing to write.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

from collector.exchanges.listing import Listing

# The attributes whose change makes a new version (order matters for the hash).
TRACKED_ATTRIBUTES = (
    "base",
    "quote",
    "status",
    "trading_enabled",
    "tick_size",
    "lot_size",
    "min_notional",
)


class DuplicateListingError(ValueError):
    """The exchange listed the same trading pair twice: the poll cannot be trusted."""


def attr_hash(listing: Listing) -> str:
    """sha256 (hex) of the tracked attributes; None and "" are distinct."""
    parts = []
    for name in TRACKED_ATTRIBUTES:
        value = getattr(listing, name)
        parts.append("\x00" if value is None else str(value))
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class CurrentVersion:
    """What the diff needs to know about one current row."""

    id: int
    trading_pair: str
    attr_hash: str
    status: str
    trading_enabled: bool


@dataclass(frozen=True, slots=True)
class Change:
    """A listed pair whose tracked attributes differ from its current version."""

    old: CurrentVersion
    new: Listing
    new_hash: str

    @property
    def status_changed(self) -> bool:
        return (self.old.status, self.old.trading_enabled) != (
            self.new.status,
            self.new.trading_enabled,
        )


@dataclass(frozen=True)
class Diff:
    """Rows to close and rows to insert for one poll of one exchange."""

    new: list[tuple[Listing, str]] = field(default_factory=list)  # (listing, attr hash)
    changed: list[Change] = field(default_factory=list)
    delisted: list[CurrentVersion] = field(default_factory=list)
    unchanged: int = 0
    kept: int = 0  # current pairs not in the listings but in ``keep`` (left as they are)

    @property
    def is_empty(self) -> bool:
        return not (self.new or self.changed or self.delisted)


def diff(
    current: Iterable[CurrentVersion],
    listings: Sequence[Listing],
    keep: Collection[str] = (),
) -> Diff:
    """Compare the current versions with the listings of one poll.

    ``keep`` names pairs the exchange did list but whose listing was refused (it does not fit
    the grammar): their current versions are neither changed nor delisted, because the poll
    says nothing trustworthy about them. Results are sorted by trading pair, so the same
    inputs always give the same output.

    Raises:
        DuplicateListingError: a trading pair appears twice in ``listings``, or both in
            ``listings`` and in ``keep`` (listed twice, once refused).
    """
    by_pair = {c.trading_pair: c for c in current}
    seen: set[str] = set()
    result = Diff()
    unchanged = 0
    for listing in sorted(listings, key=lambda x: x.trading_pair):
        pair = listing.trading_pair
        if pair in seen or pair in keep:
            raise DuplicateListingError(f"{listing.exchange} lists {pair!r} more than once")
        seen.add(pair)
        h = attr_hash(listing)
        old = by_pair.get(pair)
        if old is None:
            result.new.append((listing, h))
        elif old.attr_hash != h:
            result.changed.append(Change(old=old, new=listing, new_hash=h))
        else:
            unchanged += 1
    gone = [c for p, c in by_pair.items() if p not in seen]
    kept = sum(1 for c in gone if c.trading_pair in keep)
    result.delisted.extend(
        sorted((c for c in gone if c.trading_pair not in keep), key=lambda c: c.trading_pair)
    )
    return Diff(result.new, result.changed, result.delisted, unchanged, kept)
