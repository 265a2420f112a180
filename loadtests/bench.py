"""`make bench-drill`: the surge400 drill with and without the autoscaler, each `swell drill` in a
process of its own, and the figures side by side (printed, and as JSON in --out). The machine is
shared: CPU figures say how busy it was, and the drill's own share."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def run(out: Path, extra: list[str]) -> tuple[int, dict[str, Any], float]:
    swell = str(Path(sys.executable).with_name("swell"))
    started = time.monotonic()
    done = subprocess.run(
        [swell, "drill", "--profile", "surge400", "--out", str(out), "--json", *extra],
        stdout=subprocess.PIPE,
        text=True,
        timeout=900,
    )
    return done.returncode, json.loads(done.stdout), time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, default=Path("build/drill-bench"))
    a = p.parse_args(argv)
    rows = {}
    for name, extra in (("autoscaler", []), ("no-autoscale", ["--no-autoscale"])):
        code, report, wall = run(a.out / name, extra)
        web = report["tiers"]["web"]
        rows[name] = {
            "exit_code": code,
            "wall_s": round(wall, 1),
            "duration_s": report["duration_s"],
            "web_start": web["start_instances"],
            "web_peak": web["peak_instances"],
            "web_ratio": round(web["peak_instances"] / web["start_instances"], 2),
            "p95_ms": report["slo"]["p95_ms"],
            "error_rate": report["slo"]["error_rate"],
            "slo_held": report["slo"]["held"],
            "cpu_machine_mean_pct": report["cpu"]["busy_mean_pct"],
            "cpu_drill_pct": report["cpu"]["drill_busy_pct"],
        }
    table = Table(title="surge400 drill: with and without the autoscaler")
    table.add_column("figure")
    for name in rows:
        table.add_column(name, justify="right")
    for key in rows["autoscaler"]:
        table.add_row(key, *(str(r[key]) for r in rows.values()))
    Console().print(table)
    (a.out / "bench.json").write_text(json.dumps(rows, indent=1))
    print(f"figures: {a.out / 'bench.json'}; timelines: {a.out}/*/timeline.png")
    ok = rows["autoscaler"]["slo_held"] and not rows["no-autoscale"]["slo_held"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
