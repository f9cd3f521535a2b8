"""Database tables of the security master (SQLModel) and the engine factory.

``instrument`` is an SCD type 2 history (dbt-snapshot style): one row per version of an
instrument, natural key ``(exchange, trading_pair)``. The current version has
``is_current = true`` and ``valid_to IS NULL``; the database itself guarantees at most one
current row per key with a partial unique index. ``tracked`` is the tracked universe (what the
fleet collects) when it is kept locally (``[secmaster] universe = "local"``), ``untracked`` the
streams removed from it (so that auto-track never brings one back; created with the first
change of the universe); ``meta`` holds one-off markers (the default universe was created).

All times are timezone-aware UTC in Python; SQLite stores them as naive UTC text that sorts
in time order, so ``--as-of`` is a plain comparison.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import CheckConstraint, Dialect, Engine, Index, event, text
from sqlalchemy.types import DateTime, TypeDecorator
from sqlmodel import Field, SQLModel, create_engine


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in Python, naive UTC in the database (SQLite has no time zones)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the security master stores UTC only")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.UTC)


class Instrument(SQLModel, table=True):
    """One version of one instrument (the seed's columns first, then ours)."""

    __tablename__ = "instrument"
    __table_args__ = (
        Index(
            "uq_instrument_current",
            "exchange",
            "trading_pair",
            unique=True,
            sqlite_where=text("is_current = 1"),
            postgresql_where=text("is_current"),
        ),
        Index("ix_instrument_key_from", "exchange", "trading_pair", "valid_from"),
        CheckConstraint("(valid_to IS NULL) = is_current", name="ck_instrument_open_if_current"),
        CheckConstraint("valid_to IS NULL OR valid_to >= valid_from", name="ck_instrument_span"),
    )

    id: int | None = Field(default=None, primary_key=True)
    exchange: str = Field(max_length=32)
    # Seed column: when this version was observed (the poll that inserted it).
    datetime: dt.datetime = Field(sa_type=UTCDateTime)
    trading_pair: str = Field(max_length=64)
    is_current: bool
    last_modified_datetime: dt.datetime = Field(sa_type=UTCDateTime)
    last_modified_user: str = Field(max_length=64)
    base: str = Field(max_length=32)
    quote: str = Field(max_length=32)
    status: str = Field(max_length=32)
    trading_enabled: bool
    tick_size: str | None = Field(default=None, max_length=40)
    lot_size: str | None = Field(default=None, max_length=40)
    min_notional: str | None = Field(default=None, max_length=40)
    valid_from: dt.datetime = Field(sa_type=UTCDateTime)
    valid_to: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    # True on the closing version of a pair that vanished from the exchange's listing.
    is_delisted: bool = False
    # sha256 of the tracked attributes (secmaster.scd2.attr_hash): a change means a new version.
    attr_hash: str = Field(max_length=64)


class Tracked(SQLModel, table=True):
    """One stream of the tracked universe: the fleet runs one collector per row."""

    __tablename__ = "tracked"

    exchange: str = Field(primary_key=True, max_length=32)
    trading_pair: str = Field(primary_key=True, max_length=64)
    data_type: str = Field(primary_key=True, max_length=16)
    added_datetime: dt.datetime = Field(sa_type=UTCDateTime)
    added_user: str = Field(max_length=64)


class Untracked(SQLModel, table=True):
    """A stream an operator removed from the universe: auto-track never adds it again (an
    explicit ``track`` does, and clears this row)."""

    __tablename__ = "untracked"

    exchange: str = Field(primary_key=True, max_length=32)
    trading_pair: str = Field(primary_key=True, max_length=64)
    data_type: str = Field(primary_key=True, max_length=16)
    removed_datetime: dt.datetime = Field(sa_type=UTCDateTime)
    removed_user: str = Field(max_length=64)


class Meta(SQLModel, table=True):
    """Key/value markers of the database itself (e.g. ``universe_initialized``)."""

    __tablename__ = "secmaster_meta"

    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(max_length=256)


TABLES = [Instrument.__table__, Tracked.__table__, Meta.__table__]  # type: ignore[attr-defined]
# Created on the first change of the local universe (secmaster.universe), not with the others:
# a database that never had a track or untrack holds exactly the tables above.
UNTRACKED_TABLE = Untracked.__table__  # type: ignore[attr-defined]


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Take transaction control from pysqlite so every transaction is a real one
    # (BEGIN IMMEDIATE below): reads of the current rows and the writes of a poll are atomic.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout = 30000")
    cur.execute("PRAGMA journal_mode = WAL")
    cur.execute("PRAGMA foreign_keys = ON")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def open_engine(database_url: str) -> Engine:
    """Engine for ``database_url`` with the schema created (idempotent)."""
    if database_url.startswith("sqlite:///"):
        from pathlib import Path

        path = database_url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(database_url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    SQLModel.metadata.create_all(engine, tables=TABLES)
    return engine
