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
from autoscaler.config import parse_config
from autoscaler.core.policies.swell import compress_time
from autoscaler.ports import Actuator
from autoscaler.service import Autoscaler
from autoscaler.telemetry import Redactor, Telemetry, TelemetryServer
from autoscaler.wiring import build_source
from loadtests.faults import FaultyActuator
from loadtests.local_actuator import LocalActuator
from loadtests.options import DRILL_DRAIN_TIMEOUT_S, DrillOptions
from loadtests.plumbing import drill_rate_window_lag_s
from swell import tiers


def autoscaler_config(o: DrillOptions, prom_url: str, state_path: Path) -> dict[str, Any]:
    """The drill's autoscaler configuration: production's `swell` policy with every one of its time
    constants compressed by the drill's speed (`compress_time`), the boot delay plus, for a tier
    whose demand is a rate (requests), the rules' (compressed) rate-window lag as lead time, and the
    local actuator."""
    speed = o.effective_speed
    rated = {t.name for t in tiers.load().with_traffic("requests")}
    return {
        "prometheus": {"url": prom_url, "timeout_s": 1.5},
        "interval_s": o.interval_s,
        "state": {"kind": "sqlite", "path": str(state_path)},
        "tiers": {
            t: {
                "capacity_per_instance": p.capacity_per_instance,
                "min": p.min,
                "max": p.max,
                "lead_time_s": o.boot_delay_s + (drill_rate_window_lag_s(speed) if t in rated else 0.0),
                "policy": "swell",
                "policy_params": compress_time(speed),
                "drain_timeout_s": DRILL_DRAIN_TIMEOUT_S,
                "actuator": {"kind": "local", "boot_delay_s": o.boot_delay_s},
            }
            for t, p in o.plans.items()
        },
    }


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
    faulty = FaultyActuator(actuator)
    actuators: dict[str, Actuator] = dict.fromkeys(o.plans, faulty)
    telemetry = Telemetry(Redactor([]), log_stream=decision_log)
    server = TelemetryServer(telemetry, "127.0.0.1", metrics_port, 4 * o.interval_s, time.time).start()
    scaler = Autoscaler(cfg, build_source(cfg), actuators, SQLiteStateStore(state_path), telemetry, time.time)
    return scaler, faulty, server
