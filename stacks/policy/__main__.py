"""The entry point of swell's policy pack: the only place that builds the PolicyPack.

`pulumi preview --policy-pack stacks/policy [--policy-pack-config policy-config.json]`. Building the
pack starts a gRPC server and blocks, so nothing else imports this module; the checks are plain
functions in stacks/policy/checks.py.
"""

from __future__ import annotations

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from stacks import catalog
from stacks.policy import checks

CATALOG = catalog.load()


def _no_world_management(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for message in checks.world_open_management_port(args.resource_type, args.props):
        report(message, None)


def _flavor(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for message in checks.flavor_allowed(args.resource_type, args.props, CATALOG.flavors):
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
    instances = [
        checks.InstanceRef(
            r.name, tuple(dep.urn for dep in r.property_dependencies.get("schedulerHints", []))
        )
        for r in args.resources
        if r.resource_type == checks.INSTANCE
    ]
    for message in checks.anti_affinity(instances, groups):
        report(message, None)


def _quota(args: StackValidationArgs, report: ReportViolation) -> None:
    quota = checks.quota_from_config(args.get_config(), CATALOG)
    flavors = [str(r.props.get("flavorName")) for r in args.resources if r.resource_type == checks.INSTANCE]
    for message in checks.within_quota(flavors, quota, CATALOG.flavors):
        report(message, None)


PolicyPack(
    name="swell",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[
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
            description="Instances, vCPUs and RAM stay within the configured OVHcloud quota.",
            validate=_quota,
            config_schema=PolicyConfigSchema(
                properties={
                    "quota": {
                        "description": "OVHcloud quota tier (10-vms...200-vms) or {instances, vcpus, ramGb}",
                        "default": CATALOG.quota_tiers[-1].name,
                    }
                }
            ),
        ),
    ],
)
