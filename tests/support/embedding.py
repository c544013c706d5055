"""Helpers for the embedding service tests: a fake FaceNet (pure numpy) and in-process servers."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
from numpy.typing import NDArray

from embedding_service.batcher import EmbeddingBatcher
from embedding_service.config import Settings
from embedding_service.embedder import Embedder
from embedding_service.models import ModelRepository
from embedding_service.service import SERVICE_NAME, build_server
from facerec.server import Health
from facerec.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc


class FakeInfer:
    """Stands in for FaceNet: a deterministic function of the pixels, not unit length (the embedder normalizes).

    Records each batch size; while `gate` is cleared, model calls block (to fill the queue on purpose).
    """

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        self.entered.set()
        self.gate.wait(10)
        self.batch_sizes.append(len(batch))
        return 3.0 * fake_vectors(batch)


def fake_vectors(batch: NDArray[np.float32]) -> NDArray[np.float32]:
    """(n, 160, 160, 3) → (n, 128): a coarse pixel sample plus one, so no row is zero."""
    return batch[:, ::20, ::20, :].reshape(len(batch), -1)[:, :128].astype(np.float32) + 1.0


def unit(v: NDArray) -> NDArray[np.float32]:
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def make_settings(tmp_path: Path, **overrides) -> Settings:
    base = {
        "weights_path": tmp_path / "facenet_keras.h5",
        "calibration_path": tmp_path / "calibration.json",
        "host": "127.0.0.1",
        "port": 0,
    }
    return Settings(**{**base, **overrides})


@dataclass
class Served:
    stub: embedding_pb2_grpc.EmbedderStub
    channel: grpc.Channel
    batcher: EmbeddingBatcher  # the default model's
    port: int
    models: ModelRepository


@contextmanager
def serve(settings: Settings, embedder: Embedder | Sequence[Embedder]) -> Iterator[Served]:
    """A real server on port 0 in this process serving the embedder (or several, the first the default),
    SERVING, with a stub; stopped afterwards."""
    embedders = [embedder] if isinstance(embedder, Embedder) else list(embedder)
    models = ModelRepository.from_settings(embedders, settings)
    batcher = models.default
    health = Health([SERVICE_NAME])
    server, port = build_server(settings, models, health)
    server.start()
    health.set_serving()
    channel = grpc.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    )
    try:
        yield Served(embedding_pb2_grpc.EmbedderStub(channel), channel, batcher, port, models)
    finally:
        channel.close()
        server.stop(None).wait()
        models.close()


def crop_input(crop: NDArray[np.uint8]) -> embedding_pb2.FaceInput:
    h, w, _ = crop.shape
    return embedding_pb2.FaceInput(crop=common_pb2.RgbImage(rgb=crop.tobytes(), width=w, height=h))


def vectors_of(response: embedding_pb2.EmbedResponse) -> NDArray[np.float32]:
    return np.array([list(r.embedding.values) for r in response.results], dtype=np.float32)
