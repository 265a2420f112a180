"""The production Prometheus configuration (dashboards/prometheus/prometheus.yml): Prometheus's own
promtool accepts it, its jobs are the ones the rules select, it holds no credential, its relabel
rules keep exactly this stack's instances on the private network when a real Prometheus runs them,
the load balancer targets come from the stack outputs, and the drill's configuration is production's
with service discovery and timing swapped, nothing else."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards import prometheus
from dashboards.mixin import Selectors, lb_metric_relabel, rules_document
from dashboards.prometheus import (
    PRODUCTION,
    SD_KEYS,
    Site,
    drill_scrape_config,
    openstack_sd_targets,
)
from tests.realparts import http_get, needs_prometheus, running_prometheus, wait_until

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="needs promtool (Debian prometheus)"
)


def _production() -> dict[str, Any]:
    return dict(yaml.safe_load(PRODUCTION.read_text()))


def _jobs(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {job["job_name"]: job for job in config["scrape_configs"]}


@needs_promtool
def test_promtool_accepts_the_committed_production_configuration() -> None:
    # In place: the rule file is found relative to the configuration, as on a Prometheus host.
    run = subprocess.run(
        ["promtool", "check", "config", str(PRODUCTION)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS: 1 rule files found" in run.stdout


@pytest.mark.parametrize("field", [f.name for f in fields(Selectors)])
def test_every_job_the_rules_select_is_scraped(field: str) -> None:
    job = getattr(Selectors(), field).removeprefix('job="').removesuffix('"')
    assert job in _jobs(_production())
    # ... and the rules do select it (a renamed job would leave them reading nothing).
    exprs = " ".join(r["expr"] for g in rules_document()["groups"] for r in g["rules"])
    assert f'job="{job}"' in exprs


def _walk(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def test_no_credential_is_written_in_the_configuration() -> None:
    keys = {key for key, _ in _walk(_production())}
    forbidden = {
        "password",
        "application_credential_secret",
        "application_credential_id",
        "identity_endpoint",
    }
    assert keys & forbidden == set()  # openstack_sd reads OS_* from Prometheus's environment instead
    assert "openstack_sd_configs" in keys


def test_the_load_balancer_job_renames_a_bare_haproxy_as_octavia_does_and_nothing_else() -> None:
    assert _jobs(_production())["swell-lb"]["metric_relabel_configs"] == lb_metric_relabel()


DRILL_FILES = {"node_file_sd": Path("/d/nodes.json"), "jvb_file_sd": Path("/d/jvb.json")}


def _drill(production: dict[str, Any]) -> dict[str, Any]:
    return drill_scrape_config(
        production,
        **DRILL_FILES,
        lb_targets=["127.0.0.1:1"],
        autoscaler_targets=["127.0.0.1:2"],
        rule_file=Path("/d/rules.yml"),
    )


def test_the_drill_runs_productions_jobs_with_only_discovery_and_timing_swapped() -> None:
    production = _production()
    drill = _drill(production)
    assert drill["global"] == {"scrape_interval": "1s", "evaluation_interval": "1s"}
    assert drill["rule_files"] == ["/d/rules.yml"]
    assert set(drill) == set(production)
    prod_jobs, drill_jobs = _jobs(production), _jobs(drill)
    assert list(prod_jobs) == list(drill_jobs)
    for name, job in prod_jobs.items():
        # Everything but service discovery: relabel rules, metric relabels, paths, ... untouched.
        assert {k: v for k, v in drill_jobs[name].items() if k not in SD_KEYS} == {
            k: v for k, v in job.items() if k not in SD_KEYS
        }, name
    assert drill_jobs["node"]["file_sd_configs"] == [{"files": ["/d/nodes.json"], "refresh_interval": "1s"}]
    assert drill_jobs["jvb"]["file_sd_configs"] == [{"files": ["/d/jvb.json"], "refresh_interval": "1s"}]
    assert drill_jobs["swell-lb"]["static_configs"] == [{"targets": ["127.0.0.1:1"]}]
    assert drill_jobs["swell-autoscaler"]["static_configs"] == [{"targets": ["127.0.0.1:2"]}]
    assert production == _production()  # the production configuration itself is not modified


def test_a_production_job_without_a_drill_discovery_is_refused_by_name() -> None:
    production = _production()
    production["scrape_configs"].append({"job_name": "blackbox", "static_configs": [{"targets": ["x:1"]}]})
    with pytest.raises(ValueError, match="'blackbox' has no drill discovery"):
        _drill(production)


SITE = Site()
# (tier metadata, stack metadata, address pool, address, name): what openstack_sd lists in the project.
DISCOVERED = [
    ("web", SITE.stack, SITE.private_network, "10.42.16.11", "swell-prod-gra11-web-0"),
    ("chat", SITE.stack, SITE.private_network, "10.42.32.11", "swell-prod-gra11-chat-0"),
    ("video", SITE.stack, SITE.private_network, "10.42.48.11", "swell-prod-gra11-video-0"),
    ("video", SITE.stack, "Ext-Net", "51.68.0.31", "swell-prod-gra11-video-0"),  # the bridge's public address
    ("web", "staging", "swell-staging", "10.43.16.11", "swell-staging-web-0"),  # another stack, same project
    ("db", SITE.stack, SITE.private_network, "10.42.60.5", "hand-made-db"),  # not a swell tier
    ("web", SITE.stack, SITE.private_network, "10.42.16.12", "swell-prod-gra11-web-1"),
    ("chat", SITE.stack, SITE.private_network, "10.42.32.12", "swell-prod-gra11-chat-1"),
]
# Nova's status where not ACTIVE: a warm-pool instance is shelved (no exporter runs: dropped); one
# in ERROR stays a target, so that it shows as down.
STATUS = {"swell-prod-gra11-web-1": "SHELVED_OFFLOADED", "swell-prod-gra11-chat-1": "ERROR"}


def _openstack_like(rows: list[tuple[str, str, str, str, str]], port: int) -> list[dict[str, Any]]:
    groups = []
    for tier, stack, pool, address, name in rows:
        (group,) = openstack_sd_targets([(tier, f"{address}:{port}", name)], Site(stack=stack))
        group["labels"]["__meta_openstack_address_pool"] = pool
        group["labels"]["__meta_openstack_instance_status"] = STATUS.get(name, "ACTIVE")
        groups.append(group)
    return groups


@needs_prometheus
@pytest.mark.slow
def test_a_real_prometheus_keeps_exactly_this_stacks_instances_on_the_private_network(tmp_path: Path) -> None:
    nodes, jvb = tmp_path / "nodes.json", tmp_path / "jvb.json"
    nodes.write_text(json.dumps(_openstack_like(DISCOVERED, 9100)))
    jvb.write_text(json.dumps(_openstack_like(DISCOVERED, 8080)))
    config = drill_scrape_config(
        _production(),
        node_file_sd=nodes,
        jvb_file_sd=jvb,
        lb_targets=[],
        autoscaler_targets=[],
        rule_file=prometheus.HERE / "rules" / "swell.rules.yml",
    )
    with running_prometheus(tmp_path / "prometheus", config) as (url, _):

        def active() -> list[dict[str, str]]:
            data = json.loads(http_get(f"{url}/api/v1/targets?state=active"))["data"]["activeTargets"]
            return [t["labels"] for t in data]

        wait_until(lambda: len(active()) >= 5, "the discovered targets")
        labels = sorted(active(), key=lambda t: (t["job"], t["instance"]))
    assert [(t["job"], t["tier"], t["instance"]) for t in labels] == [
        ("jvb", "video", "swell-prod-gra11-video-0"),
        ("node", "chat", "swell-prod-gra11-chat-0"),
        ("node", "chat", "swell-prod-gra11-chat-1"),
        ("node", "video", "swell-prod-gra11-video-0"),
        ("node", "web", "swell-prod-gra11-web-0"),
    ]


@needs_prometheus
@pytest.mark.slow
def test_a_real_prometheus_scrapes_the_fixed_groups_apart_and_labels_bridges_with_their_shard(
    tmp_path: Path,
) -> None:
    """The chat store and the Jitsi shards (Nova metadata `group`) go to `node-fixed` with a `group`
    label and no `tier` (per-tier rules never see them); a bridge's metadata `shard` becomes a label.
    The drill has no fixed group, so the job's discovery is swapped here for a file, as openstack_sd
    would list the project."""
    rows = [
        # (metadata, address, name)
        ({"group": "chat_store"}, "10.42.0.40", "swell-prod-gra11-chat-store-0"),
        ({"group": "shard"}, "10.42.0.41", "swell-prod-gra11-shard-0"),
        ({"group": "shard", "stack": "staging"}, "10.43.0.41", "swell-staging-shard-0"),  # another stack
        ({"group": "backups"}, "10.42.0.42", "hand-made-backups"),  # not a swell group
        ({"tier": "video", "shard": "1"}, "10.42.48.12", "swell-prod-gra11-video-1"),
    ]
    groups = []
    for meta, address, name in rows:
        sd_labels = {
            "__meta_openstack_tag_stack": meta.get("stack", SITE.stack),
            "__meta_openstack_address_pool": SITE.private_network,
            "__meta_openstack_instance_name": name,
            "__meta_openstack_instance_status": "ACTIVE",
        }
        sd_labels |= {f"__meta_openstack_tag_{k}": v for k, v in meta.items() if k != "stack"}
        groups.append({"targets": [f"{address}:9100"], "labels": sd_labels})
    listed = tmp_path / "openstack.json"
    listed.write_text(json.dumps(groups))
    config = drill_scrape_config(
        _production(),
        node_file_sd=listed,
        jvb_file_sd=tmp_path / "none.json",
        lb_targets=[],
        autoscaler_targets=[],
        rule_file=prometheus.HERE / "rules" / "swell.rules.yml",
    )
    (fixed,) = [job for job in config["scrape_configs"] if job["job_name"] == "node-fixed"]
    fixed.pop("static_configs")
    fixed["file_sd_configs"] = [{"files": [str(listed)], "refresh_interval": "1s"}]
    with running_prometheus(tmp_path / "prometheus", config) as (url, _):

        def active() -> list[dict[str, str]]:
            data = json.loads(http_get(f"{url}/api/v1/targets?state=active"))["data"]["activeTargets"]
            return [t["labels"] for t in data]

        wait_until(lambda: len(active()) >= 3, "the discovered targets")
        labels = sorted(active(), key=lambda t: (t["job"], t["instance"]))
    assert [(t["job"], t.get("tier"), t.get("group"), t.get("shard"), t["instance"]) for t in labels] == [
        ("node", "video", None, "1", "swell-prod-gra11-video-1"),
        ("node-fixed", None, "chat_store", None, "swell-prod-gra11-chat-store-0"),
        ("node-fixed", None, "shard", None, "swell-prod-gra11-shard-0"),
    ]


STACK_OUTPUTS = {
    "stack": "prod-gra11",
    "region": "GRA11",
    "tiers": {
        "web": {
            "instances": [],
            "load_balancer": {"vip_address": "10.42.0.5", "public_ip": "51.68.0.10", "prometheus_port": 8088},
        },
        "chat": {
            "instances": [],
            "load_balancer": {"vip_address": "10.42.0.6", "public_ip": "51.68.0.11", "prometheus_port": 8088},
        },
        "video": {"instances": [], "load_balancer": None},
    },
}


def test_the_load_balancer_targets_come_from_the_stack_outputs(tmp_path: Path) -> None:
    source = tmp_path / "outputs.json"
    source.write_text(json.dumps(STACK_OUTPUTS))
    out = tmp_path / "file_sd" / "swell-lb.json"
    assert prometheus.main(["--stack-outputs", str(source), "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == [
        {"targets": ["10.42.0.6:8088"], "labels": {"tier": "chat", "stack": "prod-gra11"}},
        {"targets": ["10.42.0.5:8088"], "labels": {"tier": "web", "stack": "prod-gra11"}},
    ]


BAD_OUTPUTS = [
    ("not-json", "{", "outputs.json"),
    (
        "no-prometheus-port",
        json.dumps({**STACK_OUTPUTS, "tiers": {"web": {"load_balancer": {"vip_address": "10.42.0.5"}}}}),
        "prometheus_port",
    ),
    ("no-stack", json.dumps({"tiers": {}}), "stack"),
]


@pytest.mark.parametrize(("text", "named"), [b[1:] for b in BAD_OUTPUTS], ids=[b[0] for b in BAD_OUTPUTS])
def test_bad_stack_outputs_exit_2_naming_what_is_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, named: str
) -> None:
    source = tmp_path / "outputs.json"
    source.write_text(text)
    assert prometheus.main(["--stack-outputs", str(source), "--out", str(tmp_path / "sd.json")]) == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "sd.json").exists()


def test_the_autoscaler_job_finds_the_service_deploy_kubernetes_ships() -> None:
    """The `swell-autoscaler` job resolves the headless Service of deploy/kubernetes by DNS: a
    rename on either side would leave the alerts on the autoscaler without data."""
    root = Path(__file__).resolve().parents[2]
    service = yaml.safe_load((root / "deploy" / "kubernetes" / "service.yaml").read_text())
    meta = service["metadata"]
    assert service["spec"]["clusterIP"] == "None"  # headless: one A record per pod
    port = service["spec"]["ports"][0]["port"]
    expected = f"{meta['name']}.{meta['namespace']}.svc.cluster.local"
    assert prometheus.Site().autoscaler_dns_name == expected
    jobs = prometheus.production_config()["scrape_configs"]
    job = next(j for j in jobs if j["job_name"] == "swell-autoscaler")
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == [expected] and sd["port"] == port
