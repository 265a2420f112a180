"""deploy/locust/: a distributed calibration run on Kubernetes, validated offline with the validator of
deploy/kubernetes (Kubernetes 1.33's schemas, strict: unknown fields refused), rendered as
`kubectl apply -k` would, and consistent: the mounted locustfile is the repository's, the profile is
one the locustfile accepts, the master waits for as many workers as the Job starts, and the workers
find the master."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from loadtests.knee import TIERS, StepPlan
from tests.deploy.kustomize import render
from tests.deploy.test_kubernetes_manifests import KUBERNETES_VERSION, validate

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "locust"


def docs() -> list[dict[str, Any]]:
    return render(DEPLOY)


def one(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def container(job: str) -> dict[str, Any]:
    (c,) = one("Job", job)["spec"]["template"]["spec"]["containers"]
    return c


def arg_after(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_the_kustomization_lists_every_manifest() -> None:
    listed = set(yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}


@pytest.mark.parametrize(
    "name", sorted(p.name for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")
)
def test_every_manifest_is_valid_for_the_stated_kubernetes_version(name: str) -> None:
    for doc in yaml.safe_load_all((DEPLOY / name).read_text()):
        if doc:
            validate(doc)


def test_the_validator_catches_a_broken_job() -> None:
    broken = copy.deepcopy(one("Job", "swell-locust-master"))
    broken["spec"]["template"]["spec"]["containers"][0]["argz"] = ["--master"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_mounted_locustfile_is_the_repositorys() -> None:
    files = one("ConfigMap", "swell-locust-files")["data"]
    assert files["locustfile.py"] == (ROOT / "loadtests" / "calibrate_locustfile.py").read_text(), (
        "deploy/locust/files.yaml drifted from loadtests/calibrate_locustfile.py: copy it again"
    )
    for job in ("swell-locust-master", "swell-locust-workers"):
        pod = one("Job", job)["spec"]["template"]["spec"]
        c = container(job)
        mount = next(m for m in c["volumeMounts"] if m["name"] == "locustfile")
        volume = next(v for v in pod["volumes"] if v["name"] == "locustfile")
        assert volume["configMap"]["name"] == "swell-locust-files"
        assert arg_after(c["args"], "-f") == f"{mount['mountPath']}/locustfile.py"
        assert [e["configMapRef"]["name"] for e in c["envFrom"]] == ["swell-locust-profile"]


def test_the_profile_is_a_step_plan_the_locustfile_accepts() -> None:
    env = one("ConfigMap", "swell-locust-profile")["data"]
    plan = StepPlan.from_env(env)  # what the locustfile calls
    assert env["SWELL_CALIBRATE_TIER"] in TIERS
    assert list(plan.users) == sorted(plan.users) and len(plan.users) >= 3
    # Workers report every REPORT_S: the master's windows must lag at least that much.
    assert plan.lag_s >= float(env["SWELL_CALIBRATE_REPORT_S"])
    master = one("Job", "swell-locust-master")["spec"]
    assert plan.duration_s < master["activeDeadlineSeconds"], "the deadline would cut the profile"
    assert env["LOCUST_HOST"].startswith(("http://", "https://"))


def test_the_master_waits_for_the_workers_the_job_starts_and_they_find_it() -> None:
    workers = one("Job", "swell-locust-workers")["spec"]
    master_args = container("swell-locust-master")["args"]
    assert "--master" in master_args and "--headless" in master_args
    assert int(arg_after(master_args, "--expect-workers")) == workers["parallelism"] == workers["completions"]
    service = one("Service", "swell-locust-master")
    assert (
        arg_after(container("swell-locust-workers")["args"], "--master-host") == service["metadata"]["name"]
    )
    pod_labels = one("Job", "swell-locust-master")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    ports = {p["name"]: p["containerPort"] for p in container("swell-locust-master")["ports"]}
    assert port["port"] == ports[port["targetPort"]] == 5557  # Locust's master port
    worker_labels = one("Job", "swell-locust-workers")["spec"]["template"]["metadata"]["labels"]
    assert not service["spec"]["selector"].items() <= worker_labels.items()


def test_the_jobs_run_swells_image_bounded_and_unprivileged() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    (image,) = kustomization["images"]
    assert (
        image["name"]
        == yaml.safe_load((ROOT / "deploy" / "kubernetes" / "kustomization.yaml").read_text())["images"][0][
            "name"
        ]
    ), "the Jobs run swell's image, which has Locust and loadtests/ in it"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"locust>=' in pyproject and '"websocket-client>=' in pyproject
    for job in ("swell-locust-master", "swell-locust-workers"):
        spec = one("Job", job)["spec"]
        pod = spec["template"]["spec"]
        c = container(job)
        assert c["image"] == f"{image['newName']}:{image['newTag']}"
        assert c["command"] == ["locust"]
        assert spec["activeDeadlineSeconds"] <= 4 * 3600
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert set(c["resources"]["limits"]) == {"cpu", "memory"}
    assert one("Job", "swell-locust-master")["spec"]["backoffLimit"] == 0
