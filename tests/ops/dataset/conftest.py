"""Fixtures of the dataset tests: a config pointing REST at the fake, and its truth."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ops.dataset.restfake import Truth, rest_fake


@pytest.fixture
def truth() -> Truth:
    return Truth()


@pytest.fixture
def rest_url(truth: Truth) -> Iterator[str]:
    with rest_fake(truth) as url:
        yield url


def write_config(tmp_path: Path, rest_url: str, extra: str = "") -> Path:
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'data_dir = "{tmp_path / "state"}"\n'
        'host_id = "builder"\n'
        "[exchanges.binance]\n"
        f'rest_url = "{rest_url}/"\n'
        "[exchanges.coinbase]\n"
        f'rest_url = "{rest_url}"\n'
        "[dataset]\n"
        "rest_share = 1.0\n"
        "deadline_h = 1.0\n" + extra
    )
    return cfg
