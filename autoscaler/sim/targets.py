"""The elasticity targets of issue 3, judged on one simulation: the same verdict for the benchmark
set (`make bench-sim`) and for a trace of your own (`swell simulate`).

With "best baseline" the lowest theta_U of hpa, keda and target-tracking:
- best baseline theta_U >= 0.05% (the baselines fall short): swell's theta_U at most 1/4 of it,
  with instance-hours at most 1.05 x keda's;
- otherwise (the baselines are safe): swell's theta_U at most 0.01%, with instance-hours at most
  0.92 x keda's: the same safety for less money.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

BASELINES = ("hpa", "keda", "target-tracking")
NEEDED = ("swell", *BASELINES)
SHORT_THETA_U = 0.05  # percent: where the baselines "under-provision noticeably"


@dataclass(frozen=True)
class Verdict:
    best_name: str
    best: float  # the best baseline's theta_U, percent
    regime: str  # "baselines short" or "baselines safe"
    theta_limit: float
    ih_limit: float  # x keda's instance-hours
    theta_u: float  # swell's
    ih_ratio: float  # swell's instance-hours / keda's
    theta_ok: bool
    ih_ok: bool

    @property
    def passed(self) -> bool:
        return self.theta_ok and self.ih_ok

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"passed": self.passed}

    def describe(self) -> str:
        mark = {True: "ok", False: "MISSED"}
        return (
            f"{self.regime} (best baseline {self.best_name} theta_U {self.best:.4f}%): "
            f"swell theta_U {self.theta_u:.4f}% (limit {self.theta_limit:.4f}%, {mark[self.theta_ok]}), "
            f"instance-hours {self.ih_ratio:.3f} x keda (limit {self.ih_limit:.2f}, {mark[self.ih_ok]}): "
            + ("PASS" if self.passed else "FAIL")
        )


def judge(metrics: dict[str, dict[str, Any]]) -> Verdict | None:
    """The verdict from per-policy metrics, or None when swell, keda and a baseline were not all run."""
    if any(name not in metrics for name in NEEDED):
        return None
    best_name = min(BASELINES, key=lambda n: metrics[n]["theta_u"])
    best = float(metrics[best_name]["theta_u"])
    swell = metrics["swell"]
    keda_ih = float(metrics["keda"]["instance_hours"])
    ih_ratio = float(swell["instance_hours"]) / keda_ih if keda_ih > 0 else float("inf")
    if best >= SHORT_THETA_U:
        regime, theta_limit, ih_limit = "baselines short", best / 4, 1.05
    else:
        regime, theta_limit, ih_limit = "baselines safe", 0.01, 0.92
    theta_u = float(swell["theta_u"])
    return Verdict(
        best_name=best_name,
        best=best,
        regime=regime,
        theta_limit=theta_limit,
        ih_limit=ih_limit,
        theta_u=theta_u,
        ih_ratio=ih_ratio,
        theta_ok=theta_u <= theta_limit,
        ih_ok=ih_ratio <= ih_limit,
    )
