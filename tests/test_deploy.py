"""The deployment files (Dockerfile, docker-compose.yml, deploy/k8s) agree with each other and with the CLI.

No Docker engine or cluster is needed: the files are parsed and every command they run is parsed
by the `facerec` CLI's own parser.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from facerec_app.cli import build_parser
from tests.support.kustomize import render

ROOT = Path(__file__).resolve().parents[1]
PORTS = {"detector": 50051, "embedder": 50052, "gallery": 50053}
METRICS_PORTS = {"detector": 9101, "embedder": 9102, "gallery": 9103}
GATEWAY_PORT = 8080
GATEWAY_METRICS_PORT = 9104
INFERENCE = ("detector", "embedder")
FACEREC_HOME = "/opt/facerec"


def parse_cli(argv: list[str]) -> argparse.Namespace:
    """Parses argv as `facerec ARGV`; fails the test (instead of exiting) when the CLI rejects it."""
    try:
        return build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"`facerec {shlex.join(argv)}` is not a valid facerec command")


def flag(argv: list[str], name: str) -> str:
    assert name in argv, f"{name} missing from {argv}"
    return argv[argv.index(name) + 1]


def check_serve(argv: list[str], service: str) -> None:
    """argv runs `facerec serve <service> --host 0.0.0.0 --port <its port>`: a container's loopback is its
    own, and the services listen on loopback unless told otherwise."""
    args = parse_cli(argv)
    assert args.command == "serve"
    assert args.service == service
    assert int(flag(args.rest, "--port")) == PORTS[service]
    assert flag(args.rest, "--host") == "0.0.0.0"


def check_health(argv: list[str], service: str) -> None:
    args = parse_cli(argv)
    assert args.command == "health"
    assert args.address == f"127.0.0.1:{PORTS[service]}"


# ---------------------------------------------------------------- the CLI the files rely on


def test_the_cli_has_the_commands_and_services_the_deployment_runs() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert {"serve", "health", "fetch"} <= set(sub.choices)
    service = next(a for a in sub.choices["serve"]._actions if a.dest == "service")
    assert {"detector", "embedder", "gallery", "gateway"} <= set(service.choices)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "no-such-service"])


def test_every_listener_binds_loopback_unless_told_otherwise() -> None:
    from detector_service.config import Settings as DetectorSettings
    from embedding_service.config import Settings as EmbedderSettings
    from facerec.settings import ServerOptions
    from facerec_app.supervisor import serve_parser
    from gallery.config import Settings as GallerySettings
    from gateway.config import Settings as GatewaySettings

    # The metrics servers listen on their service's host (facerec.bootstrap, gateway.__main__).
    hosts = {
        "detector": DetectorSettings.from_env({}).host,
        "embedder": EmbedderSettings.from_env({}).host,
        "gallery": GallerySettings.from_env({"FACEREC_HOME": "/nonexistent"}).host,
        "gateway": GatewaySettings.from_env({}).host,
        "server options": ServerOptions().host,
        "facerec serve": serve_parser().parse_args([]).host,
    }
    assert hosts == dict.fromkeys(hosts, "127.0.0.1")
    assert DetectorSettings.from_env({"DETECTOR_HOST": "0.0.0.0"}).host == "0.0.0.0"
    assert GatewaySettings.from_env({"GATEWAY_HOST": "0.0.0.0"}).host == "0.0.0.0"


# ---------------------------------------------------------------- Dockerfile


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    lines = [
        line for line in (ROOT / "Dockerfile").read_text().splitlines() if not line.lstrip().startswith("#")
    ]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    steps = dockerfile()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def env_of(steps: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in steps:
        if word == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def stages() -> dict[str, list[tuple[str, str]]]:
    """The Dockerfile's steps by stage name (the final stage, unnamed, as "final"), FROM included."""
    out: dict[str, list[tuple[str, str]]] = {}
    name = ""
    for word, rest in dockerfile():
        if word == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else "final"
            out[name] = []
        out[name].append((word, rest))
    return out


