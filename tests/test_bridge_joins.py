"""A new video bridge joins: from the stack's user_data and Nova metadata, over the network path as
shipped, to a real XMPP login on its Jitsi shard's Prosody, and the shard hands clients the
configured TURN host.

What is real here:

- the user_data: rendered by the stack program (stacks/program.py) under Pulumi's mocks from
  Pulumi.prod-gra11.yaml, with `swell:secrets` set (a random bridge password and TURN secret, and a
  certificate for the bridges' domain made with openssl for this run), in a child process
  (tests/render_user_data.py). The XMPP domain and the TURN host are the stack's `swell:xmpp`; the
  shards' Prosody addresses are the shard instances' private addresses as the mocks answer them;
  the bridge's shard is its instance's Nova metadata `shard` as the program declared it;
- the apply: playbooks/pull.yml, ansible-pull's entry point, with exactly the variables of the
  files the user_data writes (/etc/swell/ansible-vars.json + /etc/swell/secrets.json, as extra
  vars like ansible-pull's two `--extra-vars @file`), on fresh Debian 12 roots through the chroot
  connection: one shard instance and two video instances made from the same user_data;
- the network path: two network namespaces this test creates, joined by a veth pair (the private
  network). In the shard one: the shard root's own nftables ruleset, loaded there, and the root's own
  Prosody (Debian's), started as its prosody user with the configuration the jitsi_shard role wrote,
  listening on the shard's private address. In the bridge one: a bridge's private address, which
  reaches the shard's directly (no load balancer: each bridge logs in to its own shard);
- the login: slixmpp, a real XMPP client, run in the bridge namespace with the video root's applied
  /etc/hosts mounted over /etc/hosts (its own mount namespace), dialling exactly the hostname and
  port of the bridge's applied jvb.conf (HOCON) with its account, domain and password, over STARTTLS
  verified against the trust store the video role built; both bridges join the brewery room.

What is not: Jitsi Videobridge and Jicofo themselves (download.jitsi.org is out of reach:
`video_jitsi_install` and `jitsi_shard_jitsi_install` are off, the roles still write jvb.conf and
jicofo.conf); the security groups (5222 from video's group only: tests/stacks/test_stack_fixed.py);
the metadata service (the bridge's shard is given as `swell_shard`, the very value of its Nova
metadata: a stand-in for the role's read of meta_data.json); the instances' own addresses (a chroot
finds none: `swell_private_ip` is given as an inventory variable); cloud-init (one video root gets an
instance-id file and the hosts template, as cloud-init would leave them); the DNS records of the
TURN host. Everything the user_data carries is used as is.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import hmac
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from swell.configure.progress import RunTally
from swell.configure.runner import PLAYBOOKS_DIR, AnsibleRunner, PlaybookRun

sys.path.insert(0, str(Path(__file__).parent))
import debian_root

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
STACK = "prod-gra11"
VALUES: dict[str, Any] = yaml.safe_load((ROOT / f"Pulumi.{STACK}.yaml").read_text())["config"]
# The stack's names, not the roles' former placeholder (chat.example.org).
DOMAIN: str = VALUES["swell:xmpp"]["domain"]
TURN_HOST: str = VALUES["swell:xmpp"]["turnHost"]
AUTH_DOMAIN = f"auth.{DOMAIN}"
BREWERY = f"jvbbrewery@internal.{AUTH_DOMAIN}"
PRIVATE_CIDR: str = VALUES["swell:privateNetwork"]["cidr"]
# The shard's address is what the offline engine answers for shard-0 in 10.42.0.0/16 (the address the
# bridges' user_data names); the bridges' own are any in the private network.
PRIVATE_IPS = {"shard": "10.42.80.11", "video-a": "10.42.0.31", "video-b": "10.42.0.32"}
# In the admin network (swell:adminCidrs: SSH may come from it) but outside the private network.
OUTSIDE = "198.51.100.66"
# What Jitsi's postinst writes into sip-communicator.properties; read before jvb.conf by the bridge.
PACKAGE_PROPERTIES = (
    "org.ice4j.ice.harvest.DISABLE_AWS_HARVESTER=true\n"
    "org.jitsi.videobridge.xmpp.user.shard.HOSTNAME=localhost\n"
    "org.jitsi.videobridge.xmpp.user.shard.PASSWORD=packagepassword\n"
    "org.jitsi.videobridge.xmpp.user.shard.MUC_NICKNAME=00000000-0000-0000-0000-000000000000\n"
)
# cloud-init's Debian template for /etc/hosts (manage_etc_hosts: true renders it at every boot).
CLOUD_HOSTS_TEMPLATE = "## template:jinja\n127.0.1.1 {{fqdn}} {{hostname}}\n127.0.0.1 localhost\n"


def make_certificate(workdir: Path, name: str) -> tuple[str, str]:
    """A certificate for `name` and its key, as an operator would put in swell:secrets."""
    key, crt = workdir / f"{name}.key", workdir / f"{name}.crt"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "2", "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}",
            "-keyout", str(key), "-out", str(crt),
        ],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return crt.read_text(), key.read_text()


def render_user_data(values: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.render_user_data"],
        input=json.dumps({"stack": STACK, "values": values}),
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rendered: dict[str, Any] = json.loads(done.stdout)
    return rendered


def written_files(user_data: str) -> dict[str, Any]:
    """path -> parsed JSON content of the files the user_data writes (all must be root-only)."""
    doc = yaml.safe_load(user_data)
    out = {}
    for f in doc["write_files"]:
        assert (f["owner"], f["permissions"]) == ("root:root", "0600"), f["path"]
        out[f["path"]] = json.loads(f["content"])
    return out


@dataclass
class Applied:
    rc: int
    tally: RunTally
    events: list[str]
    output_tail: str


def apply_pull(root: Path, extravars: dict[str, Any], host_vars: dict[str, Any]) -> Applied:
    """ansible-pull's playbook on a root, with the user_data's files as extra vars."""
    tally = RunTally()
    events: list[str] = []

    def on_event(event: dict[str, Any]) -> None:
        events.append(json.dumps(event, default=str))
        tally.apply(event)

    inventory = {
        "all": {
            "hosts": {
                "localhost": {
                    "ansible_connection": "community.general.chroot",
                    "ansible_host": str(root),
                    "ansible_become": False,
                    **host_vars,
                }
            }
        }
    }
    outcome = AnsibleRunner().run(
        PlaybookRun(
            inventory=inventory, playbook=PLAYBOOKS_DIR / "pull.yml", extravars=extravars, timeout_s=900
        ),
        on_event,
    )
    return Applied(outcome.rc, tally, events, outcome.output_tail)


@dataclass
class Joined:
    roots: dict[str, Path]
    secrets: dict[str, str]
    files: dict[str, dict[str, Any]]
    applied: dict[str, Applied]
    instance_id: str
    seconds: float
    # The bridges' shard, from video-0's Nova metadata as the program declared it.
    shard: str

    @property
    def xmpp_address(self) -> str:
        """The bridges' shard's Prosody address, as video's user_data names it for that shard."""
        return str(self.files["video"]["/etc/swell/ansible-vars.json"]["swell_jitsi_shards"][self.shard])


