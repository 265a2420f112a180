"""The Octavia load balancer of the web and chat tiers, and the certificate it terminates TLS with.

`LoadBalancer` turns a tier's spec (`stacks/listeners.py`: listeners, pool, health monitor) into
Octavia resources; the drill's HAProxy is rendered from the same spec. TLS ends here (listener
TERMINATED_HTTPS on 443), so the load balancer sees every HTTP request: its PROMETHEUS listener
counts them, which is the web tier's offered demand (ARCHITECTURE.md, "The demand signal"). Members
get plain HTTP on port 80 over the private network, with X-Forwarded-For/Proto; an HTTP listener on
80 redirects to HTTPS; the PROMETHEUS listener answers only the monitoring networks. A listener with a
pool of its own (an `xmpp` TCP listener, should a catalog entry name one) gets that pool, its monitor and one
member per instance, and answers only the private network.

`TlsCertificate` stores the stack's PEM certificate, key and chain in the Key Manager (Barbican) as
secrets plus a `certificate` container, the form Octavia's default_tls_container_ref reads (Octavia
reads a PKCS12 secret first, then such a container: octavia/certificates/manager/barbican.py). The
payloads stay Pulumi secrets, so `pulumi preview` and the state never show them in clear.

The VIP is on the private subnet; a floating IP from Ext-Net gives it a public address
(pulumi-openstack 5.x: networking.FloatingIp + networking.FloatingIpAssociate).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_openstack as openstack

from stacks.listeners import BalancedTier, Listener, Pool

MEMBER_WEIGHT, MEMBER_DRAINING_WEIGHT = 1, 0


@dataclass(frozen=True)
class TlsCertificateArgs:
    stack: str
    # PEM; the key (and so the whole container) is a secret.
    certificate: pulumi.Input[str]
    private_key: pulumi.Input[str]
    chain: pulumi.Input[str] | None = None


class TlsCertificate(pulumi.ComponentResource):
    container_ref: pulumi.Output[str]

    def __init__(self, name: str, args: TlsCertificateArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("swell:openstack:TlsCertificate", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        parts = [
            ("certificate", "certificate", args.certificate),
            ("private_key", "private", args.private_key),
        ]
        if args.chain is not None:
            parts.append(("intermediates", "certificate", args.chain))
        refs = []
        for role, secret_type, payload in parts:
            secret = openstack.keymanager.SecretV1(
                f"{name}-{role.replace('_', '-')}",
                name=f"swell-{args.stack}-tls-{role}",
                secret_type=secret_type,
                payload=pulumi.Output.secret(payload),
                payload_content_type="text/plain",
                opts=child,
            )
            refs.append(
                openstack.keymanager.ContainerV1SecretRefArgs(name=role, secret_ref=secret.secret_ref)
            )
        container = openstack.keymanager.ContainerV1(
            f"{name}-container",
            name=f"swell-{args.stack}-tls",
            type="certificate",
            secret_refs=refs,
            opts=child,
        )
        self.container_ref = container.container_ref
        self.register_outputs({"container_ref": container.container_ref})


@dataclass(frozen=True)
class LoadBalancerArgs:
    stack: str
    tier: str
    subnet_id: pulumi.Input[str]
    external_network: str
    # (instance index, private address, retiring): members are named by index so scaling keeps
    # existing ones; a retiring instance's member has weight 0 (no new connections, open ones kept).
    members: Sequence[tuple[int, pulumi.Input[str], bool]]
    spec: BalancedTier
    tls_container_ref: pulumi.Input[str]
    # The tier's public name: plain-HTTP requests are redirected to https://<public_host>/<path>.
    public_host: str
    # Who may scrape the PROMETHEUS listener (IPv4, never the whole internet: stacks/config.py).
    monitoring_cidrs: Sequence[str]
    # Who may reach the private-only listeners (an `xmpp` TCP listener): the private network.
    private_cidrs: Sequence[str] = ()


class LoadBalancer(pulumi.ComponentResource):
    vip_address: pulumi.Output[str]
    public_ip: pulumi.Output[str]
    prometheus_port: int

    def __init__(self, name: str, args: LoadBalancerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("swell:openstack:LoadBalancer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        prefix = f"swell-{args.stack}-{args.tier}"
        lb = openstack.loadbalancer.LoadBalancer(
            f"{name}", name=prefix, vip_subnet_id=args.subnet_id, opts=child
        )
        # No ordering needed between these: Octavia refuses a change while another is pending (409), and
        # the provider waits and retries then (terraform-provider-openstack, lb_listener_v2 et al.).
        listeners: dict[str, openstack.loadbalancer.Listener] = {}
        for spec in args.spec.listeners:
            listener = self._listener(name, prefix, lb, spec, args, child)
            listeners[spec.name] = listener
            if spec.redirect is not None:
                policy = openstack.loadbalancer.L7PolicyV2(
                    f"{name}-{spec.name}-redirect",
                    name=f"{prefix}-{spec.name}-redirect",
                    listener_id=listener.id,
                    action="REDIRECT_PREFIX",
                    redirect_prefix=f"{spec.redirect.scheme}://{args.public_host}",
                    redirect_http_code=spec.redirect.http_code,
                    opts=child,
                )
                openstack.loadbalancer.L7RuleV2(
                    f"{name}-{spec.name}-redirect-all",
                    l7policy_id=policy.id,
                    type=spec.redirect.rule_type,
                    compare_type=spec.redirect.rule_compare_type,
                    value=spec.redirect.rule_value,
                    opts=child,
                )
        # The tier's pool keeps its historical resource names (`-healthz`): renaming would replace it.
        self._pool(name, prefix, listeners[args.spec.traffic.name], args.spec.pool, args, child, "healthz")
        # Listeners with a pool of their own (an `xmpp` TCP listener).
        for spec, own in args.spec.own_pools:
            self._pool(
                f"{name}-{spec.name}",
                f"{prefix}-{spec.name}",
                listeners[spec.name],
                own,
                args,
                child,
                "monitor",
            )
        floating_ip = openstack.networking.FloatingIp(
            f"{name}-public-ip",
            pool=args.external_network,
            description=f"swell {args.stack} {args.tier} load balancer",
            opts=child,
        )
        openstack.networking.FloatingIpAssociate(
            f"{name}-public-ip-associate", floating_ip=floating_ip.address, port_id=lb.vip_port_id, opts=child
        )
        self.vip_address = lb.vip_address
        self.public_ip = floating_ip.address
        self.prometheus_port = args.spec.prometheus.port
        self.register_outputs(
            {
                "vip_address": lb.vip_address,
                "public_ip": floating_ip.address,
                "prometheus_port": self.prometheus_port,
            }
        )

    @staticmethod
    def _pool(
        name: str,
        prefix: str,
        listener: openstack.loadbalancer.Listener,
        pool_spec: Pool,
        args: LoadBalancerArgs,
        opts: pulumi.ResourceOptions,
        monitor_suffix: str,
    ) -> None:
        """A listener's pool, its health monitor, and one member per instance, named by index so
        that scaling keeps the existing members. A retiring instance gets weight 0 in every pool:
        Octavia sends it no new connections and keeps the established ones (the drain: no new
        requests or logins, the sessions and bridges logged in keep theirs). Own pools' names carry
        their listener's name, so they never collide with the tier's pool."""
        pool = openstack.loadbalancer.Pool(
            f"{name}-pool",
            name=prefix,
            listener_id=listener.id,
            protocol=pool_spec.protocol,
            lb_method=pool_spec.lb_method,
            persistence=(
                openstack.loadbalancer.PoolPersistenceArgs(type=pool_spec.persistence)
                if pool_spec.persistence
                else None
            ),
            opts=opts,
        )
        monitor = pool_spec.monitor
        openstack.loadbalancer.Monitor(
            f"{name}-{monitor_suffix}",
            name=f"{prefix}-{monitor_suffix}",
            pool_id=pool.id,
            type=monitor.type,
            # None on a TCP monitor (HealthMonitor refuses them there, as Octavia does).
            http_method=monitor.http_method,
            url_path=monitor.url_path,
            expected_codes=monitor.expected_codes,
            delay=monitor.delay_s,
            timeout=monitor.timeout_s,
            max_retries=monitor.max_retries,
            max_retries_down=monitor.max_retries_down,
            opts=opts,
        )
        for index, address, retiring in args.members:
            openstack.loadbalancer.Member(
                f"{name}-member-{index}",
                pool_id=pool.id,
                address=address,
                protocol_port=pool_spec.member_port,
                monitor_port=pool_spec.monitor_port,
                subnet_id=args.subnet_id,
                # 1 is Octavia's default; a change of weight is an update in place, never a replacement.
                weight=MEMBER_DRAINING_WEIGHT if retiring else MEMBER_WEIGHT,
                opts=opts,
            )

    @staticmethod
    def _listener(
        name: str,
        prefix: str,
        lb: openstack.loadbalancer.LoadBalancer,
        spec: Listener,
        args: LoadBalancerArgs,
        opts: pulumi.ResourceOptions,
    ) -> openstack.loadbalancer.Listener:
        return openstack.loadbalancer.Listener(
            f"{name}-{spec.name}",
            name=f"{prefix}-{spec.name}",
            loadbalancer_id=lb.id,
            protocol=spec.protocol,
            protocol_port=spec.port,
            # Octavia takes header names mapped to "true".
            insert_headers={header: "true" for header in spec.insert_headers} or None,
            timeout_client_data=spec.timeout_client_data_ms,
            timeout_member_connect=spec.timeout_member_connect_ms,
            timeout_member_data=spec.timeout_member_data_ms,
            default_tls_container_ref=args.tls_container_ref if spec.terminates_tls else None,
            allowed_cidrs=_allowed_cidrs(spec, args),
            opts=opts,
        )


def _allowed_cidrs(spec: Listener, args: LoadBalancerArgs) -> list[str] | None:
    """Octavia's `allowed_cidrs`: the monitoring networks for PROMETHEUS, the private network for
    private-only listeners, everyone (None) for the rest."""
    if spec.monitoring_only:
        return list(args.monitoring_cidrs)
    if spec.private_only:
        if not args.private_cidrs:
            raise ValueError(
                f"{args.tier}: listener {spec.name!r} is private-only but no private network was given"
            )
        return list(args.private_cidrs)
    return None