def lineage(name: str) -> list[str]:
    """The stage and every stage it is built FROM, nearest first."""
    chain = [name]
    while True:
        parent = stages()[chain[-1]][0][1].split()[0]
        if parent not in stages():
            return chain
        chain.append(parent)


def test_dockerfile_installs_the_project_on_python_311_slim() -> None:
    steps = dockerfile()
    assert steps[0] == ("FROM", "python:3.11-slim AS base")
    runs = [rest for word, rest in steps if word == "RUN"]
    assert any("pip install ." in r for r in runs)
    final_runs = [rest for word, rest in final_stage() if word == "RUN"]
    assert any(r.startswith("pip install --no-deps /tmp/src") for r in final_runs)


def test_the_final_stage_holds_the_serving_set_and_no_tensorflow_or_compilers() -> None:
    """Only the `export` stage installs the export extra; the final stage descends from the serving set
    (`pip install .`, no extras) and takes nothing but FACEREC_HOME from the export stage."""
    chain = lineage("final")
    assert "export" not in chain and chain[-1] == "base"
    installs = [
        rest for name in chain for word, rest in stages()[name] if word == "RUN" and "pip install" in rest
    ]
    assert installs and not any("[" in r or "tensorflow" in r for r in installs)
    assert any("'/tmp/src[export,eval]'" in rest for word, rest in stages()["export"] if word == "RUN")
    copies = [rest for name in chain for word, rest in stages()[name] if word == "COPY" and "--from=" in rest]
    assert copies == [f"--from=export {FACEREC_HOME} {FACEREC_HOME}"]
    apt = " ".join(rest for name in chain for word, rest in stages()[name] if "apt-get install" in rest)
    for compiler in ("gcc", "g++", "build-essential", "clang", "make"):
        assert compiler not in apt.split()


def test_dockerfile_fetches_and_exports_into_opt_facerec_and_the_final_stage_verifies() -> None:
    # The export stage downloads the weights and exports every ONNX file; the final stage copies them and
    # runs `facerec export` again, which (the files being there) only loads and checks them, with the
    # serving set alone.
    export = [rest for word, rest in stages()["export"] if word == "RUN" and rest.startswith("facerec ")]
    assert export == ["facerec fetch", "facerec export"]
    assert env_of(stages()["export"])["FACEREC_HOME"] == FACEREC_HOME
    assert [rest for word, rest in final_stage() if word == "RUN" and rest.startswith("facerec ")] == [
        "facerec export"
    ]
    assert env_of(final_stage())["FACEREC_HOME"] == FACEREC_HOME
    assert parse_cli(["export"]).command == "export"
    assert parse_cli(["fetch"]).calibration and not parse_cli(["fetch", "--no-calibration"]).calibration


def test_dockerfile_runs_as_a_non_root_user() -> None:
    users = [rest for word, rest in final_stage() if word == "USER"]
    assert users, "no USER in the final stage"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert any(f"--uid {user}" in rest for word, rest in final_stage() if word == "RUN")


def test_dockerfile_healthcheck_asks_whichever_service_the_container_runs() -> None:
    checks = [rest for word, rest in final_stage() if word == "HEALTHCHECK"]
    assert len(checks) == 1
    options, _, command = checks[0].partition(" CMD ")
    assert "--start-period=" in options
    argv = shlex.split(command.split("||")[0])
    assert argv[0] == "facerec"
    args = parse_cli(argv[1:])
    # No address: `facerec health` finds the `facerec serve` process (tests/facerec_app/test_health_check.py).
    assert (args.command, args.address) == ("health", None)
    assert "FACEREC_HEALTH_PORT" not in env_of(final_stage())


def test_dockerfile_header_names_every_service_the_image_runs() -> None:
    header = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("FROM"):
            break
        header.append(line)
    text = " ".join(header)
    for service in ("detector", "embedder", "gallery", "gateway"):
        assert f"serve {service}" in text, service
    assert "three services" not in text


