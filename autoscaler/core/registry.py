"""Every policy by name, with its state type and a way to build its parameters.

The service and the simulator both go through here, so a policy added here is available to both.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
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
    if not overrides:
        return params
    return replace(params, **checked_overrides(name, type(params), overrides))


# Set from the tier's own keys (capacity_per_instance, lead_time_s, min/max/quota), never as a
# policy parameter: two places for one value would disagree.
NOT_OVERRIDABLE = frozenset({"guards", "capacity_per_instance"})


class ParamError(ValueError):
    """A policy parameter override is unknown or of the wrong type; `key` names it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


def checked_overrides(policy: str, cls: type, overrides: dict[str, Any]) -> dict[str, Any]:
    """`overrides` checked against the parameter dataclass: known names, each value of the field's
    type (an int is a fine float; a string, a bool for a number, NaN or an infinity are not),
    durations (`*_s`) not negative. Raises ParamError naming the key and what was expected."""
    hints = typing.get_type_hints(cls)
    allowed = [f.name for f in fields(cls) if f.name not in NOT_OVERRIDABLE]
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in allowed:
            raise ParamError(
                key, f"not a parameter of policy {policy!r}; expected one of {', '.join(sorted(allowed))}"
            )
        out[key] = _typed(key, value, hints[key])
        if key.endswith("_s") and out[key] < 0:
            raise ParamError(key, f"a duration must be >= 0, got {value!r}")
    return out


def _typed(key: str, value: Any, hint: Any) -> Any:
    if hint is bool:
        if not isinstance(value, bool):
            raise ParamError(key, f"expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamError(key, f"expected a whole number, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ParamError(key, f"expected a finite number, got {value!r}")
        return float(value)
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, list | tuple):
            raise ParamError(key, f"expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_typed(key, v, args[0]) for v in value)
        if len(args) != len(value):
            raise ParamError(key, f"expected a list of {len(args)} items, got {value!r}")
        return tuple(_typed(key, v, a) for v, a in zip(value, args, strict=True))
    raise ParamError(key, f"cannot be set from the configuration ({hint})")
