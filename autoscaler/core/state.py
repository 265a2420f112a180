"""Policy state as plain data: JSON both ways, so the service can persist it between calls.

States are `NamedTuple`s of numbers, strings and (nested) tuples; JSON turns tuples into lists,
so `from_dict` turns lists back into tuples and refuses unknown or missing keys by name. JSON has
no infinity either: an infinite float is written as null, and null read back as the field's
default when that default is infinite ("never", as target-tracking's last scaling times).
The registry (`PolicySpec.state_to_dict` / `state_from_dict`) is the only caller: no policy
writes its own.
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

T = TypeVar("T")


def _tuplify(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuplify(v) for v in value)
    return value


def _listify(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_listify(v) for v in value]
    if isinstance(value, float) and math.isinf(value):
        return None
    return value


def state_to_dict(state: Any) -> dict[str, Any]:
    return {k: _listify(v) for k, v in state._asdict().items()}


def state_from_dict(cls: type[T], data: dict[str, Any]) -> T:
    fields: tuple[str, ...] = cls._fields  # type: ignore[attr-defined]
    defaults: dict[str, Any] = cls._field_defaults  # type: ignore[attr-defined]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown keys {unknown}; expected {list(fields)}")
    missing = [f for f in fields if f not in data and f not in defaults]
    if missing:
        raise ValueError(f"{cls.__name__}: missing keys {missing}")
    infinite = {k for k, v in defaults.items() if isinstance(v, float) and math.isinf(v)}
    return cls(**{k: defaults[k] if v is None and k in infinite else _tuplify(v) for k, v in data.items()})
