"""The tracked universe: which (exchange, trading pair, data type) streams the fleet collects.

One interface (:class:`Universe`), two stores, chosen by ``[secmaster] universe``:

- ``local`` (the default, one host): the ``tracked`` table beside the SCD2 history in this
  host's database (:class:`TableUniverse`);
- ``s3`` (a fleet): one document in the fleet's bucket that every host reads
  (``secmaster.shared_universe.SharedUniverse``), so a ``track`` on any host reaches all.

Every reader and writer goes through :func:`open_universe`: ``secmaster track/untrack/tracked``,
auto-track after a sync, the poller (which delisted pairs were tracked) and
:func:`tracked_streams`, what ``ops.fleet`` renders from. Nothing is cached: each call reads the
store. The default universe (BTCUSDT on Binance and BTC-USD on Coinbase, trade and book) is
written on first use, once, in either store: untracking it later sticks. A removed stream is
remembered (the ``untracked`` table, the document's ``removed`` list) so that auto-track never
adds it back; an explicit ``track`` does.

The listings (the SCD2 history) stay in each host's own database: every host polls the
exchanges itself, and the listing state of a tracked pair (current, delisted, never seen) is
this host's view.

Names are untrusted (``secmaster.names``). :func:`tracked_streams` checks every row again and
skips, logs and alerts one that does not fit (defence in depth: a row written by hand, or a
hostile document in the bucket).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog
from sqlalchemy import Engine, delete, select
from sqlmodel import Session

from collector.common.alerts import Alert, send_alert
from collector.common.config import Config
from secmaster.models import UNTRACKED_TABLE, Instrument, Meta, Tracked, Untracked, open_engine
from secmaster.names import Stream, stream_error
from secmaster.settings import SecmasterSettings, build_secmaster_settings
from secmaster.stamp import os_user, utc_now

log = structlog.get_logger()

DEFAULT_UNIVERSE: tuple[Stream, ...] = (
    ("binance", "BTCUSDT", "book"),
    ("binance", "BTCUSDT", "trade"),
    ("coinbase", "BTC-USD", "book"),
    ("coinbase", "BTC-USD", "trade"),
)
_INITIALIZED_KEY = "universe_initialized"


@dataclass(frozen=True)
class UniverseRow:
    """One stream of the universe, with who added it and when."""

    stream: Stream
    added_datetime: dt.datetime
    added_user: str


class Universe(Protocol):
    """Where the tracked universe lives. Every method writes the default universe first if
    the store never had one (``rows(dry_run=True)`` only pretends to)."""

    @property
    def location(self) -> str: ...  # for messages: the database or the s3:// URL

    def rows(self, *, now: dt.datetime, user: str, dry_run: bool = False) -> list[UniverseRow]:
        """Every stream, sorted."""
        ...

    def add(
        self, streams: Sequence[Stream], *, now: dt.datetime, user: str, skip_removed: bool = False
    ) -> list[Stream]:
        """Add streams; returns those that were new, sorted. ``skip_removed``: leave out the
        streams an operator removed (auto-track); otherwise adding one forgets its removal."""
        ...

    def remove(self, streams: Sequence[Stream], *, now: dt.datetime, user: str) -> list[Stream]:
        """Remove streams (remembering them as removed); returns those that were there."""
        ...


# --- the local store ---------------------------------------------------------------------


def _initialized(session: Session) -> bool:
    return session.get(Meta, _INITIALIZED_KEY) is not None


def _ensure_default(session: Session, now: dt.datetime, user: str) -> None:
    """Write the default universe if this database never had one."""
    if _initialized(session):
        return
    for exchange, pair, data_type in DEFAULT_UNIVERSE:
        if session.get(Tracked, (exchange, pair, data_type)) is None:
            session.add(
                Tracked(
                    exchange=exchange,
                    trading_pair=pair,
                    data_type=data_type,
                    added_datetime=now,
                    added_user=user,
                )
            )
    session.add(Meta(key=_INITIALIZED_KEY, value=now.isoformat()))
    session.flush()
    log.info("secmaster.universe.default_created", streams=len(DEFAULT_UNIVERSE))


class TableUniverse:
    """The universe in the ``tracked`` table of this host's database (``universe = "local"``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def location(self) -> str:
        return "the local tracked table"

    def rows(self, *, now: dt.datetime, user: str, dry_run: bool = False) -> list[UniverseRow]:
        with Session(self.engine) as session, session.begin():
            if dry_run and not _initialized(session):
                return [UniverseRow(s, now, user) for s in DEFAULT_UNIVERSE]
            _ensure_default(session, now, user)
            rows = session.execute(select(Tracked)).scalars().all()
            out = [
                UniverseRow(
                    (r.exchange, r.trading_pair, r.data_type), r.added_datetime, r.added_user
                )
                for r in rows
            ]
        return sorted(out, key=lambda r: r.stream)

    def add(
        self, streams: Sequence[Stream], *, now: dt.datetime, user: str, skip_removed: bool = False
    ) -> list[Stream]:
        added: list[Stream] = []
        with Session(self.engine) as session, session.begin():
            _ensure_default(session, now, user)
            UNTRACKED_TABLE.create(session.connection(), checkfirst=True)
            for stream in dict.fromkeys(streams):
                if session.get(Tracked, stream) is not None:
                    continue
                gone = session.get(Untracked, stream)
                if gone is not None:
                    if skip_removed:
                        continue
                    session.delete(gone)
                ex, pair, data_type = stream
                session.add(
                    Tracked(
                        exchange=ex,
                        trading_pair=pair,
                        data_type=data_type,
                        added_datetime=now,
                        added_user=user,
                    )
                )
                added.append(stream)
        return sorted(added)

    def remove(self, streams: Sequence[Stream], *, now: dt.datetime, user: str) -> list[Stream]:
        removed: list[Stream] = []
        t = Tracked.__table__  # type: ignore[attr-defined]
        with Session(self.engine) as session, session.begin():
            _ensure_default(session, now, user)
            UNTRACKED_TABLE.create(session.connection(), checkfirst=True)
            for stream in dict.fromkeys(streams):
                ex, pair, data_type = stream
                if session.get(Tracked, stream) is None:
                    continue
                session.execute(
                    delete(t).where(
                        t.c.exchange == ex, t.c.trading_pair == pair, t.c.data_type == data_type
                    )
                )
                session.merge(
                    Untracked(
                        exchange=ex,
                        trading_pair=pair,
                        data_type=data_type,
                        removed_datetime=now,
                        removed_user=user,
                    )
                )
                removed.append(stream)
        return sorted(removed)


