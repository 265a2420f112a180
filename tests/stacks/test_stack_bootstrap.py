"""The instance bootstrap under Pulumi's mocks: the user_data each tier gets (cloud-init's own schema
check, the files it writes, the pinned ansible-pull command), of the tiers and of the fixed groups
(chat store, shards), the service secrets in it only where the catalog names them, sent to the
engine as a Pulumi secret, and never in the outputs, logs, errors or `swell preview`; the playbooks
ref pinned to a commit on production stacks.

Canary secrets (random per run) stand in for real ones: a test that finds one where it must not be
fails, and the positive checks (the canary IS in the chat/video user_data) keep the negative ones
honest.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from stacks import bootstrap, config, engine
from swell.cli import app
from swell.configure.inventory import InventorySettings, build_inventory
from swell.configure.outputs import parse_stack_outputs
from tests.stacks.stack_fixtures import ROOT, stack_values, with_tiers

CLOUD_INIT = "/usr/bin/cloud-init"
# Pulumi's marker for a secret value on the wire (pulumi.runtime.rpc._special_secret_sig).
SECRET_SIG = ("4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270")
PINNED = "3f2c9a7d5e1b4c8a9f0e6d2b7a1c5e9f3d8b4a60"


# As `pulumi config set --secret --path swell:secrets.<key>` marks them.
SECRET_KEYS = ["swell:secrets"]


def test_secrets_set_without_secret_are_refused_naming_the_key_and_not_the_value() -> None:
    values = canaries()
    with pytest.raises(config.ConfigError) as caught:
        engine.run(prod_with(values), "prod-gra11")  # not marked secret: in clear in the stack file
    assert "swell:secrets: must be set with `pulumi config set --secret" in str(caught.value)
    for marker in markers(values):
        assert marker not in str(caught.value)


def canaries() -> dict[str, str]:
    """swell:secrets with a fresh random marker in every value (PEM framing for the TLS pair)."""
    tag = secrets.token_hex(8)
    return {
        "xmppBridgePassword": f"CANARYPASS{tag}xmppbridge",
        "turnSecret": f"CANARYTURN{tag}turnsecret",
        "xmppTlsCertificate": f"-----BEGIN CERTIFICATE-----\nCANARYCERT{tag}\n-----END CERTIFICATE-----\n",
        "xmppTlsKey": f"-----BEGIN PRIVATE KEY-----\nCANARYKEY{tag}\n-----END PRIVATE KEY-----\n",
        "chatStorePassword": f"CANARYSTORE{tag}chatstore",
    }


def markers(values: dict[str, str]) -> list[str]:
    """The random part of each canary: what must never show up where it does not belong."""
    return [re.search(r"CANARY[A-Z]+[0-9a-f]{16}", v).group(0) for v in values.values()]  # type: ignore[union-attr]


def prod_with(secret_values: dict[str, str] | None) -> dict[str, Any]:
    values = stack_values("prod-gra11")
    if secret_values is not None:
        values["swell:secrets"] = secret_values
    return values


def unwrap(value: Any) -> str:
    """A secret input as recorded by the mocks: {sig: ..., value: ...}; fail if it is not secret."""
    assert isinstance(value, dict) and value.get(SECRET_SIG[0]) == SECRET_SIG[1], "userData is not a secret"
    text = value["value"]
    assert isinstance(text, str)
    return text


def user_data_of(rec: engine.Recording, tier: str) -> dict[str, Any]:
    """The first instance's cloud-init document, of a tier or of a fixed group."""
    inst = rec.named(engine.INSTANCE)[f"{tier}-0"]
    text = unwrap(inst.inputs["userData"])
    assert text.startswith("#cloud-config\n")
    doc: dict[str, Any] = yaml.safe_load(text)
    return doc


@pytest.fixture(scope="module")
def with_secrets() -> tuple[dict[str, str], engine.Recording]:
    values = canaries()
    return values, engine.run(prod_with(values), "prod-gra11", secret_keys=SECRET_KEYS)


def expected_pull(tier: str) -> list[str]:
    argv = [
        "ansible-pull",
        "--url",
        "https://git.example.org/swell/swell.git",
        "--checkout",
        PINNED,
        "--full",
        "--directory",
        "/opt/swell",
        "--inventory",
        "localhost,",
        "--extra-vars",
        "@/etc/swell/ansible-vars.json",
    ]
    if SECRET_FILES[tier] is not None:
        argv += ["--extra-vars", "@/etc/swell/secrets.json"]
    return [*argv, "playbooks/pull.yml"]


