"""The production Prometheus configuration, and the drill's, derived from it by one named function.

`production_config()` is what `python -m dashboards` writes to dashboards/prometheus/prometheus.yml
(committed; the suite fails if it differs from what this module generates, and runs
`promtool check config` on it). Its jobs carry exactly the job names and the `tier` label the
recording rules select on (dashboards/mixin.py, `Selectors`):

- `node`: every instance of this stack, found by openstack_sd (role `instance`), node exporter on 9100.
  openstack_sd lists every server of the project with one target per address: the relabel rules keep
  the servers whose Nova metadata `stack` is this stack and `tier` a known tier (the stack sets both:
  stacks/tier.py), on the private network's address only, and name `tier` and `instance` from them.
- `jvb`: the video bridges' Jitsi Videobridge /metrics on 8080 (private HTTP interface), found the same way.
- `swell-lb`: the load balancers' PROMETHEUS listeners. Prometheus 2.42 (Debian 12's) has no
  openstack_sd role for load balancers, so they come from a file_sd file written from the stack
  outputs (`lb_file_sd`, `python -m dashboards.prometheus --stack-outputs FILE --out FILE`), with `tier`
  as a target label. Octavia already names the series `octavia_*`; the metric relabels
  (`lb_metric_relabel`) make a bare HAProxy's series look the same and leave Octavia's untouched.
- `swell-autoscaler`: the autoscaler's /metrics on 9180, every replica (only the leader loops, and the
  alerts take the max over replicas), through DNS: in Kubernetes a headless Service returns one
  address per pod. (Debian's Prometheus is built without kubernetes_sd.)

Credentials by reference: openstack_sd without `identity_endpoint` authenticates from the Prometheus
process's environment, `OS_AUTH_URL`, `OS_APPLICATION_CREDENTIAL_ID`, `OS_APPLICATION_CREDENTIAL_SECRET`
(gophercloud's AuthOptionsFromEnv: Prometheus discovery/openstack/openstack.go). Prometheus 2.42 has
no `*_file` option for these, so they live in a root-only environment file (systemd
`EnvironmentFile=`) or a Kubernetes Secret, never in this configuration.

Paths are relative to the configuration file (Prometheus resolves them so): deploy dashboards/prometheus/
and dashboards/rules/ side by side (e.g. under /etc/prometheus/swell/), and write the load balancer
targets to prometheus/file_sd/swell-lb.json there after each `pulumi up`.

`drill_scrape_config()` is the drill's configuration: production's with service discovery swapped for
what runs on 127.0.0.1 and the documented timing, nothing else (a test checks every other key).
`openstack_sd_targets()` is what openstack_sd would return for given instances: the drill feeds its
instances to production's relabel rules through it (loadtests/plumbing.py).
"""

from __future__ import annotations

import argparse
import copy
import ipaddress
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from dashboards.mixin import lb_metric_relabel
from swell import tiers

HERE = Path(__file__).resolve().parent
PRODUCTION = HERE / "prometheus" / "prometheus.yml"


@dataclass(frozen=True)
class Site:
    """One stack's Prometheus: it scrapes that stack's region, instances and load balancers."""

    stack: str = "prod-gra11"
    region: str = "GRA11"
    rule_file: str = "../rules/swell.rules.yml"
    lb_file_sd: str = "file_sd/swell-lb.json"
    # A headless Service over the autoscaler's pods (deploy/kubernetes: namespace swell-autoscaler).
    autoscaler_dns_name: str = "swell-autoscaler.swell-autoscaler.svc.cluster.local"
    scrape_interval: str = "15s"
    evaluation_interval: str = "15s"
    discovery_refresh: str = "60s"

    @property
    def private_network(self) -> str:
        """The private network's Neutron name (stacks/network.py): openstack_sd's address pool."""
        return f"swell-{self.stack}"


NODE_EXPORTER_PORT = 9100
JVB_METRICS_PORT = 8080
AUTOSCALER_METRICS_PORT = 9180


def _instance_relabel(site: Site, tiers: Sequence[str]) -> list[dict[str, Any]]:
    return [
        {
            # openstack_sd lists every server of the project, one target per address.
            "source_labels": [
                "__meta_openstack_tag_stack",
                "__meta_openstack_tag_tier",
                "__meta_openstack_address_pool",
            ],
            "regex": f"{site.stack};({'|'.join(tiers)});{site.private_network}",
            "action": "keep",
        },
        {
            # The warm pool's shelved instances (docs/stacks.md, "Warm pool") have no running
            # exporter: scraping them would show targets down. Only shelving is dropped; an
            # instance in ERROR or BUILD stays visible. Nova's statuses: SHELVED, SHELVED_OFFLOADED.
            "source_labels": ["__meta_openstack_instance_status"],
            "regex": "SHELVED(_OFFLOADED)?",
            "action": "drop",
        },
        {"source_labels": ["__meta_openstack_tag_tier"], "target_label": "tier"},
        {"source_labels": ["__meta_openstack_instance_name"], "regex": "(.+)", "target_label": "instance"},
        # A bridge's Jitsi shard (Nova metadata `shard`, chosen once at creation: stacks/fixed.py),
        # so a shard's bridges can be told apart; absent on other tiers.
        {"source_labels": ["__meta_openstack_tag_shard"], "regex": "(.+)", "target_label": "shard"},
    ]


