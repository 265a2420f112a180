"""Every policy by name: one entry each, the only place a policy is added.

An entry gives the policy's `propose` function, its state type, its default parameters for one tier,
and what its proposal needs (which signal; whether it holds without data). `PolicySpec.decide`
wraps `propose` in the normalization chain (autoscaler/core/chain.py), and the entry (de)serializes
the state (autoscaler/core/state.py): a policy writes neither. The service and the simulator both
go through here, so a policy added here is available to both, with the whole chain.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any, Protocol

from autoscaler.core.chain import Guards, Proposal, normalize
from autoscaler.core.policies import hpa, keda, oracle, static, step, swell, target_tracking
from autoscaler.core.state import state_from_dict, state_to_dict
from autoscaler.core.types import Decision, Limits, Observation


class ProposeFn(Protocol):
    def __call__(self, obs: Observation, state: Any, params: Any, now: float, /) -> Proposal: ...


@dataclass(frozen=True)
class TierContext:
    """What a tier tells every policy's parameters: set from the tier's own keys, never as a
    policy parameter (`NOT_OVERRIDABLE`)."""

    capacity_per_instance: float
    lead_time_s: float
    limits: Limits
    static_count: int = 1


@dataclass(frozen=True)
class PolicySpec:
    name: str
    propose: ProposeFn
    state_type: type
    params: Callable[[TierContext], Any]  # the default parameters for one tier
    summary: str
    signal: str = "demand"  # what the chain checks for staleness: "demand" or "utilization"
    # False: the policy proposes without data (a fixed size); the chain still holds scale-downs.
    needs_signal: bool = True
    # What the policy keeps of the decided count, after the chain (swell's recent peak).
    remember: Callable[[Any, int], Any] | None = None
    # Why the service cannot run it ("" when it can): the service reads offered demand only.
    not_in_service: str = ""

    def decide(self, obs: Observation, state: Any, params: Any, now: float) -> tuple[Decision, Any]:
        """The policy's proposal through the whole chain: the only way a policy decides."""
        decision, new_state = normalize(self, obs, state, params, now)
        if self.remember is not None and new_state is not state:
            new_state = self.remember(new_state, decision.desired)
        return decision, new_state

    def initial_state(self) -> Any:
        return self.state_type()

    def state_to_dict(self, state: Any) -> dict[str, Any]:
        return state_to_dict(state)

    def state_from_dict(self, data: dict[str, Any]) -> Any:
        return state_from_dict(self.state_type, data)


UTILIZATION_ONLY = "sizes from CPU-like utilization, which the service does not read (it reads demand only)"

POLICIES: dict[str, PolicySpec] = {
    spec.name: spec
    for spec in (
        PolicySpec(
            "swell",
            swell.propose,
            swell.SwellState,
            lambda t: swell.SwellParams(
                t.capacity_per_instance, lead_time_s=t.lead_time_s, guards=Guards(limits=t.limits)
            ),
            "surge-aware, demand-sized, volatility headroom",
            remember=swell.remember_count,
        ),
        PolicySpec(
            "hpa",
            hpa.propose,
            hpa.HpaState,
            lambda t: hpa.HpaParams(guards=replace(hpa.HPA_GUARDS, limits=t.limits)),
            "Kubernetes HPA v2, CPU-like utilization 0.7",
            signal="utilization",
            not_in_service=UTILIZATION_ONLY,
        ),
        PolicySpec(
            "keda",
            keda.propose,
            keda.KedaState,
            lambda t: keda.KedaParams(
                t.capacity_per_instance, guards=replace(hpa.HPA_GUARDS, limits=t.limits)
            ),
            "KEDA Prometheus scaler, AverageValue, 30 s",
        ),
        PolicySpec(
            "target-tracking",
            target_tracking.propose,
            target_tracking.TargetTrackingState,
            lambda t: target_tracking.TargetTrackingParams(
                t.capacity_per_instance, guards=Guards(limits=t.limits, max_down_factor=0.0)
            ),
            "AWS target tracking, request count per target",
        ),
        PolicySpec(
            "step",
            step.propose,
            step.StepState,
            lambda t: step.StepParams(guards=Guards(limits=t.limits, max_down_factor=0.0)),
            "threshold step scaling on utilization",
            signal="utilization",
            not_in_service=UTILIZATION_ONLY,
        ),
        PolicySpec(
            "static",
            static.propose,
            static.StaticState,
            lambda t: static.StaticParams(t.static_count, guards=Guards(limits=t.limits)),
            "fixed size, provisioned for the peak",
            needs_signal=False,
            not_in_service="is a simulator-only baseline (a fixed size: set min and max instead)",
        ),
        PolicySpec(
            "oracle",
            oracle.propose,
            oracle.OracleState,
            lambda t: oracle.OracleParams(
                t.capacity_per_instance,
                guards=Guards(
                    limits=t.limits, max_up_factor=math.inf, max_down_factor=0.0, safety_up_factor=math.inf
                ),
            ),
            "knows the future: the bound",
            not_in_service="is a simulator-only baseline (it needs the future demand)",
        ),
    )
}


def service_policies() -> list[str]:
    """The policies the service can run: they size from offered demand, the one signal it reads."""
    return [name for name, spec in POLICIES.items() if not spec.not_in_service]


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
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; expected one of {', '.join(POLICIES)}")
    params = POLICIES[name].params(TierContext(capacity_per_instance, lead_time_s, limits, static_count))
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
