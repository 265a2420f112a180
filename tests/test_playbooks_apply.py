"""site.yml applied for real to Debian 12 roots through the community.general.chroot connection.

Five fresh copies of a debootstrap root (tests/debian_root.py) play a web, a chat and a video host
of one stack, its chat store and its (one) Jitsi shard. The run must converge, a second run must
change nothing, check mode must report nothing to do, and the configurations must pass the
programs' own checks inside the roots (nginx -t, prosodyctl check config, sshd -t, sshd -T, nft -c,
chronyd -p, visudo -c; redis-server started on the chat store's rendered file). The
web root starts with a cloud-init drop-in that allows passwords, as some images ship, and the
hardening must still win. The secrets given never appear in Ansible's output or events.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from swell import chat_store
from swell.cli import app
from swell.configure.inventory import InventorySettings, build_inventory
from swell.configure.outputs import parse_stack_outputs
from swell.configure.progress import RunTally
from swell.configure.runner import PLAYBOOKS_DIR as PLAYBOOKS
from swell.configure.runner import AnsibleRunner, PlaybookRun

sys.path.insert(0, str(Path(__file__).parent))
import debian_root

pytestmark = pytest.mark.slow

TIER_IPS = {
    "web": "10.42.0.11",
    "chat": "10.42.0.21",
    "video": "10.42.0.31",
    "chat_store": "10.42.0.41",
    "shard": "10.42.0.51",
}
# The catalog's fixed groups: in the stack outputs' `fixed`, not `tiers`.
FIXED = ("chat_store", "shard")
STORE_SECRET = "CANARYstore0password0for0tests00"
# What cloud-init writes on images that allow password logins; sshd keeps the first value it reads.
CLOUD_INIT_SSHD = "# cloud-init\nPasswordAuthentication yes\nKbdInteractiveAuthentication yes\n"
ADMIN_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHd0vJ7kq1cQy7m9xSdHfd5yVqHn6g2d3Y1K1pL0mX0a alice@laptop"
EXTRAVARS: dict[str, Any] = {
    "base_admin_users": [{"name": "alice", "ssh_public_keys": [ADMIN_KEY]}],
    "jitsi_shard_jvb_password": "CANARYbridge0password0for0tests",
    "video_xmpp_password": "CANARYbridge0password0for0tests",
    "jitsi_shard_turn_secret": "CANARYturn0secret0not0for0production",
    "chat_redis_password": STORE_SECRET,
    "chat_store_password": STORE_SECRET,
    # download.jitsi.org is out of reach here: the rest of the video and shard roles still applies.
    "video_jitsi_install": False,
    "jitsi_shard_jitsi_install": False,
    "video_turn_secret": "CANARYturn0secret0not0for0production",
}
SECRETS = ("CANARYbridge0password0for0tests", "CANARYturn0secret0not0for0production", STORE_SECRET)
# Where the tiers find each other: the stack outputs' `tier_vars` (what the user_data delivers,
# stacks/bootstrap.py TIER_VARS), which swell configure turns into group vars; no -e needed.
NAMES = {"swell_xmpp_domain": "chat.swell.test", "swell_turn_host": "turn.swell.test", "swell_turn_port": 443}
TIER_VARS: dict[str, dict[str, Any]] = {
    "web": {"swell_jitsi_shards": {"0": TIER_IPS["shard"]}},
    "chat": {"swell_chat_store_address": TIER_IPS["chat_store"], "swell_chat_store_port": chat_store.PORT},
    "video": NAMES | {"swell_jitsi_shards": {"0": TIER_IPS["shard"]}, "swell_xmpp_port": 5222},
    "chat_store": {},
    "shard": NAMES,
}


def outputs_json(tiers: list[str]) -> str:
    return json.dumps(
        {
            "stack": "test-chroot",
            "region": "GRA11",
            "private_network": {"cidr": "10.42.0.0/16"},
            "admin_cidrs": ["203.0.113.0/24", "2001:db8:ad::/48"],
            "tiers": {
                tier: {
                    "instances": [{"name": f"{tier}-0", "index": 0, "private_ip": TIER_IPS[tier]}],
                    "load_balancer": None,
                }
                for tier in tiers
                if tier not in FIXED
            },
            "tier_vars": {tier: TIER_VARS[tier] for tier in tiers if tier not in FIXED},
            "fixed": {
                group: {
                    "instances": [{"name": f"{group}-0", "index": 0, "private_ip": TIER_IPS[group]}],
                    "vars": TIER_VARS[group],
                }
                for group in tiers
                if group in FIXED
            },
            # The stack placed the bridge in shard 0 (its Nova metadata; swell_shard for Ansible).
            "placements": {"video": {"0": 0}} if "video" in tiers else {},
        }
    )


def chroot_inventory(roots: dict[str, Path]) -> dict[str, Any]:
    """The inventory `swell configure` builds, pointed at the roots instead of SSH.

    The host names stay aliases (web-0...) with `ansible_host` the root's path: a filesystem
    path as the host name breaks ansible-runner's fact cache.
    """
    inventory = build_inventory(parse_stack_outputs(outputs_json(list(roots))), InventorySettings())
    for tier, root in roots.items():
        host = inventory["all"]["children"][tier]["hosts"][f"{tier}-0"]
        host.update(
            ansible_connection="community.general.chroot", ansible_host=str(root), ansible_become=False
        )
    return inventory


@dataclass
class Run:
    rc: int
    tally: RunTally
    output_tail: str
    # Every event as JSON text (what ansible-runner keeps in its artifacts), to look for secrets.
    events: list[str]


def run_site(inventory: dict[str, Any], check: bool = False) -> Run:
    tally = RunTally()
    events: list[str] = []

    def on_event(event: dict[str, Any]) -> None:
        events.append(json.dumps(event, default=str))
        tally.apply(event)

    outcome = AnsibleRunner().run(
        PlaybookRun(inventory=inventory, check=check, diff=check, extravars=EXTRAVARS, timeout_s=900),
        on_event,
    )
    return Run(outcome.rc, tally, outcome.output_tail, events)


@dataclass
class Converged:
    roots: dict[str, Path]
    inventory: dict[str, Any]
    first: Run
    second: Run


@pytest.fixture(scope="module")
def converged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Converged]:
    reason = debian_root.can_chroot()
    if reason:
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("roots")
    roots = {tier: debian_root.fresh_root(base / tier) for tier in TIER_IPS}
    dropins = roots["web"] / "etc/ssh/sshd_config.d"
    dropins.mkdir(parents=True, exist_ok=True)
    (dropins / "50-cloud-init.conf").write_text(CLOUD_INIT_SSHD)
    inventory = chroot_inventory(roots)
    first = run_site(inventory)
    for root in roots.values():
        debian_root.keep_archives(root)
    second = run_site(inventory) if first.rc == 0 else first
    yield Converged(roots, inventory, first, second)
    shutil.rmtree(base, ignore_errors=True)


def describe(run: Run) -> str:
    return "; ".join(f.describe() for f in run.tally.failures) or f"rc={run.rc}: {run.output_tail}"


def test_site_converges_every_tier_on_a_fresh_debian_root(converged: Converged) -> None:
    assert converged.first.rc == 0, describe(converged.first)
    assert set(converged.first.tally.hosts) == {f"{tier}-0" for tier in TIER_IPS}
    for host, progress in converged.first.tally.hosts.items():
        assert progress.changed > 0, f"{host} changed nothing on a fresh root"


def test_second_run_changes_nothing(converged: Converged) -> None:
    assert converged.second.rc == 0, describe(converged.second)
    changed = {h: p.changed_tasks for h, p in converged.second.tally.hosts.items() if p.changed}
    assert changed == {}


def test_check_mode_on_converged_hosts_reports_nothing_to_do(converged: Converged) -> None:
    run = run_site(converged.inventory, check=True)
    assert run.rc == 0, describe(run)
    assert {h: p.changed_tasks for h, p in run.tally.hosts.items() if p.changed} == {}


def test_check_mode_on_a_fresh_host_reports_the_installs_and_writes_nothing(
    converged: Converged, tmp_path: Path
) -> None:
    root = debian_root.fresh_root(tmp_path / "fresh-shard")
    try:
        # The apt module needs python3-apt to simulate installs; Debian's cloud images have it
        # (unattended-upgrades depends on it), a minbase root does not.
        installed = debian_root.in_root(
            root, "apt-get", "install", "-y", "-q", "--no-install-recommends", "python3-apt"
        )
        assert installed.returncode == 0, installed.stderr
        run = run_site(chroot_inventory({"shard": root}), check=True)
        assert run.rc == 0, describe(run)
        changed = run.tally.hosts["shard-0"].changed_tasks
        assert "jitsi_shard : Install Prosody" in changed
        assert "web : Install nginx" in changed
        assert not (root / "etc" / "nginx").exists()
        assert not (root / "etc" / "nftables.conf").exists()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize(
    ("tier", "argv"),
    [
        ("web", ["nginx", "-t"]),
        ("chat", ["nginx", "-t"]),
        ("shard", ["nginx", "-t"]),
        ("shard", ["prosodyctl", "check", "config"]),
        ("web", ["/usr/sbin/sshd", "-t"]),
        ("video", ["nft", "-c", "-f", "/etc/nftables.conf"]),
        ("web", ["nft", "-c", "-f", "/etc/nftables.conf"]),
        ("chat", ["chronyd", "-p", "-f", "/etc/chrony/chrony.conf"]),
        ("web", ["visudo", "-c"]),
    ],
    ids=[
        "web-nginx",
        "chat-nginx",
        "shard-nginx",
        "shard-prosody",
        "sshd",
        "video-nftables",
        "web-nftables",
        "chrony",
        "sudoers",
    ],
)
def test_configs_pass_their_own_checks_inside_the_root(
    converged: Converged, tier: str, argv: list[str]
) -> None:
    assert converged.first.rc == 0, describe(converged.first)
    result = debian_root.in_root(converged.roots[tier], *argv)
    assert result.returncode == 0, result.stdout + result.stderr


def read(converged: Converged, tier: str, path: str) -> str:
    return (converged.roots[tier] / path.lstrip("/")).read_text()


def test_sshd_refuses_passwords_and_root_over_cloud_inits_drop_in(converged: Converged) -> None:
    # The web root has /etc/ssh/sshd_config.d/50-cloud-init.conf saying the opposite (the fixture).
    root = converged.roots["web"]
    assert "PasswordAuthentication yes" in read(converged, "web", "/etc/ssh/sshd_config.d/50-cloud-init.conf")
    dropins = sorted(p.name for p in (root / "etc/ssh/sshd_config.d").iterdir())
    assert dropins[0] == "00-swell.conf", dropins
    result = debian_root.in_root(root, "/usr/sbin/sshd", "-T")
    assert result.returncode == 0, result.stderr
    settings = result.stdout.lower().splitlines()
    assert "passwordauthentication no" in settings
    assert "kbdinteractiveauthentication no" in settings
    assert "permitrootlogin no" in settings


def test_no_secret_in_ansible_output_or_events(converged: Converged) -> None:
    assert converged.first.rc == 0, describe(converged.first)
    runs = (converged.first, converged.second)
    assert sum(len(r.events) for r in runs) > 100  # the events were collected
    for run in runs:
        text = "\n".join(run.events) + run.output_tail
        for secret in SECRETS:
            assert secret not in text
    # Positive control: the secrets did reach the files that need them.
    assert SECRETS[1] in read(converged, "video", "/etc/turnserver.conf")
    assert SECRETS[0] in read(converged, "video", "/etc/jitsi/videobridge/jvb.conf")


def test_admin_user_gets_exactly_its_key(converged: Converged) -> None:
    keys = read(converged, "chat", "/home/alice/.ssh/authorized_keys")
    assert keys.strip().splitlines() == [ADMIN_KEY]
    groups = debian_root.in_root(converged.roots["chat"], "id", "-nG", "alice").stdout.split()
    assert "sudo" in groups


@pytest.mark.parametrize(
    ("tier", "present", "absent"),
    [
        (
            # TLS ends at the load balancer: members take plain HTTP on 80 from the private network.
            "web",
            ["ip saddr { 10.42.0.0/16 } tcp dport 80 accept", "tcp dport 9100"],
            ["udp dport 10000", "8080", "dport 443"],
        ),
        # Chat servers take HTTP from the load balancer only: no XMPP, no Redis of their own.
        (
            "chat",
            ["ip saddr { 10.42.0.0/16 } tcp dport 80 accept"],
            ["udp dport 10000", "dport 443", "5222", "6379"],
        ),
        ("video", ["udp dport 10000 accept", "tcp dport 8080 accept"], ["tcp dport 80 ", "5222"]),
        # Redis and Prosody from the private network only (the security groups narrow it to a tier),
        # and from nowhere else (a rule without a source would open it to the world).
        (
            "chat_store",
            ["ip saddr { 10.42.0.0/16 } tcp dport 6379 accept"],
            ["dport 80 ", "\n        tcp dport 6379"],
        ),
        # The shard also takes Prosody's WebSocket and BOSH on 80, from web's nginx (private only).
        (
            "shard",
            [
                "ip saddr { 10.42.0.0/16 } tcp dport 5222 accept",
                "ip saddr { 10.42.0.0/16 } tcp dport 80 accept",
            ],
            ["\n        tcp dport 80 ", "\n        tcp dport 5222"],
        ),
    ],
    ids=["web", "chat", "video", "chat_store", "shard"],
)
def test_firewall_follows_the_tier(
    converged: Converged, tier: str, present: list[str], absent: list[str]
) -> None:
    ruleset = read(converged, tier, "/etc/nftables.conf")
    assert "policy drop" in ruleset
    assert "ip saddr { 203.0.113.0/24 } tcp dport 22 accept" in ruleset
    assert "ip6 saddr { 2001:db8:ad::/48 } tcp dport 22 accept" in ruleset
    # Only root (cloud-init) may ask the metadata service, which serves the user_data's secrets.
    assert "ip daddr 169.254.169.254 meta skuid != 0 reject" in ruleset
    for fragment in present:
        assert fragment in ruleset
    for fragment in absent:
        assert fragment not in ruleset


def test_node_exporter_listens_on_the_private_address_only(converged: Converged) -> None:
    for tier, ip in TIER_IPS.items():
        assert f"--web.listen-address={ip}:9100" in read(
            converged, tier, "/etc/default/prometheus-node-exporter"
        )


def test_video_bridge_config_is_valid_hocon_with_private_metrics(converged: Converged) -> None:
    from pyhocon import ConfigFactory

    config = ConfigFactory.parse_string(read(converged, "video", "/etc/jitsi/videobridge/jvb.conf"))
    assert config.get("videobridge.http-servers.private.host") == TIER_IPS["video"]
    assert config.get_int("videobridge.http-servers.private.port") == 8080
    assert config.get_int("videobridge.ice.udp.port") == 10000


def test_coturn_serves_turn_over_tls_on_443_only(converged: Converged) -> None:
    lines = read(converged, "video", "/etc/turnserver.conf").splitlines()
    settings = [line for line in lines if line and not line.startswith("#")]
    assert "tls-listening-port=443" in settings
    assert {"no-udp", "no-tcp", "use-auth-secret"} <= set(settings)
    # coturn reads its options like its command line: an unknown one stops it at start-up.
    result = debian_root.in_root(
        converged.roots["video"], "turnserver", "-c", "/etc/turnserver.conf", "--help"
    )
    assert "turnserver" in (result.stdout + result.stderr).lower()


def test_the_shard_and_its_bridge_agree_on_the_bridge_account_and_brewery(converged: Converged) -> None:
    from pyhocon import ConfigFactory

    jvb = ConfigFactory.parse_string(read(converged, "video", "/etc/jitsi/videobridge/jvb.conf"))
    shard = jvb.get("videobridge.apis.xmpp-client.configs.swell")
    assert (shard["domain"], shard["username"]) == ("auth.chat.swell.test", "jvb")
    # The bridge dials the certificate's name, which /etc/hosts maps to its shard's Prosody (shard 0,
    # from the placements as its Nova metadata would say).
    assert (shard["hostname"], shard["port"]) == ("auth.chat.swell.test", 5222)
    hosts = read(converged, "video", "/etc/hosts").splitlines()
    assert f"{TIER_IPS['shard']} auth.chat.swell.test" in hosts
    assert shard["muc_jids"] == "jvbbrewery@internal.auth.chat.swell.test"
    # Verification is on unless a stack turns it off; the nickname is this root's own id.
    assert shard["disable_certificate_verification"] is False
    bridge_id = read(converged, "video", "/var/lib/swell/bridge-id").strip()
    assert shard["muc_nickname"] == bridge_id and len(bridge_id) == 32
    host = read(converged, "shard", "/etc/prosody/conf.d/chat.swell.test.cfg.lua")
    assert 'Component "internal.auth.chat.swell.test" "muc"' in host
    assert 'Component "conference.chat.swell.test" "muc"' in host
    assert 'VirtualHost "auth.chat.swell.test"' in host
    accounts = converged.roots["shard"] / "var/lib/prosody/auth%2echat%2eswell%2etest/accounts"
    assert (accounts / "jvb.dat").exists() and (accounts / "focus.dat").exists()
    # Jicofo watches the very room the bridge joins, as the focus user whose password Prosody has.
    jicofo = ConfigFactory.parse_string(read(converged, "shard", "/etc/jitsi/jicofo/jicofo.conf"))
    assert jicofo.get("jicofo.bridge.brewery-jid") == shard["muc_jids"]
    client = jicofo.get("jicofo.xmpp.client")
    assert (client["domain"], client["username"], client["port"]) == ("auth.chat.swell.test", "focus", 5222)
    focus_password = read(converged, "shard", "/var/lib/swell/focus-password").strip()
    assert client["password"] == focus_password and len(focus_password) == 32
    assert oct((converged.roots["shard"] / "var/lib/swell/focus-password").stat().st_mode)[-3:] == "600"


def test_chat_nginx_proxies_the_websocket_to_the_chat_application_on_80(converged: Converged) -> None:
    site = read(converged, "chat", "/etc/nginx/sites-available/swell.conf")
    assert "listen 80 default_server;" in site
    assert "location /xmpp-websocket" in site
    assert "127.0.0.1:8000" in site
    # No Prosody on the chat tier any more: no BOSH, nothing on 5280.
    assert "location /http-bind" not in site and "5280" not in site
    assert "proxy_set_header Upgrade $http_upgrade;" in site
    assert "proxy_read_timeout 900s;" in site
    assert "location = /healthz" in site
    # No TLS on the members: the load balancer terminates it; forwarded headers from it only.
    assert "ssl" not in site and "443" not in site
    assert "set_real_ip_from 10.42.0.0/16;" in site
    assert not (converged.roots["chat"] / "etc/ssl/swell/web.key").exists()


def test_web_nginx_routes_jitsi_signalling_to_the_shard_by_room(converged: Converged) -> None:
    # The web role given the stack's shards (tests/test_web_routes_signalling.py shows the routing
    # on a real nginx); `nginx -t` inside the root passes with it (test_configs_pass_...).
    site = read(converged, "web", "/etc/nginx/sites-available/swell.conf")
    assert "hash $arg_room consistent;" in site
    assert f"server {TIER_IPS['shard']}:80;" in site
    assert "location /xmpp-websocket" in site and "location /http-bind" in site


def test_coturn_refuses_relays_to_private_ranges_in_ipv4_and_ipv6(converged: Converged) -> None:
    denied = [
        line.split("=", 1)[1]
        for line in read(converged, "video", "/etc/turnserver.conf").splitlines()
        if line.startswith("denied-peer-ip=")
    ]
    for must in (
        "10.0.0.0-10.255.255.255",
        "169.254.0.0-169.254.255.255",
        "::-::1",
        "fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "fe80::-febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "::ffff:0.0.0.0-::ffff:255.255.255.255",
    ):
        assert must in denied


def chroot_cli_args(converged: Converged, tmp_path: Path, tier: str) -> list[str]:
    """`swell configure` arguments reaching one root: connection variables as extra vars."""
    outputs = tmp_path / "outputs.json"
    outputs.write_text(outputs_json([tier]))
    args = ["configure", "--stack-outputs", str(outputs), "--limit", tier]
    connection = {
        "ansible_connection": "community.general.chroot",
        "ansible_host": str(converged.roots[tier]),
        "ansible_become": "false",
    }
    for key, value in connection.items():
        args += ["-e", f"{key}={value}"]
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps(EXTRAVARS))
    return [*args, "-e", f"@{extra}"]


def test_configure_check_on_a_converged_host_exits_0_with_a_summary(
    converged: Converged, tmp_path: Path
) -> None:
    result = CliRunner().invoke(app, [*chroot_cli_args(converged, tmp_path, "chat"), "--check", "--diff"])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "chat-0 │ chat │ ok" in output
    assert "converged: 1 host(s), 0 change(s)" in output
    # The secrets came in with -e @file; --diff must not show them.
    assert not any(secret in result.output for secret in SECRETS)


def test_failed_task_exits_non_zero_naming_host_and_task(converged: Converged, tmp_path: Path) -> None:
    # An operator's typo: the base role refuses before it changes anything.
    result = CliRunner().invoke(app, [*chroot_cli_args(converged, tmp_path, "web"), "-e", "swell_tier=wbe"])
    assert result.exit_code == 1, result.output
    assert "web-0: failed at task 'base : Check that the tier is one swell knows'" in result.output
    assert "expected one of web, chat, video, chat_store, shard" in " ".join(result.output.split())


def test_pull_playbook_gives_a_converged_host_nothing_to_do(converged: Converged, tmp_path: Path) -> None:
    # What a new instance runs (ansible-pull ... playbooks/pull.yml) with its
    # /etc/swell/ansible-vars.json, here through the chroot and in check mode: the same roles as
    # site.yml, so nothing is left to do on the host site.yml converged.
    bootstrap_vars = {
        "swell_tier": "web",
        "swell_stack": "test-chroot",
        "swell_private_network_cidr": "10.42.0.0/16",
        "swell_admin_cidrs": ["203.0.113.0/24", "2001:db8:ad::/48"],
        # The tier's stack variables, as stacks/bootstrap.py writes them into the user_data.
        **TIER_VARS["web"],
    }
    inventory = {
        "all": {
            "hosts": {
                "localhost": {
                    "ansible_connection": "community.general.chroot",
                    "ansible_host": str(converged.roots["web"]),
                    "ansible_become": False,
                    # A real instance finds it among its interfaces; a chroot sees none.
                    "swell_private_ip": TIER_IPS["web"],
                }
            }
        }
    }
    tally = RunTally()
    outcome = AnsibleRunner().run(
        PlaybookRun(
            inventory=inventory,
            playbook=PLAYBOOKS / "pull.yml",
            check=True,
            extravars=EXTRAVARS | bootstrap_vars,
            timeout_s=600,
        ),
        tally.apply,
    )
    assert outcome.rc == 0, describe(Run(outcome.rc, tally, outcome.output_tail, []))
    localhost = tally.hosts["localhost"]
    assert localhost.changed_tasks == []
    assert localhost.roles == ["base", "node_exporter", "web"]


@pytest.mark.parametrize(
    ("bootstrap_vars", "expected"),
    [
        ({}, "swell_tier is unset; expected one of web, chat, video, chat_store, shard"),
        ({"swell_tier": "db"}, "swell_tier is db; expected one of web, chat, video, chat_store, shard"),
    ],
    ids=["missing-tier", "unknown-tier"],
)
def test_pull_playbook_refuses_an_instance_without_a_tier(
    bootstrap_vars: dict[str, Any], expected: str
) -> None:
    tally = RunTally()
    outcome = AnsibleRunner().run(
        PlaybookRun(
            inventory={"all": {"hosts": {"localhost": {}}}},
            playbook=PLAYBOOKS / "pull.yml",
            extravars=bootstrap_vars,
            timeout_s=120,
        ),
        tally.apply,
    )
    assert outcome.rc != 0
    assert [f.task for f in tally.failures] == ["Check that swell_tier names a tier of the catalog"]
    assert expected in tally.failures[0].message


def test_services_were_not_started_in_the_chroot(converged: Converged) -> None:
    # The roles saw no systemd and left services alone; nothing may run from the roots.
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    for root in converged.roots.values():
        assert str(root) not in ps


def test_pull_playbook_refuses_an_admin_network_open_to_the_world(converged: Converged) -> None:
    # The stack and `swell configure` refuse it too; this is the hosts' own guard (ansible-pull).
    inventory = {
        "all": {
            "hosts": {
                "localhost": {
                    "ansible_connection": "community.general.chroot",
                    "ansible_host": str(converged.roots["web"]),
                    "ansible_become": False,
                    "swell_private_ip": TIER_IPS["web"],
                }
            }
        }
    }
    bootstrap_vars = {
        "swell_tier": "web",
        "swell_stack": "test-chroot",
        "swell_private_network_cidr": "10.42.0.0/16",
        "swell_admin_cidrs": ["203.0.113.0/24", "::/0"],
    }
    tally = RunTally()
    outcome = AnsibleRunner().run(
        PlaybookRun(
            inventory=inventory,
            playbook=PLAYBOOKS / "pull.yml",
            check=True,
            extravars=EXTRAVARS | bootstrap_vars,
            timeout_s=600,
        ),
        tally.apply,
    )
    assert outcome.rc != 0
    assert [f.task for f in tally.failures] == ["Check that SSH is not opened to the whole internet"]
    assert "::/0" in tally.failures[0].message


def in_netns(root: Path, script: str, addresses: list[str], timeout_s: int = 90) -> dict[str, Any]:
    """Run `script` with the root's python3 inside the root AND a network namespace of its own
    (loopback up, `addresses` on it), so servers it starts bind nothing on this machine and a
    ruleset it loads touches only that namespace. Returns the JSON the script prints last."""
    probe = root / "tmp" / "swell-probe.py"
    probe.write_text(script)
    setup = " && ".join(["ip link set lo up", *(f"ip addr add {a} dev lo" for a in addresses)])
    proc = subprocess.Popen(
        ["unshare", "--net", "--", "sh", "-c", f"{setup} && exec chroot {root} python3 /tmp/swell-probe.py"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
    finally:
        # Whatever the probe started (nginx, a listener) dies with its process group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        probe.unlink(missing_ok=True)
    assert proc.returncode == 0, out[-2000:] + err[-3000:]
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


NGINX_PROBE = r"""
import http.client, json, socket, subprocess, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Refuse to run anywhere but in a fresh network namespace (only loopback).
assert [name for _, name in socket.if_nameindex()] == ["lo"], socket.if_nameindex()
seen = {}

