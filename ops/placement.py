"""Placement: which host collects which stream (pure: no I/O, no clock).

The fleet is a list of hosts, each in a region. Every tracked stream is collected in
``min(replicas, allowed regions)`` regions, at most once per region, so that an outage of a
region loses nothing while no region collects a stream twice:

1. the stream's *allowed* regions are the fleet's regions that have hosts and that its
   exchange may be collected from (``[exchanges.X] regions``, or the adapter's
   ``EXCLUDED_REGION_PREFIXES``: Binance.com refuses US addresses with HTTP 451);
2. among them, the regions with the highest rendezvous weights for the stream are chosen;
3. inside each chosen region, the host with the highest rendezvous weight gets it.

Rendezvous (highest-random-weight) hashing makes this deterministic (every host computes the
same plan from the same inputs, with no coordination) and stable: adding or removing a host
moves only the streams whose highest-weight host changed, about 1/n of that region's, and
none in other regions. Weights are the first 8 bytes of BLAKE2b over the stream key and the
host id (or region), so the plan does not depend on Python's per-process hash seed.

A stream no region may collect is *unplaced* (with the reason); one placed in fewer regions
than ``replicas`` (its exchange is allowed in fewer) is *under-replicated*. Neither is ever
dropped silently: ``ops.fleet plan`` lists both, ``apply`` alerts on unplaced streams.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from collector.common.config import HOST_ID, REGION, region_allowed
from collector.common.errors import ConfigError
from secmaster.names import stream_key

# REGION: AWS-style region names (eu-west-1, us-gov-west-1, ap-northeast-1); the prefix rules
# of the adapters ("us-") are prefixes of these.
MAX_REPLICAS = 16

Stream = tuple[str, str, str]  # (exchange, symbol, data_type)


@dataclass(frozen=True, slots=True)
class Host:
    """One collector host: its id (the S3 prefix and alert name) and its region."""

    id: str
    region: str


def check_hosts(hosts: Sequence[Host], *, where: str = "[fleet] hosts") -> None:
    """Ids and regions of a grammar fit for paths and config; ids unique."""
    seen: set[str] = set()
    for h in hosts:
        if not HOST_ID.fullmatch(h.id):
            raise ConfigError(f"{where}: host id {h.id!r} must be 1-63 of [A-Za-z0-9._-]")
        if not REGION.fullmatch(h.region):
            raise ConfigError(
                f"{where}: host {h.id} region {h.region!r} is not a region name (eu-west-1)"
            )
        if h.id in seen:
            raise ConfigError(f"{where}: host id {h.id!r} appears twice")
        seen.add(h.id)


def weight(key: str, node: str) -> int:
    """The rendezvous weight of ``node`` for ``key`` (stable across processes and runs)."""
    digest = hashlib.blake2b(f"{key}\x00{node}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


AllowedRegions = Callable[[str, Sequence[str]], Sequence[str]]


def regions_for(
    exchange_regions: Mapping[str, Sequence[str] | None],
    default_exclusions: Mapping[str, Sequence[str]],
) -> AllowedRegions:
    """``(exchange, fleet regions) → regions it may be collected in``: the exchange's own
    ``regions`` list when configured, else every region not starting with one of its default
    excluded prefixes."""

    def allowed(exchange: str, regions: Sequence[str]) -> Sequence[str]:
        explicit = exchange_regions.get(exchange)
        keep = None if explicit is None else tuple(explicit)
        excluded = tuple(default_exclusions.get(exchange, ()))
        return [r for r in regions if region_allowed(r, keep, excluded)]

    return allowed


@dataclass(frozen=True, slots=True)
class Plan:
    """The assignment: per host id, its streams (sorted); streams no host can collect (with
    why); the replicas asked for. ``placements`` indexes the same by stream."""

    by_host: Mapping[str, tuple[Stream, ...]]
    unplaced: tuple[Stream, ...]
    replicas: int = 1
    unplaced_reasons: Mapping[Stream, str] = field(default_factory=dict)
    placements: Mapping[Stream, tuple[str, ...]] = field(default_factory=dict, compare=False)

    def host_of(self, stream: Stream) -> list[str]:
        """The hosts that collect ``stream`` (sorted; [] when unplaced or unknown)."""
        return sorted(self.placements.get(stream, ()))

    @property
    def under_replicated(self) -> tuple[Stream, ...]:
        """Placed streams collected in fewer than ``replicas`` regions (their exchange is
        allowed in fewer regions of the fleet)."""
        return tuple(s for s, hs in sorted(self.placements.items()) if len(hs) < self.replicas)


def plan(
    streams: Iterable[Stream],
    hosts: Sequence[Host],
    *,
    replicas: int,
    allowed_regions: AllowedRegions,
) -> Plan:
    """Assign every stream to its hosts (see the module docstring)."""
    if not 1 <= replicas <= MAX_REPLICAS:
        raise ConfigError(f"[fleet] replicas = {replicas} must be 1-{MAX_REPLICAS}")
    check_hosts(hosts)
    by_region: dict[str, list[str]] = {}
    for h in hosts:
        by_region.setdefault(h.region, []).append(h.id)
    regions = sorted(by_region)
    out: dict[str, list[Stream]] = {h.id: [] for h in hosts}
    placements: dict[Stream, tuple[str, ...]] = {}
    unplaced: dict[Stream, str] = {}
    allowed_of: dict[str, Sequence[str]] = {}  # per exchange: computed once, not per stream
    for stream in sorted(set(streams)):
        key = stream_key(stream)
        allowed = allowed_of.get(stream[0])
        if allowed is None:
            allowed = allowed_of[stream[0]] = allowed_regions(stream[0], regions)
        if not allowed:
            unplaced[stream] = (
                f"{stream[0]} may be collected in none of the fleet's regions "
                f"({', '.join(regions) or 'no hosts'})"
            )
            continue
        chosen = sorted(allowed, key=lambda r: weight(key, r), reverse=True)[:replicas]
        picked = []
        for region in chosen:
            host = max(by_region[region], key=lambda h: weight(key, h))
            out[host].append(stream)
            picked.append(host)
        placements[stream] = tuple(sorted(picked))
    return Plan(
        {h: tuple(s) for h, s in out.items()},
        tuple(unplaced),
        replicas,
        unplaced,
        placements,
    )


def single_host(streams: Iterable[Stream], host_id: str) -> Plan:
    """The plan of a fleet without ``[fleet] hosts``: this host collects every stream (the
    behaviour of before placement)."""
    ordered = tuple(sorted(set(streams)))
    return Plan({host_id: ordered}, (), 1, {}, {s: (host_id,) for s in ordered})
