"""Where the security master's exchange facts come from: the adapter registry, and no import
cycle between the poller and the universe."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from collector.config import load_config
from collector.exchanges import ADAPTERS
from secmaster.settings import LISTING_EXCHANGES, build_secmaster_settings
from tests.conftest import REPO


def test_listing_exchanges_are_the_adapters_with_listings() -> None:
    """The polled exchanges are those whose adapter has the listings capability."""
    assert (
        tuple(name for name, a in ADAPTERS.items() if a.parse_listing_body is not None)
        == LISTING_EXCHANGES
    )
    assert LISTING_EXCHANGES == ("binance", "coinbase", "bitstamp", "bitfinex")


def test_rest_url_defaults_to_the_adapters_endpoint(tmp_path: Path) -> None:
    """Without [exchanges.X] rest_url, the listings come from the production endpoint."""
    path = tmp_path / "config.toml"
    path.write_text('data_dir = "data"\n', encoding="utf-8")

    settings = build_secmaster_settings(load_config(path))

    assert settings.rest_urls == {x: ADAPTERS[x].DEFAULT_REST_URL for x in LISTING_EXCHANGES}


def test_universe_imports_without_the_poller() -> None:
    """secmaster.universe needs no secmaster.poller (the cycle is gone), in a fresh process."""
    code = "import sys, secmaster.universe; print('secmaster.poller' in sys.modules)"

    r = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )

    assert (r.returncode, r.stdout.strip()) == (0, "False")