def _fixed_group_relabel(site: Site, groups: Sequence[str]) -> list[dict[str, Any]]:
    """The fixed groups' instances (chat store, Jitsi shards): Nova metadata `group`, not `tier`, so
    they stay out of every per-tier rule (a tier's utilization, its demand) and are watched alone."""
    return [
        {
            "source_labels": [
                "__meta_openstack_tag_stack",
                "__meta_openstack_tag_group",
                "__meta_openstack_address_pool",
            ],
            "regex": f"{site.stack};({'|'.join(groups)});{site.private_network}",
            "action": "keep",
        },
        {"source_labels": ["__meta_openstack_tag_group"], "target_label": "group"},
        {"source_labels": ["__meta_openstack_instance_name"], "regex": "(.+)", "target_label": "instance"},
    ]


def _openstack_sd(site: Site, port: int) -> list[dict[str, Any]]:
    # No identity_endpoint: credentials come from the OS_* environment (module docstring).
    return [
        {"role": "instance", "region": site.region, "port": port, "refresh_interval": site.discovery_refresh}
    ]


def production_config(site: Site | None = None) -> dict[str, Any]:
    site = site or Site()
    return {
        "global": {"scrape_interval": site.scrape_interval, "evaluation_interval": site.evaluation_interval},
        "rule_files": [site.rule_file],
        "scrape_configs": [
            {
                "job_name": "swell-lb",
                "file_sd_configs": [{"files": [site.lb_file_sd], "refresh_interval": site.discovery_refresh}],
                "metric_relabel_configs": lb_metric_relabel(),
            },
            {
                "job_name": "node",
                "openstack_sd_configs": _openstack_sd(site, NODE_EXPORTER_PORT),
                "relabel_configs": _instance_relabel(site, tiers.names()),
            },
            {
                "job_name": "node-fixed",
                "openstack_sd_configs": _openstack_sd(site, NODE_EXPORTER_PORT),
                "relabel_configs": _fixed_group_relabel(site, [g.name for g in tiers.load().fixed]),
            },
            {
                "job_name": "jvb",
                "openstack_sd_configs": _openstack_sd(site, JVB_METRICS_PORT),
                "relabel_configs": _instance_relabel(
                    site, [t.name for t in tiers.load().tiers if t.bridge_metrics]
                ),
            },
            {
                "job_name": "swell-autoscaler",
                "dns_sd_configs": [
                    {
                        "names": [site.autoscaler_dns_name],
                        "type": "A",
                        "port": AUTOSCALER_METRICS_PORT,
                        "refresh_interval": "30s",
                    }
                ],
            },
        ],
    }


# Every service discovery key a job may use; the drill swaps them, and only them.
SD_KEYS = ("openstack_sd_configs", "file_sd_configs", "dns_sd_configs", "static_configs")
# The drill scrapes and evaluates every second (time is compressed), and sees a new instance at once.
DRILL_INTERVAL = "1s"


