"""Client channels to the services: one target for one address or several replicas, round_robin over
them, gRPC-level retries of UNAVAILABLE, TLS, and a bearer token on every call.

Targets are one address, a resolver URI ("dns:///detector:50051": every A/AAAA record of the name,
for headless services and `docker compose --scale`), or a comma list of literal addresses
("127.0.0.1:5001,127.0.0.1:5002" becomes the static target "ipv4:127.0.0.1:5001,127.0.0.1:5002").
"""

from __future__ import annotations

import ipaddress
import json

import grpc

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


def service_config(service: str, attempts: int = 4) -> str:
    """round_robin over every address, and gRPC-level retries of UNAVAILABLE with exponential backoff."""
    return json.dumps(
        {
            "loadBalancingConfig": [{"round_robin": {}}],
            "methodConfig": [
                {
                    "name": [{"service": service}],
                    "retryPolicy": {
                        "maxAttempts": attempts,
                        "initialBackoff": "0.1s",
                        "maxBackoff": "1s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ],
        }
    )


def open_channel(
    addresses: str,
    service: str = "",
    max_message_bytes: int = 64 * MiB,
    credentials: grpc.ChannelCredentials | None = None,
    token: str = "",
) -> grpc.Channel:
    """A channel to `addresses`: TLS with `credentials`, and `token` sent as a bearer token when set.

    With `service` (its full name, e.g. "facerec.v1.Detector") the channel spreads calls over every
    address with round_robin, retries UNAVAILABLE, and carries messages up to max_message_bytes; without
    it, it is a plain channel with gRPC's defaults (what a one-off client such as the CLI wants).
    """
    options: list[tuple[str, str | int]] = []
    if service:
        options = [
            ("grpc.service_config", service_config(service)),
            ("grpc.enable_retries", 1),
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
        return grpc.intercept_channel(channel, BearerToken(token))
    return channel