class Upstream(BaseHTTPRequestHandler):
    def do_GET(self):
        seen[self.path] = {k.lower(): v for k, v in self.headers.items()}
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"up")

    def log_message(self, *args):
        pass

servers = [ThreadingHTTPServer(("127.0.0.1", port), Upstream) for port in UPSTREAM_PORTS]
for s in servers:
    threading.Thread(target=s.serve_forever, daemon=True).start()
nginx = subprocess.Popen(["/usr/sbin/nginx", "-g", "daemon off;"])
try:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", 80), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    results = {}
    for name, source, path, headers in CASES:
        conn = http.client.HTTPConnection(source, 80, timeout=10, source_address=(source, 0))
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read().decode()
        results[name] = {
            "status": response.status,
            "body": body,
            "hsts": response.getheader("Strict-Transport-Security"),
            "upstream": seen.pop(path, None),
        }
        conn.close()
    print(json.dumps(results))
finally:
    nginx.terminate()
    nginx.wait(timeout=10)
"""
# The load balancer's address: inside the private network nginx trusts (10.42.0.0/16).
LB = "10.42.0.5"
NGINX_CASES = [
    ("health", "127.0.0.1", "/healthz", {}),
    # The load balancer: the client it saw is the last untrusted address; its scheme is believed.
    ("from-lb", LB, "/app", {"X-Forwarded-For": "198.51.100.66, 203.0.113.9", "X-Forwarded-Proto": "https"}),
    # Anyone else (the firewall lets only the private network in, but nginx does not rely on it).
    ("spoofed", "127.0.0.1", "/spoof", {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}),
]


def test_web_nginx_serves_on_80_and_believes_forwarded_headers_from_the_load_balancer_only(
    converged: Converged,
) -> None:
    script = NGINX_PROBE.replace("UPSTREAM_PORTS", "[8000]").replace("CASES", repr(NGINX_CASES))
    results = in_netns(converged.roots["web"], script, [f"{LB}/32"])
    assert (results["health"]["status"], results["health"]["body"]) == (200, "ok\n")
    assert results["health"]["upstream"] is None  # answered by nginx itself
    lb = results["from-lb"]
    assert lb["status"] == 200 and lb["body"] == "up"
    assert lb["upstream"]["x-forwarded-for"] == "203.0.113.9"
    assert lb["upstream"]["x-forwarded-proto"] == "https"
    assert lb["hsts"] == "max-age=63072000"
    spoofed = results["spoofed"]
    assert spoofed["upstream"]["x-forwarded-for"] == "127.0.0.1"
    assert spoofed["upstream"]["x-forwarded-proto"] == "http"
    assert spoofed["hsts"] is None


@pytest.mark.parametrize(
    ("group", "port"), [("chat", 8000), ("shard", 5280)], ids=["chat-app", "shard-prosody"]
)
def test_nginx_passes_the_websocket_upgrade_to_its_upstream(
    converged: Converged, group: str, port: int
) -> None:
    # Chat: the chat application; a shard: Prosody's WebSocket (the Jitsi web front end's signalling).
    cases = [("ws", LB, "/xmpp-websocket", {"Upgrade": "websocket", "Connection": "Upgrade"})]
    script = NGINX_PROBE.replace("UPSTREAM_PORTS", f"[{port}]").replace("CASES", repr(cases))
    upstream = in_netns(converged.roots[group], script, [f"{LB}/32"])["ws"]["upstream"]
    assert (upstream["upgrade"], upstream["connection"]) == ("websocket", "upgrade")


def test_the_chat_servers_get_the_chat_stores_url_as_the_shared_module_builds_it(
    converged: Converged,
) -> None:
    env = dict(
        line.split("=", 1)
        for line in read(converged, "chat", "/etc/swell-chat/chat.env").splitlines()
        if line and not line.startswith("#")
    )
    assert env["SWELL_CHAT_REDIS_URL"] == chat_store.redis_url(
        TIER_IPS["chat_store"], chat_store.PORT, STORE_SECRET
    )
    path = converged.roots["chat"] / "etc/swell-chat/chat.env"
    assert oct(path.stat().st_mode)[-3:] == "640"


def test_the_chat_stores_redis_config_is_what_redis_server_runs(converged: Converged, tmp_path: Path) -> None:
    # The rendered file, line by line where it matters, then Debian's redis-server (the same
    # package the root installed) started on it: an unknown or malformed directive stops it.
    from loadtests.processes import start_process, stop_all

    config = read(converged, "chat_store", "/etc/redis/redis.conf")
    directives = [line.split(None, 1) for line in config.splitlines() if line and not line.startswith("#")]
    settings = {d[0]: (d[1] if len(d) > 1 else "") for d in directives}
    assert settings["bind"] == TIER_IPS["chat_store"]
    assert (settings["port"], settings["requirepass"]) == (str(chat_store.PORT), STORE_SECRET)
    assert (settings["appendonly"], settings["maxmemory-policy"]) == ("yes", "noeviction")
    path = converged.roots["chat_store"] / "etc/redis/redis.conf"
    assert oct(path.stat().st_mode)[-3:] == "640"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # The root's private address does not exist here: the address, port and files move to the test's.
    overrides = ["--bind", "127.0.0.1", "--port", str(port), "--dir", str(tmp_path)]
    overrides += ["--logfile", "", "--pidfile", str(tmp_path / "pid"), "--supervised", "no"]
    proc = start_process(["redis-server", str(path), *overrides], tmp_path / "redis.log")
    try:
        import redis  # the drill extra: redis-py, which the chat servers use too

        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
        answered: object = None
        for _ in range(50):
            try:
                answered = client.ping()
                break
            except redis.AuthenticationError as e:  # up, and refusing us without the password
                answered = e
                break
            except redis.ConnectionError:
                if proc.poll() is not None:
                    break
                time.sleep(0.1)
        log = (tmp_path / "redis.log").read_text() if (tmp_path / "redis.log").exists() else ""
        assert isinstance(answered, redis.AuthenticationError), f"{answered!r}; redis-server said: {log}"
        authed = redis.Redis(host="127.0.0.1", port=port, password=STORE_SECRET, socket_timeout=2)
        assert authed.ping() is True
        assert authed.config_get("appendonly") == {"appendonly": "yes"}
        assert authed.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    finally:
        stop_all([proc])


METADATA_PROBE = r"""
import json, os, socket, subprocess

