"""The config file's schema, its reading, the path and URL checks, and secrets in messages."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from collector.common.config import DEFAULT_CONFIG_PATH, check_url, redact_url
from collector.common.errors import ConfigError
from collector.config import CONFIG_SCHEMA, load_config
from collector.exchanges import ADAPTERS
from collector.exchanges.base import Credentials
from collector.settings import build_collector_settings, credentials_from_env
from tests.conftest import REPO


def coinbase_credentials(env: dict[str, str]) -> Credentials | None:
    """Credentials as a Coinbase collector reads them (the variables its adapter names)."""
    return credentials_from_env(ADAPTERS["coinbase"], env)


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "config.toml"
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


class TestSchema:
    def test_root_config_passes(self) -> None:
        """The repository's config.toml uses only keys the schema knows."""
        config = load_config(DEFAULT_CONFIG_PATH)

        assert config.path == REPO / "config.toml"

    def test_every_documented_table_is_in_the_schema(self) -> None:
        """Every [table] header of config.toml, commented or not, is a schema entry."""
        headers = re.findall(r"^#?\s*\[([a-z0-9_.]+)\]", DEFAULT_CONFIG_PATH.read_text(), re.M)

        assert sorted(set(headers) - set(CONFIG_SCHEMA)) == []

    @pytest.mark.parametrize(
        ("toml", "message"),
        [
            (
                "[collector]\nflush_intervall_s = 1.0\n",
                "unknown key [collector] flush_intervall_s (did you mean flush_interval_s?)",
            ),
            ('data_dri = "x"\n', "unknown key data_dri (did you mean data_dir?)"),
            ("[colector]\n", "unknown section [colector] (did you mean collector?)"),
            ("[collector.backof]\ninitial_s = 1.0\n", "unknown section [collector.backof]"),
            ("[collector.backoff]\ninitial = 1.0\n", "unknown key [collector.backoff] initial"),
            ('[exchanges.kraken]\nws_url = "wss://x"\n', "unknown section [exchanges.kraken]"),
            ("[exchanges.binance]\nbook_len = 25\n", "unknown key [exchanges.binance] book_len"),
            ("[secmaster]\nmin_listings = { kraken = 1 }\n", "[secmaster.min_listings] kraken"),
            ("[qa]\nrow_count = { candles = [1, 2] }\n", "unknown key [qa.row_count] candles"),
            (
                '[qa.overrides."binance:BTCUSDT:trade"]\nrow_cout = [1, 2]\n',
                'unknown key [qa.overrides."binance:BTCUSDT:trade"] row_cout',
            ),
            ('[sync]\n"bucket\\nx" = "b"\n', 'unknown key [sync] "bucket\\nx"'),
            ("[fleet]\nhostz = []\n", "unknown key [fleet] hostz"),
            ("[collector]\nbackoff = 1\n", "[collector.backoff] must be a table"),
        ],
    )
    def test_unknown_names_are_refused_naming_key_and_file(
        self, tmp_path: Path, toml: str, message: str
    ) -> None:
        """A key or table the schema does not know: one line naming it and the file."""
        path = write(tmp_path, toml)

        msg = error_of(path)

        assert msg.startswith(f"{path}: ")
        assert message in msg
        assert "\n" not in msg

    def test_free_tables_and_inline_tables_pass(self, tmp_path: Path) -> None:
        """Free tables (environment, QA overrides) take any key; inline and [a.b] forms of a
        known table are the same."""
        path = write(
            tmp_path,
            '[fleet]\nenvironment = { TZ = "UTC", ANY_NAME = "x" }\n'
            '[qa.overrides."binance:BTCUSDT:trade"]\nrow_count = [1, 2]\nmax_silence_s = 5.0\n'
            "[qa.row_count]\ntrade = [1, 2]\n"
            "[secmaster.min_listings]\nbinance = 3\n"
            "[exchanges.bitfinex]\nbook_len = 25\n",
        )

        assert load_config(path).section("fleet", "environment") == {"TZ": "UTC", "ANY_NAME": "x"}


class TestReading:
    def test_non_utf8_file_is_one_line(self, tmp_path: Path) -> None:
        """A config file that is not UTF-8 is a ConfigError naming the file, byte and line."""
        path = write(tmp_path, b'host_id = "a"\ndata_dir = "caf\xe9"\n')

        assert error_of(path) == f"config file {path} is not UTF-8 text (byte 0xe9 on line 2)"

    def test_directory_and_nul_byte_paths(self, tmp_path: Path) -> None:
        """A directory or a path with a NUL byte is a one-line error, not a traceback."""
        assert error_of(tmp_path).startswith(f"cannot read config file {tmp_path}: ")
        with pytest.raises(ConfigError, match="is not a valid path"):
            load_config("conf\x00.toml")

    @pytest.mark.parametrize("value", ["", "   "])
    def test_empty_data_dir_in_file_is_refused(self, tmp_path: Path, value: str) -> None:
        """data_dir = "" would be the config file's directory: refused."""
        path = write(tmp_path, f'data_dir = "{value}"\n')

        with pytest.raises(ConfigError) as info:
            _ = load_config(path).data_dir

        assert str(info.value) == f"{path}: data_dir is empty (write . for the current directory)"

    def test_building_collector_settings_creates_nothing(self, tmp_path: Path) -> None:
        """Validating a collector's settings does not create its data directory."""
        path = write(tmp_path, 'data_dir = "data"\n')

        s = build_collector_settings(
            load_config(path), exchange="binance", symbol="BTCUSDT", data_type="trade"
        )

        assert s.data_dir == tmp_path / "data"
        assert not s.data_dir.exists()