def test_dockerfile_entrypoint_is_the_cli_and_the_default_command_is_the_gallery() -> None:
    steps = final_stage()
    entrypoint = [json.loads(rest) for word, rest in steps if word == "ENTRYPOINT"]
    cmd = [json.loads(rest) for word, rest in steps if word == "CMD"]
    assert entrypoint == [["facerec"]]
    check_serve(cmd[0], "gallery")
    env = env_of(steps)
    # `docker run facerec serve detector` without --host listens on every interface of its container too.
    for service in ("detector", "embedder", "gallery", "gateway"):
        assert env[f"{service.upper()}_HOST"] == "0.0.0.0"
    for service, port in METRICS_PORTS.items():
        assert env[f"{service.upper()}_METRICS_PORT"] == str(port)


def test_dockerignore_keeps_the_venv_caches_and_git_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".git", "**/__pycache__", ".pytest_cache", ".ruff_cache", "*.h5"} <= ignored


# ---------------------------------------------------------------- docker-compose.yml


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_runs_the_three_services_from_one_image(compose) -> None:
    services = compose["services"]
    assert set(services) == {*PORTS, "gateway"}
    assert {s["image"] for s in services.values()} == {"facerec:latest"}
    for name in PORTS:
        check_serve(services[name]["command"], name)


def test_compose_health_checks_ask_each_service_on_its_own_port(compose) -> None:
    for name in PORTS:
        service = compose["services"][name]
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD" and test[1] == "facerec"
        check_health(test[2:], name)
        assert service["healthcheck"]["start_period"]


def test_compose_inference_services_scale(compose) -> None:
    for name in INFERENCE:
        service = compose["services"][name]
        assert service["deploy"]["replicas"] >= 2
        # A fixed host port or container name would make `--scale` fail on the second replica.
        assert "ports" not in service
        assert "container_name" not in service


def test_compose_publishes_only_the_gallery_grpc_port_and_the_gateway_http_port(compose) -> None:
    published = {name: service.get("ports", []) for name, service in compose["services"].items()}
    assert published == {
        "detector": [],
        "embedder": [],
        "gallery": [f"{PORTS['gallery']}:{PORTS['gallery']}"],
        "gateway": [f"{GATEWAY_PORT}:{GATEWAY_PORT}"],
    }
    for name in PORTS:
        service = compose["services"][name]
        assert service["environment"][f"{name.upper()}_METRICS_PORT"] == str(METRICS_PORTS[name])
        assert str(METRICS_PORTS[name]) in service["expose"]


def test_compose_gallery_reaches_every_replica_through_dns(compose) -> None:
    gallery = compose["services"]["gallery"]
    env = gallery["environment"]
    assert env["GALLERY_DETECTOR"] == f"dns:///detector:{PORTS['detector']}"
    assert env["GALLERY_EMBEDDER"] == f"dns:///embedder:{PORTS['embedder']}"
    assert gallery["depends_on"] == {
        "detector": {"condition": "service_healthy"},
        "embedder": {"condition": "service_healthy"},
    }


def test_compose_volumes_hold_the_store_and_the_weights(compose) -> None:
    assert set(compose["volumes"]) == {"gallery-data", "weights"}
    gallery = compose["services"]["gallery"]
    store = Path(flag(parse_cli(gallery["command"]).rest, "--store"))
    assert f"gallery-data:{store.parent}" in gallery["volumes"]
    for name in PORTS:  # the gateway loads no model
        assert f"weights:{FACEREC_HOME}" in compose["services"][name]["volumes"]


def test_compose_gateway_serves_http_in_front_of_the_gallery(compose) -> None:
    gateway = compose["services"]["gateway"]
    args = parse_cli(gateway["command"])
    assert (args.command, args.service) == ("serve", "gateway")
    assert int(flag(args.rest, "--port")) == GATEWAY_PORT
    assert flag(args.rest, "--host") == "0.0.0.0"
    env = gateway["environment"]
    assert env["GATEWAY_GALLERY"] == f"dns:///gallery:{PORTS['gallery']}"
    assert env["GATEWAY_DETECTOR"] == f"dns:///detector:{PORTS['detector']}"
    assert env["GATEWAY_EMBEDDER"] == f"dns:///embedder:{PORTS['embedder']}"  # asked by /readyz
    assert env["GATEWAY_METRICS_PORT"] == str(GATEWAY_METRICS_PORT)
    assert str(GATEWAY_METRICS_PORT) in gateway["expose"]
    assert gateway["depends_on"] == {"gallery": {"condition": "service_healthy"}}
    probe = gateway["healthcheck"]["test"]
    assert probe[:3] == ["CMD", "python", "-c"]
    assert f"http://127.0.0.1:{GATEWAY_PORT}/readyz" in probe[3]
    compile(probe[3], "healthcheck", "exec")  # the probe is Python that parses


