"""Invariants the database itself enforces, whatever code writes to it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from secmaster.models import open_engine

_COLS = (
    "exchange, datetime, trading_pair, is_current, last_modified_datetime, "
    "last_modified_user, base, quote, status, trading_enabled, valid_from, valid_to, "
    "is_delisted, attr_hash"
)


def _insert(
    conn: sqlite3.Connection, is_current: int, valid_from: str, valid_to: str | None
) -> None:
    t = "2026-01-01 00:00:00.000000"
    conn.execute(
        f"INSERT INTO instrument ({_COLS}) VALUES ('binance', ?, 'BTCUSDT', ?, ?, 'u', 'BTC', "
        "'USDT', 'TRADING', 1, ?, ?, 0, 'h')",
        (t, is_current, t, valid_from, valid_to),
    )


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    path = tmp_path / "s.sqlite"
    open_engine(f"sqlite:///{path}").dispose()
    connection = sqlite3.connect(path, isolation_level=None)
    yield connection
    connection.close()


def test_one_current_row_per_key(conn: sqlite3.Connection) -> None:
    """A second current row for the same (exchange, trading_pair) is refused."""
    _insert(conn, 1, "2026-01-01 00:00:00.000000", None)
    _insert(conn, 0, "2025-01-01 00:00:00.000000", "2026-01-01 00:00:00.000000")

    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        _insert(conn, 1, "2026-02-01 00:00:00.000000", None)


@pytest.mark.parametrize(
    ("is_current", "valid_from", "valid_to"),
    [
        (1, "2026-01-01 00:00:00.000000", "2026-02-01 00:00:00.000000"),  # current but closed
        (0, "2026-01-01 00:00:00.000000", None),  # closed but open-ended
        (0, "2026-02-01 00:00:00.000000", "2026-01-01 00:00:00.000000"),  # ends before start
    ],
)
def test_validity_interval_is_consistent(
    conn: sqlite3.Connection, is_current: int, valid_from: str, valid_to: str | None
) -> None:
    """is_current matches an open interval, and an interval never ends before it starts."""
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        _insert(conn, is_current, valid_from, valid_to)
