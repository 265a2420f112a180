"""`make bench-actuation`: one pass of the loop over 3 tiers (web, chat, video on one Pulumi stack)
while `pulumi up` takes 120 s, with the real Pulumi actuator and the Automation API against the
stand-in `pulumi` executable (tests/autoscaler/pulumi_standin.py, slowed down by
SWELL_STANDIN_UP_DELAY_S). It prints the pass's duration against the interval (target: within one
interval), the passes that follow while the update runs (the loop keeps its interval), and how long
until the update lands.

    python tests/autoscaler/bench_actuation.py [--up-delay 120] [--interval 15]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from autoscaler.adapters.pulumi import PulumiActuator, PulumiSettings  # noqa: E402
from autoscaler.adapters.sqlite_store import SQLiteStateStore  # noqa: E402
from autoscaler.config import parse_config  # noqa: E402
from autoscaler.service import Autoscaler  # noqa: E402
from tests.autoscaler.fakes import FakeClock, FakeSource, telemetry  # noqa: E402

STANDIN = ROOT / "tests" / "autoscaler" / "pulumi_standin.py"


def project(tmp: Path) -> Path:
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    (bin_dir / "pulumi").write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STANDIN}" "$@"\n')
    (bin_dir / "pulumi").chmod(0o755)
    os.environ["PATH"] = f"{bin_dir}:{os.environ['PATH']}"
    os.environ["PULUMI_HOME"] = str(tmp / "pulumi-home")
    work = tmp / "project"
    work.mkdir()
    (work / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    config = yaml.safe_load((ROOT / "Pulumi.prod-gra11.yaml").read_text())["config"]
    (work / "Pulumi.prod-gra11.yaml").write_text(yaml.safe_dump({"config": config}))
    return work


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--up-delay", type=float, default=120.0, help="seconds the stand-in `pulumi up` takes")
    p.add_argument("--interval", type=float, default=15.0)
    a = p.parse_args(argv)
    os.environ["SWELL_STANDIN_UP_DELAY_S"] = str(a.up_delay)
    with tempfile.TemporaryDirectory(prefix="swell-bench-actuation-") as tmp_dir:
        tmp = Path(tmp_dir)
        work = project(tmp)
        actuator_cfg = {"kind": "pulumi", "work_dir": str(work), "stack": "prod-gra11", "policy_pack": None}
        cfg = parse_config(
            {
                "prometheus": {"url": "http://127.0.0.1:9"},
                "interval_s": a.interval,
                "state": {"kind": "sqlite", "path": str(tmp / "state.db")},
                "tiers": {
                    t: {"capacity_per_instance": cap, "actuator": actuator_cfg}
                    for t, cap in (("web", 60), ("chat", 2000), ("video", 250))
                },
            }
        )
        actuator = PulumiActuator(PulumiSettings(work_dir=work, stack="prod-gra11", cancel_grace_s=5))
        limits = {t: actuator.limits(t) for t in cfg.tiers}  # start-up: read the stack once
        clock = FakeClock(time.time())
        source = FakeSource(clock, age_s=1.0)
        tel, _ = telemetry()
        loop = Autoscaler(
            cfg,
            source,
            dict.fromkeys(cfg.tiers, actuator),
            SQLiteStateStore(tmp / "state.db"),
            tel,
            clock,
            limits=limits,
        )
        # A surge on every tier: each wants more instances at once (x2 of the stack's counts).
        source.demand_by_tier = {"web": 15 * 60 * 2.0, "chat": 5 * 2000 * 2.0, "video": 15 * 250 * 2.0}
        started, started_wall = time.monotonic(), time.time()
        result = loop.run_once()
        first = time.monotonic() - started
        asked = {d["tier"]: (d["current"], d["desired"]) for d in result.decisions}
        later: list[float] = []
        while actuator.status()["in_flight"] is not None or actuator.status()["queued"]:
            clock.advance(a.interval)
            t0 = time.monotonic()
            loop.run_once()
            later.append(time.monotonic() - t0)
            time.sleep(max(0.0, min(a.interval, a.up_delay / 10) - (time.monotonic() - t0)))
            if time.monotonic() - started > a.up_delay + 120:
                break
        status = actuator.status()
        # When the worker finished the update (the loop sees it at its next pass).
        landed = (status["last"]["at"] - started_wall) if status["last"] else float("nan")
        actuator.close()
    figures = {
        "up_delay_s": a.up_delay,
        "interval_s": a.interval,
        "tiers": asked,
        "first_pass_s": round(first, 3),
        "first_pass_to_interval": round(first / a.interval, 4),
        "passes_while_updating": len(later),
        "pass_while_updating_median_s": round(statistics.median(later), 3) if later else None,
        "pass_while_updating_max_s": round(max(later), 3) if later else None,
        "update_landed_after_s": round(landed, 1),
        "last_update": status["last"],
    }
    print(json.dumps(figures, indent=1, default=str))
    verdict = "within" if first <= a.interval else "OVER"
    print(
        f"one pass over 3 tiers while `pulumi up` takes {a.up_delay:.0f} s: {first * 1000:.0f} ms, "
        f"{verdict} one interval ({a.interval:.0f} s; {first / a.interval:.4f} of it); "
        f"{len(later)} more passes ran meanwhile (max {figures['pass_while_updating_max_s']} s); "
        f"the update ({', '.join(f'{t} {c}->{d}' for t, (c, d) in asked.items())}) "
        f"landed after {landed:.0f} s"
    )
    return 0 if first <= a.interval and status["last"] and status["last"]["result"] == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
