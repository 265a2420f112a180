"""The stack outputs contract (ARCHITECTURE.md, "Stack outputs"), read and validated.

`pulumi stack output --json` is the only thing the playbooks know about a stack. A mistake in it
(a missing address, a tier nobody knows) must stop `swell configure` before Ansible starts, with
an error naming the key and what was expected.
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from swell import tiers as tier_catalog
from swell.configure.admin_networks import admin_network

# The variables the inventory sets itself (swell/configure/inventory.py), from the other outputs.
INVENTORY_VARS = frozenset(
    {
        "swell_tier",
        "swell_stack",
        "swell_region",
        "swell_private_network_cidr",
        "swell_admin_cidrs",
        "swell_private_ip",
        "swell_tier_catalog",
        "swell_shard",
    }
)


def _known_tier(name: str) -> str:
    # The tier catalog's tiers only, so a misspelt tier cannot silently configure nothing.
    known = tier_catalog.names()
    if name not in known:
        raise ValueError(f"unknown tier {name!r}; tiers: {', '.join(known)}")
    return name


Tier = Annotated[str, AfterValidator(_known_tier)]


def _known_fixed_group(name: str) -> str:
    known = tier_catalog.load().fixed_names
    if name not in known:
        raise ValueError(f"unknown fixed group {name!r}; fixed groups: {', '.join(known)}")
    return name


FixedGroupName = Annotated[str, AfterValidator(_known_fixed_group)]
# A stack variable's value: a name, an address, a port, or addresses by key (the shards' Prosody).
StackVariable = str | int | dict[str, str]


class StackOutputsError(ValueError):
    """The stack outputs file cannot be used; the message says where and why."""


class Instance(BaseModel):
    """One server of a tier, as the stack reports it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    # The instance's index in its tier (absent from hand-written files).
    index: int | None = None
    private_ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    public_ipv4: ipaddress.IPv4Address | None = None
    public_ipv6: ipaddress.IPv6Address | None = None
    # The warm pool (docs/stacks.md, "Warm pool"): "" serving or retiring, "filling" (running, being
    # configured), "warm" (shelved: not running, nothing to configure until it is unshelved).
    pool: Literal["", "filling", "warm"] = ""


class LoadBalancer(BaseModel):
    """A tier's load balancer (absent for a tier without one, like video: participants reach bridges
    directly)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    vip_address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    public_ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None


class TierOutputs(BaseModel):
    """A tier's instances and load balancer."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    instances: list[Instance] = Field(default_factory=list)
    load_balancer: LoadBalancer | None = None


def _stack_variables_only(where: str, found: dict[str, StackVariable]) -> None:
    # Only the stack's own variables, never one the inventory sets itself (swell_tier, ...) nor a
    # role's variable: a hand-edited file must not reach past the contract.
    for name in found:
        if not re.fullmatch(r"swell_[a-z0-9_]+", name) or name in INVENTORY_VARS:
            raise ValueError(
                f"{where}: {name!r} is not a stack variable (swell_<name>, none of "
                f"{', '.join(sorted(INVENTORY_VARS))})"
            )


class FixedGroupOutputs(BaseModel):
    """A fixed group's instances (chat store, shards) and the variables its user_data gives."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    instances: list[Instance] = Field(default_factory=list)
    vars: dict[str, StackVariable] = Field(default_factory=dict)

    @field_validator("vars")
    @classmethod
    def _own(cls, found: dict[str, StackVariable]) -> dict[str, StackVariable]:
        _stack_variables_only("fixed group", found)
        return found


class PrivateNetwork(BaseModel):
    """The stack's private network (vRack)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    cidr: ipaddress.IPv4Network | ipaddress.IPv6Network


