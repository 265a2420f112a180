"""Render deploy/kubernetes as `kubectl apply -k` would, for the tests, without a kustomize binary.

No kustomize can be installed from the package registries this project uses (kubectl is not a
Debian package here; PyPI's bindings need Python 3.14), so this applies exactly the kustomization
features deploy/kubernetes uses, as kustomize v5 documents them, and refuses any other key (a new
feature in the kustomization must be added here, or the tests fail loudly):

- `resources`: files in the same directory, multi-document YAML, in order;
- `images`: `{name, newName, newTag}`: every container (and init container) whose image is `name`,
  with or without a tag, gets `newName:newTag`;
- `labels`: `[{pairs: {...}}]` without `includeSelectors`/`includeTemplates`: the pairs are added to
  every resource's `metadata.labels` only (not to selectors, not to pod templates).

`tests/deploy/test_kustomize_renderer.py` checks it against `kubectl kustomize` where kubectl exists.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "images", "labels"}


class UnsupportedKustomization(ValueError):
    """The kustomization uses a feature this renderer does not apply."""


def render(directory: Path) -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = sorted(set(kustomization) - SUPPORTED)
    if unknown:
        raise UnsupportedKustomization(
            f"kustomization keys not rendered by tests/deploy/kustomize.py: {unknown}"
        )
    docs = [
        copy.deepcopy(doc)
        for name in kustomization.get("resources", [])
        for doc in yaml.safe_load_all((directory / name).read_text())
        if doc
    ]
    for entry in kustomization.get("labels", []):
        if set(entry) - {"pairs"}:
            raise UnsupportedKustomization(f"labels options not rendered: {sorted(set(entry) - {'pairs'})}")
        for doc in docs:
            doc.setdefault("metadata", {}).setdefault("labels", {}).update(entry["pairs"])
    for image in kustomization.get("images", []):
        if set(image) - {"name", "newName", "newTag"}:
            raise UnsupportedKustomization(f"images options not rendered: {sorted(image)}")
        for doc in docs:
            for container in _containers(doc):
                if _image_name(container.get("image", "")) == image["name"]:
                    name = image.get("newName", image["name"])
                    tag = image.get("newTag")
                    container["image"] = f"{name}:{tag}" if tag else name
    return docs


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    pod = doc.get("spec", {}).get("template", {}).get("spec", {})
    return [*pod.get("containers", []), *pod.get("initContainers", [])]


def _image_name(image: str) -> str:
    without_digest = image.split("@", 1)[0]
    head, _, tail = without_digest.rpartition(":")
    return head if head and "/" not in tail else without_digest
