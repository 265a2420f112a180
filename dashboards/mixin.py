"""The monitoring mixin: selectors, thresholds, recording rules, alerts and the Grafana dashboard.

This is the one place that knows which exporter metric means what (in the spirit of
kubernetes-mixin): every rule, alert and panel is built from `MixinConfig`, and
`python -m dashboards` writes the files Prometheus and Grafana load. The suite checks that the
committed files equal what this module generates, so they cannot drift apart.

Demand is measured as *offered* load, never as served throughput or CPU (ARCHITECTURE.md, "The
demand signal"): a saturated tier cannot report more than 100% busy, so only offered load can ask
for x4 in one step. Which tiers there are, and how each one's demand is counted (its kind of
traffic), comes from the tier catalog (swell/data/tiers.yaml); the rules list the catalog's tiers
by kind of traffic, and the dashboard's tier variable lists the tiers that have a demand series.

- requests (web): HTTP requests the load balancer sends to the tier's pool, per second, refused ones (503, no
  member able to take them) included. Counted at the pool, not at the listeners: the load balancer
  answers the plain-HTTP redirect (:80) and its own PROMETHEUS listener itself, and neither is work
  for the tier. It can count requests because TLS ends at the load balancer (TERMINATED_HTTPS).
- sessions (chat): concurrent WebSocket sessions the pool holds, queued ones included. Only pools
  that serve HTTP count (`http_pools`): a balancer with a TCP pool of its own (a catalog's
  `extra_listeners: [xmpp]`, Prosody's logins) passes connections that are not users.
- participants (video): participants (endpoints) on the bridges, or what the join rate asks for if
  more. Jitsi Videobridge never refuses a participant: Jicofo keeps placing them and `stress_level`
  climbs past 1, so endpoints is the offered demand. But Jicofo admits only about 30 new participants
  per bridge per minute (bridges report their stats every 5 s, so it cannot see a burst land): a
  burst of J joins a minute needs J / 30 bridges however few participants there are yet, J / 30 x
  `participants_per_bridge` in participants (`JitsiLimits`). The demand is the larger of the two:
  steady state it is the participants; a join burst the limit would spread too thin asks for more.
  Not CPU: a bridge's own load measure is its stress level (shown per tier, avg and max).

The load balancer metrics use the names of Octavia's PROMETHEUS listener, whose proxy renames
HAProxy's `haproxy_frontend_*` to `octavia_listener_*` (label `listener`) and `haproxy_backend_*` to
`octavia_pool_*` (label `pool`) (octavia/cmd/prometheus_proxy.py). A drill scraping a bare HAProxy
renames them the same way with metric_relabel_configs (`lb_metric_relabel()`, in production's scrape
configuration too, where it changes nothing), so one rule set serves both.
Every series carries a `tier` label, set by the scrape configuration (dashboards/prometheus.py: Nova
metadata `tier` through openstack_sd, the stack outputs' tier for load balancers).

Each alert links to its runbook: `runbook_base_url` + `#<alert name lowercased>`, an absolute URL
(Alertmanager and Grafana show it outside this repository). The default is the repository's
docs/runbooks.md; `python -m dashboards --runbook-base-url URL` (or SWELL_RUNBOOK_BASE_URL) generates
the files for another place.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml

from swell import tiers


@dataclass(frozen=True)
class Selectors:
    """Label matchers for each scrape job, without braces."""

    load_balancer: str = 'job="swell-lb"'
    node: str = 'job="node"'
    video_bridge: str = 'job="jvb"'
    autoscaler: str = 'job="swell-autoscaler"'


@dataclass(frozen=True)
class Thresholds:
    """Alert thresholds; each says what an on-call engineer would act on."""

    # Demand averaged over 5 minutes at least doubled within 30 minutes: the start of a 4-5x day.
    surge_growth_factor: float = 2.0
    surge_window: str = "30m"
    surge_for: str = "5m"
    # More than 1% of requests refused (5xx at the load balancer), or a bridge past full stress.
    refused_ratio: float = 0.01
    video_stress: float = 1.0
    exhausted_for: str = "5m"
    # The autoscaler loops every 15 s; four missed loops is stale.
    autoscaler_stale_seconds: int = 60
    autoscaler_stale_for: str = "2m"
    actuation_failing_for: str = "10m"
    capped_for: str = "10m"
    # Two cold lead times (600 s each: create, boot, configure) and slack: a refill that takes longer
    # is not slow, it is failing.
    warm_pool_short_for: str = "25m"


# The repository's docs/runbooks.md as people open it in a browser (the repository playbooks.repo names).
DEFAULT_RUNBOOK_BASE_URL = "https://git.example.org/swell/swell/-/blob/main/docs/runbooks.md"


def runbook_base_url(value: str) -> str:
    """`value` if it is an absolute http(s) URL without a fragment (each alert adds its own)."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
        raise ValueError(
            f"runbook base URL {value!r}: expected an absolute http(s) URL without '#', "
            "like https://git.example.org/swell/swell/-/blob/main/docs/runbooks.md"
        )
    return value


