"""Starts real service processes for end-to-end tests and waits for their start-up line."""

from __future__ import annotations

import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from facerec_app.supervisor import ServiceProcess

# A started service: .process, .port, .address, .output, .stop(sig).
Running = ServiceProcess


def start_service(
    module: str, args: Sequence[str] = (), env: Mapping[str, str] | None = None, timeout_s: float = 180.0
) -> Running:
    """Runs `python -m module --host 127.0.0.1 --port 0 ...args` and returns once it announces it is serving."""
    service = ServiceProcess.start(module, ["--host", "127.0.0.1", "--port", "0", *args], env)
    service.wait_ready(timeout_s)
    return service


@contextmanager
def running(module: str, args: Sequence[str] = (), env: Mapping[str, str] | None = None) -> Iterator[Running]:
    service = start_service(module, args, env)
    try:
        yield service
    finally:
        service.stop()


@contextmanager
def dead_address() -> Iterator[str]:
    """'127.0.0.1:PORT' where nothing answers, for as long as the block runs.

    The port stays bound (never listening), so connections to it are refused and no server started
    meanwhile on port 0 can be given it: a port merely found free and closed again can be handed to the
    very next bind, the service under test's own included."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"
