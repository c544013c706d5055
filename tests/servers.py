"""Starts real service processes for end-to-end tests and waits for their start-up line."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from facerec.supervisor import ServiceProcess


@dataclass
class Running:
    """A service process started by start_service, with the port it announced."""

    process: subprocess.Popen
    port: int
    output: list[str]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode


def start_service(
    module: str, args: Sequence[str] = (), env: Mapping[str, str] | None = None, timeout_s: float = 180.0
) -> Running:
    """Runs `python -m module --host 127.0.0.1 --port 0 ...args` and returns once it announces it is serving."""
    service = ServiceProcess.start(module, ["--host", "127.0.0.1", "--port", "0", *args], env)
    port = service.wait_ready(timeout_s)
    return Running(service.process, port, service.output)


@contextmanager
def running(module: str, args: Sequence[str] = (), env: Mapping[str, str] | None = None) -> Iterator[Running]:
    service = start_service(module, args, env)
    try:
        yield service
    finally:
        service.stop()