@dataclass(frozen=True)
class JitsiLimits:
    """Jitsi's own limits, which the video demand signal respects. About 30 new participants per
    bridge per minute: Jicofo's join-rate limit, because bridges regenerate their stats only every
    5 s (jitsi-videobridge doc/statistics.md, `videobridge.stats.interval`). About 80-100
    participants per bridge, as Jitsi documents; the low end here. Keep `participants_per_bridge`
    equal to the video tier's `capacity_per_instance` in the autoscaler's configuration: the join
    term is then exactly J / 30 bridges."""

    joins_per_bridge_per_minute: float = 30.0
    participants_per_bridge: float = 80.0

    def __post_init__(self) -> None:
        for name in ("joins_per_bridge_per_minute", "participants_per_bridge"):
            if not getattr(self, name) > 0:
                raise ValueError(f"JitsiLimits.{name} must be > 0, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class MixinConfig:
    selectors: Selectors = field(default_factory=Selectors)
    thresholds: Thresholds = field(default_factory=Thresholds)
    jitsi: JitsiLimits = field(default_factory=JitsiLimits)
    # Where each alert's runbook lives; an alert links to `<base>#<alertname lowercased>`.
    runbook_base_url: str = DEFAULT_RUNBOOK_BASE_URL
    rate_window: str = "1m"

    def __post_init__(self) -> None:
        runbook_base_url(self.runbook_base_url)


def tier_from_proxy() -> dict[str, Any]:
    """The drill runs one HAProxy for every tier: `tier` from its proxy names (`web-https`,
    `web-pool`), set before the renames. Octavia's series have no `proxy` label, so in production
    this does nothing."""
    return {
        "source_labels": ["proxy"],
        "regex": f"({'|'.join(tiers.names())})-.+",
        "target_label": "tier",
        "replacement": "$1",
    }


# Metric renames done by Octavia's amphora prometheus-proxy, for a drill that scrapes bare HAProxy.
HAPROXY_AS_OCTAVIA_RELABEL: list[dict[str, Any]] = [
    {
        "source_labels": ["__name__"],
        "regex": "haproxy_frontend_(.*)",
        "target_label": "__name__",
        "replacement": "octavia_listener_$1",
    },
    {
        "source_labels": ["__name__"],
        "regex": "haproxy_backend_(.*)",
        "target_label": "__name__",
        "replacement": "octavia_pool_$1",
    },
    {"source_labels": ["__name__", "proxy"], "regex": "octavia_listener_.*;(.+)", "target_label": "listener"},
    {"source_labels": ["__name__", "proxy"], "regex": "octavia_pool_.*;(.+)", "target_label": "pool"},
    {"regex": "proxy", "action": "labeldrop"},
]


def lb_metric_relabel() -> list[dict[str, Any]]:
    """The load balancer job's metric relabels, production's and the drill's alike
    (dashboards/prometheus.py)."""
    return [tier_from_proxy(), *HAPROXY_AS_OCTAVIA_RELABEL]


# The one query the autoscaler asks every interval: offered demand of every tier at once.
DEMAND_RECORD = "tier:swell_offered_demand:current"
# Requests sent to a tier's pool, refused ones included (the web tier's demand, before rate()).
OFFERED_REQUESTS_METRIC = "octavia_pool_http_requests_total"


def http_pools(metric: str, selector: str) -> str:
    """`metric` of the pools that serve HTTP only: the one place that keeps other pools out of demand.

    A balancer may have a TCP pool besides its HTTP one (stacks/listeners.py, `XMPP`: Prosody's
    logins on 5222, as chat's had before Prosody moved to the Jitsi shards), whose connections are
    not users. The pool label cannot tell them apart
    in production: Octavia names HAProxy's backends `<pool id>:<listener id>`, so `pool` is a pair of
    UUIDs (octavia/common/jinja/haproxy/combined_listeners/templates/macros.j2). What does tell them
    apart is the protocol: HAProxy exports `*_http_requests_total` only for backends in HTTP mode
    (tests/dashboards/test_http_pools_on_real_haproxy.py shows it on Debian's HAProxy), so a series
    of a pool that has that counter belongs to an HTTP pool, whatever its name. `and` keeps exactly
    the series whose labels (job, instance, tier, pool) an HTTP pool's counter also has."""
    return f"({metric}{{{selector}}} and {OFFERED_REQUESTS_METRIC}{{{selector}}})"


READY_RECORD = "tier:swell_ready_instances:count"
UTILIZATION_RECORD = "tier:swell_utilization:ratio"
# Each kind of traffic's demand record, in the unit its tiers' capacity is sized in.
TRAFFIC_RECORDS = {
    "requests": "tier:swell_offered_requests:rate1m",
    "sessions": "tier:swell_offered_sessions:sum",
    "participants": "tier:swell_offered_participants:demand",
}
# Participants that joined a tier's bridges in the last minute (the counter every bridge exports).
JOINS_RECORD = "tier:swell_participant_joins:increase1m"
STRESS_AVG_RECORD = "tier:jitsi_jvb_stress_level:avg"
STRESS_MAX_RECORD = "tier:jitsi_jvb_stress_level:max"


def tier_matcher(names: Sequence[str]) -> str:
    """`tier="a"` for one tier, `tier=~"a|b"` for several."""
    return f'tier="{names[0]}"' if len(names) == 1 else f'tier=~"{"|".join(names)}"'


def _demand_expr() -> str:
    """Each tier's demand from its kind of traffic's record, in catalog order."""
    return " or ".join(
        f"{TRAFFIC_RECORDS[t.traffic]}{{{tier_matcher([t.name])}}}" for t in tiers.load().tiers
    )


def _bridge_tiers() -> list[str]:
    """Tiers whose instances report Jitsi Videobridge metrics (participants, stress level)."""
    return [t.name for t in tiers.load().tiers if t.bridge_metrics]


def _recording_rules(cfg: MixinConfig) -> list[dict[str, str]]:
    lb, node, jvb, w = (
        cfg.selectors.load_balancer,
        cfg.selectors.node,
        cfg.selectors.video_bridge,
        cfg.rate_window,
    )
    return [
        {
            "record": "tier:swell_offered_requests:rate1m",
            "expr": f"sum by (tier) (rate({OFFERED_REQUESTS_METRIC}{{{lb}}}[{w}]))",
        },
        {
            "record": "tier:swell_refused_requests:rate1m",
            "expr": f'sum by (tier) (rate(octavia_pool_http_responses_total{{{lb},code="5xx"}}[{w}]))',
        },
        {
            "record": "tier:swell_refused_requests:ratio_rate1m",
            "expr": "tier:swell_refused_requests:rate1m / (tier:swell_offered_requests:rate1m > 0)",
        },
        {
            "record": "tier:swell_queued_requests:sum",
            "expr": f"sum by (tier) {http_pools('octavia_pool_current_queue', lb)}",
        },
        {
            "record": "tier:swell_offered_sessions:sum",
            "expr": f"sum by (tier) {http_pools('octavia_pool_current_sessions', lb)}",
        },
        {
            "record": "tier:swell_offered_participants:sum",
            "expr": f"sum by (tier) (jitsi_jvb_endpoints{{{jvb}}})",
        },
        # Video demand (module docstring): the larger of the participants and the join rate x
        # participants per bridge / joins a bridge admits per minute. `increase` over one minute is
        # the joins Jicofo's per-minute limit counts; the `signal` label keeps both series apart
        # for `max` (an `or` of equal label sets would keep only the first) and either alone counts.
        {
            "record": JOINS_RECORD,
            "expr": f"sum by (tier) (increase(jitsi_jvb_total_participants{{{jvb}}}[{w}]))",
        },
        {
            "record": TRAFFIC_RECORDS["participants"],
            "expr": (
                "max by (tier) (label_replace(tier:swell_offered_participants:sum,"
                ' "signal", "participants", "", "")'
                f" or label_replace({JOINS_RECORD} * {cfg.jitsi.participants_per_bridge:g}"
                f' / {cfg.jitsi.joins_per_bridge_per_minute:g}, "signal", "join_rate", "", ""))'
            ),
        },
        # The bridges' own load measure (load / threshold, may pass 1): the average says how full
        # the tier is, the maximum whether one bridge is overloaded while others idle (conferences
        # stay on their bridge, so load does not even out by itself).
        {"record": STRESS_AVG_RECORD, "expr": f"avg by (tier) (jitsi_jvb_stress_level{{{jvb}}})"},
        {"record": STRESS_MAX_RECORD, "expr": f"max by (tier) (jitsi_jvb_stress_level{{{jvb}}})"},
        {
            # One series per tier, in the unit that tier's capacity is sized in.
            "record": DEMAND_RECORD,
            "expr": _demand_expr(),
        },
        {
            "record": "tier:swell_offered_demand:avg5m",
            "expr": f"avg_over_time({DEMAND_RECORD}[5m])",
        },
        {
            "record": f"tier:swell_offered_demand:growth{cfg.thresholds.surge_window}",
            "expr": (
                "tier:swell_offered_demand:avg5m"
                f" / (tier:swell_offered_demand:avg5m offset {cfg.thresholds.surge_window} > 0)"
            ),
        },
        {
            "record": READY_RECORD,
            "expr": f"count by (tier) (up{{{node}}} == 1)",
        },
        {
            # Bridges report their own stress (load / threshold, may exceed 1); other tiers use CPU.
            "record": UTILIZATION_RECORD,
            "expr": (
                f"{STRESS_AVG_RECORD}"
                f' or (1 - avg by (tier) (rate(node_cpu_seconds_total{{{node},mode="idle"}}[{w}])))'
            ),
        },
    ]


# --- Scrape targets behind each tier's demand sum (issue 11: the autoscaler's partial-scrape check) ---
# Kept in one block: the autoscaler's `demand_targets` reads these two records and holds a tier whose
# demand sum lacks some of its targets (a sum over bridges drops when exporters time out, while its
# timestamp stays fresh). Same jobs as DEMAND_RECORD: requests and sessions at the load balancer,
# participants on the bridges. `up` is 1 or 0 per target: its sum counts the targets whose last
# scrape succeeded (0 when all failed, where `count(up == 1)` would give no series), its count those
# Prometheus knows.
DEMAND_TARGETS_UP_RECORD = "tier:swell_demand_targets:up"
DEMAND_TARGETS_COUNT_RECORD = "tier:swell_demand_targets:count"


def _demand_target_rules(cfg: MixinConfig) -> list[dict[str, str]]:
    lb, jvb = cfg.selectors.load_balancer, cfg.selectors.video_bridge

    at_lb = [t.name for t in tiers.load().tiers if t.traffic != "participants"]
    on_bridges = [t.name for t in tiers.load().tiers if t.traffic == "participants"]

    def per_tier(op: str) -> str:
        parts = [
            f"{op} by (tier) (up{{{job},{tier_matcher(names)}}})"
            for job, names in ((lb, at_lb), (jvb, on_bridges))
            if names
        ]
        return " or ".join(parts)

    return [
        {"record": DEMAND_TARGETS_UP_RECORD, "expr": per_tier("sum")},
        {"record": DEMAND_TARGETS_COUNT_RECORD, "expr": per_tier("count")},
    ]


# --- end of the demand targets block ---


def _alert(
    cfg: MixinConfig, name: str, expr: str, for_: str, severity: str, summary: str, description: str
) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": for_,
        "labels": {"severity": severity},
        "annotations": {
            "summary": summary,
            "description": description,
            "runbook_url": f"{cfg.runbook_base_url}#{name.lower()}",
        },
    }


