"""Poll the exchanges' listings over HTTP and apply the SCD2 diff, one transaction per poll.

    sync(settings, exchanges)        take the file lock, then for each exchange (poll_exchange):
      fetch_body(client, url, ...)     one GET with the retry policy (5xx, 429/418, Retry-After)
      parse_body(...)                  parse + screen names + the min_listings guard
      alert_refused(...)               one alert per poll naming the refused listings
      apply_listings(engine, ...)      read current rows, scd2.diff, delist guard, write, commit
      mark_tracked(...)                which delisted / changed pairs are in the universe
      alert_changes(...)               one alert per poll: new, delisted, status changes

Listing names are untrusted: a listing whose pair, assets, status or sizes do not fit the
grammar (``collector.exchanges.listing``, the adapter's ``SYMBOL_PATTERN``) is refused: never
stored, so never trackable, counted in the summary (``N refused``) and alerted with the names
repr'd and truncated; the rest of the poll still applies, and a current row of a refused pair is
left as it is (the exchange still lists it, so it is not a delisting).

A failed or partial poll writes nothing at all and raises an alert; the other exchanges are
still polled. Partial means: an HTTP error after retries, malformed or truncated JSON, fewer
accepted instruments than ``min_listings``, or a poll that would delist more than
``max_delist_pct`` % of the exchange's current listings. Tracked pairs are only ever delisted
by a poll that passes both guards. Exchange knowledge (URL path, body shape) comes from the
adapters' listings capability (``ADAPTERS[x].build_listings_url`` / ``parse_listing_body``);
this module names no exchange.

The universe (``secmaster.universe``, local or shared) is read only when a poll delisted or
changed the status of a pair, to tell whether it was tracked; when it cannot be read, the alert
says so and is an ``error`` (a tracked pair may have gone).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import Engine, insert, select, update
from sqlmodel import Session

from collector.common.alerts import Alert, send_alert
from collector.common.errors import UnexpectedMessage
from collector.common.httpxlib import httpx
from collector.common.locks import hold_lock
from collector.common.retry import Backoff, BackoffSettings, is_retryable_status, retry_after_s
from collector.exchanges import ADAPTERS
from collector.exchanges.listing import Listing, ParsedListings, RefusedListing, shown
from secmaster.models import Instrument, open_engine
from secmaster.names import UniverseStoreError
from secmaster.scd2 import Change, CurrentVersion, Diff, DuplicateListingError, diff
from secmaster.settings import RetrySettings, SecmasterSettings
from secmaster.stamp import os_user as os_user  # re-exported: secmaster.cli imports it here
from secmaster.stamp import utc_now as utc_now  # re-exported: cli, schedule, ops.demo
from secmaster.universe import open_universe, tracked_pairs

log = structlog.get_logger()

USER_AGENT = "l3collector-secmaster/0.1"
# Alert fields list at most this many pairs per category (the count is always exact).
_MAX_LISTED = 50
_CHUNK = 500

Sleep = Callable[[float], None]
Clock = Callable[[], dt.datetime]


class PollError(Exception):
    """A poll that cannot be trusted (HTTP failure, malformed body, partial list)."""

    def __init__(self, message: str, *, exchange: str, url: str = "") -> None:
        super().__init__(message)
        self.exchange = exchange
        self.url = url


class PartialPollError(PollError):
    """A poll whose listing looks truncated (too few instruments, too many delistings)."""


ListingsUrl = Callable[[str], str]
ParseListings = Callable[[str | bytes], ParsedListings]


def listing_source(exchange: str) -> tuple[ListingsUrl, ParseListings]:
    """The adapter's listings capability (``settings.check_exchange`` refuses the others)."""
    adapter = ADAPTERS[exchange]
    build, parse = adapter.build_listings_url, adapter.parse_listing_body
    if build is None or parse is None:
        raise ValueError(f"{exchange} has no listings source")
    return build, parse


# --- fetch -------------------------------------------------------------------------------


