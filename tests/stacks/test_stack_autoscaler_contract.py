"""The autoscaler's Pulumi actuator and the stack program agree: after the actuator writes
`swell:tiers.<tier>.count` (through the Automation API, against the stand-in `pulumi` executable of
tests/autoscaler/pulumi_standin.py, since the real CLI cannot be installed here), the stack program,
run under Pulumi's mocks on the very file the actuator wrote, declares exactly that many instances
and leaves the existing ones as they were; a layout with retiring instances becomes members at
weight 0, and removing them after the drain deletes exactly those."""

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
    actuator = PulumiActuator(PulumiSettings(work_dir=project, stack="dev"))
    actuator.scale(tier, count)
    assert actuator.wait_idle(60) and actuator.failures(tier) == []
    written = yaml.safe_load((project / "Pulumi.dev.yaml").read_text())["config"]
    after = engine.run(written, "dev")

    assert written["swell:tiers"][tier]["count"] == count
    instances = {n: r for n, r in after.named(engine.INSTANCE).items() if n.startswith(f"{tier}-")}
    assert sorted(instances) == [f"{tier}-{i}" for i in range(count)]
    assert len(after.outputs["tiers"][tier]["instances"]) == count
    for name, old in before.named(engine.INSTANCE).items():
        if name in instances:
            assert instances[name].inputs == old.inputs, f"{name} would be replaced"


def test_a_drain_the_actuator_writes_is_what_the_program_declares(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "Pulumi.yaml", project)
    values = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    values["config"]["swell:tiers"]["web"].update(count=3, max=3)
    (project / "Pulumi.dev.yaml").write_text(yaml.safe_dump(values))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "pulumi").write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STANDIN}" "$@"\n')
    (bin_dir / "pulumi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "pulumi-home"))
    actuator = PulumiActuator(PulumiSettings(work_dir=project, stack="dev"))

    def declared() -> tuple[set[int], dict[int, int]]:
        rec = engine.run(yaml.safe_load((project / "Pulumi.dev.yaml").read_text())["config"], "dev")
        instances = {int(n.rsplit("-", 1)[1]) for n in rec.named(engine.INSTANCE) if n.startswith("web-")}
        weights = {
            int(n.rsplit("-", 1)[1]): m.inputs["weight"]
            for n, m in rec.named(engine.MEMBER).items()
            if n.startswith("web-lb-member-")
        }
        return instances, weights

    actuator.apply("web", [0, 2], [1])  # phase 1: the middle one drains
    assert actuator.wait_idle(60) and actuator.failures("web") == []
    assert declared() == ({0, 1, 2}, {0: 1, 1: 0, 2: 1})
    actuator.apply("web", [0, 2], [])  # phase 2: drained, removed
    assert actuator.wait_idle(60) and actuator.failures("web") == []
    assert declared() == ({0, 2}, {0: 1, 2: 1})


def test_a_warm_pool_the_actuator_writes_is_what_the_program_declares(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refill (filling: running, no member), shelve (warm: shelved_offloaded, no member), then
    activation with a refill in the same update: each step written by the actuator, declared by the
    program; the activated instance only changes its power state and gains its member."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "Pulumi.yaml", project)
    values = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    values["config"]["swell:tiers"]["web"].update(count=1, max=4)
    (project / "Pulumi.dev.yaml").write_text(yaml.safe_dump(values))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "pulumi").write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STANDIN}" "$@"\n')
    (bin_dir / "pulumi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "pulumi-home"))
    # A cold lead time of 0: a filling instance counts as configured as soon as it is deployed.
    actuator = PulumiActuator(PulumiSettings(work_dir=project, stack="dev", cold_lead_s=0))

    def declared() -> tuple[engine.Recording, dict[int, str], dict[int, int]]:
        rec = engine.run(yaml.safe_load((project / "Pulumi.dev.yaml").read_text())["config"], "dev")
        states = {
            int(n.rsplit("-", 1)[1]): r.inputs["powerState"]
            for n, r in rec.named(engine.INSTANCE).items()
            if n.startswith("web-")
        }
        weights = {
            int(n.rsplit("-", 1)[1]): m.inputs["weight"]
            for n, m in rec.named(engine.MEMBER).items()
            if n.startswith("web-lb-member-")
        }
        return rec, states, weights

    actuator.apply("web", [0], [], filling=[1, 2])
    assert actuator.wait_idle(60) and actuator.failures("web") == []
    assert declared()[1:] == ({0: "active", 1: "active", 2: "active"}, {0: 1})
    actuator.apply("web", [0], [], warm=[1, 2])
    assert actuator.wait_idle(60) and actuator.failures("web") == []
    shelved, states, weights = declared()
    assert (states, weights) == ({0: "active", 1: "shelved_offloaded", 2: "shelved_offloaded"}, {0: 1})
    actuator.apply("web", [0, 1], [], warm=[2], filling=[3])
    assert actuator.wait_idle(60) and actuator.failures("web") == []
    active, states, weights = declared()
    assert states == {0: "active", 1: "active", 2: "shelved_offloaded", 3: "active"}
    assert weights == {0: 1, 1: 1}
    before, after = shelved.named(engine.INSTANCE)["web-1"], active.named(engine.INSTANCE)["web-1"]
    assert {k for k in after.inputs if after.inputs[k] != before.inputs.get(k)} == {"powerState"}
