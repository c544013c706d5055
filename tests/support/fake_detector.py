"""A stand-in detector process for gallery tests: it hangs, dies, or answers "no face" on every call.

Run as `python -m tests.support.fake_detector MODE [PORT]`; it prints its port, then "call" for each call.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent import futures
from pathlib import Path

import grpc

from facerec.v1 import detector_pb2, detector_pb2_grpc

MODES = ("hang", "die", "answer")


class _Fake(detector_pb2_grpc.DetectorServicer):
    def __init__(self, mode: str) -> None:
        self._mode = mode

    def Detect(self, request, context):  # noqa: N802 - gRPC's name
        sys.stdout.write("call\n")
        sys.stdout.flush()
        if self._mode == "hang":
            threading.Event().wait()
        if self._mode == "die":
            os._exit(137)  # as the kernel's OOM killer ends a replica: no answer, no goodbye
        return detector_pb2.DetectResponse(
            results=[detector_pb2.ImageResult(width=64, height=64) for _ in request.images]
        )


class FakeDetector:
    """A fake detector process: .port, .address, .calls (lines "call" read so far), .kill()."""

    def __init__(self, mode: str, port: int = 0) -> None:
        root = Path(__file__).resolve().parents[2]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.fake_detector", mode, str(port)],
            cwd=root,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self._out = self.process.stdout
        self.port = int(self._out.readline())
        self.address = f"127.0.0.1:{self.port}"
        self.calls = 0
        self._arrived = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for _ in self._out:
            with self._arrived:
                self.calls += 1
                self._arrived.notify_all()

    def wait_calls(self, n: int, timeout_s: float = 60.0) -> bool:
        """Waits until n calls have arrived; False if they did not within timeout_s (a bound, not a timing)."""
        with self._arrived:
            return self._arrived.wait_for(lambda: self.calls >= n, timeout_s)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)


def first_to_exit(fakes: Sequence[FakeDetector], timeout_s: float = 60.0) -> FakeDetector | None:
    """The first of `fakes` whose process has exited, waited for with a bound; None if none did in timeout_s.

    A replica that dies on a call closes its socket before the kernel marks it exited: a caller sees the
    call fail a moment before `poll()` can tell, so a check right after the failure races that exit.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        for fake in fakes:
            try:
                fake.process.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                continue
            return fake
        if time.monotonic() >= deadline:
            return None


def main() -> None:
    mode, port = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0
    server = grpc.server(futures.ThreadPoolExecutor(64), options=[("grpc.so_reuseport", 0)])
    detector_pb2_grpc.add_DetectorServicer_to_server(_Fake(mode), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    sys.stdout.write(f"{bound}\n")
    sys.stdout.flush()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
