"""What each balanced tier's load balancer is, as data: its listeners, its pool, its health monitor.

Built from the tier catalog's `balancer` entry (swell/data/tiers.yaml: lb_method, persistence, the
traffic listeners' inactivity timeout, extra listeners); the listener shapes, ports and health
checks are here, the same for every balanced tier.

One spec, two renderings, so production and the drill cannot drift apart:

- `stacks/loadbalancer.py` turns it into Octavia resources (pulumi-openstack);
- `loadtests.plumbing.haproxy_config` renders the drill's HAProxy from it, in HTTP mode, as the
  Octavia amphora's HAProxy runs a TERMINATED_HTTPS listener once TLS is off (the drill does not do
  TLS: see `haproxy_config`). Tests compare both renderings with this spec field by field; a
  listener the drill leaves out is named there with why.

Chat's load balancer carries only HTTP: the chat servers are stateless WebSocket servers (docs/chat.md)
and the video bridges log in to their shard's Prosody directly (stacks/fixed.py), no longer through a
TCP listener of chat's.

Pure data (no Pulumi import), so the drill and the tests read it without the Pulumi SDK.

OVHcloud / Octavia facts this spec relies on:

- OVHcloud's Public Cloud Load Balancer is Octavia; its listeners take HTTP, HTTPS, TCP, UDP, SCTP
  and TERMINATED_HTTPS traffic, and the PROMETHEUS protocol "does not handle traffic itself" but
  exports metrics (OVHcloud docs, "Concepts - Load Balancer").
- A PROMETHEUS listener serves /metrics on every address of the load balancer, its floating IP
  included, and supports neither pools nor L7 policies: OVHcloud advises `allowed_cidrs`
  (OVHcloud docs, "Public Cloud Load Balancer monitoring with Prometheus").
- TERMINATED_HTTPS needs a Key Manager (Barbican) certificate reference (`default_tls_container_ref`);
  insert_headers X-Forwarded-For / X-Forwarded-Proto become `option forwardfor` and
  `http-request set-header X-Forwarded-Proto https` in the amphora's HAProxy, and the listener and
  member timeouts become `timeout client` / `timeout connect` / `timeout server`
  (octavia/common/jinja/haproxy/combined_listeners/templates/macros.j2).
- The amphora renders an L7 policy only if it has at least one rule (macros.j2), so the HTTP->HTTPS
  redirect is a REDIRECT_PREFIX policy with a rule matching every path.
- `allowed_cidrs` must be of the VIP's address family, here IPv4 (Octavia refuses others:
  octavia/api/v2/controllers/listener.py, `_validate_cidr_compatible_with_vip`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from swell import tiers

# Octavia listener protocols used here.
TERMINATED_HTTPS = "TERMINATED_HTTPS"
HTTP = "HTTP"
PROMETHEUS = "PROMETHEUS"
# Bytes passed through to the members: the amphora's HAProxy in `mode tcp`.
TCP = "TCP"

HTTPS_PORT = 443
HTTP_PORT = 80
# Any port no traffic listener uses; the stack outputs export it so Prometheus finds it.
PROMETHEUS_PORT = 8088
# Members serve the application in plain HTTP on 80: TLS ends at the load balancer.
MEMBER_PORT = 80
# XMPP client-to-server (RFC 6120): the bridges' login to Prosody, on the load balancer and on the members.
XMPP_PORT = 5222

# What Octavia's `lb_method` names mean to the amphora's HAProxy (`balance ...`).
HAPROXY_BALANCE = {"LEAST_CONNECTIONS": "leastconn", "ROUND_ROBIN": "roundrobin", "SOURCE_IP": "source"}


@dataclass(frozen=True)
class Redirect:
    """An L7 policy REDIRECT_PREFIX to `<scheme>://<the tier's public host>`, keeping the path; its
    rule (PATH STARTS_WITH "/") matches every request."""

    scheme: str = "https"
    http_code: int = 301
    rule_type: str = "PATH"
    rule_compare_type: str = "STARTS_WITH"
    rule_value: str = "/"


@dataclass(frozen=True)
class Listener:
    """One Octavia listener. Timeouts in milliseconds (Octavia's unit); None for PROMETHEUS, which
    carries no traffic. `insert_headers` are the headers Octavia adds to requests sent to members."""

    name: str
    protocol: str
    port: int
    timeout_client_data_ms: int | None = None
    timeout_member_connect_ms: int | None = None
    timeout_member_data_ms: int | None = None
    insert_headers: tuple[str, ...] = ()
    redirect: Redirect | None = None
    # A pool of its own, instead of the tier's (BalancedTier.pool): traffic that is not the tier's
    # offered demand, such as the bridges' XMPP logins on chat.
    pool: Pool | None = None
    # Reachable from the private network only (`allowed_cidrs`), like the PROMETHEUS listener is from
    # the monitoring networks: the floating IP reaches every listener of the load balancer.
    private_only: bool = False

    @property
    def forwards_to_pool(self) -> bool:
        """Its requests reach the tier's pool: the tier's offered demand (a redirect never does)."""
        return self.protocol in (TERMINATED_HTTPS, HTTP) and self.redirect is None and self.pool is None

    @property
    def terminates_tls(self) -> bool:
        """Needs the Key Manager certificate (`default_tls_container_ref`)."""
        return self.protocol == TERMINATED_HTTPS

    @property
    def monitoring_only(self) -> bool:
        """Reachable only from the monitoring networks (`allowed_cidrs`)."""
        return self.protocol == PROMETHEUS


@dataclass(frozen=True)
class HealthMonitor:
    """Octavia health monitor: `delay` between checks, `timeout` per check, a member goes up after
    `max_retries` successes and down after `max_retries_down` failures (HAProxy's rise and fall)."""

    type: str = "HTTP"
    # HTTP checks only: Octavia refuses these options on a TCP monitor.
    http_method: str | None = "GET"
    url_path: str | None = "/healthz"
    expected_codes: str | None = "200"
    delay_s: int = 5
    timeout_s: int = 3
    max_retries: int = 3
    max_retries_down: int = 3

    def __post_init__(self) -> None:
        http = (self.http_method, self.url_path, self.expected_codes)
        if self.type in ("HTTP", "HTTPS") and None in http:
            raise ValueError(f"an {self.type} monitor needs http_method, url_path and expected_codes")
        if self.type not in ("HTTP", "HTTPS") and http != (None, None, None):
            raise ValueError(f"a {self.type} monitor takes no HTTP options (Octavia refuses them)")


@dataclass(frozen=True)
class Pool:
    """The members' pool behind the traffic listener: plain HTTP to `member_port`, checked on
    `monitor_port`. `persistence` is Octavia's session persistence type, or None."""

    protocol: str
    lb_method: str
    member_port: int
    monitor_port: int
    monitor: HealthMonitor
    persistence: str | None = None


@dataclass(frozen=True)
class BalancedTier:
    tier: str
    listeners: tuple[Listener, ...]
    pool: Pool

    @property
    def traffic(self) -> Listener:
        """The listener that forwards to the pool."""
        (listener,) = [x for x in self.listeners if x.forwards_to_pool]
        return listener

    @property
    def prometheus(self) -> Listener:
        (listener,) = [x for x in self.listeners if x.monitoring_only]
        return listener

    @property
    def own_pools(self) -> tuple[tuple[Listener, Pool], ...]:
        """The listeners with a pool of their own, and that pool (chat: the bridges' XMPP)."""
        return tuple((x, x.pool) for x in self.listeners if x.pool is not None)


# Octavia's own default timeouts (50 s of inactivity, 5 s to connect), stated so both renderings use them.
DEFAULT_DATA_TIMEOUT_MS = 50_000
CONNECT_TIMEOUT_MS = 5_000
# Chat holds a WebSocket (/xmpp-websocket) per user; Octavia has no tunnel timeout, so client and
# member inactivity timeouts must outlast an idle session.
LONG_SESSION_TIMEOUT_MS = 3_600_000
# Members see the client's address and that it came over TLS (nginx logs, the app's redirects).
FORWARDED_HEADERS = ("X-Forwarded-For", "X-Forwarded-Proto")


def _listeners(data_timeout_ms: int) -> tuple[Listener, ...]:
    return (
        Listener(
            "https",
            TERMINATED_HTTPS,
            HTTPS_PORT,
            timeout_client_data_ms=data_timeout_ms,
            timeout_member_connect_ms=CONNECT_TIMEOUT_MS,
            timeout_member_data_ms=data_timeout_ms,
            insert_headers=FORWARDED_HEADERS,
        ),
        Listener(
            "http",
            HTTP,
            HTTP_PORT,
            timeout_client_data_ms=DEFAULT_DATA_TIMEOUT_MS,
            timeout_member_connect_ms=CONNECT_TIMEOUT_MS,
            timeout_member_data_ms=DEFAULT_DATA_TIMEOUT_MS,
            redirect=Redirect(),
        ),
        Listener("prometheus", PROMETHEUS, PROMETHEUS_PORT),
    )


# A TCP connect to the member's port: Prosody accepts connections (it speaks first only after the
# client's stream header, so an HTTP check cannot be used).
TCP_MONITOR = HealthMonitor(type="TCP", http_method=None, url_path=None, expected_codes=None)

# A TCP listener passing XMPP through to Prosody's c2s port, from the private network only. No tier
# of the packaged catalog uses it since the bridges log in to their shard's Prosody directly; it stays
# a catalog option (`extra_listeners: [xmpp]`) because loadtests/plumbing.py still names it in
# DRILL_OMITTED (remove both together). A bridge's XMPP stream stays open as long as the bridge runs:
# the timeouts outlast its keepalive (Smack, the bridge's XMPP library, pings every 30 minutes).
XMPP = Listener(
    "xmpp",
    TCP,
    XMPP_PORT,
    timeout_client_data_ms=LONG_SESSION_TIMEOUT_MS,
    timeout_member_connect_ms=CONNECT_TIMEOUT_MS,
    timeout_member_data_ms=LONG_SESSION_TIMEOUT_MS,
    pool=Pool(TCP, "LEAST_CONNECTIONS", XMPP_PORT, XMPP_PORT, TCP_MONITOR),
    private_only=True,
)

# Listeners a catalog entry may add to its balancer, by the name it uses (`extra_listeners`).
EXTRA_LISTENERS: Mapping[str, Listener] = {"xmpp": XMPP}


def balanced_tier(entry: tiers.Tier) -> BalancedTier:
    """The load balancer of a balanced catalog entry (why each tier chose its method, persistence and
    timeouts is said beside its entry in swell/data/tiers.yaml)."""
    if entry.balancer is None:
        raise KeyError(f"{entry.name!r} has no load balancer")
    b = entry.balancer
    return BalancedTier(
        entry.name,
        (*_listeners(b.data_timeout_ms), *(EXTRA_LISTENERS[name] for name in b.extra_listeners)),
        Pool(HTTP, b.lb_method, MEMBER_PORT, MEMBER_PORT, HealthMonitor(), persistence=b.persistence),
    )


def specs() -> dict[str, BalancedTier]:
    """Every balanced tier's load balancer, in catalog order."""
    return {entry.name: balanced_tier(entry) for entry in tiers.load().balanced}


def spec(tier: str) -> BalancedTier:
    found = specs()
    try:
        return found[tier]
    except KeyError:
        raise KeyError(f"{tier!r} has no load balancer; balanced tiers: {', '.join(found)}") from None
