"""The cost frontier: every baseline at every utilization target an SRE might set, swell at every
headroom, and a verdict against the whole frontier rather than against one default point.

An SRE tunes HPA's or KEDA's target, so swell has to beat each baseline at its best setting, not
at its default. For each trace and lead time:

- A = the lowest baseline theta_U among the points that cost no more than swell's default point;
- B = the lowest baseline cost among the points whose theta_U is no higher than swell's;
- targets: swell's theta_U at most A / 4 (held to 0.01% where A is below 0.01%), and swell's cost
  at most 0.85 x B.

Where no baseline point costs as little as swell, A is the theta_U of the cheapest baseline point;
where none is as safe as swell, B is the cost of the safest one (`note` says so). Cost is what
OVHcloud bills (every commenced hour of each instance, autoscaler/core/billing.py).
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import Any

from autoscaler.sim.engine import Replay, SimParams, run_policy

BASELINES = ("hpa", "keda", "target-tracking")
# The utilization target every baseline is swept over: 0.50 to 0.95 in steps of 0.05.
TARGETS = tuple(round(0.50 + 0.05 * k, 2) for k in range(10))
COARSE_TARGETS = (0.5, 0.6, 0.7, 0.8, 0.9)
# swell's knob: the headroom in sigmas of measured noise (its default is 2.8).
SWELL_HEADROOM_SIGMAS = (1.5, 2.0, 2.4, 2.8, 3.2, 3.6, 4.0)
THETA_DIVISOR = 4.0
COST_RATIO = 0.85
THETA_FLOOR = 0.01  # percent: below this the baselines are safe and A / 4 would ask the impossible


@dataclass(frozen=True)
class Point:
    policy: str
    params: dict[str, Any]
    theta_u: float
    theta_o: float
    instance_hours: float
    billed_hours: float
    cost_eur: float
    actions: int

    def label(self) -> str:
        shown = ", ".join(f"{k} {v:g}" for k, v in self.params.items())
        return f"{self.policy} ({shown})" if shown else self.policy

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class FrontierVerdict:
    swell_theta_u: float
    swell_cost: float
    a: float
    a_point: str
    b: float
    b_point: str
    b_instance_hours: float  # of B's point: what a tracker's instance-hours compare with
    theta_limit: float
    cost_limit: float
    theta_ratio: float  # swell's theta_U / A (target at most 1 / 4)
    cost_ratio: float  # swell's cost / B (target at most 0.85)
    theta_ok: bool
    cost_ok: bool
    note: str = ""

    @property
    def passed(self) -> bool:
        return self.theta_ok and self.cost_ok

    def as_dict(self) -> dict[str, Any]:
        out = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}
        return out | {"A": out.pop("a"), "B": out.pop("b"), "pass": self.passed}

    def describe(self) -> str:
        mark = {True: "ok", False: "MISSED"}
        return (
            f"theta_U {self.swell_theta_u:.4f}% against A {self.a:.4f}% ({self.a_point}): "
            f"limit {self.theta_limit:.4f}%, {mark[self.theta_ok]}; cost {self.swell_cost:.2f} EUR against "
            f"B {self.b:.2f} EUR ({self.b_point}): ratio {self.cost_ratio:.3f}, limit {COST_RATIO}, "
            f"{mark[self.cost_ok]}: "
            + ("PASS" if self.passed else "FAIL")
            + (f" ({self.note})" if self.note else "")
        )


def point(policy: str, params: dict[str, Any], metrics: dict[str, Any]) -> Point:
    return Point(
        policy,
        dict(params),
        float(metrics["theta_u"]),
        float(metrics["theta_o"]),
        float(metrics["instance_hours"]),
        float(metrics["billed_hours"]),
        float(metrics["cost_eur"]),
        int(metrics["actions"]),
    )


def judge_frontier(baselines: list[Point], swell: Point) -> FrontierVerdict:
    """The verdict of swell's point against the baselines' frontier points (module docstring)."""
    if not baselines:
        raise ValueError("no baseline points to judge against")
    notes = []
    affordable = [p for p in baselines if p.cost_eur <= swell.cost_eur]
    if affordable:
        a_point = min(affordable, key=lambda p: p.theta_u)
    else:
        a_point = min(baselines, key=lambda p: p.cost_eur)
        notes.append("no baseline setting costs as little as swell: A from the cheapest")
    a = a_point.theta_u
    if a >= THETA_FLOOR:
        theta_limit = a / THETA_DIVISOR
    else:
        theta_limit = THETA_FLOOR
        notes.append(f"A below {THETA_FLOOR}%: swell held to {THETA_FLOOR}%")
    as_safe = [p for p in baselines if p.theta_u <= swell.theta_u]
    if as_safe:
        b_point = min(as_safe, key=lambda p: p.cost_eur)
    else:
        b_point = min(baselines, key=lambda p: (p.theta_u, p.cost_eur))
        notes.append("no baseline setting is as safe as swell: B from the safest")
    b = b_point.cost_eur
    cost_limit = COST_RATIO * b
    return FrontierVerdict(
        swell_theta_u=swell.theta_u,
        swell_cost=swell.cost_eur,
        a=a,
        a_point=a_point.label(),
        b=b,
        b_point=b_point.label(),
        b_instance_hours=b_point.instance_hours,
        theta_limit=theta_limit,
        cost_limit=cost_limit,
        theta_ratio=swell.theta_u / a if a > 0 else float("inf") if swell.theta_u > 0 else 0.0,
        cost_ratio=swell.cost_eur / b if b > 0 else float("inf"),
        theta_ok=swell.theta_u <= theta_limit,
        cost_ok=swell.cost_eur <= cost_limit,
        note="; ".join(notes),
    )


def sweep_plan(coarse: bool = False) -> list[tuple[str, dict[str, Any]]]:
    """(policy, parameter overrides) of every frontier point, swell's default included."""
    targets = COARSE_TARGETS if coarse else TARGETS
    plan = [(name, {"target_utilization": t}) for name in BASELINES for t in targets]
    sigmas = (2.8,) if coarse else SWELL_HEADROOM_SIGMAS
    plan += [("swell", {"headroom_sigmas": s}) for s in sigmas]
    return plan


