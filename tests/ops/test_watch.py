"""Quiet streams (ops/watch.py): one alert per silence, a resolve when frames come back."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from collector.common.alerts import AlertSettings, configure_alerts, flush_alerts
from ops.watch import HostWatch, Observed, Watcher, silence, stream_of
from tests.collector.tradepeer import TradePeer
from tests.ops.alert_sink import WatchedAlertSink as AlertSink
from tests.ops.fleet_harness import Fleet, secmaster, short_dir
from tests.qa.sinks import sink_server


def observed(status: dict[str, object] | None, *, running: bool = True) -> Observed:
    return Observed("binance-btcusdt-trade", "binance", "BTCUSDT", "trade", running, 0.0, status)


class TestSilence:
    def test_recent_frames_are_not_silent(self) -> None:
        st = {"updated_at": 995.0, "last_frame_at": 990.0, "connected": True}

        assert silence(observed(st), 1000.0, 300.0) is None

    def test_no_frame_for_longer_than_the_limit(self) -> None:
        st = {"updated_at": 999.0, "last_frame_at": 600.0, "connected": False}

        assert silence(observed(st), 1000.0, 300.0) == "not connected, no frame for 400 s"

    def test_never_connected_counts_from_the_process_start(self) -> None:
        st = {"updated_at": 999.0, "last_frame_at": None, "connected": False}

        assert silence(observed(st), 1000.0, 300.0) == "not connected, no frame for 1000 s"
        assert silence(observed(st), 200.0, 300.0) is None  # too young to tell

    def test_a_hung_process_stops_rewriting_its_status(self) -> None:
        st = {"updated_at": 100.0, "last_frame_at": 99.0, "connected": True}

        assert silence(observed(st), 1000.0, 300.0) == "status not rewritten for 900 s (hung?)"

    def test_programs_that_are_not_running_are_the_listener_s_business(self) -> None:
        assert silence(observed(None, running=False), 1000.0, 300.0) is None


def test_one_alert_per_episode_then_a_resolve(tmp_path: Path) -> None:
    """Silent at 3 checks in a row: one alert; frames again: one resolve (a local Slack)."""
    with sink_server() as slack:
        configure_alerts(AlertSettings(host_id="h1", slack_webhook_url=f"{slack.url}/s",
                                       state_dir=tmp_path / ".alerts"))  # fmt: skip
        w = Watcher(tmp_path / "silent.json", "h1", 300.0)
        quiet = observed({"updated_at": 999.0, "last_frame_at": 100.0, "connected": True})
        for now in (1000.0, 1060.0, 1120.0):
            w.check([quiet], now)
        back = observed({"updated_at": 1179.0, "last_frame_at": 1178.0, "connected": True})
        assert w.check([back], 1180.0) == ([], ["binance-btcusdt-trade"])
        assert flush_alerts(5.0)
        configure_alerts(None)

    texts = [b["text"].split(" | ")[0] for b in slack.bodies("/s")]
    assert texts == [
        "[ERROR] watch: stream silent on h1: binance BTCUSDT trade (connected, but no frame "
        "for 900 s)",
        "[RESOLVED] watch: stream receiving again on h1: binance BTCUSDT trade (silent for 180 s)",
    ]


def test_the_open_episodes_survive_a_restart(tmp_path: Path) -> None:
    """A new Watcher (a restarted listener) does not alert the same silence again."""
    quiet = observed({"updated_at": 999.0, "last_frame_at": 100.0, "connected": True})

    first = Watcher(tmp_path / "silent.json", "h1", 300.0).check([quiet], 1000.0)
    second = Watcher(tmp_path / "silent.json", "h1", 300.0).check([quiet], 1060.0)

    assert first == (["binance-btcusdt-trade"], [])
    assert second == ([], [])


def named(program: str, status: dict[str, object] | None, *, running: bool = True) -> Observed:
    exchange, symbol, data_type = program.split("-")
    return Observed(program, exchange, symbol.upper(), data_type, running, 0.0, status)


QUIET = {"updated_at": 999.0, "last_frame_at": 100.0, "connected": False}


class TestEpisodes:
    def test_a_crash_in_the_middle_neither_resolves_nor_reopens(self, tmp_path: Path) -> None:
        """Silent, then EXITED (the listener's business), then RUNNING but still silent: the
        one episode stays open; only a fresh frame of the running process ends it."""
        w = Watcher(tmp_path / "silent.json", "h1", 300.0)
        prog = "binance-btcusdt-trade"

        opened = w.check([named(prog, QUIET)], 1000.0)
        down = w.check([named(prog, QUIET, running=False)], 1060.0)
        restarted = Observed(prog, "binance", "BTCUSDT", "trade", True, 1100.0, QUIET)
        young = w.check([restarted], 1120.0)
        still = w.check([restarted], 1500.0)
        fresh = {"updated_at": 1559.0, "last_frame_at": 1558.0, "connected": True}
        back = w.check([Observed(prog, "binance", "BTCUSDT", "trade", True, 1100.0, fresh)], 1560.0)

        assert (opened, down, young, still, back) == (
            ([prog], []), ([], []), ([], []), ([], []), ([], [prog]),
        )  # fmt: skip

    def test_frames_of_an_earlier_process_do_not_count(self) -> None:
        """A status.json left by the previous process (frames before this start) is silence
        counted from this process's start."""
        st = {"updated_at": 999.0, "last_frame_at": 500.0, "connected": False}
        o = Observed("p", "binance", "BTCUSDT", "trade", True, 600.0, st)

        assert silence(o, 1000.0, 300.0) == "not connected, no frame for 400 s"

    def test_an_outage_of_many_streams_is_one_alert_and_one_resolve(self, tmp_path: Path) -> None:
        """Twelve Binance streams silent in one tick (an exchange outage): one shared alert
        naming the count, resolved once the last one is back; a Coinbase one alone."""
        with sink_server() as slack:
            configure_alerts(AlertSettings(host_id="h1", slack_webhook_url=f"{slack.url}/s",
                                           state_dir=tmp_path / ".alerts"))  # fmt: skip
            w = Watcher(tmp_path / "silent.json", "h1", 300.0)
            progs = [f"binance-s{i:02d}usdt-trade" for i in range(12)]
            quiet = [named(p, QUIET) for p in progs] + [named("coinbase-btc-trade", QUIET)]
            fresh = {"updated_at": 1199.0, "last_frame_at": 1199.0, "connected": True}

            w.check(quiet, 1000.0)
            _, eleven = w.check([named(p, fresh) for p in progs[:11]] + quiet[11:], 1200.0)
            _, ended = w.check([named(p, fresh) for p in progs] + quiet[12:], 1260.0)
            assert flush_alerts(5.0)
            configure_alerts(None)

        texts = [b["text"].split(" | ")[0] for b in slack.bodies("/s")]
        assert texts == [
            "[ERROR] watch: 12 binance streams silent on h1 (not connected, no frame for 900 s)",
            "[ERROR] watch: stream silent on h1: coinbase BTC trade (not connected, no frame "
            "for 900 s)",
            "[RESOLVED] watch: binance streams receiving again on h1 (silent for 260 s)",
        ]
        assert eleven == progs[:11]  # their episodes end; the shared alert waits for the 12th
        assert ended == [progs[11]]
        assert "streams=S00USDT trade, S01USDT trade," in slack.bodies("/s")[0]["text"]

    def test_a_stream_moved_away_resolves_its_episode(self, tmp_path: Path) -> None:
        """Placement moved a silent stream to another host: its alert does not stay open."""
        w = Watcher(tmp_path / "silent.json", "h1", 300.0)
        w.check([named("binance-btcusdt-trade", QUIET)], 1000.0)

        assert w.check([], 1060.0) == ([], ["binance-btcusdt-trade"])
        assert w.silent_programs() == set()


C = "/v/python -m collector --exchange"


class TestStreamOfCommand:
    @pytest.mark.parametrize(
        ("command", "stream"),
        [
            (f"{C} binance --symbol BTCUSDT --data_type trade --config /x/config.toml",
             ("binance", "BTCUSDT", "trade")),
            (f"{C} coinbase --symbol BTC-USD --data_type l3", ("coinbase", "BTC-USD", "l3")),
            (f"{C} binance --symbol ../../etc --data_type trade", None),
            (f"{C} kraken --symbol XBTUSD --data_type trade", None),
            (f"{C} binance --symbol BTCUSDT --data_type l3", None),
            (f"{C} binance --symbol 'BTC\nUSDT' --data_type trade", None),
            (f"{C} binance --symbol 'unterminated", None),
            ("/v/python -m ops.periodic qa --config /x", None),
        ],
    )  # fmt: skip
    def test_only_a_collector_command_within_the_grammars_names_a_stream(
        self, command: str, stream: tuple[str, str, str] | None
    ) -> None:
        """The stream comes from supervisord's command line; anything else is no stream."""
        assert stream_of(command) == stream


# --- a real supervisord, a real collector, a peer switched off and on ----------------------


def _samples(path: Path) -> dict[tuple[str, str], float]:
    return {
        (s.name, s.labels.get("symbol", "")): s.value
        for family in text_string_to_metric_families(path.read_text())
        for s in family.samples
    }


def _rows(prom: Path) -> float:
    return _samples(prom).get(("l3c_stream_rows_total", "BTCUSDT"), 0) if prom.exists() else 0


@pytest.mark.e2e
def test_a_quiet_stream_is_one_alert_then_a_resolve_under_supervisord() -> None:
    """The trade feed goes down: one alert naming host, exchange, symbol and data type (and
    no more on the next ticks); back up: one resolve. The metrics textfile follows."""
    root = short_dir()
    f: Fleet | None = None
    try:
        with TradePeer(rate=50.0) as peer, AlertSink() as sink:
            cfg = root / "config.toml"
            cfg.write_text(
                'data_dir = "data"\nhost_id = "test"\n'
                "[collector]\nstatus_interval_s = 0.2\nflush_interval_s = 0.2\n"
                "[collector.backoff]\ninitial_s = 0.05\nmax_s = 0.3\n"
                f'[exchanges.binance]\nws_url = "{peer.ws_url}"\nrest_url = "http://127.0.0.1:9"\n'
                '[exchanges.coinbase]\nrest_url = "http://127.0.0.1:9"\n'
                '[secmaster]\napply_cmd = ""\n'
                "[alerts]\ntimeout_s = 2.0\nretries = 0\n"
                "[fleet]\nperiodic = []\nstartsecs = 1\nsilent_after_s = 2.0\n"
                'listener_tick_s = 5\nmetrics_textfile = "var/metrics/l3c.prom"\n',
                encoding="utf-8",
            )
            secmaster(cfg, "untrack", "coinbase", "BTC-USD")
            secmaster(cfg, "untrack", "binance", "BTCUSDT", "--data-types", "book")
            f = Fleet(root, cfg, {"SLACK_WEBHOOK_URL": f"{sink.url}/slack"})
            f.start()
            name = "collector:binance-btcusdt-trade"
            f.wait_running([name, "alerts:alerts"])
            prom = root / "var" / "metrics" / "l3c.prom"
            wait_until(lambda: _rows(prom) > 0, 30, "rows in the metrics")

            peer.off()
            text = sink.wait_for(lambda t: "silent" in t, 30.0)
            assert _samples(prom)[("l3c_stream_silent", "BTCUSDT")] == 1
            before = prom.stat().st_mtime_ns
            wait_until(lambda: prom.stat().st_mtime_ns != before, 15, "another tick")
            silent_alerts = [t for t in sink.texts() if "silent" in t]
            peer.on()
            resolved = sink.wait_for(lambda t: t.startswith("[RESOLVED]"), 30.0)
            wait_until(lambda: _samples(prom)[("l3c_stream_silent", "BTCUSDT")] == 0, 15, "0")

        assert text.startswith(
            "[ERROR] watch: stream silent on test: binance BTCUSDT trade (not connected, no "
            "frame for "
        )
        assert "| host=test | exchange=binance | symbol=BTCUSDT | data_type=trade |" in text
        assert silent_alerts == [text]
        assert resolved.startswith(
            "[RESOLVED] watch: stream receiving again on test: binance BTCUSDT trade (silent for"
        )
        assert _samples(prom)[("l3c_stream_up", "BTCUSDT")] == 1
    finally:
        if f is not None:
            f.stop()
        shutil.rmtree(root, ignore_errors=True)


def wait_until(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_a_tick_without_an_answering_supervisord_does_nothing(tmp_path: Path) -> None:
    """No socket: nothing; a dead socket file (supervisord gone): one warning, nothing
    written, no exception (the listener answers every event OK)."""
    dead = tmp_path / "supervisor.sock"
    prom = tmp_path / "l3c.prom"

    def watch(sock: Path) -> HostWatch:
        return HostWatch(data_dir=tmp_path / "data", host_id="h", socket_path=sock,
                         silent_after_s=300.0, metrics_textfile=prom)  # fmt: skip

    missing = watch(tmp_path / "none.sock").tick()
    dead.write_text("")
    with capture_logs() as logs:
        refused = watch(dead).tick()

    assert (missing, refused) == (None, None)
    assert [e["event"] for e in logs] == ["watch.supervisord_unavailable"]
    assert not prom.exists()
    assert not (tmp_path / "data").exists()
