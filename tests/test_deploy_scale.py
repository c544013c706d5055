"""The scale-out deployment files (docker-compose.scale.yml, deploy/k8s/overlays/scale) agree with each other and
with the gallery's settings: replicas on one PostgreSQL and one Milvus, reached through DNS.

No Docker engine or cluster is needed: the files are parsed, every command is parsed by the CLI, and
the gallery's environment is read by its own Settings.from_env.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import psycopg
import pytest
import yaml

from facerec_app.cli import build_parser
from gallery.config import Settings
from tests.support.kustomize import render

ROOT = Path(__file__).resolve().parents[1]


def parse_cli(argv: list[str]) -> argparse.Namespace:
    try:
        return build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"`facerec {shlex.join(argv)}` is not a valid facerec command")


def gallery_settings(env: dict[str, str]) -> Settings:
    """The settings a gallery replica starts with from this environment (fails on an unknown value)."""
    return Settings.from_env({**env, "FACEREC_HOME": "/opt/facerec"})


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.scale.yml").read_text())


def test_compose_runs_postgres_milvus_standalone_and_three_gallery_replicas(compose) -> None:
    services = compose["services"]
    assert set(services) == {
        "postgres",
        "migrate",
        "etcd",
        "minio",
        "milvus",
        "detector",
        "embedder",
        "gallery",
        "gateway",
    }
    assert services["gallery"]["deploy"]["replicas"] == 3
    assert parse_cli(services["gallery"]["command"]).service == "gallery"
    # Milvus standalone runs on etcd and MinIO, and waits for them.
    milvus = services["milvus"]
    assert milvus["environment"]["ETCD_ENDPOINTS"] == "etcd:2379"
    assert milvus["environment"]["MINIO_ADDRESS"] == "minio:9000"
    assert set(milvus["depends_on"]) == {"etcd", "minio"}
    assert {"19530", "9091"} <= set(milvus["expose"])


def test_compose_replicas_share_the_store_and_the_index_by_settings(compose) -> None:
    services = compose["services"]
    gallery = services["gallery"]
    settings = gallery_settings(gallery["environment"])
    info = psycopg.conninfo.conninfo_to_dict(settings.store)
    postgres = services["postgres"]["environment"]
    assert (info["host"], int(info["port"]), info["user"], info["dbname"]) == (
        "postgres",
        5432,
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_DB"],
    )
    assert "password" not in info  # from the secret, never in the URL
    secret = "/run/secrets/postgres-password"
    assert settings.store_password_file == secret == postgres["POSTGRES_PASSWORD_FILE"]
    assert (
        "postgres-password" in gallery["secrets"] and "postgres-password" in services["postgres"]["secrets"]
    )
    milvus = settings.milvus()
    assert milvus is not None and milvus.uri == "http://milvus:19530"
    assert set(gallery["depends_on"]) == {"postgres", "milvus", "detector", "embedder"}
    assert all(d["condition"] == "service_healthy" for d in gallery["depends_on"].values())
    # No store volume: the replicas are stateless.
    assert gallery["volumes"] == ["weights:/opt/facerec"]


def test_every_service_of_the_facerec_image_listens_on_every_interface_of_its_container(compose, k8s) -> None:
    commands = {
        f"compose {name}": service["command"]
        for name, service in compose["services"].items()
        if service.get("image") == "facerec:latest" and "serve" in service["command"]
    }
    for (kind, name), doc in k8s.items():
        if kind in ("Deployment", "StatefulSet"):
            for c in doc["spec"]["template"]["spec"]["containers"]:
                if c["image"] == "facerec:latest":
                    commands[f"k8s {name}"] = c["args"]
    assert {"compose gallery", "compose detector", "compose embedder", "k8s gallery"} <= set(commands)
    for where, argv in commands.items():
        args = parse_cli(argv)
        assert args.command == "serve", where
        assert args.rest[args.rest.index("--host") + 1] == "0.0.0.0", where


def test_compose_publishes_one_host_port_per_gallery_replica(compose) -> None:
    (ports,) = compose["services"]["gallery"]["ports"]
    host, container = ports.split(":")
    first, last = (int(p) for p in host.split("-"))
    assert last - first + 1 == compose["services"]["gallery"]["deploy"]["replicas"]
    assert container == "50053"


@pytest.fixture(scope="module")
def k8s() -> dict[tuple[str, str], dict]:
    """The scale-out overlay as `kubectl kustomize` renders it."""
    return render("scale")


def test_k8s_gallery_is_a_deployment_of_replicas_behind_a_headless_service(k8s) -> None:
    assert {
        ("StatefulSet", "postgres"),
        ("Service", "postgres"),
        ("Deployment", "gallery"),
        ("Service", "gallery"),
    } <= set(k8s)
    assert ("StatefulSet", "gallery") not in k8s  # the one-machine gallery is the other overlay's
    deployment = k8s[("Deployment", "gallery")]["spec"]
    assert deployment["replicas"] >= 2
    assert k8s[("Service", "gallery")]["spec"]["clusterIP"] == "None"  # DNS returns every replica
    (c,) = deployment["template"]["spec"]["containers"]
    assert parse_cli(c["args"]).service == "gallery"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["grpc"] == {"port": 50053}


def test_k8s_replicas_find_postgres_through_its_service_with_the_password_from_a_secret(k8s) -> None:
    (c,) = k8s[("Deployment", "gallery")]["spec"]["template"]["spec"]["containers"]
    settings = gallery_settings({e["name"]: e["value"] for e in c["env"]})
    info = psycopg.conninfo.conninfo_to_dict(settings.store)
    service = k8s[("Service", "postgres")]["spec"]
    assert info["host"] == "postgres" and int(info["port"]) == service["ports"][0]["port"]
    (pg,) = k8s[("StatefulSet", "postgres")]["spec"]["template"]["spec"]["containers"]
    pg_env = {e["name"]: e["value"] for e in pg["env"]}
    assert (info["user"], info["dbname"]) == (pg_env["POSTGRES_USER"], pg_env["POSTGRES_DB"])
    mount = next(m for m in c["volumeMounts"] if m["name"] == "postgres-password")
    assert Path(settings.store_password_file).parent == Path(mount["mountPath"])
    volumes = k8s[("Deployment", "gallery")]["spec"]["template"]["spec"]["volumes"]
    pg_volumes = k8s[("StatefulSet", "postgres")]["spec"]["template"]["spec"]["volumes"]
    assert volumes[0]["secret"] == pg_volumes[0]["secret"] == {"secretName": "facerec-postgres"}
    milvus = settings.milvus()
    assert milvus is not None and milvus.uri == "http://milvus:19530"  # the Helm chart's Service


def test_compose_migrate_waits_for_postgres_to_be_healthy_and_runs_only_when_asked(compose) -> None:
    migrate = compose["services"]["migrate"]
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert migrate["profiles"] == ["migrate"] and migrate["restart"] == "no"
    args = parse_cli(migrate["command"])
    assert args.command == "migrate"
    info = psycopg.conninfo.conninfo_to_dict(args.dest)
    assert (info["host"], info["user"]) == ("postgres", "facerec") and "password" not in info
    assert (
        args.dest_password_file == "/run/secrets/postgres-password"
        and "postgres-password" in migrate["secrets"]
    )
    source = Path(args.source)
    assert any(v.endswith(f":{source.parent}") for v in migrate["volumes"])
    assert "healthcheck" in compose["services"]["postgres"]


def test_compose_has_a_gateway_in_front_of_the_gallery_replicas(compose) -> None:
    from gateway.config import Settings as GatewaySettings

    gateway = compose["services"]["gateway"]
    args = parse_cli(gateway["command"])
    assert (args.command, args.service) == ("serve", "gateway")
    settings = GatewaySettings.parse(args.rest, gateway["environment"])
    assert (settings.gallery, settings.detector) == ("dns:///gallery:50053", "dns:///detector:50051")
    assert gateway["ports"] == [f"{settings.port}:{settings.port}"]
    assert gateway["depends_on"] == {"gallery": {"condition": "service_healthy"}}
    probe = parse_cli(gateway["healthcheck"]["test"][2:])
    assert gateway["healthcheck"]["test"][:2] == ["CMD", "facerec"] and probe.command == "health"


def gibibytes(limit: str) -> float:
    """A memory limit as compose ("3G", "512M") or Kubernetes ("3Gi", "512Mi") writes it, in GiB."""
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)([GM])i?", limit).groups()  # type: ignore[union-attr]
    return float(number) / (1024 if unit == "M" else 1)


def test_compose_gives_every_service_a_memory_limit_and_the_facerec_ones_match_the_manifests(
    compose,
) -> None:
    limits = {name: s["deploy"]["resources"]["limits"]["memory"] for name, s in compose["services"].items()}
    assert set(limits) == set(compose["services"])
    manifests = {}
    for path in (ROOT / "deploy" / "k8s").rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc["kind"] in ("Deployment", "StatefulSet"):
                (c,) = doc["spec"]["template"]["spec"]["containers"]
                manifests[doc["metadata"]["name"]] = c["resources"]["limits"]["memory"]
    for name in ("detector", "embedder", "gallery", "gateway", "postgres"):
        assert gibibytes(limits[name]) == gibibytes(manifests[name]), name
    # The detector's limit is the bound its memory test holds it to (docs/limits.md).
    assert "| A detector replica in all | 3 GiB" in (ROOT / "docs" / "limits.md").read_text()
    assert gibibytes(limits["detector"]) == 3


def test_minio_credentials_come_from_the_environment_not_the_file(compose) -> None:
    text = (ROOT / "docker-compose.scale.yml").read_text()
    assert "minioadmin" not in text
    minio, milvus = compose["services"]["minio"]["environment"], compose["services"]["milvus"]["environment"]
    reference = re.compile(r"\$\{(FACEREC_MINIO_\w+):\?[^}]*\}")
    user, password = (reference.fullmatch(minio[k]) for k in ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"))
    assert user and password and user.group(1) != password.group(1)
    # Milvus logs in with the same two, by its own variable names.
    assert reference.fullmatch(milvus["MINIO_ACCESS_KEY_ID"]).group(1) == user.group(1)  # type: ignore[union-attr]
    assert reference.fullmatch(milvus["MINIO_SECRET_ACCESS_KEY"]).group(1) == password.group(1)  # type: ignore[union-attr]
