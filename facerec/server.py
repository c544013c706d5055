"""Server bootstrap shared by every service: port, message limits, health, reflection, errors, shutdown."""

from __future__ import annotations

import errno
import logging
import signal
import socket
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from facerec import keepalive
from facerec.requestid import ServerRequestId
from facerec.settings import ServerOptions
from facerec.status import ErrorInterceptor
from facerec.streams import StreamLimit

log = logging.getLogger(__name__)


class PortInUse(OSError):
    """Something already listens on the address a server was to listen on; the message is one sentence."""


def check_port_free(host: str, port: int) -> None:
    """PortInUse when something already listens on host:port (0 = any free port: nothing to check), so
    that mistake is one sentence before anything loads, not gRPC's traceback after the model did. Any
    other trouble with the address is left for the server's own bind to report."""
    if not port:
        return
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            # As the servers bind: a connection in TIME_WAIT does not block the port, a listener does.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:  # socket.gaierror is one too
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(f"Port {port} is already in use on {host}.") from None


@dataclass(frozen=True)
class Service:
    """One gRPC service to host: its full name (for health and reflection) and how to add it."""

    name: str
    add: Callable[[grpc.Server], None]


class Health:
    """gRPC health for a server's services; NOT_SERVING until set_serving() (after warm-up)."""

    def __init__(self, service_names: Sequence[str]) -> None:
        self.servicer = health.HealthServicer()
        self._names = ["", *service_names]
        self.set(health_pb2.HealthCheckResponse.NOT_SERVING)

    def set(self, status: int) -> None:
        for name in self._names:
            self.servicer.set(name, status)

    def set_serving(self) -> None:
        self.set(health_pb2.HealthCheckResponse.SERVING)

    def set_not_serving(self) -> None:
        self.set(health_pb2.HealthCheckResponse.NOT_SERVING)


def build_server(
    services: Sequence[Service],
    options: ServerOptions,
    health_state: Health,
    interceptors: Sequence[grpc.ServerInterceptor[Any, Any]] = (),
    credentials: grpc.ServerCredentials | None = None,
) -> tuple[grpc.Server, int]:
    """A server hosting `services` plus health and reflection, bound but not started. Returns (server, port)."""
    server = grpc.server(
        # The streams' threads come on top of the unary calls' workers: open streams cannot take those.
        futures.ThreadPoolExecutor(
            max_workers=options.max_workers + options.max_streams, thread_name_prefix="grpc"
        ),
        # The request id outermost but for the stream limit: all the others log and abort within it.
        interceptors=[
            StreamLimit(options.max_streams),
            ServerRequestId(),
            *interceptors,
            ErrorInterceptor(),
        ],
        options=[
            # Applies to a message's size once decompressed too (C-core answers RESOURCE_EXHAUSTED).
            ("grpc.max_receive_message_length", options.max_message_bytes),
            ("grpc.max_send_message_length", options.max_message_bytes),
            # Compressed requests are refused (UNIMPLEMENTED) before they are inflated: 59 KiB of gzip made
            # a 60 MiB picture, costing hundreds of MiB for a few KiB sent. Pictures and vectors do not
            # compress anyway; accepting only identity keeps a call's cost bounded by the bytes it sends.
            ("grpc.compression_enabled_algorithms_bitset", 1 << grpc.Compression.NoCompression.value),
            ("grpc.so_reuseport", 0),
            *keepalive.server_options(options.keepalive),
            *(
                [
                    ("grpc.max_connection_age_ms", int(options.max_connection_age_s * 1000)),
                    ("grpc.max_connection_age_grace_ms", int(options.grace_s * 1000)),
                ]
                if options.max_connection_age_s > 0
                else []
            ),
        ],
        maximum_concurrent_rpcs=options.max_concurrent_rpcs,
    )
    for service in services:
        service.add(server)
    health_pb2_grpc.add_HealthServicer_to_server(health_state.servicer, server)
    names = [s.name for s in services] + [health.SERVICE_NAME, reflection.SERVICE_NAME]
    reflection.enable_server_reflection(names, server)
    address = f"{options.host}:{options.port}"
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError:  # grpc's "Failed to bind": taken since check_port_free, or not this machine's
        raise PortInUse(
            f"Cannot listen on {address}: the port is in use or the address is not this host's."
        ) from None
    if port == 0:
        raise OSError(f"could not bind {address}")
    return server, port


def serve_until_signalled(server: grpc.Server, health_state: Health, grace_s: float) -> None:
    """Blocks until SIGTERM or SIGINT, then stops taking calls and lets running ones finish within grace_s."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %s: shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stop.wait()
    health_state.set_not_serving()
    server.stop(grace_s).wait()
    log.info("stopped")


def announce(name: str, host: str, port: int) -> None:
    """Writes the one start-up line supervisors and tests wait for: '<name> serving on <host>:<port>'."""
    import sys

    sys.stdout.write(f"{name} serving on {host}:{port}\n")
    sys.stdout.flush()
