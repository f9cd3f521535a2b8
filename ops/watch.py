"""Quiet streams: a collector that runs but has not received a frame for too long.

supervisord only knows whether a program runs; a collector that runs and never connects (a
refused handshake loop, an exchange outage, a firewall) or connects and hears nothing is
invisible to it. This check, run on every tick of the alert listener (supervisord's
``TICK_60``, or ``TICK_5`` with ``[fleet] listener_tick_s = 5``), compares each RUNNING
collector's ``status.json`` with ``[fleet] silent_after_s``: no frame (or no status rewrite: a
hung process) for longer than that is *silent*.

One alert per episode names the host, exchange, symbol and data type (an ``error``), and one
resolve follows when frames come again: the episode ends only on a fresh frame from a
RUNNING program, so a crash or a restart in the middle (the listener's own alerts cover
those) neither resolves it nor opens a second one. When more than :data:`GROUP_OVER` streams
of one exchange fall silent in the same tick (an exchange outage, a network partition), they
share one alert naming the count and the first few, resolved when the last of them is back:
an outage of 500 streams is one page, not 500. A stream that stops being configured on this
host (placement moved it) resolves its episode. The open episodes live in
``{data_dir}/.fleet/silent.json``, so a restarted listener neither repeats nor forgets them.

:class:`HostWatch` is the listener's tick: it asks supervisord (XML-RPC, the listener's own
``SUPERVISOR_SERVER_URL``) for the collector programs' states, start times and commands (the
stream comes from the command line supervisord runs, never from a file), reads each one's
``status.json`` (collector.common.layout), runs the watcher and writes the metrics textfile
(ops/metrics.py, ``[fleet] metrics_textfile``).
"""

from __future__ import annotations

import json
import os
import shlex
import time
import xmlrpc.client
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from collector.common import layout
from collector.common.alerts import Alert, send_alert
from collector.common.errors import ConfigError
from collector.common.locks import hold_lock
from collector.exchanges import ADAPTERS

log = structlog.get_logger()

GROUP_OVER = 5  # more new silences than this of one exchange in one tick share one alert
SHOWN_STREAMS = 10  # streams named in a shared alert
MAX_STATUS_BYTES = 1024 * 1024  # a status.json is ~1 KB; a bigger file is not ours
COLLECTOR_GROUP = "collector"  # = ops.fleet.COLLECTOR_GROUP (not imported: ops.fleet is heavy)


@dataclass(frozen=True, slots=True)
class Observed:
    """What is known of one collector program at one moment."""

    program: str
    exchange: str
    symbol: str
    data_type: str
    running: bool
    started_at: float | None  # supervisord's start time of the process
    status: Mapping[str, Any] | None  # its status.json, None when missing or unreadable


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def silence(o: Observed, now: float, silent_after_s: float) -> str | None:
    """Why ``o`` is silent, or None. Only RUNNING programs can be silent (the listener
    already alerts on programs that exit or go FATAL)."""
    if not o.running or o.started_at is None or now - o.started_at < silent_after_s:
        return None
    st = o.status
    if st is None:
        return f"no status file for {now - o.started_at:.0f} s"
    updated = _num(st.get("updated_at"))
    if updated is not None and now - updated > silent_after_s:
        return f"status not rewritten for {now - updated:.0f} s (hung?)"
    last = _num(st.get("last_frame_at"))
    # never a frame, or only frames of an earlier process: count from this process's start
    ref = o.started_at if last is None or last < o.started_at else last
    if now - ref > silent_after_s:
        what = "connected, but no frame" if st.get("connected") else "not connected, no frame"
        return f"{what} for {now - ref:.0f} s"
    return None


def receiving(o: Observed, now: float, silent_after_s: float) -> bool:
    """True when ``o`` runs and its status shows a frame of this process within the limit:
    what ends an episode (a program that is down or just restarted says nothing yet)."""
    if not o.running or o.started_at is None or o.status is None:
        return False
    last = _num(o.status.get("last_frame_at"))
    updated = _num(o.status.get("updated_at"))
    return (
        last is not None
        and updated is not None
        and last >= o.started_at
        and now - last <= silent_after_s
        and now - updated <= silent_after_s
    )


@dataclass(frozen=True, slots=True)
class _Episode:
    since: float
    key: str  # the alert it belongs to (its own, or its exchange's shared one)
    exchange: str
    stream: str  # "binance BTCUSDT trade"


def _stream(o: Observed) -> str:
    return f"{o.exchange} {o.symbol} {o.data_type}"


