"""The one place that turns a validated configuration into adapters and a running loop.

Adapters are imported here lazily, so that a laptop running `swell surge` against a SQLite file
never imports the Kubernetes client, and a cluster replica never imports Pulumi's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

from autoscaler.config import (
    AutoscalerConfig,
    ConfigError,
    KubernetesActuatorConfig,
    LocalActuatorConfig,
    PulumiActuatorConfig,
    SQLiteStateConfig,
)
from autoscaler.core.registry import ParamError, build_params
from autoscaler.core.types import Limits
from autoscaler.ports import Actuator, LeaderElector, MetricsSource, StateStore
from autoscaler.service import Autoscaler
from autoscaler.telemetry import Redactor, Telemetry

# Credentials an OpenStack or Kubernetes client may read from the environment: never printed.
SECRET_ENV_VARS = (
    "OS_PASSWORD",
    "OS_APPLICATION_CREDENTIAL_SECRET",
    "OS_TOKEN",
    "PULUMI_ACCESS_TOKEN",
    "PULUMI_CONFIG_PASSPHRASE",
    "PROMETHEUS_TOKEN",
)


def build_redactor(cfg: AutoscalerConfig | None) -> Redactor:
    secrets = [os.environ[name] for name in SECRET_ENV_VARS if os.environ.get(name)]
    if cfg is not None:
        secrets += cfg.secret_values()
    return Redactor(secrets)


def check_policy_params(cfg: AutoscalerConfig) -> None:
    """Build every tier's policy parameters once, so a wrong name or value fails at start-up."""
    for name, tier in cfg.tiers.items():
        try:
            build_params(
                tier.policy,
                capacity_per_instance=tier.capacity_per_instance,
                lead_time_s=tier.lead_time_s,
                # The limits' values do not matter here (the stack's may be unknown yet): names
                # and types are what is checked.
                limits=Limits(min=tier.min or 0, max=max(tier.max or 1, tier.min or 0), quota=tier.quota),
                overrides=tier.policy_params,
            )
        except ParamError as exc:
            message = str(exc).removeprefix(f"{exc.key}: ")
            raise ConfigError(f"tiers.{name}.policy_params.{exc.key}: {message}") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"tiers.{name}.policy_params: {exc}") from None


def build_source(cfg: AutoscalerConfig) -> MetricsSource:
    from autoscaler.adapters.prometheus import PrometheusDemand, PrometheusSettings, TargetQueries

    p = cfg.prometheus
    return PrometheusDemand(
        PrometheusSettings(
            url=p.url,
            bearer_token=p.bearer_token.resolve("prometheus.bearer_token") if p.bearer_token else None,
            basic_auth=(
                p.basic_auth.username,
                p.basic_auth.password.resolve("prometheus.basic_auth.password"),
            )
            if p.basic_auth
            else None,
            ca_file=p.ca_file,
            timeout_s=p.timeout_s,
        ),
        cfg.demand_query,
        TargetQueries(cfg.demand_targets.up, cfg.demand_targets.expected) if cfg.demand_targets else None,
    )


def build_store(cfg: AutoscalerConfig) -> StateStore:
    if isinstance(cfg.state, SQLiteStateConfig):
        from autoscaler.adapters.sqlite_store import SQLiteStateStore

        return SQLiteStateStore(cfg.state.path)
    from autoscaler.adapters.k8s import ConfigMapStateSettings, ConfigMapStateStore

    return ConfigMapStateStore(
        _api_client(cfg), ConfigMapStateSettings(name=cfg.state.name, namespace=cfg.state.namespace)
    )


def _api_client(cfg: AutoscalerConfig) -> Any:  # a kubernetes.client.ApiClient
    from autoscaler.adapters.k8s import ClusterAccess, KubernetesAccessError, build_api_client

    k = cfg.kubernetes
    try:
        return build_api_client(
            ClusterAccess(
                kubeconfig=str(k.kubeconfig.expanduser()) if k.kubeconfig else None, context=k.context
            )
        )
    except KubernetesAccessError as exc:
        raise ConfigError(f"kubernetes: {exc}") from None