def test_gateway_flags_in_the_deploy_files_are_the_gateways_own() -> None:
    from gateway.config import Settings

    assert Settings.parse(["--port", str(GATEWAY_PORT)], {}).port == GATEWAY_PORT
    env = {"GATEWAY_GALLERY": "dns:///gallery:50053", "GATEWAY_DETECTOR": "dns:///detector:50051"}
    settings = Settings.from_env({**env, "GATEWAY_METRICS_PORT": str(GATEWAY_METRICS_PORT)})
    assert (settings.gallery, settings.detector) == (env["GATEWAY_GALLERY"], env["GATEWAY_DETECTOR"])
    assert settings.metrics_port == GATEWAY_METRICS_PORT


# ---------------------------------------------------------------- deploy/k8s


@pytest.fixture(scope="module")
def k8s() -> dict[tuple[str, str], dict]:
    """{(kind, name): manifest} of the one-machine overlay as `kubectl kustomize` renders it."""
    return render("single")


def workload(k8s: dict, name: str) -> dict:
    kind = "StatefulSet" if name == "gallery" else "Deployment"
    return k8s[(kind, name)]


def container(k8s: dict, name: str) -> dict:
    (only,) = workload(k8s, name)["spec"]["template"]["spec"]["containers"]
    return only


def test_k8s_has_deployments_headless_services_and_a_gallery_statefulset(k8s) -> None:
    assert {key for key in k8s if key[0] in ("Deployment", "StatefulSet", "Service")} == {
        ("Deployment", "detector"),
        ("Deployment", "embedder"),
        ("StatefulSet", "gallery"),
        ("Service", "detector"),
        ("Service", "embedder"),
        ("Service", "gallery"),
        ("Deployment", "gateway"),
        ("Service", "gateway"),
    }
    for name in INFERENCE:
        # Headless: DNS answers with every ready pod, which round_robin needs.
        # (YAML reads `clusterIP: None` as the string Kubernetes expects.)
        assert k8s[("Service", name)]["spec"]["clusterIP"] == "None"
        assert workload(k8s, name)["spec"]["replicas"] >= 2
    assert "clusterIP" not in k8s[("Service", "gallery")]["spec"]  # an ordinary ClusterIP Service


