"""An offline recording engine: runs the stack program under Pulumi's mocks and keeps what it declared.

This is Pulumi's own unit-testing route (`pulumi.runtime.set_mocks`): no CLI, no provider plugin, no
cloud call and no state. Every resource is recorded with its inputs; the mocks answer with placeholder
ids and addresses (private ones from the configured CIDR, public ones from the documentation ranges
203.0.113.0/24 and 2001:db8::/32), so outputs resolve as they would after `pulumi up`.

Pulumi's runtime settings are process-global: `run` resets them and installs fresh mocks every time,
so several runs in one process (tests, the benchmark) do not see each other's resources.
"""

from __future__ import annotations

import contextlib
import gc
import ipaddress
import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import settings
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from stacks import config
from swell import tiers

INSTANCE = "openstack:compute/instance:Instance"
SERVER_GROUP = "openstack:compute/serverGroup:ServerGroup"
SEC_GROUP = "openstack:networking/secGroup:SecGroup"
SEC_GROUP_RULE = "openstack:networking/secGroupRule:SecGroupRule"
LOAD_BALANCER = "openstack:loadbalancer/loadBalancer:LoadBalancer"
MEMBER = "openstack:loadbalancer/member:Member"
FLOATING_IP = "openstack:networking/floatingIp:FloatingIp"
STACK_REFERENCE = "pulumi:pulumi:StackReference"
MOCK_CREATED = "2026-01-01T00:00:00Z"


@dataclass(frozen=True)
class Recorded:
    """One resource the program declared: its Pulumi type, logical name, inputs and mocked state, and
    what the engine would know of it: URN, parent URN, per-property dependencies, ignoreChanges."""

    type: str
    name: str
    id: str
    inputs: dict[str, Any]
    state: dict[str, Any]
    urn: str = ""
    parent: str = ""
    property_dependencies: dict[str, tuple[str, ...]] = field(default_factory=dict)
    ignore_changes: tuple[str, ...] = ()


@dataclass
class Recording:
    config: config.StackConfig
    resources: list[Recorded]
    outputs: dict[str, Any]

    def of_type(self, type_: str) -> list[Recorded]:
        return [r for r in self.resources if r.type == type_]

    def named(self, type_: str) -> dict[str, Recorded]:
        return {r.name: r for r in self.of_type(type_)}


@dataclass
class RecordingMocks(pulumi.runtime.Mocks):
    private_cidr: str
    resources: list[Recorded] = field(default_factory=list)
    # What a StackReference to the stack itself reads: its outputs as the last update left them.
    previous_outputs: Mapping[str, Any] = field(default_factory=dict)

    def _slot(self, name: str) -> tuple[int, int]:
        """(tier slot, index) from a logical name like `web-3` or `chat-lb`: addresses then depend on
        the name alone, so the same instance gets the same placeholder address in every run."""
        prefix, _, rest = name.partition("-")
        # Catalog order: the first tier gets slot 1 (0 for shared resources such as `private`), the
        # fixed groups the slots after the tiers.
        catalog = tiers.load()
        names = (*catalog.names, *catalog.fixed_names)
        slot = names.index(prefix) + 1 if prefix in names else 0
        index = int(rest) if rest.isdigit() else 0
        return slot, index

    def _private_ip(self, name: str, offset: int = 10) -> str:
        net = ipaddress.ip_network(self.private_cidr)
        slot, index = self._slot(name)
        return str(net[(slot * 4096 + index + offset) % (net.num_addresses - 2) + 1])

    def _public_ips(self, name: str) -> tuple[str, str]:
        slot, index = self._slot(name)
        return f"203.0.113.{(slot * 64 + index) % 254 + 1}", f"2001:db8:{slot}::{index + 1:x}"

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = dict(args.inputs)
        if args.typ == INSTANCE:
            networks = []
            for net in args.inputs.get("networks", []):
                if "uuid" in net:
                    networks.append({**net, "fixedIpV4": self._private_ip(args.name), "fixedIpV6": ""})
                else:
                    v4, v6 = self._public_ips(args.name)
                    networks.append({**net, "fixedIpV4": v4, "fixedIpV6": v6})
            state["networks"] = networks
            # Nova's creation time; a fixed placeholder (the autoscaler reads the real one after `up`).
            state["created"] = MOCK_CREATED
        elif args.typ == LOAD_BALANCER:
            state["vipAddress"] = self._private_ip(args.name, offset=2)
            state["vipPortId"] = f"{args.name}-vip-port"
        elif args.typ == FLOATING_IP:
            state["address"] = self._public_ips(args.name)[0]
        elif args.typ == STACK_REFERENCE:
            state["outputs"] = dict(self.previous_outputs)
            state["secretOutputNames"] = []
        resource_id = f"{args.name}-id"
        request = getattr(_current, "request", None)
        extra: dict[str, Any] = {}
        if request is not None and request.name == args.name and request.type == args.typ:
            extra = {
                "urn": getattr(_current, "urn", ""),
                "parent": request.parent,
                "property_dependencies": {k: tuple(v.urns) for k, v in request.propertyDependencies.items()},
                "ignore_changes": tuple(request.ignoreChanges),
            }
        self.resources.append(Recorded(args.typ, args.name, resource_id, dict(args.inputs), state, **extra))
        return resource_id, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        if args.token == "openstack:networking/getNetwork:getNetwork":
            name = args.args.get("name", "network")
            return {"id": f"{name}-id", "name": name, "external": True}, []
        raise NotImplementedError(f"the offline engine has no answer for invoke {args.token}")