def _alerts(cfg: MixinConfig) -> list[dict[str, Any]]:
    t, a = cfg.thresholds, cfg.selectors.autoscaler
    return [
        _alert(
            cfg,
            "SwellSurgeDetected",
            f"tier:swell_offered_demand:growth{t.surge_window} >= {t.surge_growth_factor}",
            t.surge_for,
            "warning",
            '{{ $labels.tier }} demand grew x{{ $value | printf "%.1f" }} in ' + t.surge_window,
            "Offered demand on the {{ $labels.tier }} tier at least doubled within "
            f"{t.surge_window}. The autoscaler should be adding capacity now: "
            "compare desired and ready instances.",
        ),
        _alert(
            cfg,
            "SwellCapacityExhausted",
            f"tier:swell_refused_requests:ratio_rate1m > {t.refused_ratio}"
            f" or tier:swell_utilization:ratio{{{tier_matcher(_bridge_tiers())}}} > {t.video_stress}",
            t.exhausted_for,
            "critical",
            "{{ $labels.tier }} is refusing work",
            "The {{ $labels.tier }} tier refuses more than "
            f"{t.refused_ratio:.0%} of requests, or its bridges run past full stress. Users see errors.",
        ),
        _alert(
            cfg,
            "SwellAutoscalerStale",
            f"time() - max(swell_autoscaler_last_successful_loop_timestamp_seconds{{{a}}})"
            f" > {t.autoscaler_stale_seconds}"
            f" or absent(swell_autoscaler_last_successful_loop_timestamp_seconds{{{a}}})",
            t.autoscaler_stale_for,
            "critical",
            "The autoscaler has not completed a loop recently",
            f"No successful autoscaler loop for more than {t.autoscaler_stale_seconds} s: "
            "capacity follows no demand until it is back.",
        ),
        _alert(
            cfg,
            "SwellActuationFailing",
            f"sum by (tier) (rate(swell_autoscaler_actuation_errors_total{{{a}}}[5m])) > 0",
            t.actuation_failing_for,
            "critical",
            "Scaling {{ $labels.tier }} keeps failing",
            "The autoscaler decided a new size for {{ $labels.tier }} but applying it "
            f"(pulumi up or the Kubernetes API) has failed for {t.actuation_failing_for}.",
        ),
        _alert(
            cfg,
            "SwellCappedByLimit",
            f'max by (tier, limit) (swell_autoscaler_limited{{{a},limit=~"max|quota"}}) == 1',
            t.capped_for,
            "warning",
            "{{ $labels.tier }} wants more instances than its {{ $labels.limit }} allows",
            "The autoscaler wants more {{ $labels.tier }} instances but its {{ $labels.limit }} "
            "caps it. Raise tiers.{{ $labels.tier }}.max or the OVHcloud quota before demand outgrows it.",
        ),
        _alert(
            cfg,
            "SwellWarmPoolShort",
            f'max by (tier) (swell_autoscaler_warm_pool_instances{{{a},state="warm"}})'
            f" < max by (tier) (swell_autoscaler_warm_pool_target_instances{{{a}}})",
            t.warm_pool_short_for,
            "warning",
            "{{ $labels.tier }}'s warm pool stays below its target",
            "Fewer {{ $labels.tier }} instances are shelved and ready than the warm pool's target for "
            f"{t.warm_pool_short_for}, two refills' time: refills are failing (creation, configuration "
            "or shelving). A spike now waits for the cold lead time instead of the warm one.",
        ),
    ]


