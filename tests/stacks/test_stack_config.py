"""Stack configuration: the shipped stacks parse; each bad value fails naming its key and what is allowed."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import pytest

from stacks import config
from tests.stacks.stack_fixtures import KEY_MARKER, ROOT, TEST_CERTIFICATE, TEST_PRIVATE_KEY, stack_values


@pytest.mark.parametrize("stack", ["dev", "prod-gra11"])
def test_shipped_stack_files_are_valid(stack: str) -> None:
    cfg = config.parse(stack_values(stack), stack)
    assert cfg.stack == stack
    assert {name for name, _ in cfg.tiers.items()} == {"web", "chat", "video"}


def test_prod_is_sized_for_a_400_percent_rise_and_can_double_again() -> None:
    prod = config.parse(stack_values("prod-gra11"), "prod-gra11")
    dev = config.parse(stack_values("dev"), "dev")
    assert prod.totals()[0] >= 5 * dev.totals()[0]
    for name, tier in prod.tiers.items():
        assert tier.max >= 2 * tier.count, name


def test_counts_written_as_strings_by_pulumi_config_set_are_accepted() -> None:
    values = stack_values("dev")
    values["swell:tiers"]["web"]["count"] = "2"
    assert config.parse(values, "dev").tiers["web"].count == 2


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(values: dict[str, Any]) -> None:
        key, *rest = path.split(".")
        if not rest:
            values[key] = value
            return
        node = values[key]
        for part in rest[:-1]:
            node = node[part]
        node[rest[-1]] = value

    return mutate


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(values: dict[str, Any]) -> None:
        key, *rest = path.split(".")
        if not rest:
            del values[key]
            return
        node = values[key]
        for part in rest[:-1]:
            node = node[part]
        del node[rest[-1]]

    return mutate


def _all(*mutations: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def mutate(values: dict[str, Any]) -> None:
        for m in mutations:
            m(values)

    return mutate


BAD = [
    (
        "unknown-tier",
        _set("swell:tiers.db", {"flavor": "b3-8", "count": 1, "max": 1}),
        "swell:tiers.db",
        "web, chat, video",
    ),
    ("missing-tier", _drop("swell:tiers.chat"), "swell:tiers.chat", "required"),
    (
        "negative-count",
        _set("swell:tiers.web.count", -1),
        "swell:tiers.web.count",
        ">= 0|greater than or equal to 0",
    ),
    ("count-above-max", _set("swell:tiers.web.count", 9), "swell:tiers.web.count", "allowed: 1..3"),
    ("count-below-min", _set("swell:tiers.web.count", 0), "swell:tiers.web.count", "allowed: 1..3"),
    ("count-not-a-number", _set("swell:tiers.web.count", "many"), "swell:tiers.web.count", "integer"),
    ("unknown-flavor", _set("swell:tiers.video.flavor", "x9-64"), "swell:tiers.video.flavor", "b3-8, b3-16"),
    (
        "instances-not-matching-count",
        _set("swell:tiers.web.instances", [0, 2]),
        "swell:tiers.web.instances",
        "lists 2 indices but swell:tiers.web.count is 1",
    ),
    ("negative-index", _set("swell:tiers.web.retiring", [-1]), "swell:tiers.web.retiring", ">= 0"),
    ("index-twice", _set("swell:tiers.web.retiring", [4, 4]), "swell:tiers.web.retiring", "appears twice"),
    (
        "retiring-and-serving",
        _set("swell:tiers.web.retiring", [0]),
        "swell:tiers.web.retiring",
        r"\[0\] also in swell:tiers.web.instances",
    ),
    # The warm pool (`warm`: shelved, `filling`: being configured for it): indices like the others,
    # each in one set only, and within max.
    ("warm-negative-index", _set("swell:tiers.web.warm", [-1]), "swell:tiers.web.warm", ">= 0"),
    (
        "filling-index-twice",
        _set("swell:tiers.web.filling", [2, 2]),
        "swell:tiers.web.filling",
        "appears twice",
    ),
    ("warm-not-a-list", _set("swell:tiers.web.warm", "1,2"), "swell:tiers.web.warm", "tuple|list"),
    (
        "warm-and-serving",
        _set("swell:tiers.web.warm", [0]),
        "swell:tiers.web.warm",
        r"\[0\] also in swell:tiers.web.instances",
    ),
    (
        "filling-and-warm",
        _all(_set("swell:tiers.web.warm", [2]), _set("swell:tiers.web.filling", [2])),
        "swell:tiers.web.filling",
        r"\[2\] also in swell:tiers.web.warm",
    ),
    (
        "filling-and-retiring",
        _all(_set("swell:tiers.web.retiring", [4]), _set("swell:tiers.web.filling", [4])),
        "swell:tiers.web.filling",
        r"\[4\] also in swell:tiers.web.retiring",
    ),
    (
        "warm-and-explicit-serving",
        _all(_set("swell:tiers.web.instances", [5]), _set("swell:tiers.web.warm", [5])),
        "swell:tiers.web.warm",
        r"\[5\] also in swell:tiers.web.instances",
    ),
    (
        "pool-above-max",
        _all(_set("swell:tiers.web.warm", [1, 2]), _set("swell:tiers.web.filling", [3])),
        "swell:tiers.web.warm",
        "1 serving \\+ 2 warm \\+ 1 filling is 4, above max 3",
    ),
    (
        "pool-counts-against-the-quota",
        _all(
            _set("swell:tiers.web.max", 12),
            _set("swell:tiers.web.warm", list(range(1, 9))),
            _set("swell:tiers.web.filling", [9]),
            _set("swell:quota", "10-vms"),
        ),
        "swell:quota",
        # web 1 + 9 in the pool, chat, video and the two fixed groups (chat store, shard)
        r"14 instances \(including 9 warm or filling instances",
    ),
    (
        "retiring-instances-count-against-the-quota",
        _all(_set("swell:tiers.web.retiring", list(range(1, 21))), _set("swell:quota", "20-vms")),
        "swell:quota",
        "25 instances",  # 20 retiring, web-0, chat, video and the two fixed groups (chat store, shard)
    ),
    (
        "misspelled-tier-key",
        _set("swell:tiers.web.cont", 2),
        "swell:tiers.web.cont",
        "flavor, count, min, max",
    ),
    ("malformed-cidr", _set("swell:adminCidrs", ["203.0.113.0/33"]), "swell:adminCidrs", "CIDR"),
    ("host-bits-cidr", _set("swell:adminCidrs", ["203.0.113.7/24"]), "swell:adminCidrs", "CIDR"),
    ("ssh-from-world-v4", _set("swell:adminCidrs", ["0.0.0.0/0"]), "swell:adminCidrs", "whole internet"),
    ("ssh-from-world-v6", _set("swell:adminCidrs", ["::/0"]), "swell:adminCidrs", "whole internet"),
    ("no-admin-cidr", _set("swell:adminCidrs", []), "swell:adminCidrs", "at least 1"),
    ("missing-region", _drop("openstack:region"), "openstack:region", "region"),
    ("unknown-key", _set("swell:adminCidr", ["203.0.113.0/24"]), "swell:adminCidr", "swell:adminCidrs"),
    ("bad-ssh-key", _set("swell:sshPublicKey", "hunter2"), "swell:sshPublicKey", "ssh-ed25519"),
    (
        "public-private-net",
        _set("swell:privateNetwork.cidr", "8.8.8.0/24"),
        "swell:privateNetwork.cidr",
        "private",
    ),
    (
        "tiny-private-net",
        _set("swell:privateNetwork.cidr", "10.0.0.0/30"),
        "swell:privateNetwork.cidr",
        "/28",
    ),
    ("bad-playbooks-url", _set("swell:playbooks.repo", "swell.git"), "swell:playbooks.repo", "https://"),
    ("unknown-quota", _set("swell:quota", "lots"), "swell:quota", "10-vms, 20-vms"),
    ("tls-missing", _drop("swell:tls"), "swell:tls", "certificate, privateKey, chain, containerRef, hosts"),
    (
        "tls-no-certificate-at-all",
        _drop("swell:tls.containerRef"),
        "swell:tls",
        "give certificate and privateKey, or containerRef",
    ),
    (
        "tls-key-without-certificate",
        _all(_drop("swell:tls.containerRef"), _set("swell:tls.privateKey", TEST_PRIVATE_KEY)),
        "swell:tls",
        "certificate is missing",
    ),
    (
        "tls-certificate-without-key",
        _all(_drop("swell:tls.containerRef"), _set("swell:tls.certificate", TEST_CERTIFICATE)),
        "swell:tls",
        "privateKey is missing",
    ),
    (
        "tls-two-sources",
        _all(_set("swell:tls.certificate", TEST_CERTIFICATE), _set("swell:tls.privateKey", TEST_PRIVATE_KEY)),
        "swell:tls",
        "not both",
    ),
    (
        "tls-encrypted-key",
        _all(
            _drop("swell:tls.containerRef"),
            _set("swell:tls.certificate", TEST_CERTIFICATE),
            _set("swell:tls.privateKey", TEST_PRIVATE_KEY.replace("PRIVATE KEY", "ENCRYPTED PRIVATE KEY")),
        ),
        "swell:tls.privateKey",
        "passphrase",
    ),
    (
        "tls-key-not-pem",
        _all(
            _drop("swell:tls.containerRef"),
            _set("swell:tls.certificate", TEST_CERTIFICATE),
            _set("swell:tls.privateKey", KEY_MARKER),
        ),
        "swell:tls.privateKey",
        "not an unencrypted PEM private key",
    ),
    (
        "tls-bad-container-ref",
        _set("swell:tls.containerRef", "tls_secret1"),
        "swell:tls.containerRef",
        "/v1/containers/",
    ),
    ("tls-host-missing", _drop("swell:tls.hosts.chat"), "swell:tls.hosts.chat", "required"),
    (
        "tls-host-with-scheme",
        _set("swell:tls.hosts.web", "https://meet.example.org"),
        "swell:tls.hosts.web",
        "DNS name",
    ),
    ("tls-misspelled-key", _set("swell:tls.privatekey", "x"), "swell:tls.privatekey", "privateKey"),
    (
        "monitoring-world",
        _set("swell:monitoringCidrs", ["0.0.0.0/0"]),
        "swell:monitoringCidrs",
        "whole internet",
    ),
    ("monitoring-ipv6", _set("swell:monitoringCidrs", ["2001:db8::/48"]), "swell:monitoringCidrs", "IPv4"),
    (
        "monitoring-malformed",
        _set("swell:monitoringCidrs", ["10.42.0.0/99"]),
        "swell:monitoringCidrs",
        "CIDR",
    ),
    ("monitoring-empty", _set("swell:monitoringCidrs", []), "swell:monitoringCidrs", "at least 1"),
    (
        "monitoring-misspelled",
        _set("swell:monitoringCidr", ["10.42.0.0/16"]),
        "swell:monitoringCidr",
        "monitoringCidrs",
    ),
    # The XMPP names reach the instances (stacks/bootstrap.py): no placeholder may stand in for them.
    ("xmpp-missing", _drop("swell:xmpp"), "swell:xmpp", "domain, turnHost"),
    ("xmpp-domain-missing", _drop("swell:xmpp.domain"), "swell:xmpp.domain", "required"),
    ("xmpp-turn-host-missing", _drop("swell:xmpp.turnHost"), "swell:xmpp.turnHost", "required"),
    (
        "xmpp-domain-with-port",
        _set("swell:xmpp.domain", "meet.example.org:5222"),
        "swell:xmpp.domain",
        "DNS name",
    ),
    (
        "xmpp-domain-upper-case",
        _set("swell:xmpp.domain", "Meet.Example.org"),
        "swell:xmpp.domain",
        "lower case",
    ),
    (
        "xmpp-turn-host-an-address",
        _set("swell:xmpp.turnHost", "203.0.113.7"),
        "swell:xmpp.turnHost",
        "DNS name",
    ),
    (
        "xmpp-turn-host-url",
        _set("swell:xmpp.turnHost", "turns://turn.example.org"),
        "swell:xmpp.turnHost",
        "scheme",
    ),
    (
        "xmpp-misspelled-key",
        _set("swell:xmpp.turnhost", "turn.example.org"),
        "swell:xmpp.turnhost",
        "turnHost",
    ),
    # r3-32 web + b3-8 chat + c3-8 video = 48 GB of RAM, above the 40 GB of the 10-vms tier.
    (
        "over-quota",
        _all(_set("swell:quota", "10-vms"), _set("swell:tiers.web.flavor", "r3-32")),
        "swell:quota",
        "64 GB of RAM",  # r3-32 web, b3-8 chat, c3-8 video, b3-8 chat store and shard
    ),
]


@pytest.mark.parametrize(("mutate", "key", "allowed"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_config_names_the_key_and_what_is_allowed(
    dev_values: dict[str, Any], mutate: Callable[[dict[str, Any]], None], key: str, allowed: str
) -> None:
    values = copy.deepcopy(dev_values)
    mutate(values)
    with pytest.raises(config.ConfigError) as caught:
        config.parse(values, "dev")
    lines = [p for p in caught.value.problems if p.startswith(key + ":") or p.startswith(key + " ")]
    assert lines, f"no problem names {key}: {caught.value.problems}"
    assert any(re.search(allowed, line) for line in lines), lines
    assert KEY_MARKER not in str(caught.value)  # a private key, even a malformed one, is never quoted


def test_the_monitoring_networks_default_to_the_private_network(dev_values: dict[str, Any]) -> None:
    assert config.parse(dev_values, "dev").metrics_allowed_cidrs == ("10.42.0.0/16",)
    dev_values["swell:monitoringCidrs"] = ["10.42.250.0/24"]
    assert config.parse(dev_values, "dev").metrics_allowed_cidrs == ("10.42.250.0/24",)


def test_pulumi_yaml_documents_every_key_the_program_reads() -> None:
    text = (ROOT / "Pulumi.yaml").read_text()
    for key in config.SWELL_KEYS:
        assert f"swell:{key}" in text, key
    assert config.REGION_KEY in text
    assert "main: stacks/" in text


def test_config_is_read_only_in_config_py() -> None:
    readers = [p for p in (ROOT / "stacks").rglob("*.py") if "pulumi.Config(" in p.read_text()]
    assert [p.name for p in readers] == ["config.py"]
