"""OVHcloud flavors, prices and quota tiers, read from the dated table in `stacks/data/ovhcloud.yaml`.

Pure data, no Pulumi import: config validation, `swell preview` and the policy pack share it, so the
flavor allow-list and the quota numbers live in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

DATA_FILE = Path(__file__).parent / "data" / "ovhcloud.yaml"


@dataclass(frozen=True)
class Flavor:
    name: str
    vcpus: int
    ram_gb: int
    eur_per_hour: float


@dataclass(frozen=True)
class Quota:
    """A ceiling on a project's instances, vCPUs and RAM (an OVHcloud quota tier, or a custom one)."""

    name: str
    instances: int
    vcpus: int
    ram_gb: int


@dataclass(frozen=True)
class Catalog:
    as_of: str
    source: str
    currency: str
    basis: str
    hours_per_month: int
    flavors: dict[str, Flavor]
    quota_tiers: tuple[Quota, ...]

    def quota(self, name: str) -> Quota:
        for tier in self.quota_tiers:
            if tier.name == name:
                return tier
        raise KeyError(name)

    def smallest_quota_fitting(self, instances: int, vcpus: int, ram_gb: int) -> Quota | None:
        """The first OVHcloud quota tier that holds this much, or None when even the largest does not."""
        for tier in self.quota_tiers:
            if instances <= tier.instances and vcpus <= tier.vcpus and ram_gb <= tier.ram_gb:
                return tier
        return None


@cache
def load(path: Path = DATA_FILE) -> Catalog:
    raw = yaml.safe_load(path.read_text())
    prices = raw["prices"]
    return Catalog(
        as_of=str(prices["as_of"]),
        source=prices["source"],
        currency=prices["currency"],
        basis=prices["basis"],
        hours_per_month=int(prices["hours_per_month"]),
        flavors={
            name: Flavor(name, int(f["vcpus"]), int(f["ram_gb"]), float(f["eur_per_hour"]))
            for name, f in raw["flavors"].items()
        },
        quota_tiers=tuple(
            Quota(q["name"], int(q["instances"]), int(q["vcpus"]), int(q["ram_gb"]))
            for q in raw["quota_tiers"]
        ),
    )
