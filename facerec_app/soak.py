"""Resident memory of service processes and the Identify load that drives them: one home for the
leak test (tests/e2e/test_memory.py) and its long form (bench/memory.py)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

BOUND = 0.10


def rss_mib(pid: int) -> float:
    """Resident memory of a process (VmRSS), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for process {pid}")


def identify_calls(address: str, datas: Sequence[bytes], calls: int, clients: int, start_at: int = 0) -> None:
    """`calls` Identify calls from `clients` threads, cycling through datas."""
    import grpc

    from facerec.v1 import common_pb2, gallery_pb2, gallery_pb2_grpc

    lock = threading.Lock()
    next_call = [0]

    def client() -> None:
        with grpc.insecure_channel(address) as channel:
            stub = gallery_pb2_grpc.GalleryStub(channel)
            while True:
                with lock:
                    i = next_call[0]
                    next_call[0] += 1
                if i >= calls:
                    return
                data = datas[(start_at + i) % len(datas)]
                stub.Identify(gallery_pb2.IdentifyRequest(image=common_pb2.Image(data=data)), timeout=120)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def enroll_and_train(address: str, train: Sequence[tuple[str, bytes]]) -> None:
    import grpc

    from facerec.v1 import common_pb2, gallery_pb2, gallery_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = gallery_pb2_grpc.GalleryStub(channel)
        for identity in sorted({i for i, _ in train}):
            images = [common_pb2.Image(data=d) for i, d in train if i == identity]
            stub.Enroll(gallery_pb2.EnrollRequest(identity=identity, images=images), timeout=300)
        stub.Train(gallery_pb2.TrainRequest(), timeout=120)
