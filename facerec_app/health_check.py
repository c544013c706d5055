"""A gRPC health check client, for `facerec health ADDR` (container probes) and for waiting on start-up."""

from __future__ import annotations

import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check(address: str, service: str = "", timeout_s: float = 3.0) -> tuple[bool, str]:
    """(serving, status name) of `service` at address; ("UNREACHABLE") when nothing answers."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.RpcError as exc:
            return False, f"UNREACHABLE ({exc.code().name})"
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, name


def wait_serving(address: str, timeout_s: float, service: str = "") -> bool:
    """Polls until the service at address is SERVING or timeout_s passes. Returns whether it is."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        serving, _ = check(address, service, timeout_s=min(1.0, max(0.05, deadline - time.monotonic())))
        if serving:
            return True
        time.sleep(0.1)
    return False