# Where each tier (and fixed group) finds the others, from swell:xmpp (Pulumi.prod-gra11.yaml) and
# the fixed groups' private addresses: nothing secret, and nothing a role would otherwise leave at a
# placeholder. The offline engine answers these addresses for chat_store-0 and shard-0 in 10.42.0.0/16.
STORE_IP, SHARD_IP = "10.42.64.11", "10.42.80.11"
TIER_VARS: dict[str, dict[str, Any]] = {
    "web": {},
    "chat": {"swell_chat_store_address": STORE_IP, "swell_chat_store_port": 6379},
    "video": {
        "swell_xmpp_domain": "meet.example.org",
        "swell_jitsi_shards": {"0": SHARD_IP},
        "swell_xmpp_port": 5222,
        "swell_turn_host": "turn.example.org",
        "swell_turn_port": 443,
    },
    "chat_store": {},
    "shard": {
        "swell_xmpp_domain": "meet.example.org",
        "swell_turn_host": "turn.example.org",
        "swell_turn_port": 443,
    },
}


def vars_file(rec: engine.Recording, tier: str, index: int = 0) -> dict[str, Any]:
    text = unwrap(rec.named(engine.INSTANCE)[f"{tier}-{index}"].inputs["userData"])
    (f,) = [f for f in yaml.safe_load(text)["write_files"] if f["path"] == "/etc/swell/ansible-vars.json"]
    content: dict[str, Any] = json.loads(f["content"])
    return content


def test_the_bridges_are_told_every_shards_prosody_and_chat_its_store_and_each_depends_on_them() -> None:
    # Every bridge's user_data names each shard's Prosody by shard (the role keeps its own, named in
    # its Nova metadata); chat's names the chat store. Pulumi records the dependencies: those
    # instances exist before a bridge or a chat server is created, so none boots without its address.
    values = with_tiers(stack_values("prod-gra11"), video=3, chat=2)
    values["swell:shards"] = 2
    rec = engine.run(values, "prod-gra11")
    instances = rec.named(engine.INSTANCE)
    shards = {str(i): instances[f"shard-{i}"].state["networks"][-1]["fixedIpV4"] for i in range(2)}
    assert shards["0"] == SHARD_IP and shards["1"] != SHARD_IP
    assert [i["private_ip"] for i in rec.outputs["fixed"]["shard"]["instances"]] == [shards["0"], shards["1"]]
    for i in range(3):
        assert vars_file(rec, "video", i)["swell_jitsi_shards"] == shards
        bridge = instances[f"video-{i}"]
        assert {instances["shard-0"].urn, instances["shard-1"].urn} <= set(
            bridge.property_dependencies["userData"]
        )
    for i in range(2):
        assert vars_file(rec, "chat", i)["swell_chat_store_address"] == STORE_IP
        assert instances["chat_store-0"].urn in instances[f"chat-{i}"].property_dependencies["userData"]
    # Web is tied to neither: its user_data is known before any fixed group exists.
    assert "userData" not in instances["web-0"].property_dependencies or not (
        set(instances["web-0"].property_dependencies["userData"])
        & {instances["shard-0"].urn, instances["chat_store-0"].urn}
    )
    assert set(vars_file(rec, "web")) == {
        "swell_tier",
        "swell_stack",
        "swell_private_network_cidr",
        "swell_admin_cidrs",
    }


@pytest.mark.parametrize(
    ("domain", "turn_host"),
    [("meet.example.org", "turn.example.org"), ("visio.example.net", "relay.example.net")],
    ids=["shipped", "another-deployment"],
)
def test_the_xmpp_names_come_from_swell_xmpp(domain: str, turn_host: str) -> None:
    values = stack_values("prod-gra11")
    values["swell:xmpp"] = {"domain": domain, "turnHost": turn_host}
    rec = engine.run(values, "prod-gra11")
    for tier in ("shard", "video"):
        got = vars_file(rec, tier)
        assert (got["swell_xmpp_domain"], got["swell_turn_host"], got["swell_turn_port"]) == (
            domain,
            turn_host,
            443,
        )


