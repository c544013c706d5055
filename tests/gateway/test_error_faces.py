"""The same failures through both faces: a real gallery (fake detector and embedder behind it, on real gRPC
servers) called over gRPC and through a real gateway process, answer the same code, sentence, reason and
google.rpc details (ErrorInfo, BadRequest field violations, RetryInfo)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format
from grpc_status import rpc_status

from facerec.server import Health, Service
from facerec.server import build_server as build_grpc_server
from facerec.settings import ServerOptions
from facerec.v1 import common_pb2, detector_pb2_grpc, embedding_pb2_grpc, gallery_pb2, gallery_pb2_grpc
from gallery.backend import open_gallery
from gallery.clients import DetectorClient, EmbedderClient
from gallery.config import Settings
from gallery.service import SERVICE_NAME, build_server
from gateway.errors import HTTP_STATUS
from tests.support.gallery import MODEL, FakeDetectorServicer, FakeEmbedderServicer, World, picture, portrait
from tests.support.servers import dead_address, start_service


def serve(name: str, add: Any) -> tuple[grpc.Server, int]:
    server, port = build_grpc_server([Service(name, add)], ServerOptions(host="127.0.0.1"), Health([name]))
    server.start()
    return server, port


@pytest.fixture(scope="module")
def world() -> World:
    return World(people=2, train=2, val=1)


@dataclass(frozen=True)
class Stack:
    """A gallery on a real gRPC server and a gateway process in front of it."""

    stub: gallery_pb2_grpc.GalleryStub
    http: httpx.Client


@contextmanager
def stack(store: Path, detector: str, embedder: str) -> Iterator[Stack]:
    settings = Settings(store=store, calibration_path=store.with_suffix(".json"), host="127.0.0.1", port=0)
    gallery = open_gallery(
        settings.store, MODEL, DetectorClient(detector, timeout_s=10), EmbedderClient(embedder, timeout_s=10)
    )
    health = Health([SERVICE_NAME])
    server, port = build_server(settings, gallery, health)
    server.start()
    health.set_serving()
    gateway = start_service("gateway", ["--gallery", f"127.0.0.1:{port}", "--detector", detector])
    try:
        with (
            grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
            httpx.Client(base_url=f"http://{gateway.address}", timeout=30) as http,
        ):
            yield Stack(gallery_pb2_grpc.GalleryStub(channel), http)
    finally:
        gateway.stop()
        server.stop(0)
        gallery.close()


@pytest.fixture(scope="module")
def stacks(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Stack]]:
    """A gallery with a working detector and embedder, and one whose detector is down."""
    folder = tmp_path_factory.mktemp("faces")
    detector, dport = serve(
        "facerec.v1.Detector",
        lambda s: detector_pb2_grpc.add_DetectorServicer_to_server(FakeDetectorServicer(), s),
    )
    embedder, eport = serve(
        "facerec.v1.Embedder",
        lambda s: embedding_pb2_grpc.add_EmbedderServicer_to_server(FakeEmbedderServicer(world), s),
    )
    try:
        with (
            dead_address() as dead,
            stack(folder / "a.sqlite", f"127.0.0.1:{dport}", f"127.0.0.1:{eport}") as working,
            stack(folder / "b.sqlite", dead, f"127.0.0.1:{eport}") as detectorless,
        ):
            yield working, detectorless
    finally:
        detector.stop(0)
        embedder.stop(0)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass(frozen=True)
class Case:
    """One failure, asked of both faces: the gRPC method and request, the HTTP method, path and JSON."""

    name: str
    method: str
    request: Any
    http: tuple[str, str, dict[str, Any] | None]
    detectorless: bool = False


def cases(world: World) -> list[Case]:
    vector = [float(v) for v in world.vectors[0]]
    face, other = portrait(world.train["person-0"][0]), portrait(world.train["person-1"][0])
    return [
        Case(
            "unknown operating point",
            "Identify",
            gallery_pb2.IdentifyRequest(
                embedding=common_pb2.Embedding(values=vector), operating_point="far_0"
            ),
            ("POST", "/v1/identify", {"embedding": vector, "operating_point": "far_0"}),
        ),
        Case(
            "a threshold and a point",
            "Identify",
            gallery_pb2.IdentifyRequest(
                embedding=common_pb2.Embedding(values=vector), threshold=1.0, operating_point="far_1e-3"
            ),
            ("POST", "/v1/identify", {"embedding": vector, "threshold": 1.0, "operating_point": "far_1e-3"}),
        ),
        Case(
            "an embedding of the wrong length",
            "Search",
            gallery_pb2.SearchRequest(embedding=common_pb2.Embedding(values=vector[:10])),
            ("POST", "/v1/search", {"embedding": vector[:10]}),
        ),
        Case(
            "no face on image_b",
            "Verify",
            gallery_pb2.VerifyRequest(
                image_a=common_pb2.Image(data=face), image_b=common_pb2.Image(data=picture())
            ),
            ("POST", "/v1/verify", {"image_a": b64(face), "image_b": b64(picture())}),
        ),
        Case(
            "an undecodable image_a",
            "Verify",
            gallery_pb2.VerifyRequest(
                image_a=common_pb2.Image(data=b"not a picture"), image_b=common_pb2.Image(data=other)
            ),
            ("POST", "/v1/verify", {"image_a": b64(b"not a picture"), "image_b": b64(other)}),
        ),
        Case(
            "an unknown identity",
            "GetIdentity",
            gallery_pb2.GetIdentityRequest(identity="nobody"),
            ("GET", "/v1/identities/nobody", None),
        ),
        Case("train with no identities", "Train", gallery_pb2.TrainRequest(), ("POST", "/v1/train", None)),
        Case(
            "the detector is down",
            "Identify",
            gallery_pb2.IdentifyRequest(image=common_pb2.Image(data=face)),
            ("POST", "/v1/identify", {"image": b64(face)}),
            detectorless=True,
        ),
    ]


def grpc_face(stub: gallery_pb2_grpc.GalleryStub, case: Case) -> dict[str, Any]:
    with pytest.raises(grpc.RpcError) as failed:
        getattr(stub, case.method)(case.request, timeout=20)
    status = rpc_status.from_call(failed.value)  # type: ignore[arg-type]
    assert status is not None, "a facerec server sends its details"
    details = [json_format.MessageToDict(d, preserving_proto_field_name=True) for d in status.details]
    return {"code": failed.value.code().name, "message": failed.value.details(), "details": details}


@pytest.mark.parametrize("index", range(8))
def test_the_http_body_and_the_grpc_status_of_a_failure_agree(
    stacks: tuple[Stack, Stack], world: World, index: int
) -> None:
    case = cases(world)[index]
    stack_ = stacks[1] if case.detectorless else stacks[0]
    sent = grpc_face(stack_.stub, case)
    method, path, body = case.http
    answer = stack_.http.request(method, path, json=body, headers={"x-request-id": f"case-{index}"})
    reply = answer.json()
    info = sent["details"][0]
    assert info["@type"] == "type.googleapis.com/google.rpc.ErrorInfo" and info["domain"] == "facerec"
    assert reply == {**sent, "reason": info["reason"], "request_id": f"case-{index}"}, case.name
    assert answer.status_code in (HTTP_STATUS[grpc.StatusCode[sent["code"]]], 413), case.name
    retry = [d for d in sent["details"] if d["@type"].endswith("RetryInfo")]
    assert ("retry-after" in answer.headers) == bool(retry), case.name


def test_the_failures_cover_field_violations_reasons_and_retry_info(
    stacks: tuple[Stack, Stack], world: World
) -> None:
    """What the cases above compare is there to compare: fields named, finer reasons, a retry delay."""
    seen = [grpc_face((stacks[1] if c.detectorless else stacks[0]).stub, c) for c in cases(world)]
    fields = {v["field"] for s in seen for d in s["details"] for v in d.get("field_violations", [])}
    assert fields == {"operating_point", "embedding.values", "image_a", "image_b"}
    assert {s["details"][0]["reason"] for s in seen} >= {
        "NO_FACE",
        "NOT_FOUND",
        "FAILED_PRECONDITION",
        "UNAVAILABLE",
    }
    assert any(d.get("retry_delay") == "1s" for s in seen for d in s["details"])
