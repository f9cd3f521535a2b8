"""Placement benchmark (issue 21, "Placement and sharding"): 3 regions x 4 hosts, 3,000 streams.

Workloads: *uniform*, 1,500 pairs x (trade, book) of an exchange allowed everywhere (the
balance the issue asks for: within ±15 % per host); *mixed*, 1,000 Binance pairs and 500
Coinbase pairs x 2 = 3,000 streams, where Binance (HTTP 451 from US addresses) may only go to
eu-west-1 and ap-northeast-1. replicas = 2.

Measured, side by side in one run:
  plan       ops.placement.plan of 3,000 streams, best of 5, versus its floor: the BLAKE2b
             weights alone (the same number of hashes in a bare loop: the harness's rate)
  render     ops.fleet.render_programs of every host's share (12 files), versus what it feeds:
             supervisor's own parser (ServerOptions) reading the largest host's file
  cli        `python -m ops.fleet plan --json` with the 3,000 streams in a real secmaster
             SQLite file (interpreter start, SQLModel, universe, plan, JSON)
  balance    max deviation from the mean streams per host (uniform: all 12 hosts; mixed:
             per region)
  moved      share of a region's placements that change host when a fifth host joins it
             (rendezvous: ~1/5; none in the other regions), versus modulo hashing
             (``weight % n``: ~n/(n+1)), and when one of its four hosts leaves
"""

from __future__ import annotations

import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from collector.config import load_config
from ops.fleet import build_fleet_settings, render_programs
from ops.placement import Host, Plan, Stream, plan, regions_for, stream_key, weight
from tests.ops.fleet_harness import prepare_root, short_dir, supervisor_programs

REPO = Path(__file__).resolve().parents[2]
REGIONS = ("eu-west-1", "us-east-2", "ap-northeast-1")
PER_REGION = 4
REPLICAS = 2
REPEATS = 5
ALLOWED = regions_for({}, {"binance": ("us-",)})
GOAL_BALANCE = 0.15


def hosts(per_region: int = PER_REGION) -> list[Host]:
    return [Host(f"{r}-{i}", r) for r in REGIONS for i in range(per_region)]


def uniform() -> list[Stream]:
    return [("coinbase", f"P{i:04d}-USD", dt) for i in range(1500) for dt in ("trade", "book")]


def mixed() -> list[Stream]:
    return [("binance", f"P{i:04d}USDT", dt) for i in range(1000) for dt in ("trade", "book")] + [
        ("coinbase", f"P{i:04d}-USD", dt) for i in range(500) for dt in ("trade", "book")
    ]


