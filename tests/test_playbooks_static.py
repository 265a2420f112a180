"""The playbooks as files: lint, syntax, the port-table contract, documented variables, filters."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from stacks.rules import fixed_ingress_rules, ingress_rules
from swell import tiers
from tests.fourth_tier import NAME, use_extended_catalog

ROOT = Path(__file__).resolve().parents[1]
PLAYBOOKS = ROOT / "playbooks"
ROLES = sorted(p.name for p in (PLAYBOOKS / "roles").iterdir() if p.is_dir())
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}

SOURCES = {
    "admin CIDRs only": "admin",
    "load balancer subnet and private network": "load_balancer",
    "world (IPv4 and IPv6)": "world",
    "private network": "private",
    # A fixed group's port: its security group admits one tier; the host firewall, the private network.
    "chat's security group only": "private",
    "video's security group only": "private",
}


def architecture_ports() -> set[tuple[int, str, str, str]]:
    """(port, protocol, tier, source) from ARCHITECTURE.md's "Ports" table."""
    text = (ROOT / "ARCHITECTURE.md").read_text()
    section = text.split("### Ports", 1)[1].split("\n###", 1)[0]
    rows = set()
    for line in section.splitlines():
        match = re.match(r"\|\s*(\d+)/(tcp|udp)\s*\|\s*([^|]+?)\s*\|\s*([^|]+?)\s*\|", line)
        if not match:
            continue
        port, protocol, tiers, source = match.groups()
        every = ["web", "chat", "video", "chat_store", "shard"]
        names = every if tiers == "all" else [t.strip().strip("`") for t in tiers.split(",")]
        rows |= {(int(port), protocol, tier, SOURCES[source]) for tier in names}
    return rows


def role_file(role: str, path: str) -> Any:
    return yaml.safe_load((PLAYBOOKS / "roles" / role / path).read_text())


