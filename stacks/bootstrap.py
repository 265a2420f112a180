"""Cloud-init user_data that brings a fresh instance to its role without a human.

It follows ARCHITECTURE.md, "Instance bootstrap": write /etc/swell/ansible-vars.json, install ansible
and git from Debian, then run ansible-pull on playbooks/pull.yml. The text depends only on the tier and
on stack-wide settings, never on the tier's count or the instance's index, so scaling never changes the
user_data of an instance that already exists.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import yaml

VARS_FILE = "/etc/swell/ansible-vars.json"
CHECKOUT_DIR = "/opt/swell"
PLAYBOOK = "playbooks/pull.yml"


@dataclass(frozen=True)
class Bootstrap:
    tier: str
    stack: str
    private_network_cidr: str
    admin_cidrs: Sequence[str]
    playbooks_repo: str
    playbooks_ref: str


def ansible_vars(b: Bootstrap) -> dict[str, object]:
    return {
        "swell_tier": b.tier,
        "swell_stack": b.stack,
        "swell_private_network_cidr": b.private_network_cidr,
        "swell_admin_cidrs": list(b.admin_cidrs),
    }


def ansible_pull_command(b: Bootstrap) -> list[str]:
    # An argv list, not a shell string: cloud-init then runs it without a shell, so no quoting issues.
    return [
        "ansible-pull",
        "--url",
        b.playbooks_repo,
        "--checkout",
        b.playbooks_ref,
        "--directory",
        CHECKOUT_DIR,
        "--inventory",
        "localhost,",
        "--extra-vars",
        f"@{VARS_FILE}",
        PLAYBOOK,
    ]


def render_user_data(b: Bootstrap) -> str:
    """The `#cloud-config` document for an instance of tier `b.tier`."""
    document = {
        "write_files": [
            {
                "path": VARS_FILE,
                "owner": "root:root",
                "permissions": "0600",
                "content": json.dumps(ansible_vars(b), sort_keys=True) + "\n",
            }
        ],
        "package_update": True,
        "packages": ["ansible", "git"],
        "runcmd": [ansible_pull_command(b)],
    }
    return "#cloud-config\n" + yaml.safe_dump(document, sort_keys=False, default_flow_style=False)
