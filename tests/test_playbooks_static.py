"""The playbooks as files: lint, syntax, the port-table contract, documented variables, filters."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

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
        names = ["web", "chat", "video"] if tiers == "all" else [t.strip() for t in tiers.split(",")]
        rows |= {(int(port), protocol, tier, SOURCES[source]) for tier in names}
    return rows


def role_file(role: str, path: str) -> Any:
    return yaml.safe_load((PLAYBOOKS / "roles" / role / path).read_text())


def test_firewall_port_table_is_architecture_md_port_table() -> None:
    table = role_file("base", "vars/main.yml")["base_firewall_port_table"]
    rules = {(r["port"], r["protocol"], tier, r["source"]) for r in table for tier in r["tiers"]}
    expected = architecture_ports()
    assert len(expected) >= 10  # the table was found and read
    assert rules == expected


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
