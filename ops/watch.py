"""Quiet streams: a collector that runs but has not received a frame for too long.

supervisord only knows whether a program runs; a collector that runs and never connects (a
refused handshake loop, an exchange outage, a firewall) or connects and hears nothing is
invisible to it. This check, run every minute by the alert listener (supervisord's
``TICK_60`` event), compares each RUNNING collector's ``status.json`` with ``[fleet]
silent_after_s``: no frame (or no status rewrite: a hung process) for longer than that is
*silent*. One alert per episode names the host, exchange, symbol and data type (an ``error``;
suppression keeps repeats away), and one resolve follows when frames come again; the episodes
open on this host live in ``{data_dir}/.fleet/silent.json``, so a restarted listener neither
repeats nor forgets them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector.common.alerts import Alert, send_alert
from collector.common.locks import hold_lock


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


def silence(o: Observed, now: float, silent_after_s: float) -> str | None:
    """Why ``o`` is silent, or None. Only RUNNING programs can be silent (the listener
    already alerts on programs that exit or go FATAL)."""
    if not o.running or o.started_at is None or now - o.started_at < silent_after_s:
        return None
    st = o.status
    if st is None:
        return f"no status file for {now - o.started_at:.0f} s"
    updated = st.get("updated_at")
    if isinstance(updated, int | float) and now - updated > silent_after_s:
        return f"status not rewritten for {now - updated:.0f} s (hung?)"
    last = st.get("last_frame_at")
    ref = last if isinstance(last, int | float) else o.started_at  # never a frame: since start
    if now - ref > silent_after_s:
        what = "connected, but no frame" if st.get("connected") else "not connected, no frame"
        return f"{what} for {now - ref:.0f} s"
    return None


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
        with hold_lock(self.state_path.with_suffix(".lock"), wait=True):
            open_: dict[str, float] = self._load()
            started: list[str] = []
            ended: list[str] = []
            seen: set[str] = set()
            for o in observed:
                seen.add(o.program)
                reason = silence(o, now, self.silent_after_s)
                fields = {
                    "host": self.host_id,
                    "exchange": o.exchange,
                    "symbol": o.symbol,
                    "data_type": o.data_type,
                }
                if reason is not None and o.program not in open_:
                    open_[o.program] = now
                    started.append(o.program)
                    send_alert(
                        Alert(
                            source="watch",
                            severity="error",
                            title=(
                                f"stream silent on {self.host_id}: {o.exchange} {o.symbol} "
                                f"{o.data_type} ({reason})"
                            ),
                            key=self._key(o),
                            fields={**fields, "reason": reason},
                        )
                    )
                elif reason is None and o.program in open_:
                    since = open_.pop(o.program)
                    ended.append(o.program)
                    send_alert(
                        Alert(
                            source="watch",
                            severity="error",
                            title=(
                                f"stream receiving again on {self.host_id}: {o.exchange} "
                                f"{o.symbol} {o.data_type} (silent for {now - since:.0f} s)"
                            ),
                            key=self._key(o),
                            fields=fields,
                            resolve=True,
                        )
                    )
            for program in [p for p in open_ if p not in seen]:
                del open_[program]  # untracked since: nothing to resolve on this host
            self._save(open_)
        return started, ended

    def _load(self) -> dict[str, float]:
        try:
            value = json.loads(self.state_path.read_bytes())
        except (OSError, ValueError):
            return {}
        if not isinstance(value, dict):
            return {}
        return {str(k): float(v) for k, v in value.items() if isinstance(v, int | float)}

    def _save(self, open_: Mapping[str, float]) -> None:
        tmp = self.state_path.with_name(f".{self.state_path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(dict(open_), sort_keys=True))
            os.replace(tmp, self.state_path)
        except OSError:
            tmp.unlink(missing_ok=True)