assert [name for _, name in socket.if_nameindex()] == ["lo"], socket.if_nameindex()
# The root's own ruleset, loaded into this namespace only.
subprocess.run(["/usr/sbin/nft", "-f", "/etc/nftables.conf"], check=True)
listener = socket.create_server(("169.254.169.254", 80))

def attempt():
    try:
        socket.create_connection(("169.254.169.254", 80), timeout=5).close()
        return "connected"
    except OSError as e:
        return type(e).__name__

as_root = attempt()
read, write = os.pipe()
if os.fork() == 0:
    os.setgid(65534)
    os.setuid(65534)
    os.write(write, attempt().encode())
    os._exit(0)
os.wait()
print(json.dumps({"root": as_root, "nobody": os.read(read, 100).decode()}))
"""


def test_only_root_reaches_the_metadata_service(converged: Converged) -> None:
    # The video root's real ruleset in a namespace holding 169.254.169.254: cloud-init (root) may
    # fetch the user_data, a service account may not.
    result = in_netns(converged.roots["video"], METADATA_PROBE, ["169.254.169.254/32"])
    assert result["root"] == "connected"
    assert result["nobody"] in ("ConnectionRefusedError", "PermissionError", "TimeoutError"), result


COTURN_PROBE = r"""
import json, socket, subprocess

