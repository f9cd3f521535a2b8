"""Shared fixtures: paths to the recorded captures and small helpers for reading our files."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SHARED_DIR", REPO.parent / "shared"))
RECORDED = SHARED / "data" / "recorded"
CAPTURES = {
    "binance": RECORDED / "binance-spot-2021-10-11.jsonl.gz",
    "coinbase": RECORDED / "coinbase-exchange-2021-04-17.jsonl.gz",
    "bitstamp": RECORDED / "bitstamp-2022-01-05.jsonl.gz",
}


def read_events(path: Path) -> Iterator[dict[str, object]]:
    """The events of a capture (or of a raw file we wrote), in order."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            yield json.loads(line)


def recorded_frames(exchange: str) -> list[str]:
    """Every websocket frame the exchange sent in its recording, as the wire strings."""
    return [str(e["data"]) for e in read_events(CAPTURES[exchange]) if e["t"] == "recv"]


@pytest.fixture(scope="session")
def recorded() -> dict[str, Path]:
    missing = [str(p) for p in CAPTURES.values() if not p.exists()]
    if missing:
        pytest.fail(f"recorded captures not found (set SHARED_DIR?): {missing}")
    return CAPTURES
