"""Write (or, with --check, verify) the generated rule file, Grafana dashboard and Prometheus configuration.

python -m dashboards                         # regenerate them from mixin.py and prometheus.py
python -m dashboards --check                 # exit 1 if a committed file differs from what they generate
python -m dashboards --runbook-base-url URL  # alerts link to URL#<alert> (also: SWELL_RUNBOOK_BASE_URL)

The committed files use the default runbook URL (`mixin.DEFAULT_RUNBOOK_BASE_URL`); a deployment that
serves the runbooks elsewhere generates its own copy with --runbook-base-url.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from dashboards.mixin import DEFAULT_RUNBOOK_BASE_URL, MixinConfig, render_dashboard, render_rules
from dashboards.prometheus import PRODUCTION, render_production

HERE = Path(__file__).resolve().parent
RUNBOOK_ENV = "SWELL_RUNBOOK_BASE_URL"


def outputs(cfg: MixinConfig | None = None) -> dict[Path, Callable[[], str]]:
    """Each generated file and how to render it (with `cfg`, or the defaults)."""
    return {
        HERE / "rules" / "swell.rules.yml": lambda: render_rules(cfg),
        HERE / "grafana" / "swell-capacity.json": lambda: render_dashboard(cfg),
        PRODUCTION: render_production,
    }


# The committed files: what the suite compares against.
OUTPUTS = outputs()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify instead of writing")
    parser.add_argument(
        "--runbook-base-url",
        default=os.environ.get(RUNBOOK_ENV, DEFAULT_RUNBOOK_BASE_URL),
        help=f"absolute URL of docs/runbooks.md (default: ${RUNBOOK_ENV} or {DEFAULT_RUNBOOK_BASE_URL})",
    )
    args = parser.parse_args(argv)
    try:
        cfg = MixinConfig(runbook_base_url=args.runbook_base_url)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    stale = []
    for path, render in outputs(cfg).items():
        text = render()
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(HERE.parent)}")
    for path in stale:
        print(f"{path.relative_to(HERE.parent)} is out of date: run `python -m dashboards`", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
