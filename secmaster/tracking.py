"""Changing the tracked universe: ``track``/``untrack`` of one pair or of a selection of the
listings, dry runs, and auto-track of new listings after a sync.

What is selected (:class:`Selection`): one pair, or filters over this host's listings:
``quote``, ``base``, ``status`` (every filter given must match), or ``all``. Without a pair one
filter or ``all`` is required: a bare ``track binance`` would take ~1,500 pairs and is refused.

- ``track`` of a pair: the pair must be listed now (a delisted or never-listed pair is refused
  with a clear message, a near miss gets a "did you mean"); of a selection: the current
  listings that match. Every selected pair is checked against the adapter's symbol grammar
  again (a poll never stores a pair outside it, so one found is a row written by hand): a
  named pair outside it is refused, one in a selection is skipped and reported.
- ``untrack`` of a pair: its tracked streams; of a selection: the tracked streams of the
  exchange whose pair matches: ``quote``/``base`` from its latest listed version, ``status``
  from its listing state as ``secmaster tracked`` shows it (the current status, ``delisted`` or
  ``unknown``), so ``untrack binance --status delisted`` clears what the exchange dropped.
- A dry run selects and checks the same way, then reports what would change and writes
  nothing (not even the default universe).
- Auto-track (``[secmaster] auto_track``): after a sync, the NEW listings of each exchange
  polled successfully (not its first load, whose listings are all "new") that match a rule
  are tracked with the rule's data types, except streams an operator untracked: an untracked
  pair stays untracked. What was added is logged and alerted.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog
from sqlalchemy import Engine, func, select

from collector.common.alerts import Alert, send_alert
from secmaster.models import Instrument
from secmaster.names import (
    Stream,
    UniverseError,
    check_data_types,
    check_filter,
    check_pair,
    pair_error,
    stream_key,
)
from secmaster.poller import SyncResult
from secmaster.settings import AutoTrackRule
from secmaster.universe import Universe, listing_states

log = structlog.get_logger()

# Selected pairs skipped (outside the grammar) are named up to this many.
_MAX_NAMED = 20


@dataclass(frozen=True)
class Selection:
    """Which pairs of one exchange a track/untrack is about (see the module docstring)."""

    exchange: str
    pair: str | None = None
    quote: str | None = None
    base: str | None = None
    status: str | None = None
    all: bool = False

    def filters(self) -> list[tuple[str, str]]:
        given = (("quote", self.quote), ("base", self.base), ("status", self.status))
        return [(k, v) for k, v in given if v is not None]

    def check(self, verb: str) -> None:
        """Refuse an incomplete or contradictory selection and filters that match nothing.

        Raises:
            UniverseError: one line saying what to give instead.
        """
        filters = self.filters()
        if self.pair is not None:
            check_pair(self.exchange, self.pair)
            if filters or self.all:
                raise UniverseError(
                    "give a pair or filters (--quote, --base, --status, --all), not both"
                )
            return
        if not filters and not self.all:
            raise UniverseError(
                f"`{verb} {self.exchange}` needs a pair, a filter (--quote, --base, --status) "
                f"or --all (to {verb} every {self.exchange} pair)"
            )
        if filters and self.all:
            raise UniverseError("--all takes no filter (--quote, --base, --status)")
        for name, value in filters:
            check_filter(name, value)

    def describe(self) -> str:
        """The selection as one line (``binance --quote USDT``)."""
        if self.pair is not None:
            return f"{self.exchange} {self.pair}"
        if self.all:
            return f"{self.exchange} --all"
        return " ".join([self.exchange, *(f"--{k} {v}" for k, v in self.filters())])


@dataclass(frozen=True)
class Change:
    """What a track/untrack did (or, in a dry run, would do)."""

    streams: tuple[Stream, ...]  # added, or removed
    unchanged: tuple[Stream, ...] = ()  # selected and already tracked (track)
    skipped: tuple[str, ...] = ()  # why selected pairs were left out (outside the grammar)
    pairs: int = 0  # pairs selected
    dry_run: bool = False


# --- selection ---------------------------------------------------------------------------


def _listing_state(engine: Engine, exchange: str, pair: str) -> str:
    return listing_states(engine, [exchange]).get((exchange, pair), "unknown")


def _not_listed_message(engine: Engine, exchange: str, pair: str) -> str:
    t = Instrument.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        total = conn.execute(
            select(func.count()).select_from(t).where(t.c.exchange == exchange)
        ).scalar()
        if not total:
            return (
                f"{exchange} {pair} is not listed: no {exchange} listings yet "
                f"(run `secmaster sync --exchange {exchange}` first)"
            )
        similar = conn.execute(
            select(t.c.trading_pair).where(
                t.c.exchange == exchange,
                t.c.is_current.is_(True),
                func.replace(func.replace(func.upper(t.c.trading_pair), "-", ""), "/", "")
                == pair.upper().replace("-", "").replace("/", ""),
            )
        ).scalar()
    hint = f" (did you mean {similar}?)" if similar else ""
    return f"{exchange} {pair} is not listed{hint}"


def _listed_pair(engine: Engine, exchange: str, pair: str) -> str:
    """A pair named on the command line, if it may be tracked (else UniverseError)."""
    state = _listing_state(engine, exchange, pair)
    if state == "delisted":
        raise UniverseError(f"{exchange} {pair} is delisted: it cannot be tracked")
    if state == "unknown":
        # A pair outside the grammar is never stored by a poll, so it lands here too.
        raise UniverseError(_not_listed_message(engine, exchange, pair))
    error = pair_error(exchange, pair)
    if error is not None:  # a row stored before listings were screened, or by hand
        raise UniverseError(f"{error}: it cannot be tracked")
    return pair


def _matching_listings(engine: Engine, sel: Selection) -> tuple[list[str], list[str]]:
    """Current listings of the exchange that match the filters: (pairs, skipped reasons)."""
    t = Instrument.__table__  # type: ignore[attr-defined]
    cond = [t.c.exchange == sel.exchange, t.c.is_current.is_(True)]
    cond += [t.c[name] == value for name, value in sel.filters()]
    with engine.connect() as conn:
        found = [
            str(r[0])
            for r in conn.execute(select(t.c.trading_pair).where(*cond).order_by(t.c.trading_pair))
        ]
    if not found:
        if not listing_states(engine, [sel.exchange]):
            raise UniverseError(_not_listed_message(engine, sel.exchange, "(any pair)"))
        raise UniverseError(f"no current listing matches {sel.describe()}")
    pairs, skipped = [], []
    for pair in found:
        error = pair_error(sel.exchange, pair)
        if error is None:
            pairs.append(pair)
        else:
            skipped.append(error)
    return pairs, skipped


def _latest_versions(engine: Engine, exchange: str) -> dict[str, tuple[str, str]]:
    """pair → (base, quote) of its latest version (current, or the one that closed)."""
    t = Instrument.__table__  # type: ignore[attr-defined]
    out: dict[str, tuple[str, str]] = {}
    with engine.connect() as conn:
        rows = conn.execute(
            select(t.c.trading_pair, t.c.base, t.c.quote)
            .where(t.c.exchange == exchange)
            .order_by(t.c.valid_from, t.c.id)
        )
        for pair, base, quote in rows:
            out[str(pair)] = (str(base), str(quote))
    return out


def _tracked_matching(engine: Engine, sel: Selection, tracked: Sequence[Stream]) -> list[Stream]:
    """The tracked streams whose pair matches the selection's filters (untrack)."""
    if sel.all:
        return list(tracked)
    versions = _latest_versions(engine, sel.exchange)
    states = listing_states(engine, [sel.exchange])
    out = []
    for stream in tracked:
        pair = stream[1]
        base, quote = versions.get(pair, (None, None))
        status = states.get((sel.exchange, pair), "unknown")
        if sel.base in (None, base) and sel.quote in (None, quote) and sel.status in (None, status):
            out.append(stream)
    return out


