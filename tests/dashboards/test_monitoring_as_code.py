"""Monitoring as code: the committed rules, dashboard and Prometheus configuration are what
dashboards/ generates, Prometheus's own promtool accepts them and the rules' unit tests pass, every
alert links to its runbook by an absolute URL, and every dashboard query is valid PromQL."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from dashboards.__main__ import OUTPUTS
from dashboards.__main__ import main as dashboards_main
from dashboards.mixin import MixinConfig, dashboard_document, rules_document

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "dashboards" / "rules" / "swell.rules.yml"
RULE_TESTS = ROOT / "dashboards" / "tests" / "swell_rules_test.yml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
PROMTOOL = shutil.which("promtool")

needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package prometheus) missing")


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("path", list(OUTPUTS), ids=lambda p: p.name)
def test_committed_file_is_what_the_mixin_generates(path: Path) -> None:
    assert path.read_text() == OUTPUTS[path](), f"{path.name} is stale: run `python -m dashboards`"


@needs_promtool
def test_promtool_accepts_the_rule_file() -> None:
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_rule_unit_tests_pass() -> None:
    result = _promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def _alerts() -> list[dict]:
    return [r for g in rules_document()["groups"] for r in g["rules"] if "alert" in r]


def _runbook_anchors() -> set[str]:
    headings = re.findall(r"^#+\s+(.+)$", RUNBOOKS.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("alert", _alerts(), ids=lambda a: a["alert"])
def test_every_alert_links_to_an_existing_runbook_section_by_an_absolute_url(alert: dict) -> None:
    url = urlsplit(alert["annotations"]["runbook_url"])
    # Absolute: Alertmanager and Grafana show the link far from this repository.
    assert (url.scheme, url.netloc) == ("https", "git.example.org")
    assert url.path.endswith("/docs/runbooks.md")
    assert url.fragment in _runbook_anchors()
    assert alert["labels"]["severity"] in {"warning", "critical"}


def test_the_runbook_base_url_is_configurable_when_generating(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SWELL_RUNBOOK_BASE_URL", raising=False)
    base = "https://wiki.example.net/ops/swell-runbooks"
    rules = rules_document(MixinConfig(runbook_base_url=base))
    urls = [r["annotations"]["runbook_url"] for g in rules["groups"] for r in g["rules"] if "alert" in r]
    assert urls == [f"{base}#{a['alert'].lower()}" for a in _alerts()]
    # The committed files keep the default: --check against another base reports them stale.
    assert dashboards_main(["--check", "--runbook-base-url", base]) == 1
    assert dashboards_main(["--check"]) == 0
    monkeypatch.setenv("SWELL_RUNBOOK_BASE_URL", base)  # the same, from the environment
    assert dashboards_main(["--check"]) == 1


@pytest.mark.parametrize(
    "base",
    [
        "docs/runbooks.md",
        "git.example.org/swell/runbooks.md",
        "https://git.example.org/runbooks.md#top",
        "ftp://x/y",
    ],
    ids=["relative-path", "no-scheme", "with-anchor", "not-http"],
)
def test_a_runbook_base_url_that_is_not_absolute_is_refused(
    base: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValueError, match="absolute http"):
        MixinConfig(runbook_base_url=base)
    assert dashboards_main(["--check", "--runbook-base-url", base]) == 2
    assert "expected an absolute http(s) URL" in capsys.readouterr().err


@pytest.mark.parametrize("alert", _alerts(), ids=lambda a: a["alert"])
def test_every_alert_has_a_unit_test_that_sees_it_fire(alert: dict) -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = [
        case
        for t in tests
        for case in t.get("alert_rule_test", [])
        if case["alertname"] == alert["alert"] and case["exp_alerts"]
    ]
    not_yet = [
        case
        for t in tests
        for case in t.get("alert_rule_test", [])
        if case["alertname"] == alert["alert"] and not case["exp_alerts"]
    ]
    assert fired and not_yet, "each alert needs a firing case and a not-yet-firing case"


@needs_promtool
def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool has no "check expression": wrap each panel query in a recording rule and check that.
    exprs = [
        target["expr"].replace("$tier", ".*")
        for panel in dashboard_document()["panels"]
        for target in panel["targets"]
    ]
    rules = {
        "groups": [
            {"name": "panels", "rules": [{"record": f"panel:q{i}", "expr": e} for i, e in enumerate(exprs)]}
        ]
    }
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump(rules))
    result = _promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(exprs) >= 6


def test_dashboard_panels_do_not_overlap_and_have_unique_ids() -> None:
    panels = json.loads(OUTPUTS[ROOT / "dashboards" / "grafana" / "swell-capacity.json"]())["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells = set()
    for p in panels:
        g = p["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"panel {p['title']!r} overlaps another"
                cells.add((x, y))
