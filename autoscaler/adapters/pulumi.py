"""Scale a tier of VMs through its Pulumi stack, with the Automation API.

A tier's size is the stack's configuration `swell:tiers.<tier>.count`; scaling writes it
(`set_config(..., path=True)`, like `pulumi config set --path`) and runs `pulumi up`. The stack
program adds or removes only the instances above the smaller count, so an up never replaces the
instances that already serve. The Automation API drives the real Pulumi CLI, which must be on PATH
(or under `pulumi_root/bin`) with the OpenStack credentials (OS_*) in the environment.

- A stack locked by a concurrent update (someone's `pulumi up`) is retried with exponential backoff.
- Any other failed update raises `ActuationError`: the loop keeps its decision and retries next pass.
- Errors carry the last lines of the CLI's stderr, never its environment.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pulumi import automation as auto
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from autoscaler.ports import ActuationError, Capacity


@dataclass(frozen=True)
class PulumiSettings:
    work_dir: Path  # the directory holding Pulumi.yaml and Pulumi.<stack>.yaml
    stack: str
    config_key: str = "swell:tiers.{tier}.count"
    lock_attempts: int = 5
    lock_backoff_s: float = 2.0
    lock_backoff_max_s: float = 30.0
    pulumi_root: Path | None = None  # None: the `pulumi` found on PATH


def _tail(text: str, lines: int = 3) -> str:
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(kept[-lines:])


class PulumiActuator:
    """`Actuator` over one Pulumi stack; each tier is a count in its configuration."""

    name = "pulumi"

    def __init__(self, settings: PulumiSettings) -> None:
        self.settings = settings
        self._stack: auto.Stack | None = None

    def _select(self) -> auto.Stack:
        if self._stack is None:
            s = self.settings
            command = auto.PulumiCommand(root=str(s.pulumi_root)) if s.pulumi_root else None
            try:
                self._stack = auto.select_stack(
                    stack_name=s.stack,
                    work_dir=str(s.work_dir),
                    opts=auto.LocalWorkspaceOptions(pulumi_command=command),
                )
            except auto.StackNotFoundError:
                raise ActuationError(
                    f"pulumi stack {s.stack!r} not found in {s.work_dir}", retryable=False
                ) from None
            except (auto.CommandError, FileNotFoundError, auto.errors.InvalidVersionError) as exc:
                raise ActuationError(f"pulumi: cannot select stack {s.stack!r}: {_describe(exc)}") from None
        return self._stack

    def _key(self, tier: str) -> str:
        return self.settings.config_key.format(tier=tier)

    def capacity(self, tier: str) -> Capacity:
        stack = self._select()
        try:
            current = int(stack.get_config(self._key(tier), path=True).value)
            outputs = stack.outputs()
        except auto.CommandError as exc:
            raise ActuationError(
                f"pulumi stack {self.settings.stack!r}: cannot read {tier}: {_describe(exc)}"
            ) from None
        except ValueError:
            raise ActuationError(
                f"pulumi stack {self.settings.stack!r}: {self._key(tier)} is not a whole number",
                retryable=False,
            ) from None
        return Capacity(current=current, ready=_instances_in_outputs(outputs, tier, default=current))

    def scale(self, tier: str, desired: int) -> None:
        if desired < 0:
            raise ActuationError(f"refusing to scale {tier} to {desired} instances", retryable=False)
        stack = self._select()
        s = self.settings
        try:
            configured = int(stack.get_config(self._key(tier), path=True).value)
            if configured == desired and _instances_in_outputs(stack.outputs(), tier, default=-1) == desired:
                return  # already applied: acting twice on one decision changes nothing
            stack.set_config(self._key(tier), auto.ConfigValue(value=str(desired)), path=True)
            for attempt in Retrying(
                retry=retry_if_exception_type(auto.ConcurrentUpdateError),
                stop=stop_after_attempt(s.lock_attempts),
                wait=wait_exponential(multiplier=s.lock_backoff_s, max=s.lock_backoff_max_s),
                reraise=True,
            ):
                with attempt:
                    stack.up(message=f"swell autoscaler: {tier} -> {desired} instances")
        except auto.ConcurrentUpdateError:
            raise ActuationError(
                f"pulumi stack {s.stack!r} stayed locked by another update after {s.lock_attempts} attempts"
            ) from None
        except auto.CommandError as exc:
            raise ActuationError(
                f"pulumi up of stack {s.stack!r} ({tier} -> {desired}) failed: {_describe(exc)}"
            ) from None
        except ValueError:
            raise ActuationError(
                f"pulumi stack {s.stack!r}: {self._key(tier)} is not a whole number", retryable=False
            ) from None


def _describe(exc: BaseException) -> str:
    # CommandError's text is the CLI's stdout and stderr; keep the stderr's last lines only.
    text = str(exc)
    if "stderr:" in text:
        text = text.split("stderr:", 1)[1]
    return _tail(text) or type(exc).__name__


def _instances_in_outputs(outputs: Mapping[str, Any], tier: str, default: int) -> int:
    """Instances the last successful update created for `tier`, from the stack outputs contract
    (ARCHITECTURE.md): outputs["tiers"][tier]["instances"] is a list."""
    tiers = outputs.get("tiers")
    if tiers is None:
        return default
    value = tiers.value if isinstance(tiers, auto.OutputValue) else tiers
    if isinstance(value, str):
        value = json.loads(value)
    try:
        return len(value[tier]["instances"])
    except (KeyError, TypeError):
        return default
