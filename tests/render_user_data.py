"""Render each tier's user_data from the real stack program under Pulumi's mocks, in a process of its own.

Run as `python -m tests.render_user_data` with `{"stack": ..., "values": {...}}` on stdin (the stack
config, secrets included: stdin, never the command line); prints `{tier: user_data}` for instance 0
of each tier and fixed group as JSON, and under `"metadata"` each one's Nova metadata (a bridge's
`shard`, which the video role reads from the metadata service). The join test
(tests/test_bridge_joins.py) uses it: Pulumi's mocks must not run in a pytest process that may have
imported locust (gevent), and a child process keeps the Pulumi runtime's global state out of the
test process altogether.
"""

from __future__ import annotations

import json
import sys

from stacks import engine
from swell import tiers

# Pulumi's marker for a secret value (pulumi.runtime.rpc._special_secret_sig).
SECRET_SIG = ("4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270")


def main() -> int:
    request = json.load(sys.stdin)
    # The secrets as `pulumi config set --secret` marks them.
    secret = [k for k in ("swell:secrets", "swell:tls") if k in request["values"]]
    recording = engine.run(request["values"], request["stack"], secret_keys=secret)
    out: dict[str, object] = {}
    metadata = {}
    catalog = tiers.load()
    for tier in (*catalog.names, *catalog.fixed_names):
        instance = recording.named(engine.INSTANCE)[f"{tier}-0"]
        metadata[tier] = instance.inputs["metadata"]
        user_data = instance.inputs["userData"]
        if not (isinstance(user_data, dict) and user_data.get(SECRET_SIG[0]) == SECRET_SIG[1]):
            print(f"{tier}-0: userData was not sent as a Pulumi secret", file=sys.stderr)
            return 1
        out[tier] = user_data["value"]
    out["metadata"] = metadata
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
