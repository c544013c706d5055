"""Metrics: a real gRPC server with MetricsInterceptor outside ErrorInterceptor, scraped over HTTP."""

from __future__ import annotations

import math
import platform
import urllib.request
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from facerec import errors
from facerec.batching import Batcher
from facerec.metrics import (
    UNKNOWN_METHOD,
    MetricsInterceptor,
    ServiceMetrics,
    facerec_version,
    hosted_methods,
    start_metrics_server,
)
from facerec.security import token_interceptor
from facerec.server import Health, Service, build_server
from facerec.settings import ServerOptions
from facerec.v1 import common_pb2, detector_pb2, detector_pb2_grpc

DETECT = "facerec.v1.Detector/Detect"
DETECT_LABELS = {"grpc_type": "unary", "grpc_service": "facerec.v1.Detector", "grpc_method": "Detect"}


class FakeDetector(detector_pb2_grpc.DetectorServicer):
    """No images: InvalidInput (as the contract says); an image b"boom": a bug; otherwise OK."""

    def Detect(self, request, context):
        if not request.images:
            raise errors.InvalidInput("The request has no images.")
        if request.images[0].data == b"boom":
            raise RuntimeError("a bug in the servicer")
        return detector_pb2.DetectResponse(results=[detector_pb2.ImageResult(width=1, height=1)])


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} from http://127.0.0.1:port/metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def served() -> Iterator[tuple[grpc.Channel, int]]:
    """A fake detector on port 0 with MetricsInterceptor, and its metrics port."""
    metrics = ServiceMetrics("detector", CollectorRegistry())
    health = Health(["facerec.v1.Detector"])
    service = Service(
        "facerec.v1.Detector", lambda s: detector_pb2_grpc.add_DetectorServicer_to_server(FakeDetector(), s)
    )
    server, port = build_server(
        [service],
        ServerOptions(host="127.0.0.1", port=0, max_workers=4),
        health,
        interceptors=[
            MetricsInterceptor(metrics, hosted_methods(["facerec.v1.Detector", "grpc.health.v1.Health"]))
        ],
    )
    server.start()
    health.set_serving()
    metrics_port = start_metrics_server(0, metrics.registry, host="127.0.0.1")
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel, metrics_port
    finally:
        channel.close()
        server.stop(0).wait()


def test_counts_calls_by_final_status_code(served) -> None:
    channel, metrics_port = served
    stub = detector_pb2_grpc.DetectorStub(channel)
    one_image = detector_pb2.DetectRequest(images=[common_pb2.Image(data=b"x")])
    for _ in range(3):
        assert len(stub.Detect(one_image, timeout=5).results) == 1
    for _ in range(2):
        with pytest.raises(grpc.RpcError) as caught:
            stub.Detect(detector_pb2.DetectRequest(), timeout=5)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as caught:
        stub.Detect(detector_pb2.DetectRequest(images=[common_pb2.Image(data=b"boom")]), timeout=5)
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    # The server still answers after the errors.
    assert len(stub.Detect(one_image, timeout=5).results) == 1

    samples = scrape(metrics_port)
    total = "grpc_server_handled_total"
    assert value(samples, total, **DETECT_LABELS, grpc_code="OK") == 4
    assert value(samples, total, **DETECT_LABELS, grpc_code="INVALID_ARGUMENT") == 2
    assert value(samples, total, **DETECT_LABELS, grpc_code="INTERNAL") == 1
    assert value(samples, total, **DETECT_LABELS, grpc_code="UNKNOWN") == 0
    assert value(samples, "grpc_server_started_total", **DETECT_LABELS) == 7
    assert value(samples, "grpc_server_handling_seconds_count", **DETECT_LABELS) == 7
    assert value(samples, "grpc_server_handling_seconds_bucket", **DETECT_LABELS, le="+Inf") == 7
    assert value(samples, "grpc_server_handling_seconds_sum", **DETECT_LABELS) > 0


def test_health_checks_are_counted_under_their_own_method(served) -> None:
    channel, metrics_port = served
    health_stub = health_pb2_grpc.HealthStub(channel)
    reply = health_stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as caught:
        health_stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND

    samples = scrape(metrics_port)
    check = {"grpc_type": "unary", "grpc_service": "grpc.health.v1.Health", "grpc_method": "Check"}
    assert value(samples, "grpc_server_handled_total", **check, grpc_code="OK") == 1
    assert value(samples, "grpc_server_handled_total", **check, grpc_code="NOT_FOUND") == 1


def test_batch_sizes_and_queue_depth_show_in_the_scrape() -> None:
    metrics = ServiceMetrics("embedder", CollectorRegistry())
    batcher: Batcher[int, int] = Batcher(
        metrics.observed_batches(lambda items: [i * 2 for i in items]), max_batch=8, max_delay_ms=1.0
    )
    try:
        assert batcher.submit([1, 2, 3], timeout_s=5) == [2, 4, 6]
        assert batcher.submit([4], timeout_s=5) == [8]
        metrics.watch_queue(lambda: 5)
        port = start_metrics_server(0, metrics.registry, host="127.0.0.1")
        samples = scrape(port)
    finally:
        batcher.close()
    assert value(samples, "facerec_batch_size_count", service="embedder") == 2
    assert value(samples, "facerec_batch_size_sum", service="embedder") == 4
    assert value(samples, "facerec_batch_size_bucket", service="embedder", le="1.0") == 1
    assert value(samples, "facerec_batch_size_bucket", service="embedder", le="4.0") == 2
    assert value(samples, "facerec_queue_depth", service="embedder") == 5


