"""build_server: health (NOT_SERVING until warmed), reflection, message-size limit, graceful SIGTERM."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from facerec.server import Health, Service, build_server
from facerec.settings import ServerOptions
from facerec.v1 import common_pb2, detector_pb2, detector_pb2_grpc


class Echo(detector_pb2_grpc.DetectorServicer):
    def Detect(self, request, context):
        return detector_pb2.DetectResponse(results=[detector_pb2.ImageResult() for _ in request.images])


@pytest.fixture()
def served():
    health = Health(["facerec.v1.Detector"])
    service = Service(
        "facerec.v1.Detector", lambda s: detector_pb2_grpc.add_DetectorServicer_to_server(Echo(), s)
    )
    server, port = build_server([service], ServerOptions(host="127.0.0.1", max_message_bytes=1024), health)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield health, channel
    channel.close()
    server.stop(0)


def status(channel, service: str = "") -> int:
    return (
        health_pb2_grpc.HealthStub(channel)
        .Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        .status
    )


def test_health_is_not_serving_until_set(served) -> None:
    health, channel = served
    assert status(channel) == health_pb2.HealthCheckResponse.NOT_SERVING
    health.set_serving()
    assert status(channel) == health_pb2.HealthCheckResponse.SERVING
    assert status(channel, "facerec.v1.Detector") == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_service(served) -> None:
    _, channel = served
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for reply in replies for s in reply.list_services_response.service}
    assert {"facerec.v1.Detector", "grpc.health.v1.Health"} <= names


def test_too_large_a_message_is_resource_exhausted_and_server_goes_on(served) -> None:
    _, channel = served
    stub = detector_pb2_grpc.DetectorStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.Detect(detector_pb2.DetectRequest(images=[{"data": b"x" * 4096}]), timeout=5)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert len(stub.Detect(detector_pb2.DetectRequest(images=[{"data": b"x"}]), timeout=5).results) == 1


def test_a_compressed_request_is_refused_before_it_is_inflated_and_the_server_goes_on(served) -> None:
    """A compressed request, large once inflated (a 1 KiB gzip bomb of 1 MiB) or small, is refused before
    it is inflated, so a call costs what it sends; the same call uncompressed is served."""
    _, channel = served
    stub = detector_pb2_grpc.DetectorStub(channel)
    bomb = detector_pb2.DetectRequest(images=[common_pb2.Image(data=bytes(1 << 20))])
    assert len(bomb.SerializeToString()) > 1024
    for request in (bomb, detector_pb2.DetectRequest(images=[common_pb2.Image(data=b"x")])):
        with pytest.raises(grpc.RpcError) as caught:
            stub.Detect(request, timeout=5, compression=grpc.Compression.Gzip)
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "gzip" in (caught.value.details() or "")
    reply = stub.Detect(detector_pb2.DetectRequest(images=[common_pb2.Image(data=b"x")]), timeout=5)
    assert len(reply.results) == 1


def test_check_port_free_names_a_port_something_listens_on() -> None:
    import socket

    from facerec.server import PortInUse, check_port_free

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(PortInUse, match=rf"^Port {port} is already in use on 127.0.0.1\.$"):
            check_port_free("127.0.0.1", port)
    check_port_free("127.0.0.1", port)  # closed again: free
    check_port_free("127.0.0.1", 0)  # any free port: nothing to check
