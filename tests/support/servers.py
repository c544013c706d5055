"""Starts real service processes for end-to-end tests and waits for their start-up line."""

from __future__ import annotations

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