@pytest.fixture(scope="module")
def joined(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Joined]:
    reason = debian_root.can_chroot()
    if reason:
        pytest.skip(reason)
    started = time.monotonic()
    base = tmp_path_factory.mktemp("join")
    certificate, key = make_certificate(base, AUTH_DOMAIN)
    stack_secrets = {
        "xmppBridgePassword": f"CANARYpass{secrets.token_hex(16)}",
        "turnSecret": f"CANARYturn{secrets.token_hex(16)}",
        "xmppTlsCertificate": certificate,
        "xmppTlsKey": key,
        "chatStorePassword": f"CANARYstore{secrets.token_hex(16)}",
    }
    values = json.loads(json.dumps(VALUES))
    values["swell:secrets"] = stack_secrets
    rendered = render_user_data(values)
    files = {tier: written_files(rendered[tier]) for tier in ("shard", "video")}
    shard = rendered["metadata"]["video"]["shard"]

    roots = {name: debian_root.fresh_root(base / name) for name in PRIVATE_IPS}
    # video-b boots like a real instance: cloud-init recorded its Nova instance id, and its image
    # lets cloud-init manage /etc/hosts from a template.
    instance_id = str(uuid.uuid4())
    cloud_data = roots["video-b"] / "var/lib/cloud/data"
    cloud_data.mkdir(parents=True)
    (cloud_data / "instance-id").write_text(instance_id + "\n")
    templates = roots["video-b"] / "etc/cloud/templates"
    templates.mkdir(parents=True)
    (templates / "hosts.debian.tmpl").write_text(CLOUD_HOSTS_TEMPLATE)
    # video-a already has the package's legacy login, as Jitsi's postinst leaves it.
    jitsi_dir = roots["video-a"] / "etc/jitsi/videobridge"
    jitsi_dir.mkdir(parents=True)
    (jitsi_dir / "sip-communicator.properties").write_text(PACKAGE_PROPERTIES)

    jobs = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        for name, root in roots.items():
            tier = "shard" if name == "shard" else "video"
            extravars = files[tier]["/etc/swell/ansible-vars.json"] | files[tier]["/etc/swell/secrets.json"]
            host_vars: dict[str, Any] = {"swell_private_ip": PRIVATE_IPS[name]}
            if tier == "video":
                # Its Nova metadata `shard`, which the role would read from the metadata service.
                host_vars |= {"video_jitsi_install": False, "swell_shard": shard}
            else:
                host_vars |= {"jitsi_shard_jitsi_install": False}
            jobs[name] = pool.submit(apply_pull, root, extravars, host_vars)
        applied = {name: job.result() for name, job in jobs.items()}
    for root in roots.values():
        debian_root.keep_archives(root)

    yield Joined(roots, stack_secrets, files, applied, instance_id, time.monotonic() - started, shard)
    shutil.rmtree(base, ignore_errors=True)


