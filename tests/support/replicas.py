"""Gallery replicas for end-to-end tests: start one on a store (and index), talk to it, wait for it to show
a change made elsewhere."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc
import numpy as np

from facerec.v1 import common_pb2, gallery_pb2, gallery_pb2_grpc
from tests.support.servers import Running, start_service

MODEL = "facenet-keras-128"
# How long a test waits for a replica to show another's change before it fails: far above the ~2 s
# promised, so a loaded machine does not fail it, yet it still fails a replica that never catches up.
SEEN_WITHIN_S = 30.0


def _dead_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def start_replica(url: str, home: Path, extra: Sequence[str] = ()) -> Running:
    """A gallery process on the store at url; faces go in as embeddings (detector and embedder are dead)."""
    dead = _dead_address()
    args = ["--store", url, "--detector", dead, "--embedder", dead, "--model", MODEL, *extra]
    return start_service("gallery", args, env={"FACEREC_HOME": str(home)}, timeout_s=180)


class Replica:
    """A gRPC stub on one replica."""

    def __init__(self, service: Running) -> None:
        self.service = service
        self.channel = grpc.insecure_channel(service.address)
        self.stub = gallery_pb2_grpc.GalleryStub(self.channel)

    def enroll(self, identity: str, vectors: np.ndarray) -> list[int]:
        reply = self.stub.Enroll(
            gallery_pb2.EnrollRequest(
                identity=identity, embeddings=[common_pb2.Embedding(values=list(v)) for v in vectors]
            ),
            timeout=30,
        )
        assert all(r.outcome == gallery_pb2.ENROLLED for r in reply.results), reply
        return [r.face_id for r in reply.results]

    def identify(self, vector: np.ndarray) -> gallery_pb2.IdentifyResponse:
        return self.stub.Identify(
            gallery_pb2.IdentifyRequest(embedding=common_pb2.Embedding(values=list(vector)), top_k=3),
            timeout=30,
        )

    def stats(self) -> gallery_pb2.StatsResponse:
        return self.stub.Stats(gallery_pb2.StatsRequest(), timeout=30)

    def close(self) -> None:
        self.channel.close()
        self.service.stop()


def unit_vectors(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, 128)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def wait_until(seen: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + SEEN_WITHIN_S
    while not seen():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not seen within {SEEN_WITHIN_S} s")
        time.sleep(0.01)


def identified_as(replica: Replica, vector: np.ndarray) -> str:
    reply = replica.identify(vector)
    return reply.faces[0].identity if reply.faces and reply.faces[0].known else ""