def test_swell_configure_gives_each_tier_the_variables_its_user_data_gives() -> None:
    # The stack's outputs, read as `swell configure` reads them: every tier's group gets exactly
    # the variables of its instances' ansible-vars.json (the configure run and ansible-pull agree).
    rec = engine.run(stack_values("prod-gra11"), "prod-gra11")
    outputs = parse_stack_outputs(json.dumps(rec.outputs))
    inventory = build_inventory(outputs, InventorySettings())
    for tier in ("web", "chat", "video"):
        group = inventory["all"]["vars"] | inventory["all"]["children"][tier]["vars"]
        wanted = vars_file(rec, tier)
        assert {k: group[k] for k in wanted} == wanted, tier
        # swell_region and swell_tier_catalog (where the controller read the catalog; ansible-pull
        # reads its checkout's, at the same commit) are the inventory's own.
        own = ("swell_region", "swell_tier_catalog")
        assert {k: v for k, v in group.items() if k.startswith("swell_") and k not in own} == wanted
    assert rec.outputs["tier_vars"]["video"]["swell_jitsi_shards"] == {"0": SHARD_IP}
    assert rec.outputs["tier_vars"]["chat"]["swell_chat_store_address"] == STORE_IP


def test_tier_vars_refuse_a_missing_address_and_a_clash_with_the_base_variables() -> None:
    endpoints = bootstrap.Endpoints("meet.example.org", 5222, "turn.example.org", 443)
    with pytest.raises(ValueError, match="video: no value for swell_jitsi_shards"):
        bootstrap.tier_vars("video", endpoints)
    with pytest.raises(
        ValueError, match="chat: no value for swell_chat_store_address, swell_chat_store_port"
    ):
        bootstrap.tier_vars("chat", endpoints)
    assert bootstrap.tier_vars("shard", endpoints)["swell_xmpp_domain"] == "meet.example.org"
    b = bootstrap.Bootstrap(
        tier="chat",
        stack="s",
        private_network_cidr="10.42.0.0/16",
        admin_cidrs=["203.0.113.0/24"],
        playbooks_repo="https://git.example.org/swell/swell.git",
        playbooks_ref=PINNED,
        tier_vars={"swell_tier": "video"},
    )
    with pytest.raises(ValueError, match="may not redefine swell_tier"):
        bootstrap.ansible_vars(b)


SECRET_FILES = {
    "web": None,
    # The chat servers log in to the chat store; nothing of Prosody's any more.
    "chat": {"chat_redis_password": "chatStorePassword"},
    # The bridge trusts the certificate; it never gets Prosody's key.
    "video": {
        "video_xmpp_password": "xmppBridgePassword",
        "video_turn_secret": "turnSecret",
        "video_xmpp_ca_certificate": "xmppTlsCertificate",
    },
    "chat_store": {"chat_store_password": "chatStorePassword"},
    # Prosody (the bridges' account, TURN credentials, its certificate and key) and Jicofo.
    "shard": {
        "jitsi_shard_jvb_password": "xmppBridgePassword",
        "jitsi_shard_turn_secret": "turnSecret",
        "jitsi_shard_xmpp_tls_certificate": "xmppTlsCertificate",
        "jitsi_shard_xmpp_tls_key": "xmppTlsKey",
    },
}