def port_table(catalog: Path | None = None) -> list[dict[str, Any]]:
    """The base role's port table, as its vars derive it: the `swell_port_table` filter over the
    tier catalog."""
    spec = importlib.util.spec_from_file_location(
        "swell_tiers", PLAYBOOKS / "filter_plugins" / "swell_tiers.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert "swell_port_table" in role_file("base", "vars/main.yml")["base_firewall_port_table"]
    data = yaml.safe_load((catalog or tiers.DEFAULT_PATH).read_text())
    return list(module.swell_port_table(data))


def test_firewall_port_table_is_architecture_md_port_table() -> None:
    rules = {(r["port"], r["protocol"], tier, r["source"]) for r in port_table() for tier in r["tiers"]}
    expected = architecture_ports()
    assert len(expected) >= 10  # the table was found and read
    assert rules == expected


@pytest.mark.parametrize("with_fourth_tier", [False, True], ids=["shipped-catalog", "fourth-tier"])
def test_host_firewall_opens_what_the_security_groups_open(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, with_fourth_tier: bool
) -> None:
    # Both from the same catalog entries: the stack's rules (stacks/rules.py) and the base role's
    # table, tier by tier (the SG says `private` where the firewall says `load_balancer`).
    catalog = use_extended_catalog(monkeypatch, tmp_path) if with_fourth_tier else tiers.DEFAULT_PATH
    table = port_table(catalog)
    for tier in tiers.names():
        firewall = {(r["port"], r["protocol"]) for r in table if tier in r["tiers"]}
        groups = {(r.port, r.protocol) for r in ingress_rules(tier, ["203.0.113.0/24"], "10.42.0.0/16")}
        assert firewall == groups, tier
    # A fixed group's ports admit one tier's security group; the firewall opens them to the network.
    for group in tiers.load().fixed:
        firewall = {(r["port"], r["protocol"]) for r in table if group.name in r["tiers"]}
        by_address = fixed_ingress_rules(group.name, ["203.0.113.0/24"], "10.42.0.0/16")
        assert firewall == {(r.port, r.protocol) for r in by_address} | {
            (p.port, p.protocol) for p in group.ports
        }, group.name
    assert (with_fourth_tier and NAME in {t for r in table for t in r["tiers"]}) or not with_fourth_tier


@pytest.mark.parametrize("role", ROLES)
def test_role_defaults_are_prefixed_and_documented(role: str) -> None:
    defaults = role_file(role, "defaults/main.yml")
    readme = (PLAYBOOKS / "roles" / role / "README.md").read_text()
    undocumented = [name for name in defaults if f"`{name}`" not in readme]
    unprefixed = [name for name in defaults if not name.startswith(f"{role}_")]
    assert (undocumented, unprefixed) == ([], [])


def task_names(path: Path) -> list[str]:
    items = yaml.safe_load(path.read_text()) or []
    names = []
    for item in items:
        names.append(item.get("name", ""))
        for play_part in ("tasks", "pre_tasks", "post_tasks", "handlers"):
            names += [t.get("name", "") for t in item.get(play_part, [])]
    return names


@pytest.mark.parametrize("role", ROLES)
def test_task_and_handler_names_are_sentences(role: str) -> None:
    files = sorted((PLAYBOOKS / "roles" / role).glob("*/*.yml"))
    names = [n for f in files if f.parent.name in ("tasks", "handlers") for n in task_names(f)]
    assert names
    bad = [n for n in names if not n or not n[0].isupper() or n.endswith(".")]
    assert bad == []


def test_pull_playbook_applies_site_yml() -> None:
    plays = yaml.safe_load((PLAYBOOKS / "pull.yml").read_text())
    assert {"ansible.builtin.import_playbook": "site.yml", "name": "Apply the site playbook"} in plays
    assert plays[0]["hosts"] == "localhost"


def test_playbooks_pass_syntax_check() -> None:
    result = subprocess.run(
        [BIN / "ansible-playbook", "--syntax-check", "-i", "localhost,", "site.yml", "pull.yml"],
        cwd=PLAYBOOKS,
        env={**ENV, "ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


STACK_NAMES = {"swell_xmpp_domain": "meet.example.org", "swell_turn_host": "turn.example.org"}


SHARDS = {"swell_jitsi_shards": {"0": "10.42.80.11", "1": "10.42.80.12"}}
STORE = {"swell_chat_store_address": "10.42.64.11", "chat_redis_password": "p" * 32}
STORE_PASSWORD = {"chat_store_password": "p" * 32}
VALIDATIONS: list[tuple[str, str, dict[str, Any], str | None]] = [
    ("shard-from-the-stack", "jitsi_shard", STACK_NAMES | {"jitsi_shard_turn_secret": "s" * 32}, None),
    ("shard-without-a-domain", "jitsi_shard", {}, "jitsi_shard_xmpp_domain is '', not a DNS name"),
    (
        "shard-trailing-dot",
        "jitsi_shard",
        STACK_NAMES | {"swell_xmpp_domain": "chat.example.org."},
        "not a DNS name",
    ),
    (
        "shard-turn-without-a-host",
        "jitsi_shard",
        {"swell_xmpp_domain": "meet.example.org", "jitsi_shard_turn_secret": "s" * 32},
        "jitsi_shard_turn_host is empty",
    ),
    ("video-from-the-stack", "video", STACK_NAMES | SHARDS, None),
    ("video-without-shards", "video", STACK_NAMES, None),
    ("video-without-a-domain", "video", SHARDS, "video_xmpp_chat_domain is '', not a DNS name"),
    (
        "video-shard-address-is-a-name",
        "video",
        STACK_NAMES | {"swell_jitsi_shards": {"0": "shard-0"}},
        "expected each shard's Prosody private IPv4 address",
    ),
    ("chat-from-the-stack", "chat", STORE, None),
    (
        "chat-without-the-store",
        "chat",
        {"chat_redis_password": "p" * 32},
        "chat_redis_address is '', not an IP",
    ),
    (
        "chat-without-a-password",
        "chat",
        {"swell_chat_store_address": "10.42.64.11"},
        "chat_redis_password is empty",
    ),
    (
        "store-with-a-password",
        "chat_store",
        STORE_PASSWORD | {"chat_store_bind_address": "10.42.64.11"},
        None,
    ),
    (
        "store-without-a-password",
        "chat_store",
        {"chat_store_bind_address": "10.42.64.11"},
        "chat_store_password is empty",
    ),
    (
        "store-on-every-address",
        "chat_store",
        STORE_PASSWORD | {"chat_store_bind_address": "0.0.0.0"},
        "chat_store_bind_address is '0.0.0.0'",
    ),
]


@pytest.mark.parametrize(
    ("role", "given", "refusal"), [v[1:] for v in VALIDATIONS], ids=[v[0] for v in VALIDATIONS]
)
def test_roles_refuse_to_run_without_what_the_stack_gives_them(
    tmp_path: Path, role: str, given: dict[str, Any], refusal: str | None
) -> None:
    # The roles' first tasks (tasks/validate.yml), run alone: no placeholder domain, address or password
    # is left to fall back on, so a host without the stack's values stops before anything is
    # installed or written.
    (tmp_path / "ansible.cfg").write_text(
        f"[defaults]\nroles_path = {PLAYBOOKS / 'roles'}\nfilter_plugins = {PLAYBOOKS / 'filter_plugins'}\n"
    )
    play = [
        {
            "name": "Check a role's variables",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "tasks": [{"ansible.builtin.include_role": {"name": role, "tasks_from": "validate"}}],
        }
    ]
    (tmp_path / "check.yml").write_text(yaml.safe_dump(play))
    (tmp_path / "vars.json").write_text(json.dumps(given))
    result = subprocess.run(
        [BIN / "ansible-playbook", "-i", "localhost,", "-e", "@vars.json", "check.yml"],
        cwd=tmp_path,
        env={**ENV, "ANSIBLE_CONFIG": str(tmp_path / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    if refusal is None:
        assert result.returncode == 0, output
    else:
        assert result.returncode != 0 and refusal in output, output


@pytest.mark.slow
def test_ansible_lint_production_profile_is_clean() -> None:
    result = subprocess.run(
        [BIN / "ansible-lint", "--profile", "production", "--nocolor", "playbooks/"],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "passed" in result.stderr + result.stdout


def load_filters() -> Any:
    spec = importlib.util.spec_from_file_location(
        "swell_network", PLAYBOOKS / "filter_plugins" / "swell_network.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("addresses", "cidr", "expected"),
    [
        (["51.68.0.31", "10.42.0.31", "172.17.0.1"], "10.42.0.0/16", ["10.42.0.31"]),
        (["51.68.0.31"], "10.42.0.0/16", []),
        (["10.42.0.31", "fe80::1%ens3", "2001:db8::5"], "2001:db8::/64", ["2001:db8::5"]),
        (["not-an-ip", "10.42.1.1"], "10.42.1.0/24", ["10.42.1.1"]),
    ],
    ids=["picks-private", "none", "ipv6", "skips-garbage"],
)
def test_private_address_filter(addresses: list[str], cidr: str, expected: list[str]) -> None:
    assert load_filters().swell_addresses_in(addresses, cidr) == expected


def test_cidrs_are_split_by_ip_version_for_nftables() -> None:
    cidrs = ["203.0.113.0/24", "2001:db8::/32", "10.0.0.0/8"]
    filters = load_filters()
    assert filters.swell_cidrs_of_version(cidrs, 4) == ["203.0.113.0/24", "10.0.0.0/8"]
    assert filters.swell_cidrs_of_version(cidrs, 6) == ["2001:db8::/32"]


# Role variables that hold a secret (stacks/bootstrap.py TIER_SECRETS delivers them).
SECRET_VARS = (
    "jitsi_shard_jvb_password",
    "jitsi_shard_turn_secret",
    "jitsi_shard_xmpp_tls_key",
    "jitsi_shard_focus_secret",
    "video_xmpp_password",
    "video_turn_secret",
    "chat_redis_password",
    "chat_redis_url",
    "chat_store_password",
)
# Templates whose rendered file holds one of them: the task writing it must hide its diff too.
SECRET_TEMPLATES = {
    "jvb.conf.j2",
    "turnserver.conf.j2",
    "prosody.cfg.lua.j2",
    "jicofo.conf.j2",
    "chat.env.j2",
    "redis.conf.j2",
}


def role_tasks() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted((PLAYBOOKS / "roles").glob("*/tasks/*.yml")):
        for task in yaml.safe_load(path.read_text()) or []:
            for inner in [task, *task.get("block", [])]:
                found.append((f"{path.parent.parent.name}/{path.name}: {inner.get('name')}", inner))
    return found


def test_secret_templates_are_the_ones_that_use_secrets() -> None:
    # Keeps SECRET_TEMPLATES true: a template that starts writing a secret out must join the list
    # (a mere test such as `{% if jitsi_shard_turn_secret | length > 0 %}` writes nothing).
    written = re.compile(r"\{\{\s*(" + "|".join(SECRET_VARS) + r")\b")
    using = {p.name for p in (PLAYBOOKS / "roles").glob("*/templates/*.j2") if written.search(p.read_text())}
    assert using == SECRET_TEMPLATES


def test_every_task_touching_a_secret_hides_its_output() -> None:
    touching = []
    for where, task in role_tasks():
        module_args = {k: v for k, v in task.items() if k not in ("name", "when", "no_log", "notify")}
        text = yaml.safe_dump(module_args)
        if any(var in text for var in SECRET_VARS) or any(t in text for t in SECRET_TEMPLATES):
            touching.append(where)
            assert task.get("no_log") is True, f"{where} handles a secret without no_log: true"
    # The checks above did look at the tasks that matter.
    assert any("Register the video bridges' account" in w for w in touching)
    assert any("Write the bridge's configuration" in w for w in touching)
    assert any("Write coturn's configuration" in w for w in touching)
    assert any("Register Jicofo's focus account" in w for w in touching)
    assert any("Write where the chat store is" in w for w in touching)
    assert any("Write Redis's configuration" in w for w in touching)


def test_no_secret_is_ever_on_a_command_line() -> None:
    # A command line is visible to every local user (ps, /proc/*/cmdline); stdin is not.
    for where, task in role_tasks():
        for module in ("ansible.builtin.command", "ansible.builtin.shell"):
            if module not in task:
                continue
            args = task[module]
            line = yaml.safe_dump(
                {k: v for k, v in args.items() if k != "stdin"} if isinstance(args, dict) else args
            )
            assert not any(var in line for var in SECRET_VARS), where
    register = dict(role_tasks())["jitsi_shard/prosody.yml: Register the video bridges' account"]
    assert "jitsi_shard_jvb_password" in register["ansible.builtin.command"]["stdin"]
    focus = dict(role_tasks())["jitsi_shard/jicofo.yml: Register Jicofo's focus account"]
    assert "jitsi_shard_focus_secret" in focus["ansible.builtin.command"]["stdin"]


class _MetadataStandIn:
    """A stand-in for the OpenStack metadata service (not Nova): serves one `meta_data.json` on
    127.0.0.1, as http://169.254.169.254/openstack/latest/meta_data.json answers an instance."""

    def __init__(self, meta: dict[str, str]) -> None:
        import http.server
        import threading

        body = json.dumps({"uuid": "00000000-0000-4000-8000-000000000001", "meta": meta}).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                found = self.path == "/openstack/latest/meta_data.json"
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body if found else b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/openstack/latest/meta_data.json"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


SHARD_CASES = [
    # The Nova metadata the stack wrote at creation decides; swell_shard (swell configure) overrides.
    ("from-the-metadata", {"shard": "1", "tier": "video"}, {}, "ADDRESS=10.42.80.12"),
    ("given-by-swell-configure", {"shard": "1"}, {"swell_shard": "0"}, "ADDRESS=10.42.80.11"),
    ("unknown-shard", {"shard": "7"}, {}, "This bridge's shard is '7'"),
    ("no-shard-in-the-metadata", {"tier": "video"}, {}, "This bridge's shard is ''"),
]


@pytest.mark.parametrize(
    ("meta", "given", "expected"), [c[1:] for c in SHARD_CASES], ids=[c[0] for c in SHARD_CASES]
)
def test_the_video_role_reads_its_shard_from_the_metadata_service(
    tmp_path: Path, meta: dict[str, str], given: dict[str, str], expected: str
) -> None:
    # The video role's shard tasks, run alone against the stand-in: the bridge's XMPP address is
    # its shard's Prosody, chosen by the instance's Nova metadata `shard`.
    service = _MetadataStandIn(meta)
    try:
        roles, filters = PLAYBOOKS / "roles", PLAYBOOKS / "filter_plugins"
        (tmp_path / "ansible.cfg").write_text(
            f"[defaults]\nroles_path = {roles}\nfilter_plugins = {filters}\n"
        )
        play = [
            {
                "name": "Find a bridge's shard",
                "hosts": "localhost",
                "connection": "local",
                "gather_facts": False,
                "tasks": [
                    # public: the role's defaults (video_xmpp_address) stay visible after it.
                    {
                        "ansible.builtin.include_role": {
                            "name": "video",
                            "tasks_from": "shard",
                            "public": True,
                        }
                    },
                    {"ansible.builtin.debug": {"msg": "ADDRESS={{ video_xmpp_address }}"}},
                ],
            }
        ]
        (tmp_path / "shard.yml").write_text(yaml.safe_dump(play))
        given_vars = {
            "swell_jitsi_shards": {"0": "10.42.80.11", "1": "10.42.80.12"},
            "video_metadata_url": service.url,
            # The module runs here, in this interpreter (interpreter discovery may find another).
            "ansible_python_interpreter": sys.executable,
            **given,
        }
        (tmp_path / "vars.json").write_text(json.dumps(given_vars))
        result = subprocess.run(
            [BIN / "ansible-playbook", "-i", "localhost,", "-e", "@vars.json", "shard.yml"],
            cwd=tmp_path,
            env={**ENV, "ANSIBLE_CONFIG": str(tmp_path / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        service.close()
    output = result.stdout + result.stderr
    assert expected in output, output
    assert (result.returncode == 0) == expected.startswith("ADDRESS="), output
