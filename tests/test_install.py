"""swell installed as a user installs it: a wheel built from the repository's files, in a fresh
virtual environment outside the checkout, from PyPI with the versions of requirements.lock.

`[autoscaler]` must run the on-call commands without Ansible, Locust or the Pulumi SDK (the
autoscaler's image); `[all]` must find its playbooks, rules and stack program as package data, and
preview the Pulumi project it is run in.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(*cmd: str | Path, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    result = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"{cmd}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built from the files git would clone (tracked, or new and not ignored): never from build/ or
    a stray file of this checkout."""
    source = tmp_path_factory.mktemp("source")
    files = _run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT)
    for name in filter(None, files.split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", out, ".", cwd=source)
    (built,) = out.glob("swell-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("venv")
    _run(sys.executable, "-m", "venv", path, cwd=path)
    yield path


def _install(venv: Path, wheel: Path, extra: str) -> None:
    _run(
        venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--constraint", ROOT / "requirements.lock", f"{wheel}[{extra}]",
        cwd=venv,
    )  # fmt: skip


def _env(venv: Path, home: Path) -> dict[str, str]:
    # A user's shell: this venv first, nothing of the checkout's; state under their own home.
    path = f"{venv / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin"
    return {"PATH": path, "HOME": str(home), "LANG": "C.UTF-8", "COLUMNS": "200"}


def test_the_autoscaler_extra_runs_on_call_commands_without_the_other_sdks(
    wheel: Path, venv: Path, tmp_path: Path
) -> None:
    _install(venv, wheel, "autoscaler")
    env = _env(venv, tmp_path / "home")
    assert "Usage: swell autoscale" in _run("swell", "autoscale", "--help", cwd=tmp_path, env=env)
    config = tmp_path / "autoscaler.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "prometheus": {"url": "http://127.0.0.1:9"},
                "tiers": {
                    "video": {
                        "capacity_per_instance": 80,
                        "min": 1,
                        "max": 8,
                        "actuator": {"kind": "kubernetes", "namespace": "video", "deployment": "jvb"},
                    }
                },
            }
        )
    )
    rows = json.loads(_run("swell", "status", "-c", config, "--json", cwd=tmp_path, env=env))
    assert [r["tier"] for r in rows] == ["video"] and rows[0]["reason"] == "no decision yet"
    # The default state store is under the user's XDG state directory, not the working directory.
    assert (tmp_path / "home" / ".local" / "state" / "swell" / "autoscaler.db").is_file()
    assert not (tmp_path / "var").exists()
    python = venv / "bin" / "python"
    for absent in ("pulumi", "ansible", "locust", "matplotlib"):
        probe = subprocess.run([python, "-c", f"import {absent}"], capture_output=True, env=env, cwd=tmp_path)
        assert probe.returncode != 0, f"[autoscaler] installed {absent}"


def test_all_runs_preview_configure_and_drill_from_package_data(
    wheel: Path, venv: Path, tmp_path: Path
) -> None:
    _install(venv, wheel, "all")
    env = _env(venv, tmp_path / "home")
    # A Pulumi project of the user's own: Pulumi.yaml and a stack file, nothing else of ours.
    project = tmp_path / "project"
    project.mkdir()
    for name in ("Pulumi.yaml", "Pulumi.dev.yaml"):
        shutil.copy(ROOT / name, project / name)
    preview = json.loads(_run("swell", "preview", "--stack", "dev", "--json", cwd=project, env=env))
    assert preview["summary"]["tiers"], preview["summary"]
    assert "Usage: swell drill" in _run("swell", "drill", "--help", cwd=tmp_path, env=env)
    # configure --check: the playbooks come from the package; the hosts are 127.0.0.1 on a closed
    # port, so the run reaches its first task and reports each host unreachable by name.
    outputs = json.loads((ROOT / "tests" / "data" / "stack-outputs-prod-gra11.json").read_text())
    for tier in outputs["tiers"].values():
        for instance in tier["instances"]:
            instance |= {"private_ip": "127.0.0.1", "public_ipv4": None, "public_ipv6": None}
    (tmp_path / "outputs.json").write_text(json.dumps(outputs))
    result = subprocess.run(
        ["swell", "configure", "--stack-outputs", "outputs.json", "--check", "--limit", "web",
         "--admin-cidr", "10.9.0.0/24", "-e", "ansible_port=9", "--timeout", "120"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 1, output
    assert "unreachable at task 'Gathering Facts'" in output and "web-0" in output
    assert "could not be found" not in output