def open_universe(settings: SecmasterSettings, engine: Engine) -> Universe:
    """The universe ``settings`` name; ``engine`` is this host's database (the local store).

    Raises:
        UniverseUnavailableError (``secmaster.shared_universe``): not for opening (that makes
            no request), but for any later call when the bucket cannot be reached.
    """
    if settings.universe == "s3" and settings.shared is not None:
        from secmaster.shared_universe import SharedUniverse

        return SharedUniverse.open(settings.shared)
    return TableUniverse(engine)


# --- readers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TrackedStream:
    """One row of ``secmaster tracked``: the stream plus what the listings say about it."""

    exchange: str
    trading_pair: str
    data_type: str
    listing: str  # current status, "delisted", or "unknown" (never seen in a poll)
    added_datetime: dt.datetime
    added_user: str


def listing_states(engine: Engine, exchanges: Sequence[str] = ()) -> dict[tuple[str, str], str]:
    """``(exchange, pair)`` → current status, or ``delisted`` for a pair seen in a poll and
    gone since (a pair never seen has no entry: "unknown"). Two queries, whatever the size."""
    t = Instrument.__table__  # type: ignore[attr-defined]
    cond = [t.c.exchange.in_(exchanges)] if exchanges else []
    with engine.connect() as conn:
        seen = conn.execute(select(t.c.exchange, t.c.trading_pair).where(*cond).distinct())
        states = {(r[0], r[1]): "delisted" for r in seen}
        current = conn.execute(
            select(t.c.exchange, t.c.trading_pair, t.c.status).where(
                t.c.is_current.is_(True), *cond
            )
        )
        for ex, pair, status in current:
            states[(ex, pair)] = str(status)
    return states


def list_tracked(
    universe: Universe, engine: Engine, now: dt.datetime, user: str
) -> list[TrackedStream]:
    """Every tracked stream, sorted, with its listing state (creates the default universe)."""
    rows = universe.rows(now=now, user=user)
    states = listing_states(engine, sorted({r.stream[0] for r in rows}))
    return [
        TrackedStream(
            *r.stream,
            states.get(r.stream[:2], "unknown"),
            r.added_datetime,
            r.added_user,
        )
        for r in rows
    ]


def tracked_pairs(universe: Universe, exchange: str, now: dt.datetime, user: str) -> set[str]:
    """Pairs of ``exchange`` in the universe (the poller's "was a delisted pair tracked?")."""
    return {r.stream[1] for r in universe.rows(now=now, user=user) if r.stream[0] == exchange}


def tracked_streams(config: Config) -> list[Stream]:
    """The streams the fleet should collect: ``(exchange, symbol, data_type)``, sorted.

    Reads the universe afresh (with ``universe = "s3"``: one GET of the document) every call.
    Pairs known to be delisted are left out (an error alert was raised when they went);
    pairs never seen in a poll (e.g. the default universe before the first sync) stay in.
    A row outside the grammar (:func:`secmaster.names.stream_error`) is left out with an error
    log and alert. A universe that cannot be read raises (never an empty fleet).
    """
    settings = build_secmaster_settings(config)
    engine = open_engine(settings.database_url)
    try:
        streams = list_tracked(open_universe(settings, engine), engine, utc_now(), os_user())
    finally:
        engine.dispose()
    skipped = [s for s in streams if s.listing == "delisted"]
    if skipped:
        log.warning(
            "secmaster.universe.delisted_skipped",
            streams=[f"{s.exchange}:{s.trading_pair}:{s.data_type}" for s in skipped],
        )
    out: list[Stream] = []
    refused: list[str] = []
    for s in streams:
        if s.listing == "delisted":
            continue
        error = stream_error(s.exchange, s.trading_pair, s.data_type)
        if error is None:
            out.append((s.exchange, s.trading_pair, s.data_type))
        else:
            refused.append(error)
    if refused:
        log.error("secmaster.universe.refused", count=len(refused), reasons=refused[:50])
        send_alert(
            Alert(
                source="secmaster",
                severity="error",
                title=f"{len(refused)} tracked stream(s) outside the name grammar: not rendered",
                key="secmaster:universe:refused",
                fields={"reason": refused[0], "count": str(len(refused))},
            )
        )
    return out
