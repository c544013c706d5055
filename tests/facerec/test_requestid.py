"""The request id on real gRPC servers (port 0): taken from the caller or made, echoed in trailing
metadata (errors too), carried on to the next service by facerec.channels, and in every log line."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest

from facerec import errors, logs, requestid
from facerec.channels import open_channel
from facerec.remote import details_of, error_from_rpc
from facerec.server import Health, Service, build_server
from facerec.settings import ServerOptions
from facerec.v1 import common_pb2, detector_pb2, detector_pb2_grpc

log = logging.getLogger("tests.requestid")
FRESH = re.compile(r"[0-9a-f]{32}")


class Downstream(detector_pb2_grpc.DetectorServicer):
    """Logs a line and answers, or fails with InvalidInput when given no images."""

    def Detect(self, request, context):
        log.warning("downstream detecting %d images", len(request.images))
        if not request.images:
            raise errors.InvalidInput("The request has no images.")
        return detector_pb2.DetectResponse(results=[detector_pb2.ImageResult(width=1, height=1)])


class Upstream(detector_pb2_grpc.DetectorServicer):
    """Passes every call on to the downstream server through a facerec channel, as the gallery does."""

    def __init__(self, downstream: str) -> None:
        self.channel = open_channel(downstream, "facerec.v1.Detector")
        self.stub = detector_pb2_grpc.DetectorStub(self.channel)

    def Detect(self, request, context):
        log.warning("upstream passing on")
        try:
            return self.stub.Detect(request, timeout=10)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, "the downstream detector") from None


def serve(servicer: detector_pb2_grpc.DetectorServicer) -> tuple[grpc.Server, str]:
    health = Health(["facerec.v1.Detector"])
    service = Service(
        "facerec.v1.Detector", lambda s: detector_pb2_grpc.add_DetectorServicer_to_server(servicer, s)
    )
    server, port = build_server([service], ServerOptions(host="127.0.0.1", port=0, max_workers=2), health)
    server.start()
    return server, f"127.0.0.1:{port}"


@dataclass
class Chain:
    stub: detector_pb2_grpc.DetectorStub
    lines: io.StringIO


@pytest.fixture
def chain() -> Iterator[Chain]:
    """upstream → downstream, both real servers, and every log line they write (text format)."""
    lines = io.StringIO()
    handler = logs.handler("text", lines)
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    downstream, down_address = serve(Downstream())
    upstream_servicer = Upstream(down_address)
    upstream, up_address = serve(upstream_servicer)
    channel = grpc.insecure_channel(up_address)
    try:
        yield Chain(detector_pb2_grpc.DetectorStub(channel), lines)
    finally:
        channel.close()
        upstream.stop(0).wait()
        upstream_servicer.channel.close()
        downstream.stop(0).wait()
        root.removeHandler(handler)
        root.setLevel(level)


def trailer(call: grpc.Call) -> str | None:
    return requestid.from_metadata(call.trailing_metadata())


ONE_IMAGE = detector_pb2.DetectRequest(images=[common_pb2.Image(data=b"x")])


def test_a_callers_id_is_echoed_passed_on_and_in_every_log_line_of_both_servers(chain: Chain) -> None:
    _, call = chain.stub.Detect.with_call(ONE_IMAGE, metadata=[("x-request-id", "req-42.a:b_c")], timeout=10)
    assert trailer(call) == "req-42.a:b_c"
    lines = chain.lines.getvalue().splitlines()
    upstream = [line for line in lines if "upstream passing on" in line]
    downstream = [line for line in lines if "downstream detecting 1 images" in line]
    # One line per call at INFO, in each server, with the method and its status.
    finished = [line for line in lines if "/facerec.v1.Detector/Detect OK in" in line]
    assert len(upstream) == len(downstream) == 1 and len(finished) == 2
    for line in [*upstream, *downstream, *finished]:
        assert "[req-42.a:b_c]" in line, line


def test_an_error_keeps_both_its_details_and_the_id_in_its_trailers(chain: Chain) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        chain.stub.Detect(detector_pb2.DetectRequest(), metadata=[("x-request-id", "failing-1")], timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert trailer(caught.value) == "failing-1"
    assert details_of(caught.value)[1] == "INVALID_ARGUMENT"
    # The servers still answer.
    assert len(chain.stub.Detect(ONE_IMAGE, timeout=10).results) == 1


@pytest.mark.parametrize(
    "given",
    [None, "", "x" * 129, "has space", 'quote"', "{json}", "a/b"],
    ids=["missing", "empty", "too-long", "space", "quote", "braces", "slash"],
)
def test_a_missing_or_unfit_id_is_replaced_by_a_fresh_one_that_goes_downstream(chain: Chain, given) -> None:
    # (gRPC's client itself refuses newlines and non-ASCII in metadata; the gateway's test sends them.)
    metadata = [] if given is None else [("x-request-id", given)]
    _, call = chain.stub.Detect.with_call(ONE_IMAGE, metadata=metadata, timeout=10)
    made = trailer(call)
    assert made is not None and FRESH.fullmatch(made)
    downstream = [line for line in chain.lines.getvalue().splitlines() if "downstream detecting" in line]
    assert downstream == [line for line in downstream if f"[{made}]" in line] and len(downstream) == 1
    if given:
        assert given not in chain.lines.getvalue()


def test_the_longest_id_allowed_is_kept() -> None:
    assert requestid.accept("a" * 128) == "a" * 128
    assert requestid.accept("a" * 129) != "a" * 129
    assert requestid.accept("A-z.0_9:") == "A-z.0_9:"


def test_a_line_outside_any_request_says_so() -> None:
    lines = io.StringIO()
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "no request here", None, None)
    handler = logs.handler("text", lines)
    handler.handle(record)
    assert f"[{logs.NO_REQUEST}]: no request here" in lines.getvalue()


def test_json_lines_are_one_object_each_with_the_id_and_the_traceback() -> None:
    lines = io.StringIO()
    logger = logging.getLogger("tests.requestid.json")
    handler = logs.handler("json", lines)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with requestid.bound("json-7"):
            logger.warning("two\nlines %s", "here")
            try:
                raise RuntimeError("boom")
            except RuntimeError:
                logger.exception("it failed")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    first, second = [json.loads(line) for line in lines.getvalue().splitlines()]
    assert first["message"] == "two\nlines here"
    assert first["request_id"] == second["request_id"] == "json-7"
    assert first["level"] == "WARNING" and first["logger"] == "tests.requestid.json"
    assert "exception" not in first and first["time"].endswith("+00:00")
    assert second["level"] == "ERROR"
    assert "RuntimeError: boom" in second["exception"] and "Traceback" in second["exception"]


def test_an_unknown_log_format_is_refused() -> None:
    with pytest.raises(ValueError, match="json"):
        logs.handler("xml")


def test_the_log_format_is_a_setting_of_every_service_and_the_gateway() -> None:
    from detector_service.config import Settings as DetectorSettings
    from gateway.config import Settings as GatewaySettings

    assert DetectorSettings.parse(["--log-format", "json"], {}).log_format == "json"
    assert DetectorSettings.parse([], {}).log_format == "text"
    assert GatewaySettings.parse([], {"GATEWAY_LOG_FORMAT": "json"}).log_format == "json"
    for settings, environ in ((DetectorSettings, {"DETECTOR_LOG_FORMAT": "xml"}), (GatewaySettings, {})):
        with pytest.raises(SystemExit) as exited:
            settings.parse(["--log-format", "xml"] if not environ else [], environ)
        assert exited.value.code == 2
