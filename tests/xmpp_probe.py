"""What a video bridge does on the network, run inside the bridge's network namespace by the join test.

Run as `python -m tests.xmpp_probe` with a JSON request on stdin (passwords go there, never on the
command line); prints one JSON object. tests/test_bridge_joins.py starts it with `ip netns exec`, in
a mount namespace of its own whose /etc/hosts is the video root's applied one, so the names below
resolve exactly as the bridge's JVM would resolve them (glibc, `hosts: files dns`).

Actions:

- `resolve`: the addresses a name resolves to;
- `connect`: plain TCP connections from given source addresses, each "connected", or the error;
- `wait`: retry one TCP connection until it succeeds or the deadline passes;
- `join`: each bridge logs in with its jvb.conf's hostname, port, domain, account and password, over
  STARTTLS verified against the bridge's trust store, then joins the brewery room under its
  nickname; reports the outcome, whether TLS was used, the address it reached, the room's occupants;
- `services`: a bridge logs in as in `join` and asks a domain of the server for its external
  services (XEP-0215, which Prosody's mod_external_services answers): the services handed to
  clients, and apart from them the short-lived credentials each came with (the test checks their
  signature, and prints none).
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

EXTDISCO = "urn:xmpp:extdisco:2"


def resolve(name: str) -> list[str]:
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)})


def connect(source: str, host: str, port: int, timeout_s: float) -> str:
    try:
        with socket.create_connection((host, port), timeout=timeout_s, source_address=(source, 0)):
            return "connected"
    except OSError as e:
        return type(e).__name__


def wait(source: str, host: str, port: int, deadline_s: float) -> str:
    end = time.monotonic() + deadline_s
    outcome = "never tried"
    while time.monotonic() < end:
        outcome = connect(source, host, port, 1.0)
        if outcome == "connected":
            break
        time.sleep(0.3)
    return outcome


class Client:
    """A slixmpp client that settles on the first outcome of its login."""

    def __init__(self, jid: str, password: str, cafile: str) -> None:
        import slixmpp

        self.xmpp = slixmpp.ClientXMPP(jid, password)
        self.xmpp.ca_certs = Path(cafile)
        self.xmpp.register_plugin("xep_0045")
        self.outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.tls = False
        self.peer: str | None = None
        self.xmpp.add_event_handler("session_start", lambda _: self._logged_in())
        self.xmpp.add_event_handler("failed_all_auth", lambda _: self._settle("authentication failed"))
        self.xmpp.add_event_handler("ssl_invalid_chain", lambda e: self._settle(f"TLS refused: {e}"))
        self.xmpp.add_event_handler("tls_success", lambda _: setattr(self, "tls", True))

    def _logged_in(self) -> None:
        # The address the stream reached: what the dialled name resolved to.
        peer = self.xmpp.transport.get_extra_info("peername") if self.xmpp.transport else None
        self.peer = str(peer[0]) if peer else None
        self._settle("logged in")

    def _settle(self, outcome: str) -> None:
        if not self.outcome.done():
            self.outcome.set_result(outcome)

    async def login(self, host: str, port: int) -> str:
        self.xmpp.connect(host, port)
        try:
            return await asyncio.wait_for(self.outcome, 30)
        except TimeoutError:
            return "no outcome within 30 s"

    async def close(self) -> None:
        self.xmpp.disconnect(wait=1)
        await asyncio.sleep(0.2)


async def join(request: dict[str, Any]) -> list[dict[str, Any]]:
    from slixmpp import JID

    clients, out = [], []
    try:
        for bridge in request["bridges"]:
            client = Client(f"{bridge['username']}@{bridge['domain']}", bridge["password"], request["cafile"])
            clients.append(client)
            outcome = await client.login(bridge["hostname"], int(bridge["port"]))
            occupants: list[str] = []
            if outcome == "logged in" and request.get("join", True):
                own, _, present, _ = await client.xmpp.plugin["xep_0045"].join_muc_wait(
                    JID(bridge["muc_jids"]), bridge["muc_nickname"], maxstanzas=0, timeout=20
                )
                occupants = sorted({own["from"].resource} | {p["from"].resource for p in present})
            out.append({"outcome": outcome, "tls": client.tls, "peer": client.peer, "occupants": occupants})
    finally:
        for client in clients:
            await client.close()
    return out


async def services(request: dict[str, Any]) -> dict[str, Any]:
    from slixmpp.xmlstream import ET

    bridge = request["bridge"]
    client = Client(f"{bridge['username']}@{bridge['domain']}", bridge["password"], request["cafile"])
    try:
        outcome = await client.login(bridge["hostname"], int(bridge["port"]))
        if outcome != "logged in":
            return {"outcome": outcome, "services": []}
        iq = client.xmpp.make_iq_get(ito=request["domain"])
        iq.append(ET.Element(f"{{{EXTDISCO}}}services"))
        reply = await iq.send(timeout=15)
        found, credentials = [], []
        for service in reply.xml.iter(f"{{{EXTDISCO}}}service"):
            a = service.attrib
            found.append(
                {
                    "type": a.get("type"),
                    "host": a.get("host"),
                    "port": int(a["port"]) if "port" in a else None,
                    "transport": a.get("transport"),
                    "restricted": a.get("restricted"),
                }
            )
            credentials.append({"username": a.get("username"), "password": a.get("password")})
        return {"outcome": outcome, "services": found, "credentials": credentials}
    finally:
        await client.close()


def main() -> int:
    request = json.load(sys.stdin)
    action = request["action"]
    result: Any
    if action == "resolve":
        result = resolve(request["name"])
    elif action == "connect":
        result = [
            connect(c["source"], c["host"], int(c["port"]), c.get("timeout_s", 3.0)) for c in request["tries"]
        ]
    elif action == "wait":
        result = wait(
            request["source"], request["host"], int(request["port"]), request.get("deadline_s", 30.0)
        )
    elif action == "join":
        result = asyncio.run(join(request))
    elif action == "services":
        result = asyncio.run(services(request))
    else:
        print(f"unknown action {action!r}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
