"""The single alert function used by every program (qa, secmaster, the listener, s3 sync).

``send_alert(Alert(...))`` always logs the alert. When sinks are configured (from the
environment: ``SLACK_WEBHOOK_URL``, ``TELEGRAM_BOT_TOKEN`` + ``TELEGRAM_CHAT_ID``,
``PAGERDUTY_ROUTING_KEY``) it also delivers it:

- Slack incoming webhook and Telegram ``sendMessage`` for severities from
  ``[alerts] chat_min_severity`` up, and a short "resolved" line when a condition is over;
- PagerDuty Events API v2: ``trigger`` for ``error``/``critical``, ``resolve`` when the same
  key is resolved, with the stable dedup key ``{host_id}:{alert.key}``.

Repeats of the same alert (same key, same severity) inside ``suppress_window_s`` are
suppressed, and a resolve is sent only for a key that was alerted: the state lives in
``{data_dir}/.alerts/state.json`` under a file lock, so separate processes (the listener, the
periodic qa run) share it. Delivery runs in one background thread per sink with timeouts and
retries on 5xx/429/network errors, so a sink that is down never blocks or crashes the caller;
at exit the pending deliveries get a bounded wait. No sink configured ⇒ log only, no I/O.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collector.common.config import Config, check_url, get_float, get_int, get_str
from collector.common.errors import ConfigError
from collector.common.layout import alerts_dir
from collector.common.locks import hold_lock
from collector.common.retry import Backoff, BackoffSettings, is_retryable_status
from collector.common.structloglib import structlog

if TYPE_CHECKING:
    import httpx

log = structlog.get_logger()

SEVERITIES = ("info", "warning", "error", "critical")
_RANK = {s: i for i, s in enumerate(SEVERITIES)}
_MAX_TEXT = 600
_QUEUE_SIZE = 100


@dataclass(frozen=True)
class Alert:
    """One alert.

    Attributes:
        source: the program raising it (``qa``, ``secmaster``, ``listener``, ``sync``).
        severity: ``info`` | ``warning`` | ``error`` | ``critical``.
        title: one short line saying what happened.
        key: a stable dedup key for the condition, e.g. ``qa:binance:BTCUSDT:trade``;
            repeats of the same key are suppressed and PagerDuty resolves by it.
        fields: short name → value details (host, exchange, symbol, file, ...).
        resolve: True when the condition named by ``key`` is over.
    """

    source: str
    severity: str
    title: str
    key: str
    fields: Mapping[str, str] = field(default_factory=dict)
    resolve: bool = False


# --- settings ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertSettings:
    """Where alerts go. Secrets are excluded from ``repr``."""

    host_id: str = "local"
    state_dir: Path | None = None
    suppress_window_s: float = 900.0
    timeout_s: float = 5.0
    retries: int = 2
    retry_backoff_s: float = 0.5
    chat_min_severity: str = "warning"
    telegram_api_url: str = "https://api.telegram.org"
    pagerduty_events_url: str = "https://events.pagerduty.com/v2/enqueue"
    slack_webhook_url: str = field(default="", repr=False)
    telegram_bot_token: str = field(default="", repr=False)
    telegram_chat_id: str = field(default="", repr=False)
    pagerduty_routing_key: str = field(default="", repr=False)

    @property
    def any_sink(self) -> bool:
        return bool(
            self.slack_webhook_url
            or (self.telegram_bot_token and self.telegram_chat_id)
            or self.pagerduty_routing_key
        )


_ENV = ("SLACK_WEBHOOK_URL", "TELEGRAM_BOT_TOKEN", "TELEGRAM_CHAT_ID", "PAGERDUTY_ROUTING_KEY")
# Shapes of the secrets (a mistyped or newline-terminated value is refused at start, naming the
# variable, never its value). The bot token becomes part of the request path, so nothing but
# its documented characters may pass ("110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw").
_SECRET_SHAPES = {
    "TELEGRAM_BOT_TOKEN": (re.compile(r"[0-9]{1,20}:[A-Za-z0-9_-]{1,200}"), "<bot id>:<secret>"),
    "TELEGRAM_CHAT_ID": (
        re.compile(r"-?[0-9]{1,20}|@[A-Za-z][A-Za-z0-9_]{3,63}"),
        "an integer or @channelusername",
    ),
    "PAGERDUTY_ROUTING_KEY": (re.compile(r"[\x21-\x7e]{1,256}"), "printable, no spaces"),
}


def build_alert_settings(
    config: Config, *, data_dir: Path | None = None, environ: Mapping[str, str] | None = None
) -> AlertSettings:
    """``[alerts]`` of the config file plus the secrets from the environment.

    Raises ConfigError naming the bad value.
    """
    env = os.environ if environ is None else environ
    a = config.section("alerts")
    w = f"{config.path} [alerts]"
    chat_min = get_str(a, "chat_min_severity", "warning", where=w)
    if chat_min not in SEVERITIES:
        raise ConfigError(f"{w}: chat_min_severity = {chat_min!r} must be one of {SEVERITIES}")
    slack = env.get("SLACK_WEBHOOK_URL", "")
    if slack:
        # the whole URL is the credential: the message names the variable only
        check_url(slack, ("http", "https"), what="SLACK_WEBHOOK_URL", secret=True)
    token, chat = env.get("TELEGRAM_BOT_TOKEN", ""), env.get("TELEGRAM_CHAT_ID", "")
    if bool(token) != bool(chat):
        missing = "TELEGRAM_CHAT_ID" if token else "TELEGRAM_BOT_TOKEN"
        raise ConfigError(f"incomplete Telegram settings: {missing} not set")
    for name, (shape, expected) in _SECRET_SHAPES.items():
        value = env.get(name, "")
        if value and not shape.fullmatch(value):
            raise ConfigError(f"{name} is malformed (expected {expected}; value not shown)")
    base = data_dir if data_dir is not None else config.data_dir
    return AlertSettings(
        host_id=config.host_id,
        state_dir=alerts_dir(Path(base)),
        suppress_window_s=get_float(a, "suppress_window_s", 900.0, where=w, min_value=0.0),
        timeout_s=get_float(a, "timeout_s", 5.0, where=w, min_value=0.01),
        retries=get_int(a, "retries", 2, where=w, min_value=0, max_value=10),
        retry_backoff_s=get_float(a, "retry_backoff_s", 0.5, where=w, min_value=0.0),
        chat_min_severity=chat_min,
        telegram_api_url=check_url(
            get_str(a, "telegram_api_url", "https://api.telegram.org", where=w),
            ("http", "https"),
            what=f"{w} telegram_api_url",
        ),
        pagerduty_events_url=check_url(
            get_str(a, "pagerduty_events_url", "https://events.pagerduty.com/v2/enqueue", where=w),
            ("http", "https"),
            what=f"{w} pagerduty_events_url",
        ),
        slack_webhook_url=slack,
        telegram_bot_token=token,
        telegram_chat_id=chat,
        pagerduty_routing_key=env.get("PAGERDUTY_ROUTING_KEY", ""),
    )


# --- messages ----------------------------------------------------------------------------


def format_text(alert: Alert, host_id: str) -> str:
    """One short line: severity, title, then host and the fields as ``name=value``."""
    fields = dict(alert.fields)
    fields.setdefault("host", host_id)
    head = "RESOLVED" if alert.resolve else alert.severity.upper()
    details = " | ".join(f"{k}={v}" for k, v in fields.items())
    text = f"[{head}] {alert.source}: {alert.title}" + (f" | {details}" if details else "")
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"


def dedup_key(alert: Alert, host_id: str) -> str:
    return f"{host_id}:{alert.key}"


@dataclass(frozen=True)
class Request:
    sink: str
    url: str = field(repr=False)  # Slack's and Telegram's carry the secret
    body: dict[str, Any] = field(repr=False)


def build_requests(alert: Alert, s: AlertSettings, *, chat: bool, pager: bool) -> list[Request]:
    """The HTTP requests that deliver ``alert`` (pure)."""
    text = format_text(alert, s.host_id)
    out: list[Request] = []
    if chat and s.slack_webhook_url:
        out.append(Request("slack", s.slack_webhook_url, {"text": text}))
    if chat and s.telegram_bot_token and s.telegram_chat_id:
        out.append(
            Request(
                "telegram",
                f"{s.telegram_api_url}/bot{s.telegram_bot_token}/sendMessage",
                {"chat_id": s.telegram_chat_id, "text": text, "disable_web_page_preview": True},
            )
        )
    if pager and s.pagerduty_routing_key:
        body: dict[str, Any] = {
            "routing_key": s.pagerduty_routing_key,
            "event_action": "resolve" if alert.resolve else "trigger",
            "dedup_key": dedup_key(alert, s.host_id),
        }
        if not alert.resolve:
            body["payload"] = {
                "summary": text[:1024],
                "source": s.host_id,
                "severity": "critical" if alert.severity == "critical" else "error",
                "component": alert.source,
                "custom_details": dict(alert.fields),
            }
        out.append(Request("pagerduty", s.pagerduty_events_url, body))
    return out


# --- suppression state (shared by processes) ---------------------------------------------


class SuppressionState:
    """Per key: last severity sent, when, whether a chat/PagerDuty alert is open.

    Kept in ``{state_dir}/state.json`` (read-modify-write under ``flock`` on ``state.lock``);
    in memory when there is no state dir or it cannot be written (a full disk), and what was
    kept in memory is written to the file as soon as it can be again (so the resolve of an
    alert raised while the disk was full still finds it).
    """

    def __init__(self, state_dir: Path | None) -> None:
        self.state_dir = state_dir
        self._memory: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def update(self, fn: Callable[[dict[str, dict[str, Any]]], Any]) -> Any:
        with self._lock:
            if self.state_dir is None:
                return fn(self._memory)
            try:
                return self._update_file(fn)
            except OSError as exc:
                log.warning("alert.state_unavailable", dir=str(self.state_dir), error=str(exc))
                return fn(self._memory)

    def _update_file(self, fn: Callable[[dict[str, dict[str, Any]]], Any]) -> Any:
        assert self.state_dir is not None
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_dir / "state.json"
        with hold_lock(self.state_dir / "state.lock", wait=True, mode=0o600):
            try:
                loaded = json.loads(path.read_bytes())
                keys: dict[str, dict[str, Any]] = (
                    loaded.get("keys", {}) if isinstance(loaded, dict) else {}
                )
            except (FileNotFoundError, ValueError):
                keys = {}
            for key, entry in self._memory.items():
                keys.setdefault(key, entry)
            result = fn(keys)
            tmp = path.with_name(f".state.{os.getpid()}.{threading.get_ident()}.tmp")
            try:
                tmp.write_text(json.dumps({"keys": keys}, separators=(",", ":")))
                os.replace(tmp, path)
            except OSError:
                tmp.unlink(missing_ok=True)
                raise
            self._memory.clear()
            return result


def decide(
    keys: dict[str, dict[str, Any]], alert: Alert, now: float, s: AlertSettings
) -> tuple[bool, bool]:
    """Update the state for ``alert``; returns (send to chats, send to PagerDuty)."""
    entry = keys.get(alert.key)
    _prune(keys, now, s.suppress_window_s)
    if alert.resolve:
        if not entry or not entry.get("active"):
            return False, False
        pager = bool(entry.get("pager_open"))
        keys[alert.key] = {"severity": "resolved", "sent_at": now, "active": False}
        return True, pager
    severity = alert.severity if alert.severity in _RANK else "error"
    chat = _RANK[severity] >= _RANK[s.chat_min_severity]
    pager = _RANK[severity] >= _RANK["error"]
    if not chat and not pager:
        return False, False
    if (
        entry
        and entry.get("active")
        and entry.get("severity") == severity
        and now - float(entry.get("sent_at", 0.0)) < s.suppress_window_s
    ):
        return False, False
    keys[alert.key] = {
        "severity": severity,
        "sent_at": now,
        "active": True,
        "pager_open": pager or bool(entry and entry.get("pager_open")),
    }
    return chat, pager


def _prune(keys: dict[str, dict[str, Any]], now: float, window_s: float) -> None:
    keep_s = max(window_s, 86400.0)
    for k in [
        k
        for k, e in keys.items()
        if not e.get("active") and now - float(e.get("sent_at", 0.0)) > keep_s
    ]:
        del keys[k]


# --- delivery ----------------------------------------------------------------------------


class _Worker:
    """One background thread per sink: posts requests in order, with timeout and retries."""

    def __init__(self, name: str, s: AlertSettings) -> None:
        self.name = name
        self.settings = s
        self.queue: queue.Queue[Request] = queue.Queue(maxsize=_QUEUE_SIZE)
        self._pending = 0
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"alert-{name}", daemon=True)
        self._thread.start()

    def put(self, req: Request) -> None:
        with self._cond:
            self._pending += 1
        try:
            self.queue.put_nowait(req)
        except queue.Full:
            with self._cond:
                self._pending -= 1
                self._cond.notify_all()
            log.error("alert.dropped", sink=self.name, reason="queue full")

    def wait_idle(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _run(self) -> None:
        from collector.common.httpxlib import httpx  # only processes that deliver alerts pay

        with httpx.Client(timeout=self.settings.timeout_s) as client:
            while True:
                req = self.queue.get()
                try:
                    deliver(client, req, self.settings)
                except Exception:  # never let a sink's bug kill the worker
                    log.exception("alert.sink_crashed", sink=self.name)
                finally:
                    with self._cond:
                        self._pending -= 1
                        self._cond.notify_all()


def deliver(client: httpx.Client, req: Request, s: AlertSettings) -> bool:
    """POST one request, retrying on 5xx, 429 and network errors. Returns True on success."""
    from collector.common.httpxlib import httpx

    error = ""
    backoff = Backoff(BackoffSettings(initial_s=s.retry_backoff_s, max_s=30.0))
    for attempt in range(s.retries + 1):
        if attempt:
            time.sleep(backoff.next_delay())
        try:
            resp = client.post(req.url, json=req.body)
        except httpx.HTTPError as exc:  # the message may hold the URL (a secret): type only
            error = type(exc).__name__
            continue
        if resp.status_code < 300:
            log.debug("alert.sent", sink=req.sink, status=resp.status_code, attempt=attempt + 1)
            return True
        error = f"HTTP {resp.status_code}"
        if not is_retryable_status(resp.status_code):
            break
    log.error("alert.sink_failed", sink=req.sink, error=error, attempts=attempt + 1)
    return False


class Alerter:
    """Logs every alert; when sinks are configured, suppresses repeats and delivers."""

    def __init__(self, settings: AlertSettings, *, clock: Callable[[], float] = time.time):
        self.settings = settings
        self.clock = clock
        self.state = SuppressionState(settings.state_dir) if settings.any_sink else None
        self._workers: dict[str, _Worker] = {}
        self._workers_lock = threading.Lock()

    def send(self, alert: Alert) -> None:
        _log_alert(alert)
        if self.state is None:
            return
        s = self.settings
        chat, pager = self.state.update(lambda keys: decide(keys, alert, self.clock(), s))
        if not chat and not pager:
            log.debug("alert.suppressed", key=alert.key)
            return
        for req in build_requests(alert, s, chat=chat, pager=pager):
            self._worker(req.sink).put(req)

    def _worker(self, name: str) -> _Worker:
        with self._workers_lock:
            w = self._workers.get(name)
            if w is None:
                w = self._workers[name] = _Worker(name, self.settings)
            return w

    def flush(self, timeout_s: float) -> bool:
        """Wait (at most ``timeout_s`` overall) for pending deliveries; True if all done."""
        deadline = time.monotonic() + timeout_s
        ok = True
        for w in list(self._workers.values()):
            ok = w.wait_idle(max(0.0, deadline - time.monotonic())) and ok
        return ok


_RESERVED = {"source", "severity", "title", "key", "resolve", "event"}


def _log_alert(alert: Alert) -> None:
    level = "error" if alert.severity in ("error", "critical") else "warning"
    if alert.resolve:
        level = "info"
    extra = {(f"field_{k}" if k in _RESERVED else k): v for k, v in alert.fields.items()}
    getattr(log, level)(
        "alert",
        source=alert.source,
        severity=alert.severity,
        title=alert.title,
        key=alert.key,
        resolve=alert.resolve,
        **extra,
    )


# --- the process-wide alerter ------------------------------------------------------------

_alerter: Alerter | None = None
_alerter_lock = threading.Lock()


def configure_alerts(settings: AlertSettings | None) -> Alerter:
    """Install the alerter of this process (call once in ``main``); None = log only."""
    global _alerter
    with _alerter_lock:
        old = _alerter
        _alerter = Alerter(settings if settings is not None else AlertSettings())
    if old is not None:
        old.flush(old.settings.timeout_s)
    return _alerter


def _default_alerter() -> Alerter:
    """Before configure_alerts(): log only (an entry point that wants deliveries configures
    them from its own config file; nothing is read behind its back)."""
    global _alerter
    with _alerter_lock:
        if _alerter is None:
            _alerter = Alerter(AlertSettings())
        return _alerter


def send_alert(alert: Alert) -> None:
    """Deliver an alert; never raises and never blocks for long."""
    try:
        (_alerter or _default_alerter()).send(alert)
    except Exception:
        log.exception("alert.failed", key=alert.key)


def flush_alerts(timeout_s: float | None = None) -> bool:
    """Wait for pending deliveries (default bound: twice the per-request timeout)."""
    a = _alerter
    if a is None:
        return True
    return a.flush(2 * a.settings.timeout_s if timeout_s is None else timeout_s)


atexit.register(flush_alerts)
