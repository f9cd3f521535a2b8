"""The fleet under a real supervisord (started here, in a short temp dir with its own socket).

Rendering is checked exactly; tracking/untracking goes through the real ``secmaster`` CLI and
its apply hook; crashes are real ``kill -9``; alerts arrive at a local HTTP receiver.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.common.errors import ConfigError
from collector.config import load_config
from collector.exchanges import ADAPTERS
from ops.fleet import (
    FleetSettings,
    build_fleet_settings,
    program_name,
    render_programs,
    renderable,
)
from ops.replay import ReplayThread
from tests.ops.alert_sink import WatchedAlertSink as AlertSink
from tests.ops.fleet_harness import (
    fleet,
    prepare_root,
    replay_server,
    run_py,
    secmaster,
    supervisor_programs,
)
from tests.secmaster.conftest import (
    BINANCE_CAPTURE,
    BINANCE_PATH,
    _recorded_body,
    hostile_binance,
)

NKN = ["collector:binance-nknusdt-book", "collector:binance-nknusdt-trade"]


@pytest.fixture(scope="module")
def replay() -> Iterator[ReplayThread]:
    with replay_server() as r:
        yield r


def test_program_names_are_supervisor_safe() -> None:
    assert program_name("binance", "BTCUSDT", "book") == "binance-btcusdt-book"
    assert program_name("coinbase", "BTC-USD", "trade") == "coinbase-btc-usd-trade"
    assert program_name("bitfinex", "tBTC:USD", "l3") == "bitfinex-tbtc-usd-l3"


def _settings(tmp_path: Path, fleet_toml: str = "") -> FleetSettings:
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'data_dir = "data"\n[collector]\nshutdown_timeout_s = 5.0\n[fleet]\n{fleet_toml}'
    )
    return build_fleet_settings(load_config(cfg), python="/venv/bin/python")


def test_render_is_deterministic_sorted_and_complete(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    streams = [("coinbase", "BTC-USD", "trade"), ("binance", "BTCUSDT", "book")]
    text = render_programs(s, streams)
    assert text == render_programs(s, list(reversed(streams)))
    cfg, root = tmp_path / "config.toml", tmp_path
    section = text.split("[program:binance-btcusdt-book]\n", 1)[1].split("\n\n", 1)[0]
    assert section.splitlines() == [
        "command = /venv/bin/python -m collector --exchange binance --symbol BTCUSDT"
        f" --data_type book --config {cfg}",
        f"directory = {root}",
        "autostart = true",
        "autorestart = true",
        "startsecs = 2",
        "startretries = 3",
        "stopsignal = TERM",
        "stopwaitsecs = 10",  # > the collector's 5 s shutdown bound
        "stopasgroup = true",
        "killasgroup = true",
        f"stdout_logfile = {root}/var/log/collector/binance-btcusdt-book.out.log",
        "stdout_logfile_maxbytes = 1MB",
        "stdout_logfile_backups = 1",
        f"stderr_logfile = {root}/var/log/collector/binance-btcusdt-book.err.log",
        "stderr_logfile_maxbytes = 50MB",
        "stderr_logfile_backups = 5",
    ]
    assert "[group:collector]\nprograms = binance-btcusdt-book,coinbase-btc-usd-trade\n" in text
    assert "[group:periodic]\nprograms = secmaster,qa,sync\n" in text
    assert "command = /venv/bin/python -m ops.periodic qa --config" in text
    assert "[eventlistener:alerts]" in text
    assert f"[unix_http_server]\nfile = {root}/data/supervisor.sock\nchmod = 0700\n" in text
    assert "[inet_http_server]" not in text


def test_render_options_and_bad_config(tmp_path: Path) -> None:
    s = _settings(tmp_path, 'periodic = ["qa"]\nlistener = false\nenvironment = { TZ = "UTC" }')
    text = render_programs(s, [])
    assert "[group:collector]" not in text  # an empty universe has no group
    assert "[program:qa]" in text
    assert "[program:sync]" not in text
    assert "[eventlistener" not in text
    assert 'environment = TZ="UTC"' in text
    with pytest.raises(ConfigError, match=r"periodic = \['cron'\]"):
        _settings(tmp_path, 'periodic = ["cron"]')
    with pytest.raises(ConfigError, match="map to one program name"):
        render_programs(
            _settings(tmp_path), [("coinbase", "A-B", "trade"), ("coinbase", "A/B", "trade")]
        )


def test_cli_bad_config_exit_2(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[fleet]\nperiodic = "qa"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "ops.fleet", "--config", str(cfg), "render"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert proc.stderr == (
        f"ops.fleet: error: {cfg} [fleet]: periodic = 'qa' must be a list of "
        "('secmaster', 'qa', 'sync', 'dataset')\n"
    )
    assert not (tmp_path / "var").exists()


@pytest.mark.e2e
def test_track_starts_untrack_stops_unchanged_keep_pids(replay: ReplayThread) -> None:
    with fleet(replay, track=[("binance", "NKNUSDT", "trade,book")]) as f:
        pids = f.wait_running(NKN)
        # Tracking a pair: `secmaster track` runs `ops.fleet apply` (its apply_cmd).
        secmaster(f.cfg, "track", "coinbase", "SKL-USD", "--data-types", "trade")
        after = f.wait_running([*NKN, "collector:coinbase-skl-usd-trade"])
        assert {n: after[n] for n in NKN} == pids
        # Untracking one data type stops (and removes) exactly that program.
        secmaster(f.cfg, "untrack", "binance", "NKNUSDT", "--data-types", "book")
        infos = f.infos()
        assert "collector:binance-nknusdt-book" not in infos
        assert infos["collector:binance-nknusdt-trade"]["pid"] == pids[NKN[1]]
        assert (
            infos["collector:coinbase-skl-usd-trade"]["pid"]
            == after["collector:coinbase-skl-usd-trade"]
        )
        with pytest.raises(ProcessLookupError):
            os.kill(pids[NKN[0]], 0)
        # An apply with nothing changed touches nothing.
        run_py("-m", "ops.fleet", "--config", str(f.cfg), "apply")
        assert {k: v["pid"] for k, v in f.infos().items()} == {
            k: v["pid"] for k, v in infos.items()
        }
        # The stopped collector finalised its files (SIGTERM within stopwaitsecs).
        book = f.root / "data" / "binance" / "NKNUSDT" / "book"
        assert list(book.rglob("*.part")) == []
        assert len(list((book / "parsed").rglob("*.csv.gz"))) == 1
        # One status view: every stream with its supervisor state and collector status.
        st = json.loads(
            run_py("-m", "ops", "status", "--json", "--config", str(f.cfg), check=False)
        )
        streams = {r["program"]: r for r in st["streams"]}
        assert sorted(streams) == ["binance-nknusdt-trade", "coinbase-skl-usd-trade"]
        trade = streams["binance-nknusdt-trade"]
        assert (trade["state"], trade["pid"], trade["symbol"]) == (
            "RUNNING",
            pids[NKN[1]],
            "NKNUSDT",
        )
        assert trade["gaps_today"] is not None
        assert "rows_hour" in trade  # None until the sparse trade stream has a parsed file
        assert st["supervisord"] is True
        assert st["listener"] == "RUNNING"
        assert st["periodic"] == []
        # A stopped collector needs a human: exit code 1, named in the problems.
        f.rpc().supervisor.stopProcess("collector:coinbase-skl-usd-trade")
        proc = subprocess.run(
            [sys.executable, "-m", "ops", "status", "--config", str(f.cfg)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.returncode == 1
        assert proc.stdout.splitlines()[2].split() == [
            "STREAM",
            "STATE",
            "CONN",
            "LAST",
            "FRAME",
            "ROWS/H",
            "GAPS",
            "RECONN",
            "QA",
            "SYNCED",
        ]
        assert "  - coinbase-skl-usd-trade: state STOPPED" in proc.stdout


@pytest.mark.e2e
def test_kill9_restarts_and_alerts_bad_argument_goes_fatal(replay: ReplayThread) -> None:
    with AlertSink() as sink:
        env = {"SLACK_WEBHOOK_URL": f"{sink.url}/slack"}
        with fleet(replay, track=[("binance", "NKNUSDT", "trade")], env=env) as f:
            name = "collector:binance-nknusdt-trade"
            pid = f.wait_running([name, "alerts:alerts"])[name]
            os.kill(pid, signal.SIGKILL)
            text = sink.wait_for(lambda t: "exited unexpectedly" in t, 20.0)
            assert text.startswith(f"[ERROR] listener: {name} exited unexpectedly | host=test")
            assert f"pid={pid}" in text
            assert "stderr_tail=" in text
            new_pid = f.wait_running([name])[name]
            assert new_pid != pid
            sink.wait_for(lambda t: t.startswith(f"[RESOLVED] listener: {name} is running"), 20)
            # A collector with a bad argument exits 2 at once: BACKOFF, then FATAL.
            f.add_program(
                "bad-arg",
                "--exchange binance --symbol NKNUSDT --data_type nope",
                "startsecs = 1\nstartretries = 1\nautorestart = true\n",
            )
            f.wait(lambda i: i["bad-arg:bad-arg"]["statename"] == "FATAL", 30, "FATAL")
            text = sink.wait_for(lambda t: "bad-arg could not be started" in t, 20.0)
            assert text.startswith("[CRITICAL] listener: bad-arg could not be started: FATAL")
            assert text.endswith(
                "collector: error: unknown data_type 'nope' (choose from trade, book, l3)"
            )  # the tail of its stderr log
            sink.wait_for(lambda t: t.startswith("[WARNING] listener: bad-arg exited during"), 5)
            # The listener answered every event: it is still RUNNING, never restarted.
            assert f.infos()["alerts:alerts"]["statename"] == "RUNNING"


def test_listener_protocol_exact_and_failing_sink(tmp_path: Path) -> None:
    """Only protocol on stdout, every event answered OK even when the sink answers 500."""
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'data_dir = "{tmp_path}/data"\n[alerts]\ntimeout_s = 1.0\nretries = 1\n')
    with AlertSink() as sink:
        sink.status = 500
        payloads = [
            (
                "PROCESS_STATE_EXITED",
                "processname:x groupname:g from_state:RUNNING expected:0 pid:7",
            ),
            (
                "PROCESS_STATE_EXITED",
                "processname:y groupname:g from_state:RUNNING expected:1 pid:8",
            ),
            ("PROCESS_STATE_FATAL", "processname:x groupname:g from_state:BACKOFF"),
            ("TICK_5", "when:1"),
        ]
        stdin = b"".join(
            f"ver:3.0 server:supervisor serial:{i} pool:alerts poolserial:{i} "
            f"eventname:{name} len:{len(body)}\n{body}".encode()
            for i, (name, body) in enumerate(payloads)
        )
        proc = subprocess.run(
            [sys.executable, "-m", "ops.listener", "--config", str(cfg)],
            input=stdin,
            capture_output=True,
            timeout=30,
            env={**os.environ, "SLACK_WEBHOOK_URL": f"{sink.url}/slack"},
        )
        assert proc.returncode == 0, proc.stderr.decode()
        assert proc.stdout == b"READY\n" + b"RESULT 2\nOKREADY\n" * 4
        texts = sink.texts()
        # Two alerts (the expected exit and the tick are not alerts), each tried twice.
        assert sorted(set(texts)) == sorted(
            {
                "[ERROR] listener: g:x exited unexpectedly | host=local | program=g:x | "
                "from_state=RUNNING | pid=7 | stderr_tail=(no SUPERVISOR_SERVER_URL)",
                "[CRITICAL] listener: g:x could not be started: FATAL, supervisord gave up | "
                "host=local | program=g:x | from_state=BACKOFF | "
                "stderr_tail=(no SUPERVISOR_SERVER_URL)",
            }
        )
        assert len(texts) == 4
    assert b"alert.sink_failed" in proc.stderr


# --- hostile values never reach the generated file (issue 16, item 1) ----------------------

HOSTILE_STREAMS = [
    ("binance", "BTC\n[program:x]\ncommand=/bin/sh -c id", "trade"),
    ("binance", "BTC%USDT", "trade"),
    ("binance", "%(here)s", "book"),
    ("binance", "BTC USDT", "book"),
    ("binance", "../../etc", "book"),
    ("binance", "BTCUSDT", "l3"),
    ("binance", "BTCUSDT", "trade\n[program:y]"),
    ("coinbase", "BTC-USD;id", "trade"),
    ("coinbase", "BTC-USD\r", "trade"),
    ("kraken", "XBTUSD", "trade"),
    ("binance\n[program:z]", "BTCUSDT", "trade"),
]


@pytest.mark.parametrize("stream", HOSTILE_STREAMS, ids=repr)
def test_render_programs_refuses_a_hostile_stream(
    tmp_path: Path, stream: tuple[str, str, str]
) -> None:
    """A stream outside the grammar is refused with a ConfigError naming it, not escaped."""
    with pytest.raises(ConfigError, match=r"^stream '") as exc:
        render_programs(_settings(tmp_path), [("binance", "BTCUSDT", "book"), stream])

    assert repr(":".join(stream))[:30] in str(exc.value)
    assert str(exc.value).isprintable()


def test_renderable_keeps_the_good_streams_and_says_why_not() -> None:
    """renderable() splits good streams from refused ones, each reason one printable line."""
    good = [("binance", "BTCUSDT", "book"), ("bitfinex", "BTC:USD", "trade")]

    ok, refused = renderable([good[0], *HOSTILE_STREAMS, good[1]])

    assert ok == good
    assert len(refused) == len(HOSTILE_STREAMS)
    assert refused[0] == (
        "binance: symbol 'BTC\\n[program:x]\\ncommand=/bin/sh -c id' does not fit the symbol "
        "grammar"
    )
    assert all(r.isprintable() for r in refused)


@pytest.mark.parametrize(
    ("fleet_toml", "python", "message"),
    [
        ("", "/venv/bin/py thon", "python '/venv/bin/py thon' cannot go into"),
        ("", "/venv/bin/python\n[program:x]", "python '/venv/bin/python\\n[program:x]' cannot"),
        ("", "/venv/%(here)s/python", "python '/venv/%(here)s/python' cannot go"),
        ("", "/venv/bin/python;id", "python '/venv/bin/python;id' cannot go"),
        ("", "python", "python 'python' cannot go into"),
        ('environment = { TZ = "UTC\\n[program:x]" }', None, "[fleet] environment 'TZ' = "),
        ('environment = { X = "a\\"b" }', None, "[fleet] environment 'X' = 'a\"b' cannot"),
        ('environment = { X = "50%" }', None, "[fleet] environment 'X' = '50%' cannot"),
        ('environment = { X = "a,Y=b" }', None, "[fleet] environment 'X' = 'a,Y=b' cannot"),
        ('log_dir = "var/log%(here)s"', None, "[fleet] log_dir '"),
        ('log_dir = "var/l g"', None, "[fleet] log_dir '"),
        ('socket = "s[1].sock"', None, "[fleet] socket '"),
    ],
)
def test_render_refuses_bad_setting_values(
    tmp_path: Path, fleet_toml: str, python: str | None, message: str
) -> None:
    """A path, interpreter or environment value outside its grammar is a ConfigError."""
    s = _settings(tmp_path, fleet_toml)
    if python is not None:
        s = dataclasses.replace(s, python=python)

    with pytest.raises(ConfigError) as exc:
        render_programs(s, [("binance", "BTCUSDT", "book")])

    assert str(exc.value).startswith(message)
    assert str(exc.value).isprintable()


def test_config_in_a_directory_with_percent_is_refused(tmp_path: Path) -> None:
    """The config path goes into every command: a '%' in it is refused, not escaped."""
    d = tmp_path / "a%b"
    d.mkdir()

    with pytest.raises(ConfigError, match=r"^config file '.*/a%b/config.toml' cannot go into"):
        render_programs(_settings(d), [])


def test_cli_bad_setting_exit_2_nothing_written(tmp_path: Path) -> None:
    """ops.fleet render with a hostile environment value: one line, exit 2, nothing created."""
    cfg = tmp_path / "config.toml"
    cfg.write_text('data_dir = "data"\n[fleet]\nenvironment = { TZ = "UTC\\n[program:x]" }\n')

    proc = subprocess.run(
        [sys.executable, "-m", "ops.fleet", "render", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert proc.returncode == 2
    assert proc.stderr == (
        "ops.fleet: error: [fleet] environment 'TZ' = 'UTC\\n[program:x]' cannot go into the "
        "supervisord programs: values are A-Z a-z 0-9 _ . : @ + / - only\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


def _expected_argv(python: str, cfg: Path, stream: tuple[str, str, str]) -> list[str]:
    exchange, symbol, data_type = stream
    return [
        python,
        "-m",
        "collector",
        "--exchange",
        exchange,
        "--symbol",
        symbol,
        "--data_type",
        data_type,
        "--config",
        str(cfg),
    ]


_symbols = st.one_of(
    *(st.from_regex(a.SYMBOL_PATTERN, fullmatch=True) for a in ADAPTERS.values()),
    st.text(max_size=30),
    st.lists(
        st.sampled_from(["\n", "%", "%(here)s", ";", "[program:x]", "=", " ", "'", "/", "..", "A"]),
        min_size=1,
        max_size=6,
    ).map("".join),
)
_streams = st.tuples(
    st.sampled_from([*ADAPTERS, "kraken", "binance\n", ""]),
    _symbols,
    st.sampled_from(["trade", "book", "l3", "trade\n", "%(here)s"]),
)


@settings(max_examples=60, deadline=None, database=None)
@given(streams=st.lists(_streams, max_size=6))
def test_property_rendered_file_parses_to_exactly_the_good_programs(
    streams: list[tuple[str, str, str]],
) -> None:
    """For any universe, supervisor's own parser reads exactly the renderable programs."""
    with tempfile.TemporaryDirectory(prefix="fz", dir="/tmp") as tmp:
        root = Path(tmp)
        prepare_root(root)
        for sub in ("collector", "periodic", "listener"):
            (root / "var" / "log" / sub).mkdir()
        cfg = root / "config.toml"
        cfg.write_text('data_dir = "data"\n[fleet]\nperiodic = ["qa"]\n')
        s = build_fleet_settings(load_config(cfg), python="/opt/venv/bin/python")
        ok, refused = renderable(streams)
        (root / "var" / "supervisor" / "programs.conf").write_text(render_programs(s, ok))

        programs = supervisor_programs(root)

    assert len(ok) + len(refused) == len(streams)
    assert programs == {
        **{
            f"collector:{program_name(*st_)}": _expected_argv("/opt/venv/bin/python", cfg, st_)
            for st_ in ok
        },
        "periodic:qa": ["/opt/venv/bin/python", "-m", "ops.periodic", "qa", "--config", str(cfg)],
        "alerts:alerts": ["/opt/venv/bin/python", "-m", "ops.listener", "--config", str(cfg)],
    }