# Pulumi calls the monitor from worker threads; the request being served is kept per thread so that
# new_resource (which only gets the mock arguments) can record the engine-side facts too.
_current = threading.local()


class RecordingMonitor(MockMonitor):
    """Pulumi's MockMonitor, keeping each registration's parent, dependencies and ignoreChanges."""

    def RegisterResource(self, request: Any) -> Any:
        _current.request = request
        _current.urn = self.make_urn(request.parent, request.type, request.name)
        try:
            return super().RegisterResource(request)
        finally:
            _current.request = None


def config_strings(values: Mapping[str, Any]) -> dict[str, str]:
    """Config values as the Pulumi CLI hands them to a program: strings, objects as JSON."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


@contextlib.contextmanager
def _batch_gc() -> Iterator[None]:
    """Run with a calmer cyclic GC, then restore it.

    The program allocates hundreds of thousands of short-lived Outputs, futures and tasks; with the
    default thresholds the collector keeps rescanning every object pulumi-openstack created at import,
    which made 1000 instances 3-4x slower (measured with stacks/bench.py). Freezing what exists before
    the run and collecting less often keeps that cost linear.
    """
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def run(
    values: Mapping[str, Any],
    stack: str,
    entry: Callable[[], object] | None = None,
    secret_keys: Sequence[str] = (),
    previous_outputs: Mapping[str, Any] | None = None,
) -> Recording:
    """Run the stack program offline on config `values` (keys as in Pulumi.<stack>.yaml).

    `entry` is the program (default `stacks.program.main`, what stacks/__main__.py calls); the outputs
    are what it exported, as `pulumi stack output --json` would print them. `secret_keys` are marked
    secret as `pulumi config set --secret` marks them (the offline engine cannot tell otherwise).
    `previous_outputs` is what the stack's last update exported (the program reads its placements
    back through a StackReference to itself); none: a stack's first update.
    """
    from stacks import program

    cfg = config.parse(values, stack)  # fail before touching Pulumi's globals
    mocks = RecordingMocks(cfg.private_network.cidr, previous_outputs=dict(previous_outputs or {}))
    settings.reset_options(project=config.PROJECT, stack=stack, preview=False)
    pulumi.runtime.set_mocks(
        mocks, project=config.PROJECT, stack=stack, preview=False, monitor=RecordingMonitor(mocks)
    )
    settings.SETTINGS.rpc_manager.clear()
    pulumi.runtime.set_all_config(config_strings(values), list(secret_keys))
    resolved: dict[str, Any] = {}

    async def _program() -> None:
        (entry or program.main)()
        root = settings.get_root_resource()
        exported = getattr(root, "outputs", {})
        resolved.update(await pulumi.Output.from_input(exported).future() or {})

    with _batch_gc():
        _sync_await(run_pulumi_func(_program))
    return Recording(config=cfg, resources=mocks.resources, outputs=resolved)