# --- track / untrack ---------------------------------------------------------------------


def track(
    universe: Universe,
    engine: Engine,
    sel: Selection,
    data_types: Sequence[str],
    *,
    user: str,
    now: dt.datetime,
    dry_run: bool = False,
    on_change: Callable[[], None] | None = None,
) -> Change:
    """Add the streams of the selected pairs (see the module docstring).

    Raises:
        UniverseError: a bad selection or data type, a named pair that is not (or no longer)
            listed or outside the grammar, or a selection that matches no current listing.
    """
    sel.check("track")
    wanted = check_data_types(sel.exchange, data_types)
    if sel.pair is not None:
        pairs, skipped = [_listed_pair(engine, sel.exchange, sel.pair)], list[str]()
    else:
        pairs, skipped = _matching_listings(engine, sel)
    candidates = [(sel.exchange, p, d) for p in pairs for d in wanted]
    if dry_run:
        current = {r.stream for r in universe.rows(now=now, user=user, dry_run=True)}
        added = sorted(s for s in candidates if s not in current)
    else:
        added = universe.add(candidates, now=now, user=user)
    change = Change(
        streams=tuple(added),
        unchanged=tuple(sorted(set(candidates) - set(added))),
        skipped=tuple(skipped),
        pairs=len(pairs),
        dry_run=dry_run,
    )
    _log_change("track", sel, change, user, universe.location)
    if added and not dry_run and on_change is not None:
        on_change()
    return change


