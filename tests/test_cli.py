"""The `swell` entry point: it starts, names itself, and lists its commands."""

from __future__ import annotations

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