assert [name for _, name in socket.if_nameindex()] == ["lo"], socket.if_nameindex()
# The applied configuration, logging to stdout instead of syslog (a chroot has no syslog).
dropped = ("no-stdout-log", "log-file=syslog")
lines = [l for l in open("/etc/turnserver.conf").read().splitlines() if l not in dropped]
with open("/tmp/turnserver-probe.conf", "w") as f:
    f.write("\n".join(lines + ["log-file=stdout"]) + "\n")
argv = ["turnserver", "-c", "/tmp/turnserver-probe.conf"]
proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
try:
    out, _ = proc.communicate(timeout=4)
except subprocess.TimeoutExpired:
    proc.terminate()
    out, _ = proc.communicate(timeout=10)
print(json.dumps({"log": out}))
"""


def test_coturn_itself_accepts_every_denied_range(converged: Converged) -> None:
    # coturn reads the deny list at start-up: "Black listing: <range>" for each one it understood,
    # "Wrong address format" for one it did not. Run in a network namespace of its own.
    log = in_netns(converged.roots["video"], COTURN_PROBE, [])["log"]
    configured = [
        line.split("=", 1)[1]
        for line in read(converged, "video", "/etc/turnserver.conf").splitlines()
        if line.startswith("denied-peer-ip=")
    ]
    assert len(configured) >= 16
    for cidr in configured:
        assert f"Black listing: {cidr}" in log, cidr
    assert "Wrong address format" not in log
