"""A new video bridge joins: from the stack's user_data to a real XMPP login on the chat tier's Prosody.

What is real here:

- the user_data: rendered by the stack program (stacks/program.py) under Pulumi's mocks, with
  `swell:secrets` set (a random bridge password and TURN secret, and a certificate for the auth
  domain made with openssl for this run), in a child process (tests/render_user_data.py);
- the apply: playbooks/pull.yml, ansible-pull's entry point, with exactly the variables of the
  files the user_data writes (/etc/swell/ansible-vars.json + /etc/swell/secrets.json, as extra
  vars like ansible-pull's two `--extra-vars @file`), on fresh Debian 12 roots through the chroot
  connection: one chat instance and two video instances made from the same user_data;
- Prosody: the chat root's own, installed from Debian by the chat role, started by this test as the
  root's prosody user with the configuration the role wrote, on 127.0.0.1;
- the login: slixmpp, a real XMPP client, with the account, domain and password read from the
  bridge's applied jvb.conf (HOCON), over STARTTLS verified against the trust store the video role
  built in the bridge's root (what the bridge's JVM trusts), then both bridges join the brewery room
  with their own nicknames.

What is not: Jitsi Videobridge itself (download.jitsi.org is out of reach: `video_jitsi_install`
is off, the role still writes jvb.conf); the network path from a bridge to Prosody (the test dials
127.0.0.1 on a free port instead of the chat instance's address and 5222); the chroot cannot find its
private address (`swell_private_ip` is given) and has no cloud-init (one video root gets an
instance-id file as cloud-init would write it). Those test-only variables are inventory variables;
everything the user_data carries is used as is.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
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
# The user_data sets no XMPP domain: chat and video both use the roles' default.
AUTH_DOMAIN = "auth.chat.example.org"
BREWERY = "jvbbrewery@internal.auth.chat.example.org"
PRIVATE_IPS = {"chat": "10.42.0.21", "video-a": "10.42.0.31", "video-b": "10.42.0.32"}
# What Jitsi's postinst writes into sip-communicator.properties; read before jvb.conf by the bridge.
PACKAGE_PROPERTIES = (
    "org.ice4j.ice.harvest.DISABLE_AWS_HARVESTER=true\n"
    "org.jitsi.videobridge.xmpp.user.shard.HOSTNAME=localhost\n"
    "org.jitsi.videobridge.xmpp.user.shard.PASSWORD=packagepassword\n"
    "org.jitsi.videobridge.xmpp.user.shard.MUC_NICKNAME=00000000-0000-0000-0000-000000000000\n"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def make_certificate(workdir: Path) -> tuple[str, str]:
    """A certificate for the auth domain and its key, as an operator would put in swell:secrets."""
    key, crt = workdir / "xmpp.key", workdir / "xmpp.crt"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "2", "-subj", f"/CN={AUTH_DOMAIN}",
            "-addext", f"subjectAltName=DNS:{AUTH_DOMAIN}",
            "-keyout", str(key), "-out", str(crt),
        ],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return crt.read_text(), key.read_text()


def render_user_data(values: dict[str, Any]) -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.render_user_data"],
        input=json.dumps({"stack": "prod-gra11", "values": values}),
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rendered: dict[str, str] = json.loads(done.stdout)
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
    c2s_port: int
    instance_id: str
    seconds: float


@pytest.fixture(scope="module")
def joined(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Joined]:
    reason = debian_root.can_chroot()
    if reason:
        pytest.skip(reason)
    started = time.monotonic()
    base = tmp_path_factory.mktemp("join")
    certificate, key = make_certificate(base)
    stack_secrets = {
        "xmppBridgePassword": f"CANARYpass{secrets.token_hex(16)}",
        "turnSecret": f"CANARYturn{secrets.token_hex(16)}",
        "xmppTlsCertificate": certificate,
        "xmppTlsKey": key,
    }
    values = yaml.safe_load((ROOT / "Pulumi.prod-gra11.yaml").read_text())["config"]
    values["swell:secrets"] = stack_secrets
    rendered = render_user_data(values)
    files = {tier: written_files(rendered[tier]) for tier in ("chat", "video")}

    roots = {name: debian_root.fresh_root(base / name) for name in PRIVATE_IPS}
    # video-b boots like a real instance: cloud-init recorded its Nova instance id.
    instance_id = str(uuid.uuid4())
    cloud_data = roots["video-b"] / "var/lib/cloud/data"
    cloud_data.mkdir(parents=True)
    (cloud_data / "instance-id").write_text(instance_id + "\n")
    # video-a already has the package's legacy login, as Jitsi's postinst leaves it.
    jitsi_dir = roots["video-a"] / "etc/jitsi/videobridge"
    jitsi_dir.mkdir(parents=True)
    (jitsi_dir / "sip-communicator.properties").write_text(PACKAGE_PROPERTIES)

    c2s_port = free_port()
    jobs = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        for name, root in roots.items():
            tier = "chat" if name == "chat" else "video"
            extravars = files[tier]["/etc/swell/ansible-vars.json"] | files[tier]["/etc/swell/secrets.json"]
            host_vars: dict[str, Any] = {"swell_private_ip": PRIVATE_IPS[name]}
            if tier == "chat":
                # Free ports on this shared machine instead of 5222 and 5280.
                host_vars |= {"chat_c2s_port": c2s_port, "chat_http_port": free_port()}
            else:
                host_vars |= {"video_jitsi_install": False}
            jobs[name] = pool.submit(apply_pull, root, extravars, host_vars)
        applied = {name: job.result() for name, job in jobs.items()}
    for root in roots.values():
        debian_root.keep_archives(root)
    yield Joined(roots, stack_secrets, files, applied, c2s_port, instance_id, time.monotonic() - started)
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


@pytest.fixture(scope="module")
def prosody(joined: Joined) -> Iterator[int]:
    """The chat root's Prosody on 127.0.0.1, as its prosody user; stopped (its whole process group)
    at the end, whatever happened."""
    failed = {n: failures(a) for n, a in joined.applied.items() if a.rc != 0}
    assert not failed, failed
    root = joined.roots["chat"]
    uid, gid = root_ids(root, "prosody")
    run_dir = root / "run/prosody"
    run_dir.mkdir(parents=True, exist_ok=True)
    os.chown(run_dir, uid, gid)
    proc = subprocess.Popen(
        ["chroot", f"--userspec={uid}:{gid}", str(root), "/usr/bin/prosody"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/var/lib/prosody"},
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                logs = "".join(
                    p.read_text() for p in (root / "var/log/prosody").glob("prosody.*") if p.is_file()
                )
                out = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"Prosody exited with {proc.returncode}: {out[-2000:]}\n{logs[-3000:]}")
            try:
                socket.create_connection(("127.0.0.1", joined.c2s_port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("Prosody did not listen on its c2s port within 30 s")
                time.sleep(0.3)
        yield joined.c2s_port
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to Prosody's process group, SIGKILL to whatever is left of it after 10 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


class Bridge:
    """An XMPP client logging in like the bridge would, from its jvb.conf."""

    def __init__(self, shard: Any, port: int, cafile: Path, password: str | None = None) -> None:
        import slixmpp

        self.shard = shard
        self.xmpp = slixmpp.ClientXMPP(
            f"{shard['username']}@{shard['domain']}", password or shard["password"]
        )
        self.xmpp.ca_certs = cafile
        self.xmpp.register_plugin("xep_0045")
        self.port = port
        self.outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.xmpp.add_event_handler("session_start", lambda _: self._settle("logged in"))
        self.xmpp.add_event_handler("failed_all_auth", lambda _: self._settle("authentication failed"))
        self.xmpp.add_event_handler("ssl_invalid_chain", lambda e: self._settle(f"TLS refused: {e}"))
        self.xmpp.add_event_handler("tls_success", lambda _: setattr(self, "tls", True))
        self.tls = False

    def _settle(self, outcome: str) -> None:
        if not self.outcome.done():
            self.outcome.set_result(outcome)

    async def login(self) -> str:
        self.xmpp.connect("127.0.0.1", self.port)
        return await asyncio.wait_for(self.outcome, 30)

    async def join_brewery(self) -> set[str]:
        from slixmpp import JID

        own, _, occupants, _ = await self.xmpp.plugin["xep_0045"].join_muc_wait(
            JID(self.shard["muc_jids"]), self.shard["muc_nickname"], maxstanzas=0, timeout=20
        )
        return {own["from"].resource} | {p["from"].resource for p in occupants}

    async def close(self) -> None:
        self.xmpp.disconnect(wait=1)
        await asyncio.sleep(0.2)


def test_new_instances_converge_from_their_rendered_user_data(joined: Joined) -> None:
    for name, applied in joined.applied.items():
        assert applied.rc == 0, f"{name}: {failures(applied)}"
    assert joined.applied["chat"].tally.hosts["localhost"].roles == ["base", "node_exporter", "web", "chat"]
    assert joined.applied["video-a"].tally.hosts["localhost"].roles == ["base", "node_exporter", "video"]
    # The secrets reached only the tiers that need them, in the root-only file.
    assert set(joined.files["video"]["/etc/swell/secrets.json"]) == {
        "video_xmpp_password",
        "video_turn_secret",
        "video_xmpp_ca_certificate",
    }
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


def test_the_bridge_logs_in_to_the_chat_roles_prosody_and_both_bridges_join_the_brewery(
    joined: Joined, prosody: int
) -> None:
    cafile = joined.roots["video-a"] / "etc/ssl/certs/ca-certificates.crt"

    async def scenario() -> tuple[str, str, bool, set[str]]:
        a = Bridge(jvb_shard(joined, "video-a"), prosody, cafile)
        b = Bridge(jvb_shard(joined, "video-b"), prosody, cafile)
        try:
            first, second = await a.login(), await b.login()
            occupants = set()
            if first == second == "logged in":
                await a.join_brewery()
                occupants = await b.join_brewery()
            return first, second, a.tls and b.tls, occupants
        finally:
            await a.close()
            await b.close()

    first, second, tls, occupants = asyncio.run(scenario())
    assert (first, second) == ("logged in", "logged in")
    assert tls, "the login did not go through STARTTLS"
    # Jicofo would see two bridges: the room holds both nicknames.
    assert occupants == {
        jvb_shard(joined, "video-a")["muc_nickname"],
        jvb_shard(joined, "video-b")["muc_nickname"],
    }


def test_a_wrong_password_is_refused(joined: Joined, prosody: int) -> None:
    cafile = joined.roots["video-a"] / "etc/ssl/certs/ca-certificates.crt"

    async def scenario() -> str:
        bridge = Bridge(jvb_shard(joined, "video-a"), prosody, cafile, password="not-the-bridge-password")
        try:
            return await bridge.login()
        finally:
            await bridge.close()

    assert asyncio.run(scenario()) == "authentication failed"


def test_coturn_and_prosody_share_the_turn_secret(joined: Joined) -> None:
    coturn = (joined.roots["video-a"] / "etc/turnserver.conf").read_text()
    (turn,) = re.findall(r"^static-auth-secret=(.+)$", coturn, re.MULTILINE)
    lua = (joined.roots["chat"] / "etc/prosody/prosody.cfg.lua").read_text()
    (external,) = re.findall(r'^turn_external_secret = "(.+)"$', lua, re.MULTILINE)
    assert turn == external == joined.secrets["turnSecret"]


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
        ("chat", "etc/prosody/certs/auth.chat.example.org.key"),
        ("video-a", "etc/turnserver.conf"),
    ):
        assert (joined.roots[path] / mode).stat().st_mode & 0o007 == 0


def test_a_bridge_that_does_not_trust_prosodys_certificate_does_not_log_in(
    joined: Joined, prosody: int
) -> None:
    # The check above can fail: with Debian's public CAs only (the chat root's own bundle, which
    # lacks the stack's certificate), verification refuses Prosody before the password is sent.
    public_only = joined.roots["chat"] / "etc/ssl/certs/ca-certificates.crt"
    assert public_only.is_file()

    async def scenario() -> str:
        bridge = Bridge(jvb_shard(joined, "video-a"), prosody, public_only)
        try:
            return await bridge.login()
        finally:
            await bridge.close()

    assert asyncio.run(scenario()).startswith("TLS refused")
