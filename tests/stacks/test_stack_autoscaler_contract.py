"""The autoscaler's Pulumi actuator and the stack program agree: after the actuator writes
`swell:tiers.<tier>.count` (through the Automation API, against the stand-in `pulumi` executable of
tests/autoscaler/pulumi_standin.py, since the real CLI cannot be installed here), the stack program,
run under Pulumi's mocks on the very file the actuator wrote, declares exactly that many instances
and leaves the existing ones as they were."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import yaml

from autoscaler.adapters.pulumi import PulumiActuator, PulumiSettings
from stacks import engine
from tests.stacks.stack_fixtures import ROOT

STANDIN = ROOT / "tests" / "autoscaler" / "pulumi_standin.py"


@pytest.mark.parametrize(
    ("tier", "count"), [("web", 3), ("video", 2), ("web", 1)], ids=["web-x3", "video-x2", "web-same"]
)
def test_the_program_declares_the_count_the_actuator_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tier: str, count: int
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "Pulumi.yaml", project)
    shutil.copy(ROOT / "Pulumi.dev.yaml", project)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "pulumi").write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STANDIN}" "$@"\n')
    (bin_dir / "pulumi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "pulumi-home"))

    before = engine.run(yaml.safe_load((project / "Pulumi.dev.yaml").read_text())["config"], "dev")
    PulumiActuator(PulumiSettings(work_dir=project, stack="dev")).scale(tier, count)
    written = yaml.safe_load((project / "Pulumi.dev.yaml").read_text())["config"]
    after = engine.run(written, "dev")

    assert written["swell:tiers"][tier]["count"] == count
    instances = {n: r for n, r in after.named(engine.INSTANCE).items() if n.startswith(f"{tier}-")}
    assert sorted(instances) == [f"{tier}-{i}" for i in range(count)]
    assert len(after.outputs["tiers"][tier]["instances"]) == count
    for name, old in before.named(engine.INSTANCE).items():
        if name in instances:
            assert instances[name].inputs == old.inputs, f"{name} would be replaced"