def rules_document(cfg: MixinConfig | None = None) -> dict[str, Any]:
    """The Prometheus rule file: recording rules first, then alerts."""
    cfg = cfg or MixinConfig()
    return {
        "groups": [
            {"name": "swell.rules", "rules": _recording_rules(cfg)},
            {"name": "swell.demand_targets", "rules": _demand_target_rules(cfg)},
            {"name": "swell.alerts", "rules": _alerts(cfg)},
        ]
    }


def _panel(
    panel_id: int,
    title: str,
    exprs: list[tuple[str, str]],
    y: int,
    x: int,
    unit: str,
    description: str | None = None,
) -> dict:
    return {
        "id": panel_id,
        "type": "timeseries",
        "title": title,
        **({"description": description} if description else {}),
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(exprs)
        ],
    }


def dashboard_document(cfg: MixinConfig | None = None) -> dict[str, Any]:
    """The Grafana dashboard: per tier, demand against capacity, and what the autoscaler did."""
    cfg = cfg or MixinConfig()
    a, j = cfg.selectors.autoscaler, cfg.jitsi
    sel = 'tier=~"$tier"'
    panels = [
        _panel(1, "Offered demand", [(f"{DEMAND_RECORD}{{{sel}}}", "{{tier}}")], 0, 0, "short"),
        _panel(
            2,
            "Instances: ready, current, desired, warm pool",
            [
                (f"{READY_RECORD}{{{sel}}}", "{{tier}} ready"),
                (f"swell_autoscaler_current_instances{{{a},{sel}}}", "{{tier}} current"),
                (f"swell_autoscaler_desired_instances{{{a},{sel}}}", "{{tier}} desired"),
                # Shelved and being configured for the pool: what a surge unshelves before creating.
                (
                    f"sum by (tier) (swell_autoscaler_warm_pool_instances{{{a},{sel}}})",
                    "{{tier}} warm pool",
                ),
            ],
            0,
            12,
            "short",
        ),
        _panel(
            3,
            "Utilization (CPU, or bridge stress)",
            [(f"{UTILIZATION_RECORD}{{{sel}}}", "{{tier}}")],
            8,
            0,
            "percentunit",
        ),
        _panel(
            4,
            "Refused requests and queue",
            [
                (f"tier:swell_refused_requests:ratio_rate1m{{{sel}}}", "{{tier}} refused"),
                (f"tier:swell_queued_requests:sum{{{sel}}}", "{{tier}} queued"),
            ],
            8,
            12,
            "short",
        ),
        _panel(
            5,
            "Scaling decisions",
            [
                (
                    f"sum by (tier, direction) (increase(swell_autoscaler_decisions_total{{{a},{sel}}}[5m]))",
                    "{{tier}} {{direction}}",
                )
            ],
            16,
            0,
            "short",
        ),
        _panel(
            6,
            "Demand growth over " + cfg.thresholds.surge_window,
            [(f"tier:swell_offered_demand:growth{cfg.thresholds.surge_window}{{{sel}}}", "{{tier}}")],
            16,
            12,
            "short",
        ),
        _panel(
            7,
            "Video: participants, join-rate demand, bridge stress",
            [
                (f"tier:swell_offered_participants:sum{{{sel}}}", "{{tier}} participants"),
                (
                    f"{JOINS_RECORD}{{{sel}}}"
                    f" * {j.participants_per_bridge:g} / {j.joins_per_bridge_per_minute:g}",
                    "{{tier}} joins/min x participants per bridge / joins per bridge per minute",
                ),
                (f"{TRAFFIC_RECORDS['participants']}{{{sel}}}", "{{tier}} demand (the larger)"),
            ],
            24,
            0,
            "short",
            "Video demand is what Jitsi measures, not CPU: participants on the bridges, or, if larger, "
            f"the joins of the last minute x {j.participants_per_bridge:g} participants per bridge / "
            f"{j.joins_per_bridge_per_minute:g} joins a bridge admits per minute. Jicofo admits about 30 "
            "new participants per bridge per minute because bridges report their stats only every 5 s: "
            "a join burst needs that many bridges before the participants are there.",
        ),
        _panel(
            8,
            "Video: bridge stress (avg, max)",
            [
                (f"{STRESS_AVG_RECORD}{{{sel}}}", "{{tier}} avg"),
                (f"{STRESS_MAX_RECORD}{{{sel}}}", "{{tier}} max"),
            ],
            24,
            12,
            "percentunit",
            "jitsi_jvb_stress_level, each bridge's own load / threshold (may pass 1: a bridge never "
            "refuses a participant). Average: how full the tier is; maximum: one bridge overloaded while "
            "others idle (a conference stays on its bridge). Jicofo places no new conference on a bridge "
            "past 0.8 while another is below it.",
        ),
    ]
    return {
        "uid": "swell-capacity",
        "title": "swell: capacity per tier",
        "tags": ["swell"],
        "timezone": "utc",
        "schemaVersion": 39,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus"},
                {
                    # The tiers that have a demand series: a tier added to the catalog shows up here
                    # once Prometheus records its demand, with no edit of the dashboard.
                    "name": "tier",
                    "type": "query",
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "query": f"label_values({DEMAND_RECORD}, tier)",
                    "definition": f"label_values({DEMAND_RECORD}, tier)",
                    # Refreshed when the dashboard loads (Grafana's "On dashboard load").
                    "refresh": 1,
                    "sort": 0,
                    "multi": True,
                    "includeAll": True,
                    "current": {"text": "All", "value": "$__all"},
                },
            ]
        },
        "panels": panels,
    }


def render_rules(cfg: MixinConfig | None = None) -> str:
    header = (
        "# Generated by `python -m dashboards` from dashboards/mixin.py: edit that, not this file.\n"
        "# Video demand (tier:swell_offered_participants:demand) is what Jitsi measures, not CPU: the\n"
        "# participants on the bridges, or, if larger, the joins of the last minute x participants per\n"
        "# bridge / the ~30 joins per bridge per minute Jicofo admits (bridges report stats every 5 s),\n"
        "# so a join burst the limit would spread too thin counts as demand. Bridge stress\n"
        "# (jitsi_jvb_stress_level, avg and max per tier) is the bridges' own load measure.\n"
    )
    return header + yaml.safe_dump(rules_document(cfg), sort_keys=False, width=120)


def render_dashboard(cfg: MixinConfig | None = None) -> str:
    return json.dumps(dashboard_document(cfg), indent=2) + "\n"
