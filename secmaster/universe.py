"""The tracked universe: which (exchange, trading pair, data type) streams the fleet collects.

The ``tracked`` table is its own table beside the SCD2 history. The default universe
(BTCUSDT on Binance and BTC-USD on Coinbase, trade and book) is written on first use, once:
untracking it later sticks.

Pair names are untrusted. ``track`` and ``untrack`` refuse at once a pair with a control
character or longer than the table allows (one line, value repr'd, nothing read or written).
``track`` then checks the pair against the current listings (a typo or a delisted pair is
refused with a clear message) and against the exchange adapter's symbol grammar
(``SYMBOL_PATTERN``): a poll never stores a pair outside it, so such a pair is "not listed",
and a stored one (written before listings were screened, or by hand) is refused too.
``untrack`` still removes such a tracked row (that is the fix), with a warning.
``tracked_streams`` (what the fleet renders) checks every row again and skips, logs and alerts
one that does not fit (defence in depth).

``track``/``untrack`` take an optional ``on_change`` callable, run after the commit, so ops can
regenerate the collector programs without secmaster importing ops.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog
from sqlalchemy import Engine, delete, func, select
from sqlmodel import Session, col

from collector.common.alerts import Alert, send_alert
from collector.common.config import Config
from collector.exchanges import ADAPTERS
from collector.exchanges.listing import shown
from collector.model import DATA_TYPES
from secmaster.models import Instrument, Meta, Tracked, open_engine
from secmaster.settings import build_secmaster_settings
from secmaster.stamp import os_user, utc_now

log = structlog.get_logger()

DEFAULT_UNIVERSE: tuple[tuple[str, str, str], ...] = (
    ("binance", "BTCUSDT", "book"),
    ("binance", "BTCUSDT", "trade"),
    ("coinbase", "BTC-USD", "book"),
    ("coinbase", "BTC-USD", "trade"),
)
_INITIALIZED_KEY = "universe_initialized"
# Longest trading pair the tables hold (models.Tracked.trading_pair).
MAX_PAIR_LEN = 64


class UniverseError(Exception):
    """A track/untrack request that cannot be honoured (the message says why)."""


@dataclass(frozen=True)
class TrackedStream:
    """One row of ``secmaster tracked``: the stream plus what the listings say about it."""

    exchange: str
    trading_pair: str
    data_type: str
    listing: str  # current status, "delisted", or "unknown" (never seen in a poll)
    added_datetime: dt.datetime
    added_user: str


def is_initialized(session: Session) -> bool:
    return session.get(Meta, _INITIALIZED_KEY) is not None


def ensure_default_universe(session: Session, now: dt.datetime, user: str) -> bool:
    """Write the default universe if this database never had one; True if it did so."""
    if is_initialized(session):
        return False
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
    log.info("secmaster.universe.default_created", streams=len(DEFAULT_UNIVERSE))
    return True


def tracked_pairs(session: Session, exchange: str) -> set[str]:
    """Pairs of ``exchange`` in the universe (the default one if not yet written)."""
    if not is_initialized(session):
        return {p for ex, p, _ in DEFAULT_UNIVERSE if ex == exchange}
    rows = session.execute(
        select(col(Tracked.trading_pair)).where(col(Tracked.exchange) == exchange)
    ).scalars()
    return set(rows)


def _listing_state(session: Session, exchange: str, pair: str) -> str:
    """Current status of a pair, ``delisted`` if it was listed and is gone, else ``unknown``."""
    t = Instrument.__table__  # type: ignore[attr-defined]
    status = session.execute(
        select(t.c.status).where(
            t.c.exchange == exchange, t.c.trading_pair == pair, t.c.is_current.is_(True)
        )
    ).scalar()
    if status is not None:
        return str(status)
    seen = session.execute(
        select(func.count())
        .select_from(t)
        .where(t.c.exchange == exchange, t.c.trading_pair == pair)
    ).scalar()
    return "delisted" if seen else "unknown"


def list_tracked(engine: Engine, now: dt.datetime, user: str) -> list[TrackedStream]:
    """Every tracked stream, sorted, with its listing state (creates the default universe)."""
    with Session(engine) as session, session.begin():
        ensure_default_universe(session, now, user)
        rows = session.execute(select(Tracked)).scalars().all()
        states = {(r.exchange, r.trading_pair): "" for r in rows}
        for ex, pair in states:
            states[(ex, pair)] = _listing_state(session, ex, pair)
        out = [
            TrackedStream(
                r.exchange,
                r.trading_pair,
                r.data_type,
                states[(r.exchange, r.trading_pair)],
                r.added_datetime,
                r.added_user,
            )
            for r in rows
        ]
    return sorted(out, key=lambda s: (s.exchange, s.trading_pair, s.data_type))


def pair_error(exchange: str, pair: str) -> str | None:
    """Why ``pair`` is not a symbol of ``exchange`` (one line, repr'd), or None if it fits."""
    if exchange not in ADAPTERS:
        return f"unknown exchange {shown(exchange)}"
    pattern = ADAPTERS[exchange].SYMBOL_PATTERN
    if not pattern.fullmatch(pair):
        return (
            f"{exchange} pair {shown(pair)} does not fit the {exchange} symbol grammar "
            f"{pattern.pattern}"
        )
    return None


def stream_error(exchange: str, pair: str, data_type: str) -> str | None:
    """Why a universe row must not reach the fleet (one line, values repr'd), or None."""
    error = pair_error(exchange, pair)
    if error is None and data_type not in data_types_of(exchange):
        error = f"data type {shown(data_type)} is not collected on {exchange}"
    return error


def check_pair(exchange: str, pair: str) -> None:
    """Refuse a pair that could not even be shown on one line (a control character) or is
    longer than the table allows, before any lookup.

    Raises:
        UniverseError: naming the pair (repr'd, truncated) and the grammar.
    """
    if pair.isprintable() and 0 < len(pair) <= MAX_PAIR_LEN and exchange in ADAPTERS:
        return
    raise UniverseError(pair_error(exchange, pair) or f"pair {shown(pair)} is not a symbol")


def tracked_streams(config: Config) -> list[tuple[str, str, str]]:
    """The streams the fleet should collect: ``(exchange, symbol, data_type)``, sorted.

    Pairs known to be delisted are left out (an error alert was raised when they went);
    pairs never seen in a poll (e.g. the default universe before the first sync) stay in.
    A row outside the grammar (:func:`stream_error`) is left out with an error log and alert.
    """
    engine = open_engine(build_secmaster_settings(config).database_url)
    try:
        streams = list_tracked(engine, utc_now(), os_user())
    finally:
        engine.dispose()
    skipped = [s for s in streams if s.listing == "delisted"]
    if skipped:
        log.warning(
            "secmaster.universe.delisted_skipped",
            streams=[f"{s.exchange}:{s.trading_pair}:{s.data_type}" for s in skipped],
        )
    out: list[tuple[str, str, str]] = []
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


def data_types_of(exchange: str) -> tuple[str, ...]:
    """Data types the exchange's adapter collects (none for an exchange not in the registry)."""
    adapter = ADAPTERS.get(exchange)
    return adapter.DATA_TYPES if adapter is not None else ()


def check_data_types(exchange: str, data_types: Sequence[str]) -> list[str]:
    """Validate a data type list; raises UniverseError naming the bad value."""
    if not data_types:
        raise UniverseError("no data types given (e.g. --data-types trade,book)")
    supported = data_types_of(exchange)
    for d in data_types:
        if d not in DATA_TYPES:
            raise UniverseError(f"unknown data type {d!r} (choose from {', '.join(DATA_TYPES)})")
        if d not in supported:
            raise UniverseError(
                f"data type {d!r} is not collected on {exchange} "
                f"(supported: {', '.join(supported)})"
            )
    return sorted(set(data_types))


def track(
    engine: Engine,
    exchange: str,
    pair: str,
    data_types: Sequence[str],
    *,
    user: str,
    now: dt.datetime,
    on_change: Callable[[], None] | None = None,
) -> list[tuple[str, str, str]]:
    """Add streams of a currently listed pair; returns the streams that were new.

    Raises:
        UniverseError: the pair does not fit the symbol grammar, unknown data type, or the pair
            is not (or no longer) listed.
    """
    check_pair(exchange, pair)
    wanted = check_data_types(exchange, data_types)
    with Session(engine) as session, session.begin():
        ensure_default_universe(session, now, user)
        state = _listing_state(session, exchange, pair)
        if state == "delisted":
            raise UniverseError(f"{exchange} {pair} is delisted: it cannot be tracked")
        if state == "unknown":
            # A pair outside the grammar is never stored by a poll, so it lands here too.
            raise UniverseError(_not_listed_message(session, exchange, pair))
        error = pair_error(exchange, pair)
        if error is not None:  # a row stored before listings were screened, or by hand
            raise UniverseError(f"{error}: it cannot be tracked")
        added = []
        for d in wanted:
            if session.get(Tracked, (exchange, pair, d)) is None:
                session.add(
                    Tracked(
                        exchange=exchange,
                        trading_pair=pair,
                        data_type=d,
                        added_datetime=now,
                        added_user=user,
                    )
                )
                added.append((exchange, pair, d))
    log.info(
        "secmaster.universe.tracked", exchange=exchange, pair=pair, added=len(added), user=user
    )
    if added and on_change is not None:
        on_change()
    return added


def untrack(
    engine: Engine,
    exchange: str,
    pair: str,
    data_types: Sequence[str] | None,
    *,
    user: str,
    now: dt.datetime,
    on_change: Callable[[], None] | None = None,
) -> list[tuple[str, str, str]]:
    """Remove streams of a pair (all its data types when ``data_types`` is None).

    Raises:
        UniverseError: the pair does not fit the symbol grammar, or it has no tracked stream of
            the given data types.
    """
    check_pair(exchange, pair)
    with Session(engine) as session, session.begin():
        ensure_default_universe(session, now, user)
        t = Tracked.__table__  # type: ignore[attr-defined]
        cond = [t.c.exchange == exchange, t.c.trading_pair == pair]
        if data_types is not None:
            cond.append(t.c.data_type.in_(check_data_types(exchange, data_types)))
        removed = [
            (r[0], r[1], r[2])
            for r in session.execute(
                select(t.c.exchange, t.c.trading_pair, t.c.data_type).where(*cond)
            ).all()
        ]
        if not removed:
            what = f" ({', '.join(data_types)})" if data_types else ""
            raise UniverseError(f"{exchange} {pair}{what} is not tracked")
        error = pair_error(exchange, pair)
        if error is not None:  # removing a row that never should have been there is the fix
            log.warning("secmaster.universe.untrack_outside_grammar", error=error)
        session.execute(delete(t).where(*cond))
    log.info(
        "secmaster.universe.untracked",
        exchange=exchange,
        pair=pair,
        removed=len(removed),
        user=user,
    )
    if on_change is not None:
        on_change()
    return sorted(removed)


def _not_listed_message(session: Session, exchange: str, pair: str) -> str:
    t = Instrument.__table__  # type: ignore[attr-defined]
    total = session.execute(
        select(func.count()).select_from(t).where(t.c.exchange == exchange)
    ).scalar()
    if not total:
        return (
            f"{exchange} {pair} is not listed: no {exchange} listings yet "
            f"(run `secmaster sync --exchange {exchange}` first)"
        )
    similar = session.execute(
        select(t.c.trading_pair).where(
            t.c.exchange == exchange,
            t.c.is_current.is_(True),
            func.replace(func.replace(func.upper(t.c.trading_pair), "-", ""), "/", "")
            == pair.upper().replace("-", "").replace("/", ""),
        )
    ).scalar()
    hint = f" (did you mean {similar}?)" if similar else ""
    return f"{exchange} {pair} is not listed{hint}"
