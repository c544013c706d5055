"""Every facerec error has a status; the interceptor sends it with the one-sentence message, never a traceback."""

from __future__ import annotations

import ast
from pathlib import Path

import grpc
import pytest

from facerec import errors
from facerec.remote import error_from_rpc, error_of_item
from facerec.server import Health, Service, build_server
from facerec.settings import ServerOptions
from facerec.status import STATUS, error_proto, rich_status, status_of
from facerec.v1 import detector_pb2, detector_pb2_grpc


def all_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | all_subclasses(sub)
    return found


def test_every_error_class_has_a_status_and_a_reason() -> None:
    assert set(STATUS) == all_subclasses(errors.FacerecError)
    for cls in all_subclasses(errors.FacerecError):
        if cls is not errors.Internal:
            assert status_of(cls("x")) != grpc.StatusCode.INTERNAL, f"{cls.__name__} has no status"
        assert cls.reasons and all(isinstance(r, errors.Reason) for r in cls.reasons), cls
        assert cls("x").reason == cls.reasons[0]
    # A reason names one class: the client side reads the class back from it; and every reason has one.
    reasons = [r for cls in STATUS for r in cls.reasons]
    assert len(reasons) == len(set(reasons)) and set(reasons) == set(errors.Reason)


def failed_as_sent(exc: errors.FacerecError) -> grpc.aio.AioRpcError:
    """The failed call a client sees when a facerec server fails with exc."""
    status = rich_status(exc)
    return grpc.aio.AioRpcError(
        status.code, grpc.aio.Metadata(), grpc.aio.Metadata(*status.trailing_metadata), status.details
    )


def test_a_field_at_fault_travels_as_a_bad_request_violation_and_is_read_back() -> None:
    back = error_from_rpc(failed_as_sent(errors.InvalidInput("Bad threshold.", field="threshold")), "g")
    assert isinstance(back, errors.InvalidInput) and back.field == "threshold"
    assert error_from_rpc(failed_as_sent(errors.NotFound("No identity 'x'.")), "g").field == ""


def test_overloaded_is_busy_and_too_large_is_its_own_class() -> None:
    assert errors.Busy is errors.Overloaded and errors.Overloaded("x").reason == "BUSY"
    assert not issubclass(errors.TooLarge, errors.Overloaded)


def test_error_proto_carries_code_number_and_message() -> None:
    proto = error_proto(errors.InvalidInput("The image is empty."))
    assert proto.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] == 3
    assert proto.message == "The image is empty."
    assert proto.reason == "INVALID_ARGUMENT"
    big = error_of_item(
        error_proto(errors.TooLarge("Too big.", reason=errors.Reason.IMAGE_TOO_LARGE), "images[3]")
    )
    assert isinstance(big, errors.TooLarge) and big.reason == "IMAGE_TOO_LARGE" and big.field == "images[3]"


class Raising(detector_pb2_grpc.DetectorServicer):
    """Raises what the first image's bytes name, to exercise the mapping through a real server."""

    def Detect(self, request, context):
        what = request.images[0].data.decode()
        if what == "missing":
            raise errors.NotFound("No identity named bob.")
        if what == "bug":
            raise KeyError("secret internal detail")
        return detector_pb2.DetectResponse(results=[detector_pb2.ImageResult(width=1, height=1)])


@pytest.fixture()
def stub():
    health = Health(["facerec.v1.Detector"])
    service = Service(
        "facerec.v1.Detector", lambda s: detector_pb2_grpc.add_DetectorServicer_to_server(Raising(), s)
    )
    server, port = build_server([service], ServerOptions(host="127.0.0.1"), health)
    server.start()
    health.set_serving()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield detector_pb2_grpc.DetectorStub(channel)
    server.stop(0)


def call(stub, what: str):
    return stub.Detect(detector_pb2.DetectRequest(images=[{"data": what.encode()}]), timeout=5)


def test_mapped_error_reaches_the_client_and_server_keeps_answering(stub) -> None:
    with pytest.raises(grpc.RpcError) as info:
        call(stub, "missing")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == "No identity named bob."
    # The reason travels in the status's details, and the client side reads the class back from it.
    back = error_from_rpc(info.value, "the detector")
    assert isinstance(back, errors.NotFound) and back.reason == "NOT_FOUND"
    assert str(back) == "No identity named bob."
    assert call(stub, "ok").results[0].width == 1


def test_unexpected_error_is_internal_without_details(stub) -> None:
    with pytest.raises(grpc.RpcError) as info:
        call(stub, "bug")
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in info.value.details()
    assert "Traceback" not in info.value.details()
    assert call(stub, "ok").results[0].width == 1


def test_garbage_request_bytes_get_invalid_argument_and_server_goes_on() -> None:
    health = Health(["facerec.v1.Detector"])
    service = Service(
        "facerec.v1.Detector", lambda s: detector_pb2_grpc.add_DetectorServicer_to_server(Raising(), s)
    )
    server, port = build_server([service], ServerOptions(host="127.0.0.1"), health)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            raw = channel.unary_unary("/facerec.v1.Detector/Detect")  # bytes in, bytes out
            with pytest.raises(grpc.RpcError) as info:
                raw(b"\xff\xff\xff\xff not a protobuf", timeout=5)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert info.value.details() == "The request is not a valid Detect request message."
            assert call(detector_pb2_grpc.DetectorStub(channel), "ok").results[0].width == 1
    finally:
        server.stop(0)


def test_every_reason_a_raiser_names_is_one_of_its_class_so_clients_read_the_class_back() -> None:
    """A reason of another class (InvalidInput(..., reason=BUSY)) would reach a client as that other
    class; every `Class(..., reason=Reason.X)` in the services' code is checked here."""
    root = Path(__file__).resolve().parents[2]
    classes = {cls.__name__: cls for cls in STATUS} | {"Busy": errors.Busy}
    wrong, seen = [], 0
    for package in ("facerec", "detector_service", "embedding_service", "gallery", "gateway", "facerec_app"):
        for path in (root / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Call):
                    continue
                name = (
                    node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                )
                for keyword in node.keywords:
                    value = keyword.value
                    named = isinstance(value, ast.Attribute) and ast.unparse(value.value).endswith("Reason")
                    if keyword.arg == "reason" and name in classes and named:
                        seen += 1
                        if errors.Reason[value.attr] not in classes[name].reasons:
                            wrong.append(f"{path.relative_to(root)}:{node.lineno} {name} {value.attr}")
    assert seen >= 6 and not wrong