def test_k8s_services_select_their_pods_and_expose_grpc(k8s) -> None:
    for name, port in PORTS.items():
        spec = workload(k8s, name)["spec"]
        labels = spec["template"]["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= labels.items()
        service = k8s[("Service", name)]["spec"]
        assert service["selector"].items() <= labels.items()
        grpc_port = next(p for p in service["ports"] if p["name"] == "grpc")
        assert grpc_port["port"] == port


def test_k8s_containers_run_the_cli_with_grpc_probes_and_resources(k8s) -> None:
    for name, port in PORTS.items():
        c = container(k8s, name)
        assert "command" not in c  # the image's ENTRYPOINT (facerec) stays
        check_serve(c["args"], name)
        assert {p["name"]: p["containerPort"] for p in c["ports"]} == {
            "grpc": port,
            "metrics": METRICS_PORTS[name],
        }
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["grpc"] == {"port": port}, f"{name} {probe}"
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"][kind])
        env = {e["name"]: e["value"] for e in c["env"]}
        assert env[f"{name.upper()}_METRICS_PORT"] == str(METRICS_PORTS[name])
        pod = workload(k8s, name)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True


def test_k8s_gallery_keeps_its_store_on_a_claimed_volume_and_finds_the_pods_through_dns(k8s) -> None:
    spec = workload(k8s, "gallery")["spec"]
    assert spec["replicas"] == 1  # one writer for the SQLite store
    (claim,) = spec["volumeClaimTemplates"]
    c = container(k8s, "gallery")
    store = Path(flag(c["args"], "--store"))
    assert {"name": claim["metadata"]["name"], "mountPath": str(store.parent)} in c["volumeMounts"]
    assert spec["template"]["spec"]["securityContext"]["fsGroup"] == 10001
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["GALLERY_DETECTOR"] == f"dns:///detector:{PORTS['detector']}"
    assert env["GALLERY_EMBEDDER"] == f"dns:///embedder:{PORTS['embedder']}"


def test_k8s_gateway_is_stateless_http_ready_while_the_gallery_answers(k8s) -> None:
    spec = k8s[("Deployment", "gateway")]["spec"]
    assert spec["replicas"] >= 2
    labels = spec["template"]["metadata"]["labels"]
    assert k8s[("Service", "gateway")]["spec"]["selector"].items() <= labels.items()
    (c,) = spec["template"]["spec"]["containers"]
    args = parse_cli(c["args"])
    assert (args.service, int(flag(args.rest, "--port"))) == ("gateway", GATEWAY_PORT)
    assert flag(args.rest, "--host") == "0.0.0.0"
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {
        "http": GATEWAY_PORT,
        "metrics": GATEWAY_METRICS_PORT,
    }
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    # Liveness does not ask the gallery: its outage must not restart every gateway.
    assert c["livenessProbe"]["tcpSocket"] == {"port": "http"}
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["GATEWAY_GALLERY"] == f"dns:///gallery:{PORTS['gallery']}"
    assert env["GATEWAY_DETECTOR"] == f"dns:///detector:{PORTS['detector']}"
    assert env["GATEWAY_EMBEDDER"] == f"dns:///embedder:{PORTS['embedder']}"  # asked by /readyz
    assert spec["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_the_detectors_memory_limit_is_the_bound_docs_limits_states(k8s, compose) -> None:
    # tests/e2e/test_detector_memory.py holds a real detector's peak to this bound.
    assert container(k8s, "detector")["resources"]["limits"]["memory"] == "3Gi"
    assert compose["services"]["detector"]["deploy"]["resources"]["limits"]["memory"] == "3G"
    assert "| A detector replica in all | 3 GiB" in (ROOT / "docs" / "limits.md").read_text()


# ---------------------------------------------------------------- docs/deploy-machines.md


def test_the_several_machines_recipe_uses_real_settings_and_flags() -> None:
    """Every variable and `facerec serve` command of docs/deploy-machines.md is one the services take
    (tests/e2e/test_machines.py runs the recipe itself on loopback addresses)."""
    import dataclasses

    from detector_service.config import Settings as DetectorSettings
    from embedding_service.config import Settings as EmbedderSettings
    from gallery.config import Settings as GallerySettings
    from gateway.config import Settings as GatewaySettings

    text = (ROOT / "docs" / "deploy-machines.md").read_text()
    known = {
        f"{cls.PREFIX}{f.name.upper()}"
        for cls in (DetectorSettings, EmbedderSettings, GallerySettings, GatewaySettings)
        for f in dataclasses.fields(cls)
    }
    used = set(re.findall(r"\b((?:DETECTOR|EMBEDDER|GALLERY|GATEWAY)_[A-Z_]+)=", text))
    assert len(used) >= 10 and used <= known, used - known
    commands = re.findall(r"facerec serve (\w+)((?: [^\n\\]+| \\\n)+)", text)
    assert {service for service, _ in commands} == {"detector", "embedder", "gallery", "gateway"}
    settings = {
        "detector": DetectorSettings,
        "embedder": EmbedderSettings,
        "gallery": GallerySettings,
        "gateway": GatewaySettings,
    }
    for service, rest in commands:
        args = parse_cli(["serve", service, *shlex.split(rest.replace("\\\n", " "))])
        assert flag(args.rest, "--host") not in ("0.0.0.0", "[::]"), service
        # The service's own parser takes every flag (an unknown one exits).
        parsed = settings[service].parse(args.rest, {"FACEREC_HOME": "/nonexistent"})
        assert parsed.host == flag(args.rest, "--host")
