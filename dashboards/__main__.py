"""Write (or, with --check, verify) the generated rule file and Grafana dashboard.

python -m dashboards          # regenerate dashboards/rules/swell.rules.yml and the dashboard JSON
python -m dashboards --check  # exit 1 if the committed files differ from what mixin.py generates
"""

from __future__ import annotations

import sys
from pathlib import Path

from dashboards.mixin import render_dashboard, render_rules

HERE = Path(__file__).resolve().parent
OUTPUTS = {
    HERE / "rules" / "swell.rules.yml": render_rules,
    HERE / "grafana" / "swell-capacity.json": render_dashboard,
}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for path, render in OUTPUTS.items():
        text = render()
        if check:
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