@pytest.mark.skipif(not Path(CLOUD_INIT).exists(), reason="Debian's cloud-init package is not installed")
@pytest.mark.parametrize("tier", ["web", "chat", "video", "chat_store", "shard"])
def test_user_data_passes_cloud_init_schema_and_follows_the_bootstrap_contract(
    tier: str, with_secrets: tuple[dict[str, str], engine.Recording], tmp_path: Path
) -> None:
    values, rec = with_secrets
    text = unwrap(rec.named(engine.INSTANCE)[f"{tier}-0"].inputs["userData"])
    path = tmp_path / "user-data.yaml"
    path.write_text(text)
    result = subprocess.run(
        [CLOUD_INIT, "schema", "--config-file", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    doc = yaml.safe_load(text)
    files = {f["path"]: f for f in doc["write_files"]}
    for f in files.values():
        assert (f["owner"], f["permissions"]) == ("root:root", "0600")
    assert json.loads(files["/etc/swell/ansible-vars.json"]["content"]) == {
        "swell_tier": tier,
        "swell_stack": "prod-gra11",
        "swell_private_network_cidr": "10.42.0.0/16",
        "swell_admin_cidrs": ["198.51.100.0/24", "2001:db8:100::/48"],
        **TIER_VARS[tier],
    }
    wanted = SECRET_FILES[tier]
    if wanted is None:
        assert set(files) == {"/etc/swell/ansible-vars.json"}
        assert not any(m in text for m in markers(values))
    else:
        got = json.loads(files["/etc/swell/secrets.json"]["content"])
        assert got == {var: values[key] for var, key in wanted.items()}
        # The non-secret file stays free of secrets (it could be read for debugging).
        assert not any(m in files["/etc/swell/ansible-vars.json"]["content"] for m in markers(values))
    assert {"ansible", "git"} <= set(doc["packages"])
    assert doc["runcmd"] == [expected_pull(tier)]


def test_every_instance_gets_its_user_data_as_a_pulumi_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    # What the engine receives: the secret marker around userData (encrypted in the state, [secret] in
    # `pulumi preview`), and userData among the outputs to keep secret.
    seen: dict[str, list[str]] = {}

    class Spy(engine.RecordingMonitor):
        def RegisterResource(self, request: Any) -> Any:
            if request.type == engine.INSTANCE:
                seen[request.name] = list(request.additionalSecretOutputs)
            return super().RegisterResource(request)

    monkeypatch.setattr(engine, "RecordingMonitor", Spy)
    rec = engine.run(prod_with(canaries()), "prod-gra11", secret_keys=SECRET_KEYS)
    instances = rec.of_type(engine.INSTANCE)
    assert len(instances) == 37  # 35 in the tiers, the chat store and one shard
    for inst in instances:
        unwrap(inst.inputs["userData"])
        assert "userData" in seen[inst.name]


def test_no_secret_in_outputs_logs_or_other_resources(
    with_secrets: tuple[dict[str, str], engine.Recording], caplog: pytest.LogCaptureFixture
) -> None:
    values, rec = with_secrets
    # Positive control: the secrets do reach the chat and video user_data.
    assert all(
        m in unwrap(rec.named(engine.INSTANCE)["video-0"].inputs["userData"]) for m in markers(values)[:3]
    )
    assert markers(values)[4] in unwrap(rec.named(engine.INSTANCE)["chat-0"].inputs["userData"])
    exported = json.dumps(rec.outputs)
    others = json.dumps([(r.name, r.inputs) for r in rec.resources if r.type != engine.INSTANCE], default=str)
    instance_rest = json.dumps(
        [{k: v for k, v in r.inputs.items() if k != "userData"} for r in rec.of_type(engine.INSTANCE)]
    )
    with caplog.at_level(logging.DEBUG):
        engine.run(prod_with(values), "prod-gra11", secret_keys=SECRET_KEYS)
    for marker in markers(values):
        assert marker not in exported
        assert marker not in others
        assert marker not in instance_rest
        assert marker not in caplog.text


def test_a_stack_without_secrets_deploys_but_warns_that_bridges_cannot_join(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        rec = engine.run(prod_with(None), "prod-gra11")
    assert "swell:secrets is not set" in caplog.text
    assert "bridges cannot join" in caplog.text
    doc = user_data_of(rec, "video")
    assert [f["path"] for f in doc["write_files"]] == ["/etc/swell/ansible-vars.json"]
    assert "@/etc/swell/secrets.json" not in doc["runcmd"][0]


def _bad(key: str, value: Any) -> dict[str, Any]:
    values = canaries()
    values[key] = value
    return values


BAD_SECRETS = [
    ("short-password", _bad("xmppBridgePassword", "CANARYPASSshort"), "swell:secrets.xmppBridgePassword"),
    # A quote would break jvb.conf and Prosody's Lua; `{{` would be evaluated by Ansible.
    (
        "quote",
        _bad("xmppBridgePassword", 'CANARYPASS"0123456789abcdefgh'),
        "swell:secrets.xmppBridgePassword",
    ),
    ("jinja", _bad("turnSecret", "CANARYTURN{{0123456789abcdef}}"), "swell:secrets.turnSecret"),
    ("not-a-string", _bad("turnSecret", ["CANARYTURN0123456789abcdefghij"]), "swell:secrets.turnSecret"),
    ("not-pem", _bad("xmppTlsKey", "CANARYKEY0123456789abcdef"), "swell:secrets.xmppTlsKey"),
    ("misspelt-key", {**canaries(), "turnSecert": "CANARYTURN0123456789abcdef"}, "swell:secrets.turnSecert"),
    ("whole-object-as-text", "CANARYWHOLE0123456789abcdef", "swell:secrets"),
]


@pytest.mark.parametrize(
    ("secret_values", "key"), [b[1:] for b in BAD_SECRETS], ids=[b[0] for b in BAD_SECRETS]
)
def test_a_bad_secret_is_refused_naming_the_key_without_echoing_any_secret(
    secret_values: Any, key: str
) -> None:
    values = stack_values("prod-gra11")
    values["swell:secrets"] = secret_values
    with pytest.raises(config.ConfigError) as caught:
        config.parse(values, "prod-gra11")
    text = str(caught.value)
    assert any(p.startswith(f"{key}:") for p in caught.value.problems), caught.value.problems
    assert "CANARY" not in text
    # The preview (the same program under mocks) says the same, without the value either.
    result = CliRunner().invoke(
        app,
        ["preview", "--stack", "prod-gra11", "--set", f"secrets={json.dumps(secret_values)}"],
    )
    assert result.exit_code == 2
    assert key in result.output
    assert "CANARY" not in result.output


def test_swell_preview_with_secrets_prints_none_of_them() -> None:
    values = canaries()
    sets = []
    for key, value in values.items():
        sets += ["--set", f"secrets.{key}={json.dumps(value)}"]
    runner = CliRunner()
    as_json = runner.invoke(app, ["preview", "--stack", "prod-gra11", "--json", *sets])
    human = runner.invoke(app, ["preview", "--stack", "prod-gra11", *sets], env={"COLUMNS": "200"})
    assert (as_json.exit_code, human.exit_code) == (0, 0), as_json.output + human.output
    assert json.loads(as_json.stdout)["summary"]["instances"] == 37  # it did run the program
    for marker in markers(values):
        assert marker not in as_json.output
        assert marker not in human.output


def test_config_and_bootstrap_reprs_hide_the_secrets() -> None:
    values = canaries()
    cfg = config.parse(prod_with(values), "prod-gra11")
    b = bootstrap.Bootstrap(
        tier="video",
        stack="prod-gra11",
        private_network_cidr="10.42.0.0/16",
        admin_cidrs=["198.51.100.0/24"],
        playbooks_repo="https://git.example.org/swell/swell.git",
        playbooks_ref=PINNED,
        secrets=bootstrap.secret_vars("video", cfg.secrets),
    )
    for marker in markers(values):
        assert marker not in repr(cfg)
        assert marker not in repr(b)
    assert markers(values)[0] in bootstrap.render_user_data(b)


def test_no_stack_file_in_git_holds_a_plaintext_secret() -> None:
    # A stack file may hold swell:secrets only as Pulumi ciphertext ({secure: ...} leaves), which is
    # what `pulumi config set --secret` writes.
    def leaves(node: Any) -> list[Any]:
        if isinstance(node, dict) and set(node) != {"secure"}:
            return [leaf for v in node.values() for leaf in leaves(v)]
        return [node]

    tracked = subprocess.run(
        ["git", "ls-files", "Pulumi.*.yaml"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert "Pulumi.prod-gra11.yaml" in tracked
    for name in tracked:
        cfg = (yaml.safe_load((ROOT / name).read_text()) or {}).get("config") or {}
        for leaf in leaves(cfg.get("swell:secrets", {})):
            assert isinstance(leaf, dict) and set(leaf) == {"secure"}, name


REFS = [
    ("branch-on-prod", {"ref": "main"}, "swell:playbooks.ref: 'main' is not a full commit SHA"),
    ("tag-on-prod", {"ref": "v1.0.0"}, "swell:playbooks.ref: 'v1.0.0' is not a full commit SHA"),
    ("short-sha", {"ref": PINNED[:12]}, "is not a full commit SHA"),
    ("upper-case-sha", {"ref": PINNED.upper()}, "is not a full commit SHA"),
    ("pinned", {"ref": PINNED}, None),
    ("sha256-repository", {"ref": "a" * 64}, None),
    ("dev-follows-a-branch", {"ref": "main", "allowUnpinnedRef": True}, None),
]


@pytest.mark.parametrize(("playbooks", "problem"), [r[1:] for r in REFS], ids=[r[0] for r in REFS])
def test_the_playbooks_ref_must_be_a_commit_unless_the_stack_allows_a_branch(
    playbooks: dict[str, Any], problem: str | None
) -> None:
    values = copy.deepcopy(stack_values("prod-gra11"))
    values["swell:playbooks"] = {"repo": "https://git.example.org/swell/swell.git", **playbooks}
    if problem is None:
        assert config.parse(values, "prod-gra11").playbooks.ref == playbooks["ref"]
        return
    with pytest.raises(config.ConfigError) as caught:
        config.parse(values, "prod-gra11")
    assert any(problem in p for p in caught.value.problems), caught.value.problems
