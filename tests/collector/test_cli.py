"""Bad CLI and config input: one-line error naming the value, exit code 2, nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "collector", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def base(tmp_path: Path, **over: str) -> list[str]:
    args = {
        "--exchange": "binance",
        "--symbol": "BTCUSDT",
        "--data_type": "trade",
        "--data_dir": str(tmp_path / "data"),
    }
    args.update(over)
    return [x for kv in args.items() for x in kv]


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"--exchange": "kraken"}, "unknown exchange 'kraken'"),
        ({"--data_type": "candles"}, "unknown data_type 'candles'"),
        ({"--symbol": "../../etc"}, "symbol '../../etc' is not allowed"),
        ({"--symbol": "BTC/USDT"}, "symbol 'BTC/USDT' is not allowed"),
        ({"--symbol": "BTC USDT"}, "symbol 'BTC USDT' is not allowed"),
        ({"--symbol": "BTC\x01"}, "is not allowed"),
        ({"--symbol": "btc-usd"}, "symbol 'btc-usd' does not fit binance's symbol syntax"),
        ({"--exchange": "coinbase", "--symbol": "BTCUSD"}, "does not fit coinbase's"),
        ({"--data_dir": "/proc/collector-test"}, "data_dir '/proc/collector-test' is not writable"),
    ],
)
def test_bad_argument(tmp_path, over, message):
    r = run(base(tmp_path, **over), tmp_path)

    assert r.returncode == 2
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "data" / "binance").exists()


def test_malformed_config_file(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("data_dir = \n")

    r = run([*base(tmp_path), "--config", str(cfg)], tmp_path)

    assert r.returncode == 2
    assert r.stderr.startswith(f"collector: error: malformed config file {cfg}")


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[exchanges.binance]\nws_url = "http//nope"\n', "ws_url = 'http//nope' must be a ws/wss"),
        ('[exchanges.binance]\nws_url = "ws://h:99999"\n', "is not a valid URL"),
        ("[collector]\nbook_depth = 0\n", "book_depth = 0 must be >= 1"),
        ("[collector]\ndepth_update_speed_ms = 250\n", "must be one of (100, 1000)"),
        ('[collector]\nflush_interval_s = "1s"\n', "flush_interval_s = '1s' must be a number"),
    ],
)
def test_bad_config_value(tmp_path, toml, message):
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)

    r = run([*base(tmp_path), "--config", str(cfg)], tmp_path)

    assert r.returncode == 2
    assert message in r.stderr


def test_missing_config_file(tmp_path):
    r = run([*base(tmp_path), "--config", str(tmp_path / "nope.toml")], tmp_path)

    assert r.returncode == 2
    assert "config file not found" in r.stderr


def test_help_names_the_seed_interface():
    r = run(["--help"], REPO)

    assert r.returncode == 0
    assert "--exchange" in r.stdout
    assert "--data_type" in r.stdout
    assert "--data_dir" in r.stdout
