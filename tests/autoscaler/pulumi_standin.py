"""A stand-in `pulumi` executable for the Automation API tests. It is NOT the Pulumi CLI.

The Pulumi CLI and its provider plugins cannot be installed on these machines (both download from
the internet), so tests put this script on PATH as `pulumi`. It answers the few commands the
Automation API sends for select / config (get, set --path, set-all --json, --json, refresh) / up /
cancel / stack output / stack history, in the formats the CLI uses, and records every call's
arguments (one JSON list per line in `.pulumi-standin/calls.jsonl` of the working directory). It
edits `Pulumi.<stack>.yaml` as `pulumi config set` does, so the stack program can then be run under
Pulumi's mocks with the configuration the actuator wrote. `up` builds outputs following the stack
outputs contract of ARCHITECTURE.md from the configured instances (index, retiring, pool, created);
it provisions nothing. Like a backend, it keeps the config of the last successful update
(`config refresh` writes it back) and a lock while an update runs (`cancel` removes it; an up killed
with SIGKILL leaves it, a SIGINT releases it).

Failure injection, through files in `.pulumi-standin/`: `locked` holds how many next `up`s fail as
a stack locked by a concurrent update (or `always`); `fail` likewise for a failed update. Timing,
through the environment: `SWELL_STANDIN_UP_DELAY_S` (seconds `up` takes), and
`SWELL_STANDIN_UP_GRANDCHILD=1` makes `up` start a child process (as the CLI starts plugins) and
write its pid to `.pulumi-standin/grandchild.pid`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

STATE = Path(".pulumi-standin")
CONFLICT = "error: [409] Conflict: Another update is currently in progress."


def _opt(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def _stack_file(stack: str) -> Path:
    return Path(f"Pulumi.{stack}.yaml")


def _load_config(stack: str) -> dict:
    data = yaml.safe_load(_stack_file(stack).read_text()) or {}
    return dict(data.get("config") or {})


def _save_config(stack: str, config: dict) -> None:
    path = _stack_file(stack)
    data = yaml.safe_load(path.read_text()) or {}
    data["config"] = config
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _split_path(key: str) -> tuple[str, list[str]]:
    # "swell:tiers.web.count" -> ("swell:tiers", ["web", "count"])
    namespace, _, rest = key.partition(":")
    head, *tail = rest.split(".")
    return f"{namespace}:{head}", tail


def _literal(text: str) -> object:
    # `config set --path` stores numbers and booleans as YAML scalars, not strings.
    try:
        return json.loads(text)
    except ValueError:
        return text


# Options that take a value: their value is not a word of the command.
VALUED = {"--stack", "--message", "--parallel", "--policy-pack", "--policy-pack-config", "--exec-kind"}


def _words(argv: list[str]) -> list[str]:
    words, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
        elif arg in VALUED or (arg == "--json" and "set-all" in argv):  # set-all --json takes the JSON
            skip = True
        elif arg == "--":
            words += argv[i + 1 :]
            break
        elif not arg.startswith("-"):
            words.append(arg)
    return words


def _consume(name: str) -> bool:
    flag = STATE / name
    if not flag.exists():
        return False
    text = flag.read_text().strip()
    if text == "always":
        return True
    left = int(text or "0")
    if left <= 0:
        return False
    flag.write_text(str(left - 1))
    return True


def _outputs(stack: str, config: dict, created: dict) -> dict:
    """Outputs as the program exports them; `created` (tier -> index -> time) keeps each instance's
    creation time across updates, as Nova does."""
    tiers = config.get("swell:tiers") or {}
    out: dict[str, object] = {"stack": stack, "region": config.get("openstack:region"), "tiers": {}}
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for n, (tier, spec) in enumerate(sorted(tiers.items())):
        serving = spec.get("instances")
        serving = range(int(spec.get("count", 0))) if serving is None else serving
        retiring = set(spec.get("retiring") or [])
        pool = {
            **dict.fromkeys(spec.get("filling") or [], "filling"),
            **dict.fromkeys(spec.get("warm") or [], "warm"),
        }
        existing = sorted({*serving, *retiring, *pool})
        born = {int(k): v for k, v in created.get(tier, {}).items()}
        instances = []
        for i in existing:
            born.setdefault(i, now)
            instances.append(
                {
                    "name": f"swell-{stack}-{tier}-{i}",
                    "index": i,
                    "retiring": i in retiring,
                    "pool": pool.get(i, ""),
                    "created": born[i],
                    "private_ip": f"10.42.{n}.{10 + i}",
                    "public_ipv4": None,
                    "public_ipv6": None,
                }
            )
        created[tier] = {str(i): born[i] for i in existing}
        out["tiers"][tier] = {"instances": instances, "load_balancer": None}  # type: ignore[index]
    return out


def _config_json(config: dict) -> dict:
    # `pulumi config --json`: every value as text, objects also as `objectValue`.
    out = {}
    for key, value in config.items():
        entry: dict[str, object] = {
            "value": value if isinstance(value, str) else json.dumps(value),
            "secret": False,
        }
        if isinstance(value, dict | list):
            entry["objectValue"] = value
        out[key] = entry
    return out


def _up(stack: str, argv: list[str], state: dict, state_file: Path) -> int:
    lock = STATE / f"{stack}.lock"
    if lock.exists():
        print(CONFLICT, file=sys.stderr)
        return 255
    if _consume("locked"):
        print(CONFLICT, file=sys.stderr)
        return 255
    if (
        "--policy-pack" in argv
        and not (Path(_opt(argv, "--policy-pack") or "") / "PulumiPolicy.yaml").exists()
    ):
        print(f"error: no policy pack at {_opt(argv, '--policy-pack')}", file=sys.stderr)
        return 255
    lock.write_text(str(os.getpid()))
    try:
        if os.environ.get("SWELL_STANDIN_UP_GRANDCHILD"):
            child = subprocess.Popen(["sleep", "600"])
            (STATE / "grandchild.pid").write_text(str(child.pid))
        time.sleep(float(os.environ.get("SWELL_STANDIN_UP_DELAY_S", "0")))
    except KeyboardInterrupt:  # SIGINT: Pulumi cancels gracefully and releases its lock
        lock.unlink(missing_ok=True)
        print("error: update canceled", file=sys.stderr)
        return 255
    lock.unlink(missing_ok=True)
    if _consume("fail"):
        print("error: update failed\nerror: 1 error occurred: Quota exceeded for instances", file=sys.stderr)
        return 255
    print(f"Updating ({stack})\n\nResources:\n    ~ 1 updated\n")
    config = _load_config(stack)
    state["outputs"] = _outputs(stack, config, state.setdefault("created", {}))
    state["deployed_config"] = config
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    state["history"].append(
        {
            "kind": "update",
            "startTime": now,
            "endTime": now,
            "message": _opt(argv, "--message") or "",
            "environment": {},
            "config": _config_json(config),
            "result": "succeeded",
            "version": len(state["history"]) + 1,
            "resourceChanges": {"update": 1},
        }
    )
    state_file.write_text(json.dumps(state))
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["version"]:
        # The Automation API asks for the version from the caller's working directory, not the
        # project's: answer without leaving a trace there.
        print("v3.150.0")
        return 0
    STATE.mkdir(exist_ok=True)
    with (STATE / "calls.jsonl").open("a") as log:
        log.write(json.dumps(argv) + "\n")
    stack = _opt(argv, "--stack")
    words = _words(argv)

    if stack is None or not _stack_file(stack).exists():
        print(f"error: no stack named '{stack}' found", file=sys.stderr)
        return 255
    state_file = STATE / f"{stack}.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {"outputs": {}, "history": []}

    if words[:2] == ["stack", "select"]:
        return 0
    if words[:2] == ["config", "get"]:
        config = _load_config(stack)
        key = words[2]
        if "--path" in argv:
            top, path = _split_path(key)
            value = config.get(top)
            for part in path:
                value = value.get(part) if isinstance(value, dict) else None
        else:
            value = config.get(key)
        if value is None:
            print(f"error: configuration key '{key}' not found for stack '{stack}'", file=sys.stderr)
            return 255
        text = value if isinstance(value, str) else json.dumps(value)
        print(json.dumps({"value": text, "secret": False}))
        return 0
    if words[:2] == ["config", "refresh"]:
        # Like a backend: the config of the last successful update, written back over the file.
        if "deployed_config" not in state:
            print(f"error: no previous deployment for stack '{stack}'", file=sys.stderr)
            return 255
        _save_config(stack, state["deployed_config"])
        return 0
    if words[:2] == ["config", "set-all"] and "--json" in argv:
        config = _load_config(stack)
        for key, entry in json.loads(argv[argv.index("--json") + 1]).items():
            config[key] = entry["objectValue"] if "objectValue" in entry else _literal(entry["value"])
        _save_config(stack, config)
        return 0
    if words == ["config"]:
        print(json.dumps(_config_json(_load_config(stack))))
        return 0
    if words[:1] == ["cancel"]:
        (STATE / f"{stack}.lock").unlink(missing_ok=True)
        return 0
    if words[:2] == ["config", "set"]:
        key, value = words[2], argv[argv.index("--") + 1]
        config = _load_config(stack)
        if "--path" in argv:
            top, path = _split_path(key)
            node = config.setdefault(top, {})
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = _literal(value)
        else:
            config[key] = value
        _save_config(stack, config)
        return 0
    if words[:1] == ["up"]:
        return _up(stack, argv, state, state_file)
    if words[:2] == ["stack", "output"]:
        print(json.dumps(state["outputs"]))
        return 0
    if words[:2] == ["stack", "history"]:
        print(json.dumps(list(reversed(state["history"]))[:1]))
        return 0
    print(f"pulumi stand-in: unsupported command: {argv}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
