"""The drill's composition root: the one place that wires the real autoscaler (`Autoscaler`, the
`swell` policy, `PrometheusDemand`, SQLite state, telemetry) to the drill's parts. Production's
root, `autoscaler/wiring.py`, refuses the local actuator: only the drill starts instances itself, so
it builds its own loop here, from a configuration the service's own parser accepts.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import IO, Any

from autoscaler.adapters.sqlite_store import SQLiteStateStore
from autoscaler.config import WarmPoolConfig, parse_config
from autoscaler.core.policies.swell import SwellState, compress_time
from autoscaler.core.registry import POLICIES
from autoscaler.ports import Actuator, LoopState
from autoscaler.service import Autoscaler
from autoscaler.telemetry import Redactor, Telemetry, TelemetryServer
from autoscaler.wiring import build_source
from loadtests.curves import profile_growth_per_s
from loadtests.faults import FaultyActuator
from loadtests.local_actuator import LocalActuator
from loadtests.options import DRILL_DRAIN_TIMEOUT_S, DrillOptions, TierPlan
from loadtests.plumbing import drill_rate_window_lag_s
from swell import tiers


def autoscaler_config(o: DrillOptions, prom_url: str, state_path: Path) -> dict[str, Any]:
    """The drill's autoscaler configuration: production's `swell` policy with every one of its time
    constants compressed by the drill's speed (`compress_time`); as lead times, the tier's cold
    delay (`lead_time_s` and the warm pool's `cold_lead_s`) and warm delay (`warm_lead_s`), the
    very figures the local actuator waits, plus, for a tier whose demand is a rate (requests), the
    rules' (compressed) rate-window lag; the warm pool on unless `--no-warm-pool`, its hysteresis
    compressed too; and the local actuator."""
    speed = o.effective_speed
    rated = {t.name for t in tiers.load().with_traffic("requests")}

    def tier(t: str, p: TierPlan) -> dict[str, Any]:
        lag = drill_rate_window_lag_s(speed) if t in rated else 0.0
        cold, warm = o.cold_delay_s(t), o.warm_delay_s(t)
        return {
            "capacity_per_instance": p.capacity_per_instance,
            "min": p.min,
            "max": p.max,
            "lead_time_s": cold + lag,
            "policy": "swell",
            "policy_params": compress_time(speed),
            "drain_timeout_s": DRILL_DRAIN_TIMEOUT_S,
            "warm_pool": {
                "enabled": o.warm_pool,
                "cold_lead_s": cold + lag,
                "warm_lead_s": warm + lag,
                "shrink_after_s": WarmPoolConfig().shrink_after_s / speed,
            },
            "actuator": {"kind": "local", "boot_delay_s": cold},
        }

    return {
        "prometheus": {"url": prom_url, "timeout_s": 1.5},
        "interval_s": o.interval_s,
        "state": {"kind": "sqlite", "path": str(state_path)},
        "tiers": {t: tier(t, p) for t, p in o.plans.items()},
    }


def remembered_state(o: DrillOptions, now: float) -> LoopState:
    """The loop state the drill starts from: with `memory`, each tier's swell state remembers the
    profile's steepest rise (`growth_memory`, per real second: the nominal rate x the speed), as
    after a day like this one; only the warm pool's sizer reads it (`warm_pool_target`). Every
    other field is a first start's (no demand measured yet: the first sample starts the tracking,
    as in a fresh state), and each tier's history begins `now`."""
    state = LoopState()
    if not o.memory:
        return state
    growth = profile_growth_per_s(o.profile) * o.effective_speed
    for t in o.plans:
        state.policy_state[t] = POLICIES["swell"].state_to_dict(SwellState(growth_memory=growth))
        state.policies[t] = "swell"
        state.history_since[t] = now
    return state


def build_loop(
    o: DrillOptions,
    prom_url: str,
    state_path: Path,
    actuator: LocalActuator,
    decision_log: IO[str],
    metrics_port: int,
) -> tuple[Autoscaler, FaultyActuator, TelemetryServer]:
    """The loop the drill runs (each tier through one `FaultyActuator`, so faults reach every tier),
    and its telemetry server on `metrics_port`, scraped as job swell-autoscaler as production's is.
    The caller stops the server."""
    cfg = parse_config(autoscaler_config(o, prom_url, state_path), source="drill")
    store = SQLiteStateStore(state_path)
    if o.memory:
        store.save_loop_state(remembered_state(o, time.time()))
    faulty = FaultyActuator(actuator)
    actuators: dict[str, Actuator] = dict.fromkeys(o.plans, faulty)
    telemetry = Telemetry(Redactor([]), log_stream=decision_log)
    server = TelemetryServer(telemetry, "127.0.0.1", metrics_port, 4 * o.interval_s, time.time).start()
    scaler = Autoscaler(cfg, build_source(cfg), actuators, store, telemetry, time.time)
    return scaler, faulty, server
