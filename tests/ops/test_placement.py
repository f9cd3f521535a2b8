"""Placement of streams on hosts (ops/placement.py): replicas across regions, rendezvous
hashing inside a region, exchange region rules."""

from __future__ import annotations

import pytest

from collector.common.errors import ConfigError
from ops.placement import Host, Plan, plan, regions_for

REGIONS = ("eu-west-1", "us-east-2", "ap-northeast-1")
NO_US = regions_for({}, {"binance": ("us-",)})


def fleet(per_region: int) -> list[Host]:
    return [Host(f"{r}-{i}", r) for r in REGIONS for i in range(per_region)]


def streams(n: int, exchange: str = "coinbase") -> list[tuple[str, str, str]]:
    return [(exchange, f"S{i:04d}-USD", dt) for i in range(n // 2) for dt in ("trade", "book")]


def region_of(host_id: str) -> str:
    return host_id.rsplit("-", 1)[0]


def place(hosts: list[Host], ss: list[tuple[str, str, str]], replicas: int = 2) -> Plan:
    return plan(ss, hosts, replicas=replicas, allowed_regions=NO_US)


class TestReplicas:
    def test_each_stream_in_replicas_regions_once_per_region(self) -> None:
        """replicas = 2 over 3 regions: every stream on exactly 2 hosts, in 2 regions."""
        p = place(fleet(2), streams(200))

        for s in streams(200):
            hosts = p.host_of(s)
            assert len(hosts) == 2
            assert len({region_of(h) for h in hosts}) == 2

    def test_more_replicas_than_regions(self) -> None:
        """replicas = 5 with 3 regions: once in each region, never twice in one."""
        p = place(fleet(2), streams(20), replicas=5)

        assert all(len(p.host_of(s)) == 3 for s in streams(20))

    def test_binance_is_never_placed_in_a_us_region(self) -> None:
        """Binance.com refuses US addresses: its streams go to the other two regions only."""
        p = place(fleet(1), streams(50, "binance"), replicas=3)

        for s in streams(50, "binance"):
            assert sorted(region_of(h) for h in p.host_of(s)) == ["ap-northeast-1", "eu-west-1"]

    def test_configured_regions_win_over_the_default(self) -> None:
        """`[exchanges.binance] regions = ["us-east-2"]` is obeyed as given."""
        allowed = regions_for({"binance": ["us-east-2"]}, {"binance": ("us-",)})

        p = plan(streams(10, "binance"), fleet(1), replicas=2, allowed_regions=allowed)

        assert {h for s in streams(10, "binance") for h in p.host_of(s)} == {"us-east-2-0"}

    def test_a_stream_no_region_may_collect_is_unplaced(self) -> None:
        """A fleet only in US regions cannot collect Binance: reported, not silently lost."""
        hosts = [Host("o1", "us-east-2"), Host("o2", "us-west-2")]

        p = plan(streams(4, "binance"), hosts, replicas=2, allowed_regions=NO_US)

        assert p.unplaced == tuple(sorted(streams(4, "binance")))
        assert all(v == () for v in p.by_host.values())


class TestRendezvous:
    def test_deterministic_whatever_the_order(self) -> None:
        """Same inputs, any order: the same plan (every host computes it alone)."""
        ss = streams(300)
        hosts = fleet(3)

        assert place(hosts, ss) == place(list(reversed(hosts)), list(reversed(ss)))

    def test_balanced_within_15_percent_for_thousands_of_streams(self) -> None:
        """3,000 streams, 3 regions x 4 hosts, replicas 2: every host within ±15 %."""
        p = place(fleet(4), streams(3000))

        counts = [len(v) for v in p.by_host.values()]
        mean = sum(counts) / len(counts)
        assert max(abs(c - mean) / mean for c in counts) <= 0.15

    def test_adding_a_host_moves_about_1_over_n_of_its_region_and_nothing_else(self) -> None:
        """A fifth host in eu-west-1 takes ~1/5 of that region's streams; other regions keep
        every assignment."""
        ss = streams(3000)
        before = place(fleet(4), ss)
        after = place([*fleet(4), Host("eu-west-1-4", "eu-west-1")], ss)

        moved_eu = moved_other = eu_total = 0
        for s in ss:
            b, a = before.host_of(s), after.host_of(s)
            b_eu = [h for h in b if region_of(h) == "eu-west-1"]
            a_eu = [h for h in a if region_of(h) == "eu-west-1"]
            eu_total += len(b_eu)
            moved_eu += b_eu != a_eu
            moved_other += [h for h in b if h not in b_eu] != [h for h in a if h not in a_eu]
        assert moved_other == 0
        assert 0.12 <= moved_eu / eu_total <= 0.28
        assert set(after.by_host["eu-west-1-4"]) <= set(ss)


class TestHostsAreChecked:
    @pytest.mark.parametrize(
        "host",
        [
            Host("a\nb", "eu-west-1"),
            Host("%(here)s", "eu-west-1"),
            Host("", "eu-west-1"),
            Host("ok", "Europe"),
            Host("ok", "eu-west-1\n"),
        ],
    )
    def test_bad_ids_and_regions_are_refused(self, host: Host) -> None:
        """Host ids become S3 prefixes and config values: a strict grammar, one line."""
        with pytest.raises(ConfigError, match="host"):
            plan(streams(2), [host], replicas=1, allowed_regions=NO_US)

    def test_duplicate_ids_are_refused(self) -> None:
        with pytest.raises(ConfigError, match="appears twice"):
            plan(
                streams(2),
                [Host("a", "eu-west-1"), Host("a", "us-east-2")],
                replicas=1,
                allowed_regions=NO_US,
            )
