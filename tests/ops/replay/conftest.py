"""Fixtures of the replay server tests: the recorded captures, a hand-built trade capture."""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.replay import Capture, write_capture
from tests.ops.replay.helpers import FILES, trade_events


@pytest.fixture(scope="module")
def captures() -> dict[str, Capture]:
    return {name: Capture.load(path) for name, path in FILES.items()}


@pytest.fixture
def trades_capture(tmp_path: Path) -> Path:
    return write_capture(tmp_path / "binance-trade.jsonl.gz", trade_events(6))