class TestUrls:
    @pytest.mark.parametrize(
        ("url", "shown"),
        [
            ("https://user:pa55@host/x", "https://***@host/x"),
            ("wss://pa55@host:9443/ws?a=b@c", "wss://***@host:9443/ws?a=b@c"),
            ("https://u:p@ss@host", "https://***@host"),
            ("user:pa55@host", "***@host"),
            ("https://host/path@x", "https://host/path@x"),
            ("http://[::1", "http://[::1"),
            ("", ""),
        ],
    )
    def test_redact_url(self, url: str, shown: str) -> None:
        """Userinfo (everything before the authority's last @) becomes ***."""
        assert redact_url(url) == shown

    def test_bad_url_message_hides_userinfo(self, tmp_path: Path) -> None:
        """A ws_url with user:password that is refused is named without the password."""
        path = write(tmp_path, '[exchanges.binance]\nws_url = "http://user:pa55@host"\n')

        with pytest.raises(ConfigError) as info:
            build_collector_settings(
                load_config(path), exchange="binance", symbol="BTCUSDT", data_type="trade"
            )

        msg = str(info.value)
        assert msg.endswith("ws_url = 'http://***@host' must be a ws/wss:// URL with a host")
        assert "pa55" not in msg
        assert "user" not in msg

    def test_wrong_type_message_hides_userinfo_and_is_bounded(self, tmp_path: Path) -> None:
        """A value of the wrong type is shown redacted and cut to 200 characters."""
        config = load_config(
            write(tmp_path, '[exchanges.binance]\nws_url = ["wss://bob:pa55@h/ws"]\n')
        )

        with pytest.raises(ConfigError) as url_error:
            build_collector_settings(
                config, exchange="binance", symbol="BTCUSDT", data_type="trade"
            )
        with pytest.raises(ConfigError) as long_error:
            build_collector_settings(
                load_config(write(tmp_path, f'[collector]\nbook_depth = "{"9" * 1000}"\n')),
                exchange="binance",
                symbol="BTCUSDT",
                data_type="trade",
            )

        assert str(url_error.value).endswith("ws_url = ['wss://***@h/ws'] must be a string")
        assert str(long_error.value).endswith(f"book_depth = '{'9' * 198}… must be an integer")

    @pytest.mark.parametrize("url", ["not a url", "ftp://hooks/x", "https://h:99999/x"])
    def test_secret_url_is_never_shown(self, url: str) -> None:
        """A secret URL that is refused is named, never shown."""
        with pytest.raises(ConfigError) as info:
            check_url(url, ("http", "https"), what="SLACK_WEBHOOK_URL", secret=True)

        msg = str(info.value)
        assert msg.startswith("SLACK_WEBHOOK_URL (value not shown) ")
        assert url not in msg

    @pytest.mark.parametrize("url", ["wss://host/ws\nx", "wss://ho st/ws", "wss://host/\tws"])
    def test_whitespace_in_url_is_refused(self, url: str) -> None:
        """urlsplit drops tabs and newlines silently; check_url refuses them."""
        with pytest.raises(ConfigError, match="must not contain spaces or control characters"):
            check_url(url, ("ws", "wss"), what="ws_url")


class TestSecrets:
    def test_coinbase_secret_not_base64_is_named_not_shown(self) -> None:
        """A Coinbase secret that is not base64 is refused at load, without its value."""
        env = {
            "COINBASE_API_KEY": "k",
            "COINBASE_API_SECRET": "not*base64!",
            "COINBASE_API_PASSPHRASE": "p",
        }

        with pytest.raises(ConfigError) as info:
            coinbase_credentials(env)

        assert str(info.value) == "COINBASE_API_SECRET is not valid base64 (value not shown)"

    def test_coinbase_secret_with_newline_is_refused(self) -> None:
        """A trailing newline (a sourced .cred file) is refused, naming the variable."""
        secret = base64.b64encode(b"s").decode()
        env = {
            "COINBASE_API_KEY": "k\n",
            "COINBASE_API_SECRET": secret,
            "COINBASE_API_PASSPHRASE": "p",
        }

        with pytest.raises(ConfigError) as info:
            coinbase_credentials(env)

        assert str(info.value) == "COINBASE_API_KEY contains whitespace or control characters"

    def test_logged_tracebacks_carry_no_locals(self) -> None:
        """log.exception renders the traceback without the frames' local variables (JSON
        and console output), in a process of its own (logging is configured per process)."""
        code = (
            "import structlog, sys\n"
            "from collector.common.logs import configure_logging\n"
            "configure_logging(json=sys.argv[1] == 'json')\n"
            "def sign():\n"
            "    secret = 'hunter2-do-not-log'\n"
            "    raise RuntimeError(f'signing failed ({len(secret)} bytes)')\n"
            "try:\n"
            "    sign()\n"
            "except RuntimeError:\n"
            "    structlog.get_logger().exception('sign.failed')\n"
        )

        runs = [
            subprocess.run(
                [sys.executable, "-c", code, mode],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=30,
            )
            for mode in ("json", "console")
        ]

        line = json.loads(runs[0].stderr)
        assert line["exception"][0]["exc_value"] == "signing failed (18 bytes)"
        assert "signing failed (18 bytes)" in runs[1].stderr
        assert all("hunter2" not in r.stderr for r in runs)
