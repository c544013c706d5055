"""Prometheus metrics for the services: per-RPC counts and latency, batch sizes, queue depth, gallery
size, the process, the build.

Each service keeps its metrics in its own CollectorRegistry (so several servers in one process, as in
the tests, never collide) and serves them over HTTP on its own port (`start_metrics_server`).

The RPC metrics have the names and labels of gRPC's Prometheus libraries (go-grpc-prometheus,
py-grpc-prometheus), so the dashboards and alerts written for those work unchanged:
  grpc_server_started_total{grpc_type,grpc_service,grpc_method}            RPCs started
  grpc_server_handled_total{grpc_type,grpc_service,grpc_method,grpc_code}  RPCs finished, by status code
  grpc_server_handling_seconds{grpc_type,grpc_service,grpc_method}         RPC latency (histogram)
    (unary calls: grpc_type is "unary". grpc_service/grpc_method name one the server hosts, or both
    are "unknown" for every other name a caller made up: labels stay bounded whatever is called)
The gateway's HTTP calls (every series also carries `service`):
  facerec_http_requests_total{route,code}  API calls finished, by route and the gRPC code they stand for
  facerec_http_request_seconds{route}      API call latency (histogram)
The rest (every series also carries `service` but the process's and the build's):
  facerec_batch_size                       items (images or face crops) per model call (histogram)
  facerec_queue_depth                      requests waiting in the batcher's queue
  facerec_gallery_faces, facerec_gallery_identities   enrolled faces and identities (gallery only)
  process_* python_info python_gc_*        prometheus_client's process, platform and GC collectors
  facerec_build_info{version,python}       always 1: which facerec and which Python run
"""

from __future__ import annotations

import logging
import math
import platform
import time
from collections.abc import Callable, Collection, Iterable
from importlib import metadata
from typing import Any, TypeVar

import grpc
from google.protobuf import descriptor_pool
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

log = logging.getLogger(__name__)

# Inference RPCs run from a few ms (a health check, one crop) to seconds (a batch of large pictures).
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# The one label of every method a server does not host: each made-up name would otherwise add series.
UNKNOWN_METHOD = "unknown"
# grpc_type of a unary call, as gRPC's Prometheus libraries name it.
UNARY = "unary"
_RPC_LABELS = ["grpc_type", "grpc_service", "grpc_method"]

T = TypeVar("T")
R = TypeVar("R")