def test_gallery_gauges_read_callbacks_and_a_failing_one_does_not_break_the_scrape() -> None:
    metrics = ServiceMetrics("gallery", CollectorRegistry())
    counts = {"faces": 12}

    def identities() -> int:
        raise RuntimeError("store closed")

    metrics.watch_gallery(lambda: counts["faces"], identities)
    port = start_metrics_server(0, metrics.registry, host="127.0.0.1")
    assert value(scrape(port), "facerec_gallery_faces") == 12
    counts["faces"] = 13
    samples = scrape(port)
    assert value(samples, "facerec_gallery_faces") == 13
    assert math.isnan(value(samples, "facerec_gallery_identities"))
    with pytest.raises(ValueError):
        metrics.watch_gallery(lambda: 0, lambda: 0)


def test_each_service_has_its_own_registry() -> None:
    a = ServiceMetrics("detector", CollectorRegistry())
    b = ServiceMetrics("detector", CollectorRegistry())
    a.observe_batch(3)
    assert a.registry.get_sample_value("facerec_batch_size_count", {"service": "detector"}) == 1
    assert b.registry.get_sample_value("facerec_batch_size_count", {"service": "detector"}) is None


def test_made_up_method_names_share_one_label_whatever_their_number() -> None:
    """With tokens on, the token check answers any method name (UNAUTHENTICATED) inside the metrics
    interceptor: each made-up name once added its own series, without bound."""
    metrics = ServiceMetrics("detector", CollectorRegistry())
    health = Health(["facerec.v1.Detector"])
    service = Service(
        "facerec.v1.Detector", lambda s: detector_pb2_grpc.add_DetectorServicer_to_server(FakeDetector(), s)
    )
    methods = hosted_methods(["facerec.v1.Detector", "grpc.health.v1.Health"])
    server, port = build_server(
        [service],
        ServerOptions(host="127.0.0.1", port=0, max_workers=4),
        health,
        interceptors=[
            MetricsInterceptor(metrics, methods),
            *token_interceptor("", "0123456789abcdef-token rw"),
        ],
    )
    server.start()
    metrics_port = start_metrics_server(0, metrics.registry, host="127.0.0.1")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            for i in range(300):
                with pytest.raises(grpc.RpcError) as caught:
                    channel.unary_unary(f"/made.Up{i}/Method{i}")(b"", timeout=5)
                assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.RpcError) as caught:
                detector_pb2_grpc.DetectorStub(channel).Detect(detector_pb2.DetectRequest(), timeout=5)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        samples = scrape(metrics_port)
    finally:
        server.stop(0).wait()
    labelled = {
        f"{dict(labels)['grpc_service']}/{dict(labels)['grpc_method']}"
        for (_name, labels) in samples
        if "grpc_method" in dict(labels)
    }
    assert labelled == {f"{UNKNOWN_METHOD}/{UNKNOWN_METHOD}", DETECT}
    total = "grpc_server_handled_total"
    unknown = {"grpc_type": "unary", "grpc_service": UNKNOWN_METHOD, "grpc_method": UNKNOWN_METHOD}
    assert value(samples, total, **unknown, grpc_code="UNAUTHENTICATED") == 300
    assert value(samples, total, **DETECT_LABELS, grpc_code="UNAUTHENTICATED") == 1


def test_hosted_methods_are_read_from_the_service_descriptors() -> None:
    assert hosted_methods(["facerec.v1.Detector", "grpc.health.v1.Health"]) == {
        DETECT,
        "grpc.health.v1.Health/Check",
        "grpc.health.v1.Health/List",
        "grpc.health.v1.Health/Watch",
    }


def test_the_scrape_has_the_process_and_the_build() -> None:
    """Each service's own registry: prometheus_client puts its process collectors only on its default one."""
    metrics = ServiceMetrics("gallery", CollectorRegistry())
    port = start_metrics_server(0, metrics.registry, host="127.0.0.1")
    samples = scrape(port)
    assert value(samples, "process_resident_memory_bytes") > 0
    assert value(samples, "process_cpu_seconds_total") > 0
    assert any(name == "python_info" for name, _ in samples)
    (build,) = [dict(labels) for name, labels in samples if name == "facerec_build_info"]
    assert build["python"] == platform.python_version()
    assert build["version"] == facerec_version() != ""
    assert value(samples, "facerec_build_info", **build) == 1


def test_a_registry_that_has_the_process_collectors_already_keeps_them() -> None:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    metrics = ServiceMetrics("detector", registry)
    assert metrics.registry.get_sample_value("process_resident_memory_bytes") is not None