def best(fn: Callable[[], object], repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def deviation(counts: Sequence[int]) -> float:
    mean = statistics.fmean(counts)
    return max(abs(c - mean) / mean for c in counts)


def region_of(host_id: str) -> str:
    return host_id.rsplit("-", 1)[0]


def moved(before: Plan, after: Plan, streams: Sequence[Stream], region: str) -> tuple[float, int]:
    """(share of ``region``'s placements whose host changed, changes in other regions)."""
    total = changed = elsewhere = 0
    for s in streams:
        b, a = before.host_of(s), after.host_of(s)
        bin_, ain = (
            [h for h in b if region_of(h) == region],
            [h for h in a if region_of(h) == region],
        )
        total += len(bin_)
        changed += bin_ != ain
        elsewhere += [h for h in b if h not in bin_] != [h for h in a if h not in ain]
    return changed / max(total, 1), elsewhere


def modulo_moved(streams: Sequence[Stream], n: int) -> float:
    """The same measure for ``hosts[weight % n]`` inside one region (the naive sharding)."""
    keys = [stream_key(s) for s in streams]
    return sum(weight(k, "") % n != weight(k, "") % (n + 1) for k in keys) / len(keys)


def _bench_plan(streams: list[Stream], fleet: list[Host]) -> tuple[float, float, int]:
    t_plan = best(lambda: plan(streams, fleet, replicas=REPLICAS, allowed_regions=ALLOWED))
    n_hashes = len(streams) * (len(REGIONS) + REPLICAS * PER_REGION)
    keys = [stream_key(s) for s in streams]
    nodes = [*REGIONS, *(h.id for h in fleet[: REPLICAS * PER_REGION])]

    def floor() -> None:
        for k in keys:
            for node in nodes:
                weight(k, node)

    return t_plan, best(floor), n_hashes


def _bench_render(root: Path, p: Plan) -> tuple[float, float, int, int]:
    root.mkdir(parents=True, exist_ok=True)
    cfg = root / "config.toml"
    cfg.write_text('data_dir = "data"\n[fleet]\nperiodic = []\nlistener = false\n')
    s = build_fleet_settings(load_config(cfg), python=sys.executable)
    t_render = best(lambda: [render_programs(s, p.by_host[h]) for h in p.by_host])
    biggest = max(p.by_host, key=lambda h: len(p.by_host[h]))
    prepare_root(root)
    (root / "var" / "supervisor" / "programs.conf").write_text(
        render_programs(s, p.by_host[biggest])
    )
    (root / "var" / "log" / "collector").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    n_parsed = len(supervisor_programs(root))
    t_parse = time.perf_counter() - t0
    return t_render, t_parse, len(p.by_host[biggest]), n_parsed


def _bench_cli(root: Path, streams: list[Stream]) -> tuple[float, int]:
    """`ops.fleet plan --json` over a real secmaster file holding ``streams``."""
    host_list = ", ".join(f'{{ id = "{h.id}", region = "{h.region}" }}' for h in hosts())
    cfg = root / "cli.toml"
    cfg.write_text(
        f'data_dir = "cli"\nhost_id = "eu-west-1-0"\n[fleet]\nhosts = [{host_list}]\n'
        f"replicas = {REPLICAS}\n",
        encoding="utf-8",
    )
    subprocess.run(
        [sys.executable, "-m", "secmaster", "--config", str(cfg), "tracked"],
        cwd=REPO, capture_output=True, check=True, timeout=120,
    )  # fmt: skip
    with sqlite3.connect(root / "cli" / "secmaster.sqlite") as db:
        db.execute("DELETE FROM tracked")
        db.executemany(
            "INSERT INTO tracked VALUES (?, ?, ?, '2026-01-01 00:00:00', 'bench')", streams
        )
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "ops.fleet", "--config", str(cfg), "--log-level", "warning",
         "plan", "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"ops.fleet plan exited {proc.returncode}: {proc.stderr[-500:]}")
    return elapsed, len(proc.stdout)


def main() -> None:
    fleet = hosts()
    root = short_dir()
    try:
        for name, streams in (("uniform", uniform()), ("mixed", mixed())):
            p = plan(streams, fleet, replicas=REPLICAS, allowed_regions=ALLOWED)
            t_plan, t_floor, n_hashes = _bench_plan(streams, fleet)
            print(f"[{name}] {len(streams)} streams, {len(fleet)} hosts in {len(REGIONS)} "
                  f"regions, replicas {REPLICAS}: {sum(map(len, p.by_host.values()))} placements, "
                  f"{len(p.unplaced)} unplaced")  # fmt: skip
            print(f"  plan              {t_plan * 1e3:7.1f} ms   floor (hashes only) "
                  f"{t_floor * 1e3:6.1f} ms  ratio {t_plan / t_floor:.2f}x  (harness: "
                  f"{n_hashes / t_floor / 1e6:.2f} M weights/s)")  # fmt: skip
            if name == "uniform":
                counts = [len(v) for v in p.by_host.values()]
                dev = deviation(counts)
                print(f"  balance           max deviation {dev * 100:5.1f} % from the mean "
                      f"{statistics.fmean(counts):.0f}/host (min {min(counts)}, max "
                      f"{max(counts)})  goal ±{GOAL_BALANCE * 100:.0f} % "
                      f"{'OK' if dev <= GOAL_BALANCE else 'MISSED'}")  # fmt: skip
            else:
                for region in REGIONS:
                    counts = [len(v) for h, v in p.by_host.items() if region_of(h) == region]
                    print(f"  balance {region:15s} {statistics.fmean(counts):5.0f}/host, max "
                          f"deviation {deviation(counts) * 100:4.1f} %")  # fmt: skip
            t_render, t_parse, biggest, parsed = _bench_render(root / name, p)
            print(f"  render            {t_render * 1e3:7.1f} ms for all {len(p.by_host)} hosts' "
                  f"files; supervisor parses the largest ({biggest} programs) in "
                  f"{t_parse * 1e3:.0f} ms ({parsed} programs read)")  # fmt: skip
            grown = plan(streams, [*fleet, Host("eu-west-1-4", "eu-west-1")],
                         replicas=REPLICAS, allowed_regions=ALLOWED)  # fmt: skip
            share, elsewhere = moved(p, grown, streams, "eu-west-1")
            naive = modulo_moved(streams, PER_REGION)
            print(f"  host added        eu-west-1: {share * 100:5.1f} % of its placements move "
                  f"(ideal {100 / (PER_REGION + 1):.0f} %), other regions: {elsewhere} moved; "
                  f"modulo hashing: {naive * 100:.0f} % ({naive / share:.1f}x)")  # fmt: skip
            shrunk = plan(streams, [h for h in fleet if h.id != "eu-west-1-0"],
                          replicas=REPLICAS, allowed_regions=ALLOWED)  # fmt: skip
            share, elsewhere = moved(p, shrunk, streams, "eu-west-1")
            print(f"  host removed      eu-west-1: {share * 100:5.1f} % of its placements move "
                  f"(ideal {100 / PER_REGION:.0f} %: the leaving host's), other regions: "
                  f"{elsewhere} moved")  # fmt: skip
        t_cli, size = _bench_cli(root, mixed())
        print(f"cli                 python -m ops.fleet plan --json, 3,000 tracked streams in "
              f"SQLite: {t_cli:.2f} s ({size / 1e6:.1f} MB of JSON)")  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
