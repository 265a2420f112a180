"""The decision core: pure functions from (observation, state, params, now) to (decision, state).

No I/O, no clock (`now` is a parameter), no HTTP client or SDK: the autoscaler service and the
simulator call the same functions. A policy proposes (`policies`: `swell` and the baselines), the
normalization chain decides (`chain`: the order, once), and `registry` has one entry per policy.
"""

from autoscaler.core.chain import Guards, Proposal
from autoscaler.core.registry import POLICIES, PolicySpec, build_params
from autoscaler.core.types import Clamp, Decision, Limits, Observation, Override

__all__ = [
    "POLICIES",
    "Clamp",
    "Decision",
    "Guards",
    "Limits",
    "Observation",
    "Override",
    "PolicySpec",
    "Proposal",
    "build_params",
]