def drill_scrape_config(
    production: Mapping[str, Any],
    *,
    node_file_sd: Path,
    jvb_file_sd: Path,
    lb_targets: Sequence[str],
    autoscaler_targets: Sequence[str],
    rule_file: Path,
) -> dict[str, Any]:
    """The drill's Prometheus configuration: `production` with

    - openstack_sd (jobs `node`, `jvb`) swapped for the file_sd files the drill's instances are
      listed in, shaped as openstack_sd returns them (`openstack_sd_targets`), so the production
      relabel rules run unchanged;
    - the load balancers' file_sd swapped for the drill's one HAProxy (every tier's proxies in one
      process: `tier` comes from the proxy names, `lb_metric_relabel`), and the autoscaler's DNS
      discovery for the drill's autoscaler on 127.0.0.1;
    - timing: scrape and evaluation every `DRILL_INTERVAL`, file_sd refreshed as often;
    - the rule file: the drill's copy, production's with its durations compressed (`compress_rules`).

    Job names, relabel rules and metric relabels are production's, untouched."""
    refresh = {"refresh_interval": DRILL_INTERVAL}
    swaps: dict[str, dict[str, Any]] = {
        "node": {"file_sd_configs": [{"files": [str(node_file_sd)], **refresh}]},
        "jvb": {"file_sd_configs": [{"files": [str(jvb_file_sd)], **refresh}]},
        "swell-lb": {"static_configs": [{"targets": list(lb_targets)}]},
        "swell-autoscaler": {"static_configs": [{"targets": list(autoscaler_targets)}]},
        # The drill runs no fixed group's host: its Redis is a local process, its bridges register
        # with the allocator stand-in, not with a shard.
        "node-fixed": {"static_configs": [{"targets": []}]},
    }
    out = copy.deepcopy(dict(production))
    out["global"] = {
        **out["global"],
        "scrape_interval": DRILL_INTERVAL,
        "evaluation_interval": DRILL_INTERVAL,
    }
    out["rule_files"] = [str(rule_file)]
    jobs = []
    for job in out["scrape_configs"]:
        if job["job_name"] not in swaps:
            raise ValueError(f"production job {job['job_name']!r} has no drill discovery; add one here")
        kept = {k: v for k, v in job.items() if k not in SD_KEYS}
        jobs.append({**kept, **swaps[job["job_name"]]})
    out["scrape_configs"] = jobs
    return out


def openstack_sd_targets(
    instances: Iterable[tuple[str, str, str]], site: Site | None = None
) -> list[dict[str, Any]]:
    """What openstack_sd (role instance) returns for (tier, address, name) instances of `site`'s stack
    on its private network, as file_sd target groups: the `__meta_openstack_*` labels the relabel
    rules read (Nova metadata `tier` and `stack` as stacks/tier.py sets them)."""
    site = site or Site()
    return [
        {
            "targets": [address],
            "labels": {
                "__meta_openstack_tag_tier": tier,
                "__meta_openstack_tag_stack": site.stack,
                "__meta_openstack_address_pool": site.private_network,
                "__meta_openstack_instance_name": name,
                "__meta_openstack_instance_status": "ACTIVE",
            },
        }
        for tier, address, name in instances
    ]


class _LoadBalancerOutputs(BaseModel):
    model_config = ConfigDict(extra="ignore")
    vip_address: ipaddress.IPv4Address
    prometheus_port: int


class _TierOutputs(BaseModel):
    model_config = ConfigDict(extra="ignore")
    load_balancer: _LoadBalancerOutputs | None = None


class _StackOutputs(BaseModel):
    model_config = ConfigDict(extra="ignore")
    stack: str
    tiers: dict[str, _TierOutputs]


def lb_file_sd(stack_outputs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The `swell-lb` job's targets from `pulumi stack output --json`: each load balancer's VIP and
    PROMETHEUS port, labelled with its tier (ARCHITECTURE.md, "Stack outputs")."""
    try:
        outputs = _StackOutputs.model_validate(stack_outputs)
    except ValidationError as e:
        where = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
        raise ValueError(f"not the stack outputs of a swell stack ({where})") from None
    return [
        {
            "targets": [f"{tier.load_balancer.vip_address}:{tier.load_balancer.prometheus_port}"],
            "labels": {"tier": name, "stack": outputs.stack},
        }
        for name, tier in sorted(outputs.tiers.items())
        if tier.load_balancer is not None
    ]


def render_production(site: Site | None = None) -> str:
    header = (
        "# Generated by `python -m dashboards` from dashboards/prometheus.py: edit that, not this file.\n"
        "# OpenStack credentials come from the environment (OS_AUTH_URL, OS_APPLICATION_CREDENTIAL_ID,\n"
        "# OS_APPLICATION_CREDENTIAL_SECRET), never from this file. Load balancer targets: write\n"
        "# file_sd/swell-lb.json with `python -m dashboards.prometheus --stack-outputs FILE`.\n"
    )
    return header + yaml.safe_dump(production_config(site), sort_keys=False, width=120)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dashboards.prometheus",
        description="Write the swell-lb job's file_sd targets from `pulumi stack output --json`.",
    )
    parser.add_argument(
        "--stack-outputs", type=Path, required=True, help="a `pulumi stack output --json` file"
    )
    parser.add_argument("--out", type=Path, default=None, help="the file_sd file to write (default: stdout)")
    args = parser.parse_args(argv)
    try:
        targets = lb_file_sd(json.loads(args.stack_outputs.read_text()))
    except (OSError, ValueError) as e:
        print(f"{args.stack_outputs}: {e}", file=sys.stderr)
        return 2
    text = json.dumps(targets, indent=1) + "\n"
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(args.out)  # Prometheus never reads a half-written file
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
