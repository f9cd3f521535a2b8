"""Quiet streams (ops/watch.py): one alert per silence, a resolve when frames come back."""

from __future__ import annotations

from pathlib import Path

from collector.common.alerts import AlertSettings, configure_alerts, flush_alerts
from ops.watch import Observed, Watcher, silence
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
