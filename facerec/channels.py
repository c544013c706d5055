"""Client channels to the services: one target for one address or several replicas, round_robin over
them, gRPC-level retries of UNAVAILABLE, TLS, keepalive pings (facerec.keepalive), and on every call a
bearer token and the request id being handled (facerec.requestid).

Targets are one address, a resolver URI ("dns:///detector:50051": every A/AAAA record of the name,
for headless services and `docker compose --scale`), or a comma list of literal addresses
("127.0.0.1:5001,127.0.0.1:5002" becomes the static target "ipv4:127.0.0.1:5001,127.0.0.1:5002").
"""

from __future__ import annotations

import ipaddress
import json

import grpc

from facerec import keepalive as keepalive_options
from facerec.keepalive import Keepalive
from facerec.requestid import ClientRequestId
from facerec.security import BearerToken
from facerec.settings import MiB


def channel_target(addresses: str) -> str:
    """The gRPC target for one address, a resolver URI, or a comma list of literal IP:port addresses."""
    parts = [p.strip() for p in addresses.split(",") if p.strip()]
    if not parts:
        raise ValueError("No address given.")
    if len(parts) == 1:
        return parts[0]
    families = {_family(p) for p in parts}
    if families == {"ipv4"}:
        return "ipv4:" + ",".join(parts)
    if families == {"ipv6"}:
        return "ipv6:" + ",".join(parts)
    raise ValueError(
        f"A list of addresses must be literal IPv4 (or all IPv6) host:port pairs, not {addresses!r}; "
        "for a name with several records use dns:///name:port."
    )


def _family(address: str) -> str:
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        return "other"
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return "other"
    return "ipv4" if ip.version == 4 else "ipv6"


ATTEMPTS = 4
INITIAL_BACKOFF_S = 0.1
MAX_BACKOFF_S = 1.0
# gRPC's own reconnect backoff grows to 120 s by default: after a replica restarts, the channel would
# keep calling it down for seconds more. These cap it low (the services are near, and few).
RECONNECT_BACKOFF_MS = {"initial": 100, "min": 100, "max": 1000}
# How gRPC says a call never reached a server: no connection could be made to any address.
_NOT_SENT = ("failed to connect", "connection refused", "dns resolution failed", "name resolution")


def service_config(service: str, attempts: int = ATTEMPTS) -> str:
    """round_robin over every address; with attempts > 1, gRPC-level retries of UNAVAILABLE with
    exponential backoff (any UNAVAILABLE, also a replica dying mid-call)."""
    method: dict[str, object] = {"name": [{"service": service}]}
    if attempts > 1:
        method["retryPolicy"] = {
            "maxAttempts": attempts,
            "initialBackoff": f"{INITIAL_BACKOFF_S}s",
            "maxBackoff": f"{MAX_BACKOFF_S:g}s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        }
    return json.dumps({"loadBalancingConfig": [{"round_robin": {}}], "methodConfig": [method]})


def never_sent(exc: grpc.RpcError) -> bool:
    """Whether a failed call never reached a server (no connection), so sending it elsewhere is safe."""
    if not isinstance(exc, grpc.Call) or exc.code() != grpc.StatusCode.UNAVAILABLE:
        return False
    detail = (exc.details() or "").lower()
    return any(marker in detail for marker in _NOT_SENT)


def open_channel(
    addresses: str,
    service: str = "",
    max_message_bytes: int = 64 * MiB,
    credentials: grpc.ChannelCredentials | None = None,
    token: str = "",
    attempts: int = ATTEMPTS,
    keepalive: Keepalive = keepalive_options.DEFAULT,
) -> grpc.Channel:
    """A channel to `addresses`: TLS with `credentials`, and `token` sent as a bearer token when set.
    attempts: with `service`, gRPC's own retries of UNAVAILABLE (1 = none beyond its transparent ones).
    Every call carries the current request id, and idle connections are pinged as `keepalive` says.

    With `service` (its full name, e.g. "facerec.v1.Detector") the channel spreads calls over every
    address with round_robin, retries UNAVAILABLE, and carries messages up to max_message_bytes; without
    it, it is a plain channel with gRPC's defaults (what a one-off client such as the CLI wants).
    """
    options: list[tuple[str, str | int]] = [*keepalive_options.channel_options(keepalive)]
    if service:
        options += [
            ("grpc.service_config", service_config(service, attempts)),
            ("grpc.enable_retries", 1),
            ("grpc.initial_reconnect_backoff_ms", RECONNECT_BACKOFF_MS["initial"]),
            ("grpc.min_reconnect_backoff_ms", RECONNECT_BACKOFF_MS["min"]),
            ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MS["max"]),
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            # A request larger than this buffer is never retried once sent.
            ("grpc.per_rpc_retry_buffer_size", max_message_bytes),
        ]
    target = channel_target(addresses)
    if credentials is None:
        channel = grpc.insecure_channel(target, options=options)
    else:
        channel = grpc.secure_channel(target, credentials, options=options)
    if token:
        return grpc.intercept_channel(channel, ClientRequestId(), BearerToken(token))
    return grpc.intercept_channel(channel, ClientRequestId())
