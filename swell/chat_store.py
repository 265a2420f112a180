"""The chat store's contract, shared by production (stacks, the chat and chat_store roles) and the
drill's reference chat service (loadtests/tier_service.py): where Redis listens and how rooms are
named in it (docs/chat.md, "In Redis").

Pure constants and one URL builder: importable without Redis, Pulumi or Ansible.
"""

from __future__ import annotations

from urllib.parse import quote

# Redis's registered port; the catalog's `fixed.chat_store` port (tests/test_tiers_catalog.py holds
# them equal), the drill starts its redis-server on a free port instead.
PORT = 6379
# Per room R: `<prefix>R` (the pub/sub channel), `<prefix>R:seq` (the counter), `<prefix>R:stream`
# (the bounded history). Each chat server subscribes to `<prefix>*`.
ROOM_CHANNEL_PREFIX = "swell:chat:room:"
# The logical database the chat servers use (Redis pub/sub ignores it; the keys live there).
DATABASE = 0


def room_channel(room: str) -> str:
    return f"{ROOM_CHANNEL_PREFIX}{room}"


def redis_url(address: str, port: int = PORT, password: str | None = None) -> str:
    """`redis://[:password@]address:port/DATABASE`, the form redis-py's `from_url` reads; the password
    is percent-encoded (the secret alphabet allows `/` and `+`)."""
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"redis://{auth}{address}:{port}/{DATABASE}"
