"""The `swell` command line: the one place that wires each area's commands together.

Each command imports its implementation lazily, so that `swell --help` stays fast and a
command never drags in another area's heavy dependencies (Pulumi, Locust, Ansible).
"""

from __future__ import annotations

from pathlib import Path
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


@app.command("configure")
def configure_command(
    stack_outputs: Annotated[
        Path,
        typer.Option(
            "--stack-outputs", help="JSON from `pulumi stack output --json` (ARCHITECTURE.md contract)."
        ),
    ],
    limit: Annotated[str | None, typer.Option("--limit", help="Only this tier: web, chat or video.")] = None,
    check: Annotated[bool, typer.Option("--check", help="Report what would change; change nothing.")] = False,
    diff: Annotated[bool, typer.Option("--diff", help="Show the changes made to files.")] = False,
    admin_cidr: Annotated[
        list[str] | None,
        typer.Option(
            "--admin-cidr", help="Network allowed to SSH (repeatable); adds to the outputs' admin_cidrs."
        ),
    ] = None,
    ssh_user: Annotated[str, typer.Option("--ssh-user", help="Login user on the instances.")] = "debian",
    address: Annotated[
        str, typer.Option("--address", help="Reach instances by their private or public address.")
    ] = "private",
    ssh_jump: Annotated[str | None, typer.Option("--ssh-jump", help="Bastion user@host for ssh -J.")] = None,
    extra_vars: Annotated[
        list[str] | None,
        typer.Option("--extra-vars", "-e", help="KEY=VALUE (YAML value) or @FILE, as for ansible-playbook."),
    ] = None,
    timeout: Annotated[int, typer.Option("--timeout", help="Stop the run after this many seconds.")] = 3600,
) -> None:
    """Converge the hosts of a stack: run playbooks/site.yml through ansible-runner."""
    from swell.configure.command import ConfigureOptions, configure

    if address not in ("private", "public"):
        raise typer.BadParameter("expected private or public", param_hint="--address")
    options = ConfigureOptions(
        stack_outputs=stack_outputs,
        limit=limit,
        check=check,
        diff=diff,
        admin_cidrs=tuple(admin_cidr or ()),
        ssh_user=ssh_user,
        address="public" if address == "public" else "private",
        ssh_jump=ssh_jump,
        extra_vars=tuple(extra_vars or ()),
        timeout_s=timeout,
    )
    raise typer.Exit(configure(options))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
