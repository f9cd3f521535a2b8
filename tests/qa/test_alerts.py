"""Alert sinks against a local server speaking the Slack/Telegram/PagerDuty request format."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import structlog

from collector.common.alerts import (
    Alert,
    Alerter,
    AlertSettings,
    build_alert_settings,
    configure_alerts,
    flush_alerts,
    send_alert,
)
from collector.common.errors import ConfigError
from collector.config import load_config
from qa.runner import run_once
from qa.settings import build_qa_settings
from tests.conftest import REPO
from tests.qa.helpers import parsed_path, trade_rows, write_parsed
from tests.qa.sinks import SinkServer, sink_server

ALERT = Alert(
    "qa",
    "error",
    "QA fail: binance BTCUSDT trade",
    "qa:binance:BTCUSDT:trade",
    {
        "exchange": "binance",
        "symbol": "BTCUSDT",
        "data_type": "trade",
        "file": "20240301T100000Z_binance_BTCUSDT_trade.csv.gz",
        "failed": "ids: 3 missing",
    },
)


@pytest.fixture
def server() -> Iterator[SinkServer]:
    with sink_server() as s:
        yield s


@pytest.fixture(autouse=True)
def _log_only_afterwards() -> Iterator[None]:
    yield
    configure_alerts(None)


def settings(server: SinkServer, tmp_path: Path, **kw: object) -> AlertSettings:
    base = AlertSettings(
        host_id="eu-1",
        state_dir=tmp_path / ".alerts",
        timeout_s=1.0,
        retries=2,
        retry_backoff_s=0.01,
        telegram_api_url=f"{server.url}/tg",
        pagerduty_events_url=f"{server.url}/pd/v2/enqueue",
        slack_webhook_url=f"{server.url}/slack/T0/B0/xyz",
        telegram_bot_token="123:abc",
        telegram_chat_id="-10042",
        pagerduty_routing_key="R" * 32,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def test_error_goes_to_all_three_sinks_in_their_formats(server: SinkServer, tmp_path: Path) -> None:
    """Slack gets text, Telegram chat_id+text on /bot<token>/sendMessage, PagerDuty a trigger."""
    a = Alerter(settings(server, tmp_path))

    a.send(ALERT)

    reqs = server.wait_for(3)
    assert a.flush(5.0)
    by_path = {r.path: r.body for r in reqs}
    text = (
        "[ERROR] qa: QA fail: binance BTCUSDT trade | exchange=binance | symbol=BTCUSDT"
        " | data_type=trade | file=20240301T100000Z_binance_BTCUSDT_trade.csv.gz"
        " | failed=ids: 3 missing | host=eu-1"
    )
    assert by_path["/slack/T0/B0/xyz"] == {"text": text}
    assert by_path["/tg/bot123:abc/sendMessage"] == {
        "chat_id": "-10042",
        "text": text,
        "disable_web_page_preview": True,
    }
    assert by_path["/pd/v2/enqueue"] == {
        "routing_key": "R" * 32,
        "event_action": "trigger",
        "dedup_key": "eu-1:qa:binance:BTCUSDT:trade",
        "payload": {
            "summary": text,
            "source": "eu-1",
            "severity": "error",
            "component": "qa",
            "custom_details": dict(ALERT.fields),
        },
    }


def test_pagerduty_trigger_then_resolve_with_same_dedup_key(
    server: SinkServer, tmp_path: Path
) -> None:
    """A resolve of an alerted key resolves the PagerDuty incident by the same dedup key."""
    s = settings(server, tmp_path, slack_webhook_url="", telegram_bot_token="")
    a = Alerter(s)

    a.send(ALERT)
    a.send(replace(ALERT, severity="info", resolve=True))
    a.send(replace(ALERT, severity="info", resolve=True))  # nothing open any more

    assert a.flush(5.0)
    bodies = server.bodies("/pd")
    assert [(b["event_action"], b["dedup_key"]) for b in bodies] == [
        ("trigger", "eu-1:qa:binance:BTCUSDT:trade"),
        ("resolve", "eu-1:qa:binance:BTCUSDT:trade"),
    ]
    assert bodies[1] == {
        "routing_key": "R" * 32,
        "event_action": "resolve",
        "dedup_key": "eu-1:qa:binance:BTCUSDT:trade",
    }


def test_warning_goes_to_chats_not_pagerduty(server: SinkServer, tmp_path: Path) -> None:
    """PagerDuty pages for error and critical only."""
    a = Alerter(settings(server, tmp_path))

    a.send(replace(ALERT, severity="warning"))

    assert a.flush(5.0)
    assert sorted(r.path.split("/")[1] for r in server.requests) == ["slack", "tg"]


def test_retries_on_5xx_until_success(server: SinkServer, tmp_path: Path) -> None:
    """Two 503s then 200: three identical requests."""
    server.statuses[:] = [503, 500]
    a = Alerter(settings(server, tmp_path, telegram_bot_token="", pagerduty_routing_key=""))

    a.send(ALERT)

    assert a.flush(5.0)
    assert len(server.requests) == 3
    assert server.bodies()[0] == server.bodies()[2]


def test_4xx_is_not_retried_and_never_raises(server: SinkServer, tmp_path: Path) -> None:
    """A rejected request is logged once, not retried."""
    server.statuses[:] = [400]
    a = Alerter(settings(server, tmp_path, telegram_bot_token="", pagerduty_routing_key=""))

    with structlog.testing.capture_logs() as logs:
        a.send(ALERT)
        assert a.flush(5.0)

    assert len(server.requests) == 1
    failed = [e for e in logs if e["event"] == "alert.sink_failed"]
    assert failed == [
        {
            "event": "alert.sink_failed",
            "sink": "slack",
            "error": "HTTP 400",
            "attempts": 1,
            "log_level": "error",
        }
    ]


def test_repeats_suppressed_within_window_across_processes(
    server: SinkServer, tmp_path: Path
) -> None:
    """Two alerters sharing the state dir (two processes) send a repeat once per window."""
    now = [1000.0]
    s = settings(
        server, tmp_path, telegram_bot_token="", pagerduty_routing_key="", suppress_window_s=900.0
    )
    first, second = Alerter(s, clock=lambda: now[0]), Alerter(s, clock=lambda: now[0])

    first.send(ALERT)
    now[0] += 100
    second.send(ALERT)  # same key and severity, inside the window: suppressed
    second.send(replace(ALERT, severity="critical"))  # worse: sent
    now[0] += 1000
    first.send(replace(ALERT, severity="critical"))  # window over: sent again

    assert first.flush(5.0)
    assert second.flush(5.0)
    texts = sorted(b["text"].split(" ")[0] for b in server.bodies())  # two workers: any order
    assert texts == ["[CRITICAL]", "[CRITICAL]", "[ERROR]"]
    assert (tmp_path / ".alerts" / "state.json").is_file()


def test_no_sink_configured_logs_only(tmp_path: Path) -> None:
    """Without sinks an alert is one log line and touches no file."""
    a = Alerter(AlertSettings(state_dir=tmp_path / ".alerts"))

    with structlog.testing.capture_logs() as logs:
        t0 = time.perf_counter()
        for _ in range(1000):
            a.send(ALERT)
        elapsed = time.perf_counter() - t0

    assert len(logs) == 1000
    assert logs[0]["event"] == "alert"
    assert logs[0]["key"] == ALERT.key
    assert not (tmp_path / ".alerts").exists()
    assert elapsed < 1.0


def test_hanging_sink_does_not_block_the_caller(server: SinkServer, tmp_path: Path) -> None:
    """A sink slower than the timeout: send_alert returns at once; flush is bounded."""
    server.delay_s = 3.0
    configure_alerts(settings(server, tmp_path, timeout_s=0.3, retries=0))

    t0 = time.perf_counter()
    send_alert(ALERT)
    sent = time.perf_counter() - t0
    flushed = flush_alerts(2.0)

    assert sent < 0.3
    assert flushed
    assert time.perf_counter() - t0 < 2.0


def test_hanging_sink_does_not_delay_qa_of_next_file(server: SinkServer, tmp_path: Path) -> None:
    """Two failing files checked while every sink hangs: the run is not slowed by the sinks."""
    server.delay_s = 2.0
    data = tmp_path / "data"
    for sym in ("AAAUSDT", "BBBUSDT"):
        write_parsed(
            parsed_path(data, "binance", sym, "trade"),
            "trade",
            trade_rows(50, symbol=sym)[:10] + trade_rows(50, symbol=sym)[20:],
        )
    configure_alerts(settings(server, tmp_path, timeout_s=0.5, retries=0))
    qa = build_qa_settings(load_config(None), data_dir=data)

    t0 = time.perf_counter()
    result = run_once(qa)
    elapsed = time.perf_counter() - t0

    assert (result.checked, result.fail) == (2, 2)
    assert elapsed < 0.5 + 1.0  # checking two tiny files plus at most the timeout
    assert flush_alerts(3.0)
    assert len(server.bodies("/pd")) == 2


def test_settings_from_config_and_environment(tmp_path: Path) -> None:
    """URLs come from [alerts], secrets from the environment; half a Telegram setup is refused."""
    cfg = load_config(None)
    env = {
        "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/x",
        "PAGERDUTY_ROUTING_KEY": "k",
    }

    s = build_alert_settings(cfg, data_dir=tmp_path, environ=env)

    assert s.pagerduty_events_url == "https://events.pagerduty.com/v2/enqueue"
    assert s.telegram_api_url == "https://api.telegram.org"
    assert s.state_dir == tmp_path / ".alerts"
    assert "hooks.slack.com" not in repr(s)
    with pytest.raises(ConfigError, match="TELEGRAM_CHAT_ID not set"):
        build_alert_settings(cfg, data_dir=tmp_path, environ={"TELEGRAM_BOT_TOKEN": "1:a"})


def qa_cli_env(**secrets: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ALERT_ENV}
    return {**env, "PYTHONPATH": str(REPO), **secrets}


ALERT_ENV = ("SLACK_WEBHOOK_URL", "TELEGRAM_BOT_TOKEN", "TELEGRAM_CHAT_ID", "PAGERDUTY_ROUTING_KEY")


@pytest.mark.parametrize(
    ("secrets", "message"),
    [
        (
            {"SLACK_WEBHOOK_URL": "hooks.slack.com/services/T0/B0/SeCrEt"},
            "SLACK_WEBHOOK_URL (value not shown) must be a http/https:// URL with a host",
        ),
        (
            {"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/SeCrEt\n"},
            "SLACK_WEBHOOK_URL (value not shown) must not contain spaces or control characters",
        ),
        (
            {"TELEGRAM_BOT_TOKEN": "123:SeCrEt/../x", "TELEGRAM_CHAT_ID": "-100"},
            "TELEGRAM_BOT_TOKEN is malformed (expected <bot id>:<secret>; value not shown)",
        ),
        (
            {"TELEGRAM_BOT_TOKEN": "123:SeCrEt", "TELEGRAM_CHAT_ID": "SeCrEt 1"},
            "TELEGRAM_CHAT_ID is malformed"
            " (expected an integer or @channelusername; value not shown)",
        ),
        (
            {"PAGERDUTY_ROUTING_KEY": "SeCrEt\n"},
            "PAGERDUTY_ROUTING_KEY is malformed (expected printable, no spaces; value not shown)",
        ),
    ],
    ids=["slack-not-url", "slack-newline", "telegram-token", "telegram-chat", "pagerduty-key"],
)
def test_malformed_secret_is_named_never_shown(
    tmp_path: Path, secrets: dict[str, str], message: str
) -> None:
    """`qa run` with a malformed alert secret: one line naming the variable, not its value,
    exit 2, nothing written."""
    r = subprocess.run(
        [sys.executable, "-m", "qa", "run", "--data-dir", str(tmp_path)],
        cwd=REPO,
        env=qa_cli_env(**secrets),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert r.returncode == 2
    assert r.stderr == f"qa: {message}\n"
    assert list(tmp_path.iterdir()) == []


def test_sink_failures_and_crashes_log_no_secret(server: SinkServer) -> None:
    """Failing sinks (HTTP 500) and a crashing one (a field JSON cannot encode) are logged
    without any secret: webhook URL, bot token, routing key, or the API URL's userinfo, which
    still reaches the server as Basic auth."""
    code = (
        "import sys\n"
        "from collector.common.logs import configure_logging\n"
        "from collector.common.alerts import Alert, Alerter, AlertSettings\n"
        "configure_logging(json=True)\n"
        "url = sys.argv[1]\n"
        "s = AlertSettings(host_id='h', timeout_s=2.0, retries=1, retry_backoff_s=0.01,\n"
        "    telegram_api_url=url.replace('//', '//ops:PW-SECRET1@'),\n"
        "    pagerduty_events_url=url + '/pd',\n"
        "    slack_webhook_url=url + '/slack/T0/B0/SECRET2',\n"
        "    telegram_bot_token='123:SECRET3', telegram_chat_id='-1',\n"
        "    pagerduty_routing_key='SECRET4' + 'x' * 25)\n"
        "a = Alerter(s)\n"
        "a.send(Alert('qa', 'error', 'title', 'key', {'bad': object()}))\n"
        "assert a.flush(10.0)\n"
    )
    server.statuses[:] = [500] * 4

    r = subprocess.run(
        [sys.executable, "-c", code, server.url],
        cwd=REPO,
        env=qa_cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert r.returncode == 0, r.stderr
    events = [json.loads(line)["event"] for line in r.stderr.splitlines()]
    assert sorted(e for e in events if e.startswith("alert.")) == [
        "alert.sink_crashed",
        "alert.sink_failed",
        "alert.sink_failed",
    ]
    for secret in ("SECRET1", "SECRET2", "SECRET3", "SECRET4", "/slack/", "/bot"):
        assert secret not in r.stderr
    telegram = [x for x in server.requests if x.path.startswith("/bot123:")]
    assert len(telegram) == 2
    assert {x.authorization for x in telegram} == {
        "Basic " + base64.b64encode(b"ops:PW-SECRET1").decode()
    }