def _run_point(args: tuple[str, dict[str, Any], Replay, SimParams]) -> Point:
    policy, overrides, replay, params = args
    merged = {**params.policy_overrides.get(policy, {}), **overrides}
    run = run_policy(policy, replay, replace(params, policy_overrides={policy: merged}))
    return point(policy, overrides, run.metrics)


@dataclass(frozen=True)
class Frontier:
    points: dict[str, list[Point]]  # per policy, in sweep order
    swell_default: Point  # swell with its default parameters (and `--param swell.*` if given)
    swell_newest: Point  # the same, retiring the newest at once (as the baselines): what the choice is worth
    oracle: Point
    verdict: FrontierVerdict

    def as_dict(self) -> dict[str, Any]:
        return {
            "frontier": {name: [p.as_dict() for p in pts] for name, pts in self.points.items()},
            "swell_default": self.swell_default.as_dict(),
            "swell_retiring_newest": self.swell_newest.as_dict(),
            "oracle": self.oracle.as_dict(),
            "verdict": self.verdict.as_dict(),
        }


def run_frontier(replay: Replay, params: SimParams, workers: int = 1, coarse: bool = False) -> Frontier:
    """Every point of the sweep on one replay, then the verdict."""
    jobs = [(policy, overrides, replay, params) for policy, overrides in sweep_plan(coarse)]
    swell_own = params.policy_overrides.get("swell", {})
    jobs.append(("swell", dict(swell_own), replay, params))
    newest = replace(params, retirement={**params.retirement, "swell": "newest"})
    jobs.append(("swell", dict(swell_own), replay, newest))
    jobs.append(("oracle", {}, replay, params))
    if workers > 1:
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            done = list(pool.map(_run_point, jobs))
    else:
        done = [_run_point(job) for job in jobs]
    *swept, default, swell_newest, oracle = done
    points: dict[str, list[Point]] = {}
    for p in swept:
        points.setdefault(p.policy, []).append(p)
    baseline_points = [p for name in BASELINES for p in points.get(name, [])]
    verdict = judge_frontier(baseline_points, default)
    return Frontier(points, default, swell_newest, oracle, verdict)
