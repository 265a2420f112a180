"""Every policy by name, with its state type and a way to build its parameters.

The service and the simulator both go through here, so a policy added here is available to both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from autoscaler.core.chain import Guards
from autoscaler.core.policies import hpa, keda, oracle, static, step, swell, target_tracking
from autoscaler.core.types import Decision, Limits, Observation


class DecideFn(Protocol):
    def __call__(self, obs: Observation, state: Any, params: Any, now: float) -> tuple[Decision, Any]: ...


@dataclass(frozen=True)
class PolicySpec:
    name: str
    decide: DecideFn
    state_type: type
    summary: str

    def initial_state(self) -> Any:
        return self.state_type()

    def state_from_dict(self, data: dict[str, Any]) -> Any:
        return self.state_type.from_dict(data)  # type: ignore[attr-defined]


POLICIES: dict[str, PolicySpec] = {
    "swell": PolicySpec(
        "swell", swell.decide, swell.SwellState, "surge-aware, demand-sized, volatility headroom"
    ),
    "hpa": PolicySpec("hpa", hpa.decide, hpa.HpaState, "Kubernetes HPA v2, CPU-like utilization 0.7"),
    "keda": PolicySpec("keda", keda.decide, keda.KedaState, "KEDA Prometheus scaler, AverageValue, 30 s"),
    "target-tracking": PolicySpec(
        "target-tracking",
        target_tracking.decide,
        target_tracking.TargetTrackingState,
        "AWS target tracking, request count per target",
    ),
    "step": PolicySpec("step", step.decide, step.StepState, "threshold step scaling on utilization"),
    "static": PolicySpec("static", static.decide, static.StaticState, "fixed size, provisioned for the peak"),
    "oracle": PolicySpec("oracle", oracle.decide, oracle.OracleState, "knows the future: the bound"),
}


def build_params(
    name: str,
    *,
    capacity_per_instance: float,
    lead_time_s: float,
    limits: Limits,
    static_count: int = 1,
    overrides: dict[str, Any] | None = None,
) -> Any:
    """Default parameters of policy `name` for one tier; `overrides` replaces fields by name."""
    factories: dict[str, Callable[[], Any]] = {
        "swell": lambda: swell.SwellParams(
            capacity_per_instance, lead_time_s=lead_time_s, guards=Guards(limits=limits)
        ),
        "hpa": lambda: hpa.HpaParams(guards=replace(hpa.HPA_GUARDS, limits=limits)),
        "keda": lambda: keda.KedaParams(capacity_per_instance, guards=replace(hpa.HPA_GUARDS, limits=limits)),
        "target-tracking": lambda: target_tracking.TargetTrackingParams(
            capacity_per_instance, guards=Guards(limits=limits, max_down_factor=0.0)
        ),
        "step": lambda: step.StepParams(guards=Guards(limits=limits, max_down_factor=0.0)),
        "static": lambda: static.StaticParams(static_count, guards=Guards(limits=limits)),
        "oracle": lambda: oracle.OracleParams(
            capacity_per_instance,
            guards=Guards(limits=limits, max_up_factor=float("inf"), max_down_factor=0.0),
        ),
    }
    if name not in factories:
        raise ValueError(f"unknown policy {name!r}; expected one of {', '.join(POLICIES)}")
    params = factories[name]()
    return replace(params, **overrides) if overrides else params
