"""HTTP/2 keepalive for every server and channel, in one place, so our clients' pings always fit what our
servers accept.

Why: a connection through a NAT, a load balancer or a node that went away without a FIN looks open
until a call on it hangs to its deadline. Pings on idle connections find a dead peer within
time + timeout and keep middleboxes from dropping idle connections. But a server answers pings that come
more often than it allows with GOAWAY "too_many_pings" (after max_ping_strikes of them), which closes
the connection and fails the calls on it: so the client's ping interval must never be shorter than the
server's minimum (checked when a Keepalive is made). docs/limits.md gives the values.
"""

from __future__ import annotations

from dataclasses import dataclass


class KeepaliveError(ValueError):
    """Keepalive values that would make our own server refuse our own clients."""


@dataclass(frozen=True)
class Keepalive:
    """Keepalive intervals in milliseconds.

    client_time_ms: a channel pings a connection idle this long.
    server_time_ms: a server pings a connection idle this long (finds clients that went away).
    timeout_ms: the peer that does not answer a ping within this is dropped.
    min_ping_interval_ms: a server accepts pings without data no more often than this; more often
        counts a strike, and after max_ping_strikes it sends GOAWAY too_many_pings.
    """

    client_time_ms: int = 30_000
    server_time_ms: int = 60_000
    timeout_ms: int = 10_000
    min_ping_interval_ms: int = 10_000
    max_ping_strikes: int = 2

    def __post_init__(self) -> None:
        if min(self.client_time_ms, self.server_time_ms, self.timeout_ms) <= 0:
            raise KeepaliveError("The keepalive times and timeout must be positive.")
        if self.min_ping_interval_ms < 0 or self.max_ping_strikes < 0:
            raise KeepaliveError("The minimum ping interval and the ping strikes must not be negative.")
        if self.client_time_ms < self.min_ping_interval_ms:
            raise KeepaliveError(
                f"Clients would ping every {self.client_time_ms} ms, more often than servers allow "
                f"({self.min_ping_interval_ms} ms), and be refused with GOAWAY too_many_pings."
            )


DEFAULT = Keepalive()


def server_options(keepalive: Keepalive = DEFAULT) -> list[tuple[str, int]]:
    """gRPC server arguments: ping idle clients, and accept our clients' pings (with or without calls)."""
    return [
        ("grpc.keepalive_time_ms", keepalive.server_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.timeout_ms),
        # Our channels ping idle connections (no call open): allowed, or each ping would be a strike.
        ("grpc.keepalive_permit_without_calls", 1),
        # The enforcement policy (C-core's GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS).
        ("grpc.http2.min_ping_interval_without_data_ms", keepalive.min_ping_interval_ms),
        ("grpc.http2.max_ping_strikes", keepalive.max_ping_strikes),
        # The server's own pings go on while a connection carries no data (the default stops after 2).
        ("grpc.http2.max_pings_without_data", 0),
    ]


def channel_options(keepalive: Keepalive = DEFAULT) -> list[tuple[str, int]]:
    """gRPC channel arguments that match server_options: pings no more often than servers allow."""
    return [
        ("grpc.keepalive_time_ms", keepalive.client_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.timeout_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        # By default a client stops pinging after 2 pings with no data between: an idle channel's
        # connection would then go unwatched.
        ("grpc.http2.max_pings_without_data", 0),
    ]
