"""Keepalive: a channel with our settings to our server stays up across many keepalive pings, while a
client that pings more often than the server allows is sent GOAWAY too_many_pings (so the test can
tell). Short intervals here, the shipped defaults' rule checked separately."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc
import pytest

from facerec import keepalive
from facerec.channels import open_channel
from facerec.keepalive import Keepalive, KeepaliveError
from facerec.server import Health, build_server
from facerec.settings import ServerOptions

# Pings every 100 ms from the client; the server accepts one every 50 ms at most.
FAST = Keepalive(client_time_ms=100, server_time_ms=100, timeout_ms=1000, min_ping_interval_ms=50)
INTERVALS = 20  # keepalive intervals the connection must stay up across
BOUND_S = 30.0


class States:
    """Every connectivity state a channel goes through, from the moment it is watched."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.seen: list[grpc.ChannelConnectivity] = []
        self.left_ready = threading.Event()
        self.ready = threading.Event()
        self._channel = channel
        channel.subscribe(self._on, try_to_connect=True)

    def _on(self, state: grpc.ChannelConnectivity) -> None:
        self.seen.append(state)
        if state == grpc.ChannelConnectivity.READY:
            self.ready.set()
        elif self.ready.is_set():
            self.left_ready.set()

    def close(self) -> None:
        self._channel.unsubscribe(self._on)


@pytest.fixture
def server_with(request: pytest.FixtureRequest) -> Iterator[str]:
    """Our server (build_server) with the Keepalive given as the test's parameter; yields its address."""
    server, port = build_server(
        [], ServerOptions(host="127.0.0.1", port=0, max_workers=2, keepalive=request.param), Health([])
    )
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(0).wait()


def health_check(channel: grpc.Channel) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)


@pytest.mark.parametrize("server_with", [FAST], indirect=True)
def test_our_channel_stays_up_across_many_keepalive_intervals(server_with: str) -> None:
    channel = open_channel(server_with, "grpc.health.v1.Health", keepalive=FAST)
    states = States(channel)
    try:
        assert states.ready.wait(BOUND_S)
        health_check(channel)
        # Idle (no call open) for INTERVALS pings: each one the server allows. A refused ping would
        # end the connection (GOAWAY) and take the channel out of READY.
        assert not states.left_ready.wait(INTERVALS * FAST.client_time_ms / 1000)
        health_check(channel)
    finally:
        states.close()
        channel.close()
    assert states.seen[-1] == grpc.ChannelConnectivity.READY, states.seen


@pytest.mark.parametrize(
    "server_with",
    [Keepalive(client_time_ms=5000, server_time_ms=5000, min_ping_interval_ms=5000)],
    indirect=True,
)
def test_a_client_that_pings_more_often_than_the_server_allows_is_sent_away(server_with: str) -> None:
    """The control: what the first test would see if our clients and servers disagreed."""
    channel = grpc.insecure_channel(
        server_with, options=keepalive.channel_options(Keepalive(client_time_ms=50, min_ping_interval_ms=0))
    )
    states = States(channel)
    try:
        assert states.ready.wait(BOUND_S)
        health_check(channel)
        # Pings every 50 ms against 5 s allowed: after max_ping_strikes, GOAWAY too_many_pings.
        assert states.left_ready.wait(BOUND_S), states.seen
    finally:
        states.close()
        channel.close()


def test_the_shipped_values_let_our_clients_ping_as_often_as_they_do() -> None:
    shipped = keepalive.DEFAULT
    assert shipped.client_time_ms >= shipped.min_ping_interval_ms
    server = dict(keepalive.server_options())
    client = dict(keepalive.channel_options())
    assert client["grpc.keepalive_time_ms"] >= server["grpc.http2.min_ping_interval_without_data_ms"]
    assert server["grpc.keepalive_permit_without_calls"] == client["grpc.keepalive_permit_without_calls"] == 1
    assert ServerOptions().keepalive == shipped


def test_values_that_would_have_our_clients_refused_are_refused() -> None:
    with pytest.raises(KeepaliveError, match="too_many_pings"):
        Keepalive(client_time_ms=1000, min_ping_interval_ms=5000)
    with pytest.raises(KeepaliveError):
        Keepalive(timeout_ms=0)