def fetch_body(
    client: httpx.Client,
    exchange: str,
    url: str,
    policy: RetrySettings,
    *,
    sleep: Sleep = time.sleep,
    now: Clock = utc_now,
) -> bytes:
    """GET ``url`` with the retry policy; return the 2xx body or raise PollError."""
    attempt = 0
    backoff = Backoff(BackoffSettings(policy.initial_s, policy.max_s, policy.multiplier))
    while True:
        delay: float | None
        try:
            resp = client.get(url)
        except httpx.TransportError as exc:
            reason = f"{type(exc).__name__}: {exc}"
            delay = None
        else:
            if resp.is_success:
                return resp.content
            if not is_retryable_status(resp.status_code):
                raise PollError(f"HTTP {resp.status_code} from {url}", exchange=exchange, url=url)
            reason = f"HTTP {resp.status_code}"
            delay = retry_after_s(resp.headers, now())
            if delay is not None and delay > policy.max_retry_after_s:
                raise PollError(
                    f"{reason} from {url} with Retry-After {delay:.0f} s (limit "
                    f"{policy.max_retry_after_s:.0f} s)",
                    exchange=exchange,
                    url=url,
                )
        if attempt >= policy.retries:
            raise PollError(
                f"{reason} from {url} after {attempt + 1} attempt{'s' if attempt else ''}",
                exchange=exchange,
                url=url,
            )
        wait = delay if delay is not None else backoff.next_delay()
        log.warning(
            "secmaster.fetch.retry",
            exchange=exchange,
            url=url,
            reason=reason,
            attempt=attempt + 1,
            wait_s=round(wait, 3),
        )
        sleep(wait)
        attempt += 1


def parse_body(exchange: str, url: str, body: bytes, min_listings: int) -> ParsedListings:
    """Parse and screen a listings body, then apply the min_listings guard to what was accepted.

    Raises:
        PollError: the body is malformed; PartialPollError: too few accepted instruments.
    """
    _, parse = listing_source(exchange)
    try:
        parsed = parse(body)
    except UnexpectedMessage as exc:
        raise PollError(f"malformed listings body: {exc}", exchange=exchange, url=url) from exc
    if len(parsed.listings) < min_listings:
        refused = f" (+{len(parsed.refused)} refused)" if parsed.refused else ""
        raise PartialPollError(
            f"partial listing: {len(parsed.listings)} instruments{refused}, expected at least "
            f"{min_listings}",
            exchange=exchange,
            url=url,
        )
    return parsed


def check_delistings(
    exchange: str, delisted: int, current: int, max_delist_pct: float | None
) -> None:
    """The second partial-poll guard: raise if the poll would delist too large a share.

    Raises:
        PartialPollError: ``delisted`` is more than ``max_delist_pct`` % of ``current``.
    """
    if max_delist_pct is None or not delisted or delisted * 100.0 <= max_delist_pct * current:
        return
    share = 100.0 * delisted / current
    raise PartialPollError(
        f"partial listing: it would delist {delisted} of {current} current instruments "
        f"({share:.1f} %), more than max_delist_pct = {max_delist_pct:g} %",
        exchange=exchange,
    )


# --- apply -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncResult:
    """Outcome of one poll of one exchange."""

    exchange: str
    ok: bool
    new: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    delisted: tuple[str, ...] = ()
    status_changes: tuple[str, ...] = ()  # "PAIR OLD->NEW" (status or trading enabled)
    unchanged: int = 0
    rows_written: int = 0
    tracked_delisted: tuple[str, ...] = ()
    tracked_status_changes: tuple[str, ...] = ()
    initial_load: bool = False
    error: str = ""
    duration_s: float = 0.0
    # Listings refused by the grammar (pairs as the exchange sent them: untrusted, repr them).
    refused: tuple[str, ...] = ()
    # The new listings themselves (what auto-track matches its rules against).
    new_listings: tuple[Listing, ...] = field(default=(), repr=False)
    # Why the universe could not be read to mark tracked pairs ("" = it was read).
    universe_error: str = ""

    def summary(self) -> str:
        if not self.ok:
            return f"{self.exchange}: FAILED, nothing changed: {self.error}"
        refused = f", {len(self.refused)} refused" if self.refused else ""
        return (
            f"{self.exchange}: {len(self.new)} new, {len(self.changed)} changed, "
            f"{len(self.delisted)} delisted, {self.unchanged} unchanged{refused} "
            f"({self.rows_written} rows written, {self.duration_s:.2f} s)"
        )


