"""How every service starts, in one order: settings → logging → security → metrics → build →
health → server → warm up → SERVING → announce → serve until a signal → close.

A service's `__main__` parses its Settings and calls run_service with a function that loads its
model (or opens its store) and returns a Hosting: how to serve it, warm it up, watch it and close it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import grpc
from grpc_health.v1.health import SERVICE_NAME as HEALTH_SERVICE_NAME

from facerec import logs, security
from facerec.errors import FacerecError
from facerec.metrics import ServiceMetrics, hosted_methods, start_metrics_server
from facerec.server import Health, PortInUse, announce, check_port_free, serve_until_signalled
from facerec.settings import ServerSettings

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # grpc's interceptor is generic only in grpc-stubs, not at run time
    BuildServer = Callable[
        [Health, Sequence[grpc.ServerInterceptor[Any, Any]], grpc.ServerCredentials | None],
        tuple[grpc.Server, int],
    ]


def _nothing() -> None:
    return None


def _watch_nothing(metrics: ServiceMetrics) -> None:
    return None


@dataclass(frozen=True)
class Hosting:
    """What run_service needs of a built service.

    build_server: a bound, not started server for it (given health, interceptors, credentials).
    warm_up: runs once the server is started, before health reports SERVING.
    watch: registers the service's own gauges (queue depth, gallery size) when metrics are on.
    close: runs after the server stopped.
    ready: the log line once serving.
    """

    build_server: BuildServer
    warm_up: Callable[[], None] = _nothing
    watch: Callable[[ServiceMetrics], None] = _watch_nothing
    close: Callable[[], None] = _nothing
    ready: str = "serving"


def configure_logging(verbose: bool, level: str = "", log_format: str = "text") -> None:
    """The root logger at `level` (PREFIX_LOG_LEVEL) when set, else INFO with -v, else WARNING, in
    `log_format` (PREFIX_LOG_FORMAT: text or json), every line with its request id (facerec.logs)."""
    chosen = logging.getLevelName(level.upper()) if level else (logging.INFO if verbose else logging.WARNING)
    logs.configure(chosen, log_format)


def run_service(
    name: str,
    service_name: str,
    settings: ServerSettings,
    build: Callable[[ServiceMetrics], Hosting],
    write_methods: Iterable[str] = (),
) -> None:
    """Runs one service until SIGTERM/SIGINT. A setting that cannot work exits 2 and a service that
    cannot start (its store, its model) exits 1, each with one sentence on stderr."""
    configure_logging(settings.verbose, settings.log_level, settings.log_format)
    try:
        # TLS files and tokens are read before the model loads, so a wrong path fails in a second.
        auth = security.token_interceptor(
            settings.tokens_file, settings.tokens, write_methods, settings.PREFIX
        )
        credentials = security.server_credentials(settings.tls, settings.PREFIX)
        # Before the model loads: a second copy of a service fails in a second, in one sentence.
        check_port_free(settings.host, settings.port)
        check_port_free(settings.host, settings.metrics_port)
        metrics = ServiceMetrics(name)
        hosting = build(metrics)
    except ValueError as exc:  # SettingError too
        _exit(name, exc, 2)
    except (FacerecError, OSError) as exc:  # OSError: the port (PortInUse) or the store's folder
        _exit(name, exc, 1)
    health = Health([service_name])
    interceptors: list[grpc.ServerInterceptor[Any, Any]] = []
    if settings.metrics_port:
        hosting.watch(metrics)
        interceptors.append(metrics.interceptor(hosted_methods([service_name, HEALTH_SERVICE_NAME])))
        start_metrics_server(settings.metrics_port, metrics.registry, settings.host)
    interceptors += auth  # inside metrics, so refused calls are counted too
    try:
        try:
            server, port = hosting.build_server(health, interceptors, credentials)
        except PortInUse as exc:
            _exit(name, exc, 1)
        server.start()
        hosting.warm_up()
        health.set_serving()
        log.info("%s", hosting.ready)
        announce(name, settings.host, port)
        serve_until_signalled(server, health, settings.grace_s)
    finally:
        hosting.close()


def _exit(name: str, exc: Exception, code: int) -> NoReturn:
    sys.stderr.write(f"{name}: {exc}\n")
    raise SystemExit(code) from None
