"""The `swell` command line: the one place that wires each area's commands together.

Each command imports its implementation lazily, so that `swell --help` stays fast and a
command never drags in another area's heavy dependencies (Pulumi, Locust, Ansible).
"""

from __future__ import annotations

from typing import Annotated

import typer

from swell import __version__

app = typer.Typer(
    name="swell",
    help="Capacity as code for the web, chat and video tiers on OVHcloud.",
    no_args_is_help=True,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"swell {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Capacity as code for the web, chat and video tiers on OVHcloud."""


@app.command()
def preview(
    stack: str = typer.Option("dev", "--stack", help="Stack name: reads Pulumi.<stack>.yaml."),
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override a config value, e.g. tiers.web.count=8 (repeatable; `swell:` implied)."
        ),
    ] = None,
    as_json: bool = typer.Option(False, "--json", help="Print the summary and the stack outputs as JSON."),
) -> None:
    """Offline preview of a stack: resources per tier, vCPU/RAM against quota, monthly cost. No cloud call."""
    from stacks.preview import main as preview_main

    raise typer.Exit(preview_main(stack, sets or [], as_json))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