def failures(a: Applied) -> str:
    return "; ".join(f.describe() for f in a.tally.failures) or f"rc={a.rc}: {a.output_tail}"


def jvb_shard(joined: Joined, name: str) -> Any:
    from pyhocon import ConfigFactory

    text = (joined.roots[name] / "etc/jitsi/videobridge/jvb.conf").read_text()
    return ConfigFactory.parse_string(text).get("videobridge.apis.xmpp-client.configs.swell")


def root_ids(root: Path, user: str) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3])
    raise AssertionError(f"no {user} user in {root}")


# --- The network path -------------------------------------------------------------------------


@dataclass
class Network:
    """The two namespaces: `shard` (the shard instance) and `bridge` (the private network as a bridge
    sees it)."""

    shard: str
    bridge: str
    hosts: Path  # the video root's applied /etc/hosts, which the probe resolves with


def ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, f"ip {' '.join(args)}: {done.stderr}"


def in_ns(ns: str, *argv: str, timeout_s: int = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=timeout_s, check=False
    )


def start_in_ns(ns: str, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    """A long-running child in namespace `ns`, in a process group of its own (stopped as a whole)."""
    with log.open("wb") as out:
        return subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/var/lib/prosody"},
            start_new_session=True,
        )  # fmt: skip


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the child's process group, SIGKILL to whatever is left of it after 10 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def probe(net: Network, request: dict[str, Any], timeout_s: int = 120) -> Any:
    """tests/xmpp_probe.py in the bridge namespace, resolving names with the video root's /etc/hosts
    (bind-mounted over /etc/hosts in a private mount namespace: nothing changes on this machine)."""
    done = subprocess.run(
        [
            "ip", "netns", "exec", net.bridge, "unshare", "--mount", "--propagation", "private", "--",
            "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"', str(net.hosts),
            sys.executable, "-m", "tests.xmpp_probe",
        ],
        input=json.dumps(request), cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def network(joined: Joined, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    """Namespaces, veth, the shard root's firewall and Prosody; all of it removed at the end whatever
    happened."""
    failed = {n: failures(a) for n, a in joined.applied.items() if a.rc != 0}
    assert not failed, failed
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2")
    logs = tmp_path_factory.mktemp("path")
    tag = f"{os.getpid() % 100000}"
    net = Network(f"swell-shard-{tag}", f"swell-bridge-{tag}", joined.roots["video-a"] / "etc/hosts")
    veth_chat, veth_bridge = f"sws{tag}", f"swb{tag}"
    chat_ip, bridge_ip = PRIVATE_IPS["shard"], PRIVATE_IPS["video-a"]
    prefix = ipaddress.ip_network(PRIVATE_CIDR).prefixlen
    procs: list[subprocess.Popen[bytes]] = []
    made: list[str] = []
    try:
        for ns in (net.shard, net.bridge):
            ip("netns", "add", ns)
            made.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
        ip("link", "add", veth_chat, "type", "veth", "peer", "name", veth_bridge)
        ip("link", "set", veth_chat, "netns", net.shard)
        ip("link", "set", veth_bridge, "netns", net.bridge)
        # The shard instance: its private address; the admin network is reachable over the same link.
        ip("-n", net.shard, "addr", "add", f"{chat_ip}/{prefix}", "dev", veth_chat)
        ip("-n", net.shard, "link", "set", veth_chat, "up")
        ip("-n", net.shard, "route", "add", f"{OUTSIDE}/32", "dev", veth_chat)
        # The bridge's side: a bridge's private address, and an outside address.
        ip("-n", net.bridge, "addr", "add", f"{bridge_ip}/{prefix}", "dev", veth_bridge)
        ip("-n", net.bridge, "addr", "add", f"{OUTSIDE}/32", "dev", veth_bridge)
        ip("-n", net.bridge, "link", "set", veth_bridge, "up")

        # The shard root's own ruleset, loaded into the shard namespace only (it starts with `flush
        # ruleset`): refuse to load it anywhere that has other interfaces than these two.
        links = in_ns(net.shard, "ip", "-o", "link").stdout
        assert sorted(re.findall(r"^\d+: ([^:@]+)", links, re.MULTILINE)) == sorted(["lo", veth_chat]), links
        loaded = in_ns(
            net.shard, "chroot", str(joined.roots["shard"]), "/usr/sbin/nft", "-f", "/etc/nftables.conf"
        )
        assert loaded.returncode == 0, loaded.stderr

        root = joined.roots["shard"]
        uid, gid = root_ids(root, "prosody")
        run_dir = root / "run/prosody"
        run_dir.mkdir(parents=True, exist_ok=True)
        os.chown(run_dir, uid, gid)
        prosody = start_in_ns(
            net.shard,
            ["chroot", f"--userspec={uid}:{gid}", str(root), "/usr/bin/prosody"],
            logs / "prosody.out",
        )
        procs.append(prosody)
        ready = probe(net, {"action": "wait", "source": bridge_ip, "host": chat_ip, "port": 5222})
        if ready != "connected":
            prosody_logs = "".join(p.read_text() for p in (root / "var/log/prosody").glob("prosody.*"))
            pytest.fail(f"Prosody not reachable on {chat_ip}:5222 ({ready}): {prosody_logs[-3000:]}")

        yield net
    finally:
        for proc in procs:
            stop(proc)
        for ns in made:
            # Deleting a namespace deletes its end of the veth pair, and so the pair.
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30, check=False)


# --- What the applies wrote -------------------------------------------------------------------


def test_new_instances_converge_from_their_rendered_user_data(joined: Joined) -> None:
    for name, applied in joined.applied.items():
        assert applied.rc == 0, f"{name}: {failures(applied)}"
    assert joined.applied["shard"].tally.hosts["localhost"].roles == [
        "base",
        "node_exporter",
        "web",
        "jitsi_shard",
    ]
    assert joined.applied["video-a"].tally.hosts["localhost"].roles == ["base", "node_exporter", "video"]
    # The secrets reached only the tiers that need them, in the root-only file.
    assert set(joined.files["video"]["/etc/swell/secrets.json"]) == {
        "video_xmpp_password",
        "video_turn_secret",
        "video_xmpp_ca_certificate",
    }
    # Where the tiers find each other came from the stack: its names, and the shard's private address.
    shard_vars = joined.files["shard"]["/etc/swell/ansible-vars.json"]
    assert (
        shard_vars["swell_xmpp_domain"],
        shard_vars["swell_turn_host"],
        shard_vars["swell_turn_port"],
    ) == (
        DOMAIN,
        TURN_HOST,
        443,
    )
    video_vars = joined.files["video"]["/etc/swell/ansible-vars.json"]
    assert video_vars["swell_jitsi_shards"] == {joined.shard: PRIVATE_IPS["shard"]}
    assert ipaddress.ip_address(joined.xmpp_address) in ipaddress.ip_network(PRIVATE_CIDR)
    print(f"\njoin test: render + three applies took {joined.seconds:.1f} s")


def test_two_bridges_from_one_user_data_get_different_nicknames(joined: Joined) -> None:
    a, b = jvb_shard(joined, "video-a"), jvb_shard(joined, "video-b")
    assert a["muc_nickname"] != b["muc_nickname"]
    # With cloud-init: the instance id; without: the role's random id, kept in the root.
    assert b["muc_nickname"] == joined.instance_id
    assert a["muc_nickname"] == (joined.roots["video-a"] / "var/lib/swell/bridge-id").read_text().strip()
    assert (a["password"], a["domain"], a["muc_jids"]) == (b["password"], AUTH_DOMAIN, BREWERY)


def test_the_package_login_no_longer_shadows_jvb_conf(joined: Joined) -> None:
    properties = (joined.roots["video-a"] / "etc/jitsi/videobridge/sip-communicator.properties").read_text()
    assert "org.jitsi.videobridge.xmpp.user." not in properties
    assert "DISABLE_AWS_HARVESTER=true" in properties


def test_bridges_verify_prosody_and_trust_its_certificate(joined: Joined) -> None:
    shard = jvb_shard(joined, "video-a")
    assert shard["disable_certificate_verification"] is False
    bundle = (joined.roots["video-a"] / "etc/ssl/certs/ca-certificates.crt").read_text()
    body = re.sub(r"\s", "", joined.secrets["xmppTlsCertificate"].split("-----")[2])
    assert body in re.sub(r"\s", "", bundle)


def test_the_bridge_dials_the_certificates_name_which_its_hosts_file_maps_to_its_shards_prosody(
    joined: Joined,
) -> None:
    line = f"{joined.xmpp_address} {AUTH_DOMAIN}"
    for name in ("video-a", "video-b"):
        shard = jvb_shard(joined, name)
        # The dialled name is the verified name (the certificate's), on the listener's port.
        assert (shard["hostname"], shard["domain"], shard["port"]) == (AUTH_DOMAIN, AUTH_DOMAIN, 5222)
        hosts = (joined.roots[name] / "etc/hosts").read_text().splitlines()
        assert hosts.count(line) == 1, hosts
        # The root's own resolver (glibc, its nsswitch.conf) gives the shard's address for that name.
        resolved = debian_root.in_root(joined.roots[name], "getent", "ahostsv4", AUTH_DOMAIN).stdout
        assert resolved.split()[0] == joined.xmpp_address, resolved
    # Where cloud-init rewrites /etc/hosts at boot, its template keeps the line too.
    template = (joined.roots["video-b"] / "etc/cloud/templates/hosts.debian.tmpl").read_text()
    assert template.startswith("## template:jinja\n") and line in template.splitlines()


def test_prosody_listens_on_the_private_address_too(joined: Joined) -> None:
    lua = (joined.roots["shard"] / "etc/prosody/prosody.cfg.lua").read_text()
    (interfaces,) = re.findall(r"^c2s_interfaces = \{(.*)\}$", lua, re.MULTILINE)
    assert re.findall(r'"([^"]+)"', interfaces) == ["127.0.0.1", "::1", PRIVATE_IPS["shard"]]


# --- Over the network path --------------------------------------------------------------------


def test_the_bridges_log_in_to_their_shards_prosody_and_both_join_its_brewery(
    joined: Joined, network: Network
) -> None:
    shards = [dict(jvb_shard(joined, name)) for name in ("video-a", "video-b")]
    # Name resolution as the bridge does it: the name in jvb.conf, through the applied /etc/hosts.
    assert probe(network, {"action": "resolve", "name": shards[0]["hostname"]}) == [joined.xmpp_address]
    cafile = str(joined.roots["video-a"] / "etc/ssl/certs/ca-certificates.crt")
    results = probe(network, {"action": "join", "bridges": shards, "cafile": cafile})
    assert [r["outcome"] for r in results] == ["logged in", "logged in"], results
    assert all(r["tls"] for r in results), "the login did not go through STARTTLS"
    # Each reached its shard's Prosody on its private address, directly.
    assert [r["peer"] for r in results] == [joined.xmpp_address] * 2
    # Jicofo would see two bridges: the room holds both nicknames.
    assert results[1]["occupants"] == sorted(s["muc_nickname"] for s in shards)


def test_the_shard_firewall_opens_5222_to_the_private_network_only(joined: Joined, network: Network) -> None:
    chat = PRIVATE_IPS["shard"]
    tries = [
        {"source": PRIVATE_IPS["video-a"], "host": chat, "port": 5222},
        # The outside address reaches the shard instance (SSH is open to the admin network, where
        # nothing listens here: refused) ...
        {"source": OUTSIDE, "host": chat, "port": 22},
        # ... but its XMPP connection is dropped by the firewall.
        {"source": OUTSIDE, "host": chat, "port": 5222},
    ]
    outcomes = probe(network, {"action": "connect", "tries": tries})
    assert outcomes == ["connected", "ConnectionRefusedError", "TimeoutError"]
    ruleset = in_ns(network.shard, "chroot", str(joined.roots["shard"]), "/usr/sbin/nft", "list", "ruleset")
    assert f"ip saddr {PRIVATE_CIDR} tcp dport 5222 accept" in ruleset.stdout


def test_a_wrong_password_is_refused(joined: Joined, network: Network) -> None:
    shard = dict(jvb_shard(joined, "video-a")) | {"password": "not-the-bridge-password"}
    cafile = str(joined.roots["video-a"] / "etc/ssl/certs/ca-certificates.crt")
    (result,) = probe(network, {"action": "join", "bridges": [shard], "cafile": cafile, "join": False})
    assert result["outcome"] == "authentication failed"


def test_a_bridge_that_does_not_trust_prosodys_certificate_does_not_log_in(
    joined: Joined, network: Network
) -> None:
    # With Debian's public CAs only (the shard root's own bundle, which lacks the stack's certificate),
    # verification refuses Prosody before the password is sent.
    public_only = joined.roots["shard"] / "etc/ssl/certs/ca-certificates.crt"
    assert public_only.is_file()
    shard = dict(jvb_shard(joined, "video-a"))
    (result,) = probe(
        network, {"action": "join", "bridges": [shard], "cafile": str(public_only), "join": False}
    )
    assert result["outcome"].startswith("TLS refused")


def test_the_shard_hands_clients_exactly_coturns_service_at_the_configured_turn_host(
    joined: Joined, network: Network
) -> None:
    # Asked over XMPP (XEP-0215) of the user domain, where the service is configured: Prosody answers
    # any logged-in session (its default access), here the bridge's, over the shipped path. The
    # answer is the stack's swell:xmpp.turnHost, and only the service coturn serves there.
    shard = dict(jvb_shard(joined, "video-a"))
    cafile = str(joined.roots["video-a"] / "etc/ssl/certs/ca-certificates.crt")
    answer = probe(network, {"action": "services", "bridge": shard, "cafile": cafile, "domain": DOMAIN})
    assert answer["outcome"] == "logged in"
    coturn = (joined.roots["video-a"] / "etc/turnserver.conf").read_text().splitlines()
    (tls_port,) = [int(line.split("=", 1)[1]) for line in coturn if line.startswith("tls-listening-port=")]
    assert {"no-udp", "no-tcp"} <= set(coturn)  # TLS is all coturn serves
    assert answer["services"] == [
        {"type": "turns", "host": TURN_HOST, "port": tls_port, "transport": "tcp", "restricted": "1"}
    ]
    # Its credentials are the TURN REST API's: username "<expiry>", password base64(HMAC-SHA1(secret,
    # username)), which is what coturn checks with use-auth-secret. (Compared, never printed.)
    (credentials,) = answer["credentials"]
    expected = base64.b64encode(
        hmac.new(joined.secrets["turnSecret"].encode(), credentials["username"].encode(), "sha1").digest()
    ).decode()
    assert int(credentials["username"]) > time.time()
    signed = hmac.compare_digest(expected, credentials["password"] or "")
    assert signed, "the TURN password is not signed with the stack's turnSecret"


def test_coturn_and_prosody_share_the_turn_secret(joined: Joined) -> None:
    coturn = (joined.roots["video-a"] / "etc/turnserver.conf").read_text()
    (turn,) = re.findall(r"^static-auth-secret=(.+)$", coturn, re.MULTILINE)
    lua = (joined.roots["shard"] / "etc/prosody/prosody.cfg.lua").read_text()
    (external,) = re.findall(r'^external_service_secret = "(.+)"$', lua, re.MULTILINE)
    assert turn == external == joined.secrets["turnSecret"]
    # coturn's realm is the stack's domain, and its certificate names the TURN host.
    assert f"realm={DOMAIN}" in coturn.splitlines()
    subject = debian_root.in_root(
        joined.roots["video-a"], "openssl", "x509", "-noout", "-subject", "-in", "/etc/ssl/swell/turn.crt"
    ).stdout
    assert subject.strip() == f"subject=CN = {TURN_HOST}"


def test_no_secret_in_the_applies_output(joined: Joined) -> None:
    hidden = [joined.secrets["xmppBridgePassword"], joined.secrets["turnSecret"]]
    hidden.append(joined.secrets["xmppTlsKey"].splitlines()[1])
    for name, applied in joined.applied.items():
        text = "\n".join(applied.events) + applied.output_tail
        assert len(applied.events) > 50, name
        for secret in hidden:
            assert secret not in text, name
    # The files holding them are root's (and the service group's) only.
    for path, mode in (
        ("shard", f"etc/prosody/certs/{AUTH_DOMAIN}.key"),
        ("video-a", "etc/turnserver.conf"),
    ):
        assert (joined.roots[path] / mode).stat().st_mode & 0o007 == 0
