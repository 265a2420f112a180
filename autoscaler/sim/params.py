"""Policy parameters from the command line: `--param POLICY.FIELD=VALUE` (`swell simulate`).

Every field of a policy's parameter dataclass can be set by name, except those the simulator sets
itself (capacity per instance, lead time, the chain's guards) and those that are not plain numbers
or booleans. A value is parsed by the field's type and checked: numbers finite, durations (`*_s`)
and counts not negative, utilization targets in (0, 1], then the dataclass's own checks. Every
error names the parameter and what was expected, for exit code 2.
"""

from __future__ import annotations

import math
import typing
from dataclasses import fields, is_dataclass
from typing import Any

from autoscaler.core.registry import POLICIES, build_params
from autoscaler.core.types import Limits

# Set by the simulator from its own options, not per policy.
SIMULATOR_FIELDS = frozenset({"capacity_per_instance", "lead_time_s", "guards"})


class ParamError(ValueError):
    """A `--param` that cannot be applied; the message names it and what is expected."""


def settable_fields(policy: str) -> dict[str, type]:
    """The fields of `policy`'s parameters that `--param` can set, with their types."""
    params = build_params(policy, capacity_per_instance=1.0, lead_time_s=0.0, limits=Limits())
    assert is_dataclass(params)
    hints = typing.get_type_hints(type(params))
    return {
        f.name: hints[f.name]
        for f in fields(params)
        if f.name not in SIMULATOR_FIELDS and hints[f.name] in (float, int, bool)
    }


def _value(text: str, kind: type, name: str) -> Any:
    raw = text.strip()
    if kind is bool:
        if raw.lower() in ("true", "1", "yes", "on"):
            return True
        if raw.lower() in ("false", "0", "no", "off"):
            return False
        raise ParamError(f"--param {name}={text}: expected true or false")
    try:
        value = int(raw) if kind is int else float(raw)
    except ValueError:
        raise ParamError(
            f"--param {name}={text}: expected {'an integer' if kind is int else 'a number'}"
        ) from None
    if not math.isfinite(value):
        raise ParamError(f"--param {name}={text}: expected a finite number")
    field = name.split(".", 1)[1]
    if value < 0 and (field.endswith("_s") or kind is int or field.endswith("_sigmas")):
        raise ParamError(f"--param {name}={text}: expected a value >= 0")
    if "utilization" in field and not 0 < value <= 1:
        raise ParamError(f"--param {name}={text}: expected a utilization in (0, 1]")
    return value


def parse_params(items: list[str]) -> dict[str, dict[str, Any]]:
    """`["keda.target_utilization=0.6", ...]` -> {"keda": {"target_utilization": 0.6}}, validated."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        policy, dot, field = key.strip().partition(".")
        if not sep or not dot or not field:
            raise ParamError(
                f"--param {item!r}: expected POLICY.FIELD=VALUE, e.g. keda.target_utilization=0.6"
            )
        if policy not in POLICIES:
            raise ParamError(
                f"--param {item!r}: unknown policy {policy!r}; expected one of {', '.join(POLICIES)}"
            )
        allowed = settable_fields(policy)
        if field not in allowed:
            expected = ", ".join(allowed)
            raise ParamError(
                f"--param {item!r}: {policy} has no settable field {field!r}; expected one of {expected}"
            )
        out.setdefault(policy, {})[field] = _value(text, allowed[field], f"{policy}.{field}")
    for policy, overrides in out.items():
        try:
            build_params(
                policy, capacity_per_instance=1.0, lead_time_s=0.0, limits=Limits(), overrides=overrides
            )
        except (TypeError, ValueError) as exc:
            shown = ", ".join(f"{policy}.{k}={v}" for k, v in overrides.items())
            raise ParamError(f"--param {shown}: {exc}") from None
    return out
