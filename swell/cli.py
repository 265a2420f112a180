"""The `swell` command line: the one place that wires each area's commands together.

Each command imports its implementation lazily, so that `swell --help` stays fast and a
command never drags in another area's heavy dependencies (Pulumi, Locust, Ansible).
"""

from __future__ import annotations

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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
