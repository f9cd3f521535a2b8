"""The report of ``python -m ops.fleet plan``: who collects what, and how much traffic that is.

Per host: its region, its streams and the expected frame rate of each where it is known: the
stream's ``status.json`` on this host, when it is recent (rewritten within the last hour),
gives frames over the collector's uptime; a stream this host does not collect shows ``-``.
Then the problems: streams placed on no host (listed one by one, with the reason: they are
tracked but collected nowhere) and, per exchange, streams collected in fewer regions than
``[fleet] replicas`` because the exchange is allowed in fewer of the fleet's regions.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from collector.common import layout
from ops.placement import Host, Plan, Stream
from ops.tables import table

RECENT_S = 3600.0  # a status file older than this says nothing about today's rate
MIN_UPTIME_S = 10.0  # a rate over less uptime is mostly start-up


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def frame_rate(status: dict[str, Any], now: float) -> float | None:
    """Frames per second over the collector's uptime, from a recent status.json, or None."""
    frames, started, updated = (_num(status.get(k)) for k in ("frames", "started_at", "updated_at"))
    if frames is None or started is None or updated is None or frames < 0:
        return None
    uptime = updated - started
    if now - updated > RECENT_S or uptime < MIN_UPTIME_S:
        return None
    return frames / uptime


def local_rates(data_dir: Path, streams: tuple[Stream, ...], now: float) -> dict[Stream, float]:
    """The known frame rates of ``streams`` from their status files under ``data_dir``."""
    out: dict[Stream, float] = {}
    for stream in streams:
        path = layout.status_path(layout.stream_dir(data_dir, *stream))
        try:
            status = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            continue
        rate = frame_rate(status, now) if isinstance(status, dict) else None
        if rate is not None:
            out[stream] = rate
    return out


@dataclass(frozen=True)
class PlanReport:
    """A plan with the rates known on this host, ready to print."""

    host_id: str
    hosts: tuple[Host, ...]
    plan: Plan
    rates: dict[Stream, float]

    @property
    def ok(self) -> bool:
        return not self.plan.unplaced

    def under_replicated(self) -> list[tuple[str, int, int]]:
        """(exchange, streams, regions they are in) for each under-replicated exchange."""
        per: Counter[tuple[str, int]] = Counter(
            (st[0], len(self.plan.placements[st])) for st in self.plan.under_replicated
        )
        return [(ex, n, regions) for (ex, regions), n in sorted(per.items())]

    def as_dict(self, only: str | None = None) -> dict[str, Any]:
        hosts = []
        for h in self.hosts:
            if only is not None and h.id != only:
                continue
            streams = self.plan.by_host.get(h.id, ())
            known = [self.rates[s] for s in streams if s in self.rates]
            hosts.append(
                {
                    "id": h.id,
                    "region": h.region,
                    "count": len(streams),
                    "frames_per_s": round(sum(known), 3) if known else None,
                    "rates_known": len(known),
                    "streams": [
                        {
                            "exchange": s[0],
                            "symbol": s[1],
                            "data_type": s[2],
                            "frames_per_s": _round(self.rates.get(s)),
                            "hosts": list(self.plan.placements.get(s, ())),
                        }
                        for s in streams
                    ],
                }
            )
        return {
            "host_id": self.host_id,
            "replicas": self.plan.replicas,
            "streams": len(self.plan.placements) + len(self.plan.unplaced),
            "placements": sum(len(v) for v in self.plan.by_host.values()),
            "hosts": hosts,
            "unplaced": [
                {
                    "exchange": s[0],
                    "symbol": s[1],
                    "data_type": s[2],
                    "reason": self.plan.unplaced_reasons.get(s, ""),
                }
                for s in self.plan.unplaced
            ],  # fmt: skip
            "under_replicated": [
                {"exchange": ex, "streams": n, "regions": regions}
                for ex, n, regions in self.under_replicated()
            ],
            "ok": self.ok,
        }


def _round(rate: float | None) -> float | None:
    return None if rate is None else round(rate, 3)


def _rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.2f}/s"


def render_text(report: PlanReport, only: str | None = None) -> str:
    d = report.as_dict(only)
    regions = sorted({h.region for h in report.hosts})
    lines = [
        f"fleet plan: {len(report.hosts)} host(s) in {len(regions)} region(s), replicas "
        f"{d['replicas']}: {d['streams']} stream(s), {d['placements']} placement(s)",
        "",
    ]
    rows = [
        [h["id"], h["region"], str(h["count"]),
         "-" if h["frames_per_s"] is None
         else f"{h['frames_per_s']:.2f}/s ({h['rates_known']} of {h['count']} known)"]
        for h in d["hosts"]
    ]  # fmt: skip
    lines += table(["HOST", "REGION", "STREAMS", "FRAMES/S"], rows)
    for h in d["hosts"]:
        lines += ["", f"{h['id']} ({h['region']}): {h['count']} stream(s)"]
        lines += table(
            ["  STREAM", "FRAMES/S", "ALSO ON"],
            [
                [f"  {s['exchange']} {s['symbol']} {s['data_type']}", _rate(s["frames_per_s"]),
                 ",".join(x for x in s["hosts"] if x != h["id"]) or "-"]
                for s in h["streams"]
            ],
        )  # fmt: skip
    for u in d["under_replicated"]:
        lines += [
            "",
            f"under-replicated: {u['streams']} {u['exchange']} stream(s) in {u['regions']} "
            f"region(s), fewer than replicas = {d['replicas']} (the exchange is allowed in "
            "fewer of the fleet's regions)",
        ]
    lines.append("")
    if d["unplaced"]:
        lines.append(f"NEEDS A HUMAN: {len(d['unplaced'])} stream(s) placed on no host:")
        lines += [
            f"  - {u['exchange']} {u['symbol']} {u['data_type']}: {u['reason']}"
            for u in d["unplaced"]
        ]
    else:
        lines.append("every tracked stream is placed")
    return "\n".join(lines) + "\n"


def render_json(report: PlanReport, only: str | None = None) -> str:
    return orjson.dumps(report.as_dict(only), option=orjson.OPT_INDENT_2).decode() + "\n"


def build_report(
    host_id: str, hosts: tuple[Host, ...], plan: Plan, data_dir: Path, now: float | None = None
) -> PlanReport:
    """The report of ``plan``, with the rates of this host's streams read from disk."""
    now = time.time() if now is None else now
    rates = local_rates(data_dir, plan.by_host.get(host_id, ()), now)
    return PlanReport(host_id, hosts, plan, rates)
