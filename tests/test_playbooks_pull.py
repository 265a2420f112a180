"""ansible-pull, run for real with the argv the stack renders (stacks/bootstrap.py), against a local git
repository: it runs exactly the pinned commit even after the branch moved on, refuses a commit the
repository does not have before running anything, and reads the secrets from the file named on its
command line without ever printing them.

What is real: ansible-pull and ansible-playbook from this venv, git, the rendered argv. What is not:
the repository (a two-commit stand-in whose playbooks/pull.yml only writes a file in the test's
temporary directory, so nothing touches this machine), the URL (file://) and the paths (temporary
directories instead of /opt/swell and /etc/swell).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from stacks import bootstrap

BIN = Path(sys.executable).parent
PROOF_PLAYBOOK = """\
- name: Record which commit ran
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Write the proof file
      ansible.builtin.copy:
        content: "{content} {{{{ video_xmpp_password | length }}}}\\n"
        dest: "{{{{ proof_file }}}}"
        mode: "0600"
"""


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "swell test",
        "GIT_AUTHOR_EMAIL": "test@swell.invalid",
        "GIT_COMMITTER_NAME": "swell test",
        "GIT_COMMITTER_EMAIL": "test@swell.invalid",
    }
    done = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def commit(repo: Path, content: str) -> str:
    playbook = repo / "playbooks" / "pull.yml"
    playbook.parent.mkdir(parents=True, exist_ok=True)
    playbook.write_text(PROOF_PLAYBOOK.format(content=content))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", content)
    return git(repo, "rev-parse", "HEAD")


def pull(
    tmp_path: Path, repo: Path, ref: str, password: str
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run the rendered ansible-pull argv with the repository, checkout and files moved into tmp_path."""
    b = bootstrap.Bootstrap(
        tier="video",
        stack="test",
        private_network_cidr="10.42.0.0/16",
        admin_cidrs=["203.0.113.0/24"],
        playbooks_repo=f"file://{repo}",
        playbooks_ref=ref,
        secrets={"video_xmpp_password": password},
    )
    checkout = tmp_path / f"checkout-{ref[:8]}"
    proof = tmp_path / f"proof-{ref[:8]}"
    vars_file = tmp_path / "ansible-vars.json"
    vars_file.write_text(json.dumps(bootstrap.ansible_vars(b) | {"proof_file": str(proof)}))
    secrets_file = tmp_path / "secrets.json"
    secrets_file.write_text(json.dumps(dict(b.secrets)))
    secrets_file.chmod(0o600)
    moved = {
        bootstrap.CHECKOUT_DIR: str(checkout),
        f"@{bootstrap.VARS_FILE}": f"@{vars_file}",
        f"@{bootstrap.SECRETS_FILE}": f"@{secrets_file}",
    }
    argv = [moved.get(a, a) for a in bootstrap.ansible_pull_command(b)]
    assert argv[0] == "ansible-pull"
    result = subprocess.run(
        [str(BIN / "ansible-pull"), *argv[1:]],
        env={
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "ANSIBLE_NOCOLOR": "1",
            # This machine's interpreter discovery finds a pyenv shim; a Debian instance finds python3.
            "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return result, proof


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str, str]:
    path = tmp_path / "swell.git"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    pinned = commit(path, "pinned-release")
    moved_on = commit(path, "pushed-later")
    return path, pinned, moved_on


@pytest.mark.slow
def test_ansible_pull_runs_exactly_the_pinned_commit_after_the_branch_moved(
    tmp_path: Path, repo: tuple[Path, str, str]
) -> None:
    path, pinned, moved_on = repo
    assert git(path, "rev-parse", "main") == moved_on != pinned
    password = f"CANARY{secrets.token_hex(12)}"
    result, proof = pull(tmp_path, path, pinned, password)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # The pinned commit's playbook ran, not the branch tip's; it saw the secret (its length) ...
    assert proof.read_text() == f"pinned-release {len(password)}\n"
    assert git(tmp_path / f"checkout-{pinned[:8]}", "rev-parse", "HEAD") == pinned
    # ... which ansible-pull never printed (its own log line shows only the file's name).
    assert password not in result.stdout + result.stderr
    assert "@" in result.stdout and "secrets.json" in result.stdout


@pytest.mark.slow
def test_ansible_pull_refuses_a_commit_the_repository_does_not_have(
    tmp_path: Path, repo: tuple[Path, str, str]
) -> None:
    path, _, _ = repo
    missing = "0123456789abcdef0123456789abcdef01234567"
    result, proof = pull(tmp_path, path, missing, f"CANARY{secrets.token_hex(12)}")
    assert result.returncode != 0
    assert not proof.exists()
