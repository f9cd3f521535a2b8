"""Fixtures of the security-master tests: the replay server serving the recorded listing
bodies, config files in tmp_path, and raw SQLite reads of the database (not through our code).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from ops.replay import ReplayThread
from secmaster.cli import run

RECORDED = Path(__file__).resolve().parents[3] / "shared" / "data" / "recorded"
BINANCE_CAPTURE = RECORDED / "binance-spot-2021-10-11.jsonl.gz"
COINBASE_CAPTURE = RECORDED / "coinbase-exchange-2021-04-17.jsonl.gz"
BITSTAMP_CAPTURE = RECORDED / "bitstamp-2022-01-05.jsonl.gz"
BINANCE_PATH = "/api/v3/exchangeInfo"
COINBASE_PATH = "/products"
BITSTAMP_PATH = "/api/v2/trading-pairs-info/"
BITFINEX_PATH = "/v2/conf/pub:list:pair:exchange"
REPO = Path(__file__).resolve().parents[2]
# Not recorded: built from Bitfinex's docs (tests/data/listings/README.md says how).
BITFINEX_LISTING = REPO / "tests" / "data" / "listings" / "bitfinex_pub_list_pair_exchange.json"


DEFAULT_STREAMS = [
    ("binance", "BTCUSDT", "book"),
    ("binance", "BTCUSDT", "trade"),
    ("coinbase", "BTC-USD", "book"),
    ("coinbase", "BTC-USD", "trade"),
]
# moto accepts any credentials; no instance metadata is asked for.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "t",
    "AWS_SECRET_ACCESS_KEY": "t",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def cli(*argv: str) -> tuple[int, str]:
    """``secmaster ARGV`` in this process: (exit code, stdout)."""
    out = io.StringIO()
    code = run(list(argv), out)
    return code, out.getvalue()


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1; its fake credentials in the environment (subprocesses
    inherit them, as supervisord's programs inherit the real ones)."""
    from moto.server import ThreadedMotoServer

    old = {k: os.environ.get(k) for k in AWS_ENV}
    os.environ.update(AWS_ENV)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.get_host_and_port()[1]}"
    finally:
        server.stop()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _recorded_body(path: Path, url_part: str) -> str:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            event = json.loads(line)
            if event["t"] == "http" and url_part in event["url"]:
                return str(event["data"])
    raise LookupError(f"no {url_part} response in {path.name}")


@dataclass(frozen=True)
class RecordedBodies:
    binance: str  # exchangeInfo of 2021-10-11 (1695 symbols)
    coinbase: str  # /products of 2021-04-17 (162 products)
    bitstamp: str  # trading-pairs-info of 2022-01-05 (140 pairs)


@pytest.fixture(scope="session")
def recorded_bodies() -> RecordedBodies:
    return RecordedBodies(
        binance=_recorded_body(BINANCE_CAPTURE, BINANCE_PATH),
        coinbase=_recorded_body(COINBASE_CAPTURE, COINBASE_PATH),
        bitstamp=_recorded_body(BITSTAMP_CAPTURE, BITSTAMP_PATH),
    )


@pytest.fixture(scope="session")
def _replay_session() -> Iterator[ReplayThread]:
    with ReplayThread([BINANCE_CAPTURE, COINBASE_CAPTURE, BITSTAMP_CAPTURE]) as replay:
        yield replay


@pytest.fixture
def replay(_replay_session: ReplayThread, recorded_bodies: RecordedBodies) -> ReplayThread:
    """The replay server answering the listings paths with the recorded bodies (Bitstamp's
    from its capture, under /bitstamp; Bitfinex's, built from the docs, unprefixed), no
    faults."""
    _replay_session.set_http(BINANCE_PATH, recorded_bodies.binance)
    _replay_session.set_http(COINBASE_PATH, recorded_bodies.coinbase)
    _replay_session.set_http(BITFINEX_PATH, BITFINEX_LISTING.read_bytes())
    _replay_session.faults.http_errors = 0
    _replay_session.faults.http_error_status = 429
    _replay_session.faults.http_retry_after_s = 1
    return _replay_session


