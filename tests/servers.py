"""Starts real service processes for end-to-end tests and waits for their start-up line."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

ANNOUNCE = re.compile(r"(\w+) serving on (\S+):(\d+)")


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
    module: str, args: Sequence[str] = (), env: Mapping[str, str] | None = None, timeout_s: float = 120.0
) -> Running:
    """Runs `python -m module --port 0 ...args` and returns once it announces it is serving."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    process = subprocess.Popen(
        [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=full_env,
    )
    output: list[str] = []
    found: dict[str, int] = {}
    ready = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            match = ANNOUNCE.search(line)
            if match and not ready.is_set():
                found["port"] = int(match.group(3))
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout_s
    while not ready.wait(0.2):
        if time.monotonic() > deadline:
            process.kill()
            raise TimeoutError(f"{module} did not start in {timeout_s}s:\n{''.join(output[-30:])}")
    if "port" not in found:
        process.wait(5)
        raise RuntimeError(f"{module} exited ({process.returncode}) before serving:\n{''.join(output[-30:])}")
    return Running(process, found["port"], output)


@contextmanager
def running(module: str, args: Sequence[str] = (), env: Mapping[str, str] | None = None) -> Iterator[Running]:
    service = start_service(module, args, env)
    try:
        yield service
    finally:
        service.stop()