def test_hostile_tracked_row_is_skipped_and_reported_by_render(tmp_path: Path) -> None:
    """A universe row outside the grammar (written by hand): rendered without it, error logged."""
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        'data_dir = "data"\n[fleet]\nperiodic = []\nlistener = false\n'
        '[exchanges.binance]\nrest_url = "http://127.0.0.1:9"\n'
        '[exchanges.coinbase]\nrest_url = "http://127.0.0.1:9"\n'
    )
    secmaster(cfg, "tracked")  # writes the default universe
    with sqlite3.connect(tmp_path / "data" / "secmaster.sqlite") as conn:
        conn.executemany(
            "INSERT INTO tracked VALUES ('binance', ?, 'trade', '2026-01-01 00:00', 'x')",
            [("NKNUSDT\n[program:pwn]\ncommand=/bin/true\n[program:z",), ("NKN\n%USDT",)],
        )
    prepare_root(tmp_path)

    proc = subprocess.run(
        [sys.executable, "-m", "ops.fleet", "render", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert proc.returncode == 0, proc.stderr
    assert sorted(supervisor_programs(tmp_path)) == [
        "collector:binance-btcusdt-book",
        "collector:binance-btcusdt-trade",
        "collector:coinbase-btc-usd-book",
        "collector:coinbase-btc-usd-trade",
    ]
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    (error,) = [e for e in events if e["event"] == "secmaster.universe.refused"]
    assert error["count"] == 2
    assert any(e["event"] == "alert" and e["key"] == "secmaster:universe:refused" for e in events)


@pytest.mark.e2e
def test_hostile_listing_cannot_inject_into_or_stop_supervisord(tmp_path: Path) -> None:
    """Hostile names in the listing: supervisord starts and runs exactly the tracked program."""
    marker = tmp_path / "pwned"
    names = [
        f"NKNUSDT\n[program:pwn]\ncommand=/bin/touch {marker}\nautostart=true\n[program:z",
        "NKN\n%USDT",
        "NKN%(here)sUSDT",
        "NKNUSDT;touch",
    ]
    body = hostile_binance(_recorded_body(BINANCE_CAPTURE, BINANCE_PATH), names)

    def track_hostile(cfg: Path) -> None:
        for name in names:
            proc = subprocess.run(
                [sys.executable, "-m", "secmaster", "--config", str(cfg), "track", "binance"]
                + [name, "--data-types", "trade"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert proc.returncode == 2, (name, proc.stdout, proc.stderr)

    with replay_server() as r:
        r.set_http(BINANCE_PATH, body)
        with fleet(r, track=[("binance", "NKNUSDT", "trade")], before_start=track_hostile) as f:
            name = "collector:binance-nknusdt-trade"
            f.wait_running([name, "alerts:alerts"])

            assert sorted(f.infos()) == ["alerts:alerts", name]
            assert sorted(supervisor_programs(f.root)) == ["alerts:alerts", name]
            assert f.rpc().supervisor.getState()["statename"] == "RUNNING"
            stored = subprocess.run(
                [sys.executable, "-m", "secmaster", "--config", str(f.cfg), "list"]
                + ["--exchange", "binance", "--format", "json"],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            assert all(
                ADAPTERS["binance"].SYMBOL_PATTERN.fullmatch(row["trading_pair"])
                for row in json.loads(stored.stdout)
            )
            assert len(json.loads(stored.stdout)) == 1695
    assert not marker.exists()