def write_config(
    tmp_path: Path,
    replay: ReplayThread,
    *,
    min_listings: tuple[int, int] = (100, 50),
    **secmaster: object,
) -> Path:
    """A config.toml in tmp_path: Binance and Coinbase on the replay server (the exchanges a
    sync polls), data under tmp_path."""
    settings: dict[str, object] = {
        "exchanges": ["binance", "coinbase"],
        "poll_interval_min": 60.0,
        "http_timeout_s": 10.0,
        "http_retries": 2,
        "backoff_initial_s": 0.01,
        "backoff_max_s": 0.05,
    }
    settings.update(secmaster)
    lines = [f"data_dir = {json.dumps(str(tmp_path / 'data'))}", "", "[secmaster]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in settings.items()]
    lines += [
        f"min_listings = {{ binance = {min_listings[0]}, coinbase = {min_listings[1]} }}",
        "",
    ]
    for ex in ("binance", "coinbase"):
        lines += [f"[exchanges.{ex}]", f'rest_url = "{replay.http_url}/{ex}"', ""]
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def toml_value(value: object) -> str:
    """A value as TOML writes it (tables inline; everything else as its JSON, which TOML reads
    the same for strings, numbers and lists)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "secmaster.sqlite"


def dump_db(tmp_path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, read with plain sqlite3 (empty dict: no database file)."""
    path = db_path(tmp_path)
    if not path.exists():
        return {}
    with sqlite3.connect(path) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}


def query(tmp_path: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db_path(tmp_path)) as conn:
        return conn.execute(sql, params).fetchall()


def modified_binance(
    body: str,
    *,
    remove: str = "ETHBTC",
    add: str = "NEWUSDT",
    tick: tuple[str, str] | None = ("BTCUSDT", "0.10000000"),
    status: tuple[str, str] | None = None,
) -> bytes:
    """The recorded exchangeInfo with one pair removed, one added, one tick size changed."""
    doc = orjson.loads(body)
    symbols = [s for s in doc["symbols"] if s["symbol"] != remove]
    if add:
        template = next(s for s in doc["symbols"] if s["symbol"] == "BTCUSDT")
        symbols.append({**template, "symbol": add, "baseAsset": add.removesuffix("USDT")})
    for s in symbols:
        if tick is not None and s["symbol"] == tick[0]:
            s["filters"] = [
                {**f, "tickSize": tick[1]} if f["filterType"] == "PRICE_FILTER" else f
                for f in s["filters"]
            ]
        if status is not None and s["symbol"] == status[0]:
            s["status"] = status[1]
    return orjson.dumps({**doc, "symbols": symbols})


def secmaster_cmd(cfg: Path, *args: str) -> list[str]:
    """argv of a real ``python -m secmaster`` run with this config."""
    return [sys.executable, "-m", "secmaster", "--config", str(cfg), *args]


def run_secmaster(
    cfg: Path, *args: str, timeout_s: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m secmaster`` to completion (bounded), capturing stdout and stderr."""
    return subprocess.run(
        secmaster_cmd(cfg, *args),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def log_events(stderr: str) -> list[dict[str, Any]]:
    """The JSON log lines of a run (stderr is not a TTY, so logs are JSON)."""
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


# Listing names an attacker (or a broken exchange) could send: each must be refused by the
# binance symbol grammar, so none may reach the table, `track` or the rendered fleet.
HOSTILE_NAMES = (
    "NKNUSDT\n[program:pwn]\ncommand=/bin/true\n[program:z",
    "BTC\nUSDT",
    "BTCUSDT\n",
    "BTC\rUSDT",
    "BTC\u2028USDT",
    "BTC%USDT",
    "%(here)s",
    "BTC%(ENV_HOME)sUSDT",
    "BTC;USDT",
    "BTC#USDT",
    "[program:x]",
    "BTC=USDT",
    "BTC USDT",
    " BTCUSDT",
    "BTC\tUSDT",
    "'BTCUSDT'",
    '"BTCUSDT"',
    "BTC/USDT",
    "../../etc",
    "..",
    "BTC\x00USDT",
    "BTC\x1b[31mUSDT",
    "ＢＴＣＵＳＤＴ",
    "币安人生USDT",
    "btcusdt",
    "",
    "X",
    "A" * 100_000,
)


def hostile_binance(body: str, names: Sequence[str], *, keep: Sequence[str] = ()) -> bytes:
    """An exchangeInfo body: the recorded symbols (only ``keep`` if given) plus one symbol
    per hostile name (a copy of BTCUSDT's entry with ``symbol`` replaced)."""
    doc = orjson.loads(body)
    template = next(s for s in doc["symbols"] if s["symbol"] == "BTCUSDT")
    symbols = [s for s in doc["symbols"] if not keep or s["symbol"] in keep]
    symbols += [{**template, "symbol": name} for name in names]
    return orjson.dumps({**doc, "symbols": symbols})
