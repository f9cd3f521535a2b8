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


def _polled(tmp_path: Path, host: str, extra: str = "") -> tuple[str, ...]:
    path = tmp_path / "config.toml"
    hosts = '[{ id = "ohio-a", region = "us-east-2" }, { id = "euw1-a", region = "eu-west-1" }]'
    path.write_text(
        f'host_id = "{host}"\ndata_dir = "data"\n{extra}[fleet]\nhosts = {hosts}\n',
        encoding="utf-8",
    )
    return build_secmaster_settings(load_config(path)).exchanges


def test_a_host_polls_by_default_only_what_its_region_may_reach(tmp_path: Path) -> None:
    """Binance.com answers HTTP 451 to US addresses: the Ohio host does not poll it (every
    poll would fail and alert), the Irish one does; [exchanges.binance] regions and an explicit
    [secmaster] exchanges win."""
    assert _polled(tmp_path, "ohio-a") == ("coinbase", "bitstamp", "bitfinex")
    assert _polled(tmp_path, "euw1-a") == LISTING_EXCHANGES
    allowed = '[exchanges.binance]\nregions = ["us-east-2"]\n'
    assert _polled(tmp_path, "ohio-a", allowed) == LISTING_EXCHANGES
    assert _polled(tmp_path, "euw1-a", allowed) == ("coinbase", "bitstamp", "bitfinex")
    explicit = '[secmaster]\nexchanges = ["binance"]\n'
    assert _polled(tmp_path, "ohio-a", explicit) == ("binance",)