def _row(listing: Listing, h: str, now: dt.datetime, user: str) -> dict[str, Any]:
    return {
        "exchange": listing.exchange,
        "datetime": now,
        "trading_pair": listing.trading_pair,
        "is_current": True,
        "last_modified_datetime": now,
        "last_modified_user": user,
        "base": listing.base,
        "quote": listing.quote,
        "status": listing.status,
        "trading_enabled": listing.trading_enabled,
        "tick_size": listing.tick_size,
        "lot_size": listing.lot_size,
        "min_notional": listing.min_notional,
        "valid_from": now,
        "valid_to": None,
        "is_delisted": False,
        "attr_hash": h,
    }


def _status_change(c: Change) -> str:
    if c.old.status != c.new.status:
        return f"{c.new.trading_pair} {c.old.status}->{c.new.status}"
    onoff = {True: "enabled", False: "disabled"}
    return (
        f"{c.new.trading_pair} {c.new.status} trading "
        f"{onoff[c.old.trading_enabled]}->{onoff[c.new.trading_enabled]}"
    )


def apply_listings(
    engine: Engine,
    exchange: str,
    listings: Sequence[Listing],
    now: dt.datetime,
    user: str,
    *,
    keep: Collection[str] = (),
    max_delist_pct: float | None = None,
) -> SyncResult:
    """Diff ``listings`` against the current rows and write the result in one transaction.

    Nothing at all is written when nothing changed. ``keep``: pairs listed but refused, whose
    current rows stay as they are. ``max_delist_pct`` (None = no limit): see
    :func:`check_delistings`.

    Raises:
        PartialPollError: the poll would delist too many pairs (nothing is written).
    """
    for listing in listings:
        if listing.exchange != exchange:
            raise ValueError(f"listing of {listing.exchange!r} in a {exchange!r} poll")
    t = Instrument.__table__  # type: ignore[attr-defined]
    with Session(engine) as session, session.begin():
        rows = session.execute(
            select(t.c.id, t.c.trading_pair, t.c.attr_hash, t.c.status, t.c.trading_enabled).where(
                t.c.exchange == exchange, t.c.is_current.is_(True)
            )
        ).all()
        current = [CurrentVersion(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows]
        d: Diff = diff(current, listings, keep)
        check_delistings(exchange, len(d.delisted), len(current), max_delist_pct)
        written = 0
        if not d.is_empty:
            close_values = {
                "is_current": False,
                "valid_to": now,
                "last_modified_datetime": now,
                "last_modified_user": user,
            }
            changed_ids = [c.old.id for c in d.changed]
            delisted_ids = [c.id for c in d.delisted]
            for ids, extra in ((changed_ids, {}), (delisted_ids, {"is_delisted": True})):
                for i in range(0, len(ids), _CHUNK):
                    res = session.execute(
                        update(t)
                        .where(t.c.id.in_(ids[i : i + _CHUNK]))
                        .values(**close_values, **extra)
                    )
                    written += res.rowcount  # type: ignore[attr-defined]
            inserts = [_row(lst, h, now, user) for lst, h in d.new]
            inserts += [_row(c.new, c.new_hash, now, user) for c in d.changed]
            if inserts:
                session.execute(insert(t), inserts)
                written += len(inserts)
    status_changes = tuple(_status_change(c) for c in d.changed if c.status_changed)
    delisted = tuple(c.trading_pair for c in d.delisted)
    return SyncResult(
        exchange=exchange,
        ok=True,
        new=tuple(lst.trading_pair for lst, _ in d.new),
        changed=tuple(c.new.trading_pair for c in d.changed),
        delisted=delisted,
        status_changes=status_changes,
        unchanged=d.unchanged,
        rows_written=written,
        initial_load=not current,
        new_listings=tuple(lst for lst, _ in d.new),
    )


def mark_tracked(result: SyncResult, tracked: Collection[str]) -> SyncResult:
    """``result`` with the delisted and status-changed pairs that are in ``tracked``."""
    return dataclasses.replace(
        result,
        tracked_delisted=tuple(p for p in result.delisted if p in tracked),
        tracked_status_changes=tuple(
            s for s in result.status_changes if s.split(" ", 1)[0] in tracked
        ),
    )


def _with_tracked(
    settings: SecmasterSettings, engine: Engine, result: SyncResult, now: dt.datetime, user: str
) -> SyncResult:
    """Read the universe only when the poll delisted or changed a pair (rare)."""
    if not (result.delisted or result.status_changes):
        return result
    try:
        tracked = tracked_pairs(open_universe(settings, engine), result.exchange, now, user)
    except UniverseStoreError as exc:  # the listings were applied all the same
        log.error("secmaster.sync.universe_unreadable", exchange=result.exchange, error=str(exc))
        return dataclasses.replace(result, universe_error=str(exc))
    return mark_tracked(result, tracked)


# --- alerts ------------------------------------------------------------------------------


def _listed(pairs: Sequence[str]) -> str:
    shown = ", ".join(pairs[:_MAX_LISTED])
    return shown + (f" (+{len(pairs) - _MAX_LISTED} more)" if len(pairs) > _MAX_LISTED else "")


def alert_changes(result: SyncResult) -> Alert | None:
    """The one alert of a successful poll (None when nothing worth telling happened).

    The first load of an exchange into an empty table is not news and raises no alert.
    A tracked pair that was delisted makes it an ``error``; otherwise it is a ``warning``.
    """
    new = () if result.initial_load else result.new
    if not (new or result.delisted or result.status_changes):
        return None
    fields: dict[str, str] = {"exchange": result.exchange}
    if new:
        fields["new"] = _listed(new)
    if result.delisted:
        fields["delisted"] = _listed(result.delisted)
    if result.status_changes:
        fields["status_changes"] = _listed(result.status_changes)
    if result.tracked_delisted:
        fields["tracked_delisted"] = _listed(result.tracked_delisted)
    if result.universe_error:
        fields["universe_error"] = result.universe_error
    if result.tracked_status_changes:
        fields["tracked_status_changes"] = _listed(result.tracked_status_changes)
    digest = hashlib.sha256(repr(sorted(fields.items())).encode()).hexdigest()[:12]
    title = (
        f"{result.exchange} listings: {len(new)} new, {len(result.delisted)} delisted, "
        f"{len(result.status_changes)} status changes"
    )
    if result.tracked_delisted:
        title += f"; TRACKED pair(s) delisted: {_listed(result.tracked_delisted)}"
    unknown = bool(result.universe_error and result.delisted)
    if unknown:
        title += "; the universe could not be read: tracked pairs may be among them"
    return Alert(
        source="secmaster",
        severity="error" if result.tracked_delisted or unknown else "warning",
        title=title,
        key=f"secmaster:{result.exchange}:listings:{digest}",
        fields=fields,
    )


def alert_failure(result: SyncResult, *, partial: bool = False) -> Alert:
    what = "looks partial" if partial else "failed"
    return Alert(
        source="secmaster",
        severity="error",
        title=f"{result.exchange} listings poll {what}; nothing changed",
        key=f"secmaster:{result.exchange}:poll-{'partial' if partial else 'failed'}",
        fields={"exchange": result.exchange, "error": result.error},
    )


def alert_refused(exchange: str, refused: Sequence[RefusedListing]) -> Alert | None:
    """The one alert of a poll that refused listings: names repr'd and truncated, one reason.

    A ``warning``: nothing refused reached the table, but a human should look (an exchange
    that renamed its symbols, or a listing crafted to inject into the fleet).
    """
    if not refused:
        return None
    names = sorted({shown(r.trading_pair) for r in refused})
    digest = hashlib.sha256(repr(names).encode()).hexdigest()[:12]
    return Alert(
        source="secmaster",
        severity="warning",
        title=(
            f"{exchange} listings: {len(refused)} refused (outside the name grammar; not "
            "stored, not trackable)"
        ),
        key=f"secmaster:{exchange}:refused:{digest}",
        fields={"exchange": exchange, "refused": _listed(names), "reason": refused[0].reason},
    )


# --- one sync ----------------------------------------------------------------------------


def report_refused(exchange: str, refused: Sequence[RefusedListing]) -> None:
    """Log (reasons repr'd, at most ``_MAX_LISTED``) and alert the refused listings of a poll."""
    alert = alert_refused(exchange, refused)
    if alert is None:
        return
    log.warning(
        "secmaster.sync.refused",
        exchange=exchange,
        count=len(refused),
        reasons=[r.reason for r in refused[:_MAX_LISTED]],
    )
    send_alert(alert)


def poll_exchange(
    settings: SecmasterSettings,
    engine: Engine,
    client: httpx.Client,
    exchange: str,
    user: str,
    *,
    sleep: Sleep = time.sleep,
    now: Clock = utc_now,
) -> SyncResult:
    """Fetch, guard, apply and alert for one exchange; a failure changes nothing."""
    t0 = time.perf_counter()
    build_url, _ = listing_source(exchange)
    url = build_url(settings.rest_urls[exchange])
    refused: tuple[RefusedListing, ...] = ()
    try:
        body = fetch_body(client, exchange, url, settings.retry, sleep=sleep, now=now)
        parsed = parse_body(exchange, url, body, settings.min_listings.get(exchange, 1))
        refused = parsed.refused
        report_refused(exchange, refused)
        result = apply_listings(
            engine,
            exchange,
            parsed.listings,
            now(),
            user,
            keep={r.trading_pair for r in refused},
            max_delist_pct=settings.max_delist_pct,
        )
    except (PollError, DuplicateListingError) as exc:
        result = SyncResult(
            exchange=exchange,
            ok=False,
            error=str(exc),
            duration_s=time.perf_counter() - t0,
            refused=tuple(r.trading_pair for r in refused),
        )
        log.error("secmaster.sync.failed", exchange=exchange, url=url, error=str(exc))
        send_alert(alert_failure(result, partial=isinstance(exc, PartialPollError)))
        return result
    result = dataclasses.replace(
        _with_tracked(settings, engine, result, now(), user),
        duration_s=time.perf_counter() - t0,
        refused=tuple(r.trading_pair for r in refused),
    )
    log.info(
        "secmaster.sync.done",
        exchange=exchange,
        new=len(result.new),
        changed=len(result.changed),
        delisted=len(result.delisted),
        unchanged=result.unchanged,
        refused=len(result.refused),
        rows_written=result.rows_written,
        duration_s=round(result.duration_s, 3),
        summary=result.summary(),
    )
    alert = alert_changes(result)
    if alert is not None:
        send_alert(alert)
    return result


def sync(
    settings: SecmasterSettings,
    exchanges: Sequence[str],
    user: str,
    *,
    sleep: Sleep = time.sleep,
    now: Clock = utc_now,
) -> list[SyncResult]:
    """Take the lock and poll each exchange in turn.

    Raises:
        LockBusyError: another sync (manual or scheduled) is running.
    """
    with hold_lock(settings.lock_path):
        engine = open_engine(settings.database_url)
        try:
            with httpx.Client(
                timeout=settings.http_timeout_s, headers={"User-Agent": USER_AGENT}
            ) as client:
                return [
                    poll_exchange(settings, engine, client, ex, user, sleep=sleep, now=now)
                    for ex in exchanges
                ]
        finally:
            engine.dispose()
