"""The entry point of swell's policy pack: the only place that builds the PolicyPack.

`pulumi preview --policy-pack stacks/policy [--policy-pack-config stacks/policy/prod-gra11.json]`.
Building the pack starts a gRPC server and blocks, so nothing else imports this module; the policies
are in pack.py and the checks they run are plain functions in checks.py.
"""

from pulumi_policy import EnforcementLevel, PolicyPack

from stacks.policy.pack import policies

PolicyPack(name="swell", enforcement_level=EnforcementLevel.MANDATORY, policies=policies())
