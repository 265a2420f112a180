"""The test renderer of deploy/kubernetes (tests/deploy/kustomize.py) gives what `kubectl kustomize`
gives, where kubectl is installed; and it refuses a kustomization feature it does not apply."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.kustomize import UnsupportedKustomization, render

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"


def _key(doc: dict) -> tuple[str, str, str]:
    meta = doc["metadata"]
    return doc["kind"], meta.get("namespace", ""), meta["name"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed (optional)")
def test_the_renderer_agrees_with_kubectl_kustomize() -> None:
    done = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    theirs = {_key(d): d for d in yaml.safe_load_all(done.stdout) if d}
    ours = {_key(d): d for d in render(DEPLOY)}
    assert ours == theirs


@pytest.mark.parametrize(
    "extra",
    [
        {"namespace": "elsewhere"},
        {"configMapGenerator": []},
        {"labels": [{"pairs": {"a": "b"}, "includeSelectors": True}]},
    ],
    ids=["namespace", "configmap-generator", "label-selectors"],
)
def test_an_unsupported_feature_fails_loudly(tmp_path: Path, extra: dict) -> None:
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({"resources": ["cm.yaml"], **extra}))
    with pytest.raises(UnsupportedKustomization):
        render(tmp_path)


def test_images_keep_or_replace_tags_as_kustomize_does(tmp_path: Path) -> None:
    (tmp_path / "d.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "d"},
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [
                                {"name": "a", "image": "reg.example:5000/app:1.0"},
                                {"name": "b", "image": "reg.example:5000/other:1.0"},
                            ]
                        }
                    }
                },
            }
        )
    )
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": ["d.yaml"],
                "images": [{"name": "reg.example:5000/app", "newName": "r/app", "newTag": "2"}],
            }
        )
    )
    containers = render(tmp_path)[0]["spec"]["template"]["spec"]["containers"]
    assert [c["image"] for c in containers] == ["r/app:2", "reg.example:5000/other:1.0"]