class StackOutputs(BaseModel):
    """All of `pulumi stack output --json` that configuring hosts needs.

    Keys the playbooks do not use are ignored, so the stacks may add outputs freely; tiers must
    be among the tier catalog's (swell/data/tiers.yaml), so a misspelt tier cannot silently configure nothing.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    stack: str = Field(min_length=1)
    region: str = Field(min_length=1)
    private_network: PrivateNetwork
    tiers: dict[Tier, TierOutputs]
    # Optional: where SSH may come from. Not part of the stack outputs contract today, so
    # `swell configure --admin-cidr` can give it instead.
    admin_cidrs: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = Field(default_factory=list)
    # Where each tier finds the others (the XMPP domain, the shards' Prosody addresses by shard, the
    # chat store's address, the TURN host): the very variables the stack writes into the tier's
    # user_data (the tier catalog's `bootstrap.vars`, stacks/bootstrap.py), given to the tier's
    # group. Absent from older stacks: `-e` gives them instead.
    tier_vars: dict[Tier, dict[str, StackVariable]] = Field(default_factory=dict)
    # The fixed groups (chat store, shards): instances and variables, configured like tiers.
    fixed: dict[FixedGroupName, FixedGroupOutputs] = Field(default_factory=dict)
    # A placed tier's members (video: each bridge's shard), by instance index: `swell_shard` per host.
    placements: dict[Tier, dict[int, int]] = Field(default_factory=dict)

    @field_validator("tier_vars")
    @classmethod
    def _stack_variables_only(
        cls, tier_vars: dict[str, dict[str, StackVariable]]
    ) -> dict[str, dict[str, StackVariable]]:
        for tier, found in tier_vars.items():
            _stack_variables_only(tier, found)
        return tier_vars

    @field_validator("admin_cidrs", mode="before")
    @classmethod
    def _not_the_world(cls, values: object) -> object:
        # A hand-edited outputs file must not open SSH wider than the stack would (same rule).
        if isinstance(values, list):
            return [admin_network(v, strict=False) if isinstance(v, str) else v for v in values]
        return values

    @field_validator("tiers")
    @classmethod
    def _unique_names(cls, tiers: dict[str, TierOutputs]) -> dict[str, TierOutputs]:
        seen: dict[str, str] = {}
        for tier, outputs in tiers.items():
            for instance in outputs.instances:
                if instance.name in seen:
                    raise ValueError(
                        f"instance name {instance.name!r} appears in tier {seen[instance.name]!r} "
                        f"and in tier {tier!r}; names must be unique"
                    )
                seen[instance.name] = tier
        return tiers

    def variables(self, tier: str) -> dict[str, StackVariable]:
        """The stack variables of one tier or fixed group (none when the stack gives none)."""
        if tier in self.fixed:
            return dict(self.fixed[tier].vars)
        return dict(self.tier_vars.get(tier, {}))

    def instances(self, tier: str) -> list[Instance]:
        """The instances of one tier or fixed group (none when the stack has no such group)."""
        if tier in self.fixed:
            return list(self.fixed[tier].instances)
        outputs = self.tiers.get(tier)
        return list(outputs.instances) if outputs else []

    def placement(self, tier: str, instance: Instance) -> int | None:
        """The member (shard) an instance of a placed tier belongs to, if the stack says."""
        if instance.index is None:
            return None
        return self.placements.get(tier, {}).get(instance.index)


def _location(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(("." if parts else "") + str(part))
    return "".join(parts) or "(top level)"


def parse_stack_outputs(text: str, source: str = "stack outputs") -> StackOutputs:
    """Parse and validate the JSON text; raise StackOutputsError naming each bad key."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StackOutputsError(
            f"{source}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from exc
    if not isinstance(data, dict):
        raise StackOutputsError(
            f"{source}: expected a JSON object (what `pulumi stack output --json` prints), "
            f"got {type(data).__name__}"
        )
    try:
        return StackOutputs.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            problems.append(f"  {_location(tuple(error['loc']))}: {error['msg']}")
        raise StackOutputsError(f"{source}: {len(problems)} problem(s):\n" + "\n".join(problems)) from exc


def load_stack_outputs(path: Path) -> StackOutputs:
    """Read a stack outputs file; raise StackOutputsError when it is missing or invalid."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StackOutputsError(f"{path}: cannot read the stack outputs: {exc.strerror}") from exc
    return parse_stack_outputs(text, source=str(path))
