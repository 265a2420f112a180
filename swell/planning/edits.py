"""What the plan changes: `swell:tiers.<tier>.count` and `.max` in `Pulumi.<stack>.yaml`, and
`tiers.<tier>.capacity_per_instance` and `.max` in the autoscaler's configuration, shown as a diff
and written with `--write`.

The files are edited with ruamel.yaml's round trip, so their comments, order and quoting stay (both
shipped stack files and autoscaler.example.yaml come back byte for byte when nothing changes:
tested). Before anything is written, the new stack file is validated by `stacks.config.parse` and
the new autoscaler file by `autoscaler.config.parse_config`, the loaders the stack program and the
service use: a plan that would not load is refused, not written.
"""

from __future__ import annotations

import difflib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML

from autoscaler.config import ConfigError as AutoscalerConfigError
from autoscaler.config import parse_config
from stacks import config as stack_config

# A syntactically valid Key Manager reference standing in for a certificate whose key is encrypted:
# the plan never deploys, and capacity does not depend on the certificate.
_PLACEHOLDER_TLS_REF = "https://key-manager.invalid/v1/containers/00000000-0000-4000-8000-000000000000"


def _encrypted(value: Any) -> bool:
    if isinstance(value, dict):
        return set(value) == {"secure"} or any(_encrypted(v) for v in value.values())
    return False


def readable(values: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The stack values the plan can read offline: encrypted values (`secure:`) only the Pulumi CLI
    can decrypt; the keys holding them (service secrets, a stored certificate's key) say nothing about
    capacity, so they are left out (secrets) or stood in for (the certificate), and the notes say so."""
    out, notes = dict(values), []
    prefix = stack_config.PROJECT
    for key in list(out):
        if not _encrypted(out[key]):
            continue
        if key == f"{prefix}:tls" and isinstance(out[key], dict):
            out[key] = {"containerRef": _PLACEHOLDER_TLS_REF, "hosts": out[key].get("hosts")}
        else:
            del out[key]
        notes.append(f"{key} holds encrypted values: not read (capacity does not depend on it)")
    return out, notes


class EditError(ValueError):
    """The edited file would not load; the message says why. Nothing was written."""


def _yaml() -> YAML:
    y = YAML()
    y.preserve_quotes = True
    y.width = 4096  # never re-wrap a long line
    # The repository's style: mappings by 2, sequences' dashes indented 2 under their key.
    y.indent(mapping=2, sequence=4, offset=2)
    return y


@dataclass
class FileEdit:
    path: Path
    before: str
    after: str
    changes: list[dict[str, Any]] = field(default_factory=list)  # {key, old, new}

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def diff(self) -> str:
        try:
            name = str(self.path.resolve().relative_to(Path.cwd()))
        except ValueError:  # outside the working directory: the path without its leading slash
            name = str(self.path).lstrip("/")
        return "".join(
            difflib.unified_diff(
                self.before.splitlines(keepends=True),
                self.after.splitlines(keepends=True),
                fromfile=f"a/{name}",
                tofile=f"b/{name}",
            )
        )

    def write(self) -> None:
        tmp = self.path.with_name(self.path.name + ".swell-plan.tmp")
        tmp.write_text(self.after)
        tmp.replace(self.path)  # a reader never sees half a file


def _edit(path: Path, updates: dict[tuple[str, ...], Any]) -> FileEdit:
    y = _yaml()
    before = path.read_text()
    doc = y.load(before)
    changes = []
    for keys, value in updates.items():
        node = doc
        for key in keys[:-1]:
            node = node[key]
        old = node.get(keys[-1])
        if old != value:
            node[keys[-1]] = value
            changes.append({"key": ".".join(keys), "old": old, "new": value})
    out = io.StringIO()
    y.dump(doc, out)
    return FileEdit(path, before, out.getvalue() if changes else before, changes)


def stack_edit(path: Path, stack: str, tiers: dict[str, dict[str, int]]) -> FileEdit:
    """`tiers`: {tier: {"count": n, "max": m}}, written under `config: swell:tiers`."""
    updates: dict[tuple[str, ...], Any] = {
        ("config", f"{stack_config.PROJECT}:tiers", tier, key): int(value)
        for tier, values in tiers.items()
        for key, value in values.items()
    }
    edit = _edit(path, updates)
    values, _ = readable(dict((yaml.safe_load(edit.after) or {}).get("config") or {}))
    try:
        stack_config.parse(values, stack)
    except stack_config.ConfigError as exc:
        raise EditError(f"{path.name} after the plan would not load:\n{exc}") from None
    return edit


def autoscaler_edit(path: Path, tiers: dict[str, dict[str, float | int]]) -> FileEdit:
    """`tiers`: {tier: {"capacity_per_instance": x, "max": m}} for the tiers the file has."""
    updates: dict[tuple[str, ...], Any] = {}
    for tier, values in tiers.items():
        for key, value in values.items():
            number = float(value)
            updates[("tiers", tier, key)] = int(number) if number.is_integer() else round(number, 3)
    edit = _edit(path, updates)
    try:
        parse_config(yaml.safe_load(edit.after), str(path))
    except AutoscalerConfigError as exc:
        raise EditError(f"{path} after the plan would not load:\n{exc}") from None
    return edit
