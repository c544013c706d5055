"""One request id through the real stack: gateway → gallery → detector and embedder processes, with the
real models. The caller's id comes back in the HTTP header and is in the logs of all four services; a
gRPC caller's id comes back in the trailing metadata."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from facerec import requestid
from facerec.v1 import gallery_pb2, gallery_pb2_grpc
from facerec_app.supervisor import Addresses, ServiceProcess, local_services
from tests.support.servers import start_service

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def stack(fetched_assets) -> Iterator[tuple[Addresses, ServiceProcess]]:
    """The three services and a gateway, each logging every call (-v); the gallery in JSON."""
    extra = {"detector": ["-v"], "embedder": ["-v"], "gallery": ["-v", "--log-format", "json"]}
    with local_services(extra=extra) as services:
        gateway = start_service(
            "gateway",
            [
                *("--gallery", services.gallery, "--detector", services.detector),
                *("--embedder", services.embedder, "-v"),
            ],
        )
        try:
            yield services, gateway
        finally:
            gateway.stop()


def lines_with(process: ServiceProcess, text: str) -> list[str]:
    return [line for line in list(process.output) if text in line]


def test_one_identify_leaves_its_id_in_the_logs_of_all_four_services(
    stack: tuple[Addresses, ServiceProcess], val_images: list[tuple[str, Path]]
) -> None:
    services, gateway = stack
    chosen = "identify-trace:0042"
    _, picture = val_images[0]
    with httpx.Client(base_url=f"http://{gateway.address}", timeout=120) as http:
        answer = http.post(
            "/v1/identify",
            files={"image": (picture.name, picture.read_bytes())},
            headers={"X-Request-Id": chosen},
        )
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["faces"]) >= 1
    assert answer.headers["X-Request-Id"] == chosen

    by_name = {p.name: p for p in services.processes}
    # The services log each call once at INFO (-v): its method and status, with the id.
    detector = lines_with(by_name["detector"], chosen)
    assert any("/facerec.v1.Detector/Detect OK" in line for line in detector), detector
    embedder = lines_with(by_name["embedder"], chosen)
    assert any("/facerec.v1.Embedder/Embed OK" in line for line in embedder), embedder
    gallery = [json.loads(line) for line in lines_with(by_name["gallery"], chosen)]
    assert any(
        entry["request_id"] == chosen and "/facerec.v1.Gallery/Identify OK" in entry["message"]
        for entry in gallery
    ), gallery
    # The gateway's access line (uvicorn, -v).
    assert any("/v1/identify" in line for line in lines_with(gateway, chosen)), list(gateway.output)[-5:]


def test_a_grpc_callers_id_comes_back_in_the_trailing_metadata(
    stack: tuple[Addresses, ServiceProcess],
) -> None:
    services, _ = stack
    with grpc.insecure_channel(services.gallery) as channel:
        stub = gallery_pb2_grpc.GalleryStub(channel)
        _, call = stub.Stats.with_call(
            gallery_pb2.StatsRequest(), metadata=[("x-request-id", "grpc-caller-7")], timeout=30
        )
        assert requestid.from_metadata(call.trailing_metadata()) == "grpc-caller-7"
        # An error's trailers keep the id beside its details.
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetIdentity(
                gallery_pb2.GetIdentityRequest(identity="nobody-here"),
                metadata=[("x-request-id", "grpc-caller-8")],
                timeout=30,
            )
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert requestid.from_metadata(caught.value.trailing_metadata()) == "grpc-caller-8"
