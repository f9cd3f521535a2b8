"""Listings of all four exchanges through the security master and into the fleet: Bitstamp's
recorded trading-pairs-info (served by the replay server from its capture), Bitfinex's pair
list built from the docs (served with ``set_http``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.config import load_config
from ops.fleet import build_fleet_settings, render_text
from ops.replay import ReplayThread
from secmaster.universe import tracked_streams
from tests.secmaster.conftest import BITFINEX_PATH, cli, write_config

pytestmark = pytest.mark.timeout(60)

ALL = ["binance", "coinbase", "bitstamp", "bitfinex"]


def four_exchanges(tmp_path: Path, replay: ReplayThread, **secmaster: object) -> Path:
    cfg = write_config(tmp_path, replay, exchanges=ALL, **secmaster)
    with cfg.open("a", encoding="utf-8") as f:
        f.write(
            f'[exchanges.bitstamp]\nrest_url = "{replay.http_url}/bitstamp"\n'
            f'[exchanges.bitfinex]\nrest_url = "{replay.http_url}"\n'
            '[fleet]\nprograms_file = "fleet/programs.conf"\nlog_dir = "fleet/log"\n'
        )
    return cfg


def test_sync_polls_every_configured_exchange(tmp_path: Path, replay: ReplayThread) -> None:
    """One summary line per exchange of [secmaster] exchanges, in that order."""
    cfg = four_exchanges(tmp_path, replay)

    code, out = cli("--config", str(cfg), "sync")

    assert code == 0
    assert [line.split(" (")[0] for line in out.splitlines()] == [
        "binance: 1695 new, 0 changed, 0 delisted, 0 unchanged",
        "coinbase: 162 new, 0 changed, 0 delisted, 0 unchanged",
        "bitstamp: 140 new, 0 changed, 0 delisted, 0 unchanged",
        "bitfinex: 23 new, 0 changed, 0 delisted, 0 unchanged",
    ]


def test_list_history_and_track_work_for_bitstamp_and_bitfinex(
    tmp_path: Path, replay: ReplayThread
) -> None:
    """list filters, history and track take the new exchanges; the fleet renders them."""
    cfg = four_exchanges(tmp_path, replay)
    assert cli("--config", str(cfg), "sync")[0] == 0

    code, listed = cli(
        "--config", str(cfg), "list", "--exchange", "bitstamp", "--quote", "GBP", "--format", "csv"
    )
    history = cli("--config", str(cfg), "history", "bitfinex", "TESTBTC:TESTUSD")
    tracked = [
        cli("--config", str(cfg), "track", "bitstamp", "btcusd", "--data-types", "l3,trade"),
        cli("--config", str(cfg), "track", "bitfinex", "TESTBTC:TESTUSD", "--data-types", "l3"),
    ]

    assert code == 0
    assert [r.split(",")[1] for r in listed.splitlines()[1:]] == [
        "bchgbp",
        "btcgbp",
        "ethgbp",
        "linkgbp",
        "ltcgbp",
        "omggbp",
        "paxgbp",
        "xlmgbp",
        "xrpgbp",
    ]
    assert history[0] == 0
    assert "TESTBTC" in history[1]
    assert tracked == [
        (0, "tracking bitstamp:btcusd:l3, bitstamp:btcusd:trade\n"),
        (0, "tracking bitfinex:TESTBTC:TESTUSD:l3\n"),
    ]
    config = load_config(cfg)
    assert {s for s in tracked_streams(config) if s[0] in ("bitstamp", "bitfinex")} == {
        ("bitstamp", "btcusd", "l3"),
        ("bitstamp", "btcusd", "trade"),
        ("bitfinex", "TESTBTC:TESTUSD", "l3"),
    }
    text = render_text(config, build_fleet_settings(config))
    assert "[program:bitstamp-btcusd-l3]" in text
    assert "--exchange bitstamp --symbol btcusd --data_type l3" in text


def test_a_broken_bitfinex_body_fails_that_poll_only(tmp_path: Path, replay: ReplayThread) -> None:
    """A Bitfinex body of the wrong shape: exit 1, Bitfinex unchanged, the others synced."""
    cfg = four_exchanges(tmp_path, replay, min_listings=(10, 10))
    replay.set_http(BITFINEX_PATH, b'{"error": "ERR_RATE_LIMIT"}')

    code, out = cli("--config", str(cfg), "sync")

    assert code == 1
    lines = out.splitlines()
    assert lines[3].startswith("bitfinex: FAILED, nothing changed: malformed listings body")
    assert [line.split(":")[0] for line in lines[:3]] == ["binance", "coinbase", "bitstamp"]
    assert "FAILED" not in "".join(lines[:3])
