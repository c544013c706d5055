"""Every overlay of deploy/k8s renders with `kubectl kustomize`, and every pod it runs meets the
restricted Pod Security standard, is covered by a disruption budget and has a memory limit; the inference
services autoscale and the gateway is reachable through an Ingress."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.kustomize import OVERLAYS, WORKLOADS, pod_spec, render

# The volume types the restricted standard allows (no hostPath).
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> dict[tuple[str, str], dict[str, Any]]:
    return render(request.param)


def workloads(rendered: dict[tuple[str, str], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: doc for (kind, name), doc in rendered.items() if kind in WORKLOADS}


def test_every_pod_of_every_overlay_meets_the_restricted_pod_security_standard(rendered) -> None:
    assert workloads(rendered)
    for name, doc in workloads(rendered).items():
        pod = pod_spec(doc)
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True, name
        assert security.get("runAsUser", 1) != 0, name
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), name
        claims = {t["metadata"]["name"] for t in doc["spec"].get("volumeClaimTemplates", [])}
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for volume in volumes.values():
            kinds = set(volume) - {"name"}
            assert kinds <= RESTRICTED_VOLUMES, (name, volume)
        for c in pod["containers"] + pod.get("initContainers", []):
            where = f"{name}/{c['name']}"
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert not sc.get("privileged", False), where
            assert sc.get("runAsNonRoot", True) is True and sc.get("runAsUser", 1) != 0, where
            assert "seccompProfile" not in sc or sc["seccompProfile"]["type"] == "RuntimeDefault", where
            # A read-only root: every path the container writes is a volume of its own.
            assert sc["readOnlyRootFilesystem"] is True, where
            for mount in c.get("volumeMounts", []):
                assert mount["name"] in volumes or mount["name"] in claims, (where, mount)
            assert "/tmp" in {m["mountPath"] for m in c.get("volumeMounts", [])}, where
            assert c["resources"]["limits"]["memory"], where


def test_every_workload_has_a_disruption_budget_that_lets_a_drain_proceed(rendered) -> None:
    budgets = [doc for (kind, _), doc in rendered.items() if kind == "PodDisruptionBudget"]
    for name, doc in workloads(rendered).items():
        labels = pod_spec_labels(doc)
        covering = [b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert len(covering) == 1, name
        # maxUnavailable (not minAvailable = replicas), so a one-pod gallery does not block a drain.
        assert covering[0]["spec"]["maxUnavailable"] == 1, name


def pod_spec_labels(doc: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = doc["spec"]["template"]["metadata"]["labels"]
    return labels


def test_the_detector_and_embedder_autoscale_on_cpu(rendered) -> None:
    scalers = {
        name: doc["spec"] for (kind, name), doc in rendered.items() if kind == "HorizontalPodAutoscaler"
    }
    assert set(scalers) == {"detector", "embedder"}
    for name, spec in scalers.items():
        target = spec["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", name)
        assert ("Deployment", name) in rendered
        assert 1 <= spec["minReplicas"] <= spec["maxReplicas"]
        (metric,) = spec["metrics"]
        assert metric["resource"]["name"] == "cpu"
        # Utilization is relative to the request: the container must request CPU.
        (c,) = pod_spec(rendered[("Deployment", name)])["containers"]
        assert c["resources"]["requests"]["cpu"]


def test_the_gateway_is_reached_through_an_ingress_on_a_host_it_serves(rendered) -> None:
    from gateway.config import Settings as GatewaySettings

    (ingress,) = [doc for (kind, _), doc in rendered.items() if kind == "Ingress"]
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    backend = path["backend"]["service"]
    service = rendered[("Service", backend["name"])]["spec"]
    assert backend["name"] == "gateway"
    assert backend["port"]["name"] in {p["name"] for p in service["ports"]}
    (c,) = pod_spec(rendered[("Deployment", "gateway")])["containers"]
    env = {e["name"]: e["value"] for e in c["env"]}
    settings = GatewaySettings.from_env(env)
    assert rule["host"] in settings.host_names()
