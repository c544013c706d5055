"""Renders the Kustomize overlays of deploy/k8s with `kubectl kustomize` (offline, no cluster)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ("single", "scale")
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")


def render(overlay: str) -> dict[tuple[str, str], dict[str, Any]]:
    """{(kind, name): manifest} of deploy/k8s/overlays/<overlay> as kubectl renders it."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is needed to render deploy/k8s (the set-up installs it)")
    done = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "deploy" / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    docs: dict[tuple[str, str], dict[str, Any]] = {}
    for doc in yaml.safe_load_all(done.stdout):
        key = (doc["kind"], doc["metadata"]["name"])
        assert key not in docs, f"{key} rendered twice"
        docs[key] = doc
    return docs


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    """The pod template's spec of a workload (a CronJob's through its job template)."""
    spec = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
    pod: dict[str, Any] = spec["template"]["spec"]
    return pod