def build_actuators(cfg: AutoscalerConfig, only: Collection[str] | None = None) -> dict[str, Actuator]:
    """The actuator of every tier, or of the tiers in `only`: `swell surge --tier video` must not
    need the cluster credentials of a Kubernetes tier it does not touch."""
    tiers = {n: t for n, t in cfg.tiers.items() if only is None or n in only}
    actuators: dict[str, Actuator] = {}
    pulumi_by_stack: dict[tuple[str, str], Actuator] = {}
    k8s_tiers = {n: t.actuator for n, t in tiers.items() if isinstance(t.actuator, KubernetesActuatorConfig)}
    if k8s_tiers:
        from autoscaler.adapters.k8s import DeploymentRef, KubernetesActuator, KubernetesActuatorSettings

        refs = {n: DeploymentRef(name=a.deployment, namespace=a.namespace) for n, a in k8s_tiers.items()}
        shared = KubernetesActuator(_api_client(cfg), KubernetesActuatorSettings(deployments=refs))
        actuators.update(dict.fromkeys(refs, shared))
    for name, tier in tiers.items():
        spec = tier.actuator
        if isinstance(spec, PulumiActuatorConfig):
            from autoscaler.adapters.pulumi import PulumiActuator, PulumiSettings

            key = (str(spec.work_dir), spec.stack)
            if key not in pulumi_by_stack:  # tiers of one stack share one workspace, and one update
                pack = spec.policy_pack
                pulumi_by_stack[key] = PulumiActuator(
                    PulumiSettings(
                        work_dir=spec.work_dir,
                        stack=spec.stack,
                        lock_attempts=spec.lock_attempts,
                        parallel=spec.parallel,
                        update_timeout_s=spec.update_timeout_s,
                        cancel_grace_s=spec.cancel_grace_s,
                        policy_packs=() if pack is None else ((spec.work_dir / pack).resolve(),),
                        policy_pack_configs=()
                        if spec.policy_pack_config is None
                        else ((spec.work_dir / spec.policy_pack_config).resolve(),),
                        # One definition of the cold lead time: the one the pool is sized with is
                        # the one after which the actuator takes a filling instance as configured.
                        cold_lead_s_by_tier={
                            n: t.warm_pool.cold_lead_s
                            for n, t in cfg.tiers.items()
                            if isinstance(t.actuator, PulumiActuatorConfig)
                        },
                    )
                )
            actuators[name] = pulumi_by_stack[key]
        elif isinstance(spec, LocalActuatorConfig):
            raise ConfigError(
                f"tiers.{name}.actuator.kind: `local` runs only inside `swell drill`, "
                "which starts the instances itself"
            )
    return actuators


def resolve_limits(cfg: AutoscalerConfig, actuators: Mapping[str, Actuator]) -> dict[str, tuple[int, int]]:
    """Each tier's (min, max): the stack's own (`swell:tiers.<tier>.min/max`, read through its
    actuator), narrowed by the config's optional min and max; the config's alone when the actuator
    has no limits of its own. A config value that would widen the stack's is an error naming it."""
    out = {}
    for name, tier in cfg.tiers.items():
        own = getattr(actuators.get(name), "limits", None)
        try:
            out[name] = tier.limits(own(name) if callable(own) else None)
        except ConfigError as exc:
            raise ConfigError(f"tiers.{name}.{exc}") from None
    return out


def build_sessions(
    cfg: AutoscalerConfig, actuators: Mapping[str, Actuator]
) -> dict[str, Callable[[str, list[int]], Mapping[int, int | None]]]:
    """Per tier with `sessions_query`: the sessions left on each retiring instance, from Prometheus
    (series labelled `instance` = the Nova name swell-<stack>-<tier>-<i>)."""
    queries = {n: t.sessions_query for n, t in cfg.tiers.items() if t.sessions_query}
    if not queries:
        return {}
    from autoscaler.adapters.prometheus import PrometheusDemand

    source = build_source(cfg)
    assert isinstance(source, PrometheusDemand)

    def reader(query: str) -> Callable[[str, list[int]], Mapping[int, int | None]]:
        def sessions(tier: str, indices: list[int]) -> Mapping[int, int | None]:
            found: dict[int, int | None] = dict.fromkeys(indices)
            for instance, value in source.per_instance(query).items():
                head, _, index = instance.rpartition("-")
                if head.endswith(f"-{tier}") and index.isdigit() and int(index) in found:
                    found[int(index)] = max(0, round(value))
            return found

        return sessions

    return {name: reader(query) for name, query in queries.items()}


def build_elector(cfg: AutoscalerConfig) -> LeaderElector | None:
    le = cfg.leader_election
    if le is None:
        return None
    from autoscaler.adapters.k8s import LeaseLeaderElector, LeaseSettings, default_identity

    settings = LeaseSettings(
        name=le.lease_name,
        namespace=le.namespace,
        lease_duration_s=le.lease_duration_s,
        renew_deadline_s=le.renew_deadline_s,
        retry_period_s=le.retry_period_s,
    )
    return LeaseLeaderElector(_api_client(cfg), settings, identity=le.identity or default_identity())


def build_autoscaler(
    cfg: AutoscalerConfig,
    *,
    dry_run: bool,
    telemetry: Telemetry,
    clock: Callable[[], float] = time.time,
) -> Autoscaler:
    check_policy_params(cfg)
    actuators = build_actuators(cfg)
    return Autoscaler(
        cfg,
        source=build_source(cfg),
        actuators=actuators,
        store=build_store(cfg),
        telemetry=telemetry,
        clock=clock,
        elector=build_elector(cfg),
        dry_run=dry_run,
        limits=resolve_limits(cfg, actuators),
        sessions=build_sessions(cfg, actuators),
    )
