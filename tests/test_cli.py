"""The `swell` entry point: it starts, names itself, lists its commands, and each command's help
carries examples that use its real options."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from swell import __version__
from swell.cli import app

runner = CliRunner()


def test_version_flag_prints_the_package_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"swell {__version__}"


def test_no_arguments_shows_help_instead_of_doing_something() -> None:
    result = runner.invoke(app, [])
    assert "Usage" in result.output


def _commands() -> dict[str, Any]:
    """Every leaf command, by its full name ('trace generate'). (Typer ships its own click: groups are
    told by their `commands`.)"""
    root: Any = typer.main.get_command(app)
    found: dict[str, Any] = {}
    for name, command in root.commands.items():
        if hasattr(command, "commands"):
            found |= {f"{name} {sub}": c for sub, c in command.commands.items()}
        else:
            found[name] = command
    return found


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_command_shows_examples_that_use_its_real_options(name: str) -> None:
    """The examples in `--help` are command lines a user can paste: each names this command's real
    options (an option renamed without its example fails here)."""
    result = runner.invoke(app, [*name.split(), "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "Examples:" in result.output
    command = _commands()[name]
    known = {opt for p in command.params for opt in p.opts}
    lines = [line.strip() for line in result.output.split("Examples:")[1].splitlines()]
    ours = [line for line in lines if line.startswith(f"swell {name} ") or line.startswith("SWELL_CONFIG=")]
    assert ours, f"no example runs `swell {name}`"
    for line in ours:
        for word in shlex.split(line.split("#")[0]):
            if word.startswith("--"):
                assert word.split("=")[0] in known, f"{line!r}: {word} is not an option of swell {name}"


def test_help_shows_brackets_as_typed() -> None:
    # Help is rendered as rich markup, which once swallowed the default's "[median / 10]".
    result = runner.invoke(app, ["simulate", "--help"], env={"COLUMNS": "250"})
    assert "median demand / 10" in result.output


@pytest.mark.parametrize("command", [["status", "--json"], ["surge", "--list", "--json"]])
def test_the_config_comes_from_swell_config_when_not_given(tmp_path: Path, command: list[str]) -> None:
    config = tmp_path / "autoscaler.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "prometheus": {"url": "http://127.0.0.1:9"},
                "state": {"kind": "sqlite", "path": str(tmp_path / "state.db")},
                "tiers": {
                    "web": {
                        "capacity_per_instance": 50,
                        "min": 1,
                        "max": 4,
                        "actuator": {"kind": "kubernetes", "namespace": "web", "deployment": "web"},
                    }
                },
            }
        )
    )
    result = runner.invoke(app, command, env={"SWELL_CONFIG": str(config)})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) is not None
    missing = runner.invoke(app, command, env={"SWELL_CONFIG": ""})
    assert missing.exit_code == 2 and "--config" in missing.output


def test_shell_completion_is_offered() -> None:
    result = runner.invoke(app, ["--show-completion", "bash"])
    assert result.exit_code == 0 and "_swell_completion" in result.output
