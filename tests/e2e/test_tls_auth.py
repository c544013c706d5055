"""TLS and tokens on real service processes: nobody gets in without them, and the gallery uses its own.

The fast test runs `python -m gallery` (mutual TLS, rw/ro tokens) against in-process fake detector
and embedder servers that themselves demand mutual TLS and a token, then the `facerec` CLI against
it. The model test does the same with the real detector and embedder processes.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from facerec import security
from facerec.channels import open_channel
from facerec.server import Health, Service, build_server
from facerec.settings import ServerOptions
from facerec.v1 import (
    common_pb2,
    detector_pb2,
    detector_pb2_grpc,
    embedding_pb2,
    embedding_pb2_grpc,
    gallery_pb2,
    gallery_pb2_grpc,
)
from tests.support.gallery import MODEL, FakeDetectorServicer, FakeEmbedderServicer, World, portrait
from tests.support.pki import Pki, make_pki
from tests.support.servers import Running, start_service

RW = "gallery-admin-token-0123456789"
RO = "gallery-reader-token-0123456789"
DOWNSTREAM = "gallery-to-inference-token-0123456789"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def mutual_tls(pki: Pki) -> grpc.ServerCredentials | None:
    return security.server_credentials(
        security.TlsSettings(str(pki.server_cert), str(pki.server_key), str(pki.ca))
    )


@pytest.fixture(scope="module")
def fake_inference(pki: Pki) -> Iterator[tuple[str, str]]:
    """Fake detector and embedder that require a client certificate of the test CA and DOWNSTREAM."""
    world = World()
    servers = []
    for name, add in (
        (
            "facerec.v1.Detector",
            lambda s: detector_pb2_grpc.add_DetectorServicer_to_server(FakeDetectorServicer(), s),
        ),
        (
            "facerec.v1.Embedder",
            lambda s: embedding_pb2_grpc.add_EmbedderServicer_to_server(FakeEmbedderServicer(world), s),
        ),
    ):
        health = Health([name])
        health.set_serving()
        server, port = build_server(
            [Service(name, add)],
            ServerOptions(host="127.0.0.1"),
            health,
            security.token_interceptor("", f"{DOWNSTREAM} ro"),
            mutual_tls(pki),
        )
        server.start()
        servers.append((server, port))
    yield tuple(f"127.0.0.1:{port}" for _, port in servers)
    for server, _ in servers:
        server.stop(0)


def secured_gallery(
    tmp_path: Path, pki: Pki, detector: str, embedder: str, timeout_s: float = 180
) -> Running:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{RW} rw\n{RO} ro\n")
    env = {
        "FACEREC_HOME": str(tmp_path),
        "GALLERY_TLS_CERT": str(pki.server_cert),
        "GALLERY_TLS_KEY": str(pki.server_key),
        "GALLERY_TLS_CLIENT_CA": str(pki.ca),
        "GALLERY_TOKENS_FILE": str(tokens),
        "GALLERY_DOWNSTREAM_TLS_CA": str(pki.ca),
        "GALLERY_DOWNSTREAM_TLS_CERT": str(pki.client_cert),
        "GALLERY_DOWNSTREAM_TLS_KEY": str(pki.client_key),
        "GALLERY_DOWNSTREAM_TOKEN": DOWNSTREAM,
    }
    args = ["--store", str(tmp_path / "g.sqlite"), "--detector", detector, "--embedder", embedder]
    return start_service("gallery", args, env=env, timeout_s=timeout_s)


def client_credentials(pki: Pki) -> grpc.ChannelCredentials | None:
    return security.channel_credentials(str(pki.ca), str(pki.client_cert), str(pki.client_key))


def code_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code()


def test_gallery_with_mutual_tls_and_tokens_to_clients_and_downstream(
    tmp_path: Path, pki: Pki, fake_inference: tuple[str, str]
) -> None:
    detector, embedder = fake_inference
    gallery = secured_gallery(tmp_path, pki, detector, embedder)
    try:
        target = gallery.address
        with grpc.insecure_channel(target) as plain:
            assert code_of(
                lambda: gallery_pb2_grpc.GalleryStub(plain).Stats(gallery_pb2.StatsRequest(), timeout=5)
            ) == (grpc.StatusCode.UNAVAILABLE)
        # TLS without a client certificate: refused in the handshake.
        with open_channel(target, credentials=security.channel_credentials(str(pki.ca))) as ch:
            assert code_of(
                lambda: gallery_pb2_grpc.GalleryStub(ch).Stats(gallery_pb2.StatsRequest(), timeout=5)
            ) == (grpc.StatusCode.UNAVAILABLE)
        with open_channel(target, credentials=client_credentials(pki)) as ch:
            probe = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            assert probe.status == health_pb2.HealthCheckResponse.SERVING
            stub = gallery_pb2_grpc.GalleryStub(ch)
            assert (
                code_of(lambda: stub.Stats(gallery_pb2.StatsRequest(), timeout=5))
                == grpc.StatusCode.UNAUTHENTICATED
            )
        with open_channel(target, credentials=client_credentials(pki), token=RO) as ch:
            stub = gallery_pb2_grpc.GalleryStub(ch)
            enroll = gallery_pb2.EnrollRequest(identity="alice", images=[common_pb2.Image(data=portrait(0))])
            assert code_of(lambda: stub.Enroll(enroll, timeout=10)) == grpc.StatusCode.PERMISSION_DENIED
            assert stub.Stats(gallery_pb2.StatsRequest(), timeout=5).faces == 0
        with open_channel(target, credentials=client_credentials(pki), token=RW) as ch:
            stub = gallery_pb2_grpc.GalleryStub(ch)
            # By picture: the gallery calls the fakes over mutual TLS with its own token.
            reply = stub.Enroll(enroll, timeout=20)
            assert reply.results[0].outcome == gallery_pb2.ENROLLED, reply
            assert stub.Stats(gallery_pb2.StatsRequest(), timeout=5).faces == 1
        cli = [sys.executable, "-m", "facerec_app.cli", "list", "--gallery", target, "--tls-ca", str(pki.ca)]
        # The CLI has no client certificate: this gallery (mutual TLS) refuses it; see the next test.
        refused = subprocess.run([*cli, "--token", RO], capture_output=True, text=True, timeout=60)
        assert refused.returncode != 0
    finally:
        assert gallery.stop() == 0


def test_cli_with_token_and_tls_ca(tmp_path: Path, pki: Pki, fake_inference: tuple[str, str]) -> None:
    detector, embedder = fake_inference
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{RW} rw\n{RO} ro\n")
    env = {
        "FACEREC_HOME": str(tmp_path),
        "GALLERY_TLS_CERT": str(pki.server_cert),
        "GALLERY_TLS_KEY": str(pki.server_key),
        "GALLERY_TOKENS_FILE": str(tokens),
    }
    args = [
        "--store",
        str(tmp_path / "g.sqlite"),
        "--detector",
        detector,
        "--embedder",
        embedder,
        "--model",
        MODEL,
    ]
    gallery = start_service("gallery", args, env=env, timeout_s=180)
    try:
        cli = [sys.executable, "-m", "facerec_app.cli", "list", "--json", "--gallery", gallery.address]
        with_ca = [*cli, "--tls-ca", str(pki.ca)]
        ok = subprocess.run([*with_ca, "--token", RO], capture_output=True, text=True, timeout=60)
        assert ok.returncode == 0, ok.stderr
        no_token = subprocess.run(with_ca, capture_output=True, text=True, timeout=60, env=_without_token())
        assert no_token.returncode != 0 and "token" in no_token.stderr
        from_env = subprocess.run(with_ca, capture_output=True, text=True, timeout=60, env=_without_token(RO))
        assert from_env.returncode == 0, from_env.stderr
        denied = subprocess.run(
            [sys.executable, "-m", "facerec_app.cli", "remove", "bob", "--gallery", gallery.address]
            + ["--tls-ca", str(pki.ca), "--token", RO],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert denied.returncode != 0 and "PERMISSION_DENIED" in denied.stderr
    finally:
        assert gallery.stop() == 0


def _without_token(token: str = "") -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if k != "FACEREC_TOKEN"}
    if token:
        env["FACEREC_TOKEN"] = token
    return env


@pytest.mark.model
def test_real_detector_and_embedder_with_mutual_tls_and_tokens(
    tmp_path: Path, pki: Pki, train_images
) -> None:
    """Both inference processes demand a client certificate and a token; the gallery brings both."""
    from facerec_app.supervisor import ServiceProcess

    inference_env = {}
    for prefix in ("DETECTOR_", "EMBEDDER_"):
        inference_env |= {
            prefix + "TLS_CERT": str(pki.server_cert),
            prefix + "TLS_KEY": str(pki.server_key),
            prefix + "TLS_CLIENT_CA": str(pki.ca),
            prefix + "TOKENS": f"{DOWNSTREAM} ro",
        }
    args = ["--host", "127.0.0.1", "--port", "0"]
    children = [
        ServiceProcess.start("detector_service", args, inference_env),
        ServiceProcess.start("embedding_service", args, inference_env),
    ]
    try:
        detector, embedder = (f"127.0.0.1:{child.wait_ready(240.0)}" for child in children)
        with grpc.insecure_channel(detector) as plain:
            probe = health_pb2_grpc.HealthStub(plain).Check
            assert (
                code_of(lambda: probe(health_pb2.HealthCheckRequest(), timeout=5))
                == grpc.StatusCode.UNAVAILABLE
            )
        with open_channel(embedder, credentials=client_credentials(pki)) as ch:
            info = embedding_pb2_grpc.EmbedderStub(ch).GetModelInfo
            assert code_of(lambda: info(embedding_pb2.GetModelInfoRequest(), timeout=10)) == (
                grpc.StatusCode.UNAUTHENTICATED
            )
        with open_channel(detector, credentials=client_credentials(pki)) as ch:
            detect = detector_pb2_grpc.DetectorStub(ch).Detect
            request = detector_pb2.DetectRequest(images=[common_pb2.Image(data=b"x")])
            assert code_of(lambda: detect(request, timeout=10)) == grpc.StatusCode.UNAUTHENTICATED
        identity, path = train_images[0]
        gallery = secured_gallery(tmp_path, pki, detector, embedder)
        try:
            with open_channel(gallery.address, credentials=client_credentials(pki), token=RW) as ch:
                stub = gallery_pb2_grpc.GalleryStub(ch)
                enroll = gallery_pb2.EnrollRequest(
                    identity=identity, images=[common_pb2.Image(data=path.read_bytes())]
                )
                reply = stub.Enroll(enroll, timeout=120)
                assert reply.results[0].outcome == gallery_pb2.ENROLLED, reply
                stats = stub.Stats(gallery_pb2.StatsRequest(), timeout=5)
                assert (stats.faces, stats.model) == (1, "facenet-keras-128-int8")
        finally:
            assert gallery.stop() == 0
    finally:
        for child in children:
            child.stop()
