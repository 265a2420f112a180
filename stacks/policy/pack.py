"""The CrossGuard adapters: each policy of the pack as a pulumi-policy object around a plain check.

Building the policy objects is harmless; only constructing the PolicyPack starts a gRPC server and blocks,
and that happens in `__main__.py` alone. The tests call these policies' `validate` with arguments made
from the offline engine's recording, so the wiring is tested as well as the checks.
"""

from __future__ import annotations

from pulumi_policy import (
    Policy,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from stacks import catalog
from stacks.policy import checks


def _no_world_management(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for message in checks.world_open_management_port(args.resource_type, args.props):
        report(message, None)


def _flavor(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for message in checks.flavor_allowed(args.resource_type, args.props, catalog.load().flavors):
        report(message, None)


def _tier(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for message in checks.tier_metadata(args.resource_type, args.props):
        report(message, None)


def _anti_affinity(args: StackValidationArgs, report: ReportViolation) -> None:
    # Scheduler hints carry the group's id, unknown at preview: link instance and group by the
    # property dependency instead (the URN of the ServerGroup the hint was computed from).
    groups = {
        r.urn: r.props.get("policies") for r in args.resources if r.resource_type == checks.SERVER_GROUP
    }
    for r in args.resources:
        if r.resource_type != checks.INSTANCE:
            continue
        ref = checks.InstanceRef(
            r.name, tuple(dep.urn for dep in r.property_dependencies.get("schedulerHints", []))
        )
        for message in checks.anti_affinity([ref], groups):
            report(message, r.urn)


def _quota(args: StackValidationArgs, report: ReportViolation) -> None:
    cat = catalog.load()
    quota = checks.quota_from_config(args.get_config(), cat)
    instances = [r for r in args.resources if r.resource_type == checks.INSTANCE]
    flavors = [str(r.props.get("flavorName")) for r in instances]
    # Shelved (warm-pool) instances count in full: see checks.within_quota for why.
    shelved = sum(1 for r in instances if r.props.get("powerState") == checks.SHELVED)
    for message in checks.within_quota(flavors, quota, cat.flavors, shelved=shelved):
        report(message, None)


def policies() -> list[Policy]:
    """The pack's policies, named as `checks.check_all` names them."""
    return [
        ResourceValidationPolicy(
            name="no-management-port-open-to-the-world",
            description="No SSH or other management port is open to 0.0.0.0/0 or ::/0.",
            validate=_no_world_management,
        ),
        ResourceValidationPolicy(
            name="flavor-in-allow-list",
            description="Instances use a flavor from stacks/data/ovhcloud.yaml.",
            validate=_flavor,
        ),
        ResourceValidationPolicy(
            name="instance-has-tier-metadata",
            description="Every instance carries Nova metadata tier: web, chat or video.",
            validate=_tier,
        ),
        StackValidationPolicy(
            name="instance-in-anti-affinity-group",
            description="Every instance is in a (soft-)anti-affinity server group.",
            validate=_anti_affinity,
        ),
        StackValidationPolicy(
            name="counts-within-quota",
            description=(
                "Instances, vCPUs and RAM stay within the configured OVHcloud quota; shelved "
                "(warm-pool) instances count in full."
            ),
            validate=_quota,
            config_schema=PolicyConfigSchema(
                properties={
                    "quota": {
                        "description": "OVHcloud quota tier (10-vms...200-vms) or {instances, vcpus, ramGb}",
                        "default": catalog.load().quota_tiers[-1].name,
                    }
                }
            ),
        ),
    ]
