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
        ("[collector]\nsync_interval_s = -1\n", "sync_interval_s = -1 must be >= 0"),
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


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("COINBASE_API_")}


@pytest.mark.parametrize(
    ("over", "env", "message"),
    [
        ({"--symbol": "btcusdt"}, {}, "does not fit binance's symbol syntax"),
        ({"--data_type": "l3"}, {}, "data_type 'l3' is not available for binance"),
        (
            {"--exchange": "coinbase", "--symbol": "BTC-USD", "--data_type": "l3"},
            {},
            "coinbase l3 (the `full` channel) needs COINBASE_API_KEY",
        ),
        (
            {"--exchange": "coinbase", "--symbol": "BTC-USD", "--data_type": "book"},
            {
                "COINBASE_API_KEY": "k",
                "COINBASE_API_SECRET": "s3cr3t!",
                "COINBASE_API_PASSPHRASE": "p",
            },
            "COINBASE_API_SECRET is not valid base64 (value not shown)",
        ),
    ],
)
def test_refused_input_creates_no_data_dir(tmp_path, over, env, message):
    """Input refused after the data dir is known leaves no data dir behind, and a refused
    secret is named, never shown."""
    r = subprocess.run(
        [sys.executable, "-m", "collector", *base(tmp_path, **over)],
        cwd=tmp_path,
        env={**_clean_env(), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert r.returncode == 2
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert "s3cr3t" not in r.stderr
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("value", ["", " "])
def test_empty_data_dir_is_refused(tmp_path, value):
    """--data_dir "" would be the current directory: refused, one line, nothing written."""
    r = run(base(tmp_path, **{"--data_dir": value}), tmp_path)

    assert r.returncode == 2
    assert r.stderr == (
        "collector: error: argument --data_dir/--data-dir: "
        "value is empty (write . for the current directory)\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_ws_url_with_password_is_not_echoed(tmp_path):
    """A refused ws_url with user:password@ is named with the userinfo redacted."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('[exchanges.binance]\nws_url = "wss://bob:hunter2@[::1"\n')

    r = run([*base(tmp_path), "--config", str(cfg)], tmp_path)

    assert r.returncode == 2
    assert "ws_url = 'wss://***@[::1' is not a valid URL" in r.stderr
    assert "hunter2" not in r.stderr
    assert "bob" not in r.stderr