def untrack(
    universe: Universe,
    engine: Engine,
    sel: Selection,
    data_types: Sequence[str] | None,
    *,
    user: str,
    now: dt.datetime,
    dry_run: bool = False,
    on_change: Callable[[], None] | None = None,
) -> Change:
    """Remove tracked streams of the selected pairs (all their data types when
    ``data_types`` is None).

    Raises:
        UniverseError: a bad selection or data type, or nothing tracked matches.
    """
    sel.check("untrack")
    types = check_data_types(sel.exchange, data_types) if data_types is not None else None
    # Selected without writing anything (a refused untrack leaves the store as it was);
    # remove() writes the default universe first where it never was.
    rows = universe.rows(now=now, user=user, dry_run=True)
    tracked = [
        r.stream
        for r in rows
        if r.stream[0] == sel.exchange and (types is None or r.stream[2] in types)
    ]
    if sel.pair is not None:
        chosen = [s for s in tracked if s[1] == sel.pair]
        if not chosen:
            what = f" ({', '.join(data_types)})" if data_types else ""
            raise UniverseError(f"{sel.exchange} {sel.pair}{what} is not tracked")
        error = pair_error(sel.exchange, sel.pair)
        if error is not None:  # removing a row that never should have been there is the fix
            log.warning("secmaster.universe.untrack_outside_grammar", error=error)
    else:
        chosen = _tracked_matching(engine, sel, tracked)
        if not chosen:
            raise UniverseError(f"no tracked stream matches {sel.describe()}")
    removed = sorted(chosen) if dry_run else universe.remove(chosen, now=now, user=user)
    change = Change(streams=tuple(removed), pairs=len({s[1] for s in chosen}), dry_run=dry_run)
    _log_change("untrack", sel, change, user, universe.location)
    if removed and not dry_run and on_change is not None:
        on_change()
    return change


def _log_change(verb: str, sel: Selection, change: Change, user: str, where: str) -> None:
    log.info(
        f"secmaster.universe.{verb}{'_dry_run' if change.dry_run else 'ed'}",
        selection=sel.describe(),
        pairs=change.pairs,
        streams=len(change.streams),
        unchanged=len(change.unchanged),
        skipped=len(change.skipped),
        user=user,
        universe=where,
    )
    if change.skipped:
        log.warning(
            "secmaster.universe.skipped_outside_grammar",
            count=len(change.skipped),
            reasons=list(change.skipped[:_MAX_NAMED]),
        )


# --- auto-track --------------------------------------------------------------------------


def auto_track_streams(
    rules: Sequence[AutoTrackRule], results: Sequence[SyncResult]
) -> list[Stream]:
    """The streams the rules ask for among the new listings of the successful polls."""
    wanted: list[Stream] = []
    for result in results:
        if not result.ok or result.initial_load:
            continue
        for rule in rules:
            for listing in result.new_listings:
                if rule.matches(listing):
                    wanted += [(listing.exchange, listing.trading_pair, d) for d in rule.data_types]
    return sorted(set(wanted))


def auto_track(
    universe: Universe,
    rules: Sequence[AutoTrackRule],
    results: Sequence[SyncResult],
    *,
    user: str,
    now: dt.datetime,
) -> list[Stream]:
    """Track what :func:`auto_track_streams` asks for, except streams an operator removed;
    log and alert what was added. Returns the streams added."""
    wanted = auto_track_streams(rules, results)
    if not wanted:
        return []
    added = universe.add(wanted, now=now, user=user, skip_removed=True)
    log.info(
        "secmaster.auto_track.done",
        matched=len(wanted),
        added=[stream_key(s) for s in added[:50]],
        count=len(added),
        universe=universe.location,
    )
    if added:
        names = [stream_key(s) for s in added]
        shown = ", ".join(names[:50]) + (f" (+{len(names) - 50} more)" if len(names) > 50 else "")
        digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]
        send_alert(
            Alert(
                source="secmaster",
                severity="warning",
                title=f"auto-track: {len(added)} new stream(s) tracked",
                key=f"secmaster:auto-track:{digest}",
                fields={"streams": shown, "rules": "; ".join(r.describe() for r in rules)},
            )
        )
    return added
