"""The decision core: pure functions from (observation, state, params, now) to (decision, state).

No I/O, no clock (`now` is a parameter), no HTTP client or SDK: the autoscaler service and the
simulator call the same functions. See `chain` for the normalization order and `policies` for
`swell` and the baselines.
"""

from autoscaler.core.chain import Guards
from autoscaler.core.registry import POLICIES, PolicySpec, build_params
from autoscaler.core.types import Decision, Limits, Observation, Override

__all__ = [
    "POLICIES",
    "Decision",
    "Guards",
    "Limits",
    "Observation",
    "Override",
    "PolicySpec",
    "build_params",
]
