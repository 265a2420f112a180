"""`swell configure`: build the inventory from the stack outputs and converge the hosts.

Wires the parts together: outputs -> inventory -> runner (an adapter, injectable) -> tally ->
a live table while it runs and a per-host summary at the end. The exit code says how it went:
0 converged, 1 a task failed or a host was unreachable (each named with its task), 2 the
inputs were wrong (named before Ansible starts).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from swell import tiers as tier_catalog
from swell.configure.inventory import AddressChoice, InventorySettings, build_inventory
from swell.configure.outputs import StackOutputsError, load_stack_outputs
from swell.configure.progress import RunTally
from swell.configure.runner import SITE_PLAYBOOK, AnsibleRunner, PlaybookRun, PlaybookRunner

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


@dataclass(frozen=True)
class ConfigureOptions:
    """Everything `swell configure` was asked to do."""

    stack_outputs: Path
    limit: str | None = None
    check: bool = False
    diff: bool = False
    admin_cidrs: tuple[str, ...] = ()
    ssh_user: str = "debian"
    address: AddressChoice = "private"
    ssh_jump: str | None = None
    extra_vars: tuple[str, ...] = ()
    playbook: Path = SITE_PLAYBOOK
    timeout_s: int = 3600
    forks: int = 25
    host_vars: dict[str, Any] = field(default_factory=dict)


def parse_extra_vars(items: tuple[str, ...]) -> dict[str, Any]:
    """`KEY=VALUE` (VALUE read as YAML, so lists and numbers work) or `@FILE` (YAML or JSON)."""
    result: dict[str, Any] = {}
    for item in items:
        if item.startswith("@"):
            path = Path(item[1:])
            try:
                loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (OSError, yaml.YAMLError) as exc:
                raise StackOutputsError(f"--extra-vars {item}: cannot read it: {exc}") from exc
            if not isinstance(loaded, dict):
                raise StackOutputsError(f"--extra-vars {item}: expected a mapping of variables")
            result.update(loaded)
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise StackOutputsError(f"--extra-vars {item!r}: expected KEY=VALUE or @FILE")
        try:
            result[key.strip()] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError as exc:
            raise StackOutputsError(f"--extra-vars {item!r}: the value is not valid YAML: {exc}") from exc
    return result


def _live_table(tally: RunTally, tiers: dict[str, str]) -> Table:
    table = Table(title=f"play: {tally.play}" if tally.play else None, expand=False)
    for column in ("host", "tier", "ok", "changed", "skipped", "failed", "now"):
        table.add_column(
            column, justify="right" if column in ("ok", "changed", "skipped", "failed") else "left"
        )
    for name in tiers:
        p = tally.hosts.get(name)
        if p is None:
            table.add_row(name, tiers[name], "-", "-", "-", "-", "waiting")
            continue
        failed = p.failed + p.unreachable
        table.add_row(
            name,
            tiers[name],
            str(p.ok),
            Text(str(p.changed), style="yellow" if p.changed else ""),
            str(p.skipped),
            Text(str(failed), style="bold red" if failed else ""),
            p.current_task[:60],
        )
    return table


def summary_table(tally: RunTally, tiers: dict[str, str]) -> Table:
    """The per-host recap printed at the end."""
    table = Table(title="swell configure: per-host summary")
    for column in ("host", "tier", "result", "ok", "changed", "skipped", "failed", "unreach."):
        # Host names and results must stay whole on a narrow terminal; counts can squeeze.
        table.add_column(column, no_wrap=column in ("host", "result"))
    styles = {"ok": "green", "changed": "yellow", "failed": "bold red", "unreachable": "bold red"}
    for name in list(tiers) + [h for h in tally.hosts if h not in tiers]:
        p = tally.hosts.get(name)
        if p is None:
            table.add_row(name, tiers.get(name, "?"), Text("not run", style="dim"), "", "", "", "", "")
            continue
        table.add_row(
            name,
            tiers.get(name, "?"),
            Text(p.status, style=styles[p.status]),
            str(p.ok),
            str(p.changed),
            str(p.skipped),
            str(p.failed),
            str(p.unreachable),
        )
    return table


def configure(
    options: ConfigureOptions,
    console: Console | None = None,
    err: Console | None = None,
    runner: PlaybookRunner | None = None,
) -> int:
    """Run `swell configure`; returns the exit code (see the module docstring)."""
    console = console or Console()
    err = err or Console(stderr=True)
    try:
        outputs = load_stack_outputs(options.stack_outputs)
        known = tier_catalog.names()
        if options.limit is not None and options.limit not in known:
            raise StackOutputsError(f"--limit {options.limit!r}: expected one of {', '.join(known)}")
        settings = InventorySettings(
            ssh_user=options.ssh_user,
            address=options.address,
            ssh_jump=options.ssh_jump,
            admin_cidrs=options.admin_cidrs,
            tiers=(options.limit,) if options.limit else None,
            extra_host_vars=options.host_vars,
        )
        inventory = build_inventory(outputs, settings)
        extravars = parse_extra_vars(options.extra_vars)
    except StackOutputsError as exc:
        err.print(f"[bold red]swell configure:[/] {exc}", highlight=False)
        return EXIT_BAD_INPUT

    tiers = {host: tier for tier, group in inventory["all"]["children"].items() for host in group["hosts"]}
    mode = " (check mode: nothing changes)" if options.check else ""
    console.print(
        f"swell configure: stack [bold]{outputs.stack}[/] ({outputs.region}), "
        f"{len(tiers)} host(s), playbook {options.playbook.name}{mode}",
        highlight=False,
    )
    tally = RunTally()
    lock = threading.Lock()
    request = PlaybookRun(
        inventory=inventory,
        playbook=options.playbook,
        limit=options.limit,
        check=options.check,
        diff=options.diff,
        extravars=extravars,
        forks=options.forks,
        timeout_s=options.timeout_s,
    )
    with Live(_live_table(tally, tiers), console=console, refresh_per_second=4, transient=True) as live:

        def on_event(event: dict[str, Any]) -> None:
            with lock:
                tally.apply(event)
                live.update(_live_table(tally, tiers))

        try:
            outcome = (runner or AnsibleRunner()).run(request, on_event)
        except FileNotFoundError as exc:
            err.print(f"[bold red]swell configure:[/] {exc}", highlight=False)
            return EXIT_BAD_INPUT

    console.print(summary_table(tally, tiers))
    for failure in tally.failures:
        console.print(Text("FAILED ", style="bold red") + Text(failure.describe()))
    rc = outcome.rc
    if rc == 124:
        console.print(f"[bold red]timed out[/] after {options.timeout_s} s", highlight=False)
    if rc != 0 or not tally.succeeded:
        if not tally.failures:
            console.print(f"[bold red]ansible-playbook exited with {rc}[/] before any task failed:")
            console.print(Text(outcome.output_tail or "(no output)"))
        return EXIT_FAILED
    console.print(
        Group(
            Text(f"converged: {len(tally.hosts)} host(s), {tally.changed_total()} change(s)", style="green")
        )
    )
    return EXIT_OK