class ServiceMetrics:
    """All of one service's metrics, in its own registry. Create one per server, in main()."""

    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.service = service
        self.registry = registry if registry is not None else CollectorRegistry()
        self._started = Counter(
            "grpc_server_started",
            "Total number of RPCs started on the server.",
            _RPC_LABELS,
            registry=self.registry,
        )
        self._handled = Counter(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            [*_RPC_LABELS, "grpc_code"],
            registry=self.registry,
        )
        self._handling = Histogram(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level handled "
            "by the server.",
            _RPC_LABELS,
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self._http_requests = Counter(
            "facerec_http_requests",
            "HTTP API calls finished, by route and the gRPC code their answer stands for.",
            ["service", "route", "code"],
            registry=self.registry,
        )
        self._http_latency = Histogram(
            "facerec_http_request_seconds",
            "HTTP API call latency in seconds, from the request's start to its answer's headers.",
            ["service", "route"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self._batch_size = Histogram(
            "facerec_batch_size",
            "Items (images or face crops) per model call.",
            ["service"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self._queue_depth = Gauge(
            "facerec_queue_depth",
            "Requests waiting in the batcher's queue.",
            ["service"],
            registry=self.registry,
        )
        self._gallery_watched = False
        _register_process_collectors(self.registry)
        Gauge(
            "facerec_build_info",
            "Always 1; its labels name the facerec version and the Python that run.",
            ["version", "python"],
            registry=self.registry,
        ).labels(facerec_version(), platform.python_version()).set(1)

    def interceptor(self, methods: Collection[str]) -> MetricsInterceptor:
        """The server interceptor that counts and times every unary call; pass it to build_server.
        methods: the server's own ("package.Service/Method", e.g. from hosted_methods)."""
        return MetricsInterceptor(self, methods)

    def start_call(self, method: str) -> None:
        """Counts a unary RPC started; method: "package.Service/Method" or UNKNOWN_METHOD."""
        self._started.labels(UNARY, *_split(method)).inc()

    def record_call(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        """Counts a unary RPC finished with `code` after `seconds`; method as in start_call."""
        service, name = _split(method)
        self._handled.labels(UNARY, service, name, code.name).inc()
        self._handling.labels(UNARY, service, name).observe(seconds)

    def record_http(self, route: str, code: grpc.StatusCode, seconds: float) -> None:
        """Counts an HTTP API call (route: "POST /v1/identify", a template, never a raw path)."""
        self._http_requests.labels(self.service, route, code.name).inc()
        self._http_latency.labels(self.service, route).observe(seconds)

    def observe_batch(self, items: int) -> None:
        """Records one model call on `items` items."""
        self._batch_size.labels(self.service).observe(items)

    def observed_batches(self, run_batch: Callable[[list[T]], list[R]]) -> Callable[[list[T]], list[R]]:
        """Wraps a Batcher's run_batch so that every model call records its size."""

        def run(items: list[T]) -> list[R]:
            self.observe_batch(len(items))
            return run_batch(items)

        return run

    def watch_queue(self, depth: Callable[[], int]) -> None:
        """Reads the queue depth from `depth` (e.g. Batcher.queue_depth) at every scrape."""
        self._queue_depth.labels(self.service).set_function(_safe(depth, "queue depth"))

    def watch_gallery(self, faces: Callable[[], int], identities: Callable[[], int]) -> None:
        """Reads the gallery's face and identity counts from the callbacks at every scrape (gallery only)."""
        if self._gallery_watched:
            raise ValueError("watch_gallery was already called for this registry.")
        self._gallery_watched = True
        Gauge("facerec_gallery_faces", "Faces enrolled in the gallery.", registry=self.registry).set_function(
            _safe(faces, "gallery faces")
        )
        Gauge(
            "facerec_gallery_identities", "Identities enrolled in the gallery.", registry=self.registry
        ).set_function(_safe(identities, "gallery identities"))


def _split(method: str) -> tuple[str, str]:
    service, _, name = method.rpartition("/")
    return (service, name) if service else (UNKNOWN_METHOD, UNKNOWN_METHOD)


def _register_process_collectors(registry: CollectorRegistry) -> None:
    """prometheus_client registers its process, platform and GC collectors only on its own default
    registry; a service's registry needs its own (they read the process when scraped)."""
    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        try:
            collector(registry=registry)
        except ValueError:  # "Duplicated timeseries": the registry has it already (the default one does)
            pass


def facerec_version() -> str:
    """The installed facerec distribution's version, or "unknown" when run from a bare checkout."""
    try:
        return metadata.version("facerec")
    except metadata.PackageNotFoundError:
        return "unknown"


def _safe(read: Callable[[], int], what: str) -> Callable[[], float]:
    # A callback that raises would fail the whole scrape; report NaN for that one series instead.
    def value() -> float:
        try:
            return float(read())
        except Exception:
            log.warning("could not read %s for metrics", what, exc_info=True)
            return math.nan

    return value


def hosted_methods(service_names: Iterable[str]) -> frozenset[str]:
    """Every method ("package.Service/Method") of the named services, from the protobuf descriptors
    their generated modules registered (import those first)."""
    pool = descriptor_pool.Default()
    return frozenset(
        f"{name}/{method.name}" for name in service_names for method in pool.FindServiceByName(name).methods
    )


class MetricsInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]  # generic only in grpc-stubs
    """Counts unary calls started and finished (by final status code), and times them. A method not in
    `methods` (the server's own) is counted as "unknown", so callers cannot add series by making names up.

    Install it OUTSIDE facerec.status.ErrorInterceptor (build_server puts its `interceptors` first,
    so outside): a FacerecError has then already become context.abort(code), and this sees that code
    on the context when the abort exception passes through.
    """

    def __init__(self, metrics: ServiceMetrics, methods: Collection[str]) -> None:
        self._metrics = metrics
        self._methods = frozenset(methods)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        # Streaming calls (health Watch, reflection) are long-lived; their duration says nothing.
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method.lstrip("/")
        if method not in self._methods:
            method = UNKNOWN_METHOD
        inner = handler.unary_unary
        metrics = self._metrics

        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            metrics.start_call(method)
            start = time.perf_counter()
            try:
                response = inner(request, context)
            except BaseException:
                # context.abort() raises after setting the code; any other escape is UNKNOWN to grpc.
                metrics.record_call(
                    method, _code(context, grpc.StatusCode.UNKNOWN), time.perf_counter() - start
                )
                raise
            metrics.record_call(method, _code(context, grpc.StatusCode.OK), time.perf_counter() - start)
            return response

        return grpc.unary_unary_rpc_method_handler(
            handle,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _code(context: grpc.ServicerContext, default: grpc.StatusCode) -> grpc.StatusCode:
    code = context.code()  # type: ignore[attr-defined]  # grpc >= 1.38 has it; grpc-stubs not
    if isinstance(code, grpc.StatusCode):
        return code
    return default


def start_metrics_server(port: int, registry: CollectorRegistry, host: str = "0.0.0.0") -> int:
    """Serves `registry` at http://host:port/metrics on a daemon thread. port 0 = any free port.

    host may be written as for gRPC ("[::]"). Returns the bound port.
    """
    httpd, _thread = start_http_server(port, addr=host.strip("[]"), registry=registry)
    bound = int(httpd.server_port)
    log.info("metrics on %s:%s", host, bound)
    return bound