class Watcher:
    """Turns silences into one alert per episode and a resolve at its end."""

    def __init__(self, state_path: Path, host_id: str, silent_after_s: float) -> None:
        self.state_path = state_path
        self.host_id = host_id
        self.silent_after_s = silent_after_s

    def _key(self, o: Observed) -> str:
        return f"fleet:silent:{self.host_id}:{o.exchange}:{o.symbol}:{o.data_type}"

    def check(self, observed: Iterable[Observed], now: float) -> tuple[list[str], list[str]]:
        """Alert new silences, resolve ended ones; returns (programs now alerted, resolved)."""
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        with hold_lock(self.state_path.with_suffix(".lock"), wait=True):
            episodes = self._load()
            new: list[tuple[Observed, str]] = []
            ended: list[str] = []
            seen: set[str] = set()
            for o in observed:
                seen.add(o.program)
                if o.program not in episodes:
                    reason = silence(o, now, self.silent_after_s)
                    if reason is not None:
                        new.append((o, reason))
                elif receiving(o, now, self.silent_after_s):
                    ended.append(o.program)
            gone = [p for p in episodes if p not in seen]  # no longer configured here
            self._open(new, episodes, now)
            self._close(ended, gone, episodes, now)
            self._save(episodes)
        return [o.program for o, _ in new], ended + gone

    def _open(
        self, new: list[tuple[Observed, str]], episodes: dict[str, _Episode], now: float
    ) -> None:
        by_exchange: dict[str, list[tuple[Observed, str]]] = {}
        for o, reason in new:
            by_exchange.setdefault(o.exchange, []).append((o, reason))
        for exchange, items in sorted(by_exchange.items()):
            if len(items) > GROUP_OVER:
                key = f"fleet:silent:{self.host_id}:{exchange}:group:{int(now)}"
                for o, _ in items:
                    episodes[o.program] = _Episode(now, key, exchange, _stream(o))
                self._alert_group(exchange, items, key)
                continue
            for o, reason in items:
                episodes[o.program] = _Episode(now, self._key(o), exchange, _stream(o))
                send_alert(
                    Alert(
                        source="watch",
                        severity="error",
                        title=(
                            f"stream silent on {self.host_id}: {o.exchange} {o.symbol} "
                            f"{o.data_type} ({reason})"
                        ),
                        key=self._key(o),
                        fields={**self._fields(o), "reason": reason},
                    )
                )

    def _fields(self, o: Observed) -> dict[str, str]:
        return {
            "host": self.host_id,
            "exchange": o.exchange,
            "symbol": o.symbol,
            "data_type": o.data_type,
        }

    def _alert_group(self, exchange: str, items: list[tuple[Observed, str]], key: str) -> None:
        names = [f"{o.symbol} {o.data_type}" for o, _ in items]
        shown = ", ".join(names[:SHOWN_STREAMS]) + (", ..." if len(names) > SHOWN_STREAMS else "")
        send_alert(
            Alert(
                source="watch",
                severity="error",
                title=f"{len(items)} {exchange} streams silent on {self.host_id} ({items[0][1]})",
                key=key,
                fields={
                    "host": self.host_id,
                    "exchange": exchange,
                    "count": str(len(items)),
                    "streams": shown,
                },
            )
        )

    def _close(
        self, ended: list[str], gone: list[str], episodes: dict[str, _Episode], now: float
    ) -> None:
        closing = {p: episodes.pop(p) for p in [*ended, *gone]}
        open_keys = {e.key for e in episodes.values()}
        done: dict[str, list[str]] = {}
        for program, ep in closing.items():
            if ep.key not in open_keys:  # a shared alert resolves with its last stream
                done.setdefault(ep.key, []).append(program)
        for key, programs in sorted(done.items()):
            ep = closing[programs[0]]
            what = "receiving again" if programs[0] in ended else "no longer collected here"
            if len(programs) > 1 or ":group:" in key:
                title = f"{ep.exchange} streams {what} on {self.host_id}"
            else:
                title = f"stream {what} on {self.host_id}: {ep.stream}"
            send_alert(
                Alert(
                    source="watch",
                    severity="error",
                    title=f"{title} (silent for {now - ep.since:.0f} s)",
                    key=key,
                    fields={"host": self.host_id, "exchange": ep.exchange},
                    resolve=True,
                )
            )

    def _load(self) -> dict[str, _Episode]:
        try:
            value = json.loads(self.state_path.read_bytes())
        except (OSError, ValueError):
            return {}
        if not isinstance(value, dict):
            return {}
        out: dict[str, _Episode] = {}
        for program, ep in value.items():
            if not isinstance(ep, dict) or _num(ep.get("since")) is None:
                continue
            key, exchange, stream = ep.get("key"), ep.get("exchange"), ep.get("stream")
            if isinstance(key, str) and isinstance(exchange, str) and isinstance(stream, str):
                out[str(program)] = _Episode(float(ep["since"]), key, exchange, stream)
        return out

    def _save(self, episodes: Mapping[str, _Episode]) -> None:
        data = {
            p: {"since": e.since, "key": e.key, "exchange": e.exchange, "stream": e.stream}
            for p, e in sorted(episodes.items())
        }
        tmp = self.state_path.with_name(f".{self.state_path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(data, sort_keys=True))
            os.replace(tmp, self.state_path)
        except OSError:
            tmp.unlink(missing_ok=True)

    def silent_programs(self) -> set[str]:
        """The programs in an open episode (for the metrics)."""
        return set(self._load())


# --- the listener's tick ----------------------------------------------------------------


def stream_of(command: str) -> tuple[str, str, str] | None:
    """(exchange, symbol, data_type) of a collector command line, or None when it is not one
    whose values fit their grammars (they become a path: the status file)."""
    try:
        argv = shlex.split(command)
    except ValueError:
        return None
    values: dict[str, str] = {}
    for flag, value in zip(argv, argv[1:], strict=False):
        if flag in ("--exchange", "--symbol", "--data_type"):
            values[flag] = value
    exchange, symbol = values.get("--exchange", ""), values.get("--symbol", "")
    data_type = values.get("--data_type", "")
    adapter = ADAPTERS.get(exchange)
    if adapter is None or data_type not in adapter.DATA_TYPES:
        return None
    if not adapter.SYMBOL_PATTERN.fullmatch(symbol):
        return None
    try:
        layout.check_path_safe(symbol)
    except ConfigError:
        return None
    return exchange, symbol, data_type


def read_status(path: Path) -> dict[str, Any] | None:
    """A status.json (bounded, no symlink followed), or None."""
    try:
        if path.is_symlink() or path.stat().st_size > MAX_STATUS_BYTES:
            return None
        value = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def observe(rpc: Any, data_dir: Path) -> list[Observed]:
    """Every program of the collector group: state, start time and status file."""
    infos = {(i["group"], i["name"]): i for i in rpc.supervisor.getAllProcessInfo()}
    out: list[Observed] = []
    for c in rpc.supervisor.getAllConfigInfo():
        if c.get("group") != COLLECTOR_GROUP:
            continue
        info = infos.get((c["group"], c["name"]))
        stream = stream_of(str(c.get("command", "")))
        if info is None or stream is None:
            continue
        running = info.get("statename") == "RUNNING"
        status = read_status(layout.status_path(layout.stream_dir(data_dir, *stream)))
        start = _num(info.get("start"))
        out.append(Observed(str(c["name"]), *stream, running, start if running else None, status))
    return out


class HostWatch:
    """One listener tick: observe the collectors, watch for silence, write the metrics."""

    def __init__(
        self,
        *,
        data_dir: Path,
        host_id: str,
        socket_path: Path,
        silent_after_s: float,
        metrics_textfile: Path | None,
    ) -> None:
        self.data_dir = data_dir
        self.host_id = host_id
        self.socket_path = socket_path
        self.metrics_textfile = metrics_textfile
        state = layout.fleet_dir(data_dir) / "silent.json"
        self.watcher = Watcher(state, host_id, silent_after_s) if silent_after_s > 0 else None

    def tick(self, now: float | None = None) -> list[Observed] | None:
        """One round; None when there is nothing to do or supervisord does not answer."""
        if self.watcher is None and self.metrics_textfile is None:
            return None
        if not self.socket_path.exists():
            log.debug("watch.no_supervisord", socket=str(self.socket_path))
            return None
        from ops.fleet import connect

        rpc = connect(self.socket_path, timeout_s=10.0)
        try:
            observed = observe(rpc, self.data_dir)
        except (OSError, xmlrpc.client.Error) as exc:  # e.g. supervisord shutting down
            log.warning("watch.supervisord_unavailable", error=f"{type(exc).__name__}: {exc}")
            return None
        finally:
            rpc("close")()
        now = time.time() if now is None else now
        silent: set[str] = set()
        if self.watcher is not None:
            self.watcher.check(observed, now)
            silent = self.watcher.silent_programs()
        if self.metrics_textfile is not None:
            from ops.metrics import write_observed_metrics

            write_observed_metrics(
                self.metrics_textfile, self.host_id, self.data_dir, observed, silent, now=now
            )
        return observed
