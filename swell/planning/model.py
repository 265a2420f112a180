"""The plan: for each growth factor and tier, the instances at peak, vCPU and RAM against the stack's
quota, EUR/month, and, when one region's largest quota tier cannot hold it, a split across regions.

- Instances at peak: with a number, `ceil(factor x peak / capacity_per_instance)`; with a trace
  (a file or a Prometheus range), the trace scaled by the factor is replayed through the chosen
  policy by the simulator (autoscaler/sim), and the most instances it asks for is the answer:
  it includes the headroom the policy keeps for its lead time. Both are reported.
- Prices: the flavor's hourly price from stacks/data/ovhcloud.yaml, x 730 h for a month at peak;
  the savings-plan price when that table has one (it has none today: the column stays empty); with
  a trace, the simulator's bill over the trace (OVHcloud's commenced hours), scaled to a month.
- Quota: every tier of the stack counts (a tier without a peak at its current `max`, what the
  autoscaler may reach), against the stack's `swell:quota` and OVHcloud's quota tiers. OVHcloud
  raises a quota automatically only after 30 days above 60% use: a factor that needs more than the
  quota has must be asked for early, by hand.
- Split: a factor beyond the largest quota tier of one project/region is spread evenly over the
  fewest regions whose shares each fit it, one stack per region from the same program.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any

import numpy as np
import yaml

from autoscaler.sim.engine import SimParams, simulate
from autoscaler.sim.trace import Trace
from stacks import catalog
from stacks.config import StackConfig
from swell.planning.inputs import Calibration, Peak, trace_hours

# OVHcloud raises a quota by itself only after more than 60% use for 30 days, and says this is "not
# suitable for rapid increases" (OVHcloud Public Cloud documentation, "Increasing Public Cloud
# quotas"; docs/ovhcloud.md): past 60%, a plan says to ask for the next tier early, by hand.
AUTO_INCREASE_USE = 0.6
AUTO_INCREASE_DAYS = 30
MAX_REGIONS = 8


@dataclass(frozen=True)
class PlanningData:
    """The planning part of stacks/data/ovhcloud.yaml: savings plans and regions."""

    savings_as_of: str
    savings_source: str
    savings_eur_per_month: dict[str, float]
    regions: tuple[str, ...]


@cache
def planning_data() -> PlanningData:
    raw = yaml.safe_load(catalog.DATA_FILE.read_text())
    savings = raw.get("savings_plans") or {}
    return PlanningData(
        savings_as_of=str(savings.get("as_of", "")),
        savings_source=str(savings.get("source", "")),
        savings_eur_per_month={str(k): float(v) for k, v in (savings.get("eur_per_month") or {}).items()},
        regions=tuple(str(r) for r in raw.get("regions") or ()),
    )


@dataclass(frozen=True)
class TierSettings:
    """How a tier is planned: its policy and lead time (the simulator's, for traces)."""

    policy: str = "swell"
    lead_time_s: float = 180.0


@dataclass
class TierAtFactor:
    tier: str
    factor: float
    unit: str
    demand_peak: float
    capacity_per_instance: float
    flavor: str
    instances: int  # what to provision for: the policy's peak with a trace, else the static need
    instances_static: int  # ceil(peak demand / capacity): no headroom
    vcpus: int
    ram_gb: int
    eur_month_at_peak: float
    eur_month_savings_plan: float | None
    eur_month_autoscaled: float | None
    planned: bool = True  # False: no peak given, counted at its current max
    simulation: dict[str, Any] | None = None


@dataclass
class QuotaCheck:
    quota: dict[str, Any]
    instances: int
    vcpus: int
    ram_gb: int
    use: float  # the largest of instances, vCPU and RAM over the quota's
    fits: bool
    smallest_tier: str | None  # the smallest OVHcloud quota tier that holds it in one region
    regions_needed: int
    ask_early: bool
    advice: str


@dataclass
class RegionShare:
    region: str
    stack: str
    tiers: dict[str, int]
    instances: int
    vcpus: int
    ram_gb: int
    quota_tier: str | None


@dataclass
class FactorPlan:
    factor: float
    tiers: dict[str, TierAtFactor]
    quota: QuotaCheck
    split: list[RegionShare] = field(default_factory=list)

    @property
    def eur_month_at_peak(self) -> float:
        return round(sum(t.eur_month_at_peak for t in self.tiers.values()), 2)


def _resources(flavor: catalog.Flavor, count: int) -> tuple[int, int]:
    return count * flavor.vcpus, count * flavor.ram_gb


def _simulate(
    trace: Trace, factor: float, cap: float, settings: TierSettings, tier: str, min_n: int, price: float
) -> dict[str, Any]:
    scaled = Trace(trace.name, trace.t, trace.demand * factor)
    params = SimParams(
        capacity_per_instance=cap,
        lead_time_s=settings.lead_time_s,
        min_instances=min_n,
        max_instances=100_000,  # unbounded here: the plan asks what the policy would need
        price_per_hour=price,
        tier=tier,
    )
    _, runs = simulate(scaled, params, (settings.policy,))
    run = runs[settings.policy]
    hours = trace_hours(trace)
    m = run.metrics
    return {
        "policy": settings.policy,
        "lead_time_s": settings.lead_time_s,
        "peak_requested": int(np.max(run.requested)),
        "peak_ready": int(np.max(run.ready)),
        "theta_u_pct": round(float(m["theta_u"]), 4),
        "slo_violation_minutes": round(float(m["slo_violation_minutes"]), 1),
        "billed_hours": round(float(m["billed_hours"]), 1),
        "trace_hours": round(hours, 2),
        "cost_eur_over_trace": round(float(m["cost_eur"]), 2),
    }


def plan_tier(
    cal: Calibration, peak: Peak, factor: float, flavor_name: str, min_n: int, settings: TierSettings
) -> TierAtFactor:
    cat = catalog.load()
    flavor = cat.flavors[flavor_name]
    cap = cal.capacity_per_instance
    demand = peak.value * factor
    static = max(min_n, math.ceil(demand / cap - 1e-9))
    sim = None
    instances = static
    autoscaled = None
    if peak.trace is not None:
        sim = _simulate(peak.trace, factor, cap, settings, cal.tier, min_n, flavor.eur_per_hour)
        instances = max(sim["peak_requested"], min_n)
        autoscaled = round(sim["cost_eur_over_trace"] * cat.hours_per_month / sim["trace_hours"], 2)
    vcpus, ram = _resources(flavor, instances)
    savings = planning_data().savings_eur_per_month.get(flavor_name)
    return TierAtFactor(
        tier=cal.tier,
        factor=factor,
        unit=cal.unit,
        demand_peak=round(demand, 3),
        capacity_per_instance=cap,
        flavor=flavor_name,
        instances=instances,
        instances_static=static,
        vcpus=vcpus,
        ram_gb=ram,
        eur_month_at_peak=round(instances * flavor.eur_per_hour * cat.hours_per_month, 2),
        eur_month_savings_plan=None if savings is None else round(instances * savings, 2),
        eur_month_autoscaled=autoscaled,
        simulation=sim,
    )


def unplanned_tier(tier: str, factor: float, flavor_name: str, count: int) -> TierAtFactor:
    """A tier without a peak: counted at its current max in the quota, priced at it."""
    cat = catalog.load()
    flavor = cat.flavors[flavor_name]
    vcpus, ram = _resources(flavor, count)
    savings = planning_data().savings_eur_per_month.get(flavor_name)
    return TierAtFactor(
        tier=tier,
        factor=factor,
        unit="",
        demand_peak=0.0,
        capacity_per_instance=0.0,
        flavor=flavor_name,
        instances=count,
        instances_static=count,
        vcpus=vcpus,
        ram_gb=ram,
        eur_month_at_peak=round(count * flavor.eur_per_hour * cat.hours_per_month, 2),
        eur_month_savings_plan=None if savings is None else round(count * savings, 2),
        eur_month_autoscaled=None,
        planned=False,
    )


def regions_needed(tiers: dict[str, TierAtFactor], largest: catalog.Quota) -> int:
    """The fewest regions over which an even split of every tier fits the largest quota tier."""
    flavors = catalog.load().flavors
    for k in range(1, MAX_REGIONS + 1):
        biggest = {t: math.ceil(p.instances / k) for t, p in tiers.items()}
        inst = sum(biggest.values())
        vcpus = sum(n * flavors[tiers[t].flavor].vcpus for t, n in biggest.items())
        ram = sum(n * flavors[tiers[t].flavor].ram_gb for t, n in biggest.items())
        if inst <= largest.instances and vcpus <= largest.vcpus and ram <= largest.ram_gb:
            return k
    return MAX_REGIONS + 1


def region_stack_name(stack: str, home_region: str, region: str) -> str:
    """prod-gra11 in SBG5 is prod-sbg5; a stack not named after its region gets the region appended."""
    suffix = home_region.lower()
    if stack.lower().endswith(suffix):
        return stack[: len(stack) - len(suffix)] + region.lower()
    return f"{stack}-{region.lower()}"


def split(
    tiers: dict[str, TierAtFactor], k: int, cfg: StackConfig, regions: tuple[str, ...]
) -> list[RegionShare]:
    """Each tier spread evenly over k regions (the home region first, the larger shares first)."""
    cat = catalog.load()
    order = [cfg.region, *[r for r in regions if r != cfg.region]]
    if len(order) < k:
        raise ValueError(f"the plan needs {k} regions; --regions lists {len(order)}: add more")
    shares = []
    for i, region in enumerate(order[:k]):
        counts = {t: p.instances // k + (1 if i < p.instances % k else 0) for t, p in tiers.items()}
        vcpus = sum(n * cat.flavors[tiers[t].flavor].vcpus for t, n in counts.items())
        ram = sum(n * cat.flavors[tiers[t].flavor].ram_gb for t, n in counts.items())
        inst = sum(counts.values())
        fitting = cat.smallest_quota_fitting(inst, vcpus, ram)
        shares.append(
            RegionShare(
                region=region,
                stack=cfg.stack if i == 0 else region_stack_name(cfg.stack, cfg.region, region),
                tiers=counts,
                instances=inst,
                vcpus=vcpus,
                ram_gb=ram,
                quota_tier=fitting.name if fitting else None,
            )
        )
    return shares


def check_quota(tiers: dict[str, TierAtFactor], cfg: StackConfig) -> QuotaCheck:
    cat = catalog.load()
    quota = cfg.quota_limits
    largest = max(cat.quota_tiers, key=lambda q: (q.instances, q.vcpus, q.ram_gb))
    inst = sum(t.instances for t in tiers.values())
    vcpus = sum(t.vcpus for t in tiers.values())
    ram = sum(t.ram_gb for t in tiers.values())
    use = max(inst / max(quota.instances, 1), vcpus / max(quota.vcpus, 1), ram / max(quota.ram_gb, 1))
    fits = use <= 1.0
    fitting = cat.smallest_quota_fitting(inst, vcpus, ram)
    k = 1 if fitting else regions_needed(tiers, largest)
    what = f"{inst} VMs / {vcpus} vCPU / {ram} GB"
    if fits and use <= AUTO_INCREASE_USE:
        advice = f"fits quota {quota.name} ({what}, {use:.0%} of it)"
        ask = False
    elif fits and quota == largest:
        advice = (
            f"fits quota {quota.name} at {use:.0%} ({what}), the largest tier of one project/region: a "
            "larger factor needs a second region; open its project and ask its quota now"
        )
        ask = True
    elif fits:
        advice = (
            f"fits quota {quota.name} at {use:.0%} ({what}): above {AUTO_INCREASE_USE:.0%}, OVHcloud "
            f"raises it by itself only after {AUTO_INCREASE_DAYS} days at such use; if a larger factor "
            "may come within a month, ask for the next tier now"
        )
        ask = True
    elif fitting is not None:
        advice = (
            f"needs quota {fitting.name} ({what}; {quota.name} holds {quota.instances} VMs / {quota.vcpus} "
            f"vCPU / {quota.ram_gb} GB): ask OVHcloud for it now, by hand: the automatic increase needs "
            f"{AUTO_INCREASE_DAYS} days above {AUTO_INCREASE_USE:.0%} use and cannot follow a surge"
        )
        ask = True
    else:
        advice = (
            f"exceeds the largest quota tier of one project/region, {largest.name} ({largest.instances} "
            f"VMs / {largest.vcpus} vCPU / {largest.ram_gb} GB), with {what}: split across {k} regions, "
            "one stack per region, and ask each region's quota now"
        )
        ask = True
    return QuotaCheck(
        quota=asdict(quota),
        instances=inst,
        vcpus=vcpus,
        ram_gb=ram,
        use=round(use, 4),
        fits=fits,
        smallest_tier=fitting.name if fitting else None,
        regions_needed=k,
        ask_early=ask,
        advice=advice,
    )


def plan_factors(
    cfg: StackConfig,
    calibrations: dict[str, Calibration],
    peaks: dict[str, Peak],
    factors: tuple[float, ...],
    settings: dict[str, TierSettings],
    regions: tuple[str, ...],
) -> list[FactorPlan]:
    out = []
    stack_tiers = dict(cfg.tiers.items())
    for factor in factors:
        tiers: dict[str, TierAtFactor] = {}
        for name, tier in stack_tiers.items():
            if name in peaks:
                tiers[name] = plan_tier(
                    calibrations[name], peaks[name], factor, tier.flavor, tier.min, settings[name]
                )
            else:
                tiers[name] = unplanned_tier(name, factor, tier.flavor, tier.max)
        quota = check_quota(tiers, cfg)
        shares = split(tiers, quota.regions_needed, cfg, regions) if quota.regions_needed > 1 else []
        out.append(FactorPlan(factor, tiers, quota, shares))
    return out
