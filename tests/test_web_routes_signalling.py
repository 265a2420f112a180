"""Web's nginx routes Jitsi Meet's signalling to the conference's shard (the web role's site.conf.j2).

The web role's templates are rendered by Ansible itself (the role's defaults, given the stack's
variables), then checked three ways: the text (the upstream and its two locations, or none without
shards), `nginx -t` on it, and a real nginx in front of stand-in shards (tests/shard_stand_in.py,
which answer with their name): the same room always reaches the same shard, over BOSH and
WebSocket alike, rooms spread over every shard, a WebSocket handshake reaches the shard, and adding
a shard moves only the rooms that go to the new one. The nginx runs need the Debian package nginx.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from loadtests.processes import start_process, stop_all
from swell.configure.runner import PLAYBOOKS_DIR as PLAYBOOKS

sys.path.insert(0, str(Path(__file__).parent))
from realparts import free_port, wait_until

BIN = Path(sys.executable).parent
ROLE = PLAYBOOKS / "roles" / "web"
STAND_IN = Path(__file__).parent / "shard_stand_in.py"
SHARDS = {"0": "10.42.80.11", "1": "10.42.80.12"}
CHAT_LOCATIONS = [{"path": "/xmpp-websocket", "upstream": "127.0.0.1:8000", "websocket": True}]
ROOMS = [f"room-{i}" for i in range(120)]

needs_nginx = pytest.mark.skipif(shutil.which("nginx") is None, reason="needs the Debian package nginx")


def render(workdir: Path, given: Mapping[str, Any]) -> dict[str, str]:
    """nginx.conf and the site as the web role writes them, rendered by ansible-playbook with the
    role's defaults and `given` (extra vars, as the stack's variables are)."""
    workdir.mkdir(parents=True, exist_ok=True)
    play = [
        {
            "name": "Render the web role's nginx configuration",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars_files": [str(ROLE / "defaults" / "main.yml")],
            "tasks": [
                {
                    "name": f"Render {name}",
                    "ansible.builtin.template": {
                        "src": str(ROLE / "templates" / f"{name}.j2"),
                        "dest": str(workdir / name),
                        "mode": "0644",
                    },
                }
                for name in ("nginx.conf", "site.conf")
            ],
        }
    ]
    (workdir / "render.yml").write_text(yaml.safe_dump(play))
    given_vars = {
        "swell_private_network_cidr": "10.42.0.0/16",
        "ansible_python_interpreter": sys.executable,
        **given,
    }
    (workdir / "vars.json").write_text(json.dumps(given_vars))
    result = subprocess.run(
        [BIN / "ansible-playbook", "-i", "localhost,", "-e", "@vars.json", "render.yml"],
        cwd=workdir,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "ANSIBLE_NOCOLOR": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return {name: (workdir / name).read_text() for name in ("nginx.conf", "site.conf")}


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, f"the rendered configuration no longer has {old!r}"
    return text.replace(old, new)


def runnable_here(rendered: Mapping[str, str], workdir: Path, port: int, shards: Mapping[str, int]) -> Path:
    """The rendered configuration, made to run unprivileged in `workdir`: listening on 127.0.0.1:`port`
    only, with its pid, logs and temporary files there, and each shard address (`server <ip>:80`)
    pointed at a local stand-in's port. Nothing else changes: the routing is the role's own."""
    main = rendered["nginx.conf"]
    main = _replace(main, "user www-data;\n", "user root;\n" if os.geteuid() == 0 else "")
    main = _replace(main, "pid /run/nginx.pid;", f"pid {workdir}/nginx.pid;")
    main = _replace(main, "error_log /var/log/nginx/error.log;", f"error_log {workdir}/error.log;")
    main = _replace(main, "access_log /var/log/nginx/access.log;", f"access_log {workdir}/access.log;")
    main = _replace(main, "include /etc/nginx/conf.d/*.conf;\n", "")
    main = _replace(main, "include /etc/nginx/sites-enabled/*;", f"include {workdir}/site.conf;")
    temp = "".join(
        f"    {kind}_temp_path {workdir}/{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = _replace(main, "http {\n", "http {\n" + temp)
    site = rendered["site.conf"]
    site = _replace(site, "listen 80 default_server;", f"listen 127.0.0.1:{port} default_server;")
    site = _replace(site, "    listen [::]:80 default_server;\n", "")
    for address, local_port in shards.items():
        site = _replace(site, f"server {address}:80;", f"server 127.0.0.1:{local_port};")
    (workdir / "nginx.conf").write_text(main)
    (workdir / "site.conf").write_text(site)
    return workdir / "nginx.conf"


def nginx_argv(conf: Path) -> list[str]:
    return ["nginx", "-p", f"{conf.parent}/", "-e", str(conf.parent / "error.log"), "-c", str(conf)]


def nginx_check(conf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*nginx_argv(conf), "-t", "-q"], capture_output=True, text=True, timeout=30, check=False
    )


@contextmanager
def stand_in_shards(workdir: Path, count: int) -> Iterator[list[int]]:
    """`count` stand-in shards on free ports of 127.0.0.1 (shard-<i> answers on the i-th); yields the
    ports. Stopped on the way out (and they die with this process)."""
    ports = [free_port() for _ in range(count)]
    procs = [
        start_process(
            [sys.executable, str(STAND_IN), "--name", f"shard-{index}", "--port", str(port)],
            workdir / f"shard-{index}.log",
        )
        for index, port in enumerate(ports)
    ]
    try:
        for port in ports:
            wait_until(lambda p=port: _get(f"http://127.0.0.1:{p}/"), "a stand-in shard", timeout=15)
        yield ports
    finally:
        stop_all(procs, grace_s=2.0)


@contextmanager
def web_in_front_of(workdir: Path, shard_ports: list[int]) -> Iterator[str]:
    """A real nginx from the web role's templates, given one shard per port (shard i at
    10.42.80.<11+i>, which the test points at its stand-in); yields its base URL. Stopped on the way
    out (and it dies with this process)."""
    addresses = {str(i): f"10.42.80.{11 + i}" for i in range(len(shard_ports))}
    rendered = render(workdir / "render", {"swell_jitsi_shards": addresses})
    port = free_port()
    conf = runnable_here(rendered, workdir, port, dict(zip(addresses.values(), shard_ports, strict=True)))
    checked = nginx_check(conf)
    assert checked.returncode == 0, checked.stderr
    proc = start_process([*nginx_argv(conf), "-g", "daemon off;"], workdir / "nginx.log")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _get(f"{url}/healthz") == "ok\n", "nginx's /healthz", timeout=15)
        yield url
    finally:
        stop_all([proc], grace_s=2.0)


def _get(url: str, data: bytes | None = None) -> str:
    with urllib.request.urlopen(url, data=data, timeout=5) as response:
        return str(response.read().decode())


def bosh_shard(url: str, room: str) -> str:
    """The shard a BOSH request (a POST to /http-bind, as Jitsi Meet sends) of `room` reached."""
    return _get(f"{url}/http-bind?room={room}", data=b"<body/>").split()[0]


async def _websocket_lines(url: str, rooms: list[str]) -> list[str]:
    lines = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        for room in rooms:
            async with session.ws_connect(f"{url}/xmpp-websocket?room={room}") as ws:
                lines.append(str(await ws.receive_str()))
    return lines


def test_web_routes_signalling_to_every_shard_it_is_given(tmp_path: Path) -> None:
    site = render(tmp_path, {"swell_jitsi_shards": SHARDS})["site.conf"]
    upstream = site.split("upstream jitsi_shards {", 1)[1].split("}", 1)[0]
    assert "hash $arg_room consistent;" in upstream
    assert [line.strip() for line in upstream.splitlines() if line.strip().startswith("server")] == [
        "server 10.42.80.11:80;",
        "server 10.42.80.12:80;",
    ]
    for path in ("/xmpp-websocket", "/http-bind"):
        location = site.split(f"location {path} {{", 1)[1].split("}", 1)[0]
        assert "proxy_pass http://jitsi_shards;" in location
        assert "proxy_read_timeout 900s;" in location
    websocket = site.split("location /xmpp-websocket {", 1)[1].split("}", 1)[0]
    assert "proxy_set_header Upgrade $http_upgrade;" in websocket


@pytest.mark.parametrize(
    ("given", "websocket_locations"),
    [({}, 0), ({"swell_jitsi_shards": {}}, 0), ({"web_locations": CHAT_LOCATIONS}, 1)],
    ids=["no-shards-variable", "no-shards", "chat-tier"],
)
def test_without_shards_no_signalling_route_is_rendered(
    tmp_path: Path, given: dict[str, Any], websocket_locations: int
) -> None:
    # The chat tier and the shards run the web role too, without shards: their own locations only.
    site = render(tmp_path, given)["site.conf"]
    assert "upstream jitsi_shards" not in site
    assert "location /http-bind" not in site
    assert site.count("location /xmpp-websocket {") == websocket_locations


@needs_nginx
@pytest.mark.parametrize("shards", [SHARDS, {}], ids=["with-shards", "without-shards"])
def test_the_rendered_configuration_passes_nginx_t(tmp_path: Path, shards: dict[str, str]) -> None:
    rendered = render(tmp_path / "render", {"swell_jitsi_shards": shards})
    conf = runnable_here(
        rendered, tmp_path, free_port(), {address: free_port() for address in shards.values()}
    )
    checked = nginx_check(conf)
    assert checked.returncode == 0, checked.stderr


@needs_nginx
def test_a_room_always_reaches_the_same_shard_and_rooms_spread_over_all(tmp_path: Path) -> None:
    with stand_in_shards(tmp_path, 2) as ports, web_in_front_of(tmp_path / "web", ports) as url:
        first = {room: bosh_shard(url, room) for room in ROOMS}
        again = {room: bosh_shard(url, room) for room in ROOMS}
        lines = asyncio.run(_websocket_lines(url, ROOMS[:20]))
        without_room = {bosh_shard(url, "") for _ in range(10)}
    # Every participant of a room meets on one shard, whatever request they send.
    assert again == first
    # Both shards take rooms: neither sits idle (120 rooms over two shards).
    counts = {shard: list(first.values()).count(shard) for shard in ("shard-0", "shard-1")}
    assert min(counts.values()) >= 20, counts
    # A WebSocket participant reaches the same shard as a BOSH one, and the handshake got there.
    for room, line in zip(ROOMS[:20], lines, strict=True):
        shard, path, room_param, upgrade = line.split()
        assert (shard, path, room_param) == (first[room], "/xmpp-websocket", f"room={room}")
        assert upgrade.lower() == "upgrade=websocket"
    # No room, nothing to keep together: nginx falls back to round-robin on an empty key.
    assert without_room == {"shard-0", "shard-1"}


@needs_nginx
def test_adding_a_shard_moves_only_the_rooms_that_go_to_it(tmp_path: Path) -> None:
    # The same two shards (same addresses) before and after; the third is new.
    with stand_in_shards(tmp_path, 3) as ports:
        with web_in_front_of(tmp_path / "two", ports[:2]) as url:
            before = {room: bosh_shard(url, room) for room in ROOMS}
        with web_in_front_of(tmp_path / "three", ports) as url:
            after = {room: bosh_shard(url, room) for room in ROOMS}
    moved = [room for room in ROOMS if after[room] != before[room]]
    # Consistent hashing: a room either stays or goes to the new shard, never to another old one...
    assert {after[room] for room in moved} == {"shard-2"}
    # ...and about a third of the rooms move (a modulo hash would move about two thirds).
    assert 0.1 * len(ROOMS) <= len(moved) <= 0.6 * len(ROOMS), len(moved)
