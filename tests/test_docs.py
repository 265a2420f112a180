"""The docs name only what is there: every repository path a Markdown file names in backticks, and
every relative link, exists (ARCHITECTURE.md's tables above all; docs that cite a file outside the
repository are how readers get lost)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TRACKED = subprocess.run(
    ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
    cwd=ROOT,
    capture_output=True,
    text=True,
    check=True,
).stdout.split()
TOP = {name.split("/")[0] for name in TRACKED}
DOCS = sorted(name for name in TRACKED if name.endswith(".md"))
PLACEHOLDER = re.compile(r"[*<>{}$=()\[\]|]|\.\.\.")


def _named_paths(text: str) -> set[str]:
    """Backticked tokens that name a repository path: `dir/...` under a top-level entry of the
    repository, or a bare module name `x.py`. Placeholders, globs and host paths (`/etc/...`) are
    not repository paths."""
    found = set()
    for token in re.findall(r"`([^`\s]+)`", text):
        token = token.rstrip(".,:;").split(":")[0]
        if not token or token.startswith(("/", "~", "http")) or PLACEHOLDER.search(token):
            continue
        first = token.split("/")[0]
        if ("/" in token and first in TOP) or (token.endswith(".py") and "/" not in token):
            found.add(token)
    return found


def _exists(token: str) -> bool:
    if "/" in token:
        return (ROOT / token).exists()
    return any(name == token or name.endswith("/" + token) for name in TRACKED)


@pytest.mark.parametrize("doc", DOCS)
def test_every_path_a_doc_names_exists(doc: str) -> None:
    text = (ROOT / doc).read_text()
    missing = sorted(t for t in _named_paths(text) if not _exists(t))
    assert not missing, f"{doc} names paths that are not in the repository: {missing}"


@pytest.mark.parametrize("doc", DOCS)
def test_every_relative_link_resolves(doc: str) -> None:
    text = (ROOT / doc).read_text()
    targets = re.findall(r"\]\(([^)\s#]+)(?:#[^)]*)?\)", text)
    missing = [
        t
        for t in targets
        if "://" not in t and not t.startswith("mailto:") and not ((ROOT / doc).parent / t).exists()
    ]
    assert not missing, f"{doc} links to files that are not there: {missing}"


def test_architecture_names_every_top_level_package() -> None:
    text = (ROOT / "ARCHITECTURE.md").read_text()
    for package in (
        "swell",
        "autoscaler",
        "stacks",
        "loadtests",
        "dashboards",
        "playbooks",
        "deploy",
        "tests",
    ):
        assert f"`{package}/" in text, f"ARCHITECTURE.md's layout does not place {package}/"
