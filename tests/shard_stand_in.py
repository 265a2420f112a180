"""A stand-in for a Jitsi shard's nginx (not Prosody, not nginx): an HTTP server on 127.0.0.1 that
answers every request with its own name, so a test sees which shard web's nginx chose.

Plain requests (BOSH's POSTs to /http-bind) get `<name> <path> room=<room> upgrade=<Upgrade header>`;
a WebSocket handshake is accepted and the server sends the same line as its first message, so the
test sees that the upgrade reached it through nginx.

    python tests/shard_stand_in.py --name shard-0 --port 8001
"""

from __future__ import annotations

import argparse

from aiohttp import web


def make_app(name: str) -> web.Application:
    async def answer(request: web.Request) -> web.StreamResponse:
        line = (
            f"{name} {request.path} room={request.query.get('room', '')} "
            f"upgrade={request.headers.get('Upgrade', '')}"
        )
        if request.headers.get("Upgrade", "").lower() == "websocket":
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            await ws.send_str(line)
            await ws.close()
            return ws
        return web.Response(text=line)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(make_app(args.name), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
